"""3D Gaussians from whatever a host has: posed views, a multi-view model with a condition, or both.

One call decides how (the SIR Reconstruct 3DGS node is this function):

* views without a model: the plain multi-view reconstruction (:func:`~..fit.reconstruct.reconstruct`);
* a model and a condition: SIR (:func:`~.sir.run_sir`) with the preset of the model's kind,
  starting from the views when there are some, else sampling them from noise.

Views without masks count as all object: their alpha is then not fitted (it would fill every view
with opaque background), only their colour on white, as for the views SIR samples itself.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor

from ..diffusion.models import Condition, MultiViewModel
from ..errors import InputError
from ..fit.fitter import FitRuntime
from ..fit.reconstruct import ReconstructConfig, reconstruct
from ..runtime import CancelFn, ProgressFn
from ..scene.cameras import Cameras
from ..scene.gaussians import Gaussians
from ..scene.views import PosedViews
from .presets import check_preset_kind, get_preset
from .sir import run_sir

__all__ = ["reconstruct_3dgs"]


def reconstruct_3dgs(
    images: Tensor | None = None,
    masks: Tensor | None = None,
    cameras: Cameras | None = None,
    model: MultiViewModel | None = None,
    condition: Condition | None = None,
    *,
    invert_mask: bool = False,
    preset: str = "auto",
    iterations: int | None = None,
    steps: int = 500,
    resolution: int | None = None,
    image_size: int = 256,
    seed: int = 0,
    device: str = "auto",
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
) -> Gaussians:
    """The Gaussians of the inputs given (see the module docstring).

    ``images`` (N, H, W, 3), ``masks`` (N, H, W) with 1 = object (``invert_mask`` for 1 =
    background) and ``cameras`` are posed views: images and cameras together or not at all,
    masks optional. ``preset`` "auto" = the model kind's; ``iterations`` None = the preset's K;
    ``steps``: Adam steps of the plain reconstruction only; ``resolution`` None = the preset's
    with a model, the views' own without; ``image_size``: the size the model samples at.
    """
    views = _posed_views(images, masks, cameras, invert_mask)
    fit_alpha = masks is not None
    if model is None:
        if views is None:
            raise InputError(
                "nothing to reconstruct: connect images + cameras (plain "
                "reconstruction), or a multi-view model and a condition (SIR)"
            )
        config = ReconstructConfig(steps=steps, resolution=resolution, runtime=FitRuntime(seed=seed, device=device))
        if not fit_alpha:
            config = dataclasses.replace(config, mask_weight=0.0)
        return reconstruct(views, config, progress=progress, cancel=cancel).gaussians
    if condition is None:
        raise InputError(
            "SIR with a model needs a condition: connect a MicroDreamer Condition node (prompt and/or image)"
        )
    p = get_preset(model.kind if preset == "auto" else preset)
    check_preset_kind(p, model.kind, fix=f"choose 'auto' or '{model.kind}'")
    p = p.with_overrides(seed=seed, iterations=iterations, device=device)
    sir = dataclasses.replace(p.sir, image_size=image_size, resolution=resolution or p.sir.resolution)
    if views is not None and not fit_alpha:
        sir = dataclasses.replace(sir, init_mask_weight=0.0)
    return run_sir(model, condition, sir, init_views=views, progress=progress, cancel=cancel).gaussians


def _posed_views(
    images: Tensor | None, masks: Tensor | None, cameras: Cameras | None, invert_mask: bool
) -> PosedViews | None:
    """Posed views from the optional inputs; without masks the whole image counts as object."""
    if images is None and cameras is None:
        return None
    if images is None or cameras is None:
        raise InputError(
            "views need both images and cameras: connect both, or neither (to sample the initial views from the model)"
        )
    if masks is None:
        masks, invert_mask = torch.ones(images.shape[:3]), False
    return PosedViews.from_images_and_masks(images, masks, cameras, invert_mask)
