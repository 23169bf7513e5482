"""Writing results to ComfyUI's output directory: Gaussians as PLY, meshes as GLB.

Each saver also outputs what core 3D preview nodes take, so the frontend shows the result in a viewer
on the node (it attaches one only to core node types): the file's path relative to the output folder
(a STRING, what core Preview 3D takes on every release) and, where the running ComfyUI has them, the
file as a core ``File3D`` (GLB for Preview 3D / Save 3D Model, a splat PLY for Preview Splat).
"""

from __future__ import annotations

from comfy_api.latest import io

from microdreamer_core.io.export import save_glb
from microdreamer_core.io.ply import save_ply

from . import _comfy, _compat
from .types import MDGaussians, MDMesh

_FILE3D = _compat.core_type("File3D")
_GLB_SOCKET = _compat.socket("File3DGLB") if _FILE3D is not None else None
_SPLAT_SOCKET = _compat.socket("File3DSplatAny", "File3DPLY") if _FILE3D is not None else None
_MODEL_FILE_TIP = (
    "The saved file's path relative to ComfyUI's output folder: connect it to core Preview 3D "
    "(model_file) to see the result in a viewer on the node."
)


def _outputs(file_socket, file_tip: str) -> list:
    """model_file (STRING) first, then the File3D where this ComfyUI has one: links to slot 0 work everywhere."""
    outputs = [io.String.Output("model_file", display_name="model_file", tooltip=_MODEL_FILE_TIP)]
    if file_socket is not None:
        outputs.append(file_socket.Output("model_3d", display_name="model_3d", tooltip=file_tip))
    return outputs


def _result(path, entry: dict, file_socket, file_format: str) -> io.NodeOutput:
    relative = f"{entry['subfolder']}/{entry['filename']}" if entry["subfolder"] else entry["filename"]
    values = [relative.replace("\\", "/")]
    if file_socket is not None:
        values.append(_FILE3D(str(path), file_format))
    return io.NodeOutput(*values, ui={"3d": [entry]})


class MicroDreamerSaveGaussians(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return _compat.schema(
            node_id="MicroDreamerSaveGaussians",
            display_name="Save Gaussians (PLY)",
            category="MicroDreamer/outputs",
            description=(
                "Writes the Gaussians as a standard 3D Gaussian splatting PLY (x y z, f_dc_*, f_rest_*, "
                "opacity, scale_*, rot_*) to ComfyUI's output directory as <prefix>_00001_.ply, counting "
                "up so earlier files are kept. The file is written atomically. model_3d (on ComfyUI releases "
                "with 3D file types) goes to core Preview Splat, which shows the splats on the node; "
                "model_file is the path relative to the output folder."
            ),
            is_output_node=True,
            search_aliases=["save splat", "export ply", "save 3dgs"],
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
            outputs=_outputs(_SPLAT_SOCKET, "The saved PLY as a core 3D file, for core Preview Splat."),
        )

    @classmethod
    def execute(cls, gaussians, filename_prefix: str) -> io.NodeOutput:
        path, entry = _comfy.output_file(filename_prefix, "ply")
        save_ply(gaussians, path)
        return _result(path, entry, _SPLAT_SOCKET, "ply")


class MicroDreamerSaveGLB(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return _compat.schema(
            node_id="MicroDreamerSaveGLB",
            display_name="Save GLB (textured)",
            category="MicroDreamer/outputs",
            description=(
                "Writes the mesh as one binary glTF 2.0 file (.glb) to ComfyUI's output directory as "
                "<prefix>_00001_.glb, counting up so earlier files are kept. Connect model_file to core "
                "Preview 3D to see it in a viewer on the node (model_3d, on ComfyUI releases with 3D "
                "file types, goes to Preview 3D or Save 3D Model too). The file holds positions, normals, "
                "uvs and the texture as an embedded PNG in a "
                "PBR material (metallic 0, roughness 0.9), or vertex colours when the mesh has no "
                "texture; y-up, metres. It passes the Khronos glTF Validator. Unlike core Save 3D "
                "Model it keeps colour. The prompt and workflow are stored in asset.extras unless "
                "ComfyUI runs with --disable-metadata. Written atomically."
            ),
            is_output_node=True,
            search_aliases=["export glb", "save mesh", "save 3d model textured"],
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
            outputs=_outputs(_GLB_SOCKET, "The saved GLB as a core 3D file, for core Preview 3D or Save 3D Model."),
            hidden=[io.Hidden.prompt, io.Hidden.extra_pnginfo],
        )

    @classmethod
    def execute(cls, mesh, filename_prefix: str) -> io.NodeOutput:
        path, entry = _comfy.output_file(filename_prefix, "glb")
        save_glb(mesh, path, extras=_comfy.workflow_metadata(cls.hidden))
        return _result(path, entry, _GLB_SOCKET, "glb")
