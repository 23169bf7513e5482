"""Randomly initialised models of the real architectures: full size for timing without a download
(speed does not depend on weight values), tiny for tests."""

from __future__ import annotations

from typing import Any

import torch

from ..errors import InputError
from .models import (
    MODEL_CLASSES,
    CLIPCameraProjection,
    ImageDreamModel,
    MultiViewModel,
    MVDreamModel,
    Zero123Model,
)
from .tokenizer import byte_alphabet
from .unet import MultiViewUNetModel
from .weights import default_dtype

__all__ = ["build_random_model"]


def _byte_tokenizer(max_length: int = 77):
    """A CLIP tokenizer over a byte-level vocabulary without merges (for random models only:
    the real vocabulary comes with the weights)."""
    from transformers import CLIPTokenizer

    chars = byte_alphabet()
    vocab = {c: i for i, c in enumerate(chars)} | {c + "</w>": i + len(chars) for i, c in enumerate(chars)}
    vocab |= {"<|startoftext|>": len(vocab), "<|endoftext|>": len(vocab) + 1}
    return CLIPTokenizer(vocab=vocab, merges=[], pad_token="!", model_max_length=max_length)


def _sizes(size: str) -> dict[str, Any]:
    if size == "full":
        return dict(
            unet=dict(
                model_channels=320,
                channel_mult=(1, 2, 4, 4),
                attention_resolutions=(4, 2, 1),
                num_res_blocks=2,
                num_head_channels=64,
                context_dim=1024,
            ),
            vae=dict(block_out_channels=(128, 256, 512, 512), layers_per_block=2, norm_num_groups=32),
            text=dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=23, num_attention_heads=16),
            vision_h=dict(
                hidden_size=1280,
                intermediate_size=5120,
                num_hidden_layers=32,
                num_attention_heads=16,
                patch_size=14,
                image_size=224,
                projection_dim=1024,
            ),
            vision_l=dict(
                hidden_size=1024,
                intermediate_size=4096,
                num_hidden_layers=24,
                num_attention_heads=16,
                patch_size=14,
                image_size=224,
                projection_dim=768,
            ),
            ip=dict(ip_embedding_dim=1280, ip_heads=12, ip_dim_head=64, ip_depth=4, ip_dim=16),
            zero123_unet=dict(
                block_out_channels=(320, 640, 1280, 1280),
                cross_attention_dim=768,
                attention_head_dim=8,
                layers_per_block=2,
            ),
            crop=224,
        )
    if size == "tiny":
        return dict(
            unet=dict(
                model_channels=32,
                channel_mult=(1, 2),
                attention_resolutions=(2,),
                num_res_blocks=1,
                num_head_channels=16,
                context_dim=64,
            ),
            vae=dict(block_out_channels=(32, 32), layers_per_block=1, norm_num_groups=32),
            text=dict(
                hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=1
            ),  # OpenCLIP: 64-wide heads
            vision_h=dict(
                hidden_size=32,
                intermediate_size=64,
                num_hidden_layers=2,
                num_attention_heads=2,
                patch_size=8,
                image_size=32,
                projection_dim=32,
            ),
            vision_l=dict(  # OpenAI CLIP: 64-wide heads (a checkpoint does not store the count)
                hidden_size=32,
                intermediate_size=64,
                num_hidden_layers=2,
                num_attention_heads=1,
                patch_size=8,
                image_size=32,
                projection_dim=32,
            ),
            ip=dict(ip_embedding_dim=32, ip_heads=1, ip_dim_head=64, ip_depth=1, ip_dim=4),
            zero123_unet=dict(
                block_out_channels=(32, 64), cross_attention_dim=32, attention_head_dim=8, layers_per_block=1
            ),
            crop=32,
        )
    raise InputError(f"unknown model size {size!r}: use 'full' or 'tiny'")


def build_random_model(
    kind: str, size: str = "tiny", seed: int = 0, device: torch.device | str = "cpu", dtype: torch.dtype | None = None
) -> MultiViewModel:
    """A randomly initialised model of the real architecture: ``full`` size for timing without a
    download (speed does not depend on weight values), ``tiny`` for tests. Same classes, same
    layouts, so a tiny model saved with :func:`~.folders.save_diffusers_folder` loads like a real one."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import (
        CLIPImageProcessor,
        CLIPTextConfig,
        CLIPTextModel,
        CLIPVisionConfig,
        CLIPVisionModel,
        CLIPVisionModelWithProjection,
    )

    if kind not in MODEL_CLASSES:
        raise InputError(f"unknown model kind {kind!r}: use one of {', '.join(MODEL_CLASSES)}")
    s = _sizes(size)
    torch.manual_seed(seed)
    vae = AutoencoderKL(
        down_block_types=["DownEncoderBlock2D"] * len(s["vae"]["block_out_channels"]),
        up_block_types=["UpDecoderBlock2D"] * len(s["vae"]["block_out_channels"]),
        latent_channels=4,
        sample_size=256,
        scaling_factor=0.18215,
        **s["vae"],
    )
    proc = CLIPImageProcessor(size={"shortest_edge": s["crop"]}, crop_size={"height": s["crop"], "width": s["crop"]})
    if kind in ("mvdream", "imagedream"):
        ip = s["ip"] if kind == "imagedream" else {}
        unet = MultiViewUNetModel(camera_dim=16, **s["unet"], **ip)
        tok = _byte_tokenizer()
        text = CLIPTextModel(
            CLIPTextConfig(
                vocab_size=max(len(tok), 49408 if size == "full" else 0),
                max_position_embeddings=77,
                hidden_act="gelu",
                bos_token_id=tok.bos_token_id,
                eos_token_id=tok.eos_token_id,
                pad_token_id=tok.pad_token_id,
                **s["text"],
            )
        )
        if kind == "mvdream":
            model: MultiViewModel = MVDreamModel(unet, vae, tok, text)
        else:
            enc = CLIPVisionModel(CLIPVisionConfig(hidden_act="gelu", **s["vision_h"]))
            model = ImageDreamModel(unet, vae, tok, text, proc, enc)
    else:
        z = s["zero123_unet"]
        unet = UNet2DConditionModel(
            sample_size=32,
            in_channels=8,
            out_channels=4,
            down_block_types=["CrossAttnDownBlock2D"] * (len(z["block_out_channels"]) - 1) + ["DownBlock2D"],
            up_block_types=["UpBlock2D"] + ["CrossAttnUpBlock2D"] * (len(z["block_out_channels"]) - 1),
            norm_num_groups=32,
            **z,
        )
        enc = CLIPVisionModelWithProjection(CLIPVisionConfig(hidden_act="quick_gelu", **s["vision_l"]))
        proj = CLIPCameraProjection(s["vision_l"]["projection_dim"], 4)
        model = Zero123Model(unet, vae, proc, enc, proj)
    model.source = f"random {size} {kind} (seed {seed})"
    return model.to(device=device, dtype=dtype or default_dtype(device)).eval().requires_grad_(False)
