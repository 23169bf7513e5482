"""Writing results to ComfyUI's output directory: Gaussians as PLY, meshes as GLB."""

from __future__ import annotations

from comfy_api.latest import io

from microdreamer_core.io.export import save_glb
from microdreamer_core.io.ply import save_ply

from . import _comfy
from .types import MDGaussians, MDMesh


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
                io.String.Input(
                    "filename_prefix",
                    default="microdreamer/gaussians",
                    tooltip=(
                        "File name prefix inside the output directory; may "
                        "contain subfolders (a/b) and ComfyUI's %date% variables."
                    ),
                ),
            ],
            outputs=[],
        )

    @classmethod
    def execute(cls, gaussians, filename_prefix: str) -> io.NodeOutput:
        path, entry = _comfy.output_file(filename_prefix, "ply")
        save_ply(gaussians, path)
        return io.NodeOutput(ui={"3d": [entry]})


class MicroDreamerSaveGLB(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="MicroDreamerSaveGLB",
            display_name="Save GLB (textured)",
            category="MicroDreamer/outputs",
            description=(
                "Writes the mesh as one binary glTF 2.0 file (.glb) to ComfyUI's output directory as "
                "<prefix>_00001_.glb, counting up so earlier files are kept, and shows it in the 3D "
                "preview. The file holds positions, normals, uvs and the texture as an embedded PNG in a "
                "PBR material (metallic 0, roughness 0.9), or vertex colours when the mesh has no "
                "texture; y-up, metres. It passes the Khronos glTF Validator. Unlike core Save 3D "
                "Model it keeps colour. The prompt and workflow are stored in asset.extras unless "
                "ComfyUI runs with --disable-metadata. Written atomically."
            ),
            is_output_node=True,
            inputs=[
                MDMesh.Input("mesh"),
                io.String.Input(
                    "filename_prefix",
                    default="microdreamer/mesh",
                    tooltip=(
                        "File name prefix inside the output directory; may "
                        "contain subfolders (a/b) and ComfyUI's %date% variables."
                    ),
                ),
            ],
            outputs=[],
            hidden=[io.Hidden.prompt, io.Hidden.extra_pnginfo],
        )

    @classmethod
    def execute(cls, mesh, filename_prefix: str) -> io.NodeOutput:
        path, entry = _comfy.output_file(filename_prefix, "glb")
        save_glb(mesh, path, extras=_comfy.workflow_metadata(cls.hidden))
        return io.NodeOutput(ui={"3d": [entry]})
