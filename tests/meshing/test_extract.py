"""Mesh extraction (Gaussians -> mesh): density, marching cubes, clean-up.

The tests use Gaussian models whose answer is known (an analytic Gaussian, a ball of Gaussians,
Gaussians laid on the demo object's surface); the slow Duck acceptance test is in
tests/eval/test_quality_duck.py.
"""

from __future__ import annotations

import math

import gaussian_shapes as shapes
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
from microdreamer_core.scene.gaussians import Gaussians, quat_to_rotmat


def _brute_density(g: Gaussians, points: torch.Tensor) -> torch.Tensor:
    """Every Gaussian at every point, same 3-sigma truncation."""
    rot = quat_to_rotmat(g.quats)
    m = rot / g.activated_scales()[:, None, :]
    inv_cov = m @ m.transpose(1, 2)
    d = points[:, None, :] - g.means[None]
    m2 = torch.einsum("pni,nij,pnj->pn", d, inv_cov, d)
    w = g.activated_opacities()[None] * torch.exp(-0.5 * m2)
    return torch.where(m2 <= SIGMA_CUTOFF**2, w, torch.zeros_like(w)).sum(1)


# ----------------------------------------------------------------------------------------
# Density
# ----------------------------------------------------------------------------------------
def test_single_gaussian_density_is_analytic():
    rot = torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])  # 90 degrees about z
    quat = torch.tensor([[math.cos(math.pi / 4), 0.0, 0.0, math.sin(math.pi / 4)]])
    scales = torch.tensor([0.1, 0.03, 0.05])
    mean = torch.tensor([0.1, -0.2, 0.3])
    g = shapes.gaussians(mean[None], scales.log()[None], quat, 0.8, torch.ones(1, 3) * 0.5)
    points = mean + torch.tensor(
        [[0.0, 0.0, 0.0], [0.0, 0.1, 0.0], [0.03, 0.0, 0.0], [0.02, -0.05, 0.04], [0.0, 0.0, 0.2]]
    )
    local = (points - mean) @ rot  # coordinates along the Gaussian's own axes
    m2 = (local / scales).square().sum(-1)
    expected = 0.8 * torch.exp(-0.5 * m2) * (m2 <= 9)
    got = gaussian_density(g, points)
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-5)
    assert got[0] == pytest.approx(0.8) and got[-1] == 0.0  # centre; beyond 3 sigma (4 sigma along z)


def test_culled_density_matches_brute_force():
    g = shapes.random_gaussians(300)
    points = (torch.rand(3000, 3, generator=torch.Generator().manual_seed(1)) * 2 - 1) * 0.6
    expected = _brute_density(g, points)
    torch.testing.assert_close(gaussian_density(g, points), expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(
        gaussian_density(g, points, chunk=997), expected, atol=1e-5, rtol=1e-5
    )  # chunks split boxes

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
    mesh = extract_mesh(shapes.ball(radius), ExtractConfig(resolution=64, target_faces=3000))
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
    ball = shapes.ball(0.2, 1500)
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
    empty = shapes.random_gaussians(5)[torch.zeros(5, dtype=torch.bool)]
    with pytest.raises(InputError, match="no surface to extract"):
        extract_mesh(empty)
    transparent = shapes.random_gaussians(50)
    transparent.opacities[:] = -20.0
    with pytest.raises(InputError, match="no surface to extract"):
        extract_mesh(transparent)
    faint = shapes.random_gaussians(50)
    faint.opacities[:] = math.log(0.05 / 0.95)  # visible, but the density never reaches 1
    with pytest.raises(InputError, match="density_threshold"):
        extract_mesh(faint, ExtractConfig(resolution=32))
