"""Differentiable 3D Gaussian splatting: one interface, two backends.

:func:`rasterize_gaussians` renders a batch of cameras with the EWA splatting model of 3DGS
(Kerbl et al. 2023). ``backend="gsplat"`` calls ``gsplat.rasterization`` (CUDA only);
``backend="torch"`` is our own pure-PyTorch rasteriser that runs anywhere (CPU in CI, CUDA too);
``backend="auto"`` picks gsplat for CUDA tensors when it imports, else torch.

Model (identical for both backends)
-----------------------------------
* Covariance ``Σ = R S Sᵀ Rᵀ`` from the (normalised, wxyz) quaternion and activated scales.
* Camera-space mean ``t = W·μ`` (OpenCV: x right, y down, z forward); Gaussians with
  ``z <= near`` or ``z >= far`` are culled.
* EWA projection ``Σ' = J W Σ Wᵀ Jᵀ + 0.3·I`` with the perspective Jacobian ``J`` evaluated at
  ``t`` whose ``x/z, y/z`` are clamped to 1.3x the half field of view (numerical stability
  for Gaussians far outside the image); the ``0.3·I`` is the usual low-pass dilation.
* Centre ``(fx·x/z + cx, fy·y/z + cy)``; pixel ``(i, j)`` has its centre at ``(j+0.5, i+0.5)``.
* ``alpha = min(0.99, opacity·exp(-½ dᵀ Σ'⁻¹ d))``, set to 0 below 1/255.
* Front-to-back compositing in camera-z order:
  ``C = Σ c_i α_i T_i + T_final·bg``, ``T_i = Π_{j<i} (1-α_j)``, ``alpha = 1 - T_final``.
* ``depth = Σ z_i α_i T_i / alpha`` (alpha-normalised *expected* camera z, 0 where alpha is 0),
  the same as gsplat's ``"ED"`` channel, so the depth semantics do not depend on the backend.
* ``radii = ceil(3·sqrt(λ_max(Σ')))`` for Gaussians that can touch the image, else 0.
* View-dependent colour from SH: ``max(SH(dir) + 0.5, 0)`` with ``dir = μ - camera centre``.

The torch backend (:mod:`~microdreamer_core.render.gaussians_torch`) projects and colours with
the functions here and composites in tiles; its algorithm and timings are documented there.
Backend selection follows the shared policy of :mod:`~microdreamer_core.render.backends`.

torch vs gsplat
---------------
gsplat implements the same EWA math, dilation, 1/255 cut-off, 0.99 clamp and Jacobian clamp. It
stops compositing a pixel once ``T < 1e-4`` (we composite every list to the end) and sums in a
different float order, so expect max abs rgb/alpha differences around 1e-3 (typically ~1e-4)
and relative depth differences of the same order; gsplat also clamps radii and culls on its own
3σ box, which only changes which Gaussians report ``radii > 0`` at the image border.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ..scene.cameras import Cameras
from ..scene.gaussians import Gaussians, quat_to_rotmat
from .backends import GaussianBackend, load_backend, resolve_gaussian_backend
from .gaussians_torch import rasterize_tiles

__all__ = [
    "Projection",
    "RenderOutput",
    "eval_sh",
    "project_gaussians",
    "rasterize_gaussians",
    "render_gaussians",
    "sh_to_color",
]

_DILATION = 0.3
_FOV_CLAMP = 1.3


@dataclass
class RenderOutput:
    """Rasteriser output for C cameras of H x W pixels and N Gaussians.

    Attributes:
        rgb: (C, H, W, 3) colour composited over the background.
        alpha: (C, H, W, 1) accumulated opacity ``1 - T_final``.
        depth: (C, H, W, 1) expected camera z normalised by alpha (0 where alpha is 0).
        means2d: (C, N, 2) projected centres in pixels. It is the tensor the rasteriser consumed,
            so after ``means2d.retain_grad()`` and ``loss.backward()`` its ``.grad`` is
            d loss / d pixel position (densification statistics).
        radii: (C, N) int32 screen radius in pixels, 0 for culled / invisible Gaussians.
    """

    rgb: Tensor
    alpha: Tensor
    depth: Tensor
    means2d: Tensor
    radii: Tensor


# ---------------------------------------------------------------------------------------------
# Spherical harmonics
# ---------------------------------------------------------------------------------------------

_SH_C0 = 0.28209479177387814
_SH_C1 = 0.4886025119029199
_SH_C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792, 0.5462742152960396)
_SH_C3 = (
    -0.5900435899266435,
    2.890611442640554,
    -0.4570457994644658,
    0.3731763325901154,
    -0.4570457994644658,
    1.445305721320277,
    -0.5900435899266435,
)


def eval_sh(sh_degree: int, coeffs: Tensor, dirs: Tensor) -> Tensor:
    """Evaluate real spherical harmonics (3DGS constants and ordering) up to ``sh_degree`` <= 3.

    Args:
        coeffs: (..., K, 3) coefficients, K >= (sh_degree + 1)²; extra ones are ignored.
        dirs: (..., 3) view directions (normalised here); broadcast against ``coeffs``.

    Returns:
        (..., 3) the raw SH value. The 3DGS colour is ``max(value + 0.5, 0)``, see
        :func:`sh_to_color`.
    """
    if not 0 <= sh_degree <= 3:
        raise ValueError(f"sh_degree must be in 0..3, got {sh_degree}")
    if coeffs.shape[-2] < (sh_degree + 1) ** 2:
        raise ValueError(f"sh_degree {sh_degree} needs {(sh_degree + 1) ** 2} coefficients, got {coeffs.shape[-2]}")
    result = _SH_C0 * coeffs[..., 0, :]
    if sh_degree == 0:
        return result
    d = torch.nn.functional.normalize(dirs, dim=-1)
    x, y, z = d[..., 0:1], d[..., 1:2], d[..., 2:3]
    result = result - _SH_C1 * y * coeffs[..., 1, :] + _SH_C1 * z * coeffs[..., 2, :] - _SH_C1 * x * coeffs[..., 3, :]
    if sh_degree == 1:
        return result
    xx, yy, zz, xy, yz, xz = x * x, y * y, z * z, x * y, y * z, x * z
    result = (
        result
        + _SH_C2[0] * xy * coeffs[..., 4, :]
        + _SH_C2[1] * yz * coeffs[..., 5, :]
        + _SH_C2[2] * (2.0 * zz - xx - yy) * coeffs[..., 6, :]
        + _SH_C2[3] * xz * coeffs[..., 7, :]
        + _SH_C2[4] * (xx - yy) * coeffs[..., 8, :]
    )
    if sh_degree == 2:
        return result
    return (
        result
        + _SH_C3[0] * y * (3.0 * xx - yy) * coeffs[..., 9, :]
        + _SH_C3[1] * xy * z * coeffs[..., 10, :]
        + _SH_C3[2] * y * (4.0 * zz - xx - yy) * coeffs[..., 11, :]
        + _SH_C3[3] * z * (2.0 * zz - 3.0 * xx - 3.0 * yy) * coeffs[..., 12, :]
        + _SH_C3[4] * x * (4.0 * zz - xx - yy) * coeffs[..., 13, :]
        + _SH_C3[5] * z * (xx - yy) * coeffs[..., 14, :]
        + _SH_C3[6] * x * (xx - 3.0 * yy) * coeffs[..., 15, :]
    )


def sh_to_color(sh_degree: int, coeffs: Tensor, dirs: Tensor) -> Tensor:
    """3DGS view-dependent colour ``max(eval_sh(...) + 0.5, 0)`` (what both backends render)."""
    return torch.clamp_min(eval_sh(sh_degree, coeffs, dirs) + 0.5, 0.0)


# ---------------------------------------------------------------------------------------------
# Projection (plain autograd)
# ---------------------------------------------------------------------------------------------


@dataclass
class Projection:
    """Per-camera screen-space Gaussians, all (C, N, ...).

    ``conics`` holds the inverse 2D covariance as (a, b, c) for ``[[a, b], [b, c]]``;
    ``lambda_max`` the largest eigenvalue of the (dilated) 2D covariance; ``in_range`` whether
    the camera z lies strictly between near and far and the 2D covariance is positive definite.
    """

    means2d: Tensor
    conics: Tensor
    depths: Tensor
    lambda_max: Tensor
    in_range: Tensor


def project_gaussians(
    means: Tensor,
    quats: Tensor,
    scales: Tensor,
    viewmats: Tensor,
    Ks: Tensor,
    width: int,
    height: int,
    near: float = 0.01,
    far: float = 100.0,
) -> Projection:
    """EWA-project N world Gaussians into C OpenCV cameras (differentiable)."""
    rot = quat_to_rotmat(quats)
    m = rot * scales[:, None, :]  # R S
    cov3d = m @ m.transpose(-1, -2)  # (N, 3, 3)

    w_rot, w_t = viewmats[:, :3, :3], viewmats[:, :3, 3]
    t = torch.einsum("cij,nj->cni", w_rot, means) + w_t[:, None, :]  # (C, N, 3)
    z = t[..., 2]
    in_range = (z > near) & (z < far)
    z_safe = torch.where(in_range, z, torch.ones_like(z))  # keeps culled rows finite (and NaN-free in backward)

    fx, fy = Ks[:, 0, 0, None], Ks[:, 1, 1, None]
    cx, cy = Ks[:, 0, 2, None], Ks[:, 1, 2, None]
    u, v = t[..., 0] / z_safe, t[..., 1] / z_safe
    margin_x, margin_y = (_FOV_CLAMP - 1.0) * 0.5 * width / fx, (_FOV_CLAMP - 1.0) * 0.5 * height / fy
    u_c = torch.minimum(torch.maximum(u, -cx / fx - margin_x), (width - cx) / fx + margin_x)
    v_c = torch.minimum(torch.maximum(v, -cy / fy - margin_y), (height - cy) / fy + margin_y)

    zero = torch.zeros_like(z)
    jac = torch.stack([fx / z_safe, zero, -fx * u_c / z_safe, zero, fy / z_safe, -fy * v_c / z_safe], dim=-1).reshape(
        *z.shape, 2, 3
    )
    jw = jac @ w_rot[:, None]  # (C, N, 2, 3)
    cov2d = jw @ cov3d[None] @ jw.transpose(-1, -2)
    a = cov2d[..., 0, 0] + _DILATION
    b = cov2d[..., 0, 1]
    c = cov2d[..., 1, 1] + _DILATION
    det = a * c - b * b
    in_range = in_range & (det > 0)
    det_safe = torch.where(in_range, det, torch.ones_like(det))
    conics = torch.stack([c / det_safe, -b / det_safe, a / det_safe], dim=-1)
    lambda_max = 0.5 * (a + c) + torch.sqrt((0.25 * (a - c) ** 2 + b * b).clamp_min(0.0))

    means2d = torch.stack([fx * u + cx, fy * v + cy], dim=-1)
    return Projection(means2d, conics, z, lambda_max.detach(), in_range)


# ---------------------------------------------------------------------------------------------
# Backends
# ---------------------------------------------------------------------------------------------


def _rasterize_torch(
    means: Tensor,
    quats: Tensor,
    scales: Tensor,
    opacities: Tensor,
    colors: Tensor,
    viewmats: Tensor,
    Ks: Tensor,
    width: int,
    height: int,
    background: Tensor,
    near: float,
    far: float,
    sh_degree: int | None,
) -> RenderOutput:
    """Our reference: project and colour with the model above, composite in tiles (:mod:`.gaussians_torch`)."""
    proj = project_gaussians(means, quats, scales, viewmats, Ks, width, height, near, far)
    colors_cn = _view_colors(means, colors, viewmats, sh_degree)  # (C, N, 3)
    rgb, alpha, depth, radii = rasterize_tiles(proj, opacities, colors_cn, background, width, height)
    return RenderOutput(rgb=rgb, alpha=alpha, depth=depth, means2d=proj.means2d, radii=radii)


def _view_colors(means: Tensor, colors: Tensor, viewmats: Tensor, sh_degree: int | None) -> Tensor:
    """(C, N, 3) per-camera colours: plain RGB broadcast, or SH evaluated towards each camera."""
    C = viewmats.shape[0]
    if sh_degree is None:
        if colors.ndim != 2 or colors.shape[-1] != 3:
            raise ValueError(f"colors must be (N, 3) when sh_degree is None, got {tuple(colors.shape)}")
        return colors[None].expand(C, -1, -1)
    if colors.ndim != 3 or colors.shape[-1] != 3:
        raise ValueError(f"colors must be (N, K, 3) SH coefficients when sh_degree is set, got {tuple(colors.shape)}")
    rot, trans = viewmats[:, :3, :3], viewmats[:, :3, 3]
    campos = -(rot.transpose(-1, -2) @ trans[..., None])[..., 0]  # (C, 3)
    dirs = means[None] - campos[:, None]
    return sh_to_color(sh_degree, colors[None], dirs).expand(C, -1, -1)  # degree 0 ignores dirs


def _rasterize_gsplat(
    means: Tensor,
    quats: Tensor,
    scales: Tensor,
    opacities: Tensor,
    colors: Tensor,
    viewmats: Tensor,
    Ks: Tensor,
    width: int,
    height: int,
    background: Tensor,
    near: float,
    far: float,
    sh_degree: int | None,
) -> RenderOutput:
    """``gsplat.rasterization`` with ``render_mode="RGB+ED"`` mapped onto :class:`RenderOutput`."""
    render, alphas, meta = load_backend("gsplat").rasterization(
        means=means.contiguous(),
        quats=quats.contiguous(),
        scales=scales.contiguous(),
        opacities=opacities.contiguous(),
        colors=colors.contiguous(),
        viewmats=viewmats.contiguous(),
        Ks=Ks.contiguous(),
        width=width,
        height=height,
        near_plane=near,
        far_plane=far,
        sh_degree=sh_degree,
        backgrounds=background.contiguous(),
        render_mode="RGB+ED",
        packed=False,
        absgrad=False,
        rasterize_mode="classic",
    )
    radii = meta["radii"]
    if radii.ndim == 3:  # newer gsplat: per-axis radii (C, N, 2)
        radii = radii.max(dim=-1).values
    return RenderOutput(
        rgb=render[..., :3],
        alpha=alphas,
        depth=render[..., 3:4],  # "ED" is already / alpha
        means2d=meta["means2d"],
        radii=radii.to(torch.int32),
    )


def rasterize_gaussians(
    means: Tensor,
    quats: Tensor,
    scales: Tensor,
    opacities: Tensor,
    colors: Tensor,
    viewmats: Tensor,
    Ks: Tensor,
    width: int,
    height: int,
    background: Tensor | None = None,
    near: float = 0.01,
    far: float = 100.0,
    sh_degree: int | None = None,
    backend: GaussianBackend = "auto",
) -> RenderOutput:
    """Render N Gaussians into C cameras (differentiable w.r.t. every tensor input).

    Args:
        means: (N, 3) world positions.
        quats: (N, 4) wxyz rotations, normalised here.
        scales: (N, 3) activated (positive, world-unit) scales.
        opacities: (N,) activated opacities in [0, 1].
        colors: (N, 3) RGB, or (N, K, 3) SH coefficients when ``sh_degree`` is given.
        viewmats: (C, 4, 4) OpenCV world-to-camera matrices.
        Ks: (C, 3, 3) pixel intrinsics.
        width, height: image size in pixels.
        background: (3,) or (C, 3) colour behind the Gaussians; None is black.
        near, far: camera-z clipping range.
        sh_degree: evaluate ``colors`` as SH of this degree (0..3); None for plain RGB.
        backend: "torch", "gsplat" (CUDA only) or "auto" (gsplat for CUDA tensors if it
            imports, else torch); see :mod:`~microdreamer_core.render.backends`.
    """
    backend = resolve_gaussian_backend(backend, means, quats, scales, opacities, colors)
    C = viewmats.shape[0]
    if background is None:
        background = means.new_zeros(C, 3)
    if background.shape not in ((3,), (C, 3)):
        raise ValueError(f"background must be (3,) or ({C}, 3), got {tuple(background.shape)}")
    background = background.to(means).expand(C, 3)
    viewmats, Ks = viewmats.to(means), Ks.to(means)

    args = (means, quats, scales, opacities, colors, viewmats, Ks, width, height, background, near, far, sh_degree)
    if backend == "gsplat":
        return _rasterize_gsplat(*args)
    return _rasterize_torch(*args)


def render_gaussians(
    gaussians: Gaussians,
    cameras: Cameras,
    background: Sequence[float] | Tensor = (1.0, 1.0, 1.0),
    backend: GaussianBackend = "auto",
) -> RenderOutput:
    """Render a :class:`Gaussians` set from ``cameras`` (activating its raw parameters)."""
    cams = cameras.to(gaussians.device)
    bg = torch.as_tensor(background, dtype=torch.float32, device=gaussians.device)
    return rasterize_gaussians(
        gaussians.means,
        gaussians.normalized_quats(),
        gaussians.activated_scales(),
        gaussians.activated_opacities(),
        gaussians.sh_coeffs(),
        cams.w2c_opencv(),
        cams.intrinsics(),
        cams.width,
        cams.height,
        background=bg,
        near=cams.near,
        far=cams.far,
        sh_degree=gaussians.sh_degree,
        backend=backend,
    )
