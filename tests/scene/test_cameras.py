"""Camera conventions of METHOD.md: y-up, OpenGL c2w, negative elevation = above, azimuth 0 from +z."""

import math

import pytest
import torch
from reference_cameras import _authors_get_camera, _kiui_orbit, _reference_front_vector

from microdreamer_core.errors import InputError
from microdreamer_core.scene.cameras import (
    CAMERA_PRESETS,
    Cameras,
    front_camera,
    orbit_cameras,
    orbit_pose,
    preset_cameras,
    relative_elevation_range,
    sample_orbit_cameras,
)


def test_orbit_positions_follow_the_convention():
    cams = orbit_cameras([0, 0, -90, 90, -30], [0, 90, 0, 0, 0], radius=2.0)
    pos = cams.positions
    assert torch.allclose(pos[0], torch.tensor([0.0, 0.0, 2.0]), atol=1e-5)  # azimuth 0: from +z
    assert torch.allclose(pos[1], torch.tensor([2.0, 0.0, 0.0]), atol=1e-5)  # azimuth 90: from +x
    assert pos[2, 1] == pytest.approx(2.0, abs=1e-5)  # elevation -90: straight above
    assert pos[3, 1] == pytest.approx(-2.0, abs=1e-5)  # elevation +90: below
    assert pos[4, 1] == pytest.approx(1.0, abs=1e-5)  # elevation -30: above, at r*sin(30)


def test_cameras_look_at_the_origin_and_are_rotations():
    cams = orbit_cameras(
        torch.tensor([-89.9, -45.0, 0.0, 30.0, 89.9]), torch.tensor([10.0, 100.0, 200.0, 300.0, 45.0]), 2.5
    )
    R = cams.c2w[:, :3, :3]
    assert torch.allclose(R @ R.transpose(1, 2), torch.eye(3).expand(5, 3, 3), atol=1e-5)
    assert torch.allclose(torch.linalg.det(R), torch.ones(5), atol=1e-5)
    # OpenGL: the camera looks down its -z axis, i.e. towards the origin.
    forward = -R[:, :, 2]
    to_origin = torch.nn.functional.normalize(-cams.positions, dim=-1)
    assert torch.allclose(forward, to_origin, atol=1e-5)
    # Up vector has a positive world-y component for non-polar cameras.
    assert (R[1:4, 1, 1] > 0).all()


def test_straight_down_view_is_finite():
    c2w = orbit_pose(torch.tensor(-90.0), torch.tensor(0.0), 2.0)
    c2w_exact = torch.eye(4)
    from microdreamer_core.scene.cameras import look_at

    R = look_at(torch.tensor([0.0, 2.0, 0.0]), torch.zeros(3))
    assert torch.isfinite(R).all() and torch.allclose(R @ R.T, torch.eye(3), atol=1e-6)
    assert torch.isfinite(c2w).all() and not torch.equal(c2w, c2w_exact)


def test_opencv_projection_puts_origin_at_image_centre_and_up_is_up():
    cams = orbit_cameras([0.0], [0.0], 2.0, resolution=(128, 96))
    w2c, K = cams.w2c_opencv()[0], cams.intrinsics()[0]

    def project(p):
        pc = (w2c @ torch.tensor([*p, 1.0]))[:3]
        assert pc[2] > 0  # in front of the camera (OpenCV looks down +z)
        uv = K @ (pc / pc[2])
        return uv[:2]

    assert torch.allclose(project([0.0, 0.0, 0.0]), torch.tensor([64.0, 48.0]), atol=1e-4)
    assert project([0.0, 0.5, 0.0])[1] < 48.0  # world +y appears higher (smaller row)
    assert project([0.5, 0.0, 0.0])[0] > 64.0  # from +z, world +x is on the right
    # focal from fovy
    assert K[1, 1] == pytest.approx(96 / (2 * math.tan(math.radians(49.1) / 2)), rel=1e-5)


def test_opengl_projection_matches_opencv_pixels():
    cams = orbit_cameras([-20.0], [33.0], 2.0, resolution=64)
    p = torch.tensor([0.1, -0.2, 0.3, 1.0])
    clip = cams.full_projection()[0] @ p
    ndc = clip[:3] / clip[3]
    px_gl = torch.stack([(ndc[0] + 1) * 32, (1 - ndc[1]) * 32])  # row 0 at the top
    pc = (cams.w2c_opencv()[0] @ p)[:3]
    px_cv = (cams.intrinsics()[0] @ (pc / pc[2]))[:2]
    assert torch.allclose(px_gl, px_cv, atol=1e-3)


def test_spherical_roundtrip():
    el, az = torch.tensor([-30.0, 10.0, 25.0]), torch.tensor([0.0, 120.0, -60.0])
    cams = orbit_cameras(el, az, 2.0)
    e, a, r = cams.spherical()
    assert (
        torch.allclose(e, el, atol=1e-4)
        and torch.allclose(a, az, atol=1e-4)
        and torch.allclose(r, torch.full((3,), 2.0))
    )


@pytest.mark.parametrize("elevation", [0.0, 5.0, 15.0, -10.0])
def test_mvdream_vectors_of_our_orbit_are_the_authors_get_camera(elevation):
    """Our azimuths -90, 0, 90, 180 are the authors' 0, 90, 180, 270: their second view is the front."""
    ours = orbit_cameras([-elevation] * 4, [-90.0, 0.0, 90.0, 180.0], 2.5).mvdream_embedding()
    expected = torch.from_numpy(_authors_get_camera(4, elevation)).float()
    assert torch.allclose(ours, expected, atol=1e-6)


