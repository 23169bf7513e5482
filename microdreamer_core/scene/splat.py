"""Interchange with ComfyUI's core ``SPLAT`` layout (newer ComfyUI releases; 0.3.75 has none).

ComfyUI's ``SPLAT`` holds a batch of *activated* Gaussians: ``positions`` (B, N, 3),
``scales`` (B, N, 3) linear standard deviations, ``rotations`` (B, N, 4) unit wxyz quaternions,
``opacities`` (B, N, 1) in [0, 1], ``sh`` (B, N, K, 3) spherical-harmonic colour coefficients
(colour = 0.5 + SH_C0 * DC, higher bands in the 3DGS order), and optional ``counts`` (B,) for
batches of different sizes. Its frame is the 3DGS one: y down, z forward, i.e. ComfyUI's y-up
three.js world turned 180 degrees about x. Our world is y-up (glTF), so converting applies that
same half turn to centres, rotations and the view-dependent SH bands; converting back undoes it.

This module only produces and consumes the tensors; the ComfyUI node wraps them in
``Types.SPLAT`` (``nodes/splat.py``), so the library stays free of ComfyUI imports.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..errors import InputError
from .gaussians import Gaussians

__all__ = ["SplatTensors", "gaussians_to_splat", "splat_to_gaussians", "flip_yz", "sh_flip_yz_signs"]


@dataclass
class SplatTensors:
    """The fields of one ComfyUI ``SPLAT`` batch, in its layout and frame (see the module docstring)."""

    positions: Tensor
    scales: Tensor
    rotations: Tensor
    opacities: Tensor
    sh: Tensor

    def as_args(self) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """Positional arguments for ``Types.SPLAT(positions, scales, rotations, opacities, sh)``."""
        return self.positions, self.scales, self.rotations, self.opacities, self.sh


# Sign of each real SH basis function (3DGS order, bands 0-3) under (x, y, z) -> (x, -y, -z).
# Every basis polynomial has one parity in y + z: band 1 is (y, z, x); band 2 (xy, yz, 3z^2-1, xz,
# x^2-y^2); band 3 (y(3x^2-y^2), xyz, y(5z^2-1), z(5z^2-3), x(5z^2-1), z(x^2-y^2), x(x^2-3y^2)).
_SH_SIGNS = (1.0,) + (-1.0, -1.0, 1.0) + (-1.0, 1.0, 1.0, -1.0, 1.0) + (-1.0, 1.0, -1.0, -1.0, 1.0, -1.0, 1.0)


def sh_flip_yz_signs(num_coeffs: int) -> Tensor:
    """(num_coeffs,) factors that keep SH colour unchanged when the world turns 180 deg about x.

    Colour is ``sum_i c_i Y_i(d)``; with ``Y_i(R d) = s_i Y_i(d)`` for this R, the coefficients in
    the turned frame are ``s_i c_i``.
    """
    if num_coeffs not in (1, 4, 9, 16):
        raise ValueError(f"SH coefficient count must be 1, 4, 9 or 16 (degree 0-3), got {num_coeffs}")
    return torch.tensor(_SH_SIGNS[:num_coeffs])


def flip_yz(g: Gaussians, inverse: bool = False) -> Gaussians:
    """The same Gaussians in a frame turned 180 degrees about x: (x, y, z) -> (x, -y, -z).

    The turn is its own inverse on points, so this maps our y-up world to the 3DGS frame and
    back. Quaternions compose with the turn's quaternion (0, 1, 0, 0): (w, x, y, z) ->
    (-x, w, -z, y); ``inverse`` composes with its conjugate instead, (x, -w, z, -y), so a round
    trip returns the very quaternion (not its negative, which is the same rotation).
    """
    flip = torch.tensor([1.0, -1.0, -1.0], device=g.device, dtype=g.means.dtype)
    w, x, y, z = g.quats.unbind(-1)
    signs = sh_flip_yz_signs(1 + g.shN.shape[1]).to(g.device, g.shN.dtype)
    return Gaussians(
        means=g.means * flip,
        scales=g.scales.clone(),
        quats=torch.stack([x, -w, z, -y] if inverse else [-x, w, -z, y], dim=-1),
        opacities=g.opacities.clone(),
        sh0=g.sh0.clone(),
        shN=g.shN * signs[1:, None],
    )


def gaussians_to_splat(g: Gaussians) -> SplatTensors:
    """Our Gaussians as a ComfyUI ``SPLAT`` batch of one (float32, CPU, activated, 3DGS frame)."""
    g.check_finite("cannot convert to SPLAT: the Gaussian model")
    if g.num == 0:
        raise InputError("cannot convert to SPLAT: the Gaussian model is empty (0 Gaussians)")
    t = flip_yz(g.detach().to("cpu").map(lambda p: p.float()))
    return SplatTensors(
        positions=t.means[None],
        scales=t.activated_scales()[None],
        rotations=t.normalized_quats()[None],
        opacities=t.activated_opacities()[:, None][None],
        sh=t.sh_coeffs()[None],
    )


def splat_to_gaussians(
    positions: Tensor,
    scales: Tensor,
    rotations: Tensor,
    opacities: Tensor,
    sh: Tensor,
    counts: Tensor | None = None,
    index: int = 0,
) -> Gaussians:
    """Item ``index`` of a ComfyUI ``SPLAT`` batch as our Gaussians (raw parameters, y-up world).

    Opacities are clamped to [1e-6, 1 - 1e-6] and scales to >= 1e-8 before taking logit / log,
    so files with exact 0/1 opacities still convert; everything else is exact up to float error.
    """
    b = positions.shape[0] if positions.ndim == 3 else 0
    if positions.ndim != 3 or positions.shape[-1] != 3:
        raise InputError(f"SPLAT positions must be (B, N, 3), got {tuple(positions.shape)}")
    if not 0 <= index < b:
        raise InputError(f"SPLAT batch has {b} item(s); item {index} does not exist")
    n = int(counts[index]) if counts is not None else positions.shape[1]
    k = sh.shape[2] if sh.ndim == 4 else -1
    if k not in (1, 4, 9, 16):
        raise InputError(f"SPLAT sh must be (B, N, K, 3) with K in 1/4/9/16 (SH degree 0-3), got {tuple(sh.shape)}")

    def item(t: Tensor) -> Tensor:
        return t[index, :n].detach().to("cpu", torch.float32)

    rot = torch.nn.functional.normalize(item(rotations), dim=-1)
    coeffs = item(sh)
    g = Gaussians(
        means=item(positions),
        scales=torch.log(item(scales).clamp_min(1e-8)),
        quats=rot,
        opacities=torch.logit(item(opacities).reshape(n).clamp(1e-6, 1 - 1e-6)),
        sh0=coeffs[:, :1].contiguous(),
        shN=coeffs[:, 1:].contiguous(),
    )
    g.check_finite("the SPLAT input")
    return flip_yz(g, inverse=True)
