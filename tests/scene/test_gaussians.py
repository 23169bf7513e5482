"""The Gaussian container's helpers and the paper's initialisation (microdreamer_core.scene.gaussians)."""

import pytest
import torch

from microdreamer_core.scene.gaussians import init_ball, knn_scales


def test_init_ball_matches_the_paper():
    g = init_ball(5000, generator=torch.Generator().manual_seed(0))
    assert g.num == 5000 and g.sh_degree == 0
    assert g.means.norm(dim=-1).max() <= 0.5 + 1e-6
    # uniform in volume: a quarter of the points within r/2^(2/3) ... check the median radius
    assert g.means.norm(dim=-1).median().item() == pytest.approx(0.5 * 0.5 ** (1 / 3), rel=0.05)
    assert torch.allclose(g.base_colors(), torch.full((5000, 3), 0.5))
    assert torch.allclose(g.activated_opacities(), torch.full((5000,), 0.1), atol=1e-6)
    assert torch.equal(g.normalized_quats(), torch.tensor([1.0, 0, 0, 0]).expand(5000, 4))
    s = g.activated_scales()
    assert torch.allclose(s[:, 0], s[:, 1]) and torch.allclose(s[:, 0], s[:, 2])  # isotropic
    # kNN scale: ~ typical spacing of 5000 points in a 0.5 ball (a few hundredths)
    assert 0.005 < s.mean() < 0.05


def test_knn_scales_on_a_grid():
    xs = torch.arange(5, dtype=torch.float32)
    grid = torch.stack(torch.meshgrid(xs, xs, xs, indexing="ij"), -1).reshape(-1, 3)
    # an interior point has 6 neighbours at distance 1
    assert knn_scales(grid)[62].item() == pytest.approx(1.0)
