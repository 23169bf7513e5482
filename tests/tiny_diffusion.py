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
