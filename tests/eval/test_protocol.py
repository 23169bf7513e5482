"""The evaluation protocol's building blocks: antialiased ground truth and cameras."""

import torch

from microdreamer_core.eval.demo_object import make_demo_mesh
from microdreamer_core.eval.protocol import (
    novel_eval_cameras,
    render_rgba,
    zero123_train_cameras,
)
from microdreamer_core.scene.cameras import orbit_cameras


def test_mesh_ground_truth_is_antialiased_and_consistent():
    mesh = make_demo_mesh(texture_size=64)
    cams = orbit_cameras([0.0], [30.0], 2.0, 48)
    hard = render_rgba(mesh, cams, mesh_supersample=1)
    soft = render_rgba(mesh, cams, mesh_supersample=4)
    assert set(hard[..., 3].unique().tolist()) <= {0.0, 1.0}
    fractional = ((soft[..., 3] > 0.05) & (soft[..., 3] < 0.95)).sum()
    assert fractional > 20  # the silhouette has partial coverage
    # same silhouette area and the same colours inside
    assert abs(soft[..., 3].mean() - hard[..., 3].mean()) < 0.01
    inside = (soft[..., 3] > 0.99) & (hard[..., 3] > 0.99)
    assert (soft[..., :3][inside] - hard[..., :3][inside]).abs().mean() < 0.05


def test_protocol_cameras():
    train, novel = zero123_train_cameras(64, seed=0), novel_eval_cameras(64)
    assert len(train) == 6 and len(novel) == 8
    el, az, r = novel.spherical()
    assert torch.allclose(el, torch.tensor([0.0, 20.0] * 4), atol=1e-4)
    assert torch.allclose(torch.remainder(az, 360.0), torch.arange(8) * 45.0, atol=1e-3)
    assert torch.allclose(r, torch.full((8,), 2.0))
