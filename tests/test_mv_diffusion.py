"""Multi-view diffusion models with tiny random weights: loading round trips, CFG batching,
latent scaling, sampling, hybrid forward and NFE counts."""

from __future__ import annotations

import json
from collections import Counter

import pytest
import torch

from microdreamer_core.diffusion.loading import (
    build_random_model,
    load_model,
    save_diffusers_folder,
)
from microdreamer_core.diffusion.models import Condition
from microdreamer_core.diffusion.sampling import hybrid_forward, refine_views, sample
from microdreamer_core.diffusion.schedules import (
    DDIMSchedule,
    sir_iteration_nfes,
    sir_t2_schedule,
)
from microdreamer_core.errors import InputError
from microdreamer_core.scene.cameras import (
    CAMERA_PRESETS,
    orbit_cameras,
    sample_orbit_cameras,
)

SIZE = 32  # image size of the tiny tests (latents 16x16 with the tiny 2-level VAE)
KINDS = ["mvdream", "imagedream", "zero123"]


@pytest.fixture(scope="module")
def tiny_models():
    return {k: build_random_model(k, "tiny", seed=1) for k in KINDS}


def _cond(seed: int = 0) -> Condition:
    g = torch.Generator().manual_seed(seed)
    return Condition(prompt="a yellow duck", negative_prompt="blurry", image=torch.rand(48, 48, 4, generator=g))


def _cams(n: int = 4):
    return orbit_cameras([-3.0] * n, [i * 360.0 / n for i in range(n)], 2.5, resolution=SIZE)


@pytest.mark.parametrize("kind", KINDS)
def test_diffusers_folder_round_trip_is_exact(kind, tiny_models, tmp_path):
    model = tiny_models[kind]
    folder = save_diffusers_folder(model, tmp_path / kind)
    index = json.loads((folder / "model_index.json").read_text())
    assert {"unet", "vae", "scheduler"} <= set(index)
    loaded = load_model(folder, kind=kind)
    assert type(loaded) is type(model)
    a = sample(model, _cond(), _cams(), steps=3, seed=5, image_size=SIZE)
    b = sample(loaded, _cond(), _cams(), steps=3, seed=5, image_size=SIZE)
    assert torch.equal(a.images, b.images)
    assert a.images.shape == (4, SIZE, SIZE, 3) and 0 <= a.images.min() and a.images.max() <= 1


@pytest.mark.parametrize("kind", KINDS)
def test_sampling_is_deterministic_per_seed(kind, tiny_models):
    m = tiny_models[kind]
    a = sample(m, _cond(), _cams(), steps=3, seed=7, image_size=SIZE)
    b = sample(m, _cond(), _cams(), steps=3, seed=7, image_size=SIZE)
    c = sample(m, _cond(), _cams(), steps=3, seed=8, image_size=SIZE)
    assert torch.equal(a.images, b.images)
    assert not torch.equal(a.latents, c.latents)
    assert a.nfe == 3


