"""Score-based iterative reconstruction (SIR) of 3D Gaussians: MicroDreamer's stage 1.

METHOD.md, "Stage 1". The outer loop has ``1 + K`` diffusion calls:

0. initialisation: sample the multi-view model from pure noise at the preset's cameras and fit
   the Gaussians to those views for ``init_steps`` Adam steps (or fit to views the user brings);
1. SIR iteration ``k = 0..K-1``: draw cameras, render them once, turn the renders into better
   targets by one hybrid forward + reverse sampling at ``t2 = sir_t2_schedule(...)[k]``, then take
   ``I = steps_per_iteration`` Adam steps against those cached targets.

Cameras are drawn around the input photo's elevation (``Condition.reference_elevation``), and
azimuth 0 is the input view, the object's front, for every model (see :mod:`.cameras`).

The loss is ``L1sum(render, target) / B`` on renders clamped to [0, 1], plus for image-to-3D
presets with a reference term ``w_rgb * L1sum(front_render, input_rgb) + w_mask *
MSEsum(front_alpha, input_mask)`` at the input photo's camera. Densification follows the
optimiser's global step count (steps 100, 200, 300); at the end come the final clean-up prune and
the reference's floater filter (:mod:`.floaters`).

Each diffusion call is counted in NFEs on the model (``model.nfe``), so a run reports what it
really spent. All randomness (Gaussian init, cameras, diffusion noise) derives from ``seed``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from ..diffusion.models import Condition, MultiViewModel
from ..diffusion.sampling import ForwardMode, refine_views, sample
from ..diffusion.schedules import DDIMSchedule, sir_iteration_nfes, sir_t2_schedule
from ..errors import InputError, check_cancel
from ..fit.densify import DensifyConfig
from ..fit.floaters import FloaterFilterConfig, remove_floaters
from ..fit.reconstruct import GaussianFitter, LearningRates
from ..runtime import resolve_device
from ..scene.cameras import (
    CAMERA_PRESETS,
    CameraPreset,
    Cameras,
    front_camera,
    sample_orbit_cameras,
)
from ..scene.gaussians import Gaussians, init_ball
from ..scene.views import PosedViews
from .image_prep import rgb_alpha_at

__all__ = ["SIRConfig", "SIRResult", "IterationInfo", "run_sir"]

Progress = Callable[[int, int], None]


@dataclass
class SIRConfig:
    """Every setting of one SIR run. The defaults are the Zero123 preset (see :mod:`.presets`).

    Attributes:
        iterations: K, the number of SIR iterations (diffusion calls after the initialisation).
        steps_per_iteration: I, Adam steps per cached set of targets (15 in the paper).
        init_steps: Adam steps fitted to the initial views (call 0).
        denoise_steps: DDIM grid size of the diffusion calls (20: 951..1, 10: 901..1).
        t_start, t_end: the fraction of the grid where the t2 schedule starts and ends.
        inv_ratio: ``t1 ~ inv_ratio * t2`` in the hybrid forward process.
        forward_mode: "hybrid" (paper), "inversion" or "noise" (the paper's ablations).
        cameras: how each iteration draws its B views.
        resolution: render / target size in pixels; image_size: the diffusion model's size.
        guidance_scale, eta: None = the model's paper values.
        reference_rgb_weight, reference_mask_weight: the front-view reference term (0 = off).
        reference_radius: camera distance of the front (input) view (the reference: the
            preset's camera radius).
        num_init, init_radius, init_opacity: the initial ball of Gaussians.
        init_mask_weight: weight of the alpha term when fitting views the user brings with masks.
        floaters: the final floater filter (None = off).
    """

    iterations: int = 20
    steps_per_iteration: int = 15
    init_steps: int = 15
    denoise_steps: int = 20
    t_start: float = 0.9
    t_end: float = 0.2
    inv_ratio: float = 0.6
    forward_mode: ForwardMode = "hybrid"
    cameras: CameraPreset = field(default_factory=lambda: CAMERA_PRESETS["zero123"])
    resolution: int = 256
    image_size: int = 256
    guidance_scale: float | None = None
    eta: float | None = None
    reference_rgb_weight: float = 0.3
    reference_mask_weight: float = 0.01
    reference_radius: float = 2.0
    num_init: int = 5000
    init_radius: float = 0.5
    init_opacity: float = 0.1
    init_mask_weight: float = 1.0
    lr: LearningRates = field(default_factory=LearningRates)
    densify: DensifyConfig = field(default_factory=DensifyConfig)
    floaters: FloaterFilterConfig | None = field(default_factory=FloaterFilterConfig)
    background: tuple[float, float, float] = (1.0, 1.0, 1.0)
    seed: int = 0
    backend: str = "auto"
    device: str = "auto"

    @property
    def schedule(self) -> DDIMSchedule:
        return DDIMSchedule(num_inference_steps=self.denoise_steps)

    def t2_schedule(self) -> list[int]:
        """t2 of every SIR iteration (METHOD.md's sequences for the paper presets)."""
        return sir_t2_schedule(self.schedule, self.t_start, self.t_end, self.iterations)

    @property
    def total_steps(self) -> int:
        return self.init_steps + self.iterations * self.steps_per_iteration

    def planned_nfes(self, sample_init: bool = True) -> int:
        """NFEs the run will take: the initial sampling plus inversion + sampling per iteration."""
        per_iteration = 0
        for t2 in self.t2_schedule():
            counts = sir_iteration_nfes(self.schedule, t2, self.inv_ratio)
            inversion = {"hybrid": counts.inversion, "noise": 0}.get(
                self.forward_mode, sum(1 for t in self.schedule.inverse_timesteps if int(t) <= t2) - 1)
            per_iteration += inversion + counts.sampling
        return (self.denoise_steps if sample_init else 0) + per_iteration

    def validate(self) -> None:
        for name in ("iterations", "steps_per_iteration", "init_steps"):
            if getattr(self, name) < 0:
                raise InputError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 < self.t_end <= self.t_start <= 1.0:
            raise InputError(f"need 0 < t_end <= t_start <= 1 (got t_start={self.t_start}, t_end={self.t_end})")
        if self.resolution < 16:
            raise InputError(f"resolution must be at least 16 pixels, got {self.resolution}")


@dataclass
class IterationInfo:
    """What one SIR iteration did (passed to ``on_iteration`` and kept in the result)."""

    index: int
    iterations: int
    t2: int
    nfe: int
    loss: float
    gaussians: int
    seconds: float


@dataclass
class SIRResult:
    """The fitted Gaussians, what the run spent and its intermediate images (CPU, (V, H, W, 3)).

    ``reference_camera``: the input photo's camera of the reference term (None without one);
    ``floaters_removed``: how many Gaussians the floater filter took out.
    """

    gaussians: Gaussians
    losses: list[float]
    timings: dict[str, float]
    nfe: dict[str, int]
    t2: list[int]
    iterations: list[IterationInfo]
    init_views: Tensor | None = None
    last_targets: Tensor | None = None
    densify_history: list[dict] = field(default_factory=list)
    reference_camera: Cameras | None = None
    floaters_removed: int = 0


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _plain(t: Tensor) -> Tensor:
    return t.clone() if t.is_inference() else t


def _reference_targets(condition: Condition | None, config: SIRConfig, device: torch.device):
    """The input photo's camera (azimuth 0 = the front, at the condition's elevation) with the
    input image there: (1, R, R, 3) rgb on white and (1, R, R) alpha; None without a reference term."""
    if condition is None or condition.image is None:
        return None
    if config.reference_rgb_weight <= 0 and config.reference_mask_weight <= 0:
        return None
    rgb, alpha = rgb_alpha_at(condition.image, config.resolution)
    cam = front_camera(condition.reference_elevation, config.reference_radius, config.resolution, config.cameras.fovy_deg).to(device)
    return cam, _plain(rgb[None].to(device)), _plain(alpha[None].to(device))


def reference_loss(fitter: GaussianFitter, reference, rgb_weight: float, mask_weight: float) -> Tensor:
    """The front-view term ``w_rgb * L1sum(rgb, input_rgb) + w_mask * MSEsum(alpha, input_mask)``
    for ``reference = _reference_targets(...)``, rendered (clamped) by the fitter."""
    cam, rgb, alpha = reference
    out = fitter.render(cam)
    return rgb_weight * (out.rgb - rgb).abs().sum() + mask_weight * ((out.alpha[..., 0] - alpha) ** 2).sum()


def run_sir(
    model: MultiViewModel,
    condition: Condition,
    config: SIRConfig | None = None,
    init_views: PosedViews | None = None,
    progress: Progress | None = None,
    cancel: Callable[[], object] | None = None,
    on_iteration: Callable[[IterationInfo], None] | None = None,
) -> SIRResult:
    """Run SIR with ``model`` conditioned on ``condition``; returns the Gaussians.

    ``init_views``: posed views to fit in call 0 instead of sampling the model from noise
    ("bring your own views"); with ``config.iterations = 0`` this is a pure reconstruction.
    ``progress(done, total)`` counts NFEs plus Adam steps; ``cancel()`` is checked before every
    step and every NFE (it may raise, or return True to raise :class:`~.errors.Cancelled`).
    Works under ``torch.inference_mode()`` (ComfyUI): gradients are switched on inside.
    """
    cfg = config or SIRConfig()
    cfg.validate()
    if model is None and (init_views is None or cfg.iterations > 0):
        raise InputError("SIR iterations need a multi-view diffusion model: connect one, or set iterations to 0 and give views")
    with torch.inference_mode(False), torch.enable_grad():
        return _run(model, condition, cfg, init_views, progress, cancel, on_iteration)


def _run(model, condition, cfg: SIRConfig, init_views, progress, cancel, on_iteration) -> SIRResult:
    device = resolve_device(cfg.device)
    gen = torch.Generator().manual_seed(cfg.seed)
    t2s = cfg.t2_schedule()
    planned = cfg.planned_nfes(sample_init=init_views is None) if model is not None else 0
    total = planned + cfg.total_steps
    nfe0 = model.nfe if model is not None else 0
    steps_done = 0
    timings = {"init_sampling": 0.0, "init_fit": 0.0, "diffusion": 0.0, "optimise": 0.0}

    def report(*_):
        if progress is not None:
            progress(min(steps_done + ((model.nfe - nfe0) if model is not None else 0), total), total)

    start = time.perf_counter()
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(cfg.seed)
        g0 = init_ball(cfg.num_init, cfg.init_radius, cfg.init_opacity, generator=gen)
        fitter = GaussianFitter(g0.to(device), cfg.lr, cfg.densify, cfg.background, cfg.backend)
        ref = _reference_targets(condition, cfg, device)
        elevation = condition.reference_elevation if condition is not None else 0.0
        extra = None if ref is None else (lambda: reference_loss(fitter, ref, cfg.reference_rgb_weight, cfg.reference_mask_weight))
        losses: list[float] = []

        def fit(cams: Cameras, target_rgb: Tensor, target_alpha: Tensor | None, steps: int, mask_weight: float, where: str) -> None:
            nonlocal steps_done
            for i in range(steps):
                check_cancel(cancel, f"{where}, step {i}/{steps}")
                losses.append(fitter.step(cams, target_rgb, target_alpha, mask_weight, extra))
                steps_done += 1
                report()

        # ---- call 0: initial views --------------------------------------------------------
        t0 = time.perf_counter()
        if init_views is not None:
            views = init_views.resized(cfg.resolution) if init_views.cameras.width != cfg.resolution else init_views
            cams0 = views.cameras.to(device)
            cams0 = Cameras(_plain(cams0.c2w), _plain(cams0.fovy), cams0.width, cams0.height, cams0.near, cams0.far)
            images = _plain(views.images.to(device))
            init_rgb = PosedViews(images, cams0).rgb_on(cfg.background)
            init_alpha, mask_w = images[..., 3], cfg.init_mask_weight
        else:
            cams0 = sample_orbit_cameras(cfg.cameras, cfg.resolution, gen, reference_elevation=elevation).to(device)
            result = sample(model, condition, cams0.with_resolution(cfg.image_size), steps=cfg.denoise_steps,
                            guidance_scale=cfg.guidance_scale, eta=cfg.eta, seed=cfg.seed, image_size=cfg.image_size,
                            progress=report, cancel=cancel)
            init_rgb = _resize(result.images, cfg.resolution).to(device)
            init_alpha, mask_w = None, 0.0
        _sync(device)
        timings["init_sampling"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        fit(cams0, init_rgb, init_alpha, cfg.init_steps, mask_w, "SIR initialisation")
        _sync(device)
        timings["init_fit"] = time.perf_counter() - t0
        init_nfe = (model.nfe - nfe0) if model is not None else 0

        # ---- SIR iterations -----------------------------------------------------------------
        infos: list[IterationInfo] = []
        targets = None
        for k, t2 in enumerate(t2s):
            check_cancel(cancel, f"SIR iteration {k}/{len(t2s)}")
            t_iter = time.perf_counter()
            nfe_before = model.nfe
            cams = sample_orbit_cameras(cfg.cameras, cfg.resolution, gen, reference_elevation=elevation).to(device)
            with torch.no_grad():
                renders = fitter.render(cams).rgb.detach()
            refined = refine_views(model, renders, cams.with_resolution(cfg.image_size), condition, t2,
                                   steps=cfg.denoise_steps, inv_ratio=cfg.inv_ratio, mode=cfg.forward_mode,
                                   guidance_scale=cfg.guidance_scale, eta=cfg.eta, seed=cfg.seed + 1 + k,
                                   image_size=cfg.image_size, progress=report, cancel=cancel)
            targets = _resize(refined.images, cfg.resolution).to(device)
            _sync(device)
            t_opt = time.perf_counter()
            timings["diffusion"] += t_opt - t_iter
            first = len(losses)
            fit(cams, targets, None, cfg.steps_per_iteration, 0.0, f"SIR iteration {k}")
            _sync(device)
            timings["optimise"] += time.perf_counter() - t_opt
            info = IterationInfo(k, len(t2s), t2, model.nfe - nfe_before,
                                 sum(losses[first:]) / max(len(losses) - first, 1), fitter.gaussians.num,
                                 time.perf_counter() - t_iter)
            infos.append(info)
            if on_iteration is not None:
                on_iteration(info)

        t0 = time.perf_counter()
        gaussians = fitter.finalize()
        removed = 0
        if cfg.floaters is not None:
            gaussians, removed = remove_floaters(gaussians, cfg.floaters, cfg.backend)
        timings["cleanup"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - start
    spent = (model.nfe - nfe0) if model is not None else 0
    nfe = {"init": init_nfe, "iterations": spent - init_nfe, "total": spent}
    return SIRResult(gaussians.to("cpu"), losses, timings, nfe, t2s, infos, init_rgb.detach().cpu(),
                     None if targets is None else targets.cpu(), fitter.strategy.history,
                     None if ref is None else ref[0].to("cpu"), removed)


def _resize(images: Tensor, size: int) -> Tensor:
    """(V, H, W, 3) -> (V, size, size, 3)."""
    if images.shape[1] == size and images.shape[2] == size:
        return images
    x = F.interpolate(images.permute(0, 3, 1, 2), (size, size), mode="bilinear", align_corners=False, antialias=True)
    return x.permute(0, 2, 3, 1).contiguous()
