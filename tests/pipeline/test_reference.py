"""The reference view (microdreamer_core.pipeline.reference): the input photo at its own camera,
and stage 1's front-view loss."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from tiny_models import blob_rgba  # tests/ is on sys.path

from microdreamer_core.diffusion.models import Condition
from microdreamer_core.pipeline.condition import make_condition, rgb_alpha_at
from microdreamer_core.pipeline.reference import ReferenceView, reference_image, reference_loss
from microdreamer_core.pipeline.sir import SIRConfig
from microdreamer_core.scene.cameras import orbit_cameras


def test_reference_view_camera_follows_the_input_elevation():
    """The reference loss renders from the photo's camera, which Zero123 is conditioned on."""
    for elevation in (0.0, -20.0):
        cond = make_condition("zero123", image=blob_rgba(), elevation=elevation)
        cfg = SIRConfig(resolution=32)
        ref = cfg.reference.image(cond, cfg.resolution, cfg.cameras.fovy_deg, torch.device("cpu"))
        cam, rgb, alpha = ref.camera, ref.rgb, ref.alpha
        expected = orbit_cameras([elevation], [0.0], 2.0, 32)
        assert torch.allclose(cam.c2w, expected.c2w) and rgb.shape == (1, 32, 32, 3) and alpha.shape == (1, 32, 32)


def test_reference_image_is_the_photo_on_white_and_none_without_one():
    cond = make_condition("zero123", image=blob_rgba(), elevation=-10.0)
    ref = reference_image(cond, 2.5, 24, 40.0)
    rgb, alpha = rgb_alpha_at(cond.image, 24)
    assert torch.equal(ref.rgb, rgb[None]) and torch.equal(ref.alpha, alpha[None])
    assert torch.allclose(ref.camera.c2w, orbit_cameras([-10.0], [0.0], 2.5, 24, 40.0).c2w)
    assert reference_image(None, 2.0, 24, 40.0) is None
    assert reference_image(Condition(image=None), 2.0, 24, 40.0) is None
    assert ReferenceView(rgb_weight=0.0, mask_weight=0.0).image(cond, 24, 40.0) is None  # the term is off
    assert ReferenceView().enabled and ReferenceView(rgb_weight=0.0).enabled


def test_reference_loss_is_weighted_l1_plus_weighted_squared_alpha():
    cond = make_condition("zero123", image=blob_rgba())
    ref = reference_image(cond, 2.0, 16, 49.1)
    rgb = torch.full((1, 16, 16, 3), 0.5)
    alpha = torch.full((1, 16, 16, 1), 0.25)
    render = SimpleNamespace(rgb=rgb, alpha=alpha)  # the fields of a Gaussian render the loss reads
    loss = reference_loss(render, ref, ReferenceView(rgb_weight=0.3, mask_weight=0.01))
    expected = 0.3 * (rgb - ref.rgb).abs().sum() + 0.01 * ((alpha[..., 0] - ref.alpha) ** 2).sum()
    assert float(loss) == pytest.approx(float(expected), rel=1e-6)