@pytest.mark.parametrize("kind", KINDS)
def test_cfg_batch_combines_the_right_halves(kind, tiny_models):
    """One CFG-doubled call equals uncond + s * (cond - uncond) of two separate calls, whatever
    order the model batches them in ([uncond, cond] or Zero123's [cond, uncond])."""
    m = tiny_models[kind]
    prepared = m.prepare(_cond(), _cams(), SIZE)
    x = torch.randn(4, 4, SIZE // 2, SIZE // 2, generator=torch.Generator().manual_seed(0))
    eps_u = m._unet(x, 501, prepared.uncond, 4)
    eps_c = m._unet(x, 501, prepared.cond, 4)
    before = m.nfe
    eps = m.predict_noise(x, 501, prepared, 3.0)
    assert m.nfe == before + 1
    torch.testing.assert_close(eps, eps_u + 3.0 * (eps_c - eps_u), atol=1e-5, rtol=1e-4)
    assert not torch.allclose(eps_u, eps_c)
    assert m.cond_first == (kind == "zero123")


def test_multiview_attention_couples_views_but_zero123_does_not(tiny_models):
    x = torch.randn(4, 4, SIZE // 2, SIZE // 2, generator=torch.Generator().manual_seed(0))
    x2 = x.clone()
    x2[2] += 1.0
    for kind, coupled in (("mvdream", True), ("imagedream", True), ("zero123", False)):
        m = tiny_models[kind]
        p = m.prepare(_cond(), _cams(), SIZE)
        a, b = m.predict_noise(x, 301, p, 2.0), m.predict_noise(x2, 301, p, 2.0)
        assert (not torch.allclose(a[0], b[0])) == coupled, kind


def test_zero123_concat_latent_is_unscaled(tiny_models):
    m = tiny_models["zero123"]
    p = m.prepare(_cond(), _cams(), SIZE)
    ref = torch.nn.functional.interpolate(_white(_cond().image), (SIZE, SIZE), mode="bilinear", align_corners=False)
    scaled = m.encode_images(ref, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(p.cond["concat"][0] * m.latent_scale, scaled[0])
    assert torch.count_nonzero(p.uncond["concat"]) == 0 and torch.count_nonzero(p.uncond["context"]) == 0


def test_imagedream_reference_latent_is_scaled_and_uncond_is_zero(tiny_models):
    m = tiny_models["imagedream"]
    p = m.prepare(_cond(), _cams(), SIZE)
    ref = torch.nn.functional.interpolate(_white(_cond().image), (SIZE, SIZE), mode="bilinear", align_corners=False)
    torch.testing.assert_close(p.cond["ip_img"], m.encode_images(ref, generator=torch.Generator().manual_seed(0)))
    assert p.cond["camera"].shape == (5, 16) and torch.count_nonzero(p.cond["camera"][4]) == 0
    assert torch.count_nonzero(p.uncond["ip"]) == 0 and torch.count_nonzero(p.uncond["ip_img"]) == 0


def _white(rgba):
    rgb = rgba[..., :3] * rgba[..., 3:] + (1 - rgba[..., 3:])
    return rgb.permute(2, 0, 1)[None]


@pytest.mark.parametrize(
    "kind,steps,t_start,t_end,iters,total",
    [("zero123", 20, 0.9, 0.2, 20, 352), ("imagedream", 10, 0.8, 0.4, 30, 285)],
)
def test_sir_iteration_nfes_match_method_md(kind, steps, t_start, t_end, iters, total, tiny_models):
    """Run the real hybrid forward + sampling for each distinct t2 of the preset and count UNet
    calls; with the init sampling they add up to METHOD.md's totals."""
    m = tiny_models[kind]
    schedule = DDIMSchedule(steps)
    cams = _cams(4)
    prepared = m.prepare(_cond(), cams, SIZE)
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


def test_forward_modes_are_the_papers_ablations(tiny_models):
    m = tiny_models["mvdream"]
    schedule = DDIMSchedule(20)
    cams = _cams()
    prepared = m.prepare(_cond(), cams, SIZE)
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


def test_refine_views_is_deterministic_and_stays_close_at_low_t(tiny_models):
    m = tiny_models["imagedream"]
    views = torch.rand(4, SIZE, SIZE, 3, generator=torch.Generator().manual_seed(3))
    a = refine_views(m, views, _cams(), _cond(), 201, steps=20, seed=4, image_size=SIZE)
    b = refine_views(m, views, _cams(), _cond(), 201, steps=20, seed=4, image_size=SIZE)
    assert torch.equal(a.images, b.images) and a.images.shape == views.shape


def test_bad_inputs_get_clear_errors(tiny_models):
    with pytest.raises(InputError, match="needs a non-empty prompt"):
        tiny_models["mvdream"].prepare(Condition(prompt="  "), _cams(), SIZE)
    with pytest.raises(InputError, match="connect an input image"):
        tiny_models["imagedream"].prepare(Condition(prompt="x"), _cams(), SIZE)
    with pytest.raises(InputError, match="expected \\(H, W, 3\\)"):
        tiny_models["zero123"].prepare(Condition(image=torch.rand(3, 32, 32, 2)), _cams(), SIZE)
    bad = torch.rand(32, 32, 3)
    bad[0, 0, 0] = float("nan")
    with pytest.raises(InputError, match="NaN"):
        tiny_models["zero123"].prepare(Condition(image=bad), _cams(), SIZE)
    with pytest.raises(InputError, match="4 images but 3 cameras"):
        refine_views(tiny_models["mvdream"], torch.rand(4, SIZE, SIZE, 3), _cams(3), _cond(), 501, image_size=SIZE)


def test_loader_refuses_wrong_files(tiny_models, tmp_path):
    from diffusers import UNet2DConditionModel

    # a model of another kind for this node
    folder = save_diffusers_folder(tiny_models["imagedream"], tmp_path / "imagedream")
    with pytest.raises(InputError, match="is a ImageDream model, but MVDream is needed"):
        load_model(folder, kind="mvdream")
    # a plain Stable Diffusion folder
    plain = tmp_path / "sd"
    UNet2DConditionModel(block_out_channels=(32, 64), cross_attention_dim=32, norm_num_groups=32, layers_per_block=1,
                         down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                         up_block_types=("UpBlock2D", "CrossAttnUpBlock2D")).save_pretrained(plain / "unet")
    with pytest.raises(InputError, match="plain Stable Diffusion model"):
        load_model(plain)
    # a truncated safetensors file inside a folder
    weights = folder / "vae" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(InputError, match="could not load the VAE"):
        load_model(folder)
    # a truncated single file, a file of the wrong type, a missing path
    trunc = tmp_path / "model.safetensors"
    trunc.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\":")
    with pytest.raises(InputError, match="truncated, corrupt"):
        load_model(trunc)
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(InputError, match="unknown model file type"):
        load_model(tmp_path / "notes.txt")
    with pytest.raises(InputError, match="not found"):
        load_model(tmp_path / "nowhere")


def test_hub_id_offline_says_where_to_put_the_files(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(InputError, match=r"put the files in .*ashawkey--imagedream-ipmv-diffusers"):
        load_model("ashawkey/imagedream-ipmv-diffusers", download_dir=tmp_path)


# --- original single-file checkpoints ---------------------------------------------------------------
@pytest.mark.parametrize("kind", ["mvdream", "imagedream"])
@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_single_file_checkpoint_loads_exactly(kind, suffix, tiny_models, tmp_path):
    """A tiny model written as the authors' single file (UNet, LDM VAE, OpenCLIP text tower; plus
    the YAML they ship) loads through the public loader and computes exactly the same."""
    import yaml
    from safetensors.torch import save_file
    from single_file_layout import to_single_file

    model = tiny_models[kind]
    folder = save_diffusers_folder(model, tmp_path / "parts")  # tokenizer / image encoder sources
    sd = to_single_file(model)
    path = tmp_path / f"sd-v2.1-base-4view{'-ipmv' if kind == 'imagedream' else ''}{suffix}"
    if suffix == ".pt":
        torch.save({"state_dict": sd}, path)
    else:
        save_file(sd, str(path))
    params = {"num_head_channels": model.unet.config.num_head_channels, "camera_dim": 16}
    path.with_suffix(".yaml").write_text(yaml.safe_dump({"model": {"params": {"unet_config": {"params": params}}}}))
    extra = {"tokenizer": folder / "tokenizer"} | ({"image_encoder": folder / "image_encoder"} if kind == "imagedream" else {})
    loaded = load_model(path, kind=kind, **extra)
    assert type(loaded) is type(model)
    cond, cams = _cond(), _cams()
    a = sample(model, cond, cams, steps=3, seed=2, image_size=SIZE)
    b = sample(loaded, cond, cams, steps=3, seed=2, image_size=SIZE)
    assert torch.equal(a.images, b.images)
    # the text tower really came from the file (23-of-24 style: the extra layer was dropped)
    assert loaded.text_encoder.config.num_hidden_layers == model.text_encoder.config.num_hidden_layers


def test_single_file_errors_name_what_was_found(tiny_models, tmp_path):
    from safetensors.torch import save_file
    from single_file_layout import to_single_file

    sd = to_single_file(tiny_models["mvdream"])
    plain = {k: v for k, v in sd.items() if "camera_embed" not in k}
    save_file(plain, str(tmp_path / "sd21.safetensors"))
    with pytest.raises(InputError, match="plain Stable Diffusion checkpoint"):
        load_model(tmp_path / "sd21.safetensors")
    save_file({"cc_projection.weight": torch.zeros(2, 2)}, str(tmp_path / "stable_zero123.safetensors"))
    with pytest.raises(InputError, match="original Stable Zero123 checkpoint"):
        load_model(tmp_path / "stable_zero123.safetensors")
    save_file({k[len("first_stage_model."):]: v for k, v in sd.items() if k.startswith("first_stage_model.")}, str(tmp_path / "vae.safetensors"))
    with pytest.raises(InputError, match="single component"):
        load_model(tmp_path / "vae.safetensors")
    no_vae = {k: v for k, v in sd.items() if not k.startswith("first_stage_model.")}
    save_file(no_vae, str(tmp_path / "novae.safetensors"))
    with pytest.raises(InputError, match="has no VAE"):
        load_model(tmp_path / "novae.safetensors")
    nan = dict(sd)
    key = "model.diffusion_model.out.2.weight"
    nan[key] = torch.full_like(sd[key], float("nan"))
    save_file(nan, str(tmp_path / "nan.safetensors"))
    with pytest.raises(InputError, match="NaN"):
        load_model(tmp_path / "nan.safetensors", tokenizer=tmp_path)
    raw = (tmp_path / "nan.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(InputError, match="truncated, corrupt"):
        load_model(tmp_path / "cut.safetensors")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("kind", KINDS)
def test_half_precision_models_sample(kind, dtype):
    """The GPU default is fp16: every model must run a whole hybrid forward + sampling in half
    precision (fp32 GroupNorm with half weights once crashed on the H100), close to fp32."""
    results = {}
    for dt in (torch.float32, dtype):
        model = build_random_model(kind, "tiny", seed=0, dtype=dt)
        cams = sample_orbit_cameras(CAMERA_PRESETS["zero123" if kind == "zero123" else kind], 32, torch.Generator().manual_seed(0))
        cond = Condition(prompt="a duck", image=torch.rand(32, 32, 4, generator=torch.Generator().manual_seed(0)))
        views = torch.rand(len(cams), 32, 32, 3, generator=torch.Generator().manual_seed(1))
        results[dt] = refine_views(model, views, cams, cond, 501, steps=10, image_size=32, seed=3).images
    half = results[dtype]
    assert half.dtype == torch.float32 and torch.isfinite(half).all()
    assert (half - results[torch.float32]).abs().mean() < 0.05


# --- the condition cache: encoders run once per condition, results exactly as without it --------------
_ENCODERS = {"mvdream": {"text_encoder": 2}, "imagedream": {"text_encoder": 2, "image_encoder": 1, "vae": 1},
             "zero123": {"image_encoder": 1, "vae": 1}}


def _counted(kind: str):
    """A fresh tiny model (seed 0) and a Counter of forward calls of its condition encoders."""
    model = build_random_model(kind, "tiny", seed=0)
    counts: Counter = Counter()
    for name, module in (("text_encoder", getattr(model, "text_encoder", None)), ("image_encoder", getattr(model, "image_encoder", None)),
                         ("vae", model.vae.encoder)):
        if module is not None:
            module.register_forward_hook(lambda *_, n=name: counts.update([n]))
    return model, counts


def _other_cams(kind: str):
    n = 6 if kind == "zero123" else 4
    return orbit_cameras([10.0 + 5 * i for i in range(n)], [17.0 + i * 360.0 / n for i in range(n)], 2.2, resolution=SIZE)


def _assert_same_prepared(a, b):
    assert a.num_views == b.num_views and a.cond.keys() == b.cond.keys() and a.uncond.keys() == b.uncond.keys()
    for branch in ("cond", "uncond"):
        for key, t in getattr(a, branch).items():
            u = getattr(b, branch)[key]
            assert t.shape == u.shape and t.dtype == u.dtype and torch.equal(t, u), (branch, key)


@pytest.mark.parametrize("kind", KINDS)
def test_condition_cache_skips_encoders_for_new_cameras_and_is_exact(kind):
    model, counts = _counted(kind)
    cond = _cond()
    first = model.prepare(cond, _cams(), SIZE)
    assert counts == _ENCODERS[kind]
    cams = _other_cams(kind)
    second = model.prepare(cond, cams, SIZE)
    again = model.prepare(_cond(), cams, SIZE)  # another Condition object with the same contents
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
    cams = _cams(6 if kind == "zero123" else 4)
    cond = _cond()
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
    check(Condition(prompt="a yellow duck", negative_prompt="blurry", image=cond.image, reference_elevation=20.0), Counter())
    check(_cond(seed=5), image)  # another image
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
    cond, cams = _cond(), _cams(4)
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
        refine_views(model, torch.rand(4, SIZE, SIZE, 3), _cams(3), cond, 501, image_size=SIZE)
