"""Score-based iterative reconstruction (SIR) of 3D Gaussians: MicroDreamer's stage 1.

METHOD.md, "Stage 1". The outer loop has ``1 + K`` diffusion calls:

0. initialisation: sample the multi-view model from pure noise at the preset's cameras and fit
   the Gaussians to those views for ``init_steps`` Adam steps (or fit to views the user brings);
1. SIR iteration ``k = 0..K-1``: draw cameras, render them once, turn the renders into better
   targets by one hybrid forward + reverse sampling at ``t2 = sir_t2_schedule(...)[k]``, then take
   ``I = steps_per_iteration`` Adam steps against those cached targets.

Cameras are drawn around the input photo's elevation (``Condition.reference_elevation``), and
azimuth 0 is the input view, the object's front, for every model (see :mod:`~..scene.cameras`).

The loss is ``L1sum(render, target) / B`` on renders clamped to [0, 1], plus for image-to-3D
presets with a reference term ``w_rgb * L1sum(front_render, input_rgb) + w_mask *
MSEsum(front_alpha, input_mask)`` at the input photo's camera (:mod:`.reference`). Densification follows the
optimiser's global step count (steps 100, 200, 300); at the end come the final clean-up prune and
the reference's floater filter (:mod:`~..fit.floaters`).

Each diffusion call is counted in NFEs on the model (``model.nfe``), so a run reports what it
really spent. All randomness (Gaussian init, cameras, diffusion noise) derives from ``runtime.seed``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial

import torch
from torch import Tensor

from ..diffusion.accelerate import UNetMode, accelerated_unet
from ..diffusion.models import Condition, MultiViewModel
from ..diffusion.sampling import ForwardMode, refine_views, sample
from ..diffusion.schedules import DDIMSchedule, sir_iteration_nfes, sir_t2_schedule
from ..errors import InputError, check_cancel
from ..fit.densify import DensifyConfig
from ..fit.fitter import FitRuntime, GaussianFitter, LearningRates, seeded
from ..fit.floaters import FloaterFilterConfig, remove_floaters
from ..fit.init import InitialGaussians
from ..fit.reconstruct import view_targets
from ..runtime import CancelFn, ProgressFn, resolve_device, sync
from ..scene.cameras import CAMERA_PRESETS, CameraPreset, Cameras, sample_orbit_cameras
from ..scene.gaussians import Gaussians
from ..scene.images import resize_images
from ..scene.views import PosedViews
from .progress import WorkProgress
from .reference import ReferenceImage, ReferenceView, reference_loss

__all__ = ["SIRConfig", "SIRResult", "IterationInfo", "run_sir"]


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
        reference: the front-view reference term (weights 0 = off) and its camera's radius.
        init: the initial ball of Gaussians.
        init_mask_weight: weight of the alpha term when fitting views the user brings with masks.
        lr, densify: the optimiser's learning rates and densification schedule.
        floaters: the final floater filter (None = off).
        runtime: seed, device, background and Gaussian rasteriser.
        unet_mode: how the UNet is called (:mod:`~..diffusion.accelerate`): "eager", "compile"
            (torch.compile; pays off only over many NFEs) or "cuda_graph" (CUDA only).
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
    reference: ReferenceView = field(default_factory=ReferenceView)
    init: InitialGaussians = field(default_factory=InitialGaussians)
    init_mask_weight: float = 1.0
    lr: LearningRates = field(default_factory=LearningRates)
    densify: DensifyConfig = field(default_factory=DensifyConfig)
    floaters: FloaterFilterConfig | None = field(default_factory=FloaterFilterConfig)
    runtime: FitRuntime = field(default_factory=FitRuntime)
    unet_mode: UNetMode = "eager"

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
                self.forward_mode, sum(1 for t in self.schedule.inverse_timesteps if int(t) <= t2) - 1
            )
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


def run_sir(
    model: MultiViewModel,
    condition: Condition,
    config: SIRConfig | None = None,
    init_views: PosedViews | None = None,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
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
        raise InputError(
            "SIR iterations need a multi-view diffusion model: connect one, or set iterations to 0 and give views"
        )
    with torch.inference_mode(False), torch.enable_grad(), accelerated_unet(model, cfg.unet_mode):
        return _SIRRun(model, condition, cfg, init_views, progress, cancel).run(on_iteration)


class _SIRRun:
    """One SIR run; :meth:`run` reads as the loop of the module docstring."""

    def __init__(
        self,
        model: MultiViewModel | None,
        condition: Condition | None,
        cfg: SIRConfig,
        init_views: PosedViews | None,
        progress: ProgressFn | None,
        cancel: CancelFn | None,
    ):
        self.start = time.perf_counter()
        self.model, self.condition, self.cfg, self.init_views, self.cancel = model, condition, cfg, init_views, cancel
        self.device = resolve_device(cfg.runtime.device)
        self.gen = torch.Generator().manual_seed(cfg.runtime.seed)  # the initial Gaussians, then every camera draw
        self.elevation = condition.reference_elevation if condition is not None else 0.0
        planned = cfg.planned_nfes(sample_init=init_views is None) if model is not None else 0
        self.progress = WorkProgress(model, planned + cfg.total_steps, progress)
        self.timings = {"init_sampling": 0.0, "init_fit": 0.0, "diffusion": 0.0, "optimise": 0.0, "cleanup": 0.0}
        self.fitter = GaussianFitter.for_runtime(
            cfg.init.sample(self.gen).to(self.device), cfg.lr, cfg.densify, cfg.runtime
        )
        self.reference = cfg.reference.image(condition, cfg.resolution, cfg.cameras.fovy_deg, self.device)

    def run(self, on_iteration: Callable[[IterationInfo], None] | None) -> SIRResult:
        cfg = self.cfg
        t2s = cfg.t2_schedule()
        with seeded(cfg.runtime.seed, self.device):
            init_rgb = self.initialise()
            init_nfe = self.progress.nfe
            infos: list[IterationInfo] = []
            targets = None
            for k, t2 in enumerate(t2s):
                info, targets = self.iterate(k, t2, len(t2s))
                infos.append(info)
                if on_iteration is not None:
                    on_iteration(info)
            gaussians, removed = self.clean_up()
        self.timings["total"] = time.perf_counter() - self.start
        spent = self.progress.nfe
        nfe = {"init": init_nfe, "iterations": spent - init_nfe, "total": spent}
        return SIRResult(
            gaussians.to("cpu"),
            self.fitter.losses(),
            self.timings,
            nfe,
            t2s,
            infos,
            init_rgb.detach().cpu(),
            None if targets is None else targets.cpu(),
            self.fitter.strategy.history,
            None if self.reference is None else self.reference.camera.to("cpu"),
            removed,
        )

    # ---- the steps, in order ------------------------------------------------------------------
    def initialise(self) -> Tensor:
        """Call 0: the initial views (the user's, or sampled from noise) and ``init_steps`` Adam
        steps on them; returns their colours."""
        with self.timed("init_sampling"):
            cams, rgb, alpha, mask_weight = self.initial_views()
        with self.timed("init_fit"):
            self.fit(cams, rgb, alpha, self.cfg.init_steps, mask_weight, "SIR initialisation")
        return rgb

    def initial_views(self) -> tuple[Cameras, Tensor, Tensor | None, float]:
        """Call 0's cameras and targets (colours, alpha, mask weight): the views the user brought,
        with their alpha, or the model sampled from pure noise at drawn cameras."""
        cfg = self.cfg
        if self.init_views is not None:
            views = self.init_views
            if views.cameras.width != cfg.resolution:
                views = views.resized(cfg.resolution)
            cams, rgb, alpha = view_targets(views, self.device, cfg.runtime.background)
            return cams, rgb, alpha, cfg.init_mask_weight
        cams = self.draw_cameras()
        result = sample(
            self.model,
            self.condition,
            cams.with_resolution(cfg.image_size),
            steps=cfg.denoise_steps,
            guidance_scale=cfg.guidance_scale,
            eta=cfg.eta,
            seed=cfg.runtime.seed,
            image_size=cfg.image_size,
            progress=self.progress,
            cancel=self.cancel,
        )
        return cams, self.at_resolution(result.images), None, 0.0

    def iterate(self, k: int, t2: int, iterations: int) -> tuple[IterationInfo, Tensor]:
        """SIR iteration ``k``: draw cameras, render, refine the renders at ``t2`` into targets,
        then ``steps_per_iteration`` Adam steps on them; returns what it did and the targets."""
        cfg = self.cfg
        check_cancel(self.cancel, f"SIR iteration {k}/{iterations}")
        t_iter = time.perf_counter()
        nfe_before = self.progress.nfe
        with self.timed("diffusion"):
            cams = self.draw_cameras()
            with torch.no_grad():
                renders = self.fitter.render(cams).rgb.detach()
            refined = refine_views(
                self.model,
                renders,
                cams.with_resolution(cfg.image_size),
                self.condition,
                t2,
                steps=cfg.denoise_steps,
                inv_ratio=cfg.inv_ratio,
                mode=cfg.forward_mode,
                guidance_scale=cfg.guidance_scale,
                eta=cfg.eta,
                seed=cfg.runtime.seed + 1 + k,
                image_size=cfg.image_size,
                progress=self.progress,
                cancel=self.cancel,
            )
            targets = self.at_resolution(refined.images)
        first = self.fitter.step_count
        with self.timed("optimise"):
            self.fit(cams, targets, None, cfg.steps_per_iteration, 0.0, f"SIR iteration {k}")
        losses = self.fitter.losses()[first:]  # read once per iteration, not per step
        mean_loss = sum(losses) / max(len(losses), 1)
        info = IterationInfo(
            k,
            iterations,
            t2,
            self.progress.nfe - nfe_before,
            mean_loss,
            self.fitter.gaussians.num,
            time.perf_counter() - t_iter,
        )
        return info, targets

    def clean_up(self) -> tuple[Gaussians, int]:
        """The final prune and the floater filter; returns the Gaussians and how many floaters went."""
        with self.timed("cleanup"):
            gaussians = self.fitter.finalize()
            removed = 0
            if self.cfg.floaters is not None:
                gaussians, removed = remove_floaters(gaussians, self.cfg.floaters, self.cfg.runtime.gaussian_backend)
        return gaussians, removed

    # ---- helpers ------------------------------------------------------------------------------
    def fit(
        self, cams: Cameras, target_rgb: Tensor, target_alpha: Tensor | None, steps: int, mask_weight: float, where: str
    ) -> None:
        """``steps`` Adam steps against fixed targets, plus the reference term when there is one."""
        extra = None if self.reference is None else partial(self.reference_term, self.reference)
        for i in range(steps):
            check_cancel(self.cancel, f"{where}, step {i}/{steps}")
            self.fitter.step(cams, target_rgb, target_alpha, mask_weight, extra)
            self.progress.step()

    def reference_term(self, reference: ReferenceImage) -> Tensor:
        return reference_loss(self.fitter.render(reference.camera), reference, self.cfg.reference)

    def draw_cameras(self) -> Cameras:
        cfg = self.cfg
        return sample_orbit_cameras(cfg.cameras, cfg.resolution, self.gen, reference_elevation=self.elevation).to(
            self.device
        )

    def at_resolution(self, images: Tensor) -> Tensor:
        """The model's (V, H, W, 3) images at the render resolution, on the run's device."""
        return resize_images(images, self.cfg.resolution).contiguous().to(self.device)

    @contextmanager
    def timed(self, part: str) -> Iterator[None]:
        """Add the block's wall-clock seconds (GPU work included) to ``timings[part]``."""
        t0 = time.perf_counter()
        yield
        sync(self.device)
        self.timings[part] += time.perf_counter() - t0
