"""SIR (microdreamer_core.pipeline.sir) with tiny random models: NFEs counted, the reference term,
views the user brings, and the settings it refuses."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from tiny_models import condition_for  # tests/ is on sys.path

from microdreamer_core.errors import InputError
from microdreamer_core.fit.init import InitialGaussians
from microdreamer_core.pipeline.presets import get_preset, tiny_preset
from microdreamer_core.pipeline.reference import ReferenceView
from microdreamer_core.pipeline.sir import SIRConfig, run_sir
from microdreamer_core.render.gaussians import render_gaussians
from microdreamer_core.scene.cameras import orbit_cameras
from microdreamer_core.scene.views import PosedViews


@pytest.mark.slow
@pytest.mark.parametrize("kind,expected", [("zero123", 352), ("imagedream", 285), ("mvdream", 285)])
def test_full_preset_nfe_count_is_counted_not_computed(kind, expected, models):
    """The preset's whole diffusion schedule (every iteration, every t2) on a tiny model; only the
    Adam steps and image sizes are shrunk, which do not change the NFE count."""
    p = get_preset(kind)
    sir = dataclasses.replace(
        p.sir, init_steps=1, steps_per_iteration=1, resolution=32, image_size=32, init=InitialGaussians(num=300)
    )
    model = models[kind]
    before = model.nfe
    result = run_sir(model, condition_for(kind), sir)
    assert model.nfe - before == expected == result.nfe["total"]
    assert result.nfe["init"] == p.sir.denoise_steps and [i.t2 for i in result.iterations] == p.sir.t2_schedule()
    assert len(result.losses) == 1 + p.sir.iterations


def test_reference_loss_pulls_the_front_view_to_the_input(models):
    """Zero123's reference term: with it, the front render ends closer to the input image."""
    cond = condition_for("zero123")
    base = dataclasses.replace(
        tiny_preset("zero123", iterations=1, init_steps=20, steps_per_iteration=1).sir, resolution=32
    )
    errors = {}
    for w in (0.0, 0.3):
        sir = dataclasses.replace(base, reference=ReferenceView(rgb_weight=w, mask_weight=w / 30))
        g = run_sir(models["zero123"], cond, sir).gaussians
        front = render_gaussians(g, orbit_cameras([0.0], [0.0], 2.0, 32)).rgb[0]
        target = torch.nn.functional.interpolate(
            cond.image.permute(2, 0, 1)[None], (32, 32), mode="bilinear", antialias=True
        )[0].permute(1, 2, 0)
        target = target[..., :3] * target[..., 3:] + 1 - target[..., 3:]
        errors[w] = float((front - target).abs().mean())
    assert errors[0.3] < errors[0.0]


def test_bring_your_own_views_fits_them_without_sampling(models):
    """Views from elsewhere replace the initial sampling: no init NFEs; iterations still refine."""
    cams = orbit_cameras([-3.0] * 4, [0, 90, 180, 270], 2.5, 32)
    images = torch.ones(4, 32, 32, 4)
    images[:, 8:24, 8:24, :3] = torch.tensor([0.2, 0.4, 0.8])
    images[..., 3] = 0
    images[:, 8:24, 8:24, 3] = 1
    views = PosedViews(images, cams)
    sir = dataclasses.replace(tiny_preset("mvdream", iterations=1).sir, resolution=32)
    model = models["mvdream"]
    r = run_sir(model, condition_for("mvdream"), sir, init_views=views)
    assert r.nfe["init"] == 0 and r.nfe["total"] == sir.planned_nfes(sample_init=False) > 0
    pure = run_sir(None, None, dataclasses.replace(sir, iterations=0, init_steps=30), init_views=views)
    assert pure.nfe["total"] == 0 and pure.gaussians.num > 0
    with pytest.raises(InputError, match="need a multi-view diffusion model"):
        run_sir(None, None, sir, init_views=views)


def test_sir_refuses_a_t2_range_that_runs_backwards(models):
    with pytest.raises(InputError, match="t_end"):
        run_sir(models["mvdream"], condition_for("mvdream"), SIRConfig(t_start=0.2, t_end=0.5))
