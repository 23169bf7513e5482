"""Write tiny models as ORIGINAL single-file checkpoints, so tests can load them back through the
public loader, which reads them with diffusers' own LDM converters:

* MVDream / ImageDream (the LDM layout of ``sd-v2.1-base-4view(-ipmv).pt``): UNet under
  ``model.diffusion_model.`` with our UNet's names (they are the authors' names already); VAE and
  OpenCLIP text tower (with its extra, unused final layer) via :mod:`ldm_layout`;
* Stable Zero123 (``stable_zero123.ckpt``): the SD-1.x UNet, the VAE, OpenAI CLIP's image tower
  and ``cc_projection``, plus what the real training checkpoint carries beside them (an EMA copy of
  the UNet, the schedule buffers, the rest of CLIP's text tower) and the loader must ignore.

The inverse mappings of :mod:`ldm_layout` are checked against diffusers' converters (and OpenAI
CLIP's architecture) in ``tests/diffusion/test_single_file.py`` and ``test_single_file_zero123.py``.
:func:`to_clip_vision_file` writes an image encoder as the file ComfyUI users keep in models/clip_vision.
"""

from __future__ import annotations

import torch
from ldm_layout import clip_text_to_open_clip, clip_vision_to_openai, unet2d_to_ldm, vae_to_ldm
from torch import Tensor


def to_single_file(model) -> dict[str, Tensor]:
    """The whole original checkpoint of a tiny MVDream / ImageDream model."""
    sd = {"model.diffusion_model." + k: v for k, v in model.unet.state_dict().items()}
    sd |= vae_to_ldm(model.vae.state_dict())
    sd |= clip_text_to_open_clip(model.text_encoder.state_dict())
    return {k: v.detach().contiguous().clone() for k, v in sd.items()}


def to_zero123_single_file(model, extras: bool = True, seed: int = 0) -> dict[str, Tensor]:
    """The whole ``stable_zero123.ckpt`` state dict of a tiny Stable Zero123 model. With ``extras``
    it also holds, with random values (generator seeded with ``seed``) so that using them would show:
    the EMA copy of the UNet as LDM stores it (``model_ema.`` + the UNet key without dots, plus
    ``decay`` / ``num_updates``), the diffusion schedule buffers and the text-side leftovers of
    OpenAI CLIP (the authors delete only its text transformer)."""
    unet = unet2d_to_ldm(model.unet.state_dict(), model.unet.config.layers_per_block)
    sd = unet | vae_to_ldm(model.vae.state_dict()) | clip_vision_to_openai(model.image_encoder.state_dict())
    proj = model.camera_projection.proj
    sd |= {"cc_projection.weight": proj.weight, "cc_projection.bias": proj.bias}
    if extras:
        g = torch.Generator().manual_seed(seed)
        sd |= {
            "model_ema." + k.removeprefix("model.").replace(".", ""): torch.randn(v.shape, generator=g)
            for k, v in unet.items()
        }
        sd |= {"model_ema.decay": torch.tensor(0.9999), "model_ema.num_updates": torch.tensor(1000)}
        sd |= {name: torch.rand(1000, generator=g) for name in ("betas", "alphas_cumprod", "alphas_cumprod_prev")}
        width = model.image_encoder.config.hidden_size
        text = "cond_stage_model.model."
        sd |= {
            text + "token_embedding.weight": torch.randn(300, width, generator=g),
            text + "positional_embedding": torch.randn(77, width, generator=g),
            text + "ln_final.weight": torch.ones(width),
            text + "ln_final.bias": torch.zeros(width),
            text + "text_projection": torch.randn(width, model.image_encoder.config.projection_dim, generator=g),
            text + "logit_scale": torch.tensor(4.6052),
        }
    return {k: v.detach().contiguous().clone() for k, v in sd.items()}


def to_clip_vision_file(encoder, layout: str = "transformers", projection_dim: int = 16) -> dict[str, Tensor]:
    """A transformers ``CLIPVisionModel`` as the single file ComfyUI users keep in models/clip_vision.

    ``transformers``: IP-Adapter's ``image_encoder/model.safetensors`` (what
    ``CLIP-ViT-H-14-laion2B-s32B-b79K.safetensors`` is): ``vision_model.*`` plus a
    ``visual_projection.weight`` (random here; ImageDream does not use it) and the
    ``position_ids`` buffer older transformers saved. ``open_clip``: OpenCLIP's ``visual.*`` names
    (fused ``attn.in_proj_*``, ``conv1``, ``ln_pre``/``ln_post``, ``proj`` as (width, embed_dim)).
    """
    sd = {k.removeprefix("vision_model."): v for k, v in encoder.state_dict().items()}
    width = sd["embeddings.class_embedding"].shape[0]
    proj = torch.randn(projection_dim, width, generator=torch.Generator().manual_seed(7))
    if layout == "transformers":
        out = {"vision_model." + k: v for k, v in sd.items()} | {"visual_projection.weight": proj}
        out["vision_model.embeddings.position_ids"] = torch.arange(sd["embeddings.position_embedding.weight"].shape[0])[
            None
        ]
        return {k: v.detach().contiguous().clone() for k, v in out.items()}
    names = {
        "embeddings.class_embedding": "class_embedding",
        "embeddings.patch_embedding.weight": "conv1.weight",
        "embeddings.position_embedding.weight": "positional_embedding",
        "pre_layrnorm.weight": "ln_pre.weight",
        "pre_layrnorm.bias": "ln_pre.bias",
        "post_layernorm.weight": "ln_post.weight",
        "post_layernorm.bias": "ln_post.bias",
    }
    block = {
        "layer_norm1": "ln_1",
        "layer_norm2": "ln_2",
        "mlp.fc1": "mlp.c_fc",
        "mlp.fc2": "mlp.c_proj",
        "self_attn.out_proj": "attn.out_proj",
    }
    out = {"visual." + new: sd[old] for old, new in names.items()} | {"visual.proj": proj.T}
    layers = len({k.split(".")[2] for k in sd if k.startswith("encoder.layers.")})
    for i in range(layers):
        src, dst = f"encoder.layers.{i}.", f"visual.transformer.resblocks.{i}."
        for part in ("weight", "bias"):
            out[dst + f"attn.in_proj_{part}"] = torch.cat([sd[src + f"self_attn.{p}_proj.{part}"] for p in "qkv"])
            for old, new in block.items():
                out[dst + f"{new}.{part}"] = sd[src + f"{old}.{part}"]
    return {k: v.detach().contiguous().clone() for k, v in out.items()}
