"""The optimiser around the renderer: Adam on 3D Gaussians with the paper's learning rates and
densification (METHOD.md, "Stage 1").

A :class:`GaussianFitter` renders the current Gaussians, takes a loss of the render and makes one
Adam step, densifying on the paper's schedule. Plain reconstruction (:mod:`.reconstruct`), SIR
and SDS all fit through it, so they share every detail of the optimisation; :class:`FitRuntime`
is the part of their settings that says where and how a fit runs.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from ..render.backends import GaussianBackend
from ..render.gaussians import render_gaussians
from ..scene.cameras import Cameras
from ..scene.gaussians import Gaussians
from .densify import DensifyConfig, DensifyStrategy

if TYPE_CHECKING:
    from ..render.gaussians import RenderOutput

__all__ = ["LearningRates", "FitRuntime", "GaussianFitter", "seeded"]


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
class FitRuntime:
    """Where and how a fit runs: the seed of all its randomness, the device ("auto", "cpu",
    "cuda"), the background the renders are composited on and the Gaussian rasteriser."""

    seed: int = 0
    device: str = "auto"
    background: tuple[float, float, float] = (1.0, 1.0, 1.0)
    gaussian_backend: GaussianBackend = "auto"


@contextmanager
def seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Torch's global generators (the CPU's and ``device``'s) seeded with ``seed`` inside the
    block and restored after it: a fit's randomness depends on its seed alone, and the caller's
    random stream is left as it was."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        yield


class GaussianFitter:
    """Optimiser state for a set of Gaussians: parameters, Adam, LR schedule and densification."""

    def __init__(
        self,
        gaussians: Gaussians,
        lr: LearningRates | None = None,
        densify: DensifyConfig | None = None,
        background: tuple[float, float, float] = (1.0, 1.0, 1.0),
        backend: GaussianBackend = "auto",
    ):
        self.lr = lr or LearningRates()
        self.params = {name: torch.nn.Parameter(t.detach().clone()) for name, t in gaussians.params().items()}
        rates = {
            "means": self.lr.position_init,
            "scales": self.lr.scale,
            "quats": self.lr.rotation,
            "opacities": self.lr.opacity,
            "sh0": self.lr.color,
            "shN": self.lr.color_rest,
        }
        self.optimizer = torch.optim.Adam(
            [{"params": [self.params[n]], "lr": rates[n], "name": n} for n in Gaussians.PARAMS], lr=0.0, eps=1e-15
        )
        self.strategy = DensifyStrategy(densify or DensifyConfig())
        self.background = torch.as_tensor(background, dtype=torch.float32, device=gaussians.device)
        self.backend = backend
        self.step_count = 0

    @classmethod
    def for_runtime(
        cls, gaussians: Gaussians, lr: LearningRates, densify: DensifyConfig, runtime: FitRuntime
    ) -> GaussianFitter:
        """A fitter that renders as ``runtime`` says (its background and Gaussian rasteriser)."""
        return cls(gaussians, lr, densify, runtime.background, runtime.gaussian_backend)

    @property
    def gaussians(self) -> Gaussians:
        """The current Gaussians (live parameters: differentiable)."""
        return Gaussians(**self.params)

    def render(self, cameras: Cameras) -> RenderOutput:
        """Render the current Gaussians with colours clamped to [0, 1], as the reference's
        renderer returns them: colour beyond white or black earns no loss and gets no gradient."""
        out = render_gaussians(self.gaussians, cameras, self.background, self.backend)
        return dataclasses.replace(out, rgb=out.rgb.clamp(0.0, 1.0))

    def step(
        self,
        cameras: Cameras,
        target_rgb: Tensor,
        target_alpha: Tensor | None = None,
        mask_weight: float = 0.0,
        extra_loss: Callable[[], Tensor] | None = None,
    ) -> float:
        """One optimiser step against (B, H, W, 3) targets, ``L1sum(render, target) / B`` plus
        ``mask_weight * L1sum(alpha, target_alpha) / B``; returns the loss value. ``extra_loss()``
        adds a term of its own (SIR's reference view renders through :meth:`render` too)."""
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
        Score distillation (:mod:`~..pipeline.sds`) uses it to share this machinery with SIR."""
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
