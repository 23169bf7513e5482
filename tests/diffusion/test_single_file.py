"""Original single-file MVDream / ImageDream checkpoints: tiny models written in the authors' layout
(tests/single_file_layout.py) load back exactly and on the light path, wrong files are refused naming
what was found, and the parts a checkpoint lacks download only the files they load. The LDM layouts
those checkpoints are written in round-trip through diffusers' own converters bit for bit."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from diffusers import AutoencoderKL
from diffusers.loaders.single_file_utils import (
    convert_ldm_vae_checkpoint,
    convert_open_clip_checkpoint,
)
from fake_hub import FakeHub
from ldm_layout import clip_text_to_open_clip, vae_to_ldm
from safetensors.torch import save_file
from single_file_layout import to_single_file
from tiny_diffusion import PUBLISHED_SWITCHES, SIZE, cameras, condition
from torch import nn
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

from microdreamer_core.diffusion.folders import save_diffusers_folder
from microdreamer_core.diffusion.loading import load_model
from microdreamer_core.diffusion.sampling import sample
from microdreamer_core.diffusion.single_file import CLIP_H_HUB_ID, SD21_HUB_ID, _resolve_source
from microdreamer_core.errors import InputError


@pytest.mark.parametrize("kind", ["mvdream", "imagedream"])
@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_single_file_checkpoint_loads_exactly(kind, suffix, models, tmp_path):
    """A tiny model written as the authors' single file (UNet, LDM VAE, OpenCLIP text tower; plus
    the YAML they ship) loads through the public loader and computes exactly the same."""
    model = models[kind]
    folder = save_diffusers_folder(model, tmp_path / "parts")  # tokenizer / image encoder sources
    sd = to_single_file(model)
    path = tmp_path / f"sd-v2.1-base-4view{'-ipmv' if kind == 'imagedream' else ''}{suffix}"
    if suffix == ".pt":
        torch.save({"state_dict": sd}, path)
    else:
        save_file(sd, str(path))
    params = {"num_head_channels": model.unet.config.num_head_channels, "camera_dim": 16}
    path.with_suffix(".yaml").write_text(yaml.safe_dump({"model": {"params": {"unet_config": {"params": params}}}}))
    extra = {"tokenizer": folder / "tokenizer"} | (
        {"image_encoder": folder / "image_encoder"} if kind == "imagedream" else {}
    )
    loaded = load_model(path, kind=kind, **extra)
    assert type(loaded) is type(model)
    cond, cams = condition(), cameras()
    a = sample(model, cond, cams, steps=3, seed=2, image_size=SIZE)
    b = sample(loaded, cond, cams, steps=3, seed=2, image_size=SIZE)
    assert torch.equal(a.images, b.images)
    # the text tower really came from the file (23-of-24 style: the extra layer was dropped)
    assert loaded.text_encoder.config.num_hidden_layers == model.text_encoder.config.num_hidden_layers


def test_single_file_errors_name_what_was_found(models, tmp_path):
    sd = to_single_file(models["mvdream"])
    plain = {k: v for k, v in sd.items() if "camera_embed" not in k}
    save_file(plain, str(tmp_path / "sd21.safetensors"))
    with pytest.raises(InputError, match="plain Stable Diffusion checkpoint"):
        load_model(tmp_path / "sd21.safetensors")
    save_file({"cc_projection.weight": torch.zeros(2, 2)}, str(tmp_path / "stable_zero123.safetensors"))
    with pytest.raises(InputError, match="original Stable Zero123 checkpoint"):
        load_model(tmp_path / "stable_zero123.safetensors")
    save_file(
        {k[len("first_stage_model.") :]: v for k, v in sd.items() if k.startswith("first_stage_model.")},
        str(tmp_path / "vae.safetensors"),
    )
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


@pytest.mark.parametrize("kind", ["mvdream", "imagedream"])
def test_single_file_checkpoint_takes_the_light_path(kind, models, tmp_path, built):
    model = models[kind]
    parts = save_diffusers_folder(model, tmp_path / "parts")
    path = tmp_path / "model.safetensors"
    save_file(to_single_file(model), str(path))
    (tmp_path / "model.yaml").write_text(
        json.dumps(  # YAML is a superset of JSON
            {
                "model": {
                    "params": {
                        "unet_config": {
                            "params": {"num_head_channels": 16, "use_spatial_transformer": True} | PUBLISHED_SWITCHES
                        }
                    }
                }
            }
        )
    )
    extra = {"tokenizer": parts / "tokenizer"} | (
        {"image_encoder": parts / "image_encoder"} if kind == "imagedream" else {}
    )
    built.clear()
    loaded = load_model(path, kind=kind, **extra)
    assert {"MultiViewUNetModel", "AutoencoderKL", "CLIPTextModel"} <= {name for name, _ in built}
    assert all(on_meta for _, on_meta in built), built
    for k, v in model.unet.state_dict().items():
        assert torch.equal(loaded.unet.state_dict()[k], v), k
    assert all(p.device.type == "cpu" and p.dtype == torch.float32 for p in loaded.parameters())
    # a YAML describing another transformer layout is refused before any weight is used
    (tmp_path / "model.yaml").write_text(
        json.dumps({"model": {"params": {"unet_config": {"params": {"use_linear_in_transformer": False}}}}})
    )
    with pytest.raises(InputError, match="use_linear_in_transformer"):
        load_model(path, **extra)


def test_pre_zip_torch_checkpoint_still_loads(models, tmp_path):
    """.pt files are memory-mapped; a pickle older than the zip format cannot be, and is read whole."""
    model = models["mvdream"]
    parts = save_diffusers_folder(model, tmp_path / "parts")
    path = tmp_path / "old.pt"
    torch.save({"state_dict": to_single_file(model)}, path, _use_new_zipfile_serialization=False)
    loaded = load_model(path, tokenizer=parts / "tokenizer")
    for k, v in model.unet.state_dict().items():
        assert torch.equal(loaded.unet.state_dict()[k], v), k


def test_single_file_components_download_only_the_files_they_load(tmp_path, monkeypatch):
    """A single-file checkpoint's tokenizer, text encoder and image encoder come from repos that
    also hold .bin, fp16 and OpenCLIP copies of the same weights: only the loaded files come down."""
    sd21 = {
        "model_index.json": b"{}",
        "unet/diffusion_pytorch_model.safetensors": b"x" * 64,
        "tokenizer/vocab.json": b"{}",
        "tokenizer/merges.txt": b"#",
        "tokenizer/tokenizer_config.json": b"{}",
        "text_encoder/config.json": b"{}",
        "text_encoder/model.safetensors": b"x" * 64,
        "text_encoder/pytorch_model.bin": b"x" * 64,
        "text_encoder/model.fp16.safetensors": b"x" * 64,
    }
    hub = FakeHub(sd21).install(monkeypatch)
    tok = _resolve_source(None, SD21_HUB_ID, "tokenizer", tmp_path, "the tokenizer")
    te = _resolve_source(None, SD21_HUB_ID, "text_encoder", tmp_path, "the text encoder")
    assert sorted(p.name for p in tok.iterdir()) == ["merges.txt", "tokenizer_config.json", "vocab.json"]
    assert sorted(p.name for p in te.iterdir()) == ["config.json", "model.safetensors"]
    assert not (tmp_path / SD21_HUB_ID.replace("/", "--") / "unet").exists()
    assert all(p is not None for p in hub.downloads())

    clip = {
        "config.json": b"{}",
        "preprocessor_config.json": b"{}",
        "model.safetensors": b"x" * 64,
        "pytorch_model.bin": b"x" * 64,
        "open_clip_pytorch_model.bin": b"x" * 64,
        "open_clip_model.safetensors": b"x" * 64,
    }
    FakeHub(clip).install(monkeypatch)
    enc = _resolve_source(None, CLIP_H_HUB_ID, None, tmp_path, "the image encoder")
    assert sorted(p.name for p in enc.iterdir()) == ["config.json", "model.safetensors", "preprocessor_config.json"]
    with pytest.raises(InputError, match="owner/name"):  # a value that is neither a local folder nor a repo id
        _resolve_source("missing/../folder/x", SD21_HUB_ID, "tokenizer", tmp_path, "the tokenizer")


# --- the LDM layouts of tests/ldm_layout.py against diffusers' converters ---------------------------
TEXT = "cond_stage_model.model."


def _perturbed(model: nn.Module, seed: int) -> nn.Module:
    """``model`` with every parameter nudged, so that norms are not all ones/zeros and a swapped
    or dropped weight always changes the outputs."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    return model.eval()


