"""SIR reconstruction of 3D Gaussians: from posed views alone, or with a multi-view diffusion model."""

from __future__ import annotations

from comfy_api.latest import io

from microdreamer_core.pipeline.presets import PRESETS
from microdreamer_core.pipeline.reconstruct import reconstruct_3dgs

from . import _comfy, _compat, _vram
from .types import MDCameras, MDCondition, MDGaussians, MDMultiViewModel

PRESET_CHOICES = ["auto"] + list(PRESETS)


class MicroDreamerSIRReconstruct3DGS(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return _compat.schema(
            node_id="MicroDreamerSIRReconstruct3DGS",
            display_name="SIR Reconstruct 3DGS",
            search_aliases=["microdreamer", "gaussian splatting", "3dgs", "image to 3d", "text to 3d"],
            category="MicroDreamer/reconstruction",
            description=(
                "MicroDreamer's score-based iterative reconstruction (SIR) of 3D Gaussians. With a multi-view model "
                "and a condition: samples initial views from noise (or fits the views you connect), then runs the "
                "preset's iterations, each rendering new cameras once, refining the renders with the model (hybrid "
                "forward + sampling) and taking 15 Adam steps against them (paper presets: zero123 20 iterations / 352 "
                "NFEs, imagedream and mvdream 30 iterations / 285 NFEs). Without a model: a plain multi-view "
                "reconstruction of the connected views for `steps` Adam steps (L1 on white plus a mask term). "
                "Deterministic for a fixed seed on CPU."
            ),
            inputs=[
                io.Image.Input(
                    "images",
                    optional=True,
                    tooltip=(
                        "RGB views (N, H, W, 3), e.g. any image generator's multi-view output. Optional with a model."
                    ),
                ),
                io.Mask.Input(
                    "masks",
                    optional=True,
                    tooltip=(
                        "Object masks (N, H, W), 1 = object (the views' alpha). Without "
                        "masks only the colour is fitted (renders composited on white): "
                        "give views on a white background, as multi-view generators output."
                    ),
                ),
                MDCameras.Input("cameras", optional=True, tooltip="One camera per view, in the order of the images."),
                MDMultiViewModel.Input(
                    "mv_model", optional=True, tooltip="MVDream, ImageDream or Stable Zero123: turns on SIR."
                ),
                MDCondition.Input(
                    "condition",
                    optional=True,
                    tooltip="Prompt / image from MicroDreamer Condition (needed with a model).",
                ),
                io.Combo.Input(
                    "preset",
                    options=PRESET_CHOICES,
                    default="auto",
                    tooltip="Paper settings; auto = the preset of the connected model's kind.",
                ),
                io.Int.Input(
                    "iterations",
                    default=-1,
                    min=-1,
                    max=1000,
                    tooltip="SIR iterations K; -1 = the preset's (20 zero123, 30 imagedream / mvdream).",
                ),
                io.Int.Input(
                    "steps",
                    default=500,
                    min=1,
                    max=100000,
                    tooltip="Without a model only: optimiser steps of the plain reconstruction.",
                    **_compat.advanced(io.Int),
                ),
                io.Int.Input(
                    "resolution",
                    default=0,
                    min=0,
                    max=2048,
                    step=8,
                    tooltip="Render size. 0 = the preset's 256 with a model, the images' own size without one.",
                    **_compat.advanced(io.Int),
                ),
                io.Int.Input(
                    "image_size",
                    default=256,
                    min=32,
                    max=1024,
                    step=32,
                    tooltip="With a model: the size it samples at (trained at 256).",
                    **_compat.advanced(io.Int),
                ),
                io.Int.Input(
                    "seed",
                    default=0,
                    min=0,
                    max=0xFFFFFFFFFFFFFFFF,
                    control_after_generate=True,
                    tooltip="Seeds the initial Gaussians, the cameras and the diffusion noise.",
                ),
                io.Boolean.Input(
                    "invert_mask",
                    default=False,
                    tooltip="Use 1 - mask: turn on for masks where 1 = transparent (ComfyUI's LoadImage).",
                    **_compat.advanced(io.Boolean),
                ),
            ],
            outputs=[MDGaussians.Output("gaussians", display_name="gaussians")],
        )

    @classmethod
    def execute(
        cls,
        preset: str,
        iterations: int,
        steps: int,
        resolution: int,
        image_size: int,
        seed: int,
        invert_mask: bool,
        images=None,
        masks=None,
        cameras=None,
        mv_model=None,
        condition=None,
    ) -> io.NodeOutput:
        model = _vram.on_device(mv_model)
        return io.NodeOutput(
            reconstruct_3dgs(
                images,
                masks,
                cameras,
                model,
                condition,
                invert_mask=bool(invert_mask),
                preset=preset,
                iterations=None if iterations < 0 else int(iterations),
                steps=int(steps),
                resolution=int(resolution) or None,
                image_size=int(image_size),
                seed=int(seed) % 2**63,
                device=_comfy.torch_device(),
                progress=_comfy.progress_hook(),
                cancel=_comfy.cancel_hook(),
            )
        )
