"""CLIP image encoders kept as one ``.safetensors`` file, as ComfyUI users have them in
``models/clip_vision``: ``CLIP-ViT-H-14-laion2B-s32B-b79K.safetensors`` is IP-Adapter's image
encoder (h94/IP-Adapter ``models/image_encoder/model.safetensors``, renamed), the OpenCLIP
ViT-H/14 ImageDream conditions on.

Two layouts, the two ComfyUI's clip_vision loader reads: transformers' (``vision_model.*`` and
``visual_projection.weight``) and OpenCLIP's (``visual.*``, converted here). The architecture is
read from the shapes; the head count is not stored, so it comes from the known towers
(:data:`KNOWN_TOWERS`). The weights load into transformers' ``CLIPVisionModel`` (what
:class:`~.models.ImageDreamModel` runs), built without weights.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from torch import Tensor

from ..errors import InputError
from .weights import empty_weights, load_strict, read_state_dict

__all__ = [
    "KNOWN_TOWERS",
    "PATCH_KEYS",
    "clip_image_processor",
    "clip_vision_config",
    "load_clip_vision_file",
    "to_transformers_layout",
]

KNOWN_TOWERS: dict[int, tuple[int, str]] = {
    1280: (16, "gelu"),  # OpenCLIP ViT-H/14 (head width 80): ImageDream's, IP-Adapter's
    1408: (16, "gelu"),  # OpenCLIP ViT-g/14 (88)
    1664: (16, "gelu"),  # OpenCLIP ViT-bigG/14 (104): IP-Adapter SDXL's
    1024: (16, "quick_gelu"),  # OpenAI ViT-L/14
    768: (12, "quick_gelu"),  # OpenAI ViT-B
}
"""Width -> (attention heads, activation) of the CLIP vision towers in use (OpenCLIP's model
configs, ComfyUI's clip_vision configs). Other widths get OpenCLIP's defaults: 64-wide heads, GELU."""
OPEN_CLIP = "visual."
PATCH_KEYS = ("vision_model.embeddings.patch_embedding.weight", OPEN_CLIP + "conv1.weight")
"""The patch embedding (width, 3, patch, patch) in either layout: its first dimension is the tower's width."""
_OPEN_CLIP_NAMES = {
    "class_embedding": "embeddings.class_embedding",
    "conv1.weight": "embeddings.patch_embedding.weight",
    "positional_embedding": "embeddings.position_embedding.weight",
    "ln_pre.weight": "pre_layrnorm.weight",  # sic: transformers' name
    "ln_pre.bias": "pre_layrnorm.bias",
    "ln_post.weight": "post_layernorm.weight",
    "ln_post.bias": "post_layernorm.bias",
}
_OPEN_CLIP_BLOCK = {
    "ln_1": "layer_norm1",
    "ln_2": "layer_norm2",
    "mlp.c_fc": "mlp.fc1",
    "mlp.c_proj": "mlp.fc2",
    "attn.out_proj": "self_attn.out_proj",
}


def to_transformers_layout(sd: dict[str, Tensor]) -> dict[str, Tensor]:
    """The vision tower of ``sd`` under transformers' names without the ``vision_model.`` prefix
    (OpenCLIP's ``visual.*`` converted: fused q/k/v split, names mapped); other keys (the
    projection, a text tower) are left out."""
    if not any(k.startswith(OPEN_CLIP) for k in sd):
        return {k.removeprefix("vision_model."): v for k, v in sd.items() if k.startswith("vision_model.")}
    out: dict[str, Tensor] = {}
    for key, value in sd.items():
        if not key.startswith(OPEN_CLIP):
            continue
        name = key.removeprefix(OPEN_CLIP)
        if name in _OPEN_CLIP_NAMES:
            out[_OPEN_CLIP_NAMES[name]] = value
        elif name.startswith("transformer.resblocks."):
            index, _, rest = name.removeprefix("transformer.resblocks.").partition(".")
            layer = f"encoder.layers.{index}."
            module, _, param = rest.rpartition(".")
            if module == "attn" and param.startswith("in_proj_"):
                for part, chunk in zip(("q", "k", "v"), value.chunk(3), strict=True):
                    out[f"{layer}self_attn.{part}_proj.{param.removeprefix('in_proj_')}"] = chunk
            elif module in _OPEN_CLIP_BLOCK:
                out[f"{layer}{_OPEN_CLIP_BLOCK[module]}.{param}"] = value
            else:
                out[key] = value  # unknown: load_strict names it
    return out


def clip_vision_config(sd: dict[str, Tensor]):
    """``CLIPVisionConfig`` of a vision tower in :func:`to_transformers_layout` names, from its shapes."""
    from transformers import CLIPVisionConfig

    try:
        patch = sd["embeddings.patch_embedding.weight"]
        positions = sd["embeddings.position_embedding.weight"].shape[0]
        intermediate = sd["encoder.layers.0.mlp.fc1.weight"].shape[0]
    except KeyError as exc:
        raise InputError(f"no {exc.args[0]} in the file: it is not a CLIP vision encoder") from exc
    width, channels, size = patch.shape[0], patch.shape[1], patch.shape[2]
    grid = math.isqrt(positions - 1)
    if grid * grid != positions - 1:
        raise InputError(f"{positions} position embeddings are not a square grid plus one: not a CLIP vision encoder")
    heads, act = KNOWN_TOWERS.get(width, (max(1, width // 64), "gelu"))
    return CLIPVisionConfig(
        hidden_size=width,
        intermediate_size=intermediate,
        num_hidden_layers=len({k.split(".")[2] for k in sd if k.startswith("encoder.layers.")}),
        num_attention_heads=heads,
        num_channels=channels,
        patch_size=size,
        image_size=grid * size,
        hidden_act=act,
        layer_norm_eps=1e-5,
    )


def clip_image_processor(size: int):
    """CLIP's standard preprocessing (shortest side to ``size`` bicubic, centre crop, OpenAI's
    mean/std): what ImageDream's feature extractor does at 224."""
    from transformers import CLIPImageProcessor

    return CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size})


def load_clip_vision_file(path: str | os.PathLike):
    """A CLIP vision ``.safetensors`` as ``(CLIPImageProcessor, CLIPVisionModel)``, the tensors as
    stored in the file (the caller moves the model to its device and dtype)."""
    from transformers import CLIPVisionModel

    path = Path(path)
    if path.suffix.lower() != ".safetensors":
        raise InputError(f"{path.name}: a CLIP vision encoder file must be .safetensors (as in models/clip_vision)")
    sd = to_transformers_layout(read_state_dict(path))
    if not sd:
        raise InputError(
            f"{path.name} holds no CLIP vision tower (no vision_model.* or visual.* weights): "
            "use CLIP-ViT-H-14-laion2B-s32B-b79K.safetensors from models/clip_vision"
        )
    cfg = clip_vision_config(sd)
    with empty_weights():
        model = CLIPVisionModel(cfg)
    expected = model.state_dict()
    if any(k.startswith("vision_model.") for k in expected):  # transformers < 5 nests the tower
        sd = {"vision_model." + k: v for k, v in sd.items()}
    sd = {k: v for k, v in sd.items() if not k.endswith("position_ids")}  # a buffer some files carry
    sd |= {k: v for k, v in expected.items() if k.endswith("position_ids")}
    load_strict(model, sd, f"image encoder ({path.name})", assign=True)
    return clip_image_processor(cfg.image_size), model
