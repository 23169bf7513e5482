"""Mesh extraction (Gaussians -> mesh), UV unwrapping and texture baking.

Fast tests use Gaussian models whose answer is known (an analytic Gaussian, a ball of Gaussians,
Gaussians laid on the demo object's surface). The slow acceptance test reconstructs the Duck
exactly as tests/test_quality_duck.py does and scores the textured mesh against the real one.
"""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest
import torch

from microdreamer_core.errors import InputError
from microdreamer_core.meshing.extract import (
    SIGMA_CUTOFF,
    ExtractConfig,
    density_grid,
    extract_mesh,
    gaussian_density,
    gaussians_on_surface,
    signed_volume,
)
from microdreamer_core.meshing.texture import (
    BakeConfig,
    bake_texture,
    dilate,
    unwrap_uv,
)
from microdreamer_core.scene.gaussians import quat_to_rotmat
from microdreamer_core.scene.gaussians import Gaussians, rgb_to_sh0


def _gaussians(means, log_scales, quats, opacity, colors) -> Gaussians:
    n = len(means)
    op = torch.as_tensor(opacity, dtype=torch.float32).expand(n)
    return Gaussians(
        means=means.float(), scales=log_scales.float(), quats=quats.float(),
        opacities=torch.log(op / (1 - op)), sh0=rgb_to_sh0(colors.float())[:, None], shN=torch.zeros(n, 0, 3),
    )


def _random_gaussians(n: int, seed: int = 0) -> Gaussians:
    g = torch.Generator().manual_seed(seed)
    return _gaussians(
        (torch.rand(n, 3, generator=g) * 2 - 1) * 0.5,
        torch.log(torch.rand(n, 3, generator=g) * 0.06 + 0.01),
        torch.randn(n, 4, generator=g),
        torch.rand(n, generator=g) * 0.9 + 0.05,
        torch.rand(n, 3, generator=g),
    )


def _brute_density(g: Gaussians, points: torch.Tensor) -> torch.Tensor:
    """Every Gaussian at every point, same 3-sigma truncation."""
    rot = quat_to_rotmat(g.quats)
    m = rot / g.activated_scales()[:, None, :]
    inv_cov = m @ m.transpose(1, 2)
    d = points[:, None, :] - g.means[None]
    m2 = torch.einsum("pni,nij,pnj->pn", d, inv_cov, d)
    w = g.activated_opacities()[None] * torch.exp(-0.5 * m2)
    return torch.where(m2 <= SIGMA_CUTOFF**2, w, torch.zeros_like(w)).sum(1)


def _ball(radius: float = 0.4, n: int = 4000, seed: int = 0) -> Gaussians:
    """A solid ball of small isotropic Gaussians, uniform in volume."""
    g = torch.Generator().manual_seed(seed)
    d = torch.nn.functional.normalize(torch.randn(n, 3, generator=g), dim=-1)
    means = d * radius * torch.rand(n, 1, generator=g).pow(1 / 3)
    spacing = radius * (4 / 3 * math.pi / n) ** (1 / 3)
    quats = torch.zeros(n, 4)
    quats[:, 0] = 1
    return _gaussians(means, torch.full((n, 3), math.log(spacing)), quats, 0.9, torch.full((n, 3), 0.7))


# ----------------------------------------------------------------------------------------
# Density
# ----------------------------------------------------------------------------------------
def test_single_gaussian_density_is_analytic():
    rot = torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])  # 90 degrees about z
    quat = torch.tensor([[math.cos(math.pi / 4), 0.0, 0.0, math.sin(math.pi / 4)]])
    scales = torch.tensor([0.1, 0.03, 0.05])
    mean = torch.tensor([0.1, -0.2, 0.3])
    g = _gaussians(mean[None], scales.log()[None], quat, 0.8, torch.ones(1, 3) * 0.5)
    points = mean + torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.1, 0.0], [0.03, 0.0, 0.0], [0.02, -0.05, 0.04], [0.0, 0.0, 0.2]])
    local = (points - mean) @ rot  # coordinates along the Gaussian's own axes
    m2 = (local / scales).square().sum(-1)
    expected = 0.8 * torch.exp(-0.5 * m2) * (m2 <= 9)
    got = gaussian_density(g, points)
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-5)
    assert got[0] == pytest.approx(0.8) and got[-1] == 0.0  # centre; beyond 3 sigma (4 sigma along z)


