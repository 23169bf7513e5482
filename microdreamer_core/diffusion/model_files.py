"""Recognising the model files users already have, cheaply enough to run whenever a model list is
shown: which files of a checkpoints folder are multi-view models, and which CLIP vision file an
ImageDream checkpoint takes.

A ``.safetensors`` file is recognised by its header (tensor names and shapes; no weight is
read). A pickled ``.ckpt`` / ``.pt`` cannot be looked into without unpickling it, seconds for a
5 GB file, so it is recognised by the names its authors publish it under (:data:`MULTIVIEW_NAMES`:
``stable_zero123.ckpt``, ``sd-v2.1-base-4view.pt``, ``sd-v2.1-base-4view-ipmv.pt``); loading it
still checks what it holds. Answers are cached per file version (path, size, modification time).
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Iterable
from pathlib import Path

from ..errors import InputError
from .clip_vision import PATCH_KEYS
from .single_file import SINGLE_FILE_SUFFIXES, UNET_PREFIX
from .weights import read_state_dict

__all__ = [
    "MULTIVIEW_NAMES",
    "clip_vision_width",
    "image_embedding_width",
    "is_multiview_checkpoint",
    "matching_clip_vision",
]

MULTIVIEW_NAMES = re.compile(r"zero123|mvdream|imagedream|4view", re.IGNORECASE)
"""Names of pickled multi-view checkpoints (Stable Zero123, MVDream, ImageDream as published)."""
MULTIVIEW_KEYS = (UNET_PREFIX + "camera_embed.0.weight", "cc_projection.weight")
"""Header keys of a multi-view checkpoint: MVDream / ImageDream's camera embedding, Zero123's camera projection."""
IMAGE_EMBED = UNET_PREFIX + "image_embed.proj_in.weight"
"""ImageDream's image-feature input: its second dimension is the width of the CLIP tower it was trained with."""


def _version(path: str | os.PathLike) -> tuple[str, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return str(path), st.st_size, st.st_mtime_ns


@functools.lru_cache(maxsize=1024)
def _safetensors_shapes(version: tuple[str, int, int]) -> dict[str, list[int]]:
    """Tensor names and shapes from a safetensors header; empty when unreadable."""
    from safetensors import safe_open

    try:
        with safe_open(version[0], framework="pt") as f:
            return {k: list(f.get_slice(k).get_shape()) for k in f.keys()}
    except Exception:  # noqa: BLE001 - not safetensors, truncated...: not a model we list
        return {}


def is_multiview_checkpoint(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a single-file MVDream / ImageDream / Stable Zero123 checkpoint: by its
    header keys for ``.safetensors``, by its name (:data:`MULTIVIEW_NAMES`) for pickles."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SINGLE_FILE_SUFFIXES:
        return False
    if suffix != ".safetensors":
        return bool(MULTIVIEW_NAMES.search(path.name))
    version = _version(path)
    return version is not None and any(k in _safetensors_shapes(version) for k in MULTIVIEW_KEYS)


def image_embedding_width(path: str | os.PathLike) -> int | None:
    """The CLIP image-feature width an ImageDream checkpoint takes (1280: OpenCLIP ViT-H/14), or
    None for other models. Pickles are memory-mapped: their tensors are not read."""
    version = _version(path)
    if version is None:
        return None
    if Path(path).suffix.lower() == ".safetensors":
        shape = _safetensors_shapes(version).get(IMAGE_EMBED)
        return shape[1] if shape else None
    return _pickled_image_embedding_width(version)


@functools.lru_cache(maxsize=64)
def _pickled_image_embedding_width(version: tuple[str, int, int]) -> int | None:
    try:
        sd = read_state_dict(version[0])
    except InputError:
        return None
    return int(sd[IMAGE_EMBED].shape[1]) if IMAGE_EMBED in sd else None


def clip_vision_width(path: str | os.PathLike) -> int | None:
    """The width of the CLIP vision tower in a ``.safetensors`` file (1280: OpenCLIP ViT-H/14), or
    None when the file holds none."""
    version = _version(path)
    shapes = _safetensors_shapes(version) if version is not None else {}
    return next((shapes[k][0] for k in PATCH_KEYS if k in shapes), None)


def matching_clip_vision(files: Iterable[str | os.PathLike], width: int) -> Path | None:
    """The first of ``files`` holding a CLIP vision tower ``width`` wide, or None."""
    return next((Path(f) for f in files if clip_vision_width(f) == width), None)
