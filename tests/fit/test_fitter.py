"""The optimiser around the renderer (microdreamer_core.fit.fitter): clamped renders, the
learning-rate schedule, steps that lower the loss, and seeded blocks."""

from __future__ import annotations

import math

import pytest
import torch

from microdreamer_core.fit.fitter import GaussianFitter, LearningRates, seeded
from microdreamer_core.fit.init import InitialGaussians
from microdreamer_core.render.gaussians import render_gaussians
from microdreamer_core.scene.cameras import orbit_cameras
from microdreamer_core.scene.gaussians import Gaussians, rgb_to_sh0


def _one_gaussian(color) -> Gaussians:
    """One large, nearly opaque Gaussian at the origin with the given (straight) RGB colour."""
    return Gaussians(
        means=torch.zeros(1, 3),
        scales=torch.full((1, 3), math.log(0.3)),
        quats=torch.tensor([[1.0, 0.0, 0.0, 0.0]]),
        opacities=torch.logit(torch.tensor([0.99])),
        sh0=rgb_to_sh0(torch.tensor([color]))[:, None],
        shN=torch.zeros(1, 0, 3),
    )


def test_sir_loss_sees_renders_clamped_to_white():
    """Colour beyond white renders as white (the reference clamps): against a white target it
    costs nothing and gets no gradient, while an unclamped render would pull it down."""
    g = _one_gaussian([1.6, 1.6, 1.6])
    cams = orbit_cameras([0.0], [0.0], 2.0, 24)
    fitter = GaussianFitter(g, background=(1.0, 1.0, 1.0), backend="torch")
    out = fitter.render(cams)
    assert out.rgb.max() <= 1.0 and out.rgb.min() >= 0.0
    raw = render_gaussians(fitter.gaussians, cams, backend="torch").rgb
    assert raw.max() > 1.2  # the rasteriser itself does not clamp
    white = torch.ones_like(out.rgb)
    loss = fitter.step(cams, white)
    assert loss == 0.0
    assert fitter.optimizer.state[fitter.params["sh0"]]["exp_avg"].abs().max() == 0.0
    # a darker-than-target colour still gets its gradient through the clamp
    g2 = _one_gaussian([0.2, 0.2, 0.2])
    f2 = GaussianFitter(g2, backend="torch")
    f2.step(cams, white)
    assert f2.optimizer.state[f2.params["sh0"]]["exp_avg"].abs().max() > 0.0


def test_position_learning_rate_decays_exponentially():
    lr = LearningRates()
    assert lr.position(0) == pytest.approx(0.01) and lr.position(500) == pytest.approx(0.0002)
    assert lr.position(250) == pytest.approx(math.sqrt(0.01 * 0.0002))  # log-linear: the geometric mean halfway
    assert lr.position(10_000) == pytest.approx(0.0002)  # held after position_max_steps


def test_steps_lower_the_loss_against_fixed_targets():
    cams = orbit_cameras([0.0, 30.0], [0.0, 120.0], 2.0, 24)
    with torch.no_grad():
        target = render_gaussians(_one_gaussian([0.9, 0.2, 0.1]), cams, backend="torch").rgb
    fitter = GaussianFitter(InitialGaussians(num=200).sample(torch.Generator().manual_seed(0)), backend="torch")
    losses = [fitter.step(cams, target) for _ in range(20)]
    assert losses[-1] < 0.8 * losses[0] and fitter.step_count == 20
    assert not fitter.finalize().means.requires_grad


def test_seeded_blocks_repeat_and_leave_the_callers_stream_alone():
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    with seeded(7, torch.device("cpu")):
        a = torch.rand(3)
    with seeded(7, torch.device("cpu")):
        b = torch.rand(3)
    assert torch.equal(a, b)
    assert torch.equal(torch.rand(3), expected_next)