def test_culled_density_matches_brute_force():
    g = _random_gaussians(300)
    points = (torch.rand(3000, 3, generator=torch.Generator().manual_seed(1)) * 2 - 1) * 0.6
    expected = _brute_density(g, points)
    torch.testing.assert_close(gaussian_density(g, points), expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(gaussian_density(g, points, chunk=997), expected, atol=1e-5, rtol=1e-5)  # chunks split boxes

    config = ExtractConfig(resolution=24, auto_bound=True)
    grid, bbox = density_grid(g, config)
    voxel = (bbox[1] - bbox[0]) / (config.resolution - 1)
    idx = torch.stack(torch.meshgrid(*[torch.arange(24)] * 3, indexing="ij"), -1).reshape(-1, 3).float()
    torch.testing.assert_close(grid.reshape(-1), _brute_density(g, bbox[0] + voxel * idx), atol=1e-5, rtol=1e-5)


# ----------------------------------------------------------------------------------------
# Extraction
# ----------------------------------------------------------------------------------------
def test_ball_of_gaussians_gives_closed_outward_sphere():
    radius = 0.4
    mesh = extract_mesh(_ball(radius), ExtractConfig(resolution=64, target_faces=3000))
    import trimesh

    tm = trimesh.Trimesh(mesh.vertices.numpy(), mesh.faces.numpy(), process=False)
    assert tm.is_watertight and len(tm.split(only_watertight=False)) == 1
    assert 0 < mesh.num_faces <= 3000
    r = mesh.vertices.norm(dim=-1)
    # The level set sits outside the outermost centres, by ~2 sigma at the default threshold
    # (sigma = the Gaussians' scale = their spacing, 0.04 here).
    sigma = radius * (4 / 3 * math.pi / 4000) ** (1 / 3)
    assert radius < float(r.mean()) < radius + 2.5 * sigma, float(r.mean())
    assert float(r.std()) < 0.03
    assert signed_volume(mesh.vertices, mesh.faces) > 0
    centroids = mesh.vertices[mesh.faces].mean(1)
    outward = (mesh.face_normals() * torch.nn.functional.normalize(centroids, dim=-1)).sum(-1)
    assert float((outward > 0).float().mean()) > 0.99
    assert float((mesh.normals * torch.nn.functional.normalize(mesh.vertices, dim=-1)).sum(-1).min()) > 0
    torch.testing.assert_close(mesh.vertex_colors, torch.full_like(mesh.vertex_colors, 0.7), atol=2e-3, rtol=0)


def test_off_centre_object_keeps_world_frame():
    """The auto-shrunk grid must map back to world coordinates, not grid indices."""
    ball = _ball(0.2, 1500)
    ball.means += torch.tensor([0.3, -0.25, 0.1])
    mesh = extract_mesh(ball, ExtractConfig(resolution=48, target_faces=0))
    centre = (mesh.bounds[0] + mesh.bounds[1]) / 2
    torch.testing.assert_close(centre, torch.tensor([0.3, -0.25, 0.1]), atol=0.02, rtol=0)


def test_hollow_shell_gives_one_outer_surface():
    """Surface-fitted Gaussians form a shell; the cavity must not produce an inner surface."""
    from microdreamer_core.eval.demo_object import make_demo_mesh

    demo = make_demo_mesh(64)
    g = gaussians_on_surface(demo, 8000, normal_scale=0.012)
    mesh = extract_mesh(g, ExtractConfig(resolution=64, target_faces=0))
    r = mesh.vertices.norm(dim=-1)
    assert float(r.min()) > 0.3  # the body's radius is ~0.4: nothing inside
    assert signed_volume(mesh.vertices, mesh.faces) > 0


def test_empty_or_transparent_models_raise_input_error():
    empty = _random_gaussians(5)[torch.zeros(5, dtype=torch.bool)]
    with pytest.raises(InputError, match="no surface to extract"):
        extract_mesh(empty)
    transparent = _random_gaussians(50)
    transparent.opacities[:] = -20.0
    with pytest.raises(InputError, match="no surface to extract"):
        extract_mesh(transparent)
    faint = _random_gaussians(50)
    faint.opacities[:] = math.log(0.05 / 0.95)  # visible, but the density never reaches 1
    with pytest.raises(InputError, match="density_threshold"):
        extract_mesh(faint, ExtractConfig(resolution=32))


# ----------------------------------------------------------------------------------------
# UV unwrapping and baking
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("charts", ["quality", "fast"])
def test_unwrap_uv_gives_valid_atlas(charts):
    mesh = extract_mesh(_ball(0.4, 2000), ExtractConfig(resolution=40, target_faces=2000))
    unwrapped = unwrap_uv(mesh, texture_size=256, charts=charts)
    uv = unwrapped.uvs
    assert uv.min() >= 0 and uv.max() <= 1
    assert unwrapped.num_faces == mesh.num_faces and unwrapped.num_vertices >= mesh.num_vertices
    # Seams split vertices but never move them: every new vertex is an old one.
    d = torch.cdist(unwrapped.vertices, mesh.vertices, compute_mode="donot_use_mm_for_euclid_dist").min(1).values
    assert float(d.max()) < 1e-6
    t = uv[unwrapped.faces]
    area = ((t[:, 1] - t[:, 0])[:, 0] * (t[:, 2] - t[:, 0])[:, 1] - (t[:, 1] - t[:, 0])[:, 1] * (t[:, 2] - t[:, 0])[:, 0]) / 2
    assert float((area.abs() > 1e-8).float().mean()) > 0.99
    assert unwrapped.vertex_colors is not None and unwrapped.normals is not None
    # charts do not overlap: their uv areas add up to no more than the unit square
    assert 0.2 < float(area.abs().sum()) <= 1.0


def test_unknown_uv_chart_setting_is_refused():
    mesh = extract_mesh(_ball(0.4, 500), ExtractConfig(resolution=24, target_faces=500))
    with pytest.raises(InputError, match="use one of quality, fast"):
        unwrap_uv(mesh, charts="turbo")


def test_dilate_fills_only_around_the_mask():
    img = torch.zeros(20, 20, 3)
    mask = torch.zeros(20, 20, dtype=torch.bool)
    img[8:12, 8:12] = torch.tensor([0.2, 0.4, 0.6])
    mask[8:12, 8:12] = True
    out = dilate(img, mask, 3)
    torch.testing.assert_close(out[5:15, 5:15], torch.tensor([0.2, 0.4, 0.6]).expand(10, 10, 3))
    assert float(out[:4].abs().sum()) == 0.0


def test_bake_reproduces_a_known_model():
    """Gaussians laid on the textured demo object: extract + unwrap + bake must render like them."""
    from microdreamer_core.eval.demo_object import make_demo_mesh
    from microdreamer_core.eval.metrics import psnr
    from microdreamer_core.eval.protocol import render_rgba
    from microdreamer_core.scene.cameras import orbit_cameras

    demo = make_demo_mesh(128)
    g = gaussians_on_surface(demo, 12000, normal_scale=0.01)
    mesh = extract_mesh(g, ExtractConfig(resolution=96, target_faces=8000))
    unwrapped = unwrap_uv(mesh, texture_size=256)
    baked = bake_texture(unwrapped, g, BakeConfig(texture_size=256, render_resolution=160, azimuths=6, padding=4))
    assert baked.texture.shape == (256, 256, 3)
    assert float(baked.texture.min()) >= 0 and float(baked.texture.max()) <= 1

    cams = orbit_cameras([0.0, -30.0, 20.0, 0.0], [30.0, 120.0, 210.0, 300.0], 2.0, 96)
    on_white = lambda x: x[..., :3] * x[..., 3:] + 1 - x[..., 3:]  # noqa: E731
    truth = on_white(render_rgba(g, cams))
    textured = psnr(on_white(render_rgba(baked, cams)), truth)
    flat = psnr(on_white(render_rgba(type(baked)(baked.vertices, baked.faces), cams)), truth)
    ground = psnr(on_white(render_rgba(baked, cams)), on_white(render_rgba(demo, cams)))
    # Measured: 23.7 dB against the Gaussians, 16.6 dB untextured (grey).
    assert textured >= 22.0 and textured > flat + 5.0, (textured, flat)
    assert ground >= 19.0, ground


# ----------------------------------------------------------------------------------------
# Acceptance on real data
# ----------------------------------------------------------------------------------------
def _surface_samples(vertices: np.ndarray, faces: np.ndarray, n: int, seed: int) -> np.ndarray:
    """``n`` points uniform by area on a triangle mesh."""
    rng = np.random.default_rng(seed)
    v = vertices[faces]
    area = np.linalg.norm(np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0]), axis=-1)
    face = rng.choice(len(faces), n, p=area / area.sum())
    r1, r2 = np.sqrt(rng.random(n)), rng.random(n)
    bary = np.stack([1 - r1, r1 * (1 - r2), r1 * r2], axis=1)
    return (bary[:, :, None] * v[face]).sum(1)