def _vae(blocks: tuple[int, ...], layers_per_block: int) -> AutoencoderKL:
    torch.manual_seed(0)
    return AutoencoderKL(
        down_block_types=("DownEncoderBlock2D",) * len(blocks),
        up_block_types=("UpDecoderBlock2D",) * len(blocks),
        block_out_channels=blocks,
        layers_per_block=layers_per_block,
        norm_num_groups=32,
        latent_channels=4,
    )


@pytest.mark.parametrize(("blocks", "layers_per_block"), [((32, 64), 1), ((32, 32, 64), 2)])
def test_vae_round_trip(blocks: tuple[int, ...], layers_per_block: int) -> None:
    vae = _perturbed(_vae(blocks, layers_per_block), seed=1)
    ldm = vae_to_ldm(vae.state_dict())

    assert all(k.startswith("first_stage_model.") for k in ldm)
    last = len(blocks) - 1
    for name in (
        "encoder.down.0.block.0.norm1.weight",
        "encoder.down.0.downsample.conv.weight",
        f"encoder.down.{last}.block.0.nin_shortcut.weight",  # 32 -> 64 channels
        "encoder.mid.block_2.conv2.weight",
        "encoder.norm_out.weight",
        f"decoder.up.{last}.block.0.conv1.weight",
        f"decoder.up.{last}.upsample.conv.weight",
        f"decoder.up.{last - 1}.block.0.nin_shortcut.weight",  # 64 -> 32 channels
        "decoder.mid.attn_1.norm.weight",
        "quant_conv.weight",
        "post_quant_conv.bias",
    ):
        assert "first_stage_model." + name in ldm, name
    assert not any("upsample" in k for k in ldm if k.startswith("first_stage_model.decoder.up.0."))
    for coder in ("encoder", "decoder"):
        for part in ("q", "k", "v", "proj_out"):
            assert ldm[f"first_stage_model.{coder}.mid.attn_1.{part}.weight"].shape == (64, 64, 1, 1)

    fresh = _vae(blocks, layers_per_block)
    fresh.load_state_dict(convert_ldm_vae_checkpoint(ldm, fresh.config), strict=True)
    x = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert torch.equal(fresh(x).sample, vae(x).sample)


