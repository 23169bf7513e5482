"""Diffusion schedules of MicroDreamer: the DDIM grid, its inverse, and SIR's timestep schedule.

Everything follows METHOD.md ("Timestep schedule", "Hybrid forward process"): a DDIM scheduler
with scaled-linear betas 0.00085..0.012 over 1000 training steps, "leading" spacing with
``steps_offset = 1`` and ``set_alpha_to_one = False``, epsilon prediction. The SIR loop picks one
timestep ``t2`` per iteration from that grid (float quirk included: ``20 * (1 - 0.9)`` is
1.9999..., so ``int()`` gives 1), pushes renders to ``t1 ~ inv_ratio * t2`` on the ascending
inverse grid, inverts ``t1 -> t2`` and samples back. The schedule is independent of any model,
as in diffusers, and agrees with diffusers' ``DDIMScheduler`` / ``DDIMInverseScheduler`` (tests).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import torch
from torch import Tensor

from ..errors import InputError

__all__ = ["DDIMSchedule", "sir_t2_schedule", "inversion_t1", "sir_iteration_nfes", "SIRStepCounts"]


@dataclass(frozen=True)
class DDIMSchedule:
    """The DDIM timestep grid and update rules (epsilon prediction)."""

    num_inference_steps: int = 20
    num_train_timesteps: int = 1000
    beta_start: float = 0.00085
    beta_end: float = 0.012
    steps_offset: int = 1

    def __post_init__(self) -> None:
        if not 1 <= self.num_inference_steps <= self.num_train_timesteps:
            raise InputError(
                f"the DDIM grid needs 1 to {self.num_train_timesteps} steps (got {self.num_inference_steps})"
            )

    @cached_property
    def alphas_cumprod(self) -> Tensor:
        """(T,) cumulative products of 1 - beta, scaled-linear betas, float32 as diffusers keeps them."""
        betas = (
            torch.linspace(self.beta_start**0.5, self.beta_end**0.5, self.num_train_timesteps, dtype=torch.float32) ** 2
        )
        return torch.cumprod(1.0 - betas, dim=0)

    @property
    def step_ratio(self) -> int:
        return self.num_train_timesteps // self.num_inference_steps

    @cached_property
    def timesteps(self) -> Tensor:
        """Descending sampling grid, "leading" spacing: e.g. 951, 901, ..., 1 for 20 steps."""
        return (torch.arange(self.num_inference_steps) * self.step_ratio).flip(0) + self.steps_offset

    @cached_property
    def inverse_timesteps(self) -> Tensor:
        """Ascending inversion grid: 1, 51, ..., 951 for 20 steps."""
        return self.timesteps.flip(0)

    def _alpha(self, t: int) -> Tensor:
        # set_alpha_to_one=False: "before the first step" uses alpha_cumprod[0], not 1.
        return self.alphas_cumprod[t] if t >= 0 else self.alphas_cumprod[0]

    def step(self, eps: Tensor, t: int, x: Tensor, eta: float = 0.0, noise: Tensor | None = None) -> Tensor:
        """One DDIM denoising step from grid timestep ``t`` to ``t - step_ratio``.

        ``eta`` scales the stochastic part (0: deterministic DDIM, 1: DDPM-like); ``noise`` is the
        Gaussian noise it uses (required when ``eta > 0``, so callers control the randomness).
        """
        a_t, a_prev = self._alpha(t), self._alpha(t - self.step_ratio)
        x0 = (x - (1 - a_t).sqrt() * eps) / a_t.sqrt()
        variance = (1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)
        std = eta * variance.sqrt()
        out = a_prev.sqrt() * x0 + (1 - a_prev - std**2).sqrt() * eps
        if eta > 0:
            if noise is None:
                raise ValueError("DDIM step with eta > 0 needs the noise tensor")
            out = out + std * noise
        return out

    def inverse_step(self, eps: Tensor, t_next: int, x: Tensor) -> Tensor:
        """One DDIM inversion step from ``t_next - step_ratio`` up to grid timestep ``t_next``.

        As in diffusers' inverse scheduler, it is called with the *higher* (target) timestep.
        """
        t = min(t_next - self.step_ratio, self.num_train_timesteps - 1)
        a_t = self.alphas_cumprod[t] if t >= 0 else self.alphas_cumprod[0]
        a_next = self.alphas_cumprod[t_next]
        x0 = (x - (1 - a_t).sqrt() * eps) / a_t.sqrt()
        return a_next.sqrt() * x0 + (1 - a_next).sqrt() * eps

    def nearest_timestep(self, t: int) -> int:
        """The grid timestep closest to ``t`` (what a user-given "t" means on this grid)."""
        return int(self.timesteps[(self.timesteps - int(t)).abs().argmin()])

    def sampling_steps(self, t_start: int) -> int:
        """How many reverse-sampling steps start at ``t_start`` (grid timesteps <= it)."""
        return int((self.timesteps <= t_start).sum())

    def add_noise(self, x0: Tensor, noise: Tensor, t: int) -> Tensor:
        """One-shot forward diffusion q(x_t | x_0)."""
        a = self.alphas_cumprod[t]
        return a.sqrt() * x0 + (1 - a).sqrt() * noise


def sir_t2_schedule(schedule: DDIMSchedule, t_start: float, t_end: float, iterations: int) -> list[int]:
    """The per-iteration timestep t2 of SIR (METHOD.md), with the reference's float arithmetic."""
    n = schedule.num_inference_steps
    start, end = n * (1 - t_start), n * (1 - t_end)
    return [int(schedule.timesteps[int(k / iterations * (end - start) + start)]) for k in range(iterations)]


def inversion_t1(schedule: DDIMSchedule, t2: int, inv_ratio: float = 0.6) -> int:
    """t1 ~ inv_ratio * t2 snapped to the ascending inversion grid: where noise-adding stops and
    DDIM inversion takes over."""
    n = schedule.num_inference_steps
    return int(schedule.inverse_timesteps[int(t2 / schedule.num_train_timesteps * n * inv_ratio)])


@dataclass(frozen=True)
class SIRStepCounts:
    """UNet evaluations (NFEs; one CFG-doubled batch counts once) of one SIR iteration."""

    t1: int
    t2: int
    inversion: int  # unconditional inversion steps t1 -> t2
    sampling: int  # CFG sampling steps over grid timesteps <= t2


def sir_iteration_nfes(schedule: DDIMSchedule, t2: int, inv_ratio: float = 0.6) -> SIRStepCounts:
    t1 = inversion_t1(schedule, t2, inv_ratio)
    grid = schedule.inverse_timesteps
    inversion = int(((grid > t1) & (grid <= t2)).sum())
    sampling = schedule.sampling_steps(t2)
    return SIRStepCounts(t1, t2, inversion, sampling)
