"""The whole pipeline with tiny random models: SIR, texture refinement, presets, generate()."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from microdreamer_core.render.gaussians import render_gaussians
from tiny_models import KINDS, blob_rgba, condition_for  # tests/ is on sys.path

from microdreamer_core.errors import Cancelled, InputError
from microdreamer_core.io.export import glb_bytes
from microdreamer_core.pipeline.generate import generate, make_condition, tiny_preset
from microdreamer_core.pipeline.presets import PRESETS, get_preset
from microdreamer_core.pipeline.sir import SIRConfig, run_sir
from microdreamer_core.pipeline.texture_refine import (
    TextureRefineConfig,
    refine_texture,
)
from microdreamer_core.scene.cameras import orbit_cameras
from microdreamer_core.scene.views import PosedViews


def test_presets_hold_the_papers_schedules():
    assert PRESETS["zero123"].sir.t2_schedule() == [901, 851, 801, 751, 751, 701, 651, 651, 601, 551, 501, 501, 451, 401, 401, 351, 301, 301, 251, 201]
    seq = PRESETS["imagedream"].sir.t2_schedule()
    assert seq == [801] + [701] * 7 + [601] * 8 + [501] * 7 + [401] * 7
    assert PRESETS["mvdream"].sir.t2_schedule() == seq
    assert (PRESETS["zero123"].sir.planned_nfes(), PRESETS["imagedream"].sir.planned_nfes()) == (352, 285)
    z = PRESETS["zero123"].sir
    assert (z.cameras.num_views, z.cameras.radius, z.steps_per_iteration, z.reference_rgb_weight, z.reference_mask_weight) == (6, 2.0, 15, 0.3, 0.01)
    assert PRESETS["imagedream"].sir.reference_rgb_weight == 0 and PRESETS["imagedream"].sir.cameras.num_views == 4
    assert PRESETS["zero123"].texture.t == 181 and PRESETS["zero123"].texture.steps == 30 and PRESETS["zero123"].texture.views == 8
    p = get_preset("zero123").with_overrides(seed=7, iterations=3)
    assert (p.sir.iterations, p.sir.seed, p.texture.seed) == (3, 7, 7) and PRESETS["zero123"].sir.iterations == 20
    with pytest.raises(InputError, match="unknown preset"):
        get_preset("fastest")


@pytest.mark.slow
@pytest.mark.parametrize("kind,expected", [("zero123", 352), ("imagedream", 285), ("mvdream", 285)])
def test_full_preset_nfe_count_is_counted_not_computed(kind, expected, models):
    """The preset's whole diffusion schedule (every iteration, every t2) on a tiny model; only the
    Adam steps and image sizes are shrunk, which do not change the NFE count."""
    p = get_preset(kind)
    sir = dataclasses.replace(p.sir, init_steps=1, steps_per_iteration=1, resolution=32, image_size=32, num_init=300)
    model = models[kind]
    before = model.nfe
    result = run_sir(model, condition_for(kind), sir)
    assert model.nfe - before == expected == result.nfe["total"]
    assert result.nfe["init"] == p.sir.denoise_steps and [i.t2 for i in result.iterations] == p.sir.t2_schedule()
    assert len(result.losses) == 1 + p.sir.iterations


@pytest.mark.parametrize("kind", KINDS)
def test_generate_writes_a_textured_mesh_for_every_preset(kind, models, tmp_path):
    from gltf_validator import assert_valid

    events = []
    result = generate(models[kind], condition_for(kind), tiny_preset(kind), progress=lambda s, d, n: events.append((s, d, n)))
    mesh = result.mesh
    assert mesh is not None and mesh.has_texture and mesh.num_faces > 100
    assert result.gaussians.num > 0 and torch.isfinite(result.gaussians.means).all()
    assert set(result.timings) >= {"sir", "mesh", "texture", "total"} and result.timings["total"] > 0
    assert result.nfe["sir"] == tiny_preset(kind).sir.planned_nfes() and result.nfe["texture"] > 0
    assert result.nfe["total"] == result.nfe["sir"] + result.nfe["texture"]
    for stage in ("sir", "mesh", "texture"):  # each stage's progress reaches its total
        last = [e for e in events if e[0] == stage][-1]
        assert last[1] == last[2]
    path = tmp_path / f"{kind}.glb"
    path.write_bytes(glb_bytes(mesh))
    assert_valid(path)


def test_same_seed_same_glb_and_other_seed_differs(models):
    kind = "imagedream"
    runs = [generate(models[kind], condition_for(kind), tiny_preset(kind).with_overrides(seed=s)) for s in (5, 5, 6)]
    a, b, c = (glb_bytes(r.mesh) for r in runs)
    assert a == b
    assert a != c


def test_texture_refinement_fits_the_targets_for_every_kind(models):
    from microdreamer_core.meshing.extract import gaussians_on_surface  # noqa: F401  (module imports cleanly)

    base = generate(models["zero123"], condition_for("zero123"), dataclasses.replace(tiny_preset("zero123"), refine_texture=False))
    assert base.texture is None
    for kind in KINDS:
        cfg = dataclasses.replace(TextureRefineConfig(), render_resolution=64, image_size=32, steps=8, lr=0.05)
        before = models[kind].nfe
        out = refine_texture(base.mesh, models[kind], condition_for(kind), cfg)
        calls = 1 if kind == "zero123" else 2  # 8 views: one batch, or two 4-view orbits
        assert models[kind].nfe - before == calls * 10  # t=181 on the 50-step grid: 10 DDIM steps
        assert out.losses[-1] < out.losses[0]
        assert out.mesh.texture.shape == base.mesh.texture.shape and not torch.equal(out.mesh.texture, base.mesh.texture)
        assert torch.equal(out.mesh.vertices, base.mesh.vertices)  # texture only
    with pytest.raises(InputError, match="multiple of 4"):
        refine_texture(base.mesh, models["mvdream"], condition_for("mvdream"), dataclasses.replace(cfg, views=6))


def test_reference_loss_pulls_the_front_view_to_the_input(models):
    """Zero123's reference term: with it, the front render ends closer to the input image."""
    cond = condition_for("zero123")
    base = dataclasses.replace(tiny_preset("zero123", iterations=1, init_steps=20, steps_per_iteration=1).sir, resolution=32)
    errors = {}
    for w in (0.0, 0.3):
        sir = dataclasses.replace(base, reference_rgb_weight=w, reference_mask_weight=w / 30)
        g = run_sir(models["zero123"], cond, sir).gaussians
        front = render_gaussians(g, orbit_cameras([0.0], [0.0], 2.0, 32)).rgb[0]
        target = torch.nn.functional.interpolate(cond.image.permute(2, 0, 1)[None], (32, 32), mode="bilinear", antialias=True)[0].permute(1, 2, 0)
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


