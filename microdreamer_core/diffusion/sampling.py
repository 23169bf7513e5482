"""The two diffusion operations SIR needs, for any :class:`~.models.MultiViewModel`.

* :func:`sample`: multi-view sampling from pure noise (SIR's initialisation, call 0): every DDIM
  step of the grid with CFG.
* :func:`hybrid_forward` then :func:`reverse_sample` (together :func:`refine_views`): encode the
  renders, noise them to ``t1 ~ inv_ratio * t2``, DDIM-invert ``t1 -> t2`` with the unconditional
  prediction, then DDIM-sample back to 0 with CFG and the model's eta (METHOD.md, "Hybrid forward
  process" and "Reverse sampling"). ``mode="inversion"`` / ``"noise"`` are the paper's ablations.

Each UNet call is one NFE (a CFG-doubled batch counts once) and is counted on ``model.nfe``.
Randomness comes from one CPU ``torch.Generator`` seeded by ``seed``, so the noise is the same for
a fixed seed whatever the device (the results then differ only by the device's arithmetic).

No host sync per NFE, so a GPU queues UNet calls back to back: the noise of all of a loop's steps
is drawn up front (the same draws, in the same order, as one per step) and goes to the device in
one asynchronous copy from pinned memory; the NaN check writes one flag per step on the device and
reads them back every :data:`NAN_CHECK_EVERY` steps and after the last one, raising the same error
at the first bad step. (Per call, not per NFE, there remain the VAE posterior noise, the q-sample
noise and the decoded images' copy to the CPU.) The UNet call itself can be compiled or captured
in a CUDA graph: :mod:`.accelerate`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from ..errors import InputError, check_cancel
from ..runtime import CancelFn, ProgressFn
from ..scene.cameras import Cameras
from ..scene.images import check_images, composite, resize_bchw
from .models import Condition, MultiViewModel, Prepared
from .schedules import DDIMSchedule, inversion_t1

__all__ = [
    "SampleResult",
    "sample",
    "hybrid_forward",
    "reverse_sample",
    "refine_views",
    "ForwardMode",
    "to_bchw",
    "NAN_CHECK_EVERY",
]

ForwardMode = Literal["hybrid", "inversion", "noise"]

NAN_CHECK_EVERY = 5
"""Reverse sampling reads its on-device NaN flags back every this many steps (one host sync each)."""


@dataclass
class SampleResult:
    """Decoded views (V, H, W, 3) float32 in [0, 1] on CPU, their latents and the NFEs used."""

    images: Tensor
    latents: Tensor
    nfe: int


def _to_device(x: Tensor, device: torch.device) -> Tensor:
    """A CPU tensor on ``device`` without a host sync (pinned memory, asynchronous copy on CUDA)."""
    if device.type == "cuda":
        return x.pin_memory().to(device, non_blocking=True)
    return x.to(device)


def _noise(shape, generator: torch.Generator, like: Tensor, count: int | None = None) -> Tensor:
    """Standard normal noise of ``shape`` from the CPU ``generator``, on ``like``'s device; with
    ``count``, that many draws one after the other, stacked (count, *shape)."""
    if count is None:
        return _to_device(torch.randn(shape, generator=generator, dtype=torch.float32), like.device)
    draws = [torch.randn(shape, generator=generator, dtype=torch.float32) for _ in range(count)]
    return _to_device(torch.stack(draws) if draws else torch.empty(0, *shape), like.device)


def _raise_if_not_finite(finite: Tensor, steps: list[int]) -> None:
    """Raise at the first step whose latents were not finite (``finite[i]``: after ``steps[i]``);
    reading the flags is the one host sync."""
    if not bool(finite.all()):
        t = steps[int((~finite).nonzero()[0])]
        raise FloatingPointError(f"sampling produced NaN at t={t}: try float32 (dtype=fp32) or a lower guidance scale")


def to_bchw(images: Tensor) -> Tensor:
    """Accept (V, H, W, 3|4) (ComfyUI IMAGE, RGBA composited on white) or (V, 3, H, W) in [0, 1]."""
    if images.ndim != 4:
        raise InputError(f"images have shape {tuple(images.shape)}; expected a batch (V, H, W, 3)")
    if images.shape[-1] in (3, 4) and images.shape[1] not in (3,):
        if images.shape[-1] == 4:
            images = composite(images)
        images = images.permute(0, 3, 1, 2)
    if images.shape[1] != 3:
        raise InputError(f"images have shape {tuple(images.shape)}; expected RGB (V, H, W, 3)")
    check_images(images.permute(0, 2, 3, 1), "the images")
    return images.float().clamp(0, 1)


def _prepare(model: MultiViewModel, condition: Condition | Prepared, cameras: Cameras, image_size: int) -> Prepared:
    prepared = condition if isinstance(condition, Prepared) else model.prepare(condition, cameras, image_size)
    if prepared.num_views != len(cameras):
        raise InputError(
            f"conditioning was prepared for {prepared.num_views} views but {len(cameras)} cameras were given"
        )
    return prepared


def _setup(
    model: MultiViewModel,
    condition: Condition | Prepared,
    cameras: Cameras,
    steps: int,
    guidance_scale: float | None,
    eta: float | None,
    seed: int,
    image_size: int,
) -> tuple[Prepared, DDIMSchedule, torch.Generator, float, float]:
    """What both operations start with: the prepared condition, the grid, the seeded generator and
    the guidance / eta (the model's paper values where ``None``)."""
    gs = model.defaults.guidance_scale if guidance_scale is None else guidance_scale
    eta = model.defaults.eta if eta is None else eta
    if not 0 <= int(seed) < 2**64:  # what torch.Generator takes
        raise InputError(f"seed must be between 0 and 2^64 - 1 (got {seed})")
    schedule = DDIMSchedule(num_inference_steps=steps)
    prepared = _prepare(model, condition, cameras, image_size)
    return prepared, schedule, torch.Generator().manual_seed(int(seed)), gs, eta


def _latent_shape(model: MultiViewModel, views: int, size: int) -> tuple[int, int, int, int]:
    if size < model.vae_factor or size % model.vae_factor:
        raise InputError(
            f"image size {size} is not a multiple of {model.vae_factor}; use 256 (the models' training size)"
        )
    return (views, model.unet.config.get("out_channels", 4), size // model.vae_factor, size // model.vae_factor)


@torch.no_grad()
def reverse_sample(
    model: MultiViewModel,
    latents: Tensor,
    t_start: int,
    prepared: Prepared,
    schedule: DDIMSchedule,
    guidance_scale: float,
    eta: float,
    generator: torch.Generator,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
) -> Tensor:
    """DDIM with CFG over every grid timestep ``<= t_start`` (down to clean latents).

    Non-finite latents raise :class:`FloatingPointError` naming the first bad step, at most
    :data:`NAN_CHECK_EVERY` - 1 steps after it (the flags are read back in groups)."""
    steps = [int(t) for t in schedule.timesteps if int(t) <= t_start]
    x = latents.float()
    noise = _noise(x.shape, generator, x, count=len(steps)) if eta > 0 else None
    finite = torch.ones(len(steps), dtype=torch.bool, device=x.device)
    for i, t in enumerate(steps):
        check_cancel(cancel, "multi-view sampling")
        eps = model.predict_noise(x, t, prepared, guidance_scale)
        x = schedule.step(eps, t, x, eta=eta, noise=None if noise is None else noise[i])
        finite[i] = torch.isfinite(x).all()
        if (i + 1) % NAN_CHECK_EVERY == 0 or i + 1 == len(steps):
            _raise_if_not_finite(finite[: i + 1], steps)
        if progress is not None:
            progress(i + 1, len(steps))
    return x


@torch.no_grad()
def sample(
    model: MultiViewModel,
    condition: Condition | Prepared,
    cameras: Cameras,
    steps: int = 20,
    guidance_scale: float | None = None,
    eta: float | None = None,
    seed: int = 0,
    image_size: int = 256,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
) -> SampleResult:
    """Sample ``len(cameras)`` views from pure noise (t = 1000): all ``steps`` DDIM steps with
    CFG. ``guidance_scale`` / ``eta`` default to the model's paper values."""
    prepared, schedule, generator, gs, eta = _setup(
        model, condition, cameras, steps, guidance_scale, eta, seed, image_size
    )
    start = model.nfe
    x = _noise(_latent_shape(model, len(cameras), image_size), generator, torch.empty(0, device=model.device))
    x = reverse_sample(model, x, schedule.num_train_timesteps, prepared, schedule, gs, eta, generator, progress, cancel)
    images = model.decode_latents(x)
    return SampleResult(images.permute(0, 2, 3, 1).cpu(), x.cpu(), model.nfe - start)


@torch.no_grad()
def hybrid_forward(
    model: MultiViewModel,
    images: Tensor,
    prepared: Prepared,
    t2: int,
    schedule: DDIMSchedule,
    inv_ratio: float = 0.6,
    mode: ForwardMode = "hybrid",
    generator: torch.Generator | None = None,
    cancel: CancelFn | None = None,
) -> Tensor:
    """Renders (V, 3, H, W) -> latents at ``t2`` (a grid timestep).

    ``hybrid``: q-sample to ``t1 = inversion_t1(t2)``, then unconditional DDIM inversion
    ``t1 -> t2``; ``inversion``: invert the clean latents all the way from the first grid step;
    ``noise``: q-sample straight to ``t2``.
    """
    if t2 not in set(int(t) for t in schedule.timesteps):
        raise InputError(
            f"t2={t2} is not on the {schedule.num_inference_steps}-step DDIM grid {schedule.timesteps.tolist()}"
        )
    generator = generator or torch.Generator().manual_seed(0)
    x0 = model.encode_images(images, generator=generator).float()
    grid = [int(t) for t in schedule.inverse_timesteps]
    if mode == "noise":
        return schedule.add_noise(x0, _noise(x0.shape, generator, x0), t2)
    if mode == "hybrid":
        t1 = inversion_t1(schedule, t2, inv_ratio)
        x = schedule.add_noise(x0, _noise(x0.shape, generator, x0), t1)
    elif mode == "inversion":
        t1, x = grid[0], x0
    else:
        raise InputError(f"unknown forward mode {mode!r}: use 'hybrid', 'inversion' or 'noise'")
    for t_next in (t for t in grid if t1 < t <= t2):
        check_cancel(cancel, "DDIM inversion")
        eps = model.predict_noise(x, t_next - schedule.step_ratio, prepared, None)
        x = schedule.inverse_step(eps, t_next, x)
    return x


@torch.no_grad()
def refine_views(
    model: MultiViewModel,
    images: Tensor,
    cameras: Cameras,
    condition: Condition | Prepared,
    t2: int,
    steps: int = 20,
    inv_ratio: float = 0.6,
    mode: ForwardMode = "hybrid",
    guidance_scale: float | None = None,
    eta: float | None = None,
    seed: int = 0,
    image_size: int = 256,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
) -> SampleResult:
    """One SIR target computation: hybrid forward of ``images`` (renders of ``cameras``) to
    ``t2``, then reverse sampling with CFG; returns the refined views. Images are resized to
    ``image_size`` (256, the models' training size) first."""
    x = to_bchw(images)
    if len(x) != len(cameras):
        raise InputError(f"{len(x)} images but {len(cameras)} cameras: give one camera per view")
    x = resize_bchw(x, image_size)
    prepared, schedule, generator, gs, eta = _setup(
        model, condition, cameras, steps, guidance_scale, eta, seed, image_size
    )
    start = model.nfe
    xt = hybrid_forward(model, x, prepared, t2, schedule, inv_ratio, mode, generator, cancel)
    x0 = reverse_sample(model, xt, t2, prepared, schedule, gs, eta, generator, progress, cancel)
    images_out = model.decode_latents(x0)
    return SampleResult(images_out.permute(0, 2, 3, 1).cpu(), x0.cpu(), model.nfe - start)
