"""Inputs and checks the diffusion tests (tests/diffusion/) share; the tiny models themselves are
conftest.py's ``models`` fixture."""

from __future__ import annotations

import io
import json
import logging
from contextlib import contextmanager

import torch

from microdreamer_core.diffusion.models import Condition
from microdreamer_core.scene.cameras import orbit_cameras

SIZE = 32  # image size of the tiny tests (latents 16x16 with the tiny 2-level VAE)
KINDS = ["mvdream", "imagedream", "zero123"]
# what the published ashawkey/{mvdream-sd2.1,imagedream-ipmv}-diffusers unet/config.json carry
# from the original LDM unet_config.params, beside the constructor arguments
PUBLISHED_SWITCHES = {"legacy": False, "use_checkpoint": False, "use_linear_in_transformer": True}
NOISE = ("not expected", "will be ignored", "low_cpu_mem_usage", "accelerate", "kept in float32")
"""Words of the warnings a quiet load must not log."""


def condition(seed: int = 0) -> Condition:
    """A prompt, a negative prompt and a random 48x48 RGBA image: every model can use it."""
    g = torch.Generator().manual_seed(seed)
    return Condition(prompt="a yellow duck", negative_prompt="blurry", image=torch.rand(48, 48, 4, generator=g))


def cameras(n: int = 4):
    """``n`` views around the object at SIZE pixels."""
    return orbit_cameras([-3.0] * n, [i * 360.0 / n for i in range(n)], 2.5, resolution=SIZE)


@contextmanager
def library_logs():
    """The warnings diffusers, transformers and accelerate log (their loggers do not propagate to
    the root, so caplog does not see them)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setLevel(logging.WARNING)
    loggers = [logging.getLogger(name) for name in ("diffusers", "transformers", "accelerate")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.setLevel(logging.WARNING)
    try:
        yield stream
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.removeHandler(handler)
            lg.setLevel(level)


def published_layout(folder, **overrides):
    """Rewrite unet/config.json the way the hub ports have it: the LDM switches as written by the
    original converter (no use_spatial_transformer, no defaults of ours they do not write)."""
    path = folder / "unet" / "config.json"
    cfg = json.loads(path.read_text())
    for key in ("use_spatial_transformer", "use_scale_shift_norm", "resblock_updown", "num_heads", "ip_weight"):
        cfg.pop(key, None)
    cfg |= {"_diffusers_version": "0.25.0"} | PUBLISHED_SWITCHES | overrides
    path.write_text(json.dumps(cfg, indent=2))
    return folder


def tiny_encoder(width: int = 32, seed: int = 0):
    """A tiny CLIP vision tower with OpenCLIP's default 64-wide heads (one head below 64), what
    :func:`~microdreamer_core.diffusion.clip_vision.clip_vision_config` infers for widths it does not know."""
    from transformers import CLIPVisionConfig, CLIPVisionModel

    torch.manual_seed(seed)
    cfg = CLIPVisionConfig(
        hidden_size=width,
        intermediate_size=2 * width,
        num_hidden_layers=2,
        num_attention_heads=max(1, width // 64),
        patch_size=8,
        image_size=32,
        hidden_act="gelu",
    )
    model = CLIPVisionModel(cfg).eval()
    with torch.no_grad():  # no all-ones norms: a swapped or dropped weight changes the outputs
        for p in model.parameters():
            p.add_(torch.randn(p.shape) * 0.05)
    return model


def with_real_tokens(model, seed: int = 5):
    """A copy of a tiny MVDream / ImageDream whose text tower takes CLIP's real 49408 token ids
    (what the tokenizer of a single-file checkpoint gives) and, for ImageDream, whose image
    encoder is :func:`tiny_encoder` (the heads a clip_vision file's shapes imply)."""
    import copy

    from transformers import CLIPTextModel

    from microdreamer_core.diffusion.clip_vision import clip_image_processor

    model = copy.deepcopy(model)
    cfg = copy.deepcopy(model.text_encoder.config)
    cfg.vocab_size, cfg.bos_token_id, cfg.eos_token_id, cfg.pad_token_id = 49408, 49406, 49407, 0
    torch.manual_seed(seed)
    model.text_encoder = CLIPTextModel(cfg).eval()
    if model.kind == "imagedream":
        model.image_encoder = tiny_encoder(model.image_encoder.config.hidden_size, seed)
        model.image_processor = clip_image_processor(model.image_encoder.config.image_size)
    return model.requires_grad_(False)
