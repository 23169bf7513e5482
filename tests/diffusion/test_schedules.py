"""DDIM schedule and SIR timestep schedule: METHOD.md's sequences and NFE totals are test oracles,
and every step agrees with diffusers' schedulers."""

import pytest
import torch
from diffusers import DDIMInverseScheduler, DDIMScheduler

from microdreamer_core.diffusion.schedules import (
    DDIMSchedule,
    inversion_t1,
    sir_iteration_nfes,
    sir_t2_schedule,
)

DIFFUSERS_CONFIG = dict(
    num_train_timesteps=1000,
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    timestep_spacing="leading",
    steps_offset=1,
    set_alpha_to_one=False,
    prediction_type="epsilon",
    clip_sample=False,
)

ZERO123_T2 = [901, 851, 801, 751, 751, 701, 651, 651, 601, 551, 501, 501, 451, 401, 401, 351, 301, 301, 251, 201]
IMAGEDREAM_T2 = [801] + [701] * 7 + [601] * 8 + [501] * 7 + [401] * 7


def test_grids():
    s20, s10 = DDIMSchedule(20), DDIMSchedule(10)
    assert s20.timesteps.tolist() == list(range(951, 0, -50))
    assert s10.timesteps.tolist() == list(range(901, 0, -100))
    assert s20.inverse_timesteps.tolist() == list(range(1, 952, 50))


def test_sir_t2_sequences_match_method_md():
    assert sir_t2_schedule(DDIMSchedule(20), 0.9, 0.2, 20) == ZERO123_T2
    assert sir_t2_schedule(DDIMSchedule(10), 0.8, 0.4, 30) == IMAGEDREAM_T2


def test_t1_is_about_six_tenths_of_t2_on_the_inverse_grid():
    s = DDIMSchedule(20)
    for t2 in ZERO123_T2:
        t1 = inversion_t1(s, t2)
        assert t1 in s.inverse_timesteps.tolist() and t1 < t2
        assert abs(t1 - 0.6 * t2) <= 50


@pytest.mark.parametrize(
    "steps, t2s, init, inversion, sampling",
    [
        (20, ZERO123_T2, 20, 95, 237),  # zero123 preset: 352 NFEs in all
        (10, IMAGEDREAM_T2, 10, 77, 198),  # imagedream preset: 285
    ],
)
def test_nfe_totals_match_method_md(steps, t2s, init, inversion, sampling):
    s = DDIMSchedule(steps)
    counts = [sir_iteration_nfes(s, t2) for t2 in t2s]
    assert sum(c.inversion for c in counts) == inversion
    assert sum(c.sampling for c in counts) == sampling
    assert len(s.timesteps) == init  # call 0 samples from pure noise over the whole grid


def test_alphas_match_diffusers():
    ref = DDIMScheduler(**DIFFUSERS_CONFIG)
    assert torch.equal(DDIMSchedule(20).alphas_cumprod, ref.alphas_cumprod)
    ref.set_timesteps(20)
    assert ref.timesteps.tolist() == DDIMSchedule(20).timesteps.tolist()


@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
def test_ddim_steps_match_diffusers(eta):
    s = DDIMSchedule(20)
    ref = DDIMScheduler(**DIFFUSERS_CONFIG)
    ref.set_timesteps(20)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 8, 8, generator=g)
    for t in s.timesteps.tolist():
        eps = torch.randn(2, 4, 8, 8, generator=g)
        noise = torch.randn(2, 4, 8, 8, generator=g)
        ours = s.step(eps, t, x, eta=eta, noise=noise)
        theirs = ref.step(eps, t, x, eta=eta, variance_noise=noise).prev_sample
        assert torch.allclose(ours, theirs, atol=1e-5, rtol=1e-5), t
        x = theirs


def test_inverse_steps_match_diffusers():
    s = DDIMSchedule(20)
    ref = DDIMInverseScheduler(
        **{k: v for k, v in DIFFUSERS_CONFIG.items() if k != "set_alpha_to_one"}, set_alpha_to_one=False
    )
    ref.set_timesteps(20)
    assert ref.timesteps.tolist() == s.inverse_timesteps.tolist()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, 4, 8, 8, generator=g)
    for t in s.inverse_timesteps.tolist()[1:]:  # MicroDreamer steps the inverse scheduler with the next, higher t
        eps = torch.randn(1, 4, 8, 8, generator=g)
        ours = s.inverse_step(eps, t, x)
        theirs = ref.step(eps, t, x).prev_sample
        assert torch.allclose(ours, theirs, atol=1e-5, rtol=1e-5), t
        x = theirs


def test_inversion_undoes_sampling_for_a_fixed_eps():
    # With a constant noise prediction, DDIM (eta 0) and its inversion are exact inverses.
    s = DDIMSchedule(20)
    g = torch.Generator().manual_seed(2)
    x0, eps = torch.randn(1, 4, 8, 8, generator=g), torch.randn(1, 4, 8, 8, generator=g)
    x = s.add_noise(x0, eps, 501)
    up = x
    for t in [551, 601, 651]:
        up = s.inverse_step(eps, t, up)
    down = up
    for t in [651, 601, 551]:
        down = s.step(eps, t, down)
    assert torch.allclose(down, x, atol=1e-4)
    with pytest.raises(ValueError, match="noise"):
        s.step(eps, 501, x, eta=1.0)
