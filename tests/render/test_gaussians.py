"""Tests for microdreamer_core.render.gaussians and its torch backend, render.gaussians_torch (on CPU)."""

from __future__ import annotations

import math

import pytest
import torch

import microdreamer_core.render.gaussians_torch as gaussians_torch
from microdreamer_core.render.gaussians import (
    RenderOutput,
    eval_sh,
    project_gaussians,
    rasterize_gaussians,
    sh_to_color,
)
from microdreamer_core.scene.cameras import orbit_cameras

SH_C0 = 0.28209479177387814
SH_C1 = 0.4886025119029199


def _identity_quats(n: int, dtype=torch.float32) -> torch.Tensor:
    q = torch.zeros(n, 4, dtype=dtype)
    q[:, 0] = 1.0
    return q


def _front_camera(res: int, dtype=torch.float32):
    cams = orbit_cameras([0.0], [0.0], 2.0, res)  # camera at (0, 0, 2) looking at the origin
    return cams.w2c_opencv().to(dtype), cams.intrinsics().to(dtype)


def _random_scene(n: int, seed: int, dtype=torch.float32) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    d = torch.nn.functional.normalize(torch.randn(n, 3, generator=g), dim=-1)
    return {
        "means": (d * 0.5 * torch.rand(n, 1, generator=g)).to(dtype),
        "quats": torch.randn(n, 4, generator=g).to(dtype),
        "scales": (0.02 + 0.08 * torch.rand(n, 3, generator=g)).to(dtype),
        "opacities": (0.05 + 0.9 * torch.rand(n, generator=g)).to(dtype),
        "colors": torch.rand(n, 3, generator=g).to(dtype),
    }


def _dense_reference(scene, viewmats, Ks, width, height, background) -> tuple[torch.Tensor, ...]:
    """Every Gaussian at every pixel, depth-sorted, plain autograd: the model without tiling."""
    proj = project_gaussians(scene["means"], scene["quats"], scene["scales"], viewmats, Ks, width, height)
    ys, xs = torch.meshgrid(torch.arange(height) + 0.5, torch.arange(width) + 0.5, indexing="ij")
    pix = torch.stack([xs, ys], -1).reshape(-1, 2).to(scene["means"].dtype)  # (HW, 2)
    rgbs, alphas, depths = [], [], []
    for c in range(viewmats.shape[0]):
        keep = proj.in_range[c] & (scene["opacities"] >= 1 / 255)
        order = torch.argsort(proj.depths[c].detach().masked_fill(~keep, float("inf")))[: int(keep.sum())]
        m, con = proj.means2d[c, order], proj.conics[c, order]
        d = pix[:, None, :] - m[None]  # (HW, n, 2)
        q = 0.5 * (con[:, 0] * d[..., 0] ** 2 + 2 * con[:, 1] * d[..., 0] * d[..., 1] + con[:, 2] * d[..., 1] ** 2)
        a = (scene["opacities"][order] * torch.exp(-q)).clamp(max=0.99)
        a = torch.where(a < 1 / 255, torch.zeros_like(a), a)
        t = torch.cumprod(torch.cat([torch.ones_like(a[:, :1]), 1 - a], 1), 1)
        w = a * t[:, :-1]
        alpha = 1 - t[:, -1:]
        rgbs.append(w @ scene["colors"][order] + t[:, -1:] * background[c])
        alphas.append(alpha)
        depths.append((w @ proj.depths[c, order, None]) / alpha.clamp_min(1e-10))
    shape = (viewmats.shape[0], height, width, -1)
    return tuple(torch.stack(x).reshape(shape) for x in (rgbs, alphas, depths))


