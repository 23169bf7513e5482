"""The condition: one path from user input (prompt, image, mask) to the models' Condition for every
host, and the reference-image preprocessing (the object re-centred to fill 80% of the canvas)."""

import pytest
import torch
from tiny_models import blob_rgba

from microdreamer_core.diffusion.models import DEFAULT_NEGATIVE_PROMPT
from microdreamer_core.errors import InputError
from microdreamer_core.pipeline.condition import DEFAULT_NEGATIVE, make_condition, object_alpha, recenter_rgba


def test_object_is_centred_and_fills_eighty_percent():
    rgb = torch.zeros(100, 160, 3)
    rgb[..., 0] = 1.0
    alpha = torch.zeros(100, 160)
    alpha[10:30, 100:140] = 1.0  # a 20 x 40 box off-centre
    out = recenter_rgba(rgb, alpha, size=64)
    assert out.shape == (64, 64, 4)
    ys, xs = torch.nonzero(out[..., 3] > 0.5, as_tuple=True)
    width, height = int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)
    assert abs(width - 0.8 * 64) <= 1.5 and abs(height - 0.4 * 64) <= 1.5
    assert abs(float(xs.float().mean()) - 31.5) <= 1.0 and abs(float(ys.float().mean()) - 31.5) <= 1.0
    assert float(out[..., 0][out[..., 3] > 0.99].min()) > 0.99  # colours kept


def test_rgba_alpha_is_used_and_bad_input_is_refused():
    img = torch.zeros(32, 32, 4)
    img[8:24, 8:24] = 1.0
    assert recenter_rgba(img, size=32)[16, 16, 3] == 1.0
    with pytest.raises(InputError, match="mask is empty"):
        recenter_rgba(torch.rand(16, 16, 3), torch.zeros(16, 16))
    with pytest.raises(InputError, match="expected one"):
        recenter_rgba(torch.rand(2, 16, 16, 3))


def test_the_nodes_build_their_condition_the_same_way():
    """Model kind None (the nodes, where the model comes later): 'default' is the paper's negative
    prompt, and an image gets the same checks and preprocessing as for an image model."""
    rgb, alpha = blob_rgba()[..., :3], blob_rgba()[..., 3]
    cond = make_condition(None, "a duck", DEFAULT_NEGATIVE)
    assert cond.negative_prompt == DEFAULT_NEGATIVE_PROMPT and cond.image is None
    assert make_condition(None, "a duck", " default ").negative_prompt == DEFAULT_NEGATIVE_PROMPT
    assert make_condition(None, "a duck", "blurry").negative_prompt == "blurry"
    assert make_condition("zero123", image=blob_rgba()).negative_prompt == ""  # the paper's for Zero123: none
    batch = make_condition(None, "", DEFAULT_NEGATIVE, rgb[None], alpha[None], size=64, elevation=-10.0)
    assert torch.equal(batch.image, make_condition("imagedream", image=rgb, mask=alpha, size=64).image)
    assert batch.image.shape == (64, 64, 4) and batch.reference_elevation == -10.0
    with pytest.raises(InputError, match="nothing to condition on"):
        make_condition(None, "  ")
    with pytest.raises(InputError, match="covers the whole image"):
        make_condition(None, "a duck", image=rgb[None], mask=torch.ones(1, 64, 64))
    with pytest.raises(InputError, match="has no mask"):
        make_condition(None, "a duck", image=rgb[None])


def test_an_rgba_images_alpha_must_separate_the_object():
    clear, opaque = torch.zeros(8, 8, 4), torch.ones(8, 8, 4)
    with pytest.raises(InputError, match="the input image is transparent everywhere"):
        make_condition("zero123", image=clear)
    with pytest.raises(InputError, match="the input image has no transparent background"):
        make_condition("imagedream", image=opaque)
    with pytest.raises(InputError, match="photo.png is transparent everywhere"):
        object_alpha(clear, what="photo.png")
    assert torch.equal(object_alpha(blob_rgba()), blob_rgba()[..., 3])


def test_condition_errors_name_the_fix():
    rgb = blob_rgba()[..., :3]
    with pytest.raises(InputError, match="prompt"):
        make_condition("mvdream", "  ")
    with pytest.raises(InputError, match="image-to-3D"):
        make_condition("zero123", "a duck")
    with pytest.raises(InputError, match="no mask"):
        make_condition("imagedream", "", image=rgb)
    with pytest.raises(InputError, match="empty"):
        make_condition("zero123", image=rgb, mask=torch.zeros(64, 64))
    with pytest.raises(InputError, match="invert_mask"):
        make_condition("zero123", image=rgb, mask=torch.zeros(64, 64), invert_mask=True)  # all object = no background
    cond = make_condition("zero123", image=rgb, mask=1 - blob_rgba()[..., 3], invert_mask=True)  # LoadImage convention
    assert cond.image.shape == (256, 256, 4)
    alpha = cond.image[..., 3] > 0.5
    ys, xs = alpha.nonzero(as_tuple=True)
    assert abs(int(ys.max() - ys.min() + 1) - 0.8 * 256) <= 2 or abs(int(xs.max() - xs.min() + 1) - 0.8 * 256) <= 2


def test_a_background_removal_mask_plugs_in_as_core_remove_background_gives_it():
    """Core Remove Background outputs a MASK, 1 = object, possibly at its model's resolution: it goes
    straight into the Condition with the LoadImage IMAGE (RGB, or RGBA whose alpha it overrides)."""
    h = w = 96
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    disc = (((yy - 40) ** 2 + (xx - 50) ** 2) < 20**2).float()
    rgb = torch.rand(1, h, w, 3, generator=torch.Generator().manual_seed(0))
    ref = make_condition("zero123", image=rgb, mask=disc[None]).image
    big = torch.nn.functional.interpolate(disc[None, None], size=(192, 192), mode="nearest")[0]
    at_model_size = make_condition("zero123", image=rgb, mask=big).image
    assert (at_model_size - ref).abs().mean() < 0.02
    rgba = torch.cat([rgb, torch.ones(1, h, w, 1)], dim=-1)  # opaque alpha: the mask decides
    assert torch.equal(make_condition("zero123", image=rgba, mask=disc[None]).image, ref)
    with pytest.raises(InputError, match="the mask is 192x96 but the image is 96x96"):
        make_condition("zero123", image=rgb, mask=torch.ones(1, 96, 192))
