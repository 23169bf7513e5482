"""The reference view of image-to-3D: the input photo, seen from its own camera.

The photo's camera is azimuth 0 (the object's front, for every model) at the condition's
``reference_elevation`` (:func:`~..scene.cameras.front_camera`). Both stages render the object
from there and pull it towards the photo, composited on white: SIR and SDS with
:func:`reference_loss` on the Gaussians, texture refinement with its masked front term on the
mesh (:func:`~.texture_refine.fit_texture`). :func:`reference_image` makes that view for all three.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from ..diffusion.models import Condition
from ..runtime import autograd_safe
from ..scene.cameras import Cameras, front_camera
from .condition import rgb_alpha_at

if TYPE_CHECKING:
    from ..render.gaussians import RenderOutput

__all__ = ["ReferenceView", "ReferenceImage", "reference_image", "reference_loss"]


@dataclass
class ReferenceView:
    """Stage 1's front-view term ``rgb_weight * L1sum(rgb, input_rgb) + mask_weight *
    MSEsum(alpha, input_alpha)``, rendered from ``radius`` (the reference: the preset's camera
    radius). Both weights 0 switch it off; the defaults are the Zero123 preset's."""

    rgb_weight: float = 0.3
    mask_weight: float = 0.01
    radius: float = 2.0

    @property
    def enabled(self) -> bool:
        return self.rgb_weight > 0 or self.mask_weight > 0

    def image(
        self, condition: Condition | None, resolution: int, fovy_deg: float, device: torch.device | str = "cpu"
    ) -> ReferenceImage | None:
        """The term's target (:func:`reference_image` from ``radius``); None when the term is
        off or there is no input photo."""
        return reference_image(condition, self.radius, resolution, fovy_deg, device) if self.enabled else None


@dataclass
class ReferenceImage:
    """The input photo at its camera: (1, R, R, 3) colours composited on white and the
    (1, R, R) alpha (1 without an alpha channel), on the camera's device."""

    camera: Cameras
    rgb: Tensor
    alpha: Tensor


def reference_image(
    condition: Condition | None, radius: float, resolution: int, fovy_deg: float, device: torch.device | str = "cpu"
) -> ReferenceImage | None:
    """The condition's photo at its camera (``radius`` from the centre, ``fovy_deg``,
    ``resolution`` pixels square); None without a photo (text-to-3D)."""
    if condition is None or condition.image is None:
        return None
    rgb, alpha = rgb_alpha_at(condition.image, resolution)
    camera = front_camera(condition.reference_elevation, radius, resolution, fovy_deg).to(device)
    return ReferenceImage(camera, autograd_safe(rgb[None].to(device)), autograd_safe(alpha[None].to(device)))


def reference_loss(render: RenderOutput, image: ReferenceImage, view: ReferenceView) -> Tensor:
    """Stage 1's front-view term for a (clamped) Gaussian ``render`` from ``image.camera``."""
    return (
        view.rgb_weight * (render.rgb - image.rgb).abs().sum()
        + view.mask_weight * ((render.alpha[..., 0] - image.alpha) ** 2).sum()
    )
