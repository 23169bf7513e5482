"""Texture refinement with the diffusion model: MicroDreamer's stage 2 (METHOD.md, "Stage 2").

SDEdit-like, noise-adding only: render the textured mesh from 8 views around the equator, push the
renders to ``t = 181`` of a 50-step DDIM grid by one-shot noising, denoise them back in 10 DDIM
steps (eta 0, CFG 2.0) to get sharper target images, computed once; then take 30 Adam steps on
the texture alone against those targets (MSE), plus a masked MSE to the input image at the front
camera for image-to-3D.

Works for all three model kinds: MVDream and ImageDream denoise 4 views per call (the 8 views
form two 90-degree-spaced orbits, 45 degrees apart, in the camera layout they were trained on);
Stable Zero123 denoises every view independently in one batch. The reference code only handles
Zero123 here.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from .cameras import orbit_cameras
from .errors import InputError, check_cancel
from .image_prep import rgb_alpha_at
from .mesh import Mesh
from .mesh_render import render_mesh
from .mv_models import Condition, MultiViewModel, Zero123Model
from .mv_sampling import refine_views
from .reconstruct import resolve_device
from .schedules import DDIMSchedule

__all__ = ["TextureRefineConfig", "TextureRefineResult", "refine_texture"]


@dataclass
class TextureRefineConfig:
    """Settings of stage 2 (the paper's values).

    ``reference_weight`` scales the masked front-view MSE relative to the mean MSE over the
    refined views (METHOD.md gives no weight; 1 makes the input view count as much as all the
    others together). ``guidance_scale`` None = the model's paper value; METHOD.md uses 2.0.
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
    reference_weight: float = 1.0
    reference_radius: float = 2.0
    fovy_deg: float = 49.1
    seed: int = 0
    backend: str = "auto"
    device: str = "auto"


@dataclass
class TextureRefineResult:
    mesh: Mesh
    losses: list[float]
    timings: dict[str, float]
    nfe: int
    targets: Tensor  # (views, R, R, 3) on CPU
    renders: Tensor  # the renders the targets were made from


def _groups(model: MultiViewModel, views: int) -> list[list[int]]:
    """Which views go into one diffusion call: all at once for Zero123 (independent views), else
    orbits of the model's view count spaced evenly in azimuth."""
    if isinstance(model, Zero123Model):
        return [list(range(views))]
    per_call = model.defaults.num_views
    if views % per_call:
        raise InputError(f"{model.display_name} denoises {per_call} views per call: use a multiple of {per_call} views (got {views})")
    calls = views // per_call
    return [list(range(j, views, calls)) for j in range(calls)]


def refine_texture(
    mesh: Mesh,
    model: MultiViewModel,
    condition: Condition,
    config: TextureRefineConfig | None = None,
    progress: Callable[[int, int], None] | None = None,
    cancel: Callable[[], object] | None = None,
) -> TextureRefineResult:
    """A copy of ``mesh`` with its texture refined against the diffusion model.

    ``progress(done, total)`` counts NFEs plus Adam steps; ``cancel()`` is checked before each.
    """
    cfg = config or TextureRefineConfig()
    if not mesh.has_texture:
        raise InputError("texture refinement needs a textured mesh (uvs + texture): run Extract Mesh with texture baking on")
    if cfg.steps < 0 or cfg.views < 1:
        raise InputError(f"need steps >= 0 and views >= 1 (got steps={cfg.steps}, views={cfg.views})")
    with torch.inference_mode(False), torch.enable_grad():
        return _refine(mesh, model, condition, cfg, progress, cancel)


def _refine(mesh: Mesh, model: MultiViewModel, condition: Condition, cfg: TextureRefineConfig, progress, cancel) -> TextureRefineResult:
    device = resolve_device(cfg.device)
    start = time.perf_counter()
    gen = torch.Generator().manual_seed(cfg.seed)
    offset = float(torch.rand((), generator=gen) * 360.0)
    az = [offset + i * 360.0 / cfg.views for i in range(cfg.views)]
    cams = orbit_cameras([cfg.elevation] * cfg.views, az, cfg.radius, cfg.render_resolution, cfg.fovy_deg).to(device)
    plain = Mesh(*(t.detach().clone().to(device) if t is not None else None
                   for t in (mesh.vertices, mesh.faces, mesh.uvs, mesh.texture, mesh.vertex_colors, mesh.normals)))
    groups = _groups(model, cfg.views)
    sampling = DDIMSchedule(num_inference_steps=cfg.denoise_steps).sampling_steps(cfg.t)
    total = len(groups) * sampling + cfg.steps
    nfe0 = model.nfe
    done_steps = 0

    def report(*_):
        if progress is not None:
            progress(min(model.nfe - nfe0 + done_steps, total), total)

    # ---- targets, once ------------------------------------------------------------------------
    with torch.no_grad():
        renders = render_mesh(plain, cams, backend=cfg.backend).rgb
    targets = torch.empty_like(renders)
    for j, idx in enumerate(groups):
        out = refine_views(model, renders[idx], cams[idx].with_resolution(cfg.image_size), condition, cfg.t,
                           steps=cfg.denoise_steps, mode="noise", guidance_scale=cfg.guidance_scale, eta=cfg.eta,
                           seed=cfg.seed + j, image_size=cfg.image_size, progress=report, cancel=cancel)
        up = F.interpolate(out.images.permute(0, 3, 1, 2), (cfg.render_resolution,) * 2, mode="bilinear", align_corners=False)
        targets[idx] = up.permute(0, 2, 3, 1).to(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t_targets = time.perf_counter() - start

    # ---- front reference -------------------------------------------------------------------------
    ref = None
    if cfg.reference_weight > 0 and condition is not None and condition.image is not None:
        r = cfg.render_resolution
        rgb, alpha = rgb_alpha_at(condition.image, r)
        rgb, mask = rgb.to(device), alpha[..., None].to(device)
        front = orbit_cameras([condition.reference_elevation], [0.0], cfg.reference_radius, r, cfg.fovy_deg).to(device)
        ref = (front, rgb[None], mask[None])

    # ---- Adam on the texture ---------------------------------------------------------------------
    t1 = time.perf_counter()
    texture = torch.nn.Parameter(plain.texture.clone())
    optimizer = torch.optim.Adam([texture], lr=cfg.lr)
    losses: list[float] = []
    for step in range(cfg.steps):
        check_cancel(cancel, f"texture refinement step {step}/{cfg.steps}")
        textured = Mesh(plain.vertices, plain.faces, uvs=plain.uvs, texture=texture, normals=plain.normals)
        loss = F.mse_loss(render_mesh(textured, cams, backend=cfg.backend).rgb, targets)
        if ref is not None:
            front, rgb, mask = ref
            out = render_mesh(textured, front, backend=cfg.backend).rgb
            loss = loss + cfg.reference_weight * F.mse_loss(out * mask, rgb * mask)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"texture refinement loss became {loss.item()} at step {step}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            texture.clamp_(0, 1)
        losses.append(float(loss.detach()))
        done_steps += 1
        report()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    timings = {"targets": t_targets, "optimise": time.perf_counter() - t1, "total": time.perf_counter() - start}
    refined = Mesh(mesh.vertices, mesh.faces, uvs=mesh.uvs, texture=texture.detach().cpu(),
                   vertex_colors=mesh.vertex_colors, normals=mesh.normals)
    return TextureRefineResult(refined, losses, timings, model.nfe - nfe0, targets.cpu(), renders.cpu())
