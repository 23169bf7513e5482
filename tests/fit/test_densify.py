"""Densification (microdreamer_core.fit.densify): parameter edits that keep Adam aligned, clone /
split / prune, and the final clean-up."""

import math
import warnings

import pytest
import torch

from microdreamer_core.fit.densify import (
    DensifyConfig,
    DensifyStrategy,
    edit_parameters,
)
from microdreamer_core.scene.gaussians import Gaussians, init_ball, quat_to_rotmat


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


def _densify_with_masks(params, opt, mean_grad, cfg, generator_seed):
    """The edit as it was written with boolean masks (each selection a host sync): the reference
    the index-based edit must match row for row."""
    torch.manual_seed(generator_seed)
    with torch.no_grad():
        n0 = params["means"].shape[0]
        max_scale = params["scales"].exp().amax(dim=-1)
        hot = mean_grad >= cfg.grad_threshold
        room = max(cfg.max_gaussians - n0, 0)
        clone, split = hot & (max_scale <= cfg.clone_max_scale), hot & (max_scale > cfg.clone_max_scale)
        if int(clone.sum() + split.sum()) > room:
            order = torch.argsort(torch.where(hot, mean_grad, -1.0), descending=True)
            allowed = torch.zeros_like(hot)
            allowed[order[:room]] = True
            clone, split = clone & allowed, split & allowed
        extra = {name: p.detach()[clone] for name, p in params.items()}
        idx = split.nonzero(as_tuple=True)[0].repeat(2)
        std = params["scales"].detach()[idx].exp()
        offset = (quat_to_rotmat(params["quats"].detach()[idx]) @ (torch.randn_like(std) * std)[..., None])[..., 0]
        for name, p in params.items():
            rows = p.detach()[idx]
            rows = rows + offset if name == "means" else rows
            rows = rows - torch.log(torch.tensor(cfg.split_scale_divisor)) if name == "scales" else rows
            extra[name] = torch.cat([extra[name], rows])
        edit_parameters(params, opt, ~split, extra)
        opacity = torch.sigmoid(params["opacities"])
        drop = (opacity < cfg.prune_opacity) | (params["scales"].exp().amax(dim=-1) > cfg.prune_max_scale)
        edit_parameters(params, opt, ~drop)


def test_index_based_edit_matches_the_mask_based_one():
    """Densify-and-prune with indices of known size (no host sync per selection) gives the same
    Gaussians and Adam moments as selecting with boolean masks, with growth capped or not."""
    for cap in (200_000, 70):
        g = _random_gaussians(n=60, degree=1)
        g.scales[:] = g.scales * 0.5 - 3.8  # some below clone_max_scale, some above
        g.opacities[:5] = -10.0  # pruned
        cfg = DensifyConfig(steps=(1,), grad_threshold=0.5, max_gaussians=cap)
        a, opt_a = _fitter_like(g)
        b, opt_b = _fitter_like(g)
        for params, opt in ((a, opt_a), (b, opt_b)):
            sum((p**2).sum() for p in params.values()).backward()
            opt.step()
        grad = torch.rand(2, 60, 2, generator=torch.Generator().manual_seed(3)) / 16
        strategy = DensifyStrategy(cfg)
        strategy._accumulate(_FakeRender(grad, torch.ones(2, 60, dtype=torch.int32)), 60)
        mean_grad = strategy.grad_accum / strategy.grad_count
        torch.manual_seed(9)
        strategy._densify_and_prune(a, opt_a, 1)
        _densify_with_masks(b, opt_b, mean_grad, cfg, 9)
        h = strategy.history[0]
        assert h["cloned"] > 0 and h["split"] > 0 and h["pruned"] >= 5, h
        grown = h["cloned"] + h["split"]
        assert grown == 10 if cap == 70 else grown > 10  # capped: room for 10 more
        for name in a:
            assert torch.equal(a[name], b[name]), name
            for key in ("exp_avg", "exp_avg_sq"):
                assert torch.equal(opt_a.state[a[name]][key], opt_b.state[b[name]][key]), (name, key)


def test_edit_parameters_takes_indices_or_a_mask():
    g = _random_gaussians(n=6, degree=0)
    by_mask, opt_m = _fitter_like(g)
    by_index, opt_i = _fitter_like(g)
    edit_parameters(by_mask, opt_m, torch.tensor([True, False, True, False, False, True]))
    edit_parameters(by_index, opt_i, torch.tensor([0, 2, 5]))
    assert all(torch.equal(by_mask[k], by_index[k]) for k in by_mask) and by_index["means"].shape[0] == 3


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_statistics_never_sync_and_an_edit_syncs_twice():
    """On CUDA the per-step statistics run without a host sync, and a densify-and-prune edit reads
    the device twice (its clone / split counts, then its prune count), not once per selection."""
    g = _random_gaussians(n=500, degree=1).to("cuda")
    g.scales[:] = g.scales * 0.5 - 3.0
    g.opacities[:20] = -10.0
    params = {k: torch.nn.Parameter(v.clone()) for k, v in g.params().items()}
    opt = torch.optim.Adam([{"params": [params[k]], "lr": 0.01, "name": k} for k in Gaussians.PARAMS], fused=True)
    strategy = DensifyStrategy(DensifyConfig(steps=(3,), grad_threshold=0.5))
    renders = [
        _FakeRender(torch.rand(2, 500, 2, device="cuda") / 16, torch.ones(2, 500, dtype=torch.int32, device="cuda"))
        for _ in range(3)
    ]
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for step in (1, 2):
            strategy.post_backward(step, params, opt, renders[step - 1])
    finally:
        torch.cuda.set_sync_debug_mode(0)
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            strategy.post_backward(3, params, opt, renders[2])
        finally:
            torch.cuda.set_sync_debug_mode(0)
    syncs = [w for w in caught if "synchroniz" in str(w.message)]
    h = strategy.history[0]
    assert h["split"] > 0 and h["pruned"] > 0 and len(syncs) <= 2, [str(w.message) for w in syncs]
