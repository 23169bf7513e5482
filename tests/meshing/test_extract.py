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


def _brute_density(g: Gaussians, points: torch.Tensor, prefilter: float = 0.0, power: float = 0.5) -> torch.Tensor:
    """Every Gaussian at every point, same 3-sigma truncation; each Gaussian convolved with an
    isotropic one of std ``prefilter`` when two of its axes are thinner than that, opacity x
    (det Sigma / det Sigma')^(power / 2)."""
    rot, s = quat_to_rotmat(g.quats), g.activated_scales()
    cov = (rot * s[:, None, :]) @ (rot * s[:, None, :]).transpose(1, 2)
    needle = s.sort(-1).values[:, 1] < prefilter  # only Gaussians with two axes under the width
    wide = cov + torch.where(needle, prefilter**2, 0.0)[:, None, None] * torch.eye(3)
    m = rot / s[:, None, :]
    inv_cov = torch.linalg.inv(wide) if prefilter > 0 else m @ m.transpose(1, 2)  # same truncation edge as the code
    d = points[:, None, :] - g.means[None]
    m2 = torch.einsum("pni,nij,pnj->pn", d, inv_cov, d)
    opacity = g.activated_opacities() * (torch.linalg.det(cov) / torch.linalg.det(wide)) ** (power / 2)
    w = opacity[None] * torch.exp(-0.5 * m2)
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

    idx = torch.stack(torch.meshgrid(*[torch.arange(24)] * 3, indexing="ij"), -1).reshape(-1, 3).float()
    for k in (0.0, 0.5, 2.0):  # grid prefilter: raw density, the default, a wide one
        config = ExtractConfig(resolution=24, auto_bound=True, prefilter_voxels=k)
        grid, bbox = density_grid(g, config)
        voxel = (bbox[1] - bbox[0]) / (config.resolution - 1)
        expected = _brute_density(g, bbox[0] + voxel * idx, float(k * voxel[0]), config.prefilter_mass_power)
        torch.testing.assert_close(grid.reshape(-1), expected, atol=1e-5, rtol=1e-5)


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


def _concat(*models: Gaussians) -> Gaussians:
    fields = ("means", "scales", "quats", "opacities", "sh0", "shN")
    return Gaussians(**{k: torch.cat([getattr(m, k) for m in models]) for k in fields})


def _ball_with_needle_rod() -> tuple[Gaussians, torch.Tensor]:
    """A ball (radius 0.3) with a rod sticking out of it, tilted against the grid axes, made of
    four lines of needle-thin Gaussians (sigma across 0.002, about 0.1 voxel at resolution 64;
    opacity 0.4) like a fitted chair leg. Returns the model and points on the rod's axis."""
    ball = shapes.ball(0.3, 3000)
    d = torch.nn.functional.normalize(torch.tensor([1.0, 0.37, 0.21]), dim=0)
    u = torch.nn.functional.normalize(torch.linalg.cross(d, torch.tensor([0.0, 0.0, 1.0])), dim=0)
    v = torch.linalg.cross(d, u)
    t = torch.arange(0.25, 0.9, 0.01)
    axis = t[:, None] * d
    means = torch.cat([axis + 0.006 * (a * u + b * v) for a in (-1, 1) for b in (-1, 1)])
    n = len(means)
    quat = torch.cat([torch.tensor([1.0 + float(d[0])]), torch.linalg.cross(torch.tensor([1.0, 0.0, 0.0]), d)])
    log_scales = torch.tensor([0.01, 0.002, 0.002]).log().expand(n, 3)  # long along d (the x axis turned onto d)
    rod = shapes.gaussians(means, log_scales, quat.expand(n, 4), 0.4, torch.full((n, 3), 0.3))
    return _concat(ball, rod), axis[t > 0.35]


def test_needle_thin_rod_survives_extraction():
    """Gaussians much thinner than a voxel fall between the grid nodes; the prefilter must keep
    the rod (it came out as ~10% fragments, then deleted as small components, before)."""
    g, axis = _ball_with_needle_rod()
    mesh = extract_mesh(g, ExtractConfig(resolution=64, target_faces=0))
    dist = torch.cdist(axis, mesh.vertices).min(1).values
    assert float((dist < 0.03).float().mean()) > 0.9


def test_far_floater_is_dropped_but_touching_thin_part_kept():
    g, axis = _ball_with_needle_rod()
    floater = shapes.ball(0.04, 200, seed=1)
    floater.means += torch.tensor([-0.7, -0.6, 0.0])
    mesh = extract_mesh(_concat(g, floater), ExtractConfig(resolution=64, target_faces=0))
    assert float((mesh.vertices - torch.tensor([-0.7, -0.6, 0.0])).norm(dim=-1).min()) > 0.2
    assert float((torch.cdist(axis, mesh.vertices).min(1).values < 0.03).float().mean()) > 0.9


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
