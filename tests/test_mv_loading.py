"""Loading real diffusers folders: the published UNet configs load quietly (their LDM switches are
constructor arguments; a value we do not build is refused with one line), and every component takes
the light path (built on ``meta``, weights loaded exactly, straight into the target dtype)."""

from __future__ import annotations

import functools
import io
import json
import logging
from contextlib import contextmanager

import pytest
import torch

from microdreamer_core.diffusion.loading import (
    build_random_model,
    load_model,
    save_diffusers_folder,
)
from microdreamer_core.diffusion.models import Condition
from microdreamer_core.diffusion.sampling import sample
from microdreamer_core.diffusion.unet import MultiViewUNetModel
from microdreamer_core.errors import InputError
from microdreamer_core.scene.cameras import orbit_cameras

SIZE = 32
# what the published ashawkey/{mvdream-sd2.1,imagedream-ipmv}-diffusers unet/config.json carry
# from the original LDM unet_config.params, beside the constructor arguments
PUBLISHED_SWITCHES = {"legacy": False, "use_checkpoint": False, "use_linear_in_transformer": True}
NOISE = ("not expected", "will be ignored", "low_cpu_mem_usage", "accelerate", "kept in float32")


@pytest.fixture(scope="module")
def tiny():
    return {k: build_random_model(k, "tiny", seed=3) for k in ("mvdream", "imagedream", "zero123")}


@contextmanager
def library_logs():
    """The warnings diffusers, transformers and accelerate log (their loggers do not propagate to
    the root, so caplog does not see them)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setLevel(logging.WARNING)
    loggers = [logging.getLogger(name) for name in ("diffusers", "transformers", "accelerate")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.setLevel(logging.WARNING)
    try:
        yield stream
    finally:
        for lg, level in zip(loggers, levels):
            lg.removeHandler(handler)
            lg.setLevel(level)


def _published_layout(folder, **overrides):
    """Rewrite unet/config.json the way the hub ports have it: the LDM switches as written by the
    original converter (no use_spatial_transformer, no defaults of ours they do not write)."""
    path = folder / "unet" / "config.json"
    cfg = json.loads(path.read_text())
    for key in ("use_spatial_transformer", "use_scale_shift_norm", "resblock_updown", "num_heads", "ip_weight"):
        cfg.pop(key, None)
    cfg |= {"_diffusers_version": "0.25.0"} | PUBLISHED_SWITCHES | overrides
    path.write_text(json.dumps(cfg, indent=2))
    return folder


def _cams(n: int = 4):
    return orbit_cameras([-3.0] * n, [i * 360.0 / n for i in range(n)], 2.5, resolution=SIZE)


def _cond() -> Condition:
    g = torch.Generator().manual_seed(0)
    return Condition(prompt="a yellow duck", image=torch.rand(48, 48, 4, generator=g))


@pytest.mark.parametrize("kind", ["mvdream", "imagedream"])
def test_published_unet_config_loads_quietly_and_works(kind, tiny, tmp_path, capfd):
    model = tiny[kind]
    folder = _published_layout(save_diffusers_folder(model, tmp_path / kind))
    capfd.readouterr()
    with library_logs() as logs:
        loaded = load_model(folder, kind=kind)
    out, err = capfd.readouterr()
    said = logs.getvalue() + out + err
    assert not any(word in said for word in NOISE), said
    for key, value in PUBLISHED_SWITCHES.items():
        assert loaded.unet.config[key] == value
    a = sample(model, _cond(), _cams(), steps=2, seed=1, image_size=SIZE)
    b = sample(loaded, _cond(), _cams(), steps=2, seed=1, image_size=SIZE)
    assert torch.equal(a.images, b.images)


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"use_linear_in_transformer": False}, "use_linear_in_transformer"),
        ({"use_spatial_transformer": False}, "use_spatial_transformer"),
        # legacy LDM heads are ch // (ch // 24) = 32 wide at the 64-channel level, not 24
        ({"legacy": True, "num_head_channels": 24}, "legacy"),
        ({"use_scale_shift_norm": True}, "use_scale_shift_norm"),
    ],
)
def test_unsupported_unet_layouts_are_refused_naming_the_key(overrides, key, tiny, tmp_path):
    folder = _published_layout(save_diffusers_folder(tiny["imagedream"], tmp_path / "m"), **overrides)
    with pytest.raises(InputError, match=key) as info:
        load_model(folder)
    message = str(info.value)
    assert "\n" not in message and "not supported" in message and "download it again" not in message


def test_legacy_is_accepted_where_it_changes_nothing(tiny, tmp_path):
    # num_head_channels=16 divides every attention width (64) of the tiny UNet: legacy heads are 16 wide too
    model = tiny["mvdream"]
    folder = _published_layout(save_diffusers_folder(model, tmp_path / "m"), legacy=True)
    loaded = load_model(folder)
    for k, v in model.unet.state_dict().items():
        assert torch.equal(loaded.unet.state_dict()[k], v), k
    # and the full-size SD-2.1 layout (widths 320..1280, 64-wide heads) is the same under legacy
    with torch.device("meta"):
        MultiViewUNetModel(legacy=True, use_checkpoint=True)


# --- the light path -----------------------------------------------------------------------------
COMPONENTS = {
    "mvdream": {"MultiViewUNetModel", "AutoencoderKL", "CLIPTextModel"},
    "imagedream": {"MultiViewUNetModel", "AutoencoderKL", "CLIPTextModel", "CLIPVisionModel"},
    "zero123": {"UNet2DConditionModel", "AutoencoderKL", "CLIPVisionModelWithProjection", "CLIPCameraProjection"},
}


@pytest.fixture
def built(monkeypatch):
    """Records, for every component class constructed, whether its parameters were all on the
    ``meta`` device when its constructor returned (the light path) or real (built, maybe randomly
    initialised, then overwritten)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import (
        CLIPTextModel,
        CLIPVisionModel,
        CLIPVisionModelWithProjection,
    )

    from microdreamer_core.diffusion.models import CLIPCameraProjection

    seen: list[tuple[str, bool]] = []
    for cls in (MultiViewUNetModel, UNet2DConditionModel, AutoencoderKL, CLIPTextModel, CLIPVisionModel,
                CLIPVisionModelWithProjection, CLIPCameraProjection):
        original = cls.__init__

        def init(self, *args, _original=original, _cls=cls, **kwargs):
            _original(self, *args, **kwargs)
            if type(self) is _cls:
                seen.append((_cls.__name__, all(p.device.type == "meta" for p in self.parameters())))

        monkeypatch.setattr(cls, "__init__", functools.wraps(original)(init))
    return seen


