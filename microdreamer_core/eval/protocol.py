"""Reconstruction quality protocol: render a ground-truth mesh, reconstruct, score novel views.

The protocol of the project's quality tests (and of ``microdreamer demo``): render a textured mesh
with our mesh rasteriser from training cameras, fit Gaussians to those views, then render both
from cameras the fit never saw and compare on a white background (PSNR) and by silhouette (IoU).
"""

from __future__ import annotations

import resource
from dataclasses import dataclass

import torch

from ..fit.reconstruct import ReconstructConfig, ReconstructResult, reconstruct
from ..render.gaussians import render_gaussians
from ..render.mesh import render_mesh
from ..runtime import CancelFn, ProgressFn
from ..scene.cameras import Cameras, orbit_cameras, sample_orbit_cameras
from ..scene.gaussians import Gaussians
from ..scene.mesh import Mesh
from ..scene.views import PosedViews
from .metrics import mask_iou, psnr

__all__ = [
    "DUCK_RADIUS",
    "render_rgba",
    "novel_eval_cameras",
    "zero123_train_cameras",
    "EvalReport",
    "Evaluation",
    "evaluate_reconstruction",
]

DUCK_RADIUS = 0.7
"""Radius the Duck is normalised to: the object then fills ~80% of the frame at camera radius 2,
the framing METHOD.md's image preprocessing uses, and stays inside every view."""


def render_rgba(
    model: Gaussians | Mesh,
    cameras: Cameras,
    background: tuple[float, float, float] = (1.0, 1.0, 1.0),
    mesh_supersample: int = 4,
) -> torch.Tensor:
    """(N, H, W, 4) straight-alpha RGBA renders of a :class:`Gaussians` or :class:`Mesh`.

    Meshes are rendered at ``mesh_supersample`` times the size and area-averaged (premultiplied),
    so edges are antialiased like a photograph's; the rasteriser itself takes one sample per pixel.
    """
    with torch.no_grad():
        if isinstance(model, Gaussians):
            out = render_gaussians(model, cameras, background)
            rgb, a = out.rgb, out.alpha
            bg = torch.as_tensor(background, dtype=rgb.dtype, device=rgb.device)
            premult = rgb - bg * (1 - a)
        else:
            ss = max(int(mesh_supersample), 1)
            out = render_mesh(model, cameras.with_resolution(cameras.width * ss, cameras.height * ss), (0.0, 0.0, 0.0))
            x = torch.cat([out.rgb * out.alpha, out.alpha], dim=-1).permute(0, 3, 1, 2)  # premultiplied
            x = torch.nn.functional.avg_pool2d(x, ss).permute(0, 2, 3, 1)
            premult, a = x[..., :3], x[..., 3:]
    rgb = torch.where(a > 1e-4, premult / a.clamp(min=1e-4), torch.zeros_like(premult))
    return torch.cat([rgb.clamp(0, 1), a.clamp(0, 1)], dim=-1).cpu()


def zero123_train_cameras(resolution: int = 128, seed: int = 0) -> Cameras:
    """One draw of the Zero123 preset's 6 views (radius 2, elevations in [-30, 29])."""
    return sample_orbit_cameras("zero123", resolution, torch.Generator().manual_seed(seed))


def novel_eval_cameras(resolution: int = 128) -> Cameras:
    """8 evaluation views, azimuths 45 degrees apart, elevation alternating 0 and 20 (below)."""
    az = [45.0 * i for i in range(8)]
    el = [0.0 if i % 2 == 0 else 20.0 for i in range(8)]
    return orbit_cameras(el, az, 2.0, resolution)


@dataclass
class EvalReport:
    """The protocol's numbers: novel-view PSNR (dB, on the fit's background) and mask IoU, fit
    seconds, peak resident memory, Gaussian count, steps and training resolution."""

    psnr_db: float
    mask_iou: float
    seconds: float
    peak_rss_mib: float
    gaussians: int
    steps: int
    resolution: int

    def as_dict(self) -> dict:
        """The fields as a JSON-ready dict, floats rounded to 4 decimals."""
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in self.__dict__.items()}


@dataclass
class Evaluation:
    """A scored reconstruction: the report, the fit itself and the views it was made and scored on."""

    report: EvalReport
    result: ReconstructResult
    train: PosedViews  # ground-truth training views
    truth: PosedViews  # ground-truth novel views
    pred: PosedViews  # the reconstruction's novel views


def evaluate_reconstruction(
    model: Gaussians | Mesh,
    train_cameras: Cameras,
    novel_cameras: Cameras,
    config: ReconstructConfig,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
) -> Evaluation:
    """Reconstruct ``model`` from ``train_cameras`` and score it on ``novel_cameras``
    (``progress`` and ``cancel`` as in :func:`~.fit.reconstruct.reconstruct`)."""
    train = PosedViews(render_rgba(model, train_cameras), train_cameras)
    truth = PosedViews(render_rgba(model, novel_cameras), novel_cameras)
    result = reconstruct(train, config, progress=progress, cancel=cancel)
    pred = PosedViews(render_rgba(result.gaussians, novel_cameras), novel_cameras)
    report = EvalReport(
        psnr_db=psnr(pred.rgb_on(config.runtime.background), truth.rgb_on(config.runtime.background)),
        mask_iou=mask_iou(pred.masks, truth.masks),
        seconds=result.seconds,
        peak_rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        gaussians=result.gaussians.num,
        steps=config.steps,
        resolution=train_cameras.width,
    )
    return Evaluation(report, result, train, truth, pred)
