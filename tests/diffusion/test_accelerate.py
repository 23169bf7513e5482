"""The accelerated UNet calls (diffusion/accelerate.py) against the eager one: the graph runner's
static buffers on the CPU (eager replay), torch.compile on the CPU (slow: inductor compiles for
tens of seconds per model), and on CUDA the captured graphs, reduce-overhead and a sampling loop
without host syncs (skipped without CUDA; the GPU check runs them)."""

from __future__ import annotations

import pytest
import torch
from tiny_diffusion import KINDS, SIZE, cameras, condition

from microdreamer_core.diffusion import sampling
from microdreamer_core.diffusion.accelerate import GraphedUNet, accelerate_unet, accelerated_unet
from microdreamer_core.diffusion.random_models import build_random_model
from microdreamer_core.diffusion.sampling import refine_views, reverse_sample, sample
from microdreamer_core.diffusion.schedules import DDIMSchedule
from microdreamer_core.errors import InputError
from microdreamer_core.scene.cameras import orbit_cameras

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")

CALLS = [(901, 3.0), (501, None), (1, 3.0), (951, None)]  # CFG-doubled and unconditional, interleaved


def _latents(seed: int, device="cpu") -> torch.Tensor:
    return torch.randn(4, 4, SIZE // 2, SIZE // 2, generator=torch.Generator().manual_seed(seed)).to(device)


def _other_cameras():
    return orbit_cameras([-10.0] * 4, [30.0 + i * 90.0 for i in range(4)], 2.5, resolution=SIZE)


def _eps(model, runs):
    """predict_noise for each (latents, t, prepared, guidance) in ``runs``, cloned."""
    return [model.predict_noise(x, t, p, g).clone() for x, t, p, g in runs]


def _runs(model, device="cpu"):
    """Calls with changing latents, timesteps, conditioning (two camera sets) and both batch shapes."""
    prepared = [model.prepare(condition(), c.to(device), SIZE) for c in (cameras(), _other_cameras())]
    return [(_latents(i, device), t, prepared[i % 2], g) for i, (t, g) in enumerate(CALLS * 2)]


def _tolerance(kind: str) -> float:
    """5e-5 where the compiled kernels only reorder float32 sums (epsilons are O(1): measured up to
    1.03e-5 on a fresh CI machine, under 1e-5 here). ImageDream's unconditional branch has a zero
    reference latent: that frame's first GroupNorm sees a constant input (variance 0), so
    1/sqrt(eps) ~ 300 magnifies the rounding of its mean; measured 3-7e-4 on the CPU."""
    return 2e-3 if kind == "imagedream" else 5e-5


@pytest.mark.parametrize("kind", KINDS)
def test_graph_runner_static_buffers_match_eager(kind, models):
    """The CUDA-graph runner's bookkeeping (one entry per shape, inputs copied into its static
    buffers, outputs cloned out) with an eager call in place of the replay: the same epsilons as
    eager for changing inputs, and a result is not overwritten by later calls."""
    m = models[kind]
    runs = _runs(m)
    expected = _eps(m, runs)
    runner = GraphedUNet(m, capture=False)
    m.unet_runner = runner
    try:
        first = m.predict_noise(*runs[0])
        got = _eps(m, runs)
    finally:
        m.unet_runner = None
    assert len(runner.captured) == 2  # the CFG-doubled and the unconditional batch
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    torch.testing.assert_close(first, expected[0], rtol=0, atol=1e-6)


def test_modes_are_checked_and_scoped(models):
    m = models["zero123"]
    with pytest.raises(InputError, match="unknown UNet mode 'fast'"):
        accelerate_unet(m, "fast")  # type: ignore[arg-type]
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="'cuda_graph' needs a CUDA device"):
            accelerate_unet(m, "cuda_graph")
    sentinel = GraphedUNet(m, capture=False)
    m.unet_runner = sentinel
    with accelerated_unet(m, "eager"):
        assert m.unet_runner is None
    assert m.unet_runner is sentinel  # the previous call again after the block
    m.float()  # moving / casting the model drops a runner made for the old weights
    assert m.unet_runner is None
    with accelerated_unet(None, "compile"):  # no model (pure reconstruction): nothing to do
        pass


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["zero123", "imagedream"])
def test_compiled_unet_matches_eager_on_cpu(kind):
    """torch.compile (inductor, CPU): every call shape and timestep within the tolerance of the
    eager call, with one compiled graph per batch shape (the timestep is a tensor input).

    Zero123 (the headline preset) and ImageDream (the one with a looser tolerance) only: a cold
    inductor compile costs 60-85 s per shape on a 2-core CPU, and CI starts cold; MVDream's UNet is
    ImageDream's without the reference frame."""
    m = build_random_model(kind, "tiny", seed=0)
    runs = _runs(m)
    expected = _eps(m, runs)
    with accelerated_unet(m, "compile"):
        got = _eps(m, runs)
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=_tolerance(kind))


