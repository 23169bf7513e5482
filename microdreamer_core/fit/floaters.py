"""The reference's last clean-up of SIR: remove large over-white floaters (METHOD.md, "Stage 1").

SIR fits renders on a white background, so a Gaussian whose colour is brighter than white costs
nothing in training: it is invisible there, yet it shows as a haze on any other background and
becomes a lump in the extracted mesh. After the final prune, the reference looks at the scene from
six cameras; from each one it takes the *candidates* (large Gaussians whose DC colour exceeds 1 in
every channel), renders the opacity with and without all of them, and removes a candidate when its
projected centre lands on a pixel whose opacity dropped by more than ``alpha_drop``. A candidate
that lies inside or behind the object changes nothing there and is kept.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..render.backends import GaussianBackend
from ..render.gaussians import render_gaussians
from ..scene.cameras import Cameras, orbit_cameras
from ..scene.gaussians import SH_C0, Gaussians

__all__ = ["FloaterFilterConfig", "floater_candidates", "remove_floaters"]


@dataclass(frozen=True)
class FloaterFilterConfig:
    """The reference's filter settings (``gs_postprocess.filter_out``).

    ``views`` are (elevation, azimuth) in degrees in our orbit convention, visited in order, each
    pass seeing what the previous ones left.
    """

    min_scale: float = 0.01
    views: tuple[tuple[float, float], ...] = ((0, 0), (0, 180), (0, 90), (20, 180), (20, 90), (0, -90))
    radius: float = 2.0
    resolution: int = 512
    fovy_deg: float = 49.0
    alpha_drop: float = 0.1


def floater_candidates(gaussians: Gaussians, min_scale: float = 0.01) -> Tensor:
    """(N,) bool: Gaussians with max scale above ``min_scale`` whose activated DC colour
    ``0.5 + C0 * sh0`` is above 1 in every channel (brighter than the white background)."""
    large = gaussians.activated_scales().amax(dim=-1) > min_scale
    over_white = ((0.5 + SH_C0 * gaussians.sh0[:, 0]) > 1.0).all(dim=-1)
    return large & over_white


def _centre_pixels(means: Tensor, camera: Cameras) -> tuple[Tensor, Tensor]:
    """Row and column of the pixel each centre projects to, clamped into the image."""
    homog = torch.cat([means, torch.ones_like(means[:, :1])], dim=-1)
    cam = (camera.w2c_opencv()[0] @ homog.T).T[:, :3]
    uv = (camera.intrinsics()[0] @ cam.T).T
    z = uv[:, 2:3].clamp_min(1e-6)
    col = torch.floor(uv[:, 0:1] / z)[:, 0].long().clamp(0, camera.width - 1)
    row = torch.floor(uv[:, 1:2] / z)[:, 0].long().clamp(0, camera.height - 1)
    return row, col


@torch.no_grad()
def remove_floaters(
    gaussians: Gaussians, config: FloaterFilterConfig | None = None, backend: GaussianBackend = "auto"
) -> tuple[Gaussians, int]:
    """``gaussians`` without the over-white floaters the reference removes; returns them and
    how many were removed."""
    cfg = config or FloaterFilterConfig()
    g = gaussians
    removed = 0
    for elevation, azimuth in cfg.views:
        candidates = floater_candidates(g, cfg.min_scale)
        if not bool(candidates.any()):
            continue
        camera = orbit_cameras([float(elevation)], [float(azimuth)], cfg.radius, cfg.resolution, cfg.fovy_deg).to(
            g.device
        )
        before = render_gaussians(g, camera, backend=backend).alpha[0, ..., 0]
        after = render_gaussians(g[~candidates], camera, backend=backend).alpha[0, ..., 0]
        dropped = (before - after) > cfg.alpha_drop
        index = candidates.nonzero()[:, 0]
        row, col = _centre_pixels(g.means[index], camera)
        remove = torch.zeros_like(candidates)
        remove[index[dropped[row, col]]] = True
        removed += int(remove.sum())
        g = g[~remove]
    return g, removed
