"""Score distillation (SDS) of 3D Gaussians: the DreamGaussian-style baseline SIR is compared with.

METHOD.md, "The idea in one paragraph": SDS takes one gradient step per diffusion call, so it
needs ~500 NFEs and backpropagates through the VAE encoder; SIR reuses each diffusion call for 15
pixel-space steps. To compare the two fairly, this module builds SDS from SIR's own parts: the
same camera sampler, renderer, :class:`~.reconstruct.GaussianFitter` (Adam learning rates,
densification, final clean-up), reference-view loss and multi-view model.

One SDS step (``step = 1..steps``):

1. draw B cameras (:func:`~.cameras.sample_orbit_cameras`), render them at ``resolution``;
2. VAE-encode the renders at ``image_size`` *with* gradient -> latents ``z`` (model dtype);
3. ``t = sds_timestep(step, steps)``: linear annealing from 980 down to 20 (DreamGaussian's
   schedule, ``round((1 - step / steps) * 1000)`` clipped to ``[t_min, t_max]``);
4. ``z_t = q_sample(z, noise, t)``; one CFG-doubled UNet call (1 NFE, no gradient) -> ``eps``;
5. ``grad = w(t) * (eps - noise)`` with ``w(t) = 1 - alphas_cumprod[t]`` of our DDPM schedule
   (:class:`~.schedules.DDIMSchedule`), and the loss ``0.5 * sum((z - (z - grad).detach())^2) / B``,
   whose gradient with respect to ``z`` is ``grad / B``;
6. plus SIR's reference-view term for image presets; backward, Adam step, densification.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields

import torch
import torch.nn.functional as F
from torch import Tensor

from ..diffusion.models import Condition, MultiViewModel
from ..diffusion.schedules import DDIMSchedule
from ..errors import InputError, check_cancel
from ..fit.densify import DensifyConfig
from ..fit.reconstruct import GaussianFitter, LearningRates
from ..runtime import resolve_device
from ..scene.cameras import CAMERA_PRESETS, CameraPreset, sample_orbit_cameras
from ..scene.gaussians import Gaussians, init_ball
from .sir import SIRConfig, _reference_targets, _sync, reference_loss

__all__ = ["SDSConfig", "SDSResult", "run_sds", "sds_timestep", "sds_weight"]

Progress = Callable[[int, int], None]


def sds_timestep(step: int, steps: int, t_min: int = 20, t_max: int = 980, num_train_timesteps: int = 1000) -> int:
    """The timestep of SDS step ``step`` (counted from 1) of ``steps``: linearly annealed,
    ``round((1 - step / steps) * 1000)`` clipped to ``[t_min, t_max]`` (DreamGaussian's schedule:
    980 at the start, 20 at the end). Python's round, i.e. halves go to even."""
    ratio = min(step / max(steps, 1), 1.0)
    return int(min(max(round((1.0 - ratio) * num_train_timesteps), t_min), t_max))


def sds_weight(t: int, schedule: DDIMSchedule | None = None) -> float:
    """SDS weight ``w(t) = 1 - alphas_cumprod[t]`` (the forward process's noise variance)."""
    return float(1.0 - (schedule or DDIMSchedule()).alphas_cumprod[t])


@dataclass
class SDSConfig:
    """Settings of one SDS run. Every field but ``steps``, ``t_min`` and ``t_max`` has the same
    meaning as in :class:`~.sir.SIRConfig`; :meth:`from_sir` copies them, so a comparison uses
    identical cameras, renderer, learning rates, densification and reference-view loss.

    ``guidance_scale`` None = the model's paper value (as SIR). DreamGaussian runs SDS with larger
    CFG than sampling uses; set it explicitly to compare at other values.
    """

    steps: int = 500
    t_min: int = 20
    t_max: int = 980
    cameras: CameraPreset = field(default_factory=lambda: CAMERA_PRESETS["zero123"])
    resolution: int = 256
    image_size: int = 256
    guidance_scale: float | None = None
    reference_rgb_weight: float = 0.3
    reference_mask_weight: float = 0.01
    reference_radius: float = 2.0
    num_init: int = 5000
    init_radius: float = 0.5
    init_opacity: float = 0.1
    lr: LearningRates = field(default_factory=LearningRates)
    densify: DensifyConfig = field(default_factory=DensifyConfig)
    background: tuple[float, float, float] = (1.0, 1.0, 1.0)
    seed: int = 0
    backend: str = "auto"
    device: str = "auto"

    @classmethod
    def from_sir(cls, sir: SIRConfig, steps: int = 500) -> "SDSConfig":
        """The SDS run that matches ``sir``: every shared field copied (deep copies), ``steps`` set."""
        shared = {f.name for f in fields(cls)} & {f.name for f in fields(SIRConfig)}
        return cls(steps=steps, **{name: copy.deepcopy(getattr(sir, name)) for name in shared})

    def timesteps(self) -> list[int]:
        """The timestep of every step, in order."""
        return [sds_timestep(s, self.steps, self.t_min, self.t_max) for s in range(1, self.steps + 1)]

    def validate(self) -> None:
        if self.steps < 0:
            raise InputError(f"steps must be >= 0, got {self.steps}")
        if not 0 <= self.t_min <= self.t_max < 1000:
            raise InputError(f"need 0 <= t_min <= t_max < 1000 (got t_min={self.t_min}, t_max={self.t_max})")
        if self.resolution < 16:
            raise InputError(f"resolution must be at least 16 pixels, got {self.resolution}")


