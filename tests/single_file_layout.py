"""Write tiny models as ORIGINAL single-file MVDream / ImageDream checkpoints (the LDM layout of
``sd-v2.1-base-4view(-ipmv).pt``), so tests can load them back through the public loader, which
reads them with diffusers' own LDM converters.

* UNet: ``model.diffusion_model.`` + our UNet's names (they are the authors' names already);
* VAE: ``first_stage_model.`` in the CompVis layout (``encoder.down.{i}.block.{j}``,
  ``mid.attn_1.q`` as 1x1 convs, ``decoder.up`` in reverse order, ``nin_shortcut``, ``norm_out``);
* text: ``cond_stage_model.model.`` OpenCLIP tower (fused ``in_proj``, ``ln_1``, ``c_fc`` ...) with
  one extra trailing resblock, as SD-2 conditions on the penultimate layer.
"""

from __future__ import annotations

import re

import torch
from torch import Tensor

_RESNET = {"conv_shortcut": "nin_shortcut"}
_ATTN = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}


def vae_to_ldm(sd: dict[str, Tensor], num_up_blocks: int, prefix: str = "first_stage_model.") -> dict[str, Tensor]:
    """A diffusers ``AutoencoderKL`` state dict in the CompVis/LDM layout."""
    out: dict[str, Tensor] = {}
    for key, value in sd.items():
        k = key.replace("conv_norm_out", "norm_out")
        k = re.sub(r"encoder\.down_blocks\.(\d+)\.resnets\.(\d+)", r"encoder.down.\1.block.\2", k)
        k = re.sub(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0", r"encoder.down.\1.downsample", k)
        k = re.sub(r"decoder\.up_blocks\.(\d+)", lambda m: f"decoder.UP.{num_up_blocks - 1 - int(m.group(1))}", k)
        k = re.sub(r"decoder\.UP\.(\d+)\.resnets\.(\d+)", r"decoder.up.\1.block.\2", k)
        k = re.sub(r"decoder\.UP\.(\d+)\.upsamplers\.0", r"decoder.up.\1.upsample", k)
        k = re.sub(r"mid_block\.resnets\.(\d+)", lambda m: f"mid.block_{int(m.group(1)) + 1}", k)
        if "mid_block.attentions.0." in k:
            k = k.replace("mid_block.attentions.0.", "mid.attn_1.")
            for new, old in _ATTN.items():
                k = k.replace(f"attn_1.{new}.", f"attn_1.{old}.")
            if value.ndim == 2:
                value = value[:, :, None, None]
        for new, old in _RESNET.items():
            k = k.replace(new, old)
        out[prefix + k] = value
    return out


def clip_text_to_open_clip(sd: dict[str, Tensor], prefix: str = "cond_stage_model.model.", seed: int = 0) -> dict[str, Tensor]:
    """A transformers ``CLIPTextModel`` state dict as SD-2's OpenCLIP text tower, plus one extra
    (random) final resblock that the penultimate-layer conditioning never uses."""
    sd = {k if k.startswith(("text_model.", "text_projection")) else "text_model." + k: v for k, v in sd.items()}  # transformers 5 drops the prefix
    out: dict[str, Tensor] = {
        prefix + "token_embedding.weight": sd["text_model.embeddings.token_embedding.weight"],
        prefix + "positional_embedding": sd["text_model.embeddings.position_embedding.weight"],
        prefix + "ln_final.weight": sd["text_model.final_layer_norm.weight"],
        prefix + "ln_final.bias": sd["text_model.final_layer_norm.bias"],
    }
    width = out[prefix + "token_embedding.weight"].shape[1]
    layers = sorted({int(k.split(".")[3]) for k in sd if k.startswith("text_model.encoder.layers.")})
    g = torch.Generator().manual_seed(seed)
    for i in [*layers, len(layers)]:
        src = f"text_model.encoder.layers.{i}."
        dst = f"{prefix}transformer.resblocks.{i}."
        if i == len(layers):  # the extra layer: same shapes as the last real one, random values
            last = f"text_model.encoder.layers.{layers[-1]}."
            block = {k[len(last):]: torch.randn(v.shape, generator=g) * 0.02 for k, v in sd.items() if k.startswith(last)}
        else:
            block = {k[len(src):]: v for k, v in sd.items() if k.startswith(src)}
        for part in ("weight", "bias"):
            out[dst + f"attn.in_proj_{part}"] = torch.cat([block[f"self_attn.{p}_proj.{part}"] for p in "qkv"])
            out[dst + f"attn.out_proj.{part}"] = block[f"self_attn.out_proj.{part}"]
            out[dst + f"ln_1.{part}"] = block[f"layer_norm1.{part}"]
            out[dst + f"ln_2.{part}"] = block[f"layer_norm2.{part}"]
            out[dst + f"mlp.c_fc.{part}"] = block[f"mlp.fc1.{part}"]
            out[dst + f"mlp.c_proj.{part}"] = block[f"mlp.fc2.{part}"]
    out[prefix + "text_projection"] = torch.randn(width, width, generator=g) * 0.02
    return out


def to_single_file(model) -> dict[str, Tensor]:
    """The whole original checkpoint of a tiny MVDream / ImageDream model."""
    sd = {"model.diffusion_model." + k: v for k, v in model.unet.state_dict().items()}
    sd |= vae_to_ldm(model.vae.state_dict(), len(model.vae.config.block_out_channels))
    sd |= clip_text_to_open_clip(model.text_encoder.state_dict())
    return {k: v.detach().contiguous().clone() for k, v in sd.items()}
