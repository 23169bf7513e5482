"""Posed views: RGBA images with their cameras (files: :mod:`~microdreamer_core.io.transforms`)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..errors import InputError, shown
from .cameras import Cameras
from .images import check_images, check_masks, composite

__all__ = ["PosedViews"]


@dataclass
class PosedViews:
    """N images with their cameras.

    Attributes:
        images: (N, H, W, 4) float RGBA in [0, 1], straight (not premultiplied) alpha.
        cameras: the N cameras, at the images' size.
    """

    images: Tensor
    cameras: Cameras

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or self.images.shape[-1] != 4:
            raise InputError(f"posed views need (N, H, W, 4) RGBA images, got shape {tuple(self.images.shape)}")
        check_images(self.images, "posed views' images")
        n, h, w, _ = self.images.shape
        if n != len(self.cameras):
            raise InputError(f"{n} images but {len(self.cameras)} cameras: give one camera per image")
        if (w, h) != (self.cameras.width, self.cameras.height):
            self.cameras = self.cameras.with_resolution(w, h)

    def __len__(self) -> int:
        return self.images.shape[0]

    @classmethod
    def from_images_and_masks(
        cls, images: Tensor, masks: Tensor, cameras: Cameras, invert_mask: bool = False
    ) -> PosedViews:
        """Pack an (N, H, W, 3) image batch and an (N, H, W) mask batch (1 = object) as RGBA views.

        ``invert_mask`` takes ``1 - mask``, for masks where 1 means transparent (ComfyUI's LoadImage).
        """
        images, masks = check_images(images), check_masks(masks)
        n, h, w = images.shape[:3]
        if masks.shape[0] != n or len(cameras) != n:
            raise InputError(
                f"{n} images, {masks.shape[0]} masks and {len(cameras)} cameras: give exactly one mask and one "
                "camera per image (batch the views in the same order)"
            )
        if tuple(masks.shape[1:]) != (h, w):
            raise InputError(
                f"masks are {masks.shape[2]}x{masks.shape[1]} but images are {w}x{h}: use the masks that belong to "
                "these images (an image without alpha gets a 64x64 "
                "empty mask from LoadImage: remove the background first)"
            )
        alpha = masks.to(images)
        if invert_mask:
            alpha = 1.0 - alpha
        rgba = torch.cat([images[..., :3], alpha[..., None]], dim=-1).float().clamp(0.0, 1.0)
        return cls(rgba, cameras.with_resolution(w, h))

    @property
    def masks(self) -> Tensor:
        """(N, H, W) object coverage (the alpha channel)."""
        return self.images[..., 3]

    def rgb_on(self, background: tuple[float, float, float] | Tensor = (1.0, 1.0, 1.0)) -> Tensor:
        """(N, H, W, 3) colours composited over a solid background."""
        return composite(self.images, background)

    def resized(self, resolution: int) -> PosedViews:
        """Square-resize the images (area filter when shrinking) and the cameras with them."""
        if int(resolution) != resolution or resolution < 1:
            raise InputError(f"resolution must be a whole number of pixels, at least 1 (got {shown(resolution)})")
        h, w = self.images.shape[1:3]
        if (h, w) == (resolution, resolution):
            return self
        if h != w:
            raise InputError(f"views are {w}x{h}; resizing to a square {resolution} needs square images")
        x = self.images.permute(0, 3, 1, 2)
        # Resize premultiplied colour so the transparent background does not bleed into edges.
        x = torch.cat([x[:, :3] * x[:, 3:], x[:, 3:]], dim=1)
        mode = "area" if resolution < h else "bilinear"
        x = torch.nn.functional.interpolate(x, size=(resolution, resolution), mode=mode)
        a = x[:, 3:]
        rgb = torch.where(a > 1e-6, x[:, :3] / a.clamp(min=1e-6), torch.zeros_like(x[:, :3]))
        images = torch.cat([rgb.clamp(0, 1), a.clamp(0, 1)], dim=1).permute(0, 2, 3, 1).contiguous()
        return PosedViews(images, self.cameras.with_resolution(resolution, resolution))
