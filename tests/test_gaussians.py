"""Gaussian container, the paper's initialisation, 3DGS PLY I/O and densification edits."""

import math

import numpy as np
import pytest
import torch
from plyfile import PlyData, PlyElement

from microdreamer_core.errors import InputError
from microdreamer_core.fit.densify import (
    DensifyConfig,
    DensifyStrategy,
    edit_parameters,
)
from microdreamer_core.io.ply import load_ply, save_ply
from microdreamer_core.scene.gaussians import SH_C0, Gaussians, init_ball, knn_scales


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


def _random_gaussians(n=50, degree=2):
    gen = torch.Generator().manual_seed(1)
    k = (degree + 1) ** 2 - 1
    return Gaussians(torch.randn(n, 3, generator=gen), torch.randn(n, 3, generator=gen), torch.randn(n, 4, generator=gen),
                     torch.randn(n, generator=gen), torch.randn(n, 1, 3, generator=gen), torch.randn(n, k, 3, generator=gen))


@pytest.mark.parametrize("degree", [0, 1, 3])
def test_ply_roundtrip(tmp_path, degree):
    g = _random_gaussians(degree=degree)
    path = save_ply(g, tmp_path / "g.ply")
    h = load_ply(path)
    for name in Gaussians.PARAMS:
        assert torch.equal(getattr(g, name), getattr(h, name)), name
    assert not list(tmp_path.glob(".*.tmp"))  # no temp file left behind


