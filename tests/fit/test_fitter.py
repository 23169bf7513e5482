"""The optimiser around the renderer (microdreamer_core.fit.fitter): clamped renders, the
learning-rate schedule, steps that lower the loss, seeded blocks, and steps that do not wait for
the device (losses read every ``check_every`` steps, fused Adam on CUDA)."""

from __future__ import annotations

import math

import pytest
import torch

from microdreamer_core.fit.fitter import GaussianFitter, LearningRates, LossLog, seeded
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


def _nan_after(step: int, fitter: GaussianFitter):
    """An extra loss term that is 0 until the fitter reaches ``step``, NaN from then on."""
    return lambda: torch.tensor(float("nan") if fitter.step_count >= step else 0.0)


def test_a_nan_loss_raises_within_check_every_steps():
    """The loss is not read every step: a NaN at step 5 raises at the next read (after step 7
    with check_every 4), naming step 5; one still pending when the losses are read raises too."""
    cams = orbit_cameras([0.0], [0.0], 2.0, 16)
    target = torch.full((1, 16, 16, 3), 0.5)
    fitter = GaussianFitter(InitialGaussians(num=50).sample(torch.Generator().manual_seed(0)), backend="torch")
    fitter.log = LossLog("reconstruction loss", check_every=4)
    nan = _nan_after(5, fitter)
    with pytest.raises(FloatingPointError, match=r"reconstruction loss became nan at step 5 \(.*steps 4-7\)"):
        for _ in range(20):
            fitter.step(cams, target, extra_loss=nan)
    assert fitter.step_count == 7  # raised on recording step 7's loss, before its Adam step

    late = GaussianFitter(InitialGaussians(num=50).sample(torch.Generator().manual_seed(0)), backend="torch")
    nan = _nan_after(2, late)
    for _ in range(3):  # check_every 10: nothing read yet
        late.step(cams, target, extra_loss=nan)
    with pytest.raises(FloatingPointError, match="at step 2"):
        late.finalize()


def test_losses_are_read_in_batches_with_the_values_of_each_step():
    """step() returns the loss as a tensor (no host read); losses() reads them all, the same values."""
    cams = orbit_cameras([0.0, 40.0], [0.0, 90.0], 2.0, 16)
    target = torch.full((2, 16, 16, 3), 0.3)
    fitter = GaussianFitter(
        InitialGaussians(num=80).sample(torch.Generator().manual_seed(1)), backend="torch", check_every=3
    )
    returned = [fitter.step(cams, target) for _ in range(7)]
    assert all(isinstance(x, torch.Tensor) and x.ndim == 0 and not x.requires_grad for x in returned)
    assert fitter.losses() == [float(x) for x in returned] and len(fitter.log) == 7
    with pytest.raises(ValueError, match="check_every"):
        LossLog("loss", check_every=0)


def test_adam_is_the_plain_one_on_the_cpu():
    """CPU results stay as they were: not the fused or foreach kernels (their rounding differs)."""
    fitter = GaussianFitter(InitialGaussians(num=10).sample(torch.Generator().manual_seed(0)), backend="torch")
    assert not fitter.optimizer.defaults["fused"] and not fitter.optimizer.defaults["foreach"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_fitter_uses_fused_adam_and_its_steps_do_not_wait_for_the_device():
    """On CUDA Adam is the fused kernel, and the step's own work (loss record, backward, Adam, the
    densification statistics) runs without a host sync (torch's sync debug mode raises on one);
    a full step with the torch rasteriser lowers the loss as on the CPU."""
    g = InitialGaussians(num=200).sample(torch.Generator().manual_seed(0))
    fitter = GaussianFitter(g.to("cuda"), backend="torch")
    assert fitter.optimizer.defaults["fused"] is True
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(fitter.log.check_every - 1):
            loss = sum((p.float() ** 2).sum() for p in fitter.params.values())
            fitter.log.record(loss)
            fitter.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            fitter.optimizer.step()
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert len(fitter.losses()) == fitter.log.check_every - 1

    cams = orbit_cameras([0.0, 30.0], [0.0, 120.0], 2.0, 24)
    with torch.no_grad():
        target = render_gaussians(_one_gaussian([0.9, 0.2, 0.1]), cams, backend="torch").rgb
    gpu = GaussianFitter(InitialGaussians(num=200).sample(torch.Generator().manual_seed(0)).to("cuda"), backend="torch")
    cpu = GaussianFitter(InitialGaussians(num=200).sample(torch.Generator().manual_seed(0)), backend="torch")
    for _ in range(10):
        gpu.step(cams.to("cuda"), target.to("cuda"))
        cpu.step(cams, target)
    on_gpu, on_cpu = torch.tensor(gpu.losses()), torch.tensor(cpu.losses())
    assert on_gpu[-1] < 0.9 * on_gpu[0]
    assert torch.allclose(on_gpu, on_cpu, rtol=1e-3), (on_gpu, on_cpu)