@pytest.mark.parametrize("elevation", [0.0, -20.0, 10.0])
@pytest.mark.parametrize("radius", [2.0, 2.5])
def test_our_front_camera_is_the_references_front_for_mvdream(elevation, radius):
    ours = front_camera(elevation, radius).mvdream_embedding()[0]
    expected = torch.from_numpy(_reference_front_vector(elevation, radius)).float()
    assert torch.allclose(ours, expected, atol=1e-6)
    # The front camera looks at the object from +z in our world: the object's front faces +z.
    assert torch.allclose(front_camera(0.0, radius).positions[0], torch.tensor([0.0, 0.0, radius]), atol=1e-6)


def test_kiui_oracle_matches_our_orbit_pose():
    """The oracle above is kiui's convention, which is ours: same poses for the same angles."""
    for el, az in [(0, 0), (-30, 45), (20, -120), (60, 200)]:
        assert torch.allclose(
            orbit_pose(float(el), float(az), 2.0).double(), torch.from_numpy(_kiui_orbit(el, az, 2.0)), atol=1e-6
        )


def _reference_offsets(min_ver: int, max_ver: int, elevation: float) -> range:
    """The reference's ``np.random.randint(min_ver', max_ver')`` support around an input elevation."""
    lo = max(min(min_ver, min_ver - elevation), -80 - elevation)
    hi = min(max(max_ver, max_ver - elevation), 80 - elevation)
    return range(int(lo), int(hi))


@pytest.mark.parametrize("elevation", [0, -20, 15, -60, 75])
@pytest.mark.parametrize("preset,yaml_range", [("zero123", (-30, 30)), ("imagedream", (-5, 0))])
def test_sir_elevations_are_relative_to_the_input_elevation(elevation, preset, yaml_range):
    """Every camera sits at ``elevation + ver`` with ``ver`` over exactly the reference's range."""
    expected = _reference_offsets(*yaml_range, elevation)
    lo, hi = relative_elevation_range(CAMERA_PRESETS[preset].elevation_range, elevation)
    assert (lo, hi) == (expected.start, expected.stop - 1)
    gen = torch.Generator().manual_seed(0)
    seen = set()
    for _ in range(400):
        el, _, _ = sample_orbit_cameras(preset, 32, gen, reference_elevation=float(elevation)).spherical()
        seen |= {round(float(e) - elevation) for e in el}
    assert seen <= set(expected) and min(seen) == lo and max(seen) == hi
    assert all(-80 <= elevation + v < 80 for v in seen)


def test_presets_and_sampler():
    gen = torch.Generator().manual_seed(0)
    z = sample_orbit_cameras("zero123", 64, gen)
    assert len(z) == 6 and z.width == 64
    el, az, r = z.spherical()
    assert torch.allclose(r, torch.full((6,), 2.0), atol=1e-5)
    assert ((el >= -30 - 1e-4) & (el <= 29 + 1e-4)).all()
    assert torch.allclose(el, el.round(), atol=1e-3)  # integer degrees
    d = torch.diff(torch.rad2deg(torch.deg2rad(az)) % 360)
    assert torch.allclose(torch.remainder(d, 360), torch.full((5,), 60.0), atol=1e-3)
    i = sample_orbit_cameras("imagedream", 64, gen)
    el, az, r = i.spherical()
    assert len(i) == 4 and torch.allclose(r, torch.full((4,), 2.5), atol=1e-5)
    assert torch.allclose(el, el[0].expand(4), atol=1e-4) and -5 - 1e-4 <= el[0] <= -1 + 1e-4
    assert CAMERA_PRESETS["mvdream"].num_views == 4
    # deterministic for a seed
    a = sample_orbit_cameras("zero123", 64, torch.Generator().manual_seed(7))
    b = sample_orbit_cameras("zero123", 64, torch.Generator().manual_seed(7))
    assert torch.equal(a.c2w, b.c2w)


def test_preset_cameras_draw_from_the_seed_or_place_fixed_views():
    """The Orbit Cameras node's one call: a seeded draw, or one camera per azimuth."""
    drawn = preset_cameras("zero123", 64, seed=7)
    assert torch.equal(drawn.c2w, sample_orbit_cameras("zero123", 64, torch.Generator().manual_seed(7)).c2w)
    fixed = preset_cameras("imagedream", 32, azimuths=[0, 90, 180], elevations=[-10.0])  # one elevation for all
    assert torch.allclose(fixed.c2w, orbit_cameras([-10.0] * 3, [0, 90, 180], 2.5, 32).c2w) and fixed.width == 32
    assert torch.allclose(
        preset_cameras("zero123", 32, azimuths=[0, 90]).c2w, orbit_cameras([0.0, 0.0], [0, 90], 2.0, 32).c2w
    )
    far = preset_cameras("zero123", 32, azimuths=[0, 90], elevations=[5, -5], radius=3.0)
    assert torch.allclose(far.spherical()[2], torch.full((2,), 3.0), atol=1e-5)
    with pytest.raises(InputError, match="3 elevations but 2 azimuths"):
        preset_cameras("zero123", 32, azimuths=[0, 90], elevations=[0, 10, 20])
    with pytest.raises(InputError, match="elevations are given but azimuths are empty"):
        preset_cameras("zero123", 32, elevations=[10])


def test_batch_helpers_and_validation():
    cams = orbit_cameras([0, 10, 20], [0, 90, 180], 2.0, 32)
    assert len(cams[1:]) == 2 and len(cams[0]) == 1 and len(Cameras.cat([cams, cams])) == 6
    assert cams.with_resolution(64).focal[0] == pytest.approx(2 * cams.focal[0].item())
    with pytest.raises(ValueError):
        Cameras(torch.full((1, 4, 4), float("nan")), 0.8, 32, 32)
    with pytest.raises(ValueError):
        Cameras.cat([cams, cams.with_resolution(64)])
