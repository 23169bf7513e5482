"""Images in: the one place the core decodes an image file, and the checks of image tensors.

An image file is opened lazily (Pillow reads the header only) and its size is checked against
:data:`MAX_IMAGE_PIXELS` before a single pixel is decoded, so a small file that claims a huge size
(a decompression bomb) is refused at once instead of filling memory. Pillow's own bomb errors and
warnings become the same one-line :class:`~.errors.InputError`, and so does any other failure to
read the file (truncated, corrupt, not an image).

Image tensors handed to the library (ComfyUI IMAGE / MASK batches) go through
:func:`check_images` / :func:`check_masks`: an empty batch, an image without pixels or NaN are
refused with the fix instead of failing deep inside torch.
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

__all__ = ["MAX_IMAGE_PIXELS", "check_pixels", "pixel_guard", "image_size", "read_rgba", "check_images", "check_masks"]

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
        raise InputError(f"{shown(name)} is {w}x{h} pixels, more than the {MAX_IMAGE_PIXELS // 2**20} megapixel limit "
                         "for images read from files: resize it (8192 x 8192 at most)")


@contextlib.contextmanager
def pixel_guard(name) -> Iterator[None]:
    """Pillow's decompression-bomb warning silenced (the caller checks the size with
    :func:`check_pixels`) and its bomb error turned into the same :class:`InputError`."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            yield
        except Image.DecompressionBombError:
            raise InputError(f"{shown(name)} is larger than the {MAX_IMAGE_PIXELS // 2**20} megapixel limit for images "
                             "read from files: resize it (8192 x 8192 at most)") from None


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
    except Exception as e:  # Pillow raises many kinds for broken files (OSError, SyntaxError, ValueError, zlib.error...)
        raise InputError(f"cannot read {what} {shown(path)} ({shown(e, 120)}): give a PNG, WebP or TIFF image") from None


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


def _check_batch(t, what: str, ndim: int, layout: str) -> Tensor:
    if not isinstance(t, Tensor) or t.ndim != ndim or (ndim == 4 and t.shape[-1] not in (3, 4)):
        shape = tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__
        raise InputError(f"{what} must be {layout}, got {shape}")
    if t.shape[0] == 0:
        raise InputError(f"{what} is an empty batch (0 images): connect at least one")
    h, w = t.shape[1:3]
    if h == 0 or w == 0:
        raise InputError(f"{what} are {w}x{h} pixels: an image needs at least one pixel")
    if not bool(torch.isfinite(t).all()):
        raise InputError(f"{what} contain NaN or infinite values: check the node or file that produced them")
    return t


def check_images(images, what: str = "images") -> Tensor:
    """``images`` as a checked (B, H, W, 3|4) batch: not empty, at least one pixel, finite."""
    return _check_batch(images, what, 4, "an image batch (B, H, W, 3)")


def check_masks(masks, what: str = "masks") -> Tensor:
    """``masks`` as a checked (B, H, W) batch (an (H, W) mask becomes a batch of one)."""
    if isinstance(masks, Tensor) and masks.ndim == 2:
        masks = masks[None]
    return _check_batch(masks, what, 3, "a mask batch (B, H, W)")