def _components(model):
    names = ["unet", "vae", "text_encoder", "image_encoder", "camera_projection"]
    return {n: getattr(model, n) for n in names if getattr(model, n, None) is not None}


@pytest.mark.parametrize("kind", ["mvdream", "imagedream", "zero123"])
def test_every_component_loads_on_meta_exactly(kind, tiny, tmp_path, built, capfd):
    model = tiny[kind]
    folder = save_diffusers_folder(model, tmp_path / kind)
    built.clear()
    capfd.readouterr()
    with library_logs() as logs:
        loaded = load_model(folder, kind=kind)
    said = logs.getvalue() + "".join(capfd.readouterr())
    assert not any(word in said for word in NOISE), said
    assert COMPONENTS[kind] <= {name for name, _ in built}  # (transformers may build inner models too)
    assert all(on_meta for _, on_meta in built), f"built with real (random) weights first: {built}"
    # every weight is the saved one, bit for bit, in the CPU default dtype
    for name, part in _components(model).items():
        got = _components(loaded)[name].state_dict()
        assert got.keys() == part.state_dict().keys(), name
        for k, v in part.state_dict().items():
            assert got[k].dtype == torch.float32 and got[k].device.type == "cpu", (name, k, got[k].dtype)
            assert torch.equal(got[k], v), (name, k)


@pytest.mark.parametrize("dtype", [None, torch.bfloat16])
def test_fp16_folder_loads_in_the_chosen_dtype(dtype, tmp_path, built):
    """The published folders hold fp16 weights: CPU loads give fp32 unless a dtype is chosen, and
    the values are the saved ones converted (no second rounding through another dtype)."""
    saved = build_random_model("imagedream", "tiny", seed=4, dtype=torch.float16)
    folder = save_diffusers_folder(saved, tmp_path / "fp16")
    built.clear()
    loaded = load_model(folder, dtype=dtype)
    want = dtype or torch.float32
    assert all(on_meta for _, on_meta in built), built
    for name, part in _components(saved).items():
        got = _components(loaded)[name].state_dict()
        for k, v in part.state_dict().items():
            if v.is_floating_point():
                assert got[k].dtype == want, (name, k, got[k].dtype)
                assert torch.equal(got[k], v.to(want)), (name, k)


@pytest.mark.parametrize("kind", ["mvdream", "imagedream"])
def test_single_file_checkpoint_takes_the_light_path(kind, tiny, tmp_path, built):
    from safetensors.torch import save_file
    from single_file_layout import to_single_file

    model = tiny[kind]
    parts = save_diffusers_folder(model, tmp_path / "parts")
    path = tmp_path / "model.safetensors"
    save_file(to_single_file(model), str(path))
    (tmp_path / "model.yaml").write_text(json.dumps(  # YAML is a superset of JSON
        {"model": {"params": {"unet_config": {"params": {"num_head_channels": 16, "use_spatial_transformer": True} | PUBLISHED_SWITCHES}}}}))
    extra = {"tokenizer": parts / "tokenizer"} | ({"image_encoder": parts / "image_encoder"} if kind == "imagedream" else {})
    built.clear()
    loaded = load_model(path, kind=kind, **extra)
    assert {"MultiViewUNetModel", "AutoencoderKL", "CLIPTextModel"} <= {name for name, _ in built}
    assert all(on_meta for _, on_meta in built), built
    for k, v in model.unet.state_dict().items():
        assert torch.equal(loaded.unet.state_dict()[k], v), k
    assert all(p.device.type == "cpu" and p.dtype == torch.float32 for p in loaded.parameters())
    # a YAML describing another transformer layout is refused before any weight is used
    (tmp_path / "model.yaml").write_text(json.dumps({"model": {"params": {"unet_config": {"params": {"use_linear_in_transformer": False}}}}}))
    with pytest.raises(InputError, match="use_linear_in_transformer"):
        load_model(path, **extra)


def test_pre_zip_torch_checkpoint_still_loads(tiny, tmp_path):
    """.pt files are memory-mapped; a pickle older than the zip format cannot be, and is read whole."""
    from single_file_layout import to_single_file

    model = tiny["mvdream"]
    parts = save_diffusers_folder(model, tmp_path / "parts")
    path = tmp_path / "old.pt"
    torch.save({"state_dict": to_single_file(model)}, path, _use_new_zipfile_serialization=False)
    loaded = load_model(path, tokenizer=parts / "tokenizer")
    for k, v in model.unet.state_dict().items():
        assert torch.equal(loaded.unet.state_dict()[k], v), k