def _sampling_eager_and(m, mode: str) -> tuple[tuple, tuple]:
    """(sample, refine_views) results of ``m`` run eagerly, then under ``accelerated_unet(m, mode)``."""
    views = torch.rand(4, SIZE, SIZE, 3, generator=torch.Generator().manual_seed(3))

    def both():
        a = sample(m, condition(), cameras(), steps=5, seed=2, image_size=SIZE)
        b = refine_views(m, views, cameras(), condition(), 601, steps=10, seed=4, image_size=SIZE)
        return a, b

    eager = both()
    with accelerated_unet(m, mode):
        return eager, both()


@pytest.mark.slow
def test_compiled_sampling_matches_eager_on_cpu():
    """A whole sampling from noise and a hybrid forward + sampling (Zero123, the headline preset's
    model) with the compiled UNet: the eager images within the tolerance, the same NFE counts."""
    eager, compiled = _sampling_eager_and(build_random_model("zero123", "tiny", seed=0), "compile")
    for e, c in zip(eager, compiled, strict=True):
        assert e.nfe == c.nfe
        torch.testing.assert_close(c.latents, e.latents, rtol=0, atol=1e-4)
        torch.testing.assert_close(c.images, e.images, rtol=0, atol=1e-4)


# ---- CUDA (the GPU check) ------------------------------------------------------------------------
@needs_cuda
@pytest.mark.parametrize("kind", KINDS)
def test_cuda_graph_matches_eager(kind):
    """Captured CUDA graphs against the eager call on the same GPU, for changing inputs."""
    m = build_random_model(kind, "tiny", seed=0, device=torch.device("cuda"))
    runs = _runs(m, "cuda")
    expected = _eps(m, runs)
    with accelerated_unet(m, "cuda_graph"):
        got = _eps(m, runs)
        assert len(m.unet_runner.captured) == 2
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


@needs_cuda
@pytest.mark.parametrize("mode", ["eager", "cuda_graph"])
@pytest.mark.parametrize("kind", KINDS)
def test_cuda_sampling_loop_has_no_host_sync(kind, mode, monkeypatch):
    """Reverse sampling on CUDA with eta > 0 (device noise copies) and the NaN flags never read
    back inside the loop: torch's sync debug mode raises on any synchronising call."""
    m = build_random_model(kind, "tiny", seed=0, device=torch.device("cuda"))
    prepared = m.prepare(condition(), cameras().to("cuda"), SIZE)
    schedule = DDIMSchedule(10)
    x = _latents(0, "cuda")
    with accelerated_unet(m, mode):
        reverse_sample(m, x, 1000, prepared, schedule, 2.0, 1.0, torch.Generator().manual_seed(0))  # capture
        monkeypatch.setattr(sampling, "NAN_CHECK_EVERY", 10**6)
        monkeypatch.setattr(sampling, "_raise_if_not_finite", lambda finite, steps: None)
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            reverse_sample(m, x, 1000, prepared, schedule, 2.0, 1.0, torch.Generator().manual_seed(0))
        finally:
            torch.cuda.set_sync_debug_mode("default")


@needs_cuda
def test_cuda_graph_sampling_matches_eager():
    """sample and refine_views with captured graphs give the eager results on the GPU."""
    m = build_random_model("zero123", "tiny", seed=0, device=torch.device("cuda"))
    eager, graphed = _sampling_eager_and(m, "cuda_graph")
    for e, g in zip(eager, graphed, strict=True):
        torch.testing.assert_close(g.latents, e.latents, rtol=0, atol=1e-5)


@needs_cuda
@pytest.mark.slow
def test_reduce_overhead_compile_matches_eager_on_cuda():
    """torch.compile mode reduce-overhead (inductor's CUDA graphs) against eager on the GPU."""
    m = build_random_model("zero123", "tiny", seed=0, device=torch.device("cuda"))
    runs = _runs(m, "cuda")
    expected = _eps(m, runs)
    with accelerated_unet(m, "compile"):
        got = _eps(m, runs)
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-4)
