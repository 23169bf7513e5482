"""Meshes: extraction from Gaussians, GLB output and conversion to ComfyUI's core MESH type."""

from __future__ import annotations

import inspect

import torch
from comfy_api.latest import io

from microdreamer_core.io.export import save_glb
from microdreamer_core.meshing.texture import UV_CHARTS, gaussians_to_mesh

from . import _comfy
from .types import MDGaussians, MDMesh


class MicroDreamerExtractMesh(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="MicroDreamerExtractMesh",
            display_name="Extract Mesh",
            category="MicroDreamer/mesh",
            description=(
                "Turns 3D Gaussians into a triangle mesh: samples their opacity-weighted density on a "
                "resolution^3 grid around the object, runs marching cubes at one opaque Gaussian's peak "
                "density, fills interior cavities, drops small fragments and decimates to target_faces. "
                "Vertex colours come from the Gaussians. With bake_texture on it then unwraps uvs "
                "(xatlas) and bakes a texture_size texture by projecting renders of the Gaussians from "
                "orbit views onto the surface. Runs on the CPU; unwrapping dominates at high face counts."
            ),
            inputs=[
                MDGaussians.Input("gaussians", tooltip="The 3D Gaussians to mesh (e.g. from SIR Reconstruct 3DGS)."),
                io.Int.Input("resolution", default=128, min=16, max=512, step=8,
                             tooltip="Density grid samples per axis for marching cubes: higher keeps finer detail, costs time and memory cubically."),
                io.Int.Input("target_faces", default=50000, min=0, max=2000000, step=1000,
                             tooltip="Decimate the marching-cubes surface to at most this many triangles; 0 keeps all of them."),
                io.Boolean.Input("bake_texture", default=True,
                                 tooltip="On: uv-unwrap and bake a texture (sharp colour). Off: vertex colours only (much faster, blurrier)."),
                io.Int.Input("texture_size", default=1024, min=64, max=8192, step=64,
                             tooltip="Width and height of the baked square texture in pixels (ignored when bake_texture is off)."),
                io.Combo.Input("uv_charts", options=list(UV_CHARTS), default="quality", optional=True,
                               tooltip="uv unwrapping (xatlas) settings. quality: xatlas' defaults. fast: no chart refinement "
                                       "and charts capped at 1% of the surface: 20-80x faster on 50k faces with the same texture "
                                       "use within a few percent and the same Duck PSNR in our measurements."),
            ],
            outputs=[MDMesh.Output("mesh", display_name="mesh",
                                   tooltip="Mesh with uvs + texture (bake_texture on) or vertex colours, and vertex normals.")],
        )

    @classmethod
    def execute(cls, gaussians, resolution: int, target_faces: int, bake_texture: bool, texture_size: int,
                uv_charts: str = "quality") -> io.NodeOutput:
        total = 3 if bake_texture else 1
        mesh = gaussians_to_mesh(gaussians, resolution=int(resolution), target_faces=int(target_faces),
                                 texture_size=int(texture_size), bake=bool(bake_texture), uv_charts=uv_charts,
                                 progress=_comfy.progress_hook(total), cancel=_comfy.cancel_hook())
        return io.NodeOutput(mesh)


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
                io.String.Input("filename_prefix", default="microdreamer/mesh",
                                tooltip="File name prefix inside the output directory; may contain subfolders (a/b) and ComfyUI's %date% variables."),
            ],
            outputs=[],
            hidden=[io.Hidden.prompt, io.Hidden.extra_pnginfo],
        )

    @classmethod
    def execute(cls, mesh, filename_prefix: str) -> io.NodeOutput:
        path, entry = _comfy.output_file(filename_prefix, "glb")
        save_glb(mesh, path, extras=_comfy.workflow_metadata(cls.hidden))
        return io.NodeOutput(ui={"3d": [entry]})


def _core_mesh_class():
    """ComfyUI's MESH class: ``comfy_api.latest.Types.MESH`` (0.3.75+), earlier in nodes_hunyuan3d."""
    try:
        from comfy_api.latest import Types

        return Types.MESH
    except (ImportError, AttributeError):
        from comfy_extras.nodes_hunyuan3d import MESH

        return MESH


# Optional fields newer MESH constructors accept, by the names we know of; passed only when the
# installed ComfyUI's constructor has a parameter of that name. Values get a leading batch dim.
_OPTIONAL_FIELDS = {"uvs": "uvs", "uv": "uvs", "texture": "texture", "vertex_colors": "vertex_colors",
                    "colors": "vertex_colors", "normals": "normals", "vertex_normals": "normals"}


class MicroDreamerMeshToComfyMesh(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="MicroDreamerMeshToComfyMesh",
            display_name="To ComfyUI MESH",
            category="MicroDreamer/mesh",
            description=(
                "Converts a MicroDreamer mesh to ComfyUI's core MESH type (a batch of one: vertices "
                "(1, N, 3) float32, faces (1, M, 3) int64) for core nodes such as Save 3D Model. "
                "ComfyUI 0.3.75's MESH holds geometry only, so colour is dropped there; on releases "
                "whose MESH constructor takes uvs, texture, vertex colours or normals, those are "
                "passed along too. To keep the texture, use Save GLB (textured)."
            ),
            inputs=[MDMesh.Input("mesh")],
            outputs=[io.Mesh.Output("MESH", display_name="MESH")],
        )

    @classmethod
    def execute(cls, mesh) -> io.NodeOutput:
        mesh_cls = _core_mesh_class()
        m = mesh.to("cpu")
        kwargs = {}
        params = inspect.signature(mesh_cls.__init__).parameters
        for name, attr in _OPTIONAL_FIELDS.items():
            value = getattr(m, attr)
            if name in params and value is not None and attr not in {_OPTIONAL_FIELDS[k] for k in kwargs}:
                kwargs[name] = value.detach().float()[None]
        return io.NodeOutput(mesh_cls(m.vertices.detach().float()[None], m.faces.to(torch.int64)[None], **kwargs))
