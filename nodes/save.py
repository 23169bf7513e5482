"""Writing Gaussians to ComfyUI's output directory."""

from __future__ import annotations

from comfy_api.latest import io

from microdreamer_core.io.ply import save_ply

from . import _comfy
from .types import MDGaussians


class MicroDreamerSaveGaussians(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="MicroDreamerSaveGaussians",
            display_name="Save Gaussians (PLY)",
            category="MicroDreamer/outputs",
            description=(
                "Writes the Gaussians as a standard 3D Gaussian splatting PLY (x y z, f_dc_*, f_rest_*, "
                "opacity, scale_*, rot_*) to ComfyUI's output directory as <prefix>_00001_.ply, counting "
                "up so earlier files are kept. The file is written atomically."
            ),
            is_output_node=True,
            inputs=[
                MDGaussians.Input("gaussians"),
                io.String.Input("filename_prefix", default="microdreamer/gaussians",
                                tooltip="File name prefix inside the output directory; may contain subfolders (a/b) and ComfyUI's %date% variables."),
            ],
            outputs=[],
        )

    @classmethod
    def execute(cls, gaussians, filename_prefix: str) -> io.NodeOutput:
        path, entry = _comfy.output_file(filename_prefix, "ply")
        save_ply(gaussians, path)
        return io.NodeOutput(ui={"3d": [entry]})