def test_ply_layout_is_the_standard_3dgs_one(tmp_path):
    g = _random_gaussians(n=3, degree=1)
    ply = PlyData.read(str(save_ply(g, tmp_path / "g.ply")))
    names = [p.name for p in ply["vertex"].properties]
    assert names == (["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"] + [f"f_rest_{i}" for i in range(9)]
                     + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"])
    assert not ply.text and ply.byte_order in ("<", "=")
    # f_rest is channel-major: f_rest_0..2 are the red coefficients of bands 1..3
    v = ply["vertex"]
    assert v["f_rest_1"][0] == pytest.approx(g.shN[0, 1, 0].item())
    assert v["f_rest_3"][0] == pytest.approx(g.shN[0, 0, 1].item())


def test_load_a_ply_written_by_another_tool(tmp_path):
    # What the Inria code writes: float32 binary PLY, our column names, degree 0.
    n = 4
    dtype = [(k, "f4") for k in ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2", "opacity",
                                 "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]]
    arr = np.zeros(n, dtype=dtype)
    arr["x"] = np.arange(n)
    arr["f_dc_0"] = (1.0 - 0.5) / SH_C0  # red
    arr["rot_0"] = 1.0
    arr["opacity"] = 2.0
    PlyData([PlyElement.describe(arr, "vertex")]).write(str(tmp_path / "inria.ply"))
    g = load_ply(tmp_path / "inria.ply")
    assert g.num == n and g.sh_degree == 0
    assert torch.allclose(g.base_colors()[0], torch.tensor([1.0, 0.5, 0.5]))
    assert g.activated_opacities()[0] == pytest.approx(1 / (1 + math.exp(-2)), rel=1e-6)


def test_ply_errors(tmp_path):
    with pytest.raises(InputError, match="no Gaussian PLY"):
        load_ply(tmp_path / "missing.ply")
    (tmp_path / "junk.ply").write_bytes(b"not a ply at all")
    with pytest.raises(InputError, match="not a readable PLY"):
        load_ply(tmp_path / "junk.ply")
    arr = np.zeros(2, dtype=[("x", "f4"), ("y", "f4"), ("z", "f4")])
    PlyData([PlyElement.describe(arr, "vertex")]).write(str(tmp_path / "points.ply"))
    with pytest.raises(InputError, match="not a 3D Gaussian splatting PLY"):
        load_ply(tmp_path / "points.ply")
    g = _random_gaussians(degree=0)
    save_ply(g, tmp_path / "nan.ply")
    ply = PlyData.read(str(tmp_path / "nan.ply"), mmap=False)
    ply["vertex"]["opacity"][3] = np.nan
    ply.write(str(tmp_path / "nan.ply"))
    with pytest.raises(InputError, match="NaN"):
        load_ply(tmp_path / "nan.ply")
    # refusing to save NaN leaves no file
    bad = g.map(lambda t: t.clone())
    bad.means[0, 0] = float("nan")
    with pytest.raises(InputError, match="NaN"):
        save_ply(bad, tmp_path / "out.ply")
    assert not (tmp_path / "out.ply").exists()


def _fitter_like(g):
    params = {k: torch.nn.Parameter(v.clone()) for k, v in g.params().items()}
    opt = torch.optim.Adam([{"params": [params[k]], "lr": 0.01, "name": k} for k in Gaussians.PARAMS])
    return params, opt


def test_edit_parameters_keeps_adam_state_aligned():
    g = _random_gaussians(n=6, degree=0)
    params, opt = _fitter_like(g)
    loss = sum((p ** 2).sum() for p in params.values())
    loss.backward()
    opt.step()
    before = opt.state[params["means"]]["exp_avg"].clone()
    keep = torch.tensor([True, False, True, True, False, True])
    extra = {k: torch.zeros(2, *v.shape[1:]) for k, v in params.items()}
    edit_parameters(params, opt, keep, extra)
    assert params["means"].shape[0] == 6
    assert opt.param_groups[0]["params"][0] is params["means"]
    st = opt.state[params["means"]]["exp_avg"]
    assert torch.equal(st[:4], before[keep]) and torch.equal(st[4:], torch.zeros(2, 3))
    opt.zero_grad()
    sum((p ** 2).sum() for p in params.values()).backward()
    opt.step()  # still a consistent optimiser


class _FakeRender:
    """The fields of RenderOutput that densification reads."""

    def __init__(self, grad, radii, size=64):
        self.means2d = torch.zeros_like(grad, requires_grad=True)
        self.means2d.grad = grad
        self.radii = radii
        self.rgb = torch.zeros(grad.shape[0], size, size, 3)


def test_densify_clones_small_splits_large_and_prunes():
    n = 4
    g = init_ball(n, generator=torch.Generator().manual_seed(0))
    g.scales[:] = math.log(0.01)
    g.scales[1] = math.log(0.1)  # large -> split
    g.opacities[3] = -10.0  # transparent -> pruned
    params, opt = _fitter_like(g)
    strategy = DensifyStrategy(DensifyConfig(steps=(1,)))
    grad = torch.zeros(2, n, 2)
    grad[:, 0] = 0.01  # hot, small -> clone (0.01 px * 32 = 0.32 NDC units... well above 0.01)
    grad[:, 1] = 0.01  # hot, large -> split
    strategy.post_backward(1, params, opt, _FakeRender(grad, torch.ones(2, n, dtype=torch.int32)))
    h = strategy.history[0]
    assert (h["cloned"], h["split"], h["pruned"]) == (1, 1, 1)
    # 4 - 1 split original + 1 clone + 2 split children - 1 pruned
    assert params["means"].shape[0] == 5
    scales = params["scales"].exp().amax(-1)
    assert torch.isclose(scales, torch.tensor(0.1 / 1.6)).sum() == 2
    # cold Gaussians stay
    strategy2 = DensifyStrategy(DensifyConfig(steps=(1,)))
    cold = init_ball(4, generator=torch.Generator().manual_seed(0))
    cold.scales[:] = math.log(0.01)
    params2, opt2 = _fitter_like(cold)
    strategy2.post_backward(1, params2, opt2, _FakeRender(torch.zeros(1, 4, 2), torch.ones(1, 4, dtype=torch.int32)))
    assert params2["means"].shape[0] == 4


def test_final_cleanup_never_empties_the_model():
    g = init_ball(10, generator=torch.Generator().manual_seed(0))
    g.opacities[:] = -20.0
    params, opt = _fitter_like(g)
    DensifyStrategy().final_cleanup(params, opt)
    assert params["means"].shape[0] == 1
