"""One front for every model: azimuth 0 is the input view, the object's front, facing +z.

MVDream and ImageDream were trained with the front at *their* azimuth 90; the library turns their
camera vectors so that our azimuth 0 is that view. These tests look at what the UNet really
receives, and at where a whole (tiny-model) pipeline run puts its reference view.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from reference_cameras import _authors_get_camera, _reference_front_vector
from tiny_models import KINDS, blob_rgba, condition_for

from microdreamer_core.diffusion.sampling import sample
from microdreamer_core.pipeline.condition import make_condition
from microdreamer_core.pipeline.generate import generate
from microdreamer_core.pipeline.presets import tiny_preset
from microdreamer_core.pipeline.reference import ReferenceView
from microdreamer_core.scene.cameras import front_camera, orbit_cameras


def _unet_cameras(model, run) -> list[torch.Tensor]:
    """The ``camera`` argument of every UNet call made by ``run()``."""
    seen: list[torch.Tensor] = []

    def hook(_module, _args, kwargs):
        seen.append(kwargs["camera"].detach().float().clone())

    handle = model.unet.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        run()
    finally:
        handle.remove()
    return seen


@pytest.mark.parametrize("kind", ["imagedream", "mvdream"])
def test_the_unet_receives_the_authors_orbit_for_our_front_orbit(kind, models):
    model = models[kind]
    elevation = 10.0  # theirs: positive = above; ours: negative = above
    cams = orbit_cameras([-elevation] * 4, [-90.0, 0.0, 90.0, 180.0], 2.5, 32)
    cond = condition_for(kind)
    seen = _unet_cameras(model, lambda: sample(model, cond, cams, steps=2, seed=0, image_size=32))
    assert len(seen) == 2
    expected = torch.from_numpy(_authors_get_camera(4, elevation)).float()
    for camera in seen:
        frames = camera.reshape(2, -1, 16)  # CFG: [uncond, cond], each one orbit (+ ImageDream's reference frame)
        for half in frames:
            assert torch.allclose(half[:4], expected, atol=1e-6)
            if kind == "imagedream":
                assert torch.count_nonzero(half[4]) == 0
    # our front camera (azimuth 0) is the second view: the reference's front camera
    front = torch.from_numpy(_reference_front_vector(-elevation, 2.5)).float()
    assert torch.allclose(seen[0].reshape(2, -1, 16)[1, 1], front, atol=1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_pipeline_keeps_the_reference_view_at_azimuth_0(kind, models):
    """A whole tiny run with the front terms switched on: the input photo's camera is azimuth 0
    at the photo's elevation in SIR and in texture refinement, for every preset."""
    elevation = -15.0
    if kind == "mvdream":
        cond = make_condition(kind, "a yellow rubber duck")
    else:
        cond = make_condition(kind, "", image=blob_rgba(), elevation=elevation)
    p = tiny_preset(kind, iterations=1, init_steps=2, steps_per_iteration=1)
    p = dataclasses.replace(
        p,
        sir=dataclasses.replace(p.sir, reference=ReferenceView(rgb_weight=0.3, mask_weight=0.01)),
        texture=dataclasses.replace(p.texture, reference_weight=1.0, steps=1),
    )
    result = generate(models[kind], cond, p)
    cameras = [result.sir.reference_camera, result.texture.reference_camera]
    if kind == "mvdream":  # text-to-3D: no input photo, no reference view
        assert cameras == [None, None]
        return
    for cam in cameras:
        el, az, r = cam.spherical()
        assert abs(float(az[0])) < 1e-4 and abs(float(el[0]) - elevation) < 1e-4
        assert torch.allclose(cam.c2w, front_camera(elevation, float(r[0])).c2w, atol=1e-5)
    assert result.sir.reference_camera.width == p.sir.resolution


def test_condition_for_zero123_is_relative_to_the_front():
    """Stable Zero123 sees our front camera as 'no rotation' (d_azimuth 0, d_elevation 0)."""
    from microdreamer_core.diffusion.models import Zero123Model

    rel = Zero123Model.relative_camera(front_camera(-20.0), -20.0)
    assert torch.allclose(rel[0, :3], torch.tensor([0.0, 0.0, 1.0]), atol=1e-6)
