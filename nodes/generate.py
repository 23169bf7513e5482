"""Nodes of the whole MicroDreamer pipeline: the condition (prompt / image) and the texture
refinement stage. SIR itself is the SIR Reconstruct 3DGS node (nodes/reconstruct.py)."""

from __future__ import annotations

import dataclasses

from comfy_api.latest import io

from microdreamer_core.diffusion.models import DEFAULT_NEGATIVE_PROMPT, MultiViewModel
from microdreamer_core.pipeline.generate import make_condition
from microdreamer_core.pipeline.texture_refine import (
    TextureRefineConfig,
    refine_texture,
)

from . import _comfy
from .types import MDCondition, MDMesh, MDMultiViewModel


class MicroDreamerCondition(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="MicroDreamerCondition",
            display_name="MicroDreamer Condition",
            category="MicroDreamer/generate",
            description=(
                "What to generate: a prompt (text-to-3D with MVDream; optional for ImageDream) and/or an input image with "
                "its object mask (image-to-3D with ImageDream or Stable Zero123). The object is cropped, re-centred and "
                "scaled to fill 80% of a 256x256 canvas on white, as the models were trained. The mask must separate the "
                "object from the background; background removal is not part of this pack (use any background-removal node, "
                "or load an RGBA PNG with LoadImage and connect its MASK with invert_mask on)."
            ),
            inputs=[
                io.String.Input("prompt", multiline=True, default="",
                                tooltip="Text prompt. Needed for MVDream; optional for ImageDream (empty works); ignored by Stable Zero123."),
                io.String.Input("negative_prompt", multiline=True, default="default",
                                tooltip="Negative prompt of the unconditional branch; 'default' = the paper's 'ugly, bad anatomy, ...' list."),
                io.Image.Input("image", optional=True, tooltip="Input photo (first of the batch) for image-to-3D."),
                io.Mask.Input("mask", optional=True, tooltip="Object mask of the image, 1 = object. Required with an image."),
                io.Boolean.Input("invert_mask", default=False,
                                 tooltip="Use 1 - mask: turn on for LoadImage's MASK output (1 = transparent)."),
                io.Float.Input("elevation", default=0.0, min=-89.0, max=89.0, step=1.0,
                               tooltip="Elevation of the input photo's camera in degrees (negative = from above): SIR draws its cameras around it, and Stable Zero123 is conditioned on it."),
            ],
            outputs=[MDCondition.Output("condition", display_name="condition")],
        )

    @classmethod
    def execute(cls, prompt: str, negative_prompt: str, invert_mask: bool, elevation: float, image=None, mask=None) -> io.NodeOutput:
        neg = DEFAULT_NEGATIVE_PROMPT if negative_prompt.strip() == "default" else negative_prompt
        return io.NodeOutput(make_condition(None, prompt, neg, image, mask, bool(invert_mask), float(elevation)))


class MicroDreamerRefineTexture(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        d = TextureRefineConfig()
        return io.Schema(
            node_id="MicroDreamerRefineTexture",
            display_name="Refine Texture",
            category="MicroDreamer/generate",
            description=(
                "MicroDreamer's stage 2: renders the textured mesh from `views` cameras around the equator, sharpens the "
                f"renders once with the diffusion model (noise to t={d.t} of a {d.denoise_steps}-step grid, then DDIM back with "
                "CFG), and fits the texture (as logits, Adam lr 0.2) to them for `steps` Adam steps; with Stable Zero123 also "
                "to the input image at the input photo's camera, where the rendered mesh faces that camera (as the reference "
                "code does; not for ImageDream or MVDream). Works with MVDream, ImageDream (4 views per call) and Stable Zero123."
            ),
            inputs=[
                MDMesh.Input("mesh", tooltip="A textured mesh (Extract Mesh with bake_texture on)."),
                MDMultiViewModel.Input("mv_model"),
                MDCondition.Input("condition"),
                io.Int.Input("steps", default=d.steps, min=0, max=1000, tooltip="Adam steps on the texture (paper: 30)."),
                io.Int.Input("views", default=d.views, min=1, max=64, tooltip="Views around the equator, evenly spaced (paper: 8; a multiple of 4 for MVDream/ImageDream)."),
                io.Int.Input("t", default=d.t, min=1, max=1000, tooltip=f"How far the renders are noised, on the {d.denoise_steps}-step grid (paper: 181)."),
                io.Float.Input("guidance_scale", default=d.guidance_scale, min=0.0, max=50.0, step=0.1,
                               tooltip="CFG of the target sampling (paper: 2.0); 0 = the model's own paper value."),
                io.Int.Input("render_resolution", default=d.render_resolution, min=64, max=2048, step=64,
                             tooltip="Render size of the views and the fit (paper: 512)."),
                io.Int.Input("image_size", default=d.image_size, min=32, max=1024, step=32,
                             tooltip="Size the diffusion model works at; the models are trained at 256."),
                io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=True),
            ],
            outputs=[MDMesh.Output("mesh_out", display_name="mesh")],
        )

    @classmethod
    def execute(cls, mesh, mv_model: MultiViewModel, condition, steps: int, views: int, t: int, guidance_scale: float,
                render_resolution: int, image_size: int, seed: int) -> io.NodeOutput:
        cfg = dataclasses.replace(TextureRefineConfig(), steps=int(steps), views=int(views), t=int(t),
                                  guidance_scale=float(guidance_scale) or None, render_resolution=int(render_resolution), image_size=int(image_size),
                                  seed=int(seed) % 2**63, device=_comfy.torch_device())
        result = refine_texture(mesh, mv_model, condition, cfg, progress=_comfy.progress_hook(1), cancel=_comfy.cancel_hook())
        return io.NodeOutput(result.mesh)
