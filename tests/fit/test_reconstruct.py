"""Plain multi-view reconstruction (microdreamer_core.fit.reconstruct) on a small rendered scene:
the fit gets closer, is deterministic per seed, works under inference mode, and refuses bad input."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from microdreamer_core.errors import Cancelled, InputError
from microdreamer_core.fit.fitter import FitRuntime
from microdreamer_core.fit.init import InitialGaussians
from microdreamer_core.fit.reconstruct import ReconstructConfig, reconstruct, view_targets
from microdreamer_core.render.gaussians import render_gaussians
from microdreamer_core.scene.cameras import orbit_cameras
from microdreamer_core.scene.gaussians import init_ball
from microdreamer_core.scene.views import PosedViews

SMALL = ReconstructConfig(
    steps=12, init=InitialGaussians(num=300), runtime=FitRuntime(device="cpu", gaussian_backend="torch")
)


@pytest.fixture(scope="module")
def views() -> PosedViews:
    """Four RGBA renders (24 px) of a random coloured ball of Gaussians."""
    g = init_ball(200, 0.4, 0.8, generator=torch.Generator().manual_seed(1))
    g.sh0.copy_(torch.randn(g.sh0.shape, generator=torch.Generator().manual_seed(2)))
    cams = orbit_cameras([0.0, 20.0, -10.0, 30.0], [0.0, 90.0, 180.0, 270.0], 2.0, 24)
    with torch.no_grad():
        out = render_gaussians(g, cams, torch.ones(3), "torch")
    return PosedViews(torch.cat([out.rgb, out.alpha], -1), cams)


def test_view_targets_composite_on_the_background(views):
    cams, rgb, alpha = view_targets(views, torch.device("cpu"), (0.0, 0.0, 0.0))
    assert rgb.shape == (4, 24, 24, 3) and alpha.shape == (4, 24, 24) and torch.equal(cams.c2w, views.cameras.c2w)
    assert torch.allclose(rgb, views.images[..., :3] * views.images[..., 3:])


def test_fit_gets_closer_and_is_deterministic(views):
    events = []
    a = reconstruct(views, SMALL, progress=lambda d, n: events.append((d, n)))
    assert len(a.losses) == 12 and a.losses[-1] < a.losses[0]
    assert events == [(i, 12) for i in range(1, 13)]
    b = reconstruct(views, SMALL)
    assert a.losses == b.losses and torch.equal(a.gaussians.means, b.gaussians.means)
    other = dataclasses.replace(SMALL, runtime=dataclasses.replace(SMALL.runtime, seed=1))
    assert not torch.equal(reconstruct(views, other).gaussians.means, a.gaussians.means)


def test_works_under_inference_mode_and_at_another_resolution(views):
    with torch.inference_mode():
        r = reconstruct(views, dataclasses.replace(SMALL, steps=2, resolution=16))
    assert len(r.losses) == 2 and torch.isfinite(r.gaussians.means).all()


def test_refuses_bad_input_and_stops_on_cancel(views):
    with pytest.raises(InputError, match="steps must be >= 0"):
        reconstruct(views, dataclasses.replace(SMALL, steps=-1))
    with pytest.raises(InputError, match="PosedViews"):
        reconstruct(views.images, SMALL)
    empty = PosedViews(torch.cat([views.images[..., :3], torch.zeros_like(views.images[..., 3:])], -1), views.cameras)
    with pytest.raises(InputError, match="fully transparent"):
        reconstruct(empty, SMALL)
    with pytest.raises(Cancelled, match="step 0"):
        reconstruct(views, SMALL, cancel=lambda: True)