def test_cancel_stops_between_steps(models):
    calls = {"n": 0}

    def cancel():
        calls["n"] += 1
        return calls["n"] > 12

    with pytest.raises(Cancelled):
        generate(models["mvdream"], condition_for("mvdream"), tiny_preset("mvdream"), cancel=cancel)
    assert calls["n"] == 13


def test_condition_and_preset_errors_name_the_fix(models):
    rgb = blob_rgba()[..., :3]
    with pytest.raises(InputError, match="prompt"):
        make_condition("mvdream", "  ")
    with pytest.raises(InputError, match="image-to-3D"):
        make_condition("zero123", "a duck")
    with pytest.raises(InputError, match="no mask"):
        make_condition("imagedream", "", image=rgb)
    with pytest.raises(InputError, match="empty"):
        make_condition("zero123", image=rgb, mask=torch.zeros(64, 64))
    with pytest.raises(InputError, match="invert_mask"):
        make_condition("zero123", image=rgb, mask=torch.zeros(64, 64), invert_mask=True)  # all object = no background
    cond = make_condition("zero123", image=rgb, mask=1 - blob_rgba()[..., 3], invert_mask=True)  # LoadImage convention
    assert cond.image.shape == (256, 256, 4)
    alpha = cond.image[..., 3] > 0.5
    ys, xs = alpha.nonzero(as_tuple=True)
    assert abs(int(ys.max() - ys.min() + 1) - 0.8 * 256) <= 2 or abs(int(xs.max() - xs.min() + 1) - 0.8 * 256) <= 2
    with pytest.raises(InputError, match="preset 'zero123' is made for a zero123 model"):
        generate(models["mvdream"], condition_for("mvdream"), "zero123")
    with pytest.raises(InputError, match="t_end"):
        run_sir(models["mvdream"], condition_for("mvdream"), SIRConfig(t_start=0.2, t_end=0.5))


def test_reference_view_camera_follows_the_input_elevation():
    """The reference loss renders from the photo's camera, which Zero123 is conditioned on."""
    from microdreamer_core.pipeline.sir import _reference_targets

    for elevation in (0.0, -20.0):
        cond = make_condition("zero123", image=blob_rgba(), elevation=elevation)
        cam, rgb, alpha = _reference_targets(cond, SIRConfig(resolution=32), torch.device("cpu"))
        expected = orbit_cameras([elevation], [0.0], 2.0, 32)
        assert torch.allclose(cam.c2w, expected.c2w) and rgb.shape == (1, 32, 32, 3) and alpha.shape == (1, 32, 32)
