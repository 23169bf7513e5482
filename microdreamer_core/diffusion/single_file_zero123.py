"""Original single-file Stable Zero123 checkpoints (``stable_zero123.ckpt``, the file ComfyUI's
Stable Zero123 example loads from ``models/checkpoints``; or the same as ``.safetensors``).

The file is a latent-diffusion (LDM) training checkpoint holding all four parts of the model:

* ``model.diffusion_model.``: an SD-1.x UNet with 8 input channels (noisy latent + latent of the
  input image) and 768-wide cross attention. Its configuration is read from the tensor shapes; the
  head count is not stored: 8, as in the authors' YAML (``num_heads``, read from a YAML beside the
  file when there is one) and ComfyUI. diffusers' own converter renames the weights;
* ``first_stage_model.``: the LDM VAE (diffusers' converter, as for MVDream / ImageDream);
* ``cond_stage_model.model.visual.``: OpenAI CLIP's ViT-L/14 image tower in the ``clip`` package's
  layout (``conv1``, ``class_embedding``, ``transformer.resblocks.N.attn.in_proj_weight``, ...,
  ``proj``), converted to transformers' ``CLIPVisionModelWithProjection`` here;
* ``cc_projection.``: the camera projection, Linear(768 + 4 -> 768).

Ignored: the EMA copy of the UNet (``model_ema.*``: ComfyUI too loads ``model.diffusion_model.``),
the diffusion schedule buffers (``betas``, ``alphas_cumprod``, ...) and what is left of CLIP's text
tower (``cond_stage_model.model.token_embedding`` ...; the authors delete only its transformer).
The image processor is CLIP's standard one at the tower's input size (224: resize the short side,
centre crop, CLIP mean / std), what the diffusers port and ComfyUI use.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..errors import InputError
from .models import CLIPCameraProjection, Zero123Model
from .single_file import UNET_PREFIX, VAE_PREFIX, _vae_config, _yaml_unet_params
from .weights import empty_weights, load_strict

__all__ = ["VISION_PREFIX", "load_zero123_checkpoint", "infer_zero123_unet_config", "convert_openai_clip_vision"]

VISION_PREFIX = "cond_stage_model.model.visual."  # ComfyUI's Stable_Zero123.clip_vision_prefix
CAMERA_PREFIX = "cc_projection."
_PARTS = {  # one key per part the loader needs, and how to name the part when it is missing
    UNET_PREFIX + "input_blocks.0.0.weight": "UNet (model.diffusion_model.)",
    VAE_PREFIX + "encoder.conv_in.weight": "VAE (first_stage_model.)",
    VISION_PREFIX + "conv1.weight": "CLIP image encoder (cond_stage_model.model.visual.)",
    CAMERA_PREFIX + "bias": "camera projection bias (cc_projection.bias)",
}
# OpenAI CLIP resblock names -> transformers CLIPEncoderLayer names (q/k/v are split separately)
_LAYER_NAMES = {"ln_1": "layer_norm1", "ln_2": "layer_norm2", "mlp.c_fc": "mlp.fc1", "mlp.c_proj": "mlp.fc2"}


def infer_zero123_unet_config(unet_sd: dict[str, Tensor], num_heads: int = 8) -> dict[str, Any]:
    """``UNet2DConditionModel`` arguments from an LDM UNet's weights (keys without
    ``model.diffusion_model.``). ``num_heads`` is not stored in the weights."""
    conv_in = unet_sd["input_blocks.0.0.weight"]
    blocks = sorted({int(k.split(".")[1]) for k in unet_sd if k.startswith("input_blocks.")})
    downs = [i for i in blocks if f"input_blocks.{i}.0.op.weight" in unet_sd]
    per_level = (downs[0] - 1) if downs else len(blocks) - 1
    channels, attention = [], []
    for level in range(len(downs) + 1):
        first = 1 + level * (per_level + 1)
        channels.append(unet_sd[f"input_blocks.{first}.0.out_layers.3.weight"].shape[0])
        attention.append(f"input_blocks.{first}.1.proj_in.weight" in unet_sd)
    mid = "middle_block.1."
    return {
        "sample_size": 32,  # 256 px / 8, as the authors' YAML (used only for defaults, not by the weights)
        "in_channels": conv_in.shape[1],
        "out_channels": unet_sd["out.2.weight"].shape[0],
        "down_block_types": ["CrossAttnDownBlock2D" if a else "DownBlock2D" for a in attention],
        "up_block_types": ["CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attention)],
        "block_out_channels": channels,
        "layers_per_block": per_level,
        "cross_attention_dim": unet_sd[mid + "transformer_blocks.0.attn2.to_k.weight"].shape[1],
        "attention_head_dim": num_heads,  # diffusers' legacy name: SD-1.x configs give the head count here
        "use_linear_projection": unet_sd[mid + "proj_in.weight"].ndim == 2,  # SD-1.x: 1x1 convolutions
        "transformer_layers_per_block": len(
            {k.split(".")[3] for k in unet_sd if k.startswith(mid + "transformer_blocks.")}
        ),
        "norm_num_groups": 32,
    }


def _clip_vision_config(sd: dict[str, Tensor], prefix: str = VISION_PREFIX):
    """transformers ``CLIPVisionConfig`` of an OpenAI CLIP image tower, from its shapes. OpenAI's
    ViTs use 64-wide heads and QuickGELU (neither is stored)."""
    from transformers import CLIPVisionConfig

    conv1 = sd[prefix + "conv1.weight"]
    width, patch = conv1.shape[0], conv1.shape[-1]
    grid = math.isqrt(sd[prefix + "positional_embedding"].shape[0] - 1)
    layers = len({k[len(prefix) :].split(".")[2] for k in sd if k.startswith(prefix + "transformer.resblocks.")})
    return CLIPVisionConfig(
        hidden_size=width,
        intermediate_size=sd[prefix + "transformer.resblocks.0.mlp.c_fc.weight"].shape[0],
        num_hidden_layers=layers,
        num_attention_heads=max(1, width // 64),
        num_channels=conv1.shape[1],
        patch_size=patch,
        image_size=grid * patch,
        projection_dim=sd[prefix + "proj"].shape[1],
        hidden_act="quick_gelu",
    )


def convert_openai_clip_vision(sd: dict[str, Tensor], prefix: str = VISION_PREFIX) -> dict[str, Tensor]:
    """An OpenAI CLIP image tower (keys under ``prefix``) as a transformers
    ``CLIPVisionModelWithProjection`` state dict (``vision_model.`` names): the fused attention
    input projection is split into q / k / v and ``proj`` (width, dim) becomes the transposed
    ``visual_projection`` Linear weight."""
    p = prefix
    out = {
        "vision_model.embeddings.class_embedding": sd[p + "class_embedding"],
        "vision_model.embeddings.patch_embedding.weight": sd[p + "conv1.weight"],
        "vision_model.embeddings.position_embedding.weight": sd[p + "positional_embedding"],
        "visual_projection.weight": sd[p + "proj"].T,
    }
    for ours, theirs in (("ln_pre", "pre_layrnorm"), ("ln_post", "post_layernorm")):  # sic: transformers' name
        for part in ("weight", "bias"):
            out[f"vision_model.{theirs}.{part}"] = sd[f"{p}{ours}.{part}"]
    blocks = sorted({int(k[len(p) :].split(".")[2]) for k in sd if k.startswith(p + "transformer.resblocks.")})
    for i in blocks:
        src, dst = f"{p}transformer.resblocks.{i}.", f"vision_model.encoder.layers.{i}."
        for part in ("weight", "bias"):
            for name, chunk in zip("qkv", sd[f"{src}attn.in_proj_{part}"].chunk(3), strict=True):
                out[f"{dst}self_attn.{name}_proj.{part}"] = chunk
            out[f"{dst}self_attn.out_proj.{part}"] = sd[f"{src}attn.out_proj.{part}"]
            for ours, theirs in _LAYER_NAMES.items():
                out[f"{dst}{theirs}.{part}"] = sd[f"{src}{ours}.{part}"]
    return out


def _check_parts(sd: dict[str, Tensor], name: str) -> None:
    missing = [what for key, what in _PARTS.items() if key not in sd]
    if missing:
        raise InputError(
            f"{name} looks like an original Stable Zero123 checkpoint (it has cc_projection) but has no "
            f"{', '.join(missing)}: the file is incomplete; download stable_zero123.ckpt again"
        )


def _image_encoder(sd: dict[str, Tensor]):
    from transformers import CLIPVisionModelWithProjection

    with empty_weights():
        enc = CLIPVisionModelWithProjection(_clip_vision_config(sd))
    weights = convert_openai_clip_vision(sd)
    expected = enc.state_dict()
    if not any(k.startswith("vision_model.") for k in expected):  # in case transformers flattens the names
        weights = {k.removeprefix("vision_model."): v for k, v in weights.items()}
    for key, buffer in expected.items():  # position ids: a persistent buffer in older transformers
        if key.endswith("position_ids"):
            weights.setdefault(key, buffer)
    load_strict(enc, weights, "CLIP image encoder", assign=True)
    return enc


def load_zero123_checkpoint(
    sd: dict[str, Tensor], path: Path, device: torch.device | str, dtype: torch.dtype
) -> Zero123Model:
    """The :class:`Zero123Model` held by an original Stable Zero123 checkpoint's tensors ``sd``
    (read from ``path``), built without weights and filled from the file."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint, convert_ldm_vae_checkpoint
    from transformers import CLIPImageProcessor

    _check_parts(sd, path.name)
    # only the UNet's own keys: the converter would otherwise notice the EMA copy and log about it
    unet_ldm = {k: v for k, v in sd.items() if k.startswith(UNET_PREFIX)}
    heads = int(_yaml_unet_params(path).get("num_heads", 8) or 8)
    unet_cfg = infer_zero123_unet_config({k[len(UNET_PREFIX) :]: v for k, v in unet_ldm.items()}, heads)
    if unet_cfg["in_channels"] != 8:
        raise InputError(
            f"{path.name}: the UNet takes {unet_cfg['in_channels']} input channels, Stable Zero123's takes 8 "
            "(noisy latent + image latent): the file is not a Stable Zero123 checkpoint"
        )
    with empty_weights():
        unet = UNet2DConditionModel(**unet_cfg)
    load_strict(unet, convert_ldm_unet_checkpoint(unet_ldm, unet.config), "UNet", assign=True)

    with empty_weights():
        vae = AutoencoderKL(**_vae_config(sd))
    load_strict(vae, convert_ldm_vae_checkpoint(sd, vae.config), "VAE", assign=True)

    enc = _image_encoder(sd)
    weight = sd[CAMERA_PREFIX + "weight"]
    dims = {weight.shape[0], enc.config.projection_dim, unet_cfg["cross_attention_dim"]}
    if weight.ndim != 2 or len(dims) != 1:
        raise InputError(
            f"{path.name}: the camera projection {tuple(weight.shape)}, the CLIP embedding "
            f"({enc.config.projection_dim}) and the UNet's cross attention ({unet_cfg['cross_attention_dim']}) "
            "do not fit together: the file mixes parts of different models"
        )
    with empty_weights():
        camera = CLIPCameraProjection(weight.shape[0], weight.shape[1] - weight.shape[0])
    camera_sd = {"proj.weight": weight, "proj.bias": sd[CAMERA_PREFIX + "bias"]}
    load_strict(camera, camera_sd, "camera projection", assign=True)

    px = enc.config.image_size
    processor = CLIPImageProcessor(size={"shortest_edge": px}, crop_size={"height": px, "width": px})
    model = Zero123Model(unet, vae, processor, enc, camera)
    model.source = str(path)
    return model.to(device=device, dtype=dtype).eval().requires_grad_(False)