@dataclass
class SDSResult:
    """The fitted Gaussians (CPU), the loss per step, seconds per part and the NFEs spent.

    ``timings``: ``render`` (novel and reference views), ``vae_encode`` (forward only),
    ``diffusion`` (conditioning + UNet), ``backward_step`` (backward incl. through the VAE
    encoder, Adam, densification), ``cleanup`` and ``total``; CUDA-synchronised.
    """

    gaussians: Gaussians
    losses: list[float]
    timings: dict[str, float]
    nfe: int
    timesteps: list[int] = field(default_factory=list)
    densify_history: list[dict] = field(default_factory=list)


def run_sds(
    model: MultiViewModel,
    condition: Condition,
    config: SDSConfig | None = None,
    progress: Progress | None = None,
    cancel: Callable[[], object] | None = None,
) -> SDSResult:
    """Fit Gaussians to ``model`` conditioned on ``condition`` by score distillation.

    ``progress(done, steps)`` after every step; ``cancel()`` before every step (it may raise, or
    return True to raise :class:`~.errors.Cancelled`). Deterministic for a fixed seed on CPU.
    Works under ``torch.inference_mode()`` as long as the model's weights are ordinary tensors
    (gradients flow through the VAE encoder, so its weights are saved for backward).
    """
    cfg = config or SDSConfig()
    cfg.validate()
    if model is None:
        raise InputError("score distillation needs a multi-view diffusion model: connect one")
    with torch.inference_mode(False), torch.enable_grad():
        return _run(model, condition, cfg, progress, cancel)


def _run(model: MultiViewModel, condition: Condition, cfg: SDSConfig, progress, cancel) -> SDSResult:
    device = resolve_device(cfg.device)
    gen = torch.Generator().manual_seed(cfg.seed)  # Gaussian init, then cameras (as SIR)
    noise_gen = torch.Generator().manual_seed(cfg.seed + 1)  # VAE posterior samples and SDS noise
    schedule = DDIMSchedule()
    gs = model.defaults.guidance_scale if cfg.guidance_scale is None else cfg.guidance_scale
    ts = cfg.timesteps()
    nfe0 = model.nfe
    timings = dict.fromkeys(("render", "vae_encode", "diffusion", "backward_step"), 0.0)
    losses: list[float] = []

    start = time.perf_counter()
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(cfg.seed)
        g0 = init_ball(cfg.num_init, cfg.init_radius, cfg.init_opacity, generator=gen)
        fitter = GaussianFitter(g0.to(device), cfg.lr, cfg.densify, cfg.background, cfg.backend)
        ref = _reference_targets(condition, cfg, device)  # type: ignore[arg-type]  # duck-typed config
        elevation = condition.reference_elevation

        for i, t in enumerate(ts):
            check_cancel(cancel, f"SDS step {i}/{cfg.steps}")
            cams = sample_orbit_cameras(cfg.cameras, cfg.resolution, gen, reference_elevation=elevation).to(device)
            w = sds_weight(t, schedule)
            clock = [time.perf_counter()]

            def lap(part: str) -> None:
                _sync(device)
                now = time.perf_counter()
                timings[part] += now - clock[0]
                clock[0] = now

            def loss_fn(out) -> Tensor:
                lap("render")
                b = out.rgb.shape[0]
                images = _resize_bchw(out.rgb.permute(0, 3, 1, 2), cfg.image_size)
                latents = model.encode_images(images, generator=noise_gen)  # with gradient, model dtype
                lap("vae_encode")
                with torch.no_grad():
                    prepared = model.prepare(condition, cams.with_resolution(cfg.image_size), cfg.image_size)
                    noise = torch.randn(latents.shape, generator=noise_gen, dtype=torch.float32).to(latents.device)
                    noisy = schedule.add_noise(latents.detach().float(), noise, t).to(latents.dtype)
                    eps = model.predict_noise(noisy, t, prepared, gs)
                    grad = w * (eps.float() - noise)
                lap("diffusion")
                z = latents.float()
                loss = 0.5 * ((z - (z - grad).detach()) ** 2).sum() / b
                if ref is not None:
                    loss = loss + reference_loss(fitter, ref, cfg.reference_rgb_weight, cfg.reference_mask_weight)
                    lap("render")
                return loss

            losses.append(fitter.step_loss(cams, loss_fn))
            lap("backward_step")
            if progress is not None:
                progress(i + 1, cfg.steps)

        t0 = time.perf_counter()
        gaussians = fitter.finalize()
        timings["cleanup"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - start
    return SDSResult(gaussians.to("cpu"), losses, timings, model.nfe - nfe0, ts, fitter.strategy.history)


def _resize_bchw(images: Tensor, size: int) -> Tensor:
    """(B, 3, H, W) -> (B, 3, size, size), differentiable (bilinear, antialiased when shrinking)."""
    if images.shape[-2:] == (size, size):
        return images
    return F.interpolate(images, (size, size), mode="bilinear", align_corners=False, antialias=True)
