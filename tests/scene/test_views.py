"""PosedViews: RGBA views with their cameras (checks, resizing, compositing, building from images and masks)."""

import pytest
import torch

from microdreamer_core.errors import InputError
from microdreamer_core.scene.cameras import orbit_cameras
from microdreamer_core.scene.views import PosedViews


def _views(n=3, size=16):
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(n, size, size, 4, generator=gen)
    images = (images * 255).round() / 255  # exactly representable in 8 bits
    return PosedViews(images, orbit_cameras([-10.0] * n, [0.0, 120.0, 240.0][:n], 2.0, size))


def test_posed_views_validation_and_resize():
    v = _views(size=32)
    with pytest.raises(InputError, match="RGBA"):
        PosedViews(v.images[..., :3], v.cameras)
    with pytest.raises(InputError, match="cameras"):
        PosedViews(v.images[:2], v.cameras)
    bad = v.images.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(InputError, match="NaN"):
        PosedViews(bad, v.cameras)
    small = v.resized(16)
    assert small.images.shape == (3, 16, 16, 4) and small.cameras.width == 16
    assert small.cameras.focal[0].item() == pytest.approx(v.cameras.focal[0].item() / 2)
    # white composite
    rgb = v.rgb_on((1.0, 1.0, 1.0))
    a = v.images[..., 3:]
    assert torch.allclose(rgb, v.images[..., :3] * a + (1 - a))


def test_from_images_and_masks():
    cams = orbit_cameras([0.0, 0.0], [0.0, 90.0], 2.0, 8)
    images, masks = torch.rand(2, 8, 8, 3), torch.rand(2, 8, 8)
    v = PosedViews.from_images_and_masks(images, masks, cams)
    assert torch.equal(v.images[..., 3], masks) and torch.equal(v.images[..., :3], images)
    assert torch.allclose(PosedViews.from_images_and_masks(images, masks, cams, invert_mask=True).masks, 1 - masks)
    with pytest.raises(InputError, match="one mask and one camera per image"):
        PosedViews.from_images_and_masks(images, masks[:1], cams)
    with pytest.raises(InputError, match="masks are 4x4 but images are 8x8"):
        PosedViews.from_images_and_masks(images, masks[:, :4, :4], cams)
    with pytest.raises(InputError, match="image batch"):
        PosedViews.from_images_and_masks(images[0], masks, cams)