def _text_config() -> CLIPTextConfig:
    return CLIPTextConfig(
        vocab_size=300,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=77,
        hidden_act="gelu",
        projection_dim=32,
        bos_token_id=0,
        eos_token_id=1,
    )


def _from_open_clip(model: nn.Module, ckpt: dict[str, torch.Tensor], prefix: str = TEXT) -> set[str]:
    """Load ``ckpt`` into ``model`` (strictly) through diffusers' converter; returns the converted
    keys (without ``text_model.``) the model has no place for, which a loader has to drop."""
    converted = convert_open_clip_checkpoint(model, ckpt, prefix=prefix)
    expected = model.state_dict()
    if not any(k.startswith("text_model.") for k in expected):  # flattened CLIPTextModel (transformers >= 5.6)
        converted = {k.removeprefix("text_model."): v for k, v in converted.items()}
    for key in expected:  # ``position_ids`` is a persistent buffer in older transformers
        if key.endswith("position_ids"):
            converted.setdefault(key, expected[key])
    leftovers = {k.removeprefix("text_model.") for k in set(converted) - set(expected)}
    model.load_state_dict({k: v for k, v in converted.items() if k in expected}, strict=True)
    return leftovers


@pytest.mark.parametrize("extra_layer", [True, False])
def test_clip_text_round_trip(extra_layer: bool) -> None:
    torch.manual_seed(0)
    text = _perturbed(CLIPTextModel(_text_config()), seed=3)
    ckpt = clip_text_to_open_clip(text.state_dict(), extra_layer=extra_layer)

    blocks = {int(k.split(".")[4]) for k in ckpt if k.startswith(TEXT + "transformer.resblocks.")}
    assert blocks == set(range(3 if extra_layer else 2))
    assert ckpt[TEXT + "transformer.resblocks.0.attn.in_proj_weight"].shape == (96, 32)
    assert ckpt[TEXT + "positional_embedding"].shape == (77, 32)
    assert torch.equal(ckpt[TEXT + "text_projection"], torch.eye(32))
    if extra_layer:  # deterministic
        again = clip_text_to_open_clip(text.state_dict())
        assert all(torch.equal(v, again[k]) for k, v in ckpt.items())

    torch.manual_seed(1)
    fresh = CLIPTextModel(_text_config()).eval()
    leftovers = _from_open_clip(fresh, ckpt)
    # diffusers only ignores SD-2's real extra layer (hard-coded ``resblocks.23``) and drops ``text_projection``
    assert all(k.startswith("encoder.layers.2.") for k in leftovers)
    assert len(leftovers) == (16 if extra_layer else 0)  # the extra layer

    ids = torch.randint(0, 300, (2, 77), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        a, b = text(ids, output_hidden_states=True), fresh(ids, output_hidden_states=True)
    assert torch.equal(a.last_hidden_state, b.last_hidden_state)
    assert all(torch.equal(x, y) for x, y in zip(a.hidden_states, b.hidden_states, strict=True))


def test_clip_text_projection_is_transposed() -> None:
    """OpenCLIP stores ``text_projection`` as (width, embed_dim). diffusers ignores it under SD-2's
    prefix, so check the orientation under the SDXL-refiner prefix, where it is converted."""
    cfg = _text_config()
    cfg.projection_dim = 16
    torch.manual_seed(0)
    text = _perturbed(CLIPTextModelWithProjection(cfg), seed=5)
    prefix = "conditioner.embedders.0.model."
    ckpt = clip_text_to_open_clip(text.state_dict(), prefix=prefix)
    assert ckpt[prefix + "text_projection"].shape == (32, 16)

    torch.manual_seed(1)
    fresh = CLIPTextModelWithProjection(cfg).eval()
    assert all(k.startswith("encoder.layers.2.") for k in _from_open_clip(fresh, ckpt, prefix))
    ids = torch.randint(0, 300, (2, 77), generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        assert torch.equal(fresh(ids).text_embeds, text(ids).text_embeds)
