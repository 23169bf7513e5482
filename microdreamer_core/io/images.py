"""Image files in: the one place the core decodes an image file.

An image file is opened lazily (Pillow reads the header only) and its size is checked against
:data:`MAX_IMAGE_PIXELS` before a single pixel is decoded, so a small file that claims a huge size
(a decompression bomb) is refused at once instead of filling memory. Pillow's own bomb errors and
warnings become the same one-line :class:`~.errors.InputError`, and so does any other failure to
read the file (truncated, corrupt, not an image).

Image tensors are checked by :mod:`microdreamer_core.scene.images`.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from ..errors import InputError, shown

__all__ = ["MAX_IMAGE_PIXELS", "check_pixels", "pixel_guard", "image_size", "read_rgba"]

MAX_IMAGE_PIXELS = 8192 * 8192
"""Largest image read from a file, in pixels (64 megapixels, e.g. 8192 x 8192): far above any
real input, and the largest texture the pack writes."""

_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")


def check_pixels(size: tuple[int, int], name) -> None:
    """Refuse an image of ``size`` (width, height) with no pixels or more than :data:`MAX_IMAGE_PIXELS`."""
    w, h = (int(v) for v in size)
    if w < 1 or h < 1:
        raise InputError(f"{shown(name)} is {w}x{h} pixels: an image needs at least one pixel")
    if w * h > MAX_IMAGE_PIXELS:
        raise InputError(
            f"{shown(name)} is {w}x{h} pixels, more than the {MAX_IMAGE_PIXELS // 2**20} megapixel limit "
            "for images read from files: resize it (8192 x 8192 at most)"
        )


@contextlib.contextmanager
def pixel_guard(name) -> Iterator[None]:
    """Pillow's decompression-bomb warning silenced (the caller checks the size with
    :func:`check_pixels`) and its bomb error turned into the same :class:`InputError`."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            yield
        except Image.DecompressionBombError:
            raise InputError(
                f"{shown(name)} is larger than the {MAX_IMAGE_PIXELS // 2**20} megapixel limit for images "
                "read from files: resize it (8192 x 8192 at most)"
            ) from None


def _read(path, what: str, decode):
    """Open image file ``path`` lazily, check its size, then ``decode(image)``; every failure is
    one :class:`InputError` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{what} {shown(path)} does not exist: check the path")
    try:
        with pixel_guard(path), Image.open(path) as im:
            check_pixels(im.size, path)
            return decode(im)
    except InputError:
        raise
    except (
        Exception
    ) as e:  # Pillow raises many kinds for broken files (OSError, SyntaxError, ValueError, zlib.error...)
        raise InputError(
            f"cannot read {what} {shown(path)} ({shown(e, 120)}): give a PNG, WebP or TIFF image"
        ) from None


def image_size(path, what: str = "image") -> tuple[int, int]:
    """(width, height) of an image file from its header, within the pixel limit."""
    return _read(path, what, lambda im: im.size)


def read_rgba(path, what: str = "image", need_alpha: str | None = None) -> Tensor:
    """Decode an image file as (H, W, 4) float RGBA in [0, 1] (opaque alpha for images without one).

    ``need_alpha``: refuse images without an alpha channel, with this text as the reason and fix.
    """

    def decode(im: Image.Image) -> np.ndarray:
        if need_alpha and im.mode not in _ALPHA_MODES and "transparency" not in im.info:
            raise InputError(f"{shown(Path(path).name)} has no alpha channel (mode {im.mode}): {need_alpha}")
        return np.asarray(im.convert("RGBA"), dtype=np.float32) / 255.0

    return torch.from_numpy(_read(path, what, decode).copy())
