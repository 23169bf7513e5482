"""Loading posed views (NeRF-synthetic transforms.json) into ComfyUI images, masks and cameras."""

from __future__ import annotations

from comfy_api.latest import io

from microdreamer_core.views import load_transforms

from . import _comfy
from .types import MDCameras


class MicroDreamerLoadPosedViews(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="MicroDreamerLoadPosedViews",
            display_name="Load Posed Views (transforms.json)",
            category="MicroDreamer/inputs",
            description=(
                "Loads RGBA views and their cameras from a NeRF-synthetic folder: transforms.json "
                "(camera_angle_x + frames with file_path and an OpenGL camera-to-world transform_matrix) "
                "next to the RGBA PNGs it names. Outputs the colour channels as IMAGE (not composited), "
                "the alpha as MASK (1 = object) and the cameras, one per view in file order."
            ),
            inputs=[
                io.String.Input(
                    "path",
                    default="microdreamer_demo_views",
                    tooltip=(
                        "Folder holding transforms.json, or the .json file itself. A relative path is "
                        "resolved against ComfyUI's input directory; absolute paths are used as is."
                    ),
                ),
            ],
            outputs=[
                io.Image.Output("images", display_name="images", tooltip="(N, H, W, 3) RGB of every view, straight colour (not composited over a background)."),
                io.Mask.Output("masks", display_name="masks", tooltip="(N, H, W) alpha of every view: 1 = object, 0 = background."),
                MDCameras.Output("cameras", display_name="cameras", tooltip="The N cameras of the views, at the images' size."),
            ],
        )

    @classmethod
    def fingerprint_inputs(cls, path: str) -> str:
        # Re-run when any file in the views folder or its direct subfolders (images/) changes.
        root = _comfy.resolve_input_path(path)
        folder = root if root.is_dir() else root.parent
        stats = []
        for entry in [folder, *(p for p in folder.iterdir() if p.is_dir())] if folder.is_dir() else []:
            for f in sorted(entry.iterdir()):
                if f.is_file():
                    st = f.stat()
                    stats.append(f"{f}:{st.st_mtime_ns}:{st.st_size}")
        return "|".join(stats)

    @classmethod
    def execute(cls, path: str) -> io.NodeOutput:
        views = load_transforms(_comfy.resolve_input_path(path))
        images = views.images.float().cpu()
        return io.NodeOutput(images[..., :3].contiguous(), images[..., 3].contiguous(), views.cameras)
