"""Image metrics used to measure novel-view quality."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["psnr", "mask_iou"]


def psnr(pred: Tensor, target: Tensor) -> float:
    """Peak signal-to-noise ratio in dB of images in [0, 1], over the whole batch."""
    mse = torch.mean((pred.float() - target.float()) ** 2).clamp(min=1e-12)
    return float(-10.0 * torch.log10(mse))


def mask_iou(pred_alpha: Tensor, target_alpha: Tensor, threshold: float = 0.5) -> float:
    """Intersection over union of the silhouettes ``alpha > threshold``, over the whole batch."""
    a, b = pred_alpha > threshold, target_alpha > threshold
    union = (a | b).sum()
    return float((a & b).sum() / union) if union > 0 else 1.0
