"""Mesh-fidelity protocol: surface sampling, surface distances and the end-to-end run."""

import json
import math

import pytest
import torch

from microdreamer_core.eval.fidelity import (
    FidelityConfig,
    FidelityReport,
    evaluate_mesh_fidelity,
    fidelity_eval_cameras,
    fidelity_train_cameras,
    part_coverage,
)
from microdreamer_core.eval.fidelity_objects import FidelityObject, make_fidelity_object
from microdreamer_core.eval.metrics import (
    chamfer_distances,
    closest_points_on_triangles,
    mean_gradient,
    nearest_neighbors,
    point_surface_distance,
)
from microdreamer_core.meshing.extract import gaussians_on_surface
from microdreamer_core.meshing.stage import MeshConfig
from microdreamer_core.scene.mesh import Mesh, sample_surface


def _square(size: float = 2.0, z: float = 0.0, n: int = 8) -> Mesh:
    """A flat square of side ``size`` in the plane z, normal +z, as an n x n grid of quads."""
    t = torch.linspace(-size / 2, size / 2, n + 1)
    y, x = torch.meshgrid(t, t, indexing="ij")
    v = torch.stack([x, y, torch.full_like(x, z)], -1).reshape(-1, 3)
    i, j = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    a = (i * (n + 1) + j).reshape(-1)
    f = torch.cat([torch.stack([a, a + 1, a + n + 2], -1), torch.stack([a, a + n + 2, a + n + 1], -1)])
    return Mesh(v, f)


def test_sample_surface_is_uniform_by_area_and_on_the_triangles():
    verts = torch.tensor([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [3, 0, 1], [0, 2, 1.0]])
    mesh = Mesh(verts, [[0, 1, 2], [3, 4, 5]])
    points, face, bary = sample_surface(mesh, 20_000, torch.Generator().manual_seed(0))
    assert float((face == 1).float().mean()) == pytest.approx(6 / 7, abs=0.01)  # areas 0.5 and 3
    assert bool((bary >= 0).all()) and torch.allclose(bary.sum(-1), torch.ones(20_000))
    assert torch.allclose(points[face == 1, 2], torch.ones(1)) and torch.allclose(points[face == 0, 2], torch.zeros(1))
    only = sample_surface(mesh, 100, torch.Generator().manual_seed(0), faces=torch.tensor([0]))[1]
    assert bool((only == 0).all())
    # the same draws as before for gaussians_on_surface (its Gaussians are test fixtures elsewhere)
    again = sample_surface(mesh, 20_000, torch.Generator().manual_seed(0))[0]
    assert torch.equal(points, again)


def test_closest_points_on_triangles_known_cases():
    tri = torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 1, 0]])
    cases = [
        ([0.2, 0.3, 0.5], [0.2, 0.3, 0.0]),  # above the inside: the projection
        ([-1.0, -1.0, 0.3], [0.0, 0.0, 0.0]),  # beyond a vertex
        ([0.5, -2.0, 1.0], [0.5, 0.0, 0.0]),  # beyond an edge
        ([1.0, 1.0, 0.0], [0.5, 0.5, 0.0]),  # beyond the hypotenuse
    ]
    p = torch.tensor([c[0] for c in cases])
    got = closest_points_on_triangles(p, tri.expand(len(cases), 3, 3))
    assert torch.allclose(got, torch.tensor([c[1] for c in cases]), atol=1e-6)
    flat = torch.tensor([[0.0, 0, 0], [1, 0, 0], [2, 0, 0]])  # degenerate: a segment
    got = closest_points_on_triangles(torch.tensor([[1.5, 1.0, 0]]), flat[None])
    assert torch.allclose(got, torch.tensor([[1.5, 0, 0]]))


def test_nearest_neighbors_of_a_shifted_copy_is_the_shift():
    points = torch.rand(3000, 3, generator=torch.Generator().manual_seed(0))
    shift = torch.tensor([0.0003, -0.0002, 0.0001])  # far below the points' spacing
    d, idx = nearest_neighbors(points + shift, points, k=2, max_pairs=100_000)  # many chunks
    assert torch.equal(idx[:, 0], torch.arange(3000))
    assert torch.allclose(d[:, 0], shift.norm().expand(3000), atol=1e-6) and bool((d[:, 1] > d[:, 0]).all())


def test_surface_distances_mesh_against_itself_and_a_shifted_plane():
    chair = make_fidelity_object("chair").mesh
    gen = torch.Generator().manual_seed(0)
    pts = sample_surface(chair, 3000, gen)[0]
    d, closest, _ = point_surface_distance(pts, chair, samples=10_000, generator=gen)
    # exact but for a few points by creases, whose candidates all lie on the other side (< the sample spacing)
    assert float(d.mean()) < 1e-5 and float(d.quantile(0.99)) < 1e-4 and float(d.max()) < 0.01
    assert float((closest - pts).norm(dim=-1).median()) < 1e-6
    assert chamfer_distances(chair, chair, samples=2000, candidates=10_000) == pytest.approx((0.0, 0.0), abs=1e-4)
    # a plane shifted along its normal: every point is exactly the shift away (point-to-point
    # distances between two samplings would not be)
    a, b = _square(), _square(z=0.01)
    assert chamfer_distances(a, b, samples=2000, candidates=5000) == pytest.approx((0.01, 0.01), abs=2e-4)
    inner = sample_surface(_square(size=1.0), 2000, gen)[0]  # away from the border
    d = point_surface_distance(inner, b, samples=5000, generator=gen)[0]
    assert float((d - 0.01).abs().median()) < 1e-7 and float((d - 0.01).abs().max()) < 1e-3


