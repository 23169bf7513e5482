"""Diffusers-layout folders: a saved model loads back exactly, and every component takes the light
path (built on ``meta``, weights loaded exactly, straight into the target dtype)."""

from __future__ import annotations

import json

import pytest
import torch
from tiny_diffusion import KINDS, NOISE, SIZE, cameras, condition, library_logs

from microdreamer_core.diffusion.folders import save_diffusers_folder
from microdreamer_core.diffusion.loading import load_model
from microdreamer_core.diffusion.random_models import build_random_model
from microdreamer_core.diffusion.sampling import sample


@pytest.mark.parametrize("kind", KINDS)
def test_diffusers_folder_round_trip_is_exact(kind, models, tmp_path):
    model = models[kind]
    folder = save_diffusers_folder(model, tmp_path / kind)
    index = json.loads((folder / "model_index.json").read_text())
    assert {"unet", "vae", "scheduler"} <= set(index)
    loaded = load_model(folder, kind=kind)
    assert type(loaded) is type(model)
    a = sample(model, condition(), cameras(), steps=3, seed=5, image_size=SIZE)
    b = sample(loaded, condition(), cameras(), steps=3, seed=5, image_size=SIZE)
    assert torch.equal(a.images, b.images)
    assert a.images.shape == (4, SIZE, SIZE, 3) and 0 <= a.images.min() and a.images.max() <= 1


# --- the light path -----------------------------------------------------------------------------
COMPONENTS = {
    "mvdream": {"MultiViewUNetModel", "AutoencoderKL", "CLIPTextModel"},
    "imagedream": {"MultiViewUNetModel", "AutoencoderKL", "CLIPTextModel", "CLIPVisionModel"},
    "zero123": {"UNet2DConditionModel", "AutoencoderKL", "CLIPVisionModelWithProjection", "CLIPCameraProjection"},
}


def _components(model):
    names = ["unet", "vae", "text_encoder", "image_encoder", "camera_projection"]
    return {n: getattr(model, n) for n in names if getattr(model, n, None) is not None}


@pytest.mark.parametrize("kind", ["mvdream", "imagedream", "zero123"])
def test_every_component_loads_on_meta_exactly(kind, models, tmp_path, built, capfd):
    model = models[kind]
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
