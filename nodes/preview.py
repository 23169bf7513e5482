"""Previews: a turntable of Gaussians or a mesh as an IMAGE batch, for core Save Animated WEBP or video nodes."""

from __future__ import annotations

from comfy_api.latest import io

from microdreamer_core.errors import InputError
from microdreamer_core.render.turntable import FRAMES, RESOLUTION, TurntableConfig, parse_color, render_turntable

from . import _comfy, _compat
from .types import MDGaussians, MDMesh


class MicroDreamerTurntable(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        d = TurntableConfig()
        return _compat.schema(
            node_id="MicroDreamerTurntable",
            display_name="Turntable",
            search_aliases=["orbit render", "spin preview", "360 video", "turntable animation"],
            category="MicroDreamer/outputs",
            description=(
                "Renders the Gaussians or the mesh (connect one of them) from `frames` cameras evenly spaced "
                "around it, starting at its front, at one elevation, into an IMAGE batch: connect it to core Save "
                "Animated WEBP (fps = frames / seconds per turn, e.g. 12 for 36 frames) or Create Video -> Save "
                "Video. The camera circles the centre of the model's bounding box at the distance where the "
                "bounding sphere fills `fill` of the frame. Meshes show their texture (else vertex colours), "
                "unlit, with antialiased edges."
            ),
            inputs=[
                MDGaussians.Input("gaussians", optional=True, tooltip="3D Gaussians to spin (or connect a mesh)."),
                MDMesh.Input("mesh", optional=True, tooltip="A mesh to spin (or connect Gaussians)."),
                io.Int.Input(
                    "frames",
                    default=d.frames,
                    min=FRAMES[0],
                    max=FRAMES[1],
                    tooltip="Frames in one turn, evenly spaced in azimuth; frame 0 shows the front.",
                ),
                io.Float.Input(
                    "elevation",
                    default=d.elevation,
                    min=-89.0,
                    max=89.0,
                    step=1.0,
                    tooltip="Camera elevation in degrees: negative looks from above, positive from below.",
                ),
                io.Int.Input(
                    "resolution",
                    default=d.resolution,
                    min=RESOLUTION[0],
                    max=RESOLUTION[1],
                    step=16,
                    tooltip="Square frame size in pixels.",
                ),
                io.String.Input(
                    "background",
                    default="#ffffff",
                    tooltip="Background colour as hex #RRGGBB (white: #ffffff, black: #000000).",
                ),
                io.Float.Input(
                    "fill",
                    default=d.fill,
                    min=0.1,
                    max=0.99,
                    step=0.01,
                    optional=True,
                    tooltip="Fraction of the frame's height the model's bounding sphere spans (sets the distance).",
                    **_compat.advanced(io.Float),
                ),
            ],
            outputs=[io.Image.Output("images", display_name="images", tooltip="The frames, (frames, H, W, 3).")],
        )

    @classmethod
    def execute(
        cls,
        frames: int,
        elevation: float,
        resolution: int,
        background: str,
        gaussians=None,
        mesh=None,
        fill: float = TurntableConfig.fill,
    ) -> io.NodeOutput:
        if (gaussians is None) == (mesh is None):
            raise InputError("connect either gaussians or mesh to Turntable (one of them, not both)")
        config = TurntableConfig(
            frames=int(frames),
            elevation=float(elevation),
            resolution=int(resolution),
            background=parse_color(background),
            fill=float(fill),
        )
        model = (gaussians if gaussians is not None else mesh).to(_comfy.torch_device())
        images = render_turntable(model, config, progress=_comfy.progress_hook(), cancel=_comfy.cancel_hook())
        return io.NodeOutput(images)
