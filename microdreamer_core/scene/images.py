"""Image batches (ComfyUI IMAGE / MASK layout: (B, H, W, C) floats in [0, 1]): checks and the
small operations every stage shares.

Resizing policy (one function for the whole library, :func:`resize_bchw`): bilinear with
``antialias=True`` and ``align_corners=False``. Shrinking then averages every source pixel under
the target pixel (no aliasing of the fine detail diffusion models produce), and enlarging is
exactly plain bilinear (antialiasing changes nothing there, to 5e-7), so one call serves both
directions. Two callers pass ``antialias=False`` on purpose, to compute what the authors compute:
the condition image handed to a diffusion model and the stage-2 texture targets (the reference
resizes both with plain bilinear; they differ only when shrinking). Posed views
(:meth:`~microdreamer_core.scene.views.PosedViews.resized`) average premultiplied colour by area
instead, so a photo's transparent background never bleeds into the object's edge.

Image tensors handed to the library go through :func:`check_images` / :func:`check_masks`: an
empty batch, an image without pixels or NaN are refused with the fix instead of failing deep
inside torch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import InputError

__all__ = ["check_images", "check_masks", "resize_bchw", "resize_images", "composite"]


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


def resize_bchw(x: Tensor, size: int | tuple[int, int], antialias: bool = True) -> Tensor:
    """A (B, C, H, W) batch resized to ``size`` (square if an int) by the library's one policy
    (``antialias=False`` only where the authors resize without it: see the module docstring)."""
    size = (size, size) if isinstance(size, int) else tuple(size)
    if tuple(x.shape[-2:]) == size:
        return x
    return F.interpolate(x, size, mode="bilinear", align_corners=False, antialias=antialias)


def resize_images(images: Tensor, size: int | tuple[int, int], antialias: bool = True) -> Tensor:
    """A (B, H, W, C) batch resized to ``size`` (square if an int) by the library's one policy."""
    return resize_bchw(images.permute(0, 3, 1, 2), size, antialias).permute(0, 2, 3, 1)


def composite(rgba: Tensor, background: tuple[float, float, float] | Tensor = (1.0, 1.0, 1.0)) -> Tensor:
    """(..., 3) colours of straight-alpha (..., 4) RGBA composited over a solid background."""
    bg = torch.as_tensor(background, dtype=rgba.dtype, device=rgba.device)
    a = rgba[..., 3:]
    return rgba[..., :3] * a + bg * (1.0 - a)