def test_single_gaussian_centred_blob_matches_analytic_alpha():
    res, sigma, opacity = 32, 0.1, 0.8
    viewmats, Ks = _front_camera(res)
    bg = torch.tensor([0.0, 0.0, 1.0])
    out = rasterize_gaussians(
        torch.zeros(1, 3),
        _identity_quats(1),
        torch.full((1, 3), sigma),
        torch.tensor([opacity]),
        torch.tensor([[1.0, 0.0, 0.0]]),
        viewmats,
        Ks,
        res,
        res,
        background=bg,
        backend="torch",
    )
    assert isinstance(out, RenderOutput)
    assert out.rgb.shape == (1, res, res, 3) and out.alpha.shape == (1, res, res, 1)
    assert out.depth.shape == (1, res, res, 1) and out.means2d.shape == (1, 1, 2) and out.radii.shape == (1, 1)
    assert torch.allclose(out.means2d[0, 0], torch.tensor([res / 2, res / 2]), atol=1e-4)

    # analytic: isotropic screen variance (f σ / z)² + 0.3 at the pixel centre (16.5, 16.5)
    f = Ks[0, 0, 0].item()
    var = (f * sigma / 2.0) ** 2 + 0.3
    peak = opacity * math.exp(-0.5 * (0.5**2 + 0.5**2) / var)
    a = out.alpha[0, ..., 0]
    assert a.max().item() == pytest.approx(peak, rel=1e-5)
    assert {tuple(p) for p in torch.nonzero(a == a.max()).tolist()} == {(15, 15), (15, 16), (16, 15), (16, 16)}
    assert torch.allclose(a, a.flip(0)) and torch.allclose(a, a.T)  # centred and isotropic
    # red over blue: rgb = α·red + (1-α)·blue; depth is the Gaussian's camera z wherever visible
    assert torch.allclose(out.rgb[0], torch.stack([a, torch.zeros_like(a), 1 - a], -1), atol=1e-6)
    assert torch.allclose(out.depth[0][a > 0], torch.tensor(2.0), atol=1e-5)
    assert (out.depth[0][a == 0] == 0).all() and a[0, 0] == 0  # far corner is below 1/255
    assert out.radii[0, 0].item() == math.ceil(3 * math.sqrt(var))


def test_nearer_gaussian_occludes():
    res = 16
    viewmats, Ks = _front_camera(res)
    means = torch.tensor([[0.0, 0.0, 0.3], [0.0, 0.0, -0.3]])  # first is nearer the camera at z=+2
    colors = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    args = {
        "quats": _identity_quats(2),
        "scales": torch.full((2, 3), 0.3),
        "opacities": torch.tensor([0.99, 0.99]),
        "viewmats": viewmats,
        "Ks": Ks,
        "width": res,
        "height": res,
        "backend": "torch",
    }
    centre = (0, res // 2, res // 2)
    out = rasterize_gaussians(means, colors=colors, **args)
    swapped = rasterize_gaussians(means.flip(0), colors=colors.flip(0), **args)  # input order is irrelevant
    assert torch.allclose(out.rgb, swapped.rgb)
    a_red = rasterize_gaussians(
        means[:1],
        colors=colors[:1],
        **{**args, "quats": _identity_quats(1), "scales": args["scales"][:1], "opacities": args["opacities"][:1]},
    ).alpha[centre]
    a_green = rasterize_gaussians(
        means[1:],
        colors=colors[1:],
        **{**args, "quats": _identity_quats(1), "scales": args["scales"][1:], "opacities": args["opacities"][1:]},
    ).alpha[centre]
    assert a_red.item() > 0.9 and a_green.item() > 0.9
    r, g, _ = out.rgb[centre]
    assert r.item() == pytest.approx(a_red.item(), rel=1e-5)  # red in front: full weight
    assert g.item() == pytest.approx((1 - a_red.item()) * a_green.item(), rel=1e-4)  # green behind it
    z_red, z_green = 1.7, 2.3
    expect_depth = (a_red * z_red + (1 - a_red) * a_green * z_green) / out.alpha[centre]
    assert out.depth[centre].item() == pytest.approx(expect_depth.item(), rel=1e-5)
    green_front = rasterize_gaussians(means.flip(0), colors=colors, **args)  # now green is in front
    assert green_front.rgb[centre][1].item() > 0.9 and green_front.rgb[centre][0].item() < 0.1


@pytest.mark.parametrize(
    "width,height,tile,chunk",
    [(32, 32, None, None), (30, 21, 16, 1 << 12), (27, 32, 4, 1 << 10)],  # default; odd sizes, many chunks
)
def test_tiled_matches_dense_reference_values_and_gradients(monkeypatch, width, height, tile, chunk):
    if tile:
        monkeypatch.setattr(gaussians_torch, "TILE_SIZE", tile)
    if chunk:
        monkeypatch.setattr(gaussians_torch, "_CHUNK_ELEMENTS", chunk)
    scene = _random_scene(200, seed=1)
    if chunk:
        scene["opacities"][::7] = 1.0  # exercise the 0.99 alpha clamp (and its zero gradient)
    for v in scene.values():
        v.requires_grad_(True)
    cams = orbit_cameras([-20.0, 10.0], [30.0, 200.0], 1.6, (width, height))
    viewmats, Ks = cams.w2c_opencv(), cams.intrinsics()
    bg = torch.tensor([[0.2, 0.4, 0.6], [1.0, 1.0, 1.0]])
    out = rasterize_gaussians(
        **scene, viewmats=viewmats, Ks=Ks, width=width, height=height, background=bg, backend="torch"
    )
    ref = _dense_reference(scene, viewmats, Ks, width, height, bg)
    assert (out.rgb - ref[0]).abs().max().item() < 1e-5
    assert (out.alpha - ref[1]).abs().max().item() < 1e-5
    # depth is divided by alpha: compare the accumulated depth, and depth itself where alpha is sizeable
    assert (out.depth * out.alpha - ref[2] * ref[1]).abs().max().item() < 1e-5
    solid = ref[1] > 0.05
    assert torch.allclose(out.depth[solid], ref[2][solid], rtol=1e-5, atol=0)
    assert out.alpha.min() < 0.01 and out.alpha.max() > 0.9  # a meaningful scene

    g = torch.Generator().manual_seed(2)
    weights = [torch.randn(x.shape, generator=g) for x in ref]
    grads = []
    for outputs in ((out.rgb, out.alpha, out.depth), ref):
        loss = sum((w * o).sum() for w, o in zip(weights, outputs, strict=True))
        grads.append(torch.autograd.grad(loss, list(scene.values())))
    for name, got, want in zip(scene, *grads, strict=True):
        scale = want.abs().max().item()
        assert (got - want).abs().max().item() <= 1e-4 * scale + 1e-6, name


def test_finite_difference_gradients_float64():
    torch.manual_seed(0)
    res = 8
    viewmats, Ks = _front_camera(res, torch.float64)
    means = torch.tensor([[0.15, -0.1, 0.1], [-0.2, 0.1, -0.1], [0.0, 0.15, 0.0]], dtype=torch.float64)
    quats = torch.randn(3, 4, dtype=torch.float64)
    scales = torch.tensor([[1.0, 0.8, 0.9], [0.9, 1.2, 1.0], [1.3, 1.0, 0.8]], dtype=torch.float64)
    opac = torch.tensor([0.5, 0.6, 0.4], dtype=torch.float64)
    colors = torch.rand(3, 3, dtype=torch.float64)
    bg = torch.tensor([0.3, 0.1, 0.9], dtype=torch.float64)
    inputs = [x.requires_grad_() for x in (means, quats, scales, opac, colors)]

    proj = torch.randn(4, res, res, 5, dtype=torch.float64)  # 4 random functionals keep backward calls few

    def fn(*xs):
        out = rasterize_gaussians(*xs, viewmats=viewmats, Ks=Ks, width=res, height=res, background=bg, backend="torch")
        assert out.alpha.min() > 0.05  # every pixel far from the 1/255 cut-off: smooth
        return (proj * torch.cat([out.rgb, out.alpha, out.depth], -1)).sum((1, 2, 3))

    assert fn(*inputs)[0].dtype == torch.float64
    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-6, rtol=1e-4)


