"""Multi-view reconstruction: fit 3D Gaussians to posed images by pixel-space optimisation.

This is SIR's inner loop (METHOD.md, "Stage 1"): render the views, compare with the targets by
``L1(render, target, reduction='sum') / B``, and take an Adam step with the paper's per-parameter
learning rates, densifying on the paper's schedule. :class:`GaussianFitter` holds that state so
the SIR loop can feed it new targets every iteration; :func:`reconstruct` runs it on fixed views.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

import torch
from torch import Tensor

from ..errors import InputError, check_cancel
from ..render.gaussians import render_gaussians
from ..scene.cameras import Cameras
from ..scene.gaussians import Gaussians, init_ball
from ..scene.views import PosedViews
from .densify import DensifyConfig, DensifyStrategy
from ..runtime import resolve_device

if TYPE_CHECKING:
    from ..render.gaussians import RenderOutput

__all__ = ["LearningRates", "ReconstructConfig", "ReconstructResult", "GaussianFitter", "reconstruct"]

ProgressFn = Callable[[int, int], None]
CancelFn = Callable[[], object]


@dataclass
class LearningRates:
    """Adam learning rates per parameter (the paper's values). The position rate decays
    exponentially from ``position_init`` to ``position_final`` over ``position_max_steps``."""

    position_init: float = 0.01
    position_final: float = 0.0002
    position_max_steps: int = 500
    color: float = 0.01
    color_rest: float = 0.0005  # higher-order SH, colour / 20 as in 3DGS
    opacity: float = 0.05
    scale: float = 0.005
    rotation: float = 0.0005

    def position(self, step: int) -> float:
        t = min(max(step / max(self.position_max_steps, 1), 0.0), 1.0)
        return math.exp(math.log(self.position_init) * (1 - t) + math.log(self.position_final) * t)


@dataclass
class ReconstructConfig:
    """Settings of a pure multi-view reconstruction.

    ``mask_weight`` adds ``mask_weight * L1sum(alpha, mask) / B``: with posed RGBA views the masks
    are known, and they pin the silhouette where the object's colour matches the background.
    """

    steps: int = 500
    resolution: int | None = None
    seed: int = 0
    background: tuple[float, float, float] = (1.0, 1.0, 1.0)
    num_init: int = 5000
    init_radius: float = 0.5
    init_opacity: float = 0.1
    sh_degree: int = 0
    mask_weight: float = 1.0
    lr: LearningRates = field(default_factory=LearningRates)
    densify: DensifyConfig = field(default_factory=DensifyConfig)
    backend: str = "auto"
    device: str = "auto"


@dataclass
class ReconstructResult:
    gaussians: Gaussians
    losses: list[float]
    seconds: float
    densify_history: list[dict]


class GaussianFitter:
    """Optimiser state for a set of Gaussians: parameters, Adam, LR schedule and densification."""

    def __init__(self, gaussians: Gaussians, lr: LearningRates | None = None,
                 densify: DensifyConfig | None = None, background=(1.0, 1.0, 1.0), backend: str = "auto"):
        self.lr = lr or LearningRates()
        self.params = {name: torch.nn.Parameter(t.detach().clone()) for name, t in gaussians.params().items()}
        rates = {"means": self.lr.position_init, "scales": self.lr.scale, "quats": self.lr.rotation,
                 "opacities": self.lr.opacity, "sh0": self.lr.color, "shN": self.lr.color_rest}
        self.optimizer = torch.optim.Adam(
            [{"params": [self.params[n]], "lr": rates[n], "name": n} for n in Gaussians.PARAMS], lr=0.0, eps=1e-15
        )
        self.strategy = DensifyStrategy(densify or DensifyConfig())
        self.background = torch.as_tensor(background, dtype=torch.float32, device=gaussians.device)
        self.backend = backend
        self.step_count = 0

    @property
    def gaussians(self) -> Gaussians:
        """The current Gaussians (live parameters: differentiable)."""
        return Gaussians(**self.params)

    def render(self, cameras: Cameras) -> RenderOutput:
        """Render the current Gaussians with colours clamped to [0, 1], as the reference's
        renderer returns them: colour beyond white or black earns no loss and gets no gradient."""
        out = render_gaussians(self.gaussians, cameras, self.background, self.backend)
        return dataclasses.replace(out, rgb=out.rgb.clamp(0.0, 1.0))

    def step(self, cameras: Cameras, target_rgb: Tensor, target_alpha: Tensor | None = None,
             mask_weight: float = 0.0, extra_loss: Callable[[], Tensor] | None = None) -> float:
        """One optimiser step against (B, H, W, 3) targets; returns the loss value.
        ``extra_loss()`` adds a term of its own (SIR's reference view renders through
        :meth:`render` too)."""
        b = target_rgb.shape[0]

        def loss_fn(out: RenderOutput) -> Tensor:
            loss = (out.rgb - target_rgb).abs().sum() / b
            if target_alpha is not None and mask_weight > 0:
                loss = loss + mask_weight * (out.alpha[..., 0] - target_alpha).abs().sum() / b
            if extra_loss is not None:
                loss = loss + extra_loss()
            return loss

        return self.step_loss(cameras, loss_fn)

    def step_loss(self, cameras: Cameras, loss_fn: Callable[[RenderOutput], Tensor]) -> float:
        """One optimiser step with any loss of the render: render ``cameras``, ``loss_fn(render)``
        (a scalar), backward, Adam step and the densification bookkeeping; returns the loss value.
        Score distillation (:mod:`.sds`) uses it to share this machinery with SIR."""
        for group in self.optimizer.param_groups:
            if group["name"] == "means":
                group["lr"] = self.lr.position(self.step_count)
        out = self.render(cameras)
        loss = loss_fn(out)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"reconstruction loss became {loss.item()} at step {self.step_count}")
        self.strategy.pre_backward(out)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.step_count += 1
        self.strategy.post_backward(self.step_count, self.params, self.optimizer, out)
        return float(loss.detach())

    def finalize(self) -> Gaussians:
        """Apply the final clean-up prune and return detached Gaussians."""
        self.strategy.final_cleanup(self.params, self.optimizer)
        return self.gaussians.detach()


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
    """Fit Gaussians to posed RGBA views (white-background L1, optional mask term).

    ``progress(step, total)`` is called after each step; ``cancel()`` before each step, and may
    raise (ComfyUI's interrupt) or return True (raises :class:`Cancelled`) to stop.
    Deterministic for a fixed ``config.seed`` on CPU. Works when called under
    ``torch.inference_mode()`` (as ComfyUI runs nodes): gradients are switched back on inside.
    """
    with torch.inference_mode(False), torch.enable_grad():
        return _reconstruct(views, config, gaussians, progress, cancel)


def _plain(t: Tensor) -> Tensor:
    """A copy autograd can save, for tensors created under inference mode."""
    return t.clone() if t.is_inference() else t


def _reconstruct(views, config, gaussians, progress, cancel) -> ReconstructResult:
    cfg = config or ReconstructConfig()
    if cfg.steps < 0:
        raise InputError(f"steps must be >= 0, got {cfg.steps}")
    if not isinstance(views, PosedViews):
        raise InputError(f"reconstruct needs PosedViews (images with their cameras), got {type(views).__name__}")
    _check_views(views)
    device = resolve_device(cfg.device)
    if cfg.resolution is not None:
        views = views.resized(cfg.resolution)
    cams = views.cameras.to(device)
    cams = Cameras(_plain(cams.c2w), _plain(cams.fovy), cams.width, cams.height, cams.near, cams.far)
    images = _plain(views.images.to(device))
    target_rgb = PosedViews(images, cams).rgb_on(cfg.background)
    target_alpha = images[..., 3]

    start = time.perf_counter()
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(cfg.seed)
        if gaussians is None:
            gen = torch.Generator().manual_seed(cfg.seed)
            gaussians = init_ball(cfg.num_init, cfg.init_radius, cfg.init_opacity, sh_degree=cfg.sh_degree, generator=gen)
        fitter = GaussianFitter(gaussians.to(device).map(_plain), cfg.lr, cfg.densify, cfg.background, cfg.backend)
        losses = []
        for step in range(cfg.steps):
            check_cancel(cancel, f"reconstruction at step {step}/{cfg.steps}")
            losses.append(fitter.step(cams, target_rgb, target_alpha, cfg.mask_weight))
            if progress is not None:
                progress(step + 1, cfg.steps)
        result = fitter.finalize()
    return ReconstructResult(result, losses, time.perf_counter() - start, fitter.strategy.history)
