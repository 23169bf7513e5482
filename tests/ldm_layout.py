"""Build ORIGINAL single-file Stable-Diffusion-2.x checkpoint layouts from diffusers/transformers
models (the "LDM" layout of MVDream's ``sd-v2.1-base-4view.pt``), so tests can save tiny random
models as single-file checkpoints and read them back through diffusers' own LDM converters.

* :func:`vae_to_ldm`: ``AutoencoderKL`` -> CompVis ``first_stage_model.`` layout;
* :func:`clip_text_to_open_clip`: ``CLIPTextModel`` -> OpenCLIP ``cond_stage_model.model.`` text
  tower, optionally with the extra final resblock SD-2 carries (it conditions on the penultimate
  layer, so the diffusers text encoder has one layer fewer than the checkpoint).

The returned tensors may share memory with the input state dict.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import torch
from torch import Tensor

# Mid-block attention: diffusers ``Attention`` names -> LDM ``AttnBlock`` names.
_VAE_ATTN_NAMES = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}


def vae_to_ldm(state_dict: dict[str, Tensor], prefix: str = "first_stage_model.") -> dict[str, Tensor]:
    """A diffusers ``AutoencoderKL`` state dict in the CompVis/LDM layout.

    ``{en,de}coder.{down,up}_blocks.i.resnets.j`` become ``{en,de}coder.{down,up}.i.block.j`` (the
    decoder's up blocks numbered in reverse), ``mid_block.resnets.{0,1}`` become
    ``mid.block_{1,2}``, the mid attention becomes ``mid.attn_1.{norm,q,k,v,proj_out}`` with the
    projections as 1x1 conv weights (4-D), and ``conv_shortcut`` / ``conv_norm_out`` become
    ``nin_shortcut`` / ``norm_out``. ``quant_conv`` and ``post_quant_conv`` keep their names.
    """
    up_ids = {int(m[1]) for k in state_dict if (m := re.match(r"decoder\.up_blocks\.(\d+)\.", k))}
    num_up = max(up_ids) + 1 if up_ids else 0
    renames: list[tuple[str, str | Callable[[re.Match[str]], str]]] = [
        (r"\.down_blocks\.(\d+)\.resnets\.(\d+)\.", r".down.\1.block.\2."),
        (r"\.down_blocks\.(\d+)\.downsamplers\.0\.", r".down.\1.downsample."),
        (r"\.up_blocks\.(\d+)\.resnets\.(\d+)\.", lambda m: f".up.{num_up - 1 - int(m[1])}.block.{m[2]}."),
        (r"\.up_blocks\.(\d+)\.upsamplers\.0\.", lambda m: f".up.{num_up - 1 - int(m[1])}.upsample."),
        (r"\.mid_block\.resnets\.(\d+)\.", lambda m: f".mid.block_{int(m[1]) + 1}."),
        (r"\.conv_shortcut\.", ".nin_shortcut."),
        (r"\.conv_norm_out\.", ".norm_out."),
    ]
    out: dict[str, Tensor] = {}
    for key, value in state_dict.items():
        new = key
        for pattern, repl in renames:
            new = re.sub(pattern, repl, new)
        if ".mid_block.attentions.0." in new:
            head, _, name = new.partition(".mid_block.attentions.0.")
            module, _, param = name.rpartition(".")
            new = f"{head}.mid.attn_1.{_VAE_ATTN_NAMES[module]}.{param}"
            if param == "weight" and value.ndim == 2:  # Linear -> 1x1 Conv2d, as LDM stores them
                value = value[:, :, None, None]
        out[prefix + new] = value
    return out


def clip_text_to_open_clip(
    state_dict: dict[str, Tensor],
    prefix: str = "cond_stage_model.model.",
    extra_layer: bool = True,
    seed: int = 0,
) -> dict[str, Tensor]:
    """A transformers ``CLIPTextModel`` (or ``CLIPTextModelWithProjection``) state dict as the
    OpenCLIP text tower stored in SD-2 checkpoints.

    Keys with or without the ``text_model.`` wrapper (transformers >= 5.6 flattened
    ``CLIPTextModel``) are accepted. Each layer's q/k/v projections are concatenated into
    ``attn.in_proj_{weight,bias}``. ``text_projection`` is stored as OpenCLIP does, as
    ``(width, embed_dim)``, i.e. the transpose of the Linear weight; without a projection in the
    input an identity ``(width, width)`` one is written. With ``extra_layer``, one more resblock
    with random values (generator seeded with ``seed``) is appended after the real ones, like the
    final layer SD-2 never uses.
    """
    sd = {k.removeprefix("text_model."): v for k, v in state_dict.items()}
    token = sd["embeddings.token_embedding.weight"]
    width = token.shape[1]
    out: dict[str, Tensor] = {
        prefix + "token_embedding.weight": token,
        prefix + "positional_embedding": sd["embeddings.position_embedding.weight"],
        prefix + "ln_final.weight": sd["final_layer_norm.weight"],
        prefix + "ln_final.bias": sd["final_layer_norm.bias"],
    }
    num_layers = len({k.split(".")[2] for k in sd if k.startswith("encoder.layers.")})
    layers = [
        {k.removeprefix(f"encoder.layers.{i}."): v for k, v in sd.items() if k.startswith(f"encoder.layers.{i}.")}
        for i in range(num_layers)
    ]
    if extra_layer:
        layers.append(_random_layer(layers[-1], seed))
    for i, layer in enumerate(layers):
        block = f"{prefix}transformer.resblocks.{i}."
        for part in ("weight", "bias"):
            out[block + f"attn.in_proj_{part}"] = torch.cat([layer[f"self_attn.{p}_proj.{part}"] for p in "qkv"])
            out[block + f"attn.out_proj.{part}"] = layer[f"self_attn.out_proj.{part}"]
            out[block + f"ln_1.{part}"] = layer[f"layer_norm1.{part}"]
            out[block + f"ln_2.{part}"] = layer[f"layer_norm2.{part}"]
            out[block + f"mlp.c_fc.{part}"] = layer[f"mlp.fc1.{part}"]
            out[block + f"mlp.c_proj.{part}"] = layer[f"mlp.fc2.{part}"]
    if "text_projection.weight" in sd:
        out[prefix + "text_projection"] = sd["text_projection.weight"].T.contiguous()
    else:
        out[prefix + "text_projection"] = torch.eye(width, dtype=token.dtype)
    return out


def _random_layer(template: dict[str, Tensor], seed: int) -> dict[str, Tensor]:
    """A layer shaped like ``template``: layer norms at (1, 0), other weights ~ N(0, 0.02^2)."""
    g = torch.Generator().manual_seed(seed)
    layer: dict[str, Tensor] = {}
    for name, t in sorted(template.items()):
        if "layer_norm" in name:
            layer[name] = torch.ones_like(t) if name.endswith("weight") else torch.zeros_like(t)
        else:
            layer[name] = (torch.randn(t.shape, generator=g) * 0.02).to(t.dtype)
    return layer


# --- Stable Zero123 (``stable_zero123.ckpt``): SD-1.x UNet and OpenAI CLIP's image tower -------------
# diffusers ``ResnetBlock2D`` names -> LDM ``ResBlock`` names
_RESNET_NAMES = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "time_emb_proj": "emb_layers.1",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "conv_shortcut": "skip_connection",
}
_UNET_TOP = {
    "conv_in": "input_blocks.0.0",
    "time_embedding.linear_1": "time_embed.0",
    "time_embedding.linear_2": "time_embed.2",
    "conv_norm_out": "out.0",
    "conv_out": "out.2",
}


def unet2d_to_ldm(
    state_dict: dict[str, Tensor], layers_per_block: int, prefix: str = "model.diffusion_model."
) -> dict[str, Tensor]:
    """A diffusers ``UNet2DConditionModel`` state dict in the LDM ``openaimodel.UNetModel`` layout.

    With ``L = layers_per_block``: down level ``b``'s resnet / transformer ``j`` become
    ``input_blocks.{1 + b(L+1) + j}.{0,1}``, its downsampler ``input_blocks.{(b+1)(L+1)}.0.op``;
    the mid block becomes ``middle_block.{0,1,2}``; up level ``b``'s resnet / transformer ``j``
    (L+1 of them) become ``output_blocks.{b(L+1) + j}.{0,1}`` and its upsampler sits in the level's
    last output block after them (``.1.conv``, or ``.2.conv`` after a transformer). Transformer
    internals keep their names (diffusers took them from LDM); resnets are renamed
    (:data:`_RESNET_NAMES`).
    """
    step = layers_per_block + 1
    up_with_attention = {int(m[1]) for k in state_dict if (m := re.match(r"up_blocks\.(\d+)\.attentions\.", k))}
    out: dict[str, Tensor] = {}
    for key, value in state_dict.items():
        module, _, param = key.rpartition(".")
        if module in _UNET_TOP:
            new = _UNET_TOP[module]
        elif m := re.fullmatch(r"(down|up)_blocks\.(\d+)\.resnets\.(\d+)\.(\w+)", module):
            block = 1 + int(m[2]) * step + int(m[3]) if m[1] == "down" else int(m[2]) * step + int(m[3])
            new = f"{'input' if m[1] == 'down' else 'output'}_blocks.{block}.0.{_RESNET_NAMES[m[4]]}"
        elif m := re.fullmatch(r"(down|up)_blocks\.(\d+)\.attentions\.(\d+)\.(.+)", module):
            block = 1 + int(m[2]) * step + int(m[3]) if m[1] == "down" else int(m[2]) * step + int(m[3])
            new = f"{'input' if m[1] == 'down' else 'output'}_blocks.{block}.1.{m[4]}"
        elif m := re.fullmatch(r"down_blocks\.(\d+)\.downsamplers\.0\.conv", module):
            new = f"input_blocks.{(int(m[1]) + 1) * step}.0.op"
        elif m := re.fullmatch(r"up_blocks\.(\d+)\.upsamplers\.0\.conv", module):
            b = int(m[1])
            new = f"output_blocks.{b * step + layers_per_block}.{2 if b in up_with_attention else 1}.conv"
        elif m := re.fullmatch(r"mid_block\.resnets\.(\d)\.(\w+)", module):
            new = f"middle_block.{2 * int(m[1])}.{_RESNET_NAMES[m[2]]}"
        elif m := re.fullmatch(r"mid_block\.attentions\.0\.(.+)", module):
            new = f"middle_block.1.{m[1]}"
        else:
            raise KeyError(f"no LDM name for UNet weight {key}")
        out[f"{prefix}{new}.{param}"] = value
    return out


def clip_vision_to_openai(
    state_dict: dict[str, Tensor], prefix: str = "cond_stage_model.model.visual."
) -> dict[str, Tensor]:
    """A transformers ``CLIPVisionModelWithProjection`` state dict as OpenAI CLIP's ``VisionTransformer``
    (the ``clip`` package's names, which the Zero123 authors' ``FrozenCLIPImageEmbedder`` stores):
    ``conv1``, ``class_embedding``, ``positional_embedding``, ``ln_pre``,
    ``transformer.resblocks.N.{ln_1, attn.in_proj_*, attn.out_proj, ln_2, mlp.c_fc, mlp.c_proj}``,
    ``ln_post`` and ``proj`` stored as (width, embed_dim), the transpose of the Linear weight."""
    sd = {k.removeprefix("vision_model."): v for k, v in state_dict.items()}
    out: dict[str, Tensor] = {
        prefix + "class_embedding": sd["embeddings.class_embedding"],
        prefix + "conv1.weight": sd["embeddings.patch_embedding.weight"],
        prefix + "positional_embedding": sd["embeddings.position_embedding.weight"],
        prefix + "proj": sd["visual_projection.weight"].T.contiguous(),
    }
    for ours, theirs in (("ln_pre", "pre_layrnorm"), ("ln_post", "post_layernorm")):
        for part in ("weight", "bias"):
            out[f"{prefix}{ours}.{part}"] = sd[f"{theirs}.{part}"]
    layers = {int(k.split(".")[2]) for k in sd if k.startswith("encoder.layers.")}
    names = {"ln_1": "layer_norm1", "ln_2": "layer_norm2", "mlp.c_fc": "mlp.fc1", "mlp.c_proj": "mlp.fc2"}
    for i in sorted(layers):
        src, dst = f"encoder.layers.{i}.", f"{prefix}transformer.resblocks.{i}."
        for part in ("weight", "bias"):
            out[f"{dst}attn.in_proj_{part}"] = torch.cat([sd[f"{src}self_attn.{p}_proj.{part}"] for p in "qkv"])
            out[f"{dst}attn.out_proj.{part}"] = sd[f"{src}self_attn.out_proj.{part}"]
            for ours, theirs in names.items():
                out[f"{dst}{ours}.{part}"] = sd[f"{src}{theirs}.{part}"]
    return out
