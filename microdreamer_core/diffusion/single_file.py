"""Original single-file MVDream / ImageDream checkpoints (``sd-v2.1-base-4view.pt``,
``sd-v2.1-base-4view-ipmv.pt``, or the same as ``.safetensors``).

The UNet sits under ``model.diffusion_model.`` (its configuration is read from the tensor shapes
and the YAML the authors ship beside the file), the LDM VAE under ``first_stage_model.``
(converted with diffusers' own converter) and the OpenCLIP text tower under
``cond_stage_model.model.`` when present. Parts a checkpoint does not hold come from files on
this machine before the hub: the tokenizer from a tokenizer folder (ComfyUI's ``comfy/sd1_tokenizer``)
or open_clip_torch's CLIP vocabulary (:mod:`.tokenizer`), ImageDream's CLIP image encoder from a
``models/clip_vision`` file (:mod:`.clip_vision`) or a folder. With those in place nothing is
downloaded. Tensors are loaded as they are in the file (memory-mapped) into modules built without weights.

Stable Zero123's ``stable_zero123.ckpt`` holds all its parts in a layout of its own (a diffusers
``UNet2DConditionModel``, OpenAI CLIP's image tower, the camera projection): :mod:`.single_file_zero123`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..errors import InputError
from .clip_vision import clip_image_processor, load_clip_vision_file
from .hub import check_repo_id, download
from .models import ImageDreamModel, MultiViewModel, MVDreamModel
from .tokenizer import open_clip_vocab, sd21_tokenizer
from .unet import MultiViewUNetModel
from .weights import (
    default_dtype,
    empty_weights,
    load_component,
    load_strict,
    read_state_dict,
    transformers_kwargs,
)

__all__ = ["SINGLE_FILE_SUFFIXES", "load_single_file", "detect_checkpoint_kind", "infer_unet_config"]

SD21_HUB_ID = "stabilityai/stable-diffusion-2-1-base"  # the tokenizer (and text encoder) a checkpoint lacks
CLIP_H_HUB_ID = "laion/CLIP-ViT-H-14-laion2B-s32B-b79K"  # ImageDream's OpenCLIP ViT-H/14 image encoder
SINGLE_FILE_SUFFIXES = (".safetensors", ".pt", ".ckpt", ".pth", ".bin")
UNET_PREFIX, VAE_PREFIX, TEXT_PREFIX = "model.diffusion_model.", "first_stage_model.", "cond_stage_model.model."


def detect_checkpoint_kind(sd: dict[str, Tensor], name: str) -> str:
    """``mvdream`` / ``imagedream`` / ``zero123`` from a checkpoint's keys, or a clear error naming
    what the file is."""
    if UNET_PREFIX + "camera_embed.0.weight" in sd:
        return "imagedream" if UNET_PREFIX + "image_embed.latents" in sd else "mvdream"
    if "cc_projection.weight" in sd:  # Stable Zero123's camera projection (ComfyUI detects it by this key too)
        return "zero123"
    if UNET_PREFIX + "input_blocks.0.0.weight" in sd:
        raise InputError(
            f"{name} is a plain Stable Diffusion checkpoint (no camera "
            "embedding): MicroDreamer needs MVDream or ImageDream weights"
        )
    if any(k.startswith(("down_blocks.", "encoder.down", "text_model.", "vision_model.")) for k in sd):
        raise InputError(
            f"{name} holds a single component (UNet, VAE or CLIP), not a whole MVDream/ImageDream/Stable Zero123 "
            "checkpoint"
        )
    raise InputError(
        f"{name} is not a diffusion model checkpoint this loader knows (expected MVDream, ImageDream or Stable Zero123)"
    )


def infer_unet_config(unet_sd: dict[str, Tensor], num_head_channels: int = 64) -> dict[str, Any]:
    """MultiViewUNetModel arguments from the weights' shapes. The head size is not stored in a
    checkpoint; SD-2.1 uses 64 (override with the checkpoint's YAML)."""
    conv_in = unet_sd["input_blocks.0.0.weight"]
    mc = conv_in.shape[0]
    blocks = sorted({int(k.split(".")[1]) for k in unet_sd if k.startswith("input_blocks.")})
    downs = [i for i in blocks if f"input_blocks.{i}.0.op.weight" in unet_sd]
    per_level = (downs[0] - 1) if downs else len(blocks) - 1
    mults, attn = [], []
    for level in range(len(downs) + 1):
        first = 1 + level * (per_level + 1)
        mults.append(unet_sd[f"input_blocks.{first}.0.out_layers.3.weight"].shape[0] // mc)
        if f"input_blocks.{first}.1.norm.weight" in unet_sd:
            attn.append(2**level)
    depth = len({k.split(".")[3] for k in unet_sd if k.startswith("middle_block.1.transformer_blocks.")})
    cfg: dict[str, Any] = {
        "in_channels": conv_in.shape[1],
        "model_channels": mc,
        "out_channels": unet_sd["out.2.weight"].shape[0],
        "num_res_blocks": per_level,
        "channel_mult": mults,
        "attention_resolutions": attn,
        "num_head_channels": num_head_channels,
        "transformer_depth": depth,
        "context_dim": unet_sd["middle_block.1.transformer_blocks.0.attn2.to_k.weight"].shape[1],
        "camera_dim": unet_sd["camera_embed.0.weight"].shape[1],
    }
    if "image_embed.latents" in unet_sd:
        cfg |= {
            "ip_dim": unet_sd["image_embed.latents"].shape[1],
            "ip_embedding_dim": unet_sd["image_embed.proj_in.weight"].shape[1],
            "ip_depth": len({k.split(".")[2] for k in unet_sd if k.startswith("image_embed.layers.")}),
            # the resampler's heads are 64 wide (12 x 64 in ImageDream); only their product is stored
            "ip_dim_head": 64,
            "ip_heads": max(1, unet_sd["image_embed.layers.0.0.to_q.weight"].shape[0] // 64),
        }
    return cfg


_YAML_SWITCHES = (
    "use_spatial_transformer",
    "use_linear_in_transformer",
    "legacy",
    "use_checkpoint",
    "use_scale_shift_norm",
    "resblock_updown",
)


def _yaml_unet_params(path: Path) -> dict[str, Any]:
    """``model.params.unet_config.params`` of the YAML the authors ship beside a checkpoint."""
    import yaml

    for cand in (path.with_suffix(".yaml"), path.with_suffix(".yml")):
        if cand.is_file():
            data = yaml.safe_load(cand.read_text())
            try:
                return dict(data["model"]["params"]["unet_config"]["params"])
            except (KeyError, TypeError) as exc:
                raise InputError(
                    f"{cand.name} has no model.params.unet_config.params: it is not the checkpoint's config"
                ) from exc
    return {}


def _vae_config(sd: dict[str, Tensor]) -> dict[str, Any]:
    ch = sd[VAE_PREFIX + "encoder.conv_in.weight"].shape[0]
    levels = sorted({int(k.split(".")[3]) for k in sd if k.startswith(VAE_PREFIX + "encoder.down.")})
    outs = [sd[f"{VAE_PREFIX}encoder.down.{i}.block.0.conv2.weight"].shape[0] for i in levels]
    layers = len({k.split(".")[5] for k in sd if k.startswith(VAE_PREFIX + "encoder.down.0.block.")})
    return {
        "in_channels": sd[VAE_PREFIX + "encoder.conv_in.weight"].shape[1],
        "out_channels": sd[VAE_PREFIX + "decoder.conv_out.weight"].shape[0],
        "down_block_types": ["DownEncoderBlock2D"] * len(outs),
        "up_block_types": ["UpDecoderBlock2D"] * len(outs),
        "block_out_channels": outs,
        "latent_channels": sd[VAE_PREFIX + "quant_conv.weight"].shape[0] // 2,
        "layers_per_block": layers,
        "norm_num_groups": 32 if ch % 32 == 0 else ch,
        "sample_size": 256,
        "scaling_factor": 0.18215,
    }


def _text_encoder_from_checkpoint(sd: dict[str, Tensor]):
    """The OpenCLIP text tower inside an SD-2 checkpoint as a transformers CLIPTextModel that
    stops at the penultimate layer (what SD 2.x conditions on)."""
    from diffusers.loaders.single_file_utils import convert_open_clip_checkpoint
    from transformers import CLIPTextConfig, CLIPTextModel

    tok = sd[TEXT_PREFIX + "token_embedding.weight"]
    layers = len({k.split(".")[4] for k in sd if k.startswith(TEXT_PREFIX + "transformer.resblocks.")})
    width = tok.shape[1]
    cfg = CLIPTextConfig(
        vocab_size=tok.shape[0],
        hidden_size=width,
        intermediate_size=sd[TEXT_PREFIX + "transformer.resblocks.0.mlp.c_fc.weight"].shape[0],
        num_hidden_layers=layers - 1,
        num_attention_heads=max(1, width // 64),  # OpenCLIP text towers use 64-wide heads
        max_position_embeddings=sd[TEXT_PREFIX + "positional_embedding"].shape[0],
        hidden_act="gelu",
        projection_dim=sd[TEXT_PREFIX + "text_projection"].shape[1] if TEXT_PREFIX + "text_projection" in sd else width,
        bos_token_id=49406 if tok.shape[0] > 49406 else 0,
        eos_token_id=49407 if tok.shape[0] > 49407 else 1,
    )
    with empty_weights():
        model = CLIPTextModel(cfg)
    converted = convert_open_clip_checkpoint(model, sd)
    converted = {k: v for k, v in converted.items() if not k.startswith(f"text_model.encoder.layers.{layers - 1}.")}
    converted.pop("text_projection.weight", None)
    expected = model.state_dict()
    if not any(k.startswith("text_model.") for k in expected):  # transformers >= 5 names have no prefix
        converted = {k.removeprefix("text_model."): v for k, v in converted.items()}
    for buffer in ("position_ids", "embeddings.position_ids", "text_model.embeddings.position_ids"):
        if buffer in expected and buffer not in converted:
            converted[buffer] = expected[buffer]
    load_strict(model, converted, "text encoder", assign=True)
    return model


# What a single-file checkpoint takes from the hub, per component: the files it loads and no more
# (those repos also hold .bin, fp16 and OpenCLIP copies of the same weights, several GB each).
SINGLE_FILE_HUB_FILES: dict[str | None, list[str]] = {
    "tokenizer": ["tokenizer/*.json", "tokenizer/*.txt"],
    "text_encoder": ["text_encoder/config.json", "text_encoder/model.safetensors"],
    None: ["config.json", "preprocessor_config.json", "model.safetensors"],  # the OpenCLIP ViT-H/14 image encoder
}


def _resolve_source(
    value: str | os.PathLike | None,
    hub_id: str,
    subfolder: str | None,
    download_dir: str | os.PathLike | None,
    what: str,
) -> Path:
    """A local folder for a component: the given path, or the hub download of ``hub_id`` limited to
    the files the component loads (:data:`SINGLE_FILE_HUB_FILES`)."""
    if value is not None and Path(value).exists():
        path = Path(value)
        return path / subfolder if subfolder and (path / subfolder).is_dir() else path
    repo = check_repo_id(str(value)) if value is not None else hub_id
    folder = download(repo, download_dir, allow_patterns=SINGLE_FILE_HUB_FILES[subfolder], what=what)
    return folder / subfolder if subfolder else folder


def _image_encoder(value: str | os.PathLike | None, download_dir, dtype: torch.dtype):
    """``(processor, CLIPVisionModel)`` from a CLIP vision ``.safetensors`` file, a transformers
    folder or a hub id (default: the OpenCLIP ViT-H/14 of the hub)."""
    from transformers import CLIPImageProcessor, CLIPVisionModel

    if value is not None and Path(value).is_file():
        return load_clip_vision_file(value)
    folder = _resolve_source(value, CLIP_H_HUB_ID, None, download_dir, "the OpenCLIP ViT-H/14 image encoder")
    enc = load_component("image encoder", CLIPVisionModel.from_pretrained, folder, **transformers_kwargs(dtype))
    if (folder / "preprocessor_config.json").is_file():
        return CLIPImageProcessor.from_pretrained(folder), enc
    return clip_image_processor(enc.config.image_size), enc  # CLIP's standard at the encoder's size


def load_single_file(
    path: str | os.PathLike,
    device: torch.device | str = "cpu",
    dtype: torch.dtype | None = None,
    tokenizer: str | os.PathLike | None = None,
    text_encoder: str | os.PathLike | None = None,
    image_encoder: str | os.PathLike | None = None,
    download_dir: str | os.PathLike | None = None,
) -> MultiViewModel:
    """Load an original MVDream / ImageDream / Stable Zero123 checkpoint (.pt/.ckpt or .safetensors).

    The UNet and VAE always come from the file; the text encoder too when the checkpoint holds
    ``cond_stage_model``. The rest comes from ``tokenizer`` (a tokenizer folder such as ComfyUI's
    ``comfy/sd1_tokenizer``, or a hub id; by default open_clip_torch's CLIP vocabulary when that
    package is installed, else the SD-2.1 tokenizer of the hub), ``text_encoder`` (a folder or
    hub id) and ``image_encoder`` (a CLIP vision ``.safetensors`` such as ComfyUI's
    ``models/clip_vision/CLIP-ViT-H-14-laion2B-s32B-b79K.safetensors``, a folder or a hub id; by
    default the OpenCLIP ViT-H/14 of the hub). A YAML with the checkpoint's name beside it (as the
    authors ship) supplies the UNet head size; otherwise SD-2.1's 64 is used. Stable Zero123 holds
    every part itself and takes none of these.
    """
    from diffusers import AutoencoderKL
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint
    from transformers import CLIPTextModel

    path = Path(path)
    sd = read_state_dict(path)
    kind = detect_checkpoint_kind(sd, path.name)
    dtype = dtype or default_dtype(device)
    if kind == "zero123":  # every part is in the file, in a layout of its own
        from .single_file_zero123 import load_zero123_checkpoint

        return load_zero123_checkpoint(sd, path, device, dtype)

    unet_sd = {k[len(UNET_PREFIX) :]: v for k, v in sd.items() if k.startswith(UNET_PREFIX)}
    yaml_params = _yaml_unet_params(path)
    cfg = infer_unet_config(unet_sd, int(yaml_params.get("num_head_channels", 64) or 64))
    # the YAML's architecture switches are checked by the constructor (a layout it does not build is refused)
    cfg |= {k: yaml_params[k] for k in _YAML_SWITCHES if k in yaml_params}
    with empty_weights():
        unet = MultiViewUNetModel(**cfg)
    load_strict(unet, unet_sd, "UNet", assign=True)

    if VAE_PREFIX + "encoder.conv_in.weight" not in sd:
        raise InputError(
            f"{path.name} has no VAE (first_stage_model): it is not a complete MVDream/ImageDream checkpoint"
        )
    vae_cfg = _vae_config(sd)
    with empty_weights():
        vae = AutoencoderKL(**vae_cfg)
    load_strict(vae, convert_ldm_vae_checkpoint(sd, vae.config), "VAE", assign=True)

    if tokenizer is None and (vocab := open_clip_vocab()) is not None:
        tok = sd21_tokenizer(vocab)
    else:
        tok = sd21_tokenizer(_resolve_source(tokenizer, SD21_HUB_ID, "tokenizer", download_dir, "the SD-2.1 tokenizer"))
    if TEXT_PREFIX + "token_embedding.weight" in sd and text_encoder is None:
        text = _text_encoder_from_checkpoint(sd)
    else:
        te_dir = _resolve_source(text_encoder, SD21_HUB_ID, "text_encoder", download_dir, "the SD-2.1 text encoder")
        text = load_component("text encoder", CLIPTextModel.from_pretrained, te_dir, **transformers_kwargs(dtype))
    if kind == "mvdream":
        model: MultiViewModel = MVDreamModel(unet, vae, tok, text)
    else:
        proc, enc = _image_encoder(image_encoder, download_dir, dtype)
        if enc.config.hidden_size != cfg["ip_embedding_dim"]:
            raise InputError(
                f"the image encoder is {enc.config.hidden_size} wide but {path.name} takes "
                f"{cfg['ip_embedding_dim']}-wide image features: use the OpenCLIP ViT-H/14 "
                "(CLIP-ViT-H-14-laion2B-s32B-b79K.safetensors in models/clip_vision)"
            )
        model = ImageDreamModel(unet, vae, tok, text, proc, enc)
    model.source = str(path)
    return model.to(device=device, dtype=dtype).eval().requires_grad_(False)