def test_mean_gradient_measures_detail():
    checker = ((torch.arange(8)[:, None] + torch.arange(8)[None]) % 2).float()[None, ..., None].expand(1, 8, 8, 3)
    mask = torch.ones(1, 8, 8, dtype=torch.bool)
    assert mean_gradient(checker, mask) == pytest.approx(1.0)
    assert mean_gradient(torch.full((1, 8, 8, 3), 0.3), mask) == 0.0
    blurred = torch.nn.functional.avg_pool2d(checker.permute(0, 3, 1, 2), 3, 1, 1, count_include_pad=False)
    assert mean_gradient(blurred.permute(0, 2, 3, 1), mask) < 0.5
    assert mean_gradient(checker, torch.zeros(1, 8, 8, dtype=torch.bool)) == 0.0


def test_part_coverage_finds_missing_legs():
    chair = make_fidelity_object("chair")
    gen = torch.Generator().manual_seed(0)
    for leg in chair.thin_parts:
        assert part_coverage(chair, chair.mesh, leg, 500, 0.05 * chair.radius, gen) == 1.0
    keep = torch.cat([chair.parts["seat"], chair.parts["back"]])
    legless = Mesh(chair.mesh.vertices, chair.mesh.faces[keep])
    for leg in chair.thin_parts:  # only the top of each leg is near the seat
        assert part_coverage(chair, legless, leg, 500, 0.05 * chair.radius, gen) < 0.15


def test_protocol_cameras_see_from_above_and_below_and_never_repeat():
    train, novel = fidelity_train_cameras(32), fidelity_eval_cameras(32)
    assert len(train) == 6 and len(novel) == 8
    el_t, el_n = train.spherical()[0], novel.spherical()[0]
    assert (el_t < 0).any() and (el_t > 0).any() and (el_n < 0).any() and (el_n > 0).any()
    cos = (
        torch.nn.functional.normalize(novel.positions, dim=-1)
        @ torch.nn.functional.normalize(train.positions, dim=-1).T
    )
    assert float(torch.rad2deg(torch.acos(cos.max().clamp(max=1)))) > 25  # every held-out view is new


SMALL_MESH = MeshConfig(resolution=48, target_faces=3000, texture_size=64, bake_resolution=64, uv_charts="fast")


def _check_report(report: FidelityReport, obj: FidelityObject):
    d = report.as_dict()
    json.dumps(d)
    assert set(d) == set(FidelityReport.__dataclass_fields__)
    assert set(d["mesh_times_s"]) == {"extract", "unwrap", "bake"}
    assert set(d["thin_part_coverage"]) == set(obj.thin_parts)
    for key, value in d.items():
        if isinstance(value, float):
            assert math.isfinite(value), key
    for key in ("gaussians_iou", "mesh_iou", "mesh_vs_gaussians_iou"):
        assert 0.0 <= d[key] <= 1.0
    assert d["chamfer"] == pytest.approx((d["chamfer_mesh_to_truth"] + d["chamfer_truth_to_mesh"]) / 2, abs=1e-4)
    assert abs(d["signed_mesh_to_truth"]) <= d["chamfer_mesh_to_truth"] + 1e-4


def test_protocol_scores_known_gaussians_end_to_end():
    """Gaussians laid on the true surface (no reconstruction): every field, and a close mesh."""
    chair = make_fidelity_object("chair")
    gaussians = gaussians_on_surface(chair.mesh, num=6000, normal_scale=0.005)
    cfg = FidelityConfig(resolution=32, mesh=SMALL_MESH, surface_samples=2000, part_samples=300, bake_on_truth=False)
    run = evaluate_mesh_fidelity(chair, cfg, gaussians=gaussians)
    _check_report(run.report, chair)
    r = run.report
    assert r.reconstruct_s == 0.0 and r.gaussians == 6000 and r.truth_baked_psnr_db is None
    assert r.thin_part_min == 1.0 and r.chamfer < 0.1  # the legs survive a clean model
    assert run.mesh_views.images.shape == run.truth.images.shape == (8, 32, 32, 4)


def test_protocol_runs_end_to_end_with_reconstruction():
    handle = make_fidelity_object("handle")
    cfg = FidelityConfig(steps=3, resolution=32, mesh=SMALL_MESH, surface_samples=2000, part_samples=300)
    run = evaluate_mesh_fidelity(handle, cfg)
    _check_report(run.report, handle)
    assert run.report.reconstruct_s > 0 and run.report.steps == 3 and run.report.truth_baked_psnr_db is not None
