"""Interchange with ComfyUI's core SPLAT layout: frame, activations, SH bands, round trips."""

import numpy as np
import pytest
import torch

from microdreamer_core.errors import InputError
from microdreamer_core.io.ply import load_ply, save_ply
from microdreamer_core.render.gaussians import render_gaussians
from microdreamer_core.scene.cameras import Cameras, orbit_cameras
from microdreamer_core.scene.gaussians import SH_C0, Gaussians
from microdreamer_core.scene.splat import (
    flip_yz,
    gaussians_to_splat,
    splat_to_gaussians,
)

_FLIP = torch.diag(torch.tensor([1.0, -1.0, -1.0, 1.0]))


def _blob(n=400, degree=3, seed=0) -> Gaussians:
    """A compact coloured cloud with strong view-dependent colour (all SH bands non-zero)."""
    gen = torch.Generator().manual_seed(seed)
    k = (degree + 1) ** 2 - 1
    return Gaussians(
        means=0.35 * torch.randn(n, 3, generator=gen),
        scales=torch.log(0.03 + 0.04 * torch.rand(n, 3, generator=gen)),
        quats=torch.randn(n, 4, generator=gen),
        opacities=torch.randn(n, generator=gen) + 1.0,
        sh0=0.8 * torch.randn(n, 1, 3, generator=gen),
        shN=0.5 * torch.randn(n, k, 3, generator=gen),
    )


def _cameras() -> Cameras:
    # off-axis views: elevations and azimuths where every SH band changes the colour
    return orbit_cameras([20.0, -35.0, 60.0, 5.0], [0.0, 75.0, 200.0, 300.0], radius=2.2, resolution=48)


def _turned(cams: Cameras) -> Cameras:
    """The same cameras expressed in the frame turned 180 deg about x."""
    return Cameras(_FLIP @ cams.c2w, cams.fovy, cams.width, cams.height, cams.near, cams.far)


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_turned_gaussians_seen_from_turned_cameras_render_the_same(degree):
    g = _blob(degree=degree)
    cams = _cameras()
    a = render_gaussians(g, cams, backend="torch").rgb
    b = render_gaussians(flip_yz(g), _turned(cams), backend="torch").rgb
    assert (a - 0.5).abs().max() > 0.2  # the picture is not empty
    assert torch.allclose(a, b, atol=2e-5), (a - b).abs().max()


def test_sh_bands_really_matter_in_the_check_above():
    """Without the SH sign flips the turned render differs: the test above can fail."""
    g = _blob(degree=3)
    t = flip_yz(g)
    t.shN = g.shN.clone()  # turn geometry only
    cams = _cameras()
    a = render_gaussians(g, cams, backend="torch").rgb
    b = render_gaussians(t, _turned(cams), backend="torch").rgb
    assert (a - b).abs().max() > 0.05


def test_splat_layout_activations_and_frame():
    g = _blob(n=10, degree=1)
    s = gaussians_to_splat(g)
    assert s.positions.shape == (1, 10, 3) and s.scales.shape == (1, 10, 3)
    assert s.rotations.shape == (1, 10, 4) and s.opacities.shape == (1, 10, 1) and s.sh.shape == (1, 10, 4, 3)
    assert all(t.dtype == torch.float32 and t.device.type == "cpu" for t in s.as_args())
    # 3DGS frame: y and z negated; activations applied
    assert torch.allclose(s.positions[0], g.means * torch.tensor([1.0, -1.0, -1.0]))
    assert torch.allclose(s.scales[0], g.scales.exp())
    assert torch.allclose(s.opacities[0, :, 0], torch.sigmoid(g.opacities))
    assert torch.allclose(s.rotations[0].norm(dim=-1), torch.ones(10))
    # base colour keeps ComfyUI's reading: rgb = 0.5 + SH_C0 * DC
    assert torch.allclose((0.5 + SH_C0 * s.sh[0, :, 0]).clamp(0, 1), g.base_colors())
    # the rotation is the turned one: R' = diag(1,-1,-1) R
    from microdreamer_core.scene.gaussians import quat_to_rotmat

    r = quat_to_rotmat(g.normalized_quats())
    r2 = quat_to_rotmat(s.rotations[0])
    assert torch.allclose(r2, torch.diag(torch.tensor([1.0, -1.0, -1.0])) @ r, atol=1e-6)


@pytest.mark.parametrize("degree", [0, 3])
def test_round_trip_through_splat_is_exact_up_to_float_error(degree):
    g = _blob(n=64, degree=degree)
    g.quats = torch.nn.functional.normalize(g.quats, dim=-1)
    back = splat_to_gaussians(*gaussians_to_splat(g).as_args())
    for name in Gaussians.PARAMS:
        assert torch.allclose(getattr(back, name), getattr(g, name), atol=2e-5), name
    cams = _cameras()
    assert torch.allclose(
        render_gaussians(g, cams, backend="torch").rgb, render_gaussians(back, cams, backend="torch").rgb, atol=1e-5
    )


def test_batched_splat_with_counts_takes_the_right_item():
    a, b = _blob(n=5, degree=0, seed=1), _blob(n=3, degree=0, seed=2)
    sa, sb = gaussians_to_splat(a), gaussians_to_splat(b)

    def pad(t, n=5):
        return torch.cat([t, torch.zeros(1, n - t.shape[1], *t.shape[2:])], 1)

    fields = [torch.cat([x, pad(y)]) for x, y in zip(sa.as_args(), sb.as_args(), strict=True)]
    got = splat_to_gaussians(*fields, counts=torch.tensor([5, 3]), index=1)
    assert got.num == 3 and torch.allclose(got.means, b.means, atol=1e-6)
    with pytest.raises(InputError, match="item 2 does not exist"):
        splat_to_gaussians(*fields, index=2)


def test_ply_written_like_comfyui_reads_back_as_our_model(tmp_path):
    """A SPLAT saved in the standard 3DGS PLY encoding (log scale, logit opacity; what ComfyUI's
    Create 3D File (from Splat) writes) is our model turned into the 3DGS frame."""
    g = _blob(n=20, degree=1)
    s = gaussians_to_splat(g)
    turned = flip_yz(g)
    # our own PLY writer stores raw parameters; written from the turned model it must hold the
    # same numbers the SPLAT tensors encode
    ply = load_ply(save_ply(turned, tmp_path / "t.ply"))
    assert torch.allclose(ply.means, s.positions[0])
    assert torch.allclose(ply.scales.exp(), s.scales[0], rtol=1e-6)
    assert torch.allclose(torch.sigmoid(ply.opacities), s.opacities[0, :, 0])
    assert torch.allclose(torch.nn.functional.normalize(ply.quats, dim=-1), s.rotations[0])
    assert np.allclose(ply.sh_coeffs().numpy(), s.sh[0].numpy())


def test_bad_splats_are_refused_with_the_reason():
    g = _blob(n=4, degree=0)
    s = gaussians_to_splat(g)
    with pytest.raises(InputError, match=r"\(B, N, 3\)"):
        splat_to_gaussians(s.positions[0], *s.as_args()[1:])
    with pytest.raises(InputError, match="K in 1/4/9/16"):
        splat_to_gaussians(*s.as_args()[:4], torch.zeros(1, 4, 2, 3))
    bad = s.positions.clone()
    bad[0, 0, 0] = float("nan")
    with pytest.raises(InputError, match="NaN"):
        splat_to_gaussians(bad, *s.as_args()[1:])
    with pytest.raises(InputError, match="empty"):
        gaussians_to_splat(g[torch.zeros(4, dtype=torch.bool)])
