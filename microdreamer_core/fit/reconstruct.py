"""Multi-view reconstruction: fit 3D Gaussians to posed images by pixel-space optimisation.

This is SIR's inner loop (METHOD.md, "Stage 1") on fixed views: render the views, compare with
the targets by ``L1(render, target, reduction='sum') / B`` and take an Adam step of the
:class:`~.fitter.GaussianFitter`, densifying on the paper's schedule.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
from torch import Tensor

from ..errors import InputError, check_cancel
from ..runtime import CancelFn, ProgressFn, autograd_safe, resolve_device
from ..scene.cameras import Cameras
from ..scene.gaussians import Gaussians
from ..scene.views import PosedViews
from .densify import DensifyConfig
from .fitter import FitRuntime, GaussianFitter, LearningRates, seeded
from .init import InitialGaussians

__all__ = ["ReconstructConfig", "ReconstructResult", "reconstruct", "view_targets"]


@dataclass
class ReconstructConfig:
    """Settings of a pure multi-view reconstruction.

    ``resolution`` None fits the views at their own size. ``mask_weight`` adds
    ``mask_weight * L1sum(alpha, mask) / B``: with posed RGBA views the masks are known, and they
    pin the silhouette where the object's colour matches the background.
    """

    steps: int = 500
    resolution: int | None = None
    init: InitialGaussians = field(default_factory=InitialGaussians)
    mask_weight: float = 1.0
    lr: LearningRates = field(default_factory=LearningRates)
    densify: DensifyConfig = field(default_factory=DensifyConfig)
    runtime: FitRuntime = field(default_factory=FitRuntime)


@dataclass
class ReconstructResult:
    gaussians: Gaussians
    losses: list[float]
    seconds: float
    densify_history: list[dict]


def view_targets(
    views: PosedViews, device: torch.device, background: tuple[float, float, float]
) -> tuple[Cameras, Tensor, Tensor]:
    """Posed RGBA views as fitting targets on ``device``: the cameras, the (B, H, W, 3) colours
    composited on ``background`` and the (B, H, W) alpha, all safe for autograd."""
    cams = views.cameras.to(device)
    cams = Cameras(autograd_safe(cams.c2w), autograd_safe(cams.fovy), cams.width, cams.height, cams.near, cams.far)
    images = autograd_safe(views.images.to(device))
    return cams, PosedViews(images, cams).rgb_on(background), images[..., 3]


def _check_views(views: PosedViews) -> None:
    coverage = views.masks.flatten(1).amax(dim=1)
    empty = (coverage < 0.5).nonzero().flatten().tolist()
    if len(empty) == len(views):
        raise InputError("every view is fully transparent: the masks/alpha contain no object")


def reconstruct(
    views: PosedViews,
    config: ReconstructConfig | None = None,
    gaussians: Gaussians | None = None,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
) -> ReconstructResult:
    """Fit Gaussians to posed RGBA views (L1 on the background colour, optional mask term),
    starting from ``gaussians`` or the config's initial ball.

    ``progress(step, total)`` is called after each step; ``cancel()`` before each step, and may
    raise (ComfyUI's interrupt) or return True (raises :class:`Cancelled`) to stop.
    Deterministic for a fixed ``config.runtime.seed`` on CPU. Works when called under
    ``torch.inference_mode()`` (as ComfyUI runs nodes): gradients are switched back on inside.
    """
    with torch.inference_mode(False), torch.enable_grad():
        return _reconstruct(views, config or ReconstructConfig(), gaussians, progress, cancel)


def _reconstruct(
    views: PosedViews,
    cfg: ReconstructConfig,
    gaussians: Gaussians | None,
    progress: ProgressFn | None,
    cancel: CancelFn | None,
) -> ReconstructResult:
    if cfg.steps < 0:
        raise InputError(f"steps must be >= 0, got {cfg.steps}")
    if not isinstance(views, PosedViews):
        raise InputError(f"reconstruct needs PosedViews (images with their cameras), got {type(views).__name__}")
    _check_views(views)
    run = cfg.runtime
    device = resolve_device(run.device)
    if cfg.resolution is not None:
        views = views.resized(cfg.resolution)
    cams, target_rgb, target_alpha = view_targets(views, device, run.background)

    start = time.perf_counter()
    with seeded(run.seed, device):
        if gaussians is None:
            gaussians = cfg.init.sample(torch.Generator().manual_seed(run.seed))
        fitter = GaussianFitter.for_runtime(gaussians.to(device).map(autograd_safe), cfg.lr, cfg.densify, run)
        for step in range(cfg.steps):
            check_cancel(cancel, f"reconstruction at step {step}/{cfg.steps}")
            fitter.step(cams, target_rgb, target_alpha, cfg.mask_weight)
            if progress is not None:
                progress(step + 1, cfg.steps)
        result = fitter.finalize()
    return ReconstructResult(result, fitter.losses(), time.perf_counter() - start, fitter.strategy.history)