def test_means2d_grad_is_pixel_gradient():
    scene = _random_scene(50, seed=3)
    scene["means"].requires_grad_(True)
    viewmats, Ks = _front_camera(24)
    out = rasterize_gaussians(**scene, viewmats=viewmats, Ks=Ks, width=24, height=24, backend="torch")
    out.means2d.retain_grad()
    (out.rgb * torch.linspace(0, 1, 24)[None, None, :, None]).sum().backward()
    assert out.means2d.grad is not None and out.means2d.grad.shape == (1, 50, 2)
    visible = out.radii[0] > 0
    assert out.means2d.grad[0, visible].abs().sum() > 0
    assert scene["means"].grad.abs().sum() > 0


def test_background_variants():
    scene = _random_scene(30, seed=4)
    cams = orbit_cameras([0.0, 0.0], [0.0, 90.0], 2.0, 16)
    kw = {"viewmats": cams.w2c_opencv(), "Ks": cams.intrinsics(), "width": 16, "height": 16, "backend": "torch"}
    black = rasterize_gaussians(**scene, **kw)
    assert torch.allclose(black.rgb, rasterize_gaussians(**scene, background=torch.zeros(3), **kw).rgb)
    bg3 = torch.tensor([0.1, 0.5, 0.9])
    per_view = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    for bg in (bg3, per_view):
        out = rasterize_gaussians(**scene, background=bg, **kw)
        expect = black.rgb + (1 - black.alpha) * bg.expand(2, 3)[:, None, None, :]
        assert torch.allclose(out.rgb, expect, atol=1e-6)
    with pytest.raises(ValueError):
        rasterize_gaussians(**scene, background=torch.zeros(3, 3), **kw)