def chamfer_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Symmetric Chamfer distance: mean of the two mean nearest-neighbour distances (not squared)."""
    from scipy.spatial import cKDTree

    return 0.5 * (float(cKDTree(b).query(a)[0].mean()) + float(cKDTree(a).query(b)[0].mean()))


@pytest.mark.slow
@pytest.mark.parametrize("charts", ["quality", "fast"])
def test_duck_mesh_quality(duck_mesh, duck_evaluation, tmp_path, charts):
    from microdreamer_core.eval.metrics import mask_iou, psnr
    from microdreamer_core.eval.protocol import novel_eval_cameras, render_rgba

    duck, gaussians = duck_mesh, duck_evaluation.result.gaussians
    times = {}
    t = time.perf_counter()
    mesh = extract_mesh(gaussians, ExtractConfig())
    times["extract_s"] = time.perf_counter() - t
    t = time.perf_counter()
    mesh = unwrap_uv(mesh, charts=charts)
    times["unwrap_s"] = time.perf_counter() - t
    t = time.perf_counter()
    mesh = bake_texture(mesh, gaussians, BakeConfig())
    times["bake_s"] = time.perf_counter() - t

    chamfer = chamfer_distance(
        _surface_samples(mesh.vertices.numpy(), mesh.faces.numpy(), 10_000, 0),
        _surface_samples(duck.vertices.numpy(), duck.faces.numpy(), 10_000, 1),
    )
    cams = novel_eval_cameras(128)
    truth, pred = render_rgba(duck, cams), render_rgba(mesh, cams)
    on_white = lambda x: x[..., :3] * x[..., 3:] + 1 - x[..., 3:]  # noqa: E731
    result = {
        "chamfer": round(chamfer, 5),
        "psnr_db": round(psnr(on_white(pred), on_white(truth)), 3),
        "mask_iou": round(mask_iou(pred[..., 3], truth[..., 3]), 4),
        "faces": mesh.num_faces,
        "charts": charts,
        **{k: round(v, 2) for k, v in times.items()},
    }
    print("\nDUCK_MESH " + json.dumps(result))
    assert result["chamfer"] <= 0.02, result
    assert result["psnr_db"] >= 22.0, result

    # The Duck's GLB is standards-valid and reloads with its texture and uvs.
    from gltf_validator import assert_valid

    from microdreamer_core.io.export import save_glb
    from microdreamer_core.io.mesh_files import load_mesh

    path = save_glb(mesh, tmp_path / "duck.glb")
    assert_valid(path)
    back = load_mesh(path)
    assert back.texture is not None and back.uvs is not None
    assert torch.equal(back.texture, mesh.texture) or (back.texture - mesh.texture).abs().max() <= 1 / 255
