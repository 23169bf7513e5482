"""Views and their cameras: posed views from a NeRF-synthetic folder (transforms.json) as ComfyUI
images, masks and cameras, and orbit cameras from the paper's presets.

Everything the views loader reads is confined to ComfyUI's input directory, as core LoadImage is: the
views folder, its transforms.json and every frame image must resolve (symlinks included) inside
it (:func:`microdreamer_core.io.paths.confined`), and errors never show a path outside it.
"""

from __future__ import annotations

from pathlib import Path

from comfy_api.latest import io

from microdreamer_core.errors import InputError, shown
from microdreamer_core.io.paths import folders_holding, is_inside
from microdreamer_core.io.transforms import load_transforms
from microdreamer_core.scene.cameras import CAMERA_PRESETS, preset_cameras

from . import _comfy, _compat
from .types import MDCameras

VIEWS_FILE = "transforms.json"
DEFAULT_VIEWS = "microdreamer_demo_views"
"""The views folder the example workflow selects (under ComfyUI/input)."""


def views_folders() -> list[str]:
    """Sub-folders of ComfyUI's input directory that hold a transforms.json (the node's list)."""
    return folders_holding(_comfy.input_root(), VIEWS_FILE)


def views_json(path) -> Path:
    """The real path of the transforms.json the node reads for ``path`` (a folder in ComfyUI's
    input directory, or a .json file there), or one :class:`InputError` line."""
    if not isinstance(path, str) or not path:
        raise InputError(
            f"choose a views folder: a folder in {_comfy.INPUT_FOLDER} holding {VIEWS_FILE} and its RGBA PNGs"
        )
    found = _comfy.input_path(path, "the views folder")
    if found.is_dir():
        found = _comfy.input_path(found / VIEWS_FILE, VIEWS_FILE)
    if not found.is_file():
        raise InputError(
            f"no views folder '{shown(path)}' with a {VIEWS_FILE} in {_comfy.INPUT_FOLDER}: put the folder "
            f"({VIEWS_FILE} and its RGBA PNGs) there, refresh the node list (R) and pick it"
        )
    return found


