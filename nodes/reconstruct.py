"""SIR reconstruction of 3D Gaussians from posed views."""

from __future__ import annotations

from comfy_api.latest import io

from microdreamer_core.reconstruct import ReconstructConfig, reconstruct
from microdreamer_core.views import PosedViews

from . import _comfy
from .types import MDCameras, MDGaussians


class MicroDreamerSIRReconstruct3DGS(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="MicroDreamerSIRReconstruct3DGS",
            display_name="SIR Reconstruct 3DGS",
            category="MicroDreamer/reconstruction",
            description=(
                "Fits 3D Gaussians to posed views by pixel-space optimisation (MicroDreamer's SIR "
                "reconstruction step): starts from a ball of Gaussians, then runs `steps` Adam steps of "
                "L1 loss against the images composited on white plus an L1 mask term, densifying and "
                "pruning on the paper's schedule. Images, masks and cameras must list the same views "
                "in the same order. Deterministic for a fixed seed on CPU."
            ),
            inputs=[
                io.Image.Input("images", tooltip="RGB views (N, H, W, 3); colour outside the object is ignored through the mask."),
                io.Mask.Input("masks", tooltip="Object masks (N, H, W), 1 = object (the views' alpha). For LoadImage masks (1 = transparent) turn on invert_mask."),
                MDCameras.Input("cameras", tooltip="One camera per view, in the order of the images."),
                io.Int.Input("steps", default=500, min=1, max=100000,
                             tooltip="Optimiser steps (one step renders every view once)."),
                io.Int.Input("resolution", default=0, min=0, max=2048, step=8,
                             tooltip="Square size the views are resized to before fitting; 0 keeps the images' size. Non-square views need 0."),
                io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=True,
                             tooltip="Seeds the initial Gaussians and the optimisation."),
                io.Boolean.Input("invert_mask", default=False,
                                 tooltip="Use 1 - mask: turn on for masks where 1 = transparent (ComfyUI's LoadImage)."),
            ],
            outputs=[MDGaussians.Output("gaussians", display_name="gaussians")],
        )

    @classmethod
    def execute(cls, images, masks, cameras, steps: int, resolution: int, seed: int,
                invert_mask: bool) -> io.NodeOutput:
        config = ReconstructConfig(steps=int(steps), resolution=int(resolution) or None, seed=int(seed),
                                   device=_comfy.torch_device())
        views = PosedViews.from_images_and_masks(images, masks, cameras, invert_mask)
        result = reconstruct(views, config, progress=_comfy.progress_hook(steps), cancel=_comfy.cancel_hook())
        return io.NodeOutput(result.gaussians)
