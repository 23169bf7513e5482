"""The multi-view models with tiny random weights: CFG batching, latent scaling, the conditioning
each model prepares, its errors, and the condition cache."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from tiny_diffusion import KINDS, SIZE, cameras, condition

from microdreamer_core.diffusion.models import Condition
from microdreamer_core.diffusion.random_models import build_random_model
from microdreamer_core.diffusion.sampling import refine_views
from microdreamer_core.errors import InputError
from microdreamer_core.scene.cameras import orbit_cameras


@pytest.mark.parametrize("kind", KINDS)
def test_cfg_batch_combines_the_right_halves(kind, models):
    """One CFG-doubled call equals uncond + s * (cond - uncond) of two separate calls, whatever
    order the model batches them in ([uncond, cond] or Zero123's [cond, uncond])."""
    m = models[kind]
    prepared = m.prepare(condition(), cameras(), SIZE)
    x = torch.randn(4, 4, SIZE // 2, SIZE // 2, generator=torch.Generator().manual_seed(0))
    eps_u = m._unet(x, 501, prepared.uncond, 4)
    eps_c = m._unet(x, 501, prepared.cond, 4)
    before = m.nfe
    eps = m.predict_noise(x, 501, prepared, 3.0)
    assert m.nfe == before + 1
    torch.testing.assert_close(eps, eps_u + 3.0 * (eps_c - eps_u), atol=1e-5, rtol=1e-4)
    assert not torch.allclose(eps_u, eps_c)
    assert m.cond_first == (kind == "zero123")


def test_zero123_concat_latent_is_unscaled(models):
    m = models["zero123"]
    p = m.prepare(condition(), cameras(), SIZE)
    ref = torch.nn.functional.interpolate(_white(condition().image), (SIZE, SIZE), mode="bilinear", align_corners=False)
    scaled = m.encode_images(ref, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(p.cond["concat"][0] * m.latent_scale, scaled[0])
    assert torch.count_nonzero(p.uncond["concat"]) == 0 and torch.count_nonzero(p.uncond["context"]) == 0


def test_imagedream_reference_latent_is_scaled_and_uncond_is_zero(models):
    m = models["imagedream"]
    p = m.prepare(condition(), cameras(), SIZE)
    ref = torch.nn.functional.interpolate(_white(condition().image), (SIZE, SIZE), mode="bilinear", align_corners=False)
    torch.testing.assert_close(p.cond["ip_img"], m.encode_images(ref, generator=torch.Generator().manual_seed(0)))
    assert p.cond["camera"].shape == (5, 16) and torch.count_nonzero(p.cond["camera"][4]) == 0
    assert torch.count_nonzero(p.uncond["ip"]) == 0 and torch.count_nonzero(p.uncond["ip_img"]) == 0


def _white(rgba):
    rgb = rgba[..., :3] * rgba[..., 3:] + (1 - rgba[..., 3:])
    return rgb.permute(2, 0, 1)[None]


def test_bad_inputs_get_clear_errors(models):
    with pytest.raises(InputError, match="needs a non-empty prompt"):
        models["mvdream"].prepare(Condition(prompt="  "), cameras(), SIZE)
    with pytest.raises(InputError, match="connect an input image"):
        models["imagedream"].prepare(Condition(prompt="x"), cameras(), SIZE)
    with pytest.raises(InputError, match="expected \\(H, W, 3\\)"):
        models["zero123"].prepare(Condition(image=torch.rand(3, 32, 32, 2)), cameras(), SIZE)
    bad = torch.rand(32, 32, 3)
    bad[0, 0, 0] = float("nan")
    with pytest.raises(InputError, match="NaN"):
        models["zero123"].prepare(Condition(image=bad), cameras(), SIZE)
    with pytest.raises(InputError, match="4 images but 3 cameras"):
        refine_views(models["mvdream"], torch.rand(4, SIZE, SIZE, 3), cameras(3), condition(), 501, image_size=SIZE)


# --- the condition cache: encoders run once per condition, results exactly as without it --------------
_ENCODERS = {
    "mvdream": {"text_encoder": 2},
    "imagedream": {"text_encoder": 2, "image_encoder": 1, "vae": 1},
    "zero123": {"image_encoder": 1, "vae": 1},
}


def _counted(kind: str):
    """A fresh tiny model (seed 0) and a Counter of forward calls of its condition encoders."""
    model = build_random_model(kind, "tiny", seed=0)
    counts: Counter = Counter()
    for name, module in (
        ("text_encoder", getattr(model, "text_encoder", None)),
        ("image_encoder", getattr(model, "image_encoder", None)),
        ("vae", model.vae.encoder),
    ):
        if module is not None:
            module.register_forward_hook(lambda *_, n=name: counts.update([n]))
    return model, counts


def _other_cams(kind: str):
    n = 6 if kind == "zero123" else 4
    return orbit_cameras(
        [10.0 + 5 * i for i in range(n)], [17.0 + i * 360.0 / n for i in range(n)], 2.2, resolution=SIZE
    )


def _assert_same_prepared(a, b):
    assert a.num_views == b.num_views and a.cond.keys() == b.cond.keys() and a.uncond.keys() == b.uncond.keys()
    for branch in ("cond", "uncond"):
        for key, t in getattr(a, branch).items():
            u = getattr(b, branch)[key]
            assert t.shape == u.shape and t.dtype == u.dtype and torch.equal(t, u), (branch, key)


@pytest.mark.parametrize("kind", KINDS)
def test_condition_cache_skips_encoders_for_new_cameras_and_is_exact(kind):
    model, counts = _counted(kind)
    cond = condition()
    first = model.prepare(cond, cameras(), SIZE)
    assert counts == _ENCODERS[kind]
    cams = _other_cams(kind)
    second = model.prepare(cond, cams, SIZE)
    again = model.prepare(condition(), cams, SIZE)  # another Condition object with the same contents
    assert counts == _ENCODERS[kind]
    assert second.num_views == len(cams)
    camera_part = "context" if kind == "zero123" else "camera"  # the camera-dependent part is new
    assert not torch.equal(first.cond[camera_part][:4], second.cond[camera_part][:4])
    uncached = build_random_model(kind, "tiny", seed=0).prepare(cond, cams, SIZE)
    _assert_same_prepared(second, uncached)
    _assert_same_prepared(again, uncached)
    # what prepare returns never aliases the cache
    for t in second.cond.values():
        if t.stride(0) != 0:
            t.add_(1.0)
    _assert_same_prepared(model.prepare(cond, cams, SIZE), uncached)
    assert counts == _ENCODERS[kind]
    # the camera-independent part on its own
    enc = model.encode_condition(cond, SIZE)
    assert counts == _ENCODERS[kind] and all(t.shape[0] == 1 for t in enc.values())


@pytest.mark.parametrize("kind", KINDS)
def test_condition_cache_reencodes_what_changed(kind):
    model, counts = _counted(kind)
    cams = cameras(6 if kind == "zero123" else 4)
    cond = condition()
    model.prepare(cond, cams, SIZE)
    expected = Counter(_ENCODERS[kind])
    # one cache entry per whole condition: a change the model reads runs all its encoders again
    text = Counter(_ENCODERS[kind]) if kind != "zero123" else Counter()
    image = Counter(_ENCODERS[kind]) if kind != "mvdream" else Counter()

    def check(c, new_calls, size=SIZE):
        nonlocal expected
        p = model.prepare(c, cams, size)
        expected += new_calls
        assert counts == expected
        _assert_same_prepared(p, build_random_model(kind, "tiny", seed=0).prepare(c, cams, size))

    check(Condition(prompt="a red duck", negative_prompt="blurry", image=cond.image), text)
    check(Condition(prompt="a red duck", negative_prompt="dull", image=cond.image), text)
    # back to the first entry; Zero123's reference elevation only enters the per-camera projection
    check(
        Condition(prompt="a yellow duck", negative_prompt="blurry", image=cond.image, reference_elevation=20.0),
        Counter(),
    )
    check(condition(seed=5), image)  # another image
    cond.image[3:9, 3:9] = 0.25  # the cached image changed in place: same tensor, new contents
    check(cond, image)
    cond.image[0, 0, 0] = 0.0
    check(cond, image)
    cond.image[0, 0, 0] = -0.0  # a change torch.equal would not see: compared bit for bit
    check(cond, image)
    check(cond, image, size=2 * SIZE)  # image models encode the reference at the sampling size
    check(cond, Counter())


@pytest.mark.parametrize("kind", KINDS)
def test_condition_cache_is_emptied_by_dtype_moves_and_checks_every_call(kind):
    model, counts = _counted(kind)
    cond, cams = condition(), cameras(4)
    p32 = model.prepare(cond, cams, SIZE)
    expected = Counter(_ENCODERS[kind])
    model.to(torch.float64)
    p64 = model.prepare(cond, cams, SIZE)
    expected += Counter(_ENCODERS[kind])
    assert counts == expected and p64.cond["context"].dtype == torch.float64
    _assert_same_prepared(p64, build_random_model(kind, "tiny", seed=0, dtype=torch.float64).prepare(cond, cams, SIZE))
    model.float()
    _assert_same_prepared(model.prepare(cond, cams, SIZE), p32)
    expected += Counter(_ENCODERS[kind])
    assert counts == expected
    model.clear_condition_cache()
    model.prepare(cond, cams, SIZE)
    expected += Counter(_ENCODERS[kind])
    assert counts == expected
    # inference mode (ComfyUI) and normal mode do not share entries
    with torch.inference_mode():
        assert model.prepare(cond, cams, SIZE).cond["context"].is_inference()
    assert not model.prepare(cond, cams, SIZE).cond["context"].is_inference()
    # errors are raised on every call, also right after the same condition was cached
    if kind == "mvdream":
        with pytest.raises(InputError, match="needs a non-empty prompt"):
            model.prepare(Condition(prompt=" ", image=cond.image), cams, SIZE)
    else:
        with pytest.raises(InputError, match="connect an input image"):
            model.prepare(Condition(prompt=cond.prompt, negative_prompt=cond.negative_prompt), cams, SIZE)
        cond.image[1, 1, 1] = float("nan")
        with pytest.raises(InputError, match="NaN"):
            model.prepare(cond, cams, SIZE)
        cond.image[1, 1, 1] = 0.5
    with pytest.raises(InputError, match="4 images but 3 cameras"):
        refine_views(model, torch.rand(4, SIZE, SIZE, 3), cameras(3), cond, 501, image_size=SIZE)
