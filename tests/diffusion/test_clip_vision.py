"""CLIP image encoders as ComfyUI users keep them (one .safetensors in models/clip_vision): both
layouts ComfyUI reads load into transformers' CLIPVisionModel exactly, the architecture comes
from the shapes (the heads from the known towers), and an original ImageDream checkpoint takes
such a file as its image encoder."""

from __future__ import annotations

import copy

import pytest
import torch
import yaml
from safetensors.torch import save_file
from single_file_layout import to_clip_vision_file, to_single_file
from tiny_diffusion import SIZE, cameras, condition, tiny_encoder

from microdreamer_core.diffusion.clip_vision import (
    clip_image_processor,
    clip_vision_config,
    load_clip_vision_file,
    to_transformers_layout,
)
from microdreamer_core.diffusion.folders import save_diffusers_folder
from microdreamer_core.diffusion.loading import load_model
from microdreamer_core.diffusion.model_files import clip_vision_width
from microdreamer_core.diffusion.sampling import sample
from microdreamer_core.errors import InputError

# ComfyUI's clip_vision_config_{h,vitl}.json and OpenCLIP's ViT-B-16.json: the towers users have
TOWERS = {
    "ViT-H/14": dict(width=1280, layers=32, mlp=5120, patch=14, image=224, heads=16, act="gelu"),
    "ViT-bigG/14": dict(width=1664, layers=48, mlp=8192, patch=14, image=224, heads=16, act="gelu"),
    "OpenAI ViT-L/14-336": dict(width=1024, layers=24, mlp=4096, patch=14, image=336, heads=16, act="quick_gelu"),
    "ViT-B/16": dict(width=768, layers=12, mlp=3072, patch=16, image=224, heads=12, act="quick_gelu"),
}


@pytest.mark.parametrize("layout", ["transformers", "open_clip"])
def test_clip_vision_file_loads_exactly(layout, tmp_path):
    encoder = tiny_encoder(128)
    path = tmp_path / "CLIP-ViT-H-14-laion2B-s32B-b79K.safetensors"
    save_file(to_clip_vision_file(encoder, layout), str(path))
    if layout == "open_clip":  # the names ComfyUI's clip_vision loader converts from
        names = set(to_clip_vision_file(encoder, layout))
        assert {"visual.conv1.weight", "visual.ln_pre.weight", "visual.proj"} <= names
        assert "visual.transformer.resblocks.1.attn.in_proj_weight" in names
    assert clip_vision_width(path) == 128
    processor, loaded = load_clip_vision_file(path)
    assert loaded.config.num_attention_heads == 2 and loaded.config.image_size == 32
    assert loaded.config.patch_size == 8 and loaded.config.num_hidden_layers == 2
    assert processor.crop_size["height"] == 32 and processor.size["shortest_edge"] == 32
    expected = encoder.state_dict()
    assert set(loaded.state_dict()) == set(expected)
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in expected.items())
    pixels = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        a = encoder(pixels, output_hidden_states=True).hidden_states[-2]
        b = loaded(pixels, output_hidden_states=True).hidden_states[-2]
    assert torch.equal(a, b)


