"""What the models condition on: user input (prompt, image, mask) -> a checked :class:`Condition`.

The one path every host takes (the CLI, every ComfyUI node, notebooks): :func:`make_condition`.
For image-to-3D it applies the input preprocessing of METHOD.md ("Input preprocessing"): the
image models were trained on objects centred on a white background and filling most of the
frame, so the object is cut out by its mask (:func:`object_alpha`, which refuses masks that do
not separate an object from a background), re-centred to fill 80% of a square canvas and resized
(:func:`recenter_rgba`). Background removal itself is the user's choice of node upstream.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..diffusion.models import DEFAULT_NEGATIVE_PROMPT, Condition
from ..errors import InputError
from ..scene.images import check_images, check_masks, resize_bchw, resize_images

__all__ = ["DEFAULT_NEGATIVE", "make_condition", "object_alpha", "recenter_rgba", "rgb_alpha_at"]

DEFAULT_NEGATIVE = "default"
"""The negative prompt that stands for the paper's ('ugly, bad anatomy, ...'; the nodes' default)."""


def make_condition(
    model_kind: str | None,
    prompt: str = "",
    negative_prompt: str | None = None,
    image: Tensor | None = None,
    mask: Tensor | None = None,
    invert_mask: bool = False,
    elevation: float = 0.0,
    size: int = 256,
) -> Condition:
    """The :class:`Condition` for a model kind from user input.

    ``image``: (H, W, 3|4) or a (B, H, W, 3|4) batch (the first image is used) in [0, 1];
    ``mask``: (H, W) or (B, H, W), 1 = object (``invert_mask`` for masks that are 1 on the
    background, like ComfyUI's LoadImage; core Remove Background's mask is 1 on the object and
    may come at the model's resolution: same framing is resized to the image). RGBA images carry
    their own mask (its alpha is used when no mask is given). The object is
    re-centred to fill 80% of a ``size`` canvas. Image models need an image with a mask; MVDream
    needs a prompt. ``negative_prompt`` None or :data:`DEFAULT_NEGATIVE`: the paper's negative
    prompt for the text models. ``model_kind`` None: for whichever model comes later (a prompt,
    an image, or both).
    """
    if not -89.0 <= float(elevation) <= 89.0:  # NaN fails too
        raise InputError(f"elevation must be between -89 and 89 degrees (got {elevation})")
    if model_kind is None:
        if image is None and not prompt.strip():
            raise InputError(
                "nothing to condition on: write a prompt (text-to-3D) or connect an image and its mask (image-to-3D)"
            )
        model_kind = "mvdream" if image is None else "imagedream"  # the checks that apply: text only, or image
    if negative_prompt is None or negative_prompt.strip() == DEFAULT_NEGATIVE:
        negative_prompt = DEFAULT_NEGATIVE_PROMPT if model_kind in ("mvdream", "imagedream") else ""
    if model_kind == "mvdream":
        if not prompt.strip():
            raise InputError("MVDream is a text-to-3D model: give a prompt describing the object")
        return Condition(prompt=prompt, negative_prompt=negative_prompt)
    if image is None:
        raise InputError(f"the {model_kind} model is image-to-3D: give an input image (RGBA, or IMAGE + MASK)")
    img = check_images(image[None] if image.ndim == 3 else image, "the input image")[0]
    rgba = recenter_rgba(img[..., :3].float().cpu(), object_alpha(img, mask, invert_mask), size)
    return Condition(prompt=prompt, negative_prompt=negative_prompt, image=rgba, reference_elevation=float(elevation))


def object_alpha(
    image: Tensor, mask: Tensor | None = None, invert_mask: bool = False, what: str = "the input image"
) -> Tensor:
    """The (H, W) object coverage of an (H, W, 3|4) image, 1 = object: the first ``mask`` of a
    batch (``invert_mask`` for masks that are 1 on the background), else the image's own alpha.
    Refused unless it separates an object from a background; ``what`` names the image."""
    if mask is not None:
        m = check_masks(mask, "the mask")[0].float().cpu()
        (mh, mw), (h, w) = m.shape, image.shape[:2]
        if m.shape != image.shape[:2] and abs(mw / mh - w / h) <= 0.01 * (w / h) and min(mh, mw) > 64:
            # a background-removal model's mask at its own resolution, same framing: bring it to the image
            m = resize_bchw(m[None, None], (h, w))[0, 0].clamp(0.0, 1.0)
        if m.shape != image.shape[:2]:
            raise InputError(
                f"the mask is {m.shape[1]}x{m.shape[0]} but the image is {image.shape[1]}x{image.shape[0]}: connect "
                "the mask that belongs to the image (LoadImage gives a 64x64 empty mask for images without alpha)"
            )
        alpha = 1.0 - m if invert_mask else m
        empty = "the mask is empty (no foreground pixel): check the background removal, or toggle invert_mask"
        full = "the mask covers the whole image (no background): remove the background first, or toggle invert_mask"
    elif image.shape[-1] == 4:
        alpha = image[..., 3].float().cpu()
        empty = f"{what} is transparent everywhere (empty alpha): the object must be opaque in the alpha channel"
        full = (
            f"{what} has no transparent background (alpha is opaque "
            "everywhere): remove the background first and save an RGBA PNG"
        )
    else:
        raise InputError(
            f"{what} has no mask: give an RGBA image or connect a MASK (a background-removal node's, "
            "or LoadImage's MASK with invert_mask on)"
        )
    if float(alpha.max()) <= 0.5:
        raise InputError(empty)
    if float(alpha.min()) > 0.5:
        raise InputError(full)
    return alpha


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
    if alpha.shape != rgb.shape[:2]:  # plain bilinear (no antialiasing), as this always did
        alpha = resize_bchw(alpha[None, None], tuple(rgb.shape[:2]), antialias=False)[0, 0]
    ys, xs = torch.nonzero(alpha > 0.5, as_tuple=True)
    if len(ys) == 0:
        raise InputError(
            "the mask is empty (no foreground pixel): remove the background "
            "so the object is opaque, or check the mask is not inverted"
        )
    y0, y1, x0, x1 = int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1
    rgba = torch.cat([rgb, alpha[..., None]], dim=-1)[y0:y1, x0:x1]
    h, w = y1 - y0, x1 - x0
    scale = fill * size / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    obj = resize_bchw(rgba.permute(2, 0, 1)[None], (nh, nw))[0]
    canvas = torch.zeros(4, size, size)
    top, left = (size - nh) // 2, (size - nw) // 2
    canvas[:, top : top + nh, left : left + nw] = obj
    return canvas.permute(1, 2, 0).clamp(0, 1)


def rgb_alpha_at(image: Tensor, size: int) -> tuple[Tensor, Tensor]:
    """An (H, W, 3|4) image resized to ``size``: (size, size, 3) RGB composited on white and the
    (size, size) alpha (1 without an alpha channel). The reference-view targets of SIR and stage 2."""
    img = image.float()
    rgba = img if img.shape[-1] == 4 else torch.cat([img, torch.ones_like(img[..., :1])], dim=-1)
    rgba = resize_images(rgba[None], size)[0]
    alpha = rgba[..., 3].clamp(0, 1)
    return rgba[..., :3] * alpha[..., None] + (1 - alpha[..., None]), alpha
