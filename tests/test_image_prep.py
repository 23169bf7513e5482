"""Reference-image preprocessing: the object is re-centred to fill 80% of the canvas."""

import pytest
import torch

from microdreamer_core.errors import InputError
from microdreamer_core.pipeline.image_prep import recenter_rgba


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
