"""Densification (microdreamer_core.fit.densify): parameter edits that keep Adam aligned, clone /
split / prune, and the final clean-up."""

import math

import torch

from microdreamer_core.fit.densify import (
    DensifyConfig,
    DensifyStrategy,
    edit_parameters,
)
from microdreamer_core.scene.gaussians import Gaussians, init_ball


def _random_gaussians(n=50, degree=2):
    gen = torch.Generator().manual_seed(1)
    k = (degree + 1) ** 2 - 1
    return Gaussians(
        torch.randn(n, 3, generator=gen),
        torch.randn(n, 3, generator=gen),
        torch.randn(n, 4, generator=gen),
        torch.randn(n, generator=gen),
        torch.randn(n, 1, 3, generator=gen),
        torch.randn(n, k, 3, generator=gen),
    )


def _fitter_like(g):
    params = {k: torch.nn.Parameter(v.clone()) for k, v in g.params().items()}
    opt = torch.optim.Adam([{"params": [params[k]], "lr": 0.01, "name": k} for k in Gaussians.PARAMS])
    return params, opt


def test_edit_parameters_keeps_adam_state_aligned():
    g = _random_gaussians(n=6, degree=0)
    params, opt = _fitter_like(g)
    loss = sum((p**2).sum() for p in params.values())
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
    sum((p**2).sum() for p in params.values()).backward()
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
