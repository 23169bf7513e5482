"""The optimiser around the renderer: Adam on 3D Gaussians with the paper's learning rates and
densification (METHOD.md, "Stage 1").

A :class:`GaussianFitter` renders the current Gaussians, takes a loss of the render and makes one
Adam step, densifying on the paper's schedule. Plain reconstruction (:mod:`.reconstruct`), SIR
and SDS all fit through it, so they share every detail of the optimisation; :class:`FitRuntime`
is the part of their settings that says where and how a fit runs.

No step waits for the device: the loss stays on it and a :class:`LossLog` reads the losses to the
host (and checks them for NaN / inf) once every ``check_every`` steps, and Adam is PyTorch's fused
kernel where the parameters are on CUDA (on the CPU it is the plain per-tensor Adam, so CPU results
stay as they were).
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

__all__ = ["LearningRates", "FitRuntime", "GaussianFitter", "LossLog", "seeded"]


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
    "cuda"), the background the renders are composited on, the Gaussian rasteriser and how many
    steps run between two reads of the loss on the host (see :class:`LossLog`)."""

    seed: int = 0
    device: str = "auto"
    background: tuple[float, float, float] = (1.0, 1.0, 1.0)
    gaussian_backend: GaussianBackend = "auto"
    check_every: int = 10


@contextmanager
def seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Torch's global generators (the CPU's and ``device``'s) seeded with ``seed`` inside the
    block and restored after it: a fit's randomness depends on its seed alone, and the caller's
    random stream is left as it was."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        yield


class LossLog:
    """The losses of a run of optimiser steps, kept on the device and read on the host in batches.

    Reading a loss (``float(loss)``, ``if not torch.isfinite(loss)``) makes the host wait for the
    device: on a GPU it drains the queue of kernels every step. Here :meth:`record` only keeps the
    (detached) tensor; every ``check_every`` records, and whenever :meth:`read` is called, the
    pending ones come to the host in one transfer and are checked: a NaN or inf raises
    FloatingPointError naming its step, at most ``check_every - 1`` steps after it was made (the
    steps in between have run on non-finite values, which no longer matters once it raises).
    """

    def __init__(self, what: str, check_every: int = 10):
        if check_every < 1:
            raise ValueError(f"check_every must be >= 1, got {check_every}")
        self.what = what
        self.check_every = check_every
        self._values: list[float] = []
        self._pending: list[Tensor] = []

    def __len__(self) -> int:
        return len(self._values) + len(self._pending)

    def record(self, loss: Tensor) -> None:
        """Keep ``loss`` (a scalar tensor, not read now); read the pending ones every ``check_every``."""
        self._pending.append(loss.detach())
        if len(self._pending) >= self.check_every:
            self.read()

    def read(self) -> list[float]:
        """Every recorded loss as a float (one host sync for those not read yet); raises
        FloatingPointError if one of them is not finite."""
        if self._pending:
            first = len(self._values)
            values = torch.stack(self._pending).tolist()
            self._pending.clear()
            for i, v in enumerate(values):
                if not math.isfinite(v):
                    raise FloatingPointError(
                        f"{self.what} became {v} at step {first + i} "
                        f"(found when reading steps {first}-{first + len(values) - 1})"
                    )
            self._values.extend(values)
        return list(self._values)


class GaussianFitter:
    """Optimiser state for a set of Gaussians: parameters, Adam, LR schedule and densification."""

    def __init__(
        self,
        gaussians: Gaussians,
        lr: LearningRates | None = None,
        densify: DensifyConfig | None = None,
        background: tuple[float, float, float] = (1.0, 1.0, 1.0),
        backend: GaussianBackend = "auto",
        check_every: int = 10,
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
        # Fused Adam (one kernel for all parameters) on CUDA; the CPU keeps the per-tensor Adam
        # whose results the CPU tests pin down.
        self.optimizer = torch.optim.Adam(
            [{"params": [self.params[n]], "lr": rates[n], "name": n} for n in Gaussians.PARAMS],
            lr=0.0,
            eps=1e-15,
            fused=True if gaussians.device.type == "cuda" else None,
        )
        self.strategy = DensifyStrategy(densify or DensifyConfig())
        self.background = torch.as_tensor(background, dtype=torch.float32, device=gaussians.device)
        self.backend = backend
        self.step_count = 0
        self.log = LossLog("reconstruction loss", check_every)

    @classmethod
    def for_runtime(
        cls, gaussians: Gaussians, lr: LearningRates, densify: DensifyConfig, runtime: FitRuntime
    ) -> GaussianFitter:
        """A fitter that renders as ``runtime`` says (its background and Gaussian rasteriser)."""
        return cls(gaussians, lr, densify, runtime.background, runtime.gaussian_backend, runtime.check_every)

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
    ) -> Tensor:
        """One optimiser step against (B, H, W, 3) targets, ``L1sum(render, target) / B`` plus
        ``mask_weight * L1sum(alpha, target_alpha) / B``; returns the loss (detached, on the
        device: reading it waits for the device, :meth:`losses` reads them in batches). ``extra_loss()``
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

    def step_loss(self, cameras: Cameras, loss_fn: Callable[[RenderOutput], Tensor]) -> Tensor:
        """One optimiser step with any loss of the render: render ``cameras``, ``loss_fn(render)``
        (a scalar), backward, Adam step and the densification bookkeeping; returns the loss
        (detached, on the device) and records it in :attr:`log`, which raises FloatingPointError
        within ``check_every`` steps of a non-finite loss. Score distillation
        (:mod:`~..pipeline.sds`) uses it to share this machinery with SIR."""
        for group in self.optimizer.param_groups:
            if group["name"] == "means":
                group["lr"] = self.lr.position(self.step_count)
        out = self.render(cameras)
        loss = loss_fn(out)
        self.log.record(loss)
        self.strategy.pre_backward(out)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.step_count += 1
        self.strategy.post_backward(self.step_count, self.params, self.optimizer, out)
        return loss.detach()

    def losses(self) -> list[float]:
        """The loss of every step so far, as floats (reads the pending ones: one host sync)."""
        return self.log.read()

    def finalize(self) -> Gaussians:
        """Check the last losses, apply the final clean-up prune and return detached Gaussians."""
        self.log.read()
        self.strategy.final_cleanup(self.params, self.optimizer)
        return self.gaussians.detach()