class MicroDreamerLoadPosedViews(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        folders = views_folders()
        return _compat.schema(
            node_id="MicroDreamerLoadPosedViews",
            display_name="Load Posed Views (transforms.json)",
            search_aliases=["nerf synthetic", "transforms.json", "posed images"],
            category="MicroDreamer/inputs",
            description=(
                "Loads RGBA views and their cameras from a NeRF-synthetic folder in ComfyUI's input folder: "
                "transforms.json (camera_angle_x + frames with file_path and an OpenGL camera-to-world "
                "transform_matrix) next to the RGBA PNGs it names. Outputs the colour channels as IMAGE (not "
                "composited), the alpha as MASK (1 = object) and the cameras, one per view in file order. "
                "Only files inside ComfyUI's input folder are read."
            ),
            inputs=[
                io.Combo.Input(
                    "path",
                    options=folders,
                    default=DEFAULT_VIEWS if DEFAULT_VIEWS in folders else None,
                    tooltip=(
                        "A folder in ComfyUI's input folder holding transforms.json and the RGBA PNGs it names "
                        "(sub-folders up to 3 levels deep are listed). Put a views folder there (or upload its "
                        "files into a subfolder) and press R to refresh the list. The json and every image must "
                        "lie inside the input folder: paths leading out of it are refused."
                    ),
                ),
            ],
            outputs=[
                io.Image.Output(
                    "images",
                    display_name="images",
                    tooltip="(N, H, W, 3) RGB of every view, straight colour (not composited over a background).",
                ),
                io.Mask.Output(
                    "masks", display_name="masks", tooltip="(N, H, W) alpha of every view: 1 = object, 0 = background."
                ),
                MDCameras.Output(
                    "cameras", display_name="cameras", tooltip="The N cameras of the views, at the images' size."
                ),
            ],
        )

    @classmethod
    def validate_inputs(cls, path=None):
        # Replaces ComfyUI's "value in list" check (as core LoadImage's does): any folder inside
        # the input folder that holds a transforms.json is accepted, nothing outside it.
        if path is None:  # linked from another node: checked when it runs
            return True
        try:
            views_json(path)
        except InputError as e:
            return str(e)
        return True

    @classmethod
    def fingerprint_inputs(cls, path) -> str:
        # Re-run when any file in the views folder or its direct subfolders (images/) changes;
        # only files inside the input folder are looked at.
        try:
            folder = views_json(path).parent
        except InputError as e:
            return str(e)
        root = _comfy.input_root()
        stats = []
        for entry in [folder, *(p for p in sorted(folder.iterdir()) if p.is_dir() and is_inside(root, p))]:
            for f in sorted(entry.iterdir()):
                if f.is_file() and is_inside(root, f):
                    st = f.stat()
                    stats.append(f"{f.relative_to(folder)}:{st.st_mtime_ns}:{st.st_size}")
        return "|".join(stats)

    @classmethod
    def execute(cls, path: str) -> io.NodeOutput:
        views = load_transforms(views_json(path), root=_comfy.input_root())
        images = views.images.float().cpu()
        return io.NodeOutput(images[..., :3].contiguous(), images[..., 3].contiguous(), views.cameras)


def _degrees(text: str | None, name: str) -> list[float]:
    """A widget's comma-separated angles in degrees ("0, 90, 180"; empty = none)."""
    try:
        return [float(v) for v in (text or "").replace(";", ",").split(",") if v.strip()]
    except ValueError:
        raise InputError(
            f"{name} must be comma-separated numbers in degrees, e.g. '0, 90, 180, 270'; got '{text}'"
        ) from None


class MicroDreamerOrbitCameras(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        presets = ", ".join(f"{k}: {p.num_views} views at radius {p.radius}" for k, p in CAMERA_PRESETS.items())
        return _compat.schema(
            node_id="MicroDreamerOrbitCameras",
            display_name="Orbit Cameras (paper presets)",
            search_aliases=["camera orbit", "multi-view cameras"],
            category="MicroDreamer/cameras",
            description=(
                "Cameras on an orbit around the origin, looking at it (y-up world; negative elevation = "
                "above the object; azimuth 0 looks from +z, at the object's front, for every model). With elevations "
                f"and azimuths empty it draws one random set of the preset's views from the seed ({presets}): evenly "
                "spaced azimuths from a random offset, random integer elevations in the preset's range. With azimuths "
                "given it places one camera per azimuth instead (fixed views)."
            ),
            inputs=[
                io.Combo.Input(
                    "preset",
                    options=list(CAMERA_PRESETS),
                    default="zero123",
                    tooltip=(
                        "Paper preset: number of views, orbit radius, elevation range and field of view (49.1 degrees)."
                    ),
                ),
                io.Int.Input(
                    "resolution",
                    default=256,
                    min=16,
                    max=4096,
                    step=8,
                    tooltip="Square image size in pixels the cameras are made for.",
                ),
                io.Int.Input(
                    "seed",
                    default=0,
                    min=0,
                    max=0xFFFFFFFFFFFFFFFF,
                    control_after_generate=True,
                    tooltip=(
                        "Seeds the random azimuth offset and elevations "
                        "of the preset (ignored when azimuths are given)."
                    ),
                ),
                io.String.Input(
                    "elevations",
                    default="",
                    optional=True,
                    tooltip=(
                        "Comma-separated elevations in degrees (negative = above). One "
                        "value applies to every azimuth. Empty: random from the preset."
                    ),
                ),
                io.String.Input(
                    "azimuths",
                    default="",
                    optional=True,
                    tooltip="Comma-separated azimuths in degrees, one camera each. Empty: the preset's random views.",
                ),
                io.Float.Input(
                    "radius",
                    default=0.0,
                    min=0.0,
                    max=100.0,
                    step=0.05,
                    optional=True,
                    tooltip="Distance of the cameras from the origin; 0 uses the preset's radius.",
                    **_compat.advanced(io.Float),
                ),
            ],
            outputs=[MDCameras.Output("cameras", display_name="cameras")],
        )

    @classmethod
    def execute(
        cls, preset: str, resolution: int, seed: int, elevations: str = "", azimuths: str = "", radius: float = 0.0
    ) -> io.NodeOutput:
        az = _degrees(azimuths, "azimuths")
        el = _degrees(elevations, "elevations")
        return io.NodeOutput(preset_cameras(preset, resolution, int(seed), el, az, float(radius) or None))