def test_empty_image_and_culling_behind_camera():
    viewmats, Ks = _front_camera(16)
    none = rasterize_gaussians(
        torch.zeros(0, 3),
        _identity_quats(0),
        torch.ones(0, 3),
        torch.ones(0),
        torch.ones(0, 3),
        viewmats,
        Ks,
        16,
        16,
        background=torch.ones(3),
        backend="torch",
    )
    assert (none.rgb == 1).all() and (none.alpha == 0).all() and none.radii.shape == (1, 0)
    kw = {
        "quats": _identity_quats(2),
        "scales": torch.full((2, 3), 0.2),
        "opacities": torch.tensor([0.9, 0.9]),
        "colors": torch.ones(2, 3),
        "viewmats": viewmats,
        "Ks": Ks,
        "width": 16,
        "height": 16,
        "background": torch.tensor([0.0, 1.0, 0.0]),
        "backend": "torch",
    }
    behind = torch.tensor([[0.0, 0.0, 3.0], [0.0, 0.0, 2.005]])  # behind the camera / closer than near
    out = rasterize_gaussians(behind, **kw)
    assert (out.alpha == 0).all() and (out.depth == 0).all() and (out.radii == 0).all()
    assert torch.allclose(out.rgb, torch.tensor([0.0, 1.0, 0.0]).expand(1, 16, 16, 3))
    far = rasterize_gaussians(torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, 0.5]]), far=1.8, **kw)
    assert far.radii[0].tolist()[0] == 0 and far.radii[0].tolist()[1] > 0  # z=2 culled, z=1.5 kept


def test_eval_sh_constants_and_sh_rendering():
    dirs = torch.tensor([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, -2.0, 0.0]])
    coeffs = torch.zeros(3, 4, 3)
    coeffs[:, 0] = torch.tensor([1.0, 2.0, 3.0])
    assert torch.allclose(eval_sh(0, coeffs, dirs), SH_C0 * coeffs[:, 0])
    coeffs[:, 1:] = torch.tensor([0.5, -1.0, 2.0])[:, None]  # degree-1 coefficients for y, z, x
    # C0·c0 - C1·y·c1 + C1·z·c2 - C1·x·c3 for the unit directions +z, +x, -y
    expected = SH_C0 * coeffs[:, 0] + SH_C1 * torch.tensor([[-1.0], [-2.0], [0.5]])
    assert torch.allclose(eval_sh(1, coeffs, dirs), expected)
    assert torch.allclose(sh_to_color(1, coeffs, dirs), (expected + 0.5).clamp_min(0))
    for deg in (2, 3):  # higher degrees run and reduce to lower ones with zero extra coefficients
        padded = torch.cat([coeffs, torch.zeros(3, (deg + 1) ** 2 - 4, 3)], 1)
        assert torch.allclose(eval_sh(deg, padded, dirs), expected, atol=1e-6)
    with pytest.raises(ValueError):
        eval_sh(2, coeffs, dirs)

    # rendering: SH degree 0 equals RGB = SH·C0 + 0.5; degree 1 depends on the view direction
    scene = _random_scene(40, seed=5)
    cams = orbit_cameras([0.0, 0.0], [0.0, 180.0], 2.0, 16)
    kw = {"viewmats": cams.w2c_opencv(), "Ks": cams.intrinsics(), "width": 16, "height": 16, "backend": "torch"}
    rgb = scene.pop("colors")
    sh0 = ((rgb - 0.5) / SH_C0)[:, None, :]
    a = rasterize_gaussians(**scene, colors=rgb, **kw)
    b = rasterize_gaussians(**scene, colors=sh0, sh_degree=0, **kw)
    assert torch.allclose(a.rgb, b.rgb, atol=1e-5)
    sh1 = torch.cat([sh0, torch.zeros(40, 3, 3)], 1)
    sh1[:, 2] = 0.5  # z-term: brighter seen from +z (azimuth 0) than from -z (azimuth 180)
    c = rasterize_gaussians(**scene, colors=sh1, sh_degree=1, **kw)
    dirs = scene["means"][None] - cams.positions[:, None]
    col = sh_to_color(1, sh1[None], dirs)  # (2, N, 3)
    assert (col[0] < col[1]).all()  # camera 0 at +z looks along -z: the z-term lowers its colour
    assert not torch.allclose(c.rgb[0], a.rgb[0])
