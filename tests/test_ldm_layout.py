"""Round trips through the original SD-2 single-file layouts of ``ldm_layout``: tiny diffusers /
transformers models -> LDM checkpoint dict -> diffusers' own converters -> fresh models, with
bit-identical outputs."""

from __future__ import annotations

import pytest
import torch
from diffusers import AutoencoderKL
from diffusers.loaders.single_file_utils import (
    convert_ldm_vae_checkpoint,
    convert_open_clip_checkpoint,
)
from ldm_layout import clip_text_to_open_clip, vae_to_ldm
from torch import nn
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

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
    return CLIPTextConfig(vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                          num_attention_heads=4, max_position_embeddings=77, hidden_act="gelu",
                          projection_dim=32, bos_token_id=0, eos_token_id=1)


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
