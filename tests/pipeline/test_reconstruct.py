"""reconstruct_3dgs: the one call behind the SIR Reconstruct 3DGS node decides between the plain
reconstruction of posed views and SIR with a model, and how views without masks are fitted."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from tiny_models import condition_for

from microdreamer_core.errors import InputError
from microdreamer_core.fit.reconstruct import ReconstructConfig, reconstruct
from microdreamer_core.pipeline.presets import get_preset
from microdreamer_core.pipeline.reconstruct import reconstruct_3dgs
from microdreamer_core.scene.cameras import orbit_cameras
from microdreamer_core.scene.views import PosedViews


def _views(size: int = 24):
    """Four views of a blue square on white, its masks and cameras."""
    cams = orbit_cameras([-10.0] * 4, [0, 90, 180, 270], 2.5, size)
    images = torch.ones(4, size, size, 3)
    images[:, 8:16, 8:16] = torch.tensor([0.2, 0.4, 0.8])
    masks = torch.zeros(4, size, size)
    masks[:, 8:16, 8:16] = 1.0
    return images, masks, cams


def test_views_alone_are_reconstructed_and_without_masks_only_their_colour():
    images, masks, cams = _views()
    plain = reconstruct(PosedViews.from_images_and_masks(images, masks, cams), ReconstructConfig(steps=5)).gaussians
    assert torch.equal(reconstruct_3dgs(images, masks, cams, steps=5).means, plain.means)
    assert torch.equal(reconstruct_3dgs(images, 1 - masks, cams, invert_mask=True, steps=5).means, plain.means)
    # No masks: the whole image counts, and the alpha term is off (it would fit opaque background).
    unmasked = PosedViews.from_images_and_masks(images, torch.ones(4, 24, 24), cams)
    colour = reconstruct(unmasked, dataclasses.replace(ReconstructConfig(steps=5), mask_weight=0.0)).gaussians
    assert torch.equal(reconstruct_3dgs(images, None, cams, steps=5).means, colour.means)


def test_a_model_runs_sir_with_its_kinds_preset(models):
    model, cond = models["mvdream"], condition_for("mvdream")
    before = model.nfe
    g = reconstruct_3dgs(model=model, condition=cond, iterations=0, resolution=32, image_size=32, seed=3)
    sir = get_preset("mvdream").sir  # "auto": the preset of the model's kind; K = 0: the initial views only
    assert model.nfe - before == dataclasses.replace(sir, iterations=0).planned_nfes() > 0 and g.num > 0
    images, _, cams = _views()
    before = model.nfe
    reconstruct_3dgs(images, None, cams, model, cond, iterations=0, resolution=24, image_size=32)
    assert model.nfe == before  # connected views replace the sampled ones


def test_inputs_that_cannot_be_reconstructed_name_the_fix(models):
    images, masks, cams = _views()
    with pytest.raises(InputError, match="nothing to reconstruct"):
        reconstruct_3dgs()
    with pytest.raises(InputError, match="need both images and cameras"):
        reconstruct_3dgs(images, masks)
    with pytest.raises(InputError, match="needs a condition: connect a MicroDreamer Condition node"):
        reconstruct_3dgs(model=models["mvdream"])
    with pytest.raises(InputError, match="preset 'zero123' is for zero123 models.*: choose 'auto' or 'mvdream'"):
        reconstruct_3dgs(model=models["mvdream"], condition=condition_for("mvdream"), preset="zero123")
