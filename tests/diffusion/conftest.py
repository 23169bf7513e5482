"""Fixtures of the diffusion tests (the tiny models are tests/conftest.py's ``models``)."""

from __future__ import annotations

import functools

import pytest


@pytest.fixture
def built(monkeypatch):
    """Records, for every component class constructed, whether its parameters were all on the
    ``meta`` device when its constructor returned (the light path) or real (built, maybe randomly
    initialised, then overwritten)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import (
        CLIPTextModel,
        CLIPVisionModel,
        CLIPVisionModelWithProjection,
    )

    from microdreamer_core.diffusion.models import CLIPCameraProjection
    from microdreamer_core.diffusion.unet import MultiViewUNetModel

    seen: list[tuple[str, bool]] = []
    for cls in (
        MultiViewUNetModel,
        UNet2DConditionModel,
        AutoencoderKL,
        CLIPTextModel,
        CLIPVisionModel,
        CLIPVisionModelWithProjection,
        CLIPCameraProjection,
    ):
        original = cls.__init__

        def init(self, *args, _original=original, _cls=cls, **kwargs):
            _original(self, *args, **kwargs)
            if type(self) is _cls:
                seen.append((_cls.__name__, all(p.device.type == "meta" for p in self.parameters())))

        monkeypatch.setattr(cls, "__init__", functools.wraps(original)(init))
    return seen
