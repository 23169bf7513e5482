"""With a single-file checkpoint in place, loading needs no network at all: MVDream (its text
tower inside) and ImageDream plus a models/clip_vision file load with every socket refused and
HF_HUB_OFFLINE=1, the tokenizer coming from open_clip_torch's CLIP vocabulary (or ComfyUI's
tokenizer files), and hold exactly the saved weights."""

from __future__ import annotations

import socket

import pytest
import torch
import yaml
from safetensors.torch import save_file
from single_file_layout import to_clip_vision_file, to_single_file
from tiny_diffusion import SIZE, cameras, condition, with_real_tokens

from microdreamer_core.diffusion.loading import load_model
from microdreamer_core.diffusion.sampling import sample
from microdreamer_core.diffusion.tokenizer import open_clip_vocab
from microdreamer_core.errors import InputError

PARTS = ("unet", "vae", "text_encoder", "image_encoder")


@pytest.fixture
def no_network(monkeypatch):
    """Every socket connection refused, the hub client told it is offline."""

    def refuse(*args, **kwargs):
        raise OSError("network access in an offline test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def write_checkpoint(model, folder):
    """``model`` as the authors' single file in ``folder/checkpoints`` (with its YAML) and, for
    ImageDream, its image encoder as ``folder/clip_vision/CLIP-ViT-H-14-laion2B-s32B-b79K.safetensors``."""
    name = "sd-v2.1-base-4view-ipmv" if model.kind == "imagedream" else "sd-v2.1-base-4view"
    ckpt = folder / "checkpoints" / f"{name}.safetensors"
    ckpt.parent.mkdir(parents=True)
    save_file(to_single_file(model), str(ckpt))
    params = {"num_head_channels": model.unet.config.num_head_channels}
    ckpt.with_suffix(".yaml").write_text(yaml.safe_dump({"model": {"params": {"unet_config": {"params": params}}}}))
    if model.kind != "imagedream":
        return ckpt, {}
    encoder = folder / "clip_vision" / "CLIP-ViT-H-14-laion2B-s32B-b79K.safetensors"
    encoder.parent.mkdir()
    save_file(to_clip_vision_file(model.image_encoder), str(encoder))
    return ckpt, {"image_encoder": encoder}


def assert_same_weights(loaded, model) -> None:
    for part in PARTS:
        if hasattr(model, part):
            ours, theirs = getattr(loaded, part).state_dict(), getattr(model, part).state_dict()
            assert set(ours) == set(theirs), part
            assert all(torch.equal(ours[k], v) for k, v in theirs.items()), part


@pytest.mark.parametrize("kind", ["mvdream", "imagedream"])
def test_single_file_loads_with_no_network(kind, models, tmp_path, no_network):
    assert open_clip_vocab() is not None, "open_clip_torch is not installed: pip install -r tests/requirements.txt"
    model = with_real_tokens(models[kind])
    ckpt, sources = write_checkpoint(model, tmp_path)
    loaded = load_model(ckpt, kind=kind, download_dir=tmp_path / "downloads", **sources)
    assert_same_weights(loaded, model)
    assert not (tmp_path / "downloads").exists()
    assert (len(loaded.tokenizer), loaded.tokenizer.pad_token_id, loaded.tokenizer.model_max_length) == (49408, 0, 77)
    model.tokenizer = loaded.tokenizer  # the byte-level stand-in of the random model has no real ids
    cond, cams = condition(), cameras()
    a = sample(model, cond, cams, steps=2, seed=3, image_size=SIZE)
    b = sample(loaded, cond, cams, steps=2, seed=3, image_size=SIZE)
    assert torch.equal(a.images, b.images)


def test_what_the_checkpoint_lacks_is_not_fetched_behind_the_back(models, tmp_path, no_network):
    """The control: the same load without the clip_vision file goes to the hub, and fails here."""
    model = with_real_tokens(models["imagedream"])
    ckpt, _ = write_checkpoint(model, tmp_path)
    with pytest.raises(InputError, match="could not download the OpenCLIP ViT-H/14 image encoder"):
        load_model(ckpt, download_dir=tmp_path / "downloads")


@pytest.mark.comfyui
def test_comfyuis_tokenizer_files_load_with_no_network(models, tmp_path, no_network):
    from comfy_server import provision_comfyui

    comfy = provision_comfyui()  # before the sockets matter: cached by the other ComfyUI tests
    model = with_real_tokens(models["imagedream"])
    ckpt, sources = write_checkpoint(model, tmp_path)
    loaded = load_model(ckpt, tokenizer=comfy / "comfy" / "sd1_tokenizer", download_dir=tmp_path / "dl", **sources)
    assert_same_weights(loaded, model)
    reference = load_model(ckpt, download_dir=tmp_path / "dl", **sources)  # open_clip_torch's vocabulary
    text = "a DSLR photo of a yellow rubber duck!"
    assert loaded.tokenizer(text).input_ids == reference.tokenizer(text).input_ids
