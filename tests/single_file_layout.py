"""Write tiny models as ORIGINAL single-file MVDream / ImageDream checkpoints (the LDM layout of
``sd-v2.1-base-4view(-ipmv).pt``), so tests can load them back through the public loader, which
reads them with diffusers' own LDM converters.

UNet: ``model.diffusion_model.`` + our UNet's names (they are the authors' names already); VAE
and OpenCLIP text tower (with its extra, unused final layer) via :mod:`ldm_layout`, whose inverse
mappings are checked against diffusers' converters in ``tests/diffusion/test_single_file.py``.
"""

from __future__ import annotations

from ldm_layout import clip_text_to_open_clip, vae_to_ldm
from torch import Tensor


def to_single_file(model) -> dict[str, Tensor]:
    """The whole original checkpoint of a tiny MVDream / ImageDream model."""
    sd = {"model.diffusion_model." + k: v for k, v in model.unet.state_dict().items()}
    sd |= vae_to_ldm(model.vae.state_dict())
    sd |= clip_text_to_open_clip(model.text_encoder.state_dict())
    return {k: v.detach().contiguous().clone() for k, v in sd.items()}
