"""Score distillation (SDS) of 3D Gaussians: the DreamGaussian-style baseline SIR is compared with.

METHOD.md, "The idea in one paragraph": SDS takes one gradient step per diffusion call, so it
needs ~500 NFEs and backpropagates through the VAE encoder; SIR reuses each diffusion call for 15
pixel-space steps. To compare the two fairly, this module builds SDS from SIR's own parts: the
same camera sampler, renderer, :class:`~..fit.fitter.GaussianFitter` (Adam learning rates,
densification, final clean-up), reference-view loss and multi-view model.

One SDS step (``step = 1..steps``):

1. draw B cameras (:func:`~..scene.cameras.sample_orbit_cameras`), render them at ``resolution``;
2. VAE-encode the renders at ``image_size`` *with* gradient -> latents ``z`` (model dtype);
3. ``t = sds_timestep(step, steps)``: linear annealing from 980 down to 20 (DreamGaussian's
   schedule, ``round((1 - step / steps) * 1000)`` clipped to ``[t_min, t_max]``);
4. ``z_t = q_sample(z, noise, t)``; one CFG-doubled UNet call (1 NFE, no gradient) -> ``eps``;
5. ``grad = w(t) * (eps - noise)`` with ``w(t) = 1 - alphas_cumprod[t]`` of our DDPM schedule
   (:class:`~..diffusion.schedules.DDIMSchedule`), and the loss ``0.5 * sum((z - (z - grad).detach())^2) / B``,
   whose gradient with respect to ``z`` is ``grad / B``;
6. plus SIR's reference-view term for image presets; backward, Adam step, densification.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from ..diffusion.models import Condition, MultiViewModel
from ..diffusion.schedules import DDIMSchedule
from ..errors import InputError, check_cancel
from ..fit.densify import DensifyConfig
from ..fit.fitter import FitRuntime, GaussianFitter, LearningRates, seeded
from ..fit.init import InitialGaussians
from ..runtime import CancelFn, ProgressFn, resolve_device, sync
from ..scene.cameras import CAMERA_PRESETS, CameraPreset, Cameras, sample_orbit_cameras
from ..scene.gaussians import Gaussians
from ..scene.images import resize_bchw
from .reference import ReferenceImage, ReferenceView, reference_loss
from .sir import SIRConfig

if TYPE_CHECKING:
    from ..render.gaussians import RenderOutput

__all__ = ["SDSConfig", "SDSResult", "run_sds", "sds_timestep", "sds_weight"]


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
    reference: ReferenceView = field(default_factory=ReferenceView)
    init: InitialGaussians = field(default_factory=InitialGaussians)
    lr: LearningRates = field(default_factory=LearningRates)
    densify: DensifyConfig = field(default_factory=DensifyConfig)
    runtime: FitRuntime = field(default_factory=FitRuntime)

    @classmethod
    def from_sir(cls, sir: SIRConfig, steps: int = 500) -> SDSConfig:
        """The SDS run that matches ``sir``: every shared setting copied (deep copies), ``steps`` set."""
        s = copy.deepcopy(sir)
        return cls(
            steps=steps,
            cameras=s.cameras,
            resolution=s.resolution,
            image_size=s.image_size,
            guidance_scale=s.guidance_scale,
            reference=s.reference,
            init=s.init,
            lr=s.lr,
            densify=s.densify,
            runtime=s.runtime,
        )

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
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
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
        return _SDSRun(model, condition, cfg).run(progress, cancel)


class _SDSRun:
    """One SDS run: :meth:`run` is the step loop, :meth:`loss` the numbered steps 2-6 above."""

    def __init__(self, model: MultiViewModel, condition: Condition, cfg: SDSConfig):
        self.start = time.perf_counter()
        self.model, self.condition, self.cfg = model, condition, cfg
        self.device = resolve_device(cfg.runtime.device)
        self.gen = torch.Generator().manual_seed(cfg.runtime.seed)  # Gaussian init, then cameras (as SIR)
        self.noise_gen = torch.Generator().manual_seed(cfg.runtime.seed + 1)  # VAE posterior samples and SDS noise
        self.schedule = DDIMSchedule()
        self.guidance_scale = model.defaults.guidance_scale if cfg.guidance_scale is None else cfg.guidance_scale
        self.timings = dict.fromkeys(("render", "vae_encode", "diffusion", "backward_step"), 0.0)
        self.clock = self.start
        self.fitter = GaussianFitter.for_runtime(
            cfg.init.sample(self.gen).to(self.device), cfg.lr, cfg.densify, cfg.runtime
        )
        self.reference = cfg.reference.image(condition, cfg.resolution, cfg.cameras.fovy_deg, self.device)

    def run(self, progress: ProgressFn | None, cancel: CancelFn | None) -> SDSResult:
        cfg = self.cfg
        ts = cfg.timesteps()
        nfe0 = self.model.nfe
        with seeded(cfg.runtime.seed, self.device):
            for i, t in enumerate(ts):
                check_cancel(cancel, f"SDS step {i}/{cfg.steps}")
                cams = sample_orbit_cameras(
                    cfg.cameras, cfg.resolution, self.gen, reference_elevation=self.condition.reference_elevation
                ).to(self.device)
                self.clock = time.perf_counter()
                self.fitter.step_loss(cams, partial(self.loss, cams=cams, t=t))
                self.lap("backward_step")
                if progress is not None:
                    progress(i + 1, cfg.steps)
            t0 = time.perf_counter()
            gaussians = self.fitter.finalize()
            self.timings["cleanup"] = time.perf_counter() - t0
        self.timings["total"] = time.perf_counter() - self.start
        return SDSResult(
            gaussians.to("cpu"),
            self.fitter.losses(),
            self.timings,
            self.model.nfe - nfe0,
            ts,
            self.fitter.strategy.history,
        )

    def loss(self, out: RenderOutput, cams: Cameras, t: int) -> Tensor:
        """The SDS loss of the renders ``out`` from ``cams`` at timestep ``t`` (steps 2-6)."""
        self.lap("render")
        model, cfg = self.model, self.cfg
        images = resize_bchw(out.rgb.permute(0, 3, 1, 2), cfg.image_size)
        latents = model.encode_images(images, generator=self.noise_gen)  # with gradient, model dtype
        self.lap("vae_encode")
        with torch.no_grad():
            prepared = model.prepare(self.condition, cams.with_resolution(cfg.image_size), cfg.image_size)
            noise = torch.randn(latents.shape, generator=self.noise_gen, dtype=torch.float32).to(latents.device)
            noisy = self.schedule.add_noise(latents.detach().float(), noise, t).to(latents.dtype)
            eps = model.predict_noise(noisy, t, prepared, self.guidance_scale)
            grad = sds_weight(t, self.schedule) * (eps.float() - noise)
        self.lap("diffusion")
        z = latents.float()
        loss = 0.5 * ((z - (z - grad).detach()) ** 2).sum() / out.rgb.shape[0]
        if self.reference is not None:
            loss = loss + self.reference_term(self.reference)
            self.lap("render")
        return loss

    def reference_term(self, reference: ReferenceImage) -> Tensor:
        return reference_loss(self.fitter.render(reference.camera), reference, self.cfg.reference)

    def lap(self, part: str) -> None:
        """Add the seconds since the last lap (GPU work included) to ``timings[part]``."""
        sync(self.device)
        now = time.perf_counter()
        self.timings[part] += now - self.clock
        self.clock = now
