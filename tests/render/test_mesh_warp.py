"""The warp mesh backend (render.mesh_warp) against the torch reference: same pixels, same values, same gradients.

CI installs warp-lang (tests/requirements.txt), so these run there; on a machine without it they
skip, except under CI (``CI`` set), where a missing warp must fail rather than skip.
"""

import importlib.util
import os

import pytest
import torch

if importlib.util.find_spec("warp") is None and not os.environ.get("CI"):
    pytest.skip("warp-lang is not installed (pip install microdreamer[fast])", allow_module_level=True)

import microdreamer_core.render.backends as backends
from microdreamer_core.eval.demo_object import make_demo_mesh
from microdreamer_core.meshing.bake import uv_rasterize
from microdreamer_core.render.backends import resolve_mesh_backend
from microdreamer_core.render.mesh import interpolate, rasterize, render_mesh
from microdreamer_core.scene.cameras import orbit_cameras
from microdreamer_core.scene.mesh import Mesh

MAX_DIFFERING = 1e-3  # fraction of pixels whose winning triangle may differ (ties at shared edges)


def _soup(n: int = 300, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(2, 3n, 4) clip positions of random triangles in two views: overlapping, some behind the
    camera (w <= 0), some crossing the near or far plane, some off screen, one degenerate."""
    g = torch.Generator().manual_seed(seed)
    centre = torch.rand(2, n, 1, 4, generator=g) * torch.tensor([2.6, 2.6, 2.4, 1.0]) - torch.tensor([1.3, 1.3, 1.2, 0])
    pos = centre + 0.3 * torch.randn(2, n, 3, 4, generator=g) * torch.tensor([1.0, 1.0, 1.0, 0.0])
    pos[..., 3] = 1.0 + 0.2 * torch.rand(2, n, 3, generator=g)
    pos[:, :5, 0, 3] = -0.5  # behind the camera: never drawn
    pos[:, 5, 1] = pos[:, 5, 0]  # degenerate
    return pos.reshape(2, 3 * n, 4), torch.arange(3 * n).view(n, 3)


def _assert_same_raster(out: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Ids agree on all but a hair of pixels and the values agree where they do; returns that mask."""
    same = out[..., 3] == ref[..., 3]
    assert (~same).float().mean() <= MAX_DIFFERING
    torch.testing.assert_close(out[same], ref[same], atol=1e-5, rtol=1e-5)
    return same


def test_rasterize_matches_torch_on_a_triangle_soup():
    pos, faces = _soup()
    ref = rasterize(pos, faces, (48, 64), backend="torch")
    out = rasterize(pos, faces, (48, 64), backend="warp")
    assert out.shape == ref.shape == (2, 48, 64, 4)
    same = _assert_same_raster(out, ref)
    covered = ref[..., 3] > 0
    assert covered.float().mean() > 0.5 and (same & covered).sum() > 0.99 * covered.sum()
    assert not ((out[..., 3] > 0) & (out[..., 3] <= 5)).any()  # triangles behind the camera are dropped
    empty = rasterize(pos[:, :0], faces[:0], (8, 8), backend="warp")
    assert empty.shape == (2, 8, 8, 4) and not empty.any()


def test_render_mesh_interpolate_and_gradients_match_torch():
    mesh = make_demo_mesh(texture_size=32)
    cams = orbit_cameras([-30.0, 20.0], [0.0, 200.0], 2.0, 48)
    tex = mesh.texture.clone().requires_grad_(True)
    verts = mesh.vertices.clone().requires_grad_(True)
    weights = torch.rand(2, 48, 48, 3, generator=torch.Generator().manual_seed(1))
    outs, grads = {}, {}
    for backend in ("torch", "warp"):
        m = Mesh(verts, mesh.faces, uvs=mesh.uvs, texture=tex, normals=mesh.normals)
        outs[backend] = out = render_mesh(m, cams, background=(0.2, 0.3, 0.4), backend=backend)
        same = (out.rast[..., 3:4] == outs["torch"].rast[..., 3:4]).float()  # compare where the winners agree
        (weights * out.rgb * same).sum().add((out.depth * same).sum()).backward()
        grads[backend] = (tex.grad.clone(), verts.grad.clone())
        tex.grad, verts.grad = None, None
    ref, out = outs["torch"], outs["warp"]
    same = _assert_same_raster(out.rast, ref.rast)
    assert same.all()  # the same algorithm in the same float32 arithmetic: no ties on this mesh
    for name in ("rgb", "alpha", "depth", "normal"):
        torch.testing.assert_close(getattr(out, name), getattr(ref, name), atol=1e-5, rtol=1e-5)
    for g_warp, g_torch in zip(grads["warp"], grads["torch"], strict=True):
        assert g_torch.abs().sum() > 0
        torch.testing.assert_close(g_warp, g_torch, atol=1e-5, rtol=1e-4)
    # interpolate through a warp raster with per-view attributes
    attrs = torch.randn(2, len(mesh.vertices), 2)
    torch.testing.assert_close(
        interpolate(attrs, out.rast, mesh.faces, backend="warp"), interpolate(attrs, ref.rast, mesh.faces, "torch")
    )


def test_uv_rasterisation_matches_torch():
    mesh = make_demo_mesh(texture_size=32)
    ref = rasterize(
        torch.cat([mesh.uvs * 2 - 1, torch.zeros_like(mesh.uvs[:, :1]), torch.ones_like(mesh.uvs[:, :1])], -1)[None],
        mesh.faces,
        (128, 128),
        backend="torch",
    )
    out = uv_rasterize(mesh, 128)  # backend "auto" on the CPU: warp
    _assert_same_raster(out, ref)
    assert (ref[..., 3] > 0).float().mean() > 0.3


def test_auto_takes_warp_and_a_missing_warp_falls_back_or_names_the_fix(monkeypatch):
    cpu = torch.zeros(3)
    assert resolve_mesh_backend("auto", cpu) == "warp" and resolve_mesh_backend("warp", cpu) == "warp"
    with pytest.raises(ValueError, match=r"use 'auto', 'torch', 'warp' or 'nvdiffrast'"):
        resolve_mesh_backend("opengl", cpu)
    backends._probe.cache_clear()
    try:
        monkeypatch.setitem(backends._PACKAGES, "warp", backends._CudaPackage("microdreamer_no_such_module", "pip x"))
        assert resolve_mesh_backend("auto", cpu) == "torch"
        with pytest.raises(RuntimeError, match=r"^backend='warp' requested but .* install it with `pip x`, or use"):
            resolve_mesh_backend("warp", cpu)
    finally:
        backends._probe.cache_clear()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (run by bench/gpu_check.sh)")
def test_warp_on_cuda_matches_torch():
    """Warp's CUDA path (unchecked before a GPU run): the torch reference's pixels on the same GPU and on the CPU."""
    pos, faces = _soup()
    out = rasterize(pos.cuda(), faces.cuda(), (48, 64), backend="warp")
    assert out.is_cuda
    _assert_same_raster(out, rasterize(pos.cuda(), faces.cuda(), (48, 64), backend="torch"))
    _assert_same_raster(out.cpu(), rasterize(pos, faces, (48, 64), backend="torch"))
    mesh = make_demo_mesh(texture_size=32).to("cuda")
    cams = orbit_cameras([-30.0, 20.0], [0.0, 200.0], 2.0, 128).to("cuda")
    ref, got = render_mesh(mesh, cams, backend="torch"), render_mesh(mesh, cams, backend="warp")
    _assert_same_raster(got.rast, ref.rast)
    torch.testing.assert_close(got.rgb, ref.rgb, atol=1e-5, rtol=1e-5)
