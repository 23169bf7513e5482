"""Gaussian models whose answer is known, shared by the meshing tests: Gaussians from plain
values, random ones, and a solid ball of small isotropic Gaussians."""

from __future__ import annotations

import math

import torch

from microdreamer_core.scene.gaussians import Gaussians, rgb_to_sh0


def gaussians(means, log_scales, quats, opacity, colors) -> Gaussians:
    """Gaussians from plain values: log scales, (unnormalised) quaternions, opacities and RGB colours."""
    n = len(means)
    op = torch.as_tensor(opacity, dtype=torch.float32).expand(n)
    return Gaussians(
        means=means.float(),
        scales=log_scales.float(),
        quats=quats.float(),
        opacities=torch.log(op / (1 - op)),
        sh0=rgb_to_sh0(colors.float())[:, None],
        shN=torch.zeros(n, 0, 3),
    )


def random_gaussians(n: int, seed: int = 0) -> Gaussians:
    """``n`` random Gaussians inside [-0.5, 0.5]^3: sizes 0.01-0.07, any rotation, opacities 0.05-0.95."""
    g = torch.Generator().manual_seed(seed)
    return gaussians(
        (torch.rand(n, 3, generator=g) * 2 - 1) * 0.5,
        torch.log(torch.rand(n, 3, generator=g) * 0.06 + 0.01),
        torch.randn(n, 4, generator=g),
        torch.rand(n, generator=g) * 0.9 + 0.05,
        torch.rand(n, 3, generator=g),
    )


def ball(radius: float = 0.4, n: int = 4000, seed: int = 0) -> Gaussians:
    """A solid ball of small isotropic Gaussians, uniform in volume."""
    g = torch.Generator().manual_seed(seed)
    d = torch.nn.functional.normalize(torch.randn(n, 3, generator=g), dim=-1)
    means = d * radius * torch.rand(n, 1, generator=g).pow(1 / 3)
    spacing = radius * (4 / 3 * math.pi / n) ** (1 / 3)
    quats = torch.zeros(n, 4)
    quats[:, 0] = 1
    return gaussians(means, torch.full((n, 3), math.log(spacing)), quats, 0.9, torch.full((n, 3), 0.7))
