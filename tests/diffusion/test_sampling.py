"""Sampling with tiny random models: determinism per seed, NFE counts of SIR's iterations, the
forward modes of the hybrid forward process and half precision."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from tiny_diffusion import KINDS, SIZE, cameras, condition

from microdreamer_core.diffusion.models import Condition
from microdreamer_core.diffusion.random_models import build_random_model
from microdreamer_core.diffusion.sampling import NAN_CHECK_EVERY, hybrid_forward, refine_views, sample
from microdreamer_core.diffusion.schedules import (
    DDIMSchedule,
    sir_iteration_nfes,
    sir_t2_schedule,
)
from microdreamer_core.errors import InputError
from microdreamer_core.scene.cameras import CAMERA_PRESETS, sample_orbit_cameras


@pytest.mark.parametrize("kind", KINDS)
def test_sampling_is_deterministic_per_seed(kind, models):
    m = models[kind]
    a = sample(m, condition(), cameras(), steps=3, seed=7, image_size=SIZE)
    b = sample(m, condition(), cameras(), steps=3, seed=7, image_size=SIZE)
    c = sample(m, condition(), cameras(), steps=3, seed=8, image_size=SIZE)
    assert torch.equal(a.images, b.images)
    assert not torch.equal(a.latents, c.latents)
    assert a.nfe == 3


@pytest.mark.parametrize(
    "kind,steps,t_start,t_end,iters,total",
    [("zero123", 20, 0.9, 0.2, 20, 352), ("imagedream", 10, 0.8, 0.4, 30, 285)],
)
def test_sir_iteration_nfes_match_method_md(kind, steps, t_start, t_end, iters, total, models):
    """Run the real hybrid forward + sampling for each distinct t2 of the preset and count UNet
    calls; with the init sampling they add up to METHOD.md's totals."""
    m = models[kind]
    schedule = DDIMSchedule(steps)
    cams = cameras(4)
    prepared = m.prepare(condition(), cams, SIZE)
    views = torch.rand(4, SIZE, SIZE, 3, generator=torch.Generator().manual_seed(2))
    counts = Counter(sir_t2_schedule(schedule, t_start, t_end, iters))
    run_total = steps  # call 0: sampling from noise uses every step
    for t2, times in counts.items():
        r = refine_views(m, views, cams, prepared, t2, steps=steps, image_size=SIZE)
        expected = sir_iteration_nfes(schedule, t2)
        assert r.nfe == expected.inversion + expected.sampling, t2
        run_total += times * r.nfe
    assert run_total == total
    assert sample(m, prepared, cams, steps=steps, image_size=SIZE).nfe == steps


def test_forward_modes_are_the_papers_ablations(models):
    m = models["mvdream"]
    schedule = DDIMSchedule(20)
    cams = cameras()
    prepared = m.prepare(condition(), cams, SIZE)
    x = torch.rand(4, 3, SIZE, SIZE)
    counts = {}
    for mode in ("hybrid", "inversion", "noise"):
        before = m.nfe
        xt = hybrid_forward(m, x, prepared, 601, schedule, mode=mode, generator=torch.Generator().manual_seed(0))
        counts[mode] = m.nfe - before
        assert xt.shape == (4, 4, SIZE // 2, SIZE // 2) and torch.isfinite(xt).all()
    assert counts == {"noise": 0, "hybrid": sir_iteration_nfes(schedule, 601).inversion, "inversion": 12}
    with pytest.raises(InputError, match="not on the 20-step DDIM grid"):
        hybrid_forward(m, x, prepared, 600, schedule)


def test_refine_views_is_deterministic_and_stays_close_at_low_t(models):
    m = models["imagedream"]
    views = torch.rand(4, SIZE, SIZE, 3, generator=torch.Generator().manual_seed(3))
    a = refine_views(m, views, cameras(), condition(), 201, steps=20, seed=4, image_size=SIZE)
    b = refine_views(m, views, cameras(), condition(), 201, steps=20, seed=4, image_size=SIZE)
    assert torch.equal(a.images, b.images) and a.images.shape == views.shape


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("kind", KINDS)
def test_half_precision_models_sample(kind, dtype):
    """The GPU default is fp16: every model must run a whole hybrid forward + sampling in half
    precision (fp32 GroupNorm with half weights once crashed on the H100), close to fp32."""
    results = {}
    for dt in (torch.float32, dtype):
        model = build_random_model(kind, "tiny", seed=0, dtype=dt)
        cams = sample_orbit_cameras(
            CAMERA_PRESETS["zero123" if kind == "zero123" else kind], 32, torch.Generator().manual_seed(0)
        )
        cond = Condition(prompt="a duck", image=torch.rand(32, 32, 4, generator=torch.Generator().manual_seed(0)))
        views = torch.rand(len(cams), 32, 32, 3, generator=torch.Generator().manual_seed(1))
        results[dt] = refine_views(model, views, cams, cond, 501, steps=10, image_size=32, seed=3).images
    half = results[dtype]
    assert half.dtype == torch.float32 and torch.isfinite(half).all()
    assert (half - results[torch.float32]).abs().mean() < 0.05


@pytest.mark.parametrize("bad_step", [0, 6, 9])
def test_nan_is_reported_at_its_first_step(bad_step, models):
    """The NaN flags stay on the device and are read every NAN_CHECK_EVERY steps: a NaN epsilon at
    step ``bad_step`` raises naming that step's timestep, before the next group of steps runs."""
    m = models["mvdream"]
    steps = [int(t) for t in DDIMSchedule(10).timesteps]
    bad_t = steps[bad_step]

    def unet(x, t, inputs, num_views):
        eps = m._unet(x, t, inputs, num_views)
        return eps * float("nan") if t == bad_t else eps

    m.unet_runner = unet
    before = m.nfe
    try:
        with pytest.raises(FloatingPointError, match=f"sampling produced NaN at t={bad_t}:"):
            sample(m, condition(), cameras(), steps=10, seed=0, image_size=SIZE)
    finally:
        m.unet_runner = None
    group_end = (bad_step // NAN_CHECK_EVERY + 1) * NAN_CHECK_EVERY
    assert m.nfe - before == min(group_end, len(steps))
