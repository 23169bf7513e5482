"""Meshes: extraction from Gaussians and the diffusion-guided texture refinement (MicroDreamer's stage 2)."""

from __future__ import annotations

from comfy_api.latest import io

from microdreamer_core.meshing.stage import MeshConfig, gaussians_to_mesh
from microdreamer_core.meshing.uv import UV_CHARTS
from microdreamer_core.pipeline.texture_refine import TextureRefineConfig, refine_texture

from . import _comfy, _compat, _vram
from .types import MDCondition, MDGaussians, MDMesh, MDMultiViewModel


class MicroDreamerExtractMesh(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return _compat.schema(
            node_id="MicroDreamerExtractMesh",
            display_name="Extract Mesh",
            search_aliases=["gaussians to mesh", "marching cubes", "splat to mesh"],
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
                io.Int.Input(
                    "resolution",
                    default=128,
                    min=16,
                    max=512,
                    step=8,
                    tooltip=(
                        "Density grid samples per axis for marching cubes: higher "
                        "keeps finer detail, costs time and memory cubically."
                    ),
                ),
                io.Int.Input(
                    "target_faces",
                    default=50000,
                    min=0,
                    max=2000000,
                    step=1000,
                    tooltip="Decimate the marching-cubes surface to at most this many triangles; 0 keeps all of them.",
                ),
                io.Boolean.Input(
                    "bake_texture",
                    default=True,
                    tooltip=(
                        "On: uv-unwrap and bake a texture (sharp colour). "
                        "Off: vertex colours only (much faster, blurrier)."
                    ),
                ),
                io.Int.Input(
                    "texture_size",
                    default=1024,
                    min=64,
                    max=8192,
                    step=64,
                    tooltip=(
                        "Width and height of the baked square texture in pixels (ignored when bake_texture is off)."
                    ),
                    **_compat.advanced(io.Int),
                ),
                io.Combo.Input(
                    "uv_charts",
                    options=list(UV_CHARTS),
                    default="fast",
                    optional=True,
                    tooltip="uv unwrapping (xatlas) settings. fast (default): no chart refinement and charts "
                    "capped at 1% of the surface. quality: xatlas' defaults, 6-80x slower on 30-50k faces with "
                    "the same textured PSNR and texture use within a few percent in our measurements.",
                    **_compat.advanced(io.Combo),
                ),
            ],
            outputs=[
                MDMesh.Output(
                    "mesh",
                    display_name="mesh",
                    tooltip="Mesh with uvs + texture (bake_texture on) or vertex colours, and vertex normals.",
                )
            ],
        )

    @classmethod
    def execute(
        cls,
        gaussians,
        resolution: int,
        target_faces: int,
        bake_texture: bool,
        texture_size: int,
        uv_charts: str = "fast",
    ) -> io.NodeOutput:
        config = MeshConfig(
            resolution=int(resolution),
            target_faces=int(target_faces),
            texture_size=int(texture_size),
            uv_charts=uv_charts,
        )
        mesh = gaussians_to_mesh(
            gaussians, config, bake=bool(bake_texture), progress=_comfy.progress_hook(), cancel=_comfy.cancel_hook()
        )
        return io.NodeOutput(mesh)


class MicroDreamerRefineTexture(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        d = TextureRefineConfig()
        return _compat.schema(
            node_id="MicroDreamerRefineTexture",
            display_name="Refine Texture",
            search_aliases=["texture refinement", "improve texture"],
            category="MicroDreamer/generate",
            description=(
                "MicroDreamer's stage 2: renders the textured mesh from `views` cameras around the equator, sharpens "
                f"the renders once with the diffusion model (noise to t={d.t} of a {d.denoise_steps}-step grid, then "
                "DDIM back with CFG), and fits the texture (as logits, Adam lr 0.2) to them for `steps` Adam steps; "
                "with Stable Zero123 also to the input image at the input photo's camera, where the rendered mesh "
                "faces that camera (as the reference code does; not for ImageDream or MVDream). Works with MVDream, "
                "ImageDream (4 views per call) and Stable Zero123."
            ),
            inputs=[
                MDMesh.Input("mesh", tooltip="A textured mesh (Extract Mesh with bake_texture on)."),
                MDMultiViewModel.Input("mv_model"),
                MDCondition.Input("condition"),
                io.Int.Input(
                    "steps", default=d.steps, min=0, max=1000, tooltip="Adam steps on the texture (paper: 30)."
                ),
                io.Int.Input(
                    "views",
                    default=d.views,
                    min=1,
                    max=64,
                    tooltip=(
                        "Views around the equator, evenly spaced (paper: 8; a multiple of 4 for MVDream/ImageDream)."
                    ),
                ),
                io.Int.Input(
                    "t",
                    default=d.t,
                    min=1,
                    max=1000,
                    tooltip=f"How far the renders are noised, on the {d.denoise_steps}-step grid (paper: 181).",
                    **_compat.advanced(io.Int),
                ),
                io.Float.Input(
                    "guidance_scale",
                    default=d.guidance_scale,
                    min=0.0,
                    max=50.0,
                    step=0.1,
                    tooltip="CFG of the target sampling (paper: 2.0); 0 = the model's own paper value.",
                    **_compat.advanced(io.Float),
                ),
                io.Int.Input(
                    "render_resolution",
                    default=d.render_resolution,
                    min=64,
                    max=2048,
                    step=64,
                    tooltip="Render size of the views and the fit (paper: 512).",
                    **_compat.advanced(io.Int),
                ),
                io.Int.Input(
                    "image_size",
                    default=d.image_size,
                    min=32,
                    max=1024,
                    step=32,
                    tooltip="Size the diffusion model works at; the models are trained at 256.",
                    **_compat.advanced(io.Int),
                ),
                io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=True),
            ],
            outputs=[MDMesh.Output("mesh_out", display_name="mesh")],
        )

    @classmethod
    def execute(
        cls,
        mesh,
        mv_model: _vram.ManagedModel,
        condition,
        steps: int,
        views: int,
        t: int,
        guidance_scale: float,
        render_resolution: int,
        image_size: int,
        seed: int,
    ) -> io.NodeOutput:
        cfg = TextureRefineConfig(
            steps=int(steps),
            views=int(views),
            t=int(t),
            guidance_scale=float(guidance_scale) or None,
            render_resolution=int(render_resolution),
            image_size=int(image_size),
            seed=int(seed) % 2**63,
            device=_comfy.torch_device(),
        )
        model = _vram.on_device(mv_model)
        result = refine_texture(
            mesh, model, condition, cfg, progress=_comfy.progress_hook(), cancel=_comfy.cancel_hook()
        )
        return io.NodeOutput(result.mesh)
