"""Conversion between our meshes and ComfyUI's core MESH type, both ways.

0.3.75's ``Types.MESH(vertices, faces)`` holds geometry only; newer releases' constructor also
takes ``uvs``, ``vertex_colors``, ``texture`` and ``normals`` (and PBR maps we do not make). Every
field the running constructor accepts is filled, so core nodes (Save 3D Model, Unwrap Mesh,
Decimate Mesh, the bakes, Create 3D File) take over from ours, and a textured core MESH (from
TRELLIS.2, Hunyuan3D or Load 3D) comes back as our mesh for Refine Texture. Layout and uv
convention: ``microdreamer_core/scene/mesh_batch.py``.
"""

from __future__ import annotations

import inspect

from comfy_api.latest import io

from microdreamer_core.scene.mesh_batch import mesh_from_batch, mesh_to_batch

from . import _compat
from .types import MDMesh

_OPTIONAL = ("uvs", "vertex_colors", "texture", "normals", "vertex_counts", "face_counts")


def _mesh_class():
    """ComfyUI's MESH class: ``Types.MESH`` (0.3.75 and later), earlier in ``nodes_hunyuan3d``."""
    found = _compat.core_type("MESH")
    if found is None:
        from comfy_extras.nodes_hunyuan3d import MESH as found
    return found


class MicroDreamerMeshToComfyMesh(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return _compat.schema(
            node_id="MicroDreamerMeshToComfyMesh",
            display_name="To ComfyUI MESH",
            category="MicroDreamer/mesh",
            search_aliases=["mesh to core mesh", "convert mesh"],
            description=(
                "Converts a MicroDreamer mesh to ComfyUI's core MESH (a batch of one) for core 3D nodes "
                "(Save 3D Model, Unwrap Mesh, Decimate Mesh, the bakes, Create 3D File). Where the running "
                "ComfyUI's MESH takes them, uvs (turned to glTF's v-down convention), the texture, vertex "
                "colours and normals go along; ComfyUI 0.3.75's MESH holds vertices and faces only, so there "
                "colour is dropped: use Save GLB (textured) to keep it."
            ),
            inputs=[MDMesh.Input("mesh")],
            outputs=[io.Mesh.Output("MESH", display_name="MESH")],
        )

    @classmethod
    def execute(cls, mesh) -> io.NodeOutput:
        mesh_cls = _mesh_class()
        fields = mesh_to_batch(mesh)
        accepted = inspect.signature(mesh_cls.__init__).parameters
        extra = {k: v for k, v in fields.items() if k in _OPTIONAL and k in accepted}
        return io.NodeOutput(mesh_cls(fields["vertices"], fields["faces"], **extra))


class MicroDreamerComfyMeshToMesh(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return _compat.schema(
            node_id="MicroDreamerComfyMeshToMesh",
            display_name="From ComfyUI MESH",
            category="MicroDreamer/mesh",
            search_aliases=["core mesh to mesh", "import mesh"],
            description=(
                "Converts one item of a ComfyUI core MESH batch (e.g. from TRELLIS.2, Hunyuan3D, Load 3D or "
                "Unwrap Mesh) to a MicroDreamer mesh, with its uvs, texture, vertex colours and normals where "
                "the MESH has them, so Refine Texture can improve any textured mesh and Save GLB can write it. "
                "Refine Texture needs uvs and a texture (ComfyUI 0.3.75's MESH has neither)."
            ),
            inputs=[
                io.Mesh.Input("mesh"),
                io.Int.Input(
                    "batch_index",
                    default=0,
                    min=0,
                    max=4096,
                    tooltip="Which item of the MESH batch to take.",
                    **_compat.advanced(io.Int),
                ),
            ],
            outputs=[MDMesh.Output("md_mesh", display_name="mesh")],
        )

    @classmethod
    def execute(cls, mesh, batch_index: int = 0) -> io.NodeOutput:
        fields = {k: getattr(mesh, k, None) for k in _OPTIONAL}
        return io.NodeOutput(mesh_from_batch(mesh.vertices, mesh.faces, index=int(batch_index), **fields))


CORE_MESH_NODES = [MicroDreamerMeshToComfyMesh, MicroDreamerComfyMeshToMesh]
