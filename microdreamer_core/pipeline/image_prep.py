"""Input-image preprocessing for image-to-3D (METHOD.md, "Input preprocessing").

The image models were trained on objects centred on a white background and filling most of the
frame, so the reference image is cropped around its alpha, re-centred to fill ``fill`` (80%) of a
square canvas and resized. Background removal itself is the user's choice of node upstream.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import InputError
from ..scene.images import check_images, check_masks

__all__ = ["recenter_rgba", "reference_from_batch", "rgb_alpha_at"]


def recenter_rgba(rgb: Tensor, alpha: Tensor | None = None, size: int = 256, fill: float = 0.8) -> Tensor:
    """(H, W, 3) colours + (H, W) alpha in [0, 1] -> (size, size, 4) RGBA with the object's
    bounding box centred and its longer side ``fill * size``. Without alpha the whole image is
    taken as the object (square-padded with white)."""
    if rgb.ndim != 3 or rgb.shape[-1] not in (3, 4):
        raise InputError(f"image has shape {tuple(rgb.shape)}; expected one (H, W, 3) RGB image")
    if int(size) != size or size < 1:
        raise InputError(f"the canvas size must be a whole number of pixels, at least 1 (got {size})")
    check_images(rgb[None], "the image")
    if alpha is None:
        alpha = rgb[..., 3] if rgb.shape[-1] == 4 else torch.ones(rgb.shape[:2])
    rgb = rgb[..., :3].float()
    alpha = check_masks(alpha, "the mask")[0].float()
    if alpha.shape != rgb.shape[:2]:
        alpha = F.interpolate(alpha[None, None], rgb.shape[:2], mode="bilinear", align_corners=False)[0, 0]
    ys, xs = torch.nonzero(alpha > 0.5, as_tuple=True)
    if len(ys) == 0:
        raise InputError("the mask is empty (no foreground pixel): remove the background so the object is opaque, or check the mask is not inverted")
    y0, y1, x0, x1 = int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1
    rgba = torch.cat([rgb, alpha[..., None]], dim=-1)[y0:y1, x0:x1]
    h, w = y1 - y0, x1 - x0
    scale = fill * size / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    obj = F.interpolate(rgba.permute(2, 0, 1)[None], (nh, nw), mode="bilinear", align_corners=False, antialias=True)[0]
    canvas = torch.zeros(4, size, size)
    top, left = (size - nh) // 2, (size - nw) // 2
    canvas[:, top : top + nh, left : left + nw] = obj
    return canvas.permute(1, 2, 0).clamp(0, 1)


def reference_from_batch(images: Tensor, mask: Tensor | None = None, invert_mask: bool = False, size: int = 256) -> Tensor:
    """The first image of an (B, H, W, 3|4) batch with its (B, H, W) coverage mask (1 = object;
    ``invert_mask`` for masks that are 1 on the background), re-centred by :func:`recenter_rgba`."""
    images = check_images(images, "the image")
    alpha = None
    if mask is not None:
        m = check_masks(mask, "the mask")[0].cpu().float()
        alpha = 1.0 - m if invert_mask else m
    return recenter_rgba(images[0].cpu(), alpha, size)


def rgb_alpha_at(image: Tensor, size: int) -> tuple[Tensor, Tensor]:
    """An (H, W, 3|4) image resized to ``size``: (size, size, 3) RGB composited on white and the
    (size, size) alpha (1 without an alpha channel). The reference-view targets of SIR and stage 2."""
    img = image.float()
    rgba = img if img.shape[-1] == 4 else torch.cat([img, torch.ones_like(img[..., :1])], dim=-1)
    rgba = F.interpolate(rgba.permute(2, 0, 1)[None], (size, size), mode="bilinear", align_corners=False, antialias=True)[0].permute(1, 2, 0)
    alpha = rgba[..., 3].clamp(0, 1)
    return rgba[..., :3] * alpha[..., None] + (1 - alpha[..., None]), alpha
