"""3D Gaussians: the parameter container and the paper's initialisation (PLY files: :mod:`~microdreamer_core.io.ply`).

Parameters are stored *raw*, exactly as the 3DGS PLY layout stores them, and activated on use:
positions as is, log-scales (exp), unnormalised wxyz quaternions (normalise), opacity logits
(sigmoid) and real spherical-harmonic colour coefficients, DC term ``sh0`` apart from the rest
``shN`` (colour = 0.5 + SH, so all-zero coefficients are mid grey).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ..errors import InputError

__all__ = ["Gaussians", "SH_C0", "rgb_to_sh0", "quat_to_rotmat", "init_ball", "knn_scales"]

SH_C0 = 0.28209479177387814
"""Zeroth real spherical-harmonic basis constant: colour = 0.5 + SH_C0 * sh0."""


def rgb_to_sh0(rgb: Tensor) -> Tensor:
    """DC SH coefficient that renders as ``rgb``."""
    return (rgb - 0.5) / SH_C0


def quat_to_rotmat(quats: Tensor) -> Tensor:
    """(N, 4) wxyz quaternions (any norm) -> (N, 3, 3) rotation matrices."""
    w, x, y, z = torch.nn.functional.normalize(quats, dim=-1).unbind(-1)
    return torch.stack(
        [
            1 - 2 * (y * y + z * z),
            2 * (x * y - w * z),
            2 * (x * z + w * y),
            2 * (x * y + w * z),
            1 - 2 * (x * x + z * z),
            2 * (y * z - w * x),
            2 * (x * z - w * y),
            2 * (y * z + w * x),
            1 - 2 * (x * x + y * y),
        ],
        dim=-1,
    ).reshape(*quats.shape[:-1], 3, 3)


@dataclass
class Gaussians:
    """A set of N 3D Gaussians (raw parameters; see the module docstring).

    Attributes:
        means: (N, 3) centres.
        scales: (N, 3) log standard deviations along the local axes.
        quats: (N, 4) rotations as wxyz quaternions, not necessarily normalised.
        opacities: (N,) opacity logits.
        sh0: (N, 1, 3) DC colour coefficients.
        shN: (N, K, 3) higher-order SH coefficients, K = (degree + 1)^2 - 1 (0 for degree 0).
    """

    means: Tensor
    scales: Tensor
    quats: Tensor
    opacities: Tensor
    sh0: Tensor
    shN: Tensor

    PARAMS = ("means", "scales", "quats", "opacities", "sh0", "shN")

    def __post_init__(self) -> None:
        n = self.means.shape[0]
        expect = {"means": (n, 3), "scales": (n, 3), "quats": (n, 4), "opacities": (n,), "sh0": (n, 1, 3)}
        for name, shape in expect.items():
            if tuple(getattr(self, name).shape) != shape:
                raise ValueError(f"Gaussians.{name} must be {shape}, got {tuple(getattr(self, name).shape)}")
        k = self.shN.shape[1] if self.shN.ndim == 3 else -1
        if self.shN.shape[0] != n or k not in (0, 3, 8, 15) or self.shN.shape[-1] != 3:
            raise ValueError(f"Gaussians.shN must be (N, K, 3) with K in 0/3/8/15, got {tuple(self.shN.shape)}")

    # --- views of the parameters --------------------------------------------------------
    @property
    def num(self) -> int:
        return self.means.shape[0]

    def __len__(self) -> int:
        return self.num

    @property
    def sh_degree(self) -> int:
        return int(round(math.sqrt(self.shN.shape[1] + 1))) - 1

    @property
    def device(self) -> torch.device:
        return self.means.device

    def params(self) -> dict[str, Tensor]:
        return {name: getattr(self, name) for name in self.PARAMS}

    def activated_scales(self) -> Tensor:
        return torch.exp(self.scales)

    def activated_opacities(self) -> Tensor:
        return torch.sigmoid(self.opacities)

    def normalized_quats(self) -> Tensor:
        return torch.nn.functional.normalize(self.quats, dim=-1)

    def sh_coeffs(self) -> Tensor:
        """(N, (degree+1)^2, 3) all SH coefficients."""
        return torch.cat([self.sh0, self.shN], dim=1)

    def base_colors(self) -> Tensor:
        """(N, 3) view-independent colour (the DC term)."""
        return (0.5 + SH_C0 * self.sh0[:, 0]).clamp(0.0, 1.0)

    # --- whole-set operations -----------------------------------------------------------
    def map(self, fn) -> Gaussians:
        """A new set with ``fn`` applied to every parameter tensor."""
        return Gaussians(**{name: fn(t) for name, t in self.params().items()})

    def detach(self) -> Gaussians:
        return self.map(lambda t: t.detach().clone())

    def to(self, device) -> Gaussians:
        return self.map(lambda t: t.to(device))

    def __getitem__(self, mask: Tensor) -> Gaussians:
        """Subset by boolean mask or index tensor."""
        return self.map(lambda t: t[mask])

    def check_finite(self, what: str = "Gaussian model") -> None:
        """Raise :class:`InputError` if any parameter is NaN or infinite."""
        for name, t in self.params().items():
            if not torch.isfinite(t).all():
                raise InputError(
                    f"{what} has NaN or infinite values in '{name}': the file or run that produced it is broken"
                )


def knn_scales(points: Tensor, k: int = 3, chunk: int = 2048) -> Tensor:
    """(N,) sqrt of the mean squared distance of each point to its ``k`` nearest neighbours."""
    out = []
    for start in range(0, points.shape[0], chunk):
        d2 = torch.cdist(points[start : start + chunk], points).square()
        nearest = d2.topk(k + 1, dim=1, largest=False).values[:, 1:]  # drop the point itself
        out.append(nearest.mean(dim=1))
    return torch.cat(out).clamp(min=1e-7).sqrt()


def init_ball(
    num: int = 5000,
    radius: float = 0.5,
    opacity: float = 0.1,
    color: float = 0.5,
    sh_degree: int = 0,
    generator: torch.Generator | None = None,
) -> Gaussians:
    """The paper's initialisation: points uniform in a ball, isotropic kNN scales, identity
    rotations, a uniform grey colour and a low opacity."""
    direction = torch.nn.functional.normalize(torch.randn(num, 3, generator=generator), dim=-1)
    r = radius * torch.rand(num, 1, generator=generator).pow(1.0 / 3.0)  # uniform in volume
    means = direction * r
    log_scale = torch.log(knn_scales(means))[:, None].expand(num, 3).clone()
    quats = torch.zeros(num, 4)
    quats[:, 0] = 1.0
    return Gaussians(
        means=means,
        scales=log_scale,
        quats=quats,
        opacities=torch.full((num,), math.log(opacity / (1.0 - opacity))),
        sh0=rgb_to_sh0(torch.full((num, 1, 3), color)),
        shN=torch.zeros(num, (sh_degree + 1) ** 2 - 1, 3),
    )
