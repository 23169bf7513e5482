"""Texture refinement with the diffusion model: MicroDreamer's stage 2 (METHOD.md, "Stage 2").

SDEdit-like, noise-adding only: render the textured mesh from 8 views around the equator, push the
renders to ``t = 181`` of a 50-step DDIM grid by one-shot noising, denoise them back in 10 DDIM
steps (eta 0, CFG 2.0) to get sharper target images, computed once; then take 30 Adam steps on
the texture alone against those targets (mean MSE over the views) -- :func:`fit_texture`.

As in the authors' reference (``main2.py``, ``mesh_renderer.py``), the optimised parameter is the
texture's *logit*, ``raw = log(x / (1 - x))`` of the texture clamped to [1e-6, 1 - 1e-6]; renders
sample ``raw`` bilinearly and put the sampled value through ``sigmoid`` (sample, then activate:
``render_mesh(..., texture_activation=torch.sigmoid)``); Adam runs at lr 0.2 on ``raw`` and the
exported texture is ``sigmoid(raw)``. A step of at most ~lr in logit space moves a colour by at
most ~lr / 4 = 0.05.

Front term (image-to-3D): the mesh is also rendered from the input photo's camera (azimuth 0,
the condition's ``reference_elevation``, ``reference_radius``) at ``reference_resolution`` (256,
the reference's ``ref_size``), and ``reference_weight * F.mse_loss(render * mask, input * mask)``
is added, where the input is the condition image composited on white and ``mask`` (detached) is
where the *rendered* mesh covers the pixel and faces the camera: ``alpha > 0`` and
``viewcos > 0.5``, ``viewcos`` being the rendered unit world normal dotted with the camera's
backward axis. The reference has this term for Stable Zero123 only, so it is on by default for
Stable Zero123 and off for ImageDream (which can turn it on with ``reference_weight > 0``);
MVDream has no input image and never gets it.

Speed: the mesh does not move while its texture is fitted, so :func:`fit_texture` rasterises every
view once; a step is one texture lookup at the covered pixels of all refined views together (and
one for the front view, at its own size), the same pixels :func:`~..render.mesh.render_mesh`
would give. The loss stays on
the device and is read (and checked for NaN / inf) every ``check_every`` steps
(:class:`~..fit.fitter.LossLog`); Adam is the fused kernel on CUDA.

Works for all three model kinds: MVDream and ImageDream denoise 4 views per call (the 8 views
form two 90-degree-spaced orbits, 45 degrees apart, in the camera layout they were trained on);
Stable Zero123 denoises every view independently in one batch.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ..diffusion.models import Condition, MultiViewModel, Zero123Model
from ..diffusion.sampling import refine_views
from ..diffusion.schedules import DDIMSchedule
from ..errors import InputError, check_cancel
from ..fit.fitter import LossLog
from ..render.backends import MeshBackend, resolve_mesh_backend
from ..render.mesh import MeshRenderOutput, interpolate, render_mesh, texture
from ..runtime import CancelFn, ProgressFn, resolve_device, sync
from ..scene.cameras import Cameras, orbit_cameras
from ..scene.images import resize_images
from ..scene.mesh import Mesh
from .progress import WorkProgress
from .reference import ReferenceImage, reference_image

__all__ = [
    "TextureRefineConfig",
    "TextureRefineResult",
    "refine_texture",
    "fit_texture",
    "TextureFit",
    "FrontReference",
    "front_reference",
    "front_mask",
    "texture_logit",
]


@dataclass
class TextureRefineConfig:
    """Settings of stage 2 (the paper's and the reference code's values).

    ``lr`` is Adam's learning rate on the texture's logits (see the module docstring).
    ``reference_weight`` scales the front term (the masked MSE to the input image at the input
    photo's camera) relative to the mean MSE over the refined views; None = the reference's
    choice: 1.0 for Stable Zero123, 0 (no front term) for ImageDream and MVDream. Set it > 0 to
    give ImageDream a front term too (same azimuth-0 camera); MVDream has no input image and never
    has one. The front view is rendered at ``reference_resolution`` (the reference's ``ref_size``,
    independent of ``render_resolution``) from ``reference_radius``. ``guidance_scale`` None = the
    model's paper value; METHOD.md uses 2.0. ``mesh_backend`` is the mesh rasteriser.
    ``check_every``: Adam steps between two reads of the loss on the host (:class:`~..fit.fitter.LossLog`).
    """

    views: int = 8
    elevation: float = 0.0
    radius: float = 2.0
    render_resolution: int = 512
    image_size: int = 256
    denoise_steps: int = 50
    t: int = 181
    guidance_scale: float | None = 2.0
    eta: float = 0.0
    steps: int = 30
    lr: float = 0.2
    reference_weight: float | None = None
    reference_radius: float = 2.0
    reference_resolution: int = 256
    fovy_deg: float = 49.1
    seed: int = 0
    mesh_backend: MeshBackend = "auto"
    device: str = "auto"
    check_every: int = 10


@dataclass
class TextureRefineResult:
    mesh: Mesh
    losses: list[float]
    timings: dict[str, float]
    nfe: int
    targets: Tensor  # (views, R, R, 3) on CPU
    renders: Tensor  # the renders the targets were made from
    reference_camera: Cameras | None = None  # the front camera of the front term (CPU), None without one
    reference_weight: float = 0.0  # the weight the front term had (0 without one)


def texture_logit(texture: Tensor, eps: float = 1e-6) -> Tensor:
    """``log(x / (1 - x))`` of the texture clamped to [eps, 1 - eps]: the parameter stage 2
    optimises (``sigmoid`` of it is the texture again)."""
    x = texture.clamp(eps, 1.0 - eps)
    return torch.log(x / (1.0 - x))


@dataclass
class FrontReference:
    """The front term of :func:`fit_texture`: the input photo at its camera (only its colours
    on white are used: the mask is :func:`front_mask`) and the term's weight."""

    image: ReferenceImage
    weight: float = 1.0


def front_mask(out: MeshRenderOutput, cameras: Cameras, min_cos: float = 0.5) -> Tensor:
    """(C, H, W, 1) bool, detached: pixels the rendered mesh covers (``alpha > 0``) with a surface
    facing the camera (``viewcos > min_cos``); ``viewcos`` = the rendered unit world normal dotted
    with the camera's backward axis ``c2w[:3, 2]`` (1 = facing the camera head-on)."""
    back = cameras.c2w[:, :3, 2].to(out.normal)
    viewcos = (out.normal * back[:, None, None, :]).sum(-1, keepdim=True)
    return ((out.alpha > 0) & (viewcos > min_cos)).detach()


def front_reference(
    model: MultiViewModel, condition: Condition | None, cfg: TextureRefineConfig, device: torch.device | str = "cpu"
) -> FrontReference | None:
    """The front term stage 2 uses for this model and condition, or None: Stable Zero123 by
    default, ImageDream when ``cfg.reference_weight > 0``, never MVDream or without an image."""
    weight = cfg.reference_weight
    if weight is None:
        weight = 1.0 if isinstance(model, Zero123Model) else 0.0
    if weight <= 0 or model.kind == "mvdream":
        return None
    image = reference_image(condition, cfg.reference_radius, cfg.reference_resolution, cfg.fovy_deg, device)
    return None if image is None else FrontReference(image, float(weight))


@dataclass
class TextureFit:
    """What :func:`fit_texture` returns: the texture ``sigmoid(raw)``, the logits ``raw`` (both
    detached, on the mesh's device) and the loss before each step."""

    texture: Tensor
    raw: Tensor
    losses: list[float]


class _Coverage:
    """What the texture does not change in a render of a fixed mesh, rasterised once: which pixels
    the mesh covers and their uvs. :meth:`rgb` renders a texture of logits with one lookup at the
    covered pixels only, white elsewhere: the pixels of ``render_mesh(...,
    texture_activation=torch.sigmoid).rgb``, and the same gradient (the vertices carry none, so
    neither do the uvs, and background pixels pass none to the texture)."""

    def __init__(self, mesh: Mesh, render: MeshRenderOutput, backend: MeshBackend):
        self.backend = resolve_mesh_backend(backend, mesh.vertices, mesh.faces)
        self.white = torch.ones_like(render.rgb)  # render_mesh's default background
        self.pixels = (render.alpha.reshape(-1) > 0).nonzero().squeeze(1)  # read once, not per step
        with torch.no_grad():
            uv = interpolate(mesh.uvs, render.rast, mesh.faces, backend=self.backend)
        self.uv = uv.reshape(-1, 2)[self.pixels].reshape(1, -1, 1, 2)

    def rgb(self, raw: Tensor) -> Tensor:
        """(C, H, W, 3): the render with texture ``sigmoid(raw)``."""
        color = torch.sigmoid(texture(raw, self.uv, wrap="repeat", backend=self.backend))
        return self.white.reshape(-1, 3).index_put((self.pixels,), color.reshape(-1, 3)).view(self.white.shape)


def fit_texture(
    mesh: Mesh,
    cameras: Cameras,
    targets: Tensor,
    steps: int = 30,
    lr: float = 0.2,
    reference: FrontReference | None = None,
    backend: MeshBackend = "auto",
    on_step: Callable[[int, Tensor], None] | None = None,
    cancel: CancelFn | None = None,
    check_every: int = 10,
) -> TextureFit:
    """Adam on the texture's logits so that renders from ``cameras`` match ``targets``
    ((C, H, W, 3) at the cameras' size), plus the front term of ``reference``; no diffusion model.

    Each step minimises ``mse(render, targets) + reference.weight * mse(front * mask, rgb * mask)``
    with ``mask = front_mask(front render)``. ``on_step(k, raw)`` is called after the k-th step
    (k = 1..steps) with the current logits (detached); ``cancel()`` is checked before each step.
    The mesh is rasterised once (:class:`_Coverage`); the losses are read every ``check_every``
    steps and a NaN / inf raises FloatingPointError by then.
    """
    if not mesh.has_texture:
        raise InputError("fitting a texture needs a textured mesh (uvs + texture)")
    with torch.inference_mode(False), torch.enable_grad():
        device = mesh.device
        cams = cameras.to(device)
        targets = targets.detach().to(device)
        raw = torch.nn.Parameter(texture_logit(mesh.texture.detach()))
        with torch.no_grad():
            views = _Coverage(mesh, render_mesh(mesh, cams, backend=backend), backend)
            if reference is not None:  # the front view: another camera and size, its own lookup
                camera = reference.image.camera
                front_render = render_mesh(mesh, camera, backend=backend)
                front = _Coverage(mesh, front_render, backend)
                mask = front_mask(front_render, camera)
                masked_input = reference.image.rgb * mask
        optimizer = torch.optim.Adam([raw], lr=lr, fused=True if raw.is_cuda else None)
        log = LossLog("texture refinement loss", check_every)
        for step in range(steps):
            check_cancel(cancel, f"texture refinement step {step}/{steps}")
            loss = F.mse_loss(views.rgb(raw), targets)
            if reference is not None:
                loss = loss + reference.weight * F.mse_loss(front.rgb(raw) * mask, masked_input)
            log.record(loss)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if on_step is not None:
                on_step(step + 1, raw.detach())
        raw = raw.detach()
        return TextureFit(torch.sigmoid(raw), raw, log.read())


def _groups(model: MultiViewModel, views: int) -> list[list[int]]:
    """Which views go into one diffusion call: all at once for Zero123 (independent views), else
    orbits of the model's view count spaced evenly in azimuth."""
    if isinstance(model, Zero123Model):
        return [list(range(views))]
    per_call = model.defaults.num_views
    if views % per_call:
        raise InputError(
            f"{model.display_name} denoises {per_call} views per call: use a multiple of {per_call} views (got {views})"
        )
    calls = views // per_call
    return [list(range(j, views, calls)) for j in range(calls)]


def refine_texture(
    mesh: Mesh,
    model: MultiViewModel,
    condition: Condition,
    config: TextureRefineConfig | None = None,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
) -> TextureRefineResult:
    """A copy of ``mesh`` with its texture refined against the diffusion model.

    ``progress(done, total)`` counts NFEs plus Adam steps; ``cancel()`` is checked before each.
    """
    cfg = config or TextureRefineConfig()
    if not mesh.has_texture:
        raise InputError(
            "texture refinement needs a textured mesh (uvs + texture): run Extract Mesh with texture baking on"
        )
    if cfg.steps < 0 or cfg.views < 1:
        raise InputError(f"need steps >= 0 and views >= 1 (got steps={cfg.steps}, views={cfg.views})")
    with torch.inference_mode(False), torch.enable_grad():
        return _refine(mesh, model, condition, cfg, progress, cancel)


def _refine(
    mesh: Mesh,
    model: MultiViewModel,
    condition: Condition,
    cfg: TextureRefineConfig,
    progress: ProgressFn | None,
    cancel: CancelFn | None,
) -> TextureRefineResult:
    device = resolve_device(cfg.device)
    start = time.perf_counter()
    cams = _cameras(cfg, device)
    plain = Mesh(
        *(
            t.detach().clone().to(device) if t is not None else None
            for t in (mesh.vertices, mesh.faces, mesh.uvs, mesh.texture, mesh.vertex_colors, mesh.normals)
        )
    )
    groups = _groups(model, cfg.views)
    sampling = DDIMSchedule(num_inference_steps=cfg.denoise_steps).sampling_steps(cfg.t)
    work = WorkProgress(model, len(groups) * sampling + cfg.steps, progress)

    # ---- targets, once ------------------------------------------------------------------------
    renders, targets = _targets(plain, cams, model, condition, groups, cfg, work, cancel)
    sync(device)
    t_targets = time.perf_counter() - start

    # ---- Adam on the texture's logits, with the front term where the model has one --------------
    ref = front_reference(model, condition, cfg, device)
    t1 = time.perf_counter()
    fit = fit_texture(
        plain,
        cams,
        targets,
        cfg.steps,
        cfg.lr,
        reference=ref,
        backend=cfg.mesh_backend,
        on_step=work.step,
        cancel=cancel,
        check_every=cfg.check_every,
    )
    sync(device)
    timings = {"targets": t_targets, "optimise": time.perf_counter() - t1, "total": time.perf_counter() - start}
    refined = Mesh(
        mesh.vertices,
        mesh.faces,
        uvs=mesh.uvs,
        texture=fit.texture.cpu(),
        vertex_colors=mesh.vertex_colors,
        normals=mesh.normals,
    )
    return TextureRefineResult(
        refined,
        fit.losses,
        timings,
        work.nfe,
        targets.cpu(),
        renders.cpu(),
        reference_camera=None if ref is None else ref.image.camera.to("cpu"),
        reference_weight=0.0 if ref is None else ref.weight,
    )


def _cameras(cfg: TextureRefineConfig, device: torch.device) -> Cameras:
    """``cfg.views`` cameras evenly spaced around the orbit, from an azimuth offset drawn from the seed."""
    gen = torch.Generator().manual_seed(cfg.seed)
    offset = float(torch.rand((), generator=gen) * 360.0)
    az = [offset + i * 360.0 / cfg.views for i in range(cfg.views)]
    return orbit_cameras([cfg.elevation] * cfg.views, az, cfg.radius, cfg.render_resolution, cfg.fovy_deg).to(device)


def _targets(
    mesh: Mesh,
    cams: Cameras,
    model: MultiViewModel,
    condition: Condition,
    groups: list[list[int]],
    cfg: TextureRefineConfig,
    progress: WorkProgress,
    cancel: CancelFn | None,
) -> tuple[Tensor, Tensor]:
    """The renders of ``mesh`` from ``cams`` and the targets the model makes of them (one
    diffusion call per group of views), both (views, R, R, 3) at the render resolution."""
    with torch.no_grad():
        renders = render_mesh(mesh, cams, backend=cfg.mesh_backend).rgb
    targets = torch.empty_like(renders)
    for j, idx in enumerate(groups):
        out = refine_views(
            model,
            renders[idx],
            cams[idx].with_resolution(cfg.image_size),
            condition,
            cfg.t,
            steps=cfg.denoise_steps,
            mode="noise",
            guidance_scale=cfg.guidance_scale,
            eta=cfg.eta,
            seed=cfg.seed + j,
            image_size=cfg.image_size,
            progress=progress,
            cancel=cancel,
        )
        # Plain bilinear as the reference (it enlarges 256 -> 512; antialiasing would change the
        # targets only where render_resolution < image_size).
        targets[idx] = resize_images(out.images, cfg.render_resolution, antialias=False).to(renders.device)
    return renders, targets