@pytest.mark.parametrize("tower", TOWERS)
def test_config_comes_from_the_shapes_and_the_known_heads(tower):
    t = TOWERS[tower]
    meta = {"device": "meta"}
    sd = {
        "embeddings.patch_embedding.weight": torch.empty(t["width"], 3, t["patch"], t["patch"], **meta),
        "embeddings.position_embedding.weight": torch.empty((t["image"] // t["patch"]) ** 2 + 1, t["width"], **meta),
    }
    for i in range(t["layers"]):
        sd[f"encoder.layers.{i}.mlp.fc1.weight"] = torch.empty(t["mlp"], t["width"], **meta)
    cfg = clip_vision_config(sd)
    got = (cfg.hidden_size, cfg.num_hidden_layers, cfg.intermediate_size, cfg.patch_size, cfg.image_size)
    assert got == (t["width"], t["layers"], t["mlp"], t["patch"], t["image"])
    assert (cfg.num_attention_heads, cfg.hidden_act) == (t["heads"], t["act"])


def test_only_the_vision_tower_is_kept():
    """The projection (OpenCLIP's ``proj``, transformers' ``visual_projection``) and a text tower
    are not part of what ImageDream runs."""
    assert set(to_transformers_layout({"visual.ln_pre.weight": torch.ones(4), "visual.proj": torch.ones(4, 2)})) == {
        "pre_layrnorm.weight"
    }
    sd = {"vision_model.post_layernorm.bias": torch.ones(4), "visual_projection.weight": torch.ones(2, 4)}
    assert set(to_transformers_layout(sd | {"text_model.final_layer_norm.bias": torch.ones(4)})) == {
        "post_layernorm.bias"
    }


def test_wrong_files_are_refused(tmp_path):
    save_file({"encoder.conv_in.weight": torch.zeros(4, 3, 3, 3)}, str(tmp_path / "vae.safetensors"))
    with pytest.raises(InputError, match="holds no CLIP vision tower"):
        load_clip_vision_file(tmp_path / "vae.safetensors")
    assert clip_vision_width(tmp_path / "vae.safetensors") is None
    sd = to_clip_vision_file(tiny_encoder(), "transformers")
    sd["vision_model.embeddings.position_embedding.weight"] = torch.zeros(7, 32)
    save_file(sd, str(tmp_path / "odd.safetensors"))
    with pytest.raises(InputError, match="not a square grid"):
        load_clip_vision_file(tmp_path / "odd.safetensors")
    torch.save({}, tmp_path / "encoder.pt")
    with pytest.raises(InputError, match="must be .safetensors"):
        load_clip_vision_file(tmp_path / "encoder.pt")


def test_imagedream_checkpoint_takes_a_clip_vision_file(models, tmp_path):
    """An original ImageDream checkpoint + a models/clip_vision file: the same model as the one
    saved, computing the same; an encoder of another width is refused naming the right file."""
    model = copy.deepcopy(models["imagedream"])
    model.image_encoder = tiny_encoder(32, seed=4)  # ImageDream's UNet takes 32-wide features here
    model.image_processor = clip_image_processor(32)
    parts = save_diffusers_folder(model, tmp_path / "parts")
    ckpt = tmp_path / "sd-v2.1-base-4view-ipmv.safetensors"
    save_file(to_single_file(model), str(ckpt))
    params = {"num_head_channels": model.unet.config.num_head_channels}
    ckpt.with_suffix(".yaml").write_text(yaml.safe_dump({"model": {"params": {"unet_config": {"params": params}}}}))
    encoder_file = tmp_path / "CLIP-ViT-H-14-laion2B-s32B-b79K.safetensors"
    save_file(to_clip_vision_file(model.image_encoder), str(encoder_file))
    loaded = load_model(ckpt, kind="imagedream", tokenizer=parts / "tokenizer", image_encoder=encoder_file)
    for k, v in model.image_encoder.state_dict().items():
        assert torch.equal(loaded.image_encoder.state_dict()[k], v), k
    cond, cams = condition(), cameras()
    a = sample(model, cond, cams, steps=2, seed=2, image_size=SIZE)
    b = sample(loaded, cond, cams, steps=2, seed=2, image_size=SIZE)
    assert torch.equal(a.images, b.images)

    save_file(to_clip_vision_file(tiny_encoder(64)), str(tmp_path / "clip_vision_l.safetensors"))
    with pytest.raises(InputError, match="64 wide but .* takes 32-wide .*CLIP-ViT-H-14-laion2B-s32B-b79K"):
        load_model(ckpt, tokenizer=parts / "tokenizer", image_encoder=tmp_path / "clip_vision_l.safetensors")
