"""The SDS baseline (microdreamer_core.pipeline.sds) with tiny random models: NFEs, gradients through the
VAE encoder, determinism, cancel, the timestep schedule and the settings shared with SIR."""

from __future__ import annotations

import dataclasses
from operator import attrgetter

import pytest
import torch
from tiny_models import KINDS, condition_for  # tests/ is on sys.path

from microdreamer_core.diffusion.random_models import build_random_model
from microdreamer_core.diffusion.schedules import DDIMSchedule
from microdreamer_core.errors import Cancelled
from microdreamer_core.fit.densify import DensifyConfig
from microdreamer_core.pipeline.presets import tiny_preset
from microdreamer_core.pipeline.reference import ReferenceView
from microdreamer_core.pipeline.sds import SDSConfig, run_sds, sds_timestep, sds_weight
from microdreamer_core.scene.gaussians import init_ball

STEPS = 4
NO_REFERENCE = ReferenceView(rgb_weight=0.0, mask_weight=0.0)


def tiny_sds(kind: str, steps: int = STEPS, seed: int = 0, **overrides) -> SDSConfig:
    cfg = SDSConfig.from_sir(tiny_preset(kind).sir, steps=steps)
    return dataclasses.replace(
        cfg,
        init=dataclasses.replace(cfg.init, num=300),
        runtime=dataclasses.replace(cfg.runtime, seed=seed),
        **overrides,
    )


def test_timestep_schedule_and_weight():
    assert [sds_timestep(s, 500) for s in (1, 10, 30, 250, 499, 500)] == [980, 980, 940, 500, 20, 20]
    ts = SDSConfig(steps=500).timesteps()
    assert len(ts) == 500 and ts[0] == 980 and ts[-1] == 20 and all(a >= b for a, b in zip(ts, ts[1:], strict=False))
    assert [sds_timestep(s, 4) for s in (1, 2, 3, 4)] == [750, 500, 250, 20]
    a = DDIMSchedule().alphas_cumprod
    assert sds_weight(500) == pytest.approx(float(1 - a[500])) and 0 < sds_weight(20) < sds_weight(980) < 1


def test_from_sir_copies_the_shared_settings():
    sir = tiny_preset("zero123").sir
    sds = SDSConfig.from_sir(sir, steps=7)
    assert sds.steps == 7
    for name in (
        "cameras",
        "resolution",
        "image_size",
        "guidance_scale",
        "lr",
        "densify",
        "runtime.background",
        "runtime.gaussian_backend",
        "runtime.device",
        "runtime.seed",
        "init.num",
        "init.radius",
        "init.opacity",
        "reference.rgb_weight",
        "reference.mask_weight",
        "reference.radius",
        "reference",
        "init",
        "runtime",
    ):
        assert attrgetter(name)(sds) == attrgetter(name)(sir), name
    assert sds.lr is not sir.lr and sds.densify is not sir.densify  # deep copies
    assert sds.reference is not sir.reference and sds.init is not sir.init and sds.runtime is not sir.runtime
    assert SDSConfig.from_sir(tiny_preset("imagedream").sir).reference.rgb_weight == 0


@pytest.mark.parametrize("kind", KINDS)
def test_sds_steps_spend_one_nfe_each_and_move_the_gaussians(kind, models, monkeypatch):
    model = models[kind]
    encoded = []
    original = model.encode_images

    def spy(images, *args, **kwargs):
        latents = original(images, *args, **kwargs)
        if torch.is_grad_enabled():  # not prepare()'s reference encoding
            encoded.append((images.requires_grad, latents.requires_grad, latents.dtype))
        return latents

    monkeypatch.setattr(model, "encode_images", spy)
    events = []
    # Only the SDS term moves the Gaussians; no final prune, so they can be compared row by row.
    keep_all = dataclasses.replace(DensifyConfig(), final_prune_opacity=0.0, final_prune_max_scale=float("inf"))
    cfg = tiny_sds(kind, reference=NO_REFERENCE, densify=keep_all)
    before = model.nfe
    result = run_sds(model, condition_for(kind), cfg, progress=lambda d, n: events.append((d, n)))
    assert model.nfe - before == result.nfe == STEPS
    assert events == [(i, STEPS) for i in range(1, STEPS + 1)] and len(result.losses) == STEPS
    assert encoded == [(True, True, model.dtype)] * STEPS  # the latents carry the renders' gradient
    assert result.timesteps == cfg.timesteps()
    assert set(result.timings) >= {"render", "vae_encode", "diffusion", "backward_step", "total"}
    # The initial Gaussians: what run_sds starts from (first draw of the same seeded generator).
    g0 = init_ball(
        cfg.init.num, cfg.init.radius, cfg.init.opacity, generator=torch.Generator().manual_seed(cfg.runtime.seed)
    )
    g = result.gaussians
    assert g.num == g0.num
    assert not torch.equal(g.sh0, g0.sh0) and not torch.equal(g.means, g0.means)


def test_reference_loss_is_added_for_image_presets(models):
    cond = condition_for("zero123")
    with_ref = run_sds(models["zero123"], cond, tiny_sds("zero123", steps=2))
    without = run_sds(models["zero123"], cond, tiny_sds("zero123", steps=2, reference=NO_REFERENCE))
    assert with_ref.losses[0] > without.losses[0]


def test_sds_is_deterministic(models):
    cond = condition_for("imagedream")
    a = run_sds(models["imagedream"], cond, tiny_sds("imagedream", steps=3))
    b = run_sds(models["imagedream"], cond, tiny_sds("imagedream", steps=3))
    assert a.losses == b.losses
    for name, t in a.gaussians.params().items():
        assert torch.equal(t, b.gaussians.params()[name]), name
    c = run_sds(models["imagedream"], cond, tiny_sds("imagedream", steps=3, seed=1))
    assert not torch.equal(a.gaussians.means, c.gaussians.means)


def test_cancel_stops_like_sir(models):
    model = models["mvdream"]
    before = model.nfe
    with pytest.raises(Cancelled, match="SDS step 0"):
        run_sds(model, condition_for("mvdream"), tiny_sds("mvdream"), cancel=lambda: True)
    assert model.nfe == before
    calls = []
    with pytest.raises(Cancelled, match="SDS step 2"):
        run_sds(model, condition_for("mvdream"), tiny_sds("mvdream"), cancel=lambda: calls.append(1) or len(calls) > 2)
    assert model.nfe - before == 2


def test_works_under_inference_mode(models):
    with torch.inference_mode():
        result = run_sds(models["zero123"], condition_for("zero123"), tiny_sds("zero123", steps=1))
    assert result.nfe == 1 and torch.isfinite(result.gaussians.means).all()


def test_low_precision_model_keeps_fp32_gaussians(monkeypatch):
    model = build_random_model("zero123", "tiny", seed=0, dtype=torch.bfloat16)
    dtypes = []
    original = model.encode_images

    def spy(*args, **kwargs):
        latents = original(*args, **kwargs)
        dtypes.append(latents.dtype)
        return latents

    monkeypatch.setattr(model, "encode_images", spy)
    result = run_sds(model, condition_for("zero123"), tiny_sds("zero123", steps=2))
    assert result.nfe == 2 and torch.bfloat16 in dtypes
    assert all(t.dtype == torch.float32 and torch.isfinite(t).all() for t in result.gaussians.params().values())
