"""Inputs the tiny-model pipeline tests share (the ``models`` fixture is in conftest.py)."""

from __future__ import annotations

import torch

from microdreamer_core.pipeline.condition import make_condition

KINDS = ["zero123", "imagedream", "mvdream"]


def blob_rgba(size: int = 64) -> torch.Tensor:
    """An orange box on a transparent background, off-centre (re-centring is part of the test)."""
    img = torch.zeros(size, size, 4)
    img[10:40, 20:50, :3] = torch.tensor([0.9, 0.5, 0.1])
    img[10:40, 20:50, 3] = 1.0
    return img


def condition_for(kind: str):
    """A prompt for MVDream, the blob for the image models (ImageDream with an empty prompt works)."""
    if kind == "mvdream":
        return make_condition(kind, "a yellow rubber duck")
    return make_condition(kind, "", image=blob_rgba())
