import pytest
import torch
import trimesh

from microdreamer_core.errors import Cancelled, InputError
from microdreamer_core.render.gaussians import render_gaussians
from microdreamer_core.render.mesh import render_mesh
from microdreamer_core.render.turntable import TurntableConfig, model_bounds, parse_color, render_turntable
from microdreamer_core.scene.cameras import front_camera
from microdreamer_core.scene.gaussians import init_ball, rgb_to_sh0
from microdreamer_core.scene.mesh import Mesh

BG = (0.2, 0.4, 0.6)


def _gaussians():
    """A ball of Gaussians, point-symmetric about the origin (so its box is centred there), red
    on the +x side and blue on the -x side."""
    half = init_ball(150, radius=0.4, generator=torch.Generator().manual_seed(0))
    g = half.map(lambda t: torch.cat([t, t]))
    g.means[150:] = -g.means[:150]
    g.opacities[:] = 4.0
    red, blue = torch.tensor([0.9, 0.1, 0.1]), torch.tensor([0.1, 0.1, 0.9])
    g.sh0[:] = rgb_to_sh0(torch.where(g.means[:, :1] > 0, red, blue))[:, None]
    return g


def _cube(size: float = 0.6) -> Mesh:
    """A cube centred on the origin with a different colour at each corner."""
    box = trimesh.creation.box(extents=(size, size, size))
    v = torch.tensor(box.vertices, dtype=torch.float32)
    return Mesh(v, torch.tensor(box.faces), vertex_colors=(v / size + 0.5).clamp(0, 1))


@pytest.mark.parametrize("kind", ["gaussians", "mesh"])
def test_frame_0_is_the_front_view_and_frames_turn(kind):
    model = _gaussians() if kind == "gaussians" else _cube()
    config = TurntableConfig(frames=4, elevation=-20.0, resolution=32, background=BG, radius=2.0, mesh_supersample=1)
    frames = render_turntable(model, config)
    assert frames.shape == (4, 32, 32, 3) and frames.dtype == torch.float32
    assert 0.0 <= frames.min() and frames.max() <= 1.0

    front = front_camera(-20.0, 2.0, 32)
    with torch.no_grad():
        direct = (render_gaussians if kind == "gaussians" else render_mesh)(model, front, BG).rgb[0]
    torch.testing.assert_close(frames[0], direct.clamp(0, 1), atol=1e-5, rtol=0)
    for i in range(1, 4):  # each quarter turn shows another side
        assert (frames[i] - frames[0]).abs().mean() > 0.02, i
    for corner in (frames[:, 0, 0], frames[:, -1, -1]):  # nothing there: the background
        torch.testing.assert_close(corner, torch.tensor(BG).expand(4, 3), atol=1e-4, rtol=0)


def test_mesh_supersampling_only_smooths_edges():
    cube = _cube()
    sharp = render_turntable(cube, TurntableConfig(frames=2, resolution=32, mesh_supersample=1))
    smooth = render_turntable(cube, TurntableConfig(frames=2, resolution=32))
    diff = (smooth - sharp).abs().amax(-1)
    assert diff.mean() < 0.02 and diff.max() > 0.1  # the same picture, softer at the silhouette


def test_the_orbit_frames_the_model_wherever_it_is():
    """The bounding sphere spans `fill` of the frame's height, around the model's own centre."""
    sphere = trimesh.creation.icosphere(subdivisions=3, radius=1.0)
    v = torch.tensor(sphere.vertices, dtype=torch.float32)
    config = TurntableConfig(frames=3, elevation=0.0, resolution=64, fill=0.5, mesh_supersample=1)
    at_origin = render_turntable(Mesh(v, torch.tensor(sphere.faces)), config)
    moved = Mesh(v * 7.0 + torch.tensor([30.0, -4.0, 2.0]), torch.tensor(sphere.faces))
    torch.testing.assert_close(render_turntable(moved, config), at_origin, atol=0.05, rtol=0)
    covered = (at_origin[0] < 0.99).any(-1)
    rows = covered.any(1).nonzero()
    height = int(rows.max() - rows.min() + 1)
    assert abs(height - 0.5 * 64) <= 2, height
    assert abs(float(rows.float().mean()) - 31.5) <= 1.0  # centred


def test_framing_ignores_transparent_gaussians():
    g = _gaussians()
    centre, radius = model_bounds(g)
    assert torch.allclose(centre, torch.zeros(3), atol=1e-6) and 0.3 < radius <= 0.4
    far = g.map(lambda t: torch.cat([t, t[:1]]))
    far.means[-1] = torch.tensor([50.0, 0.0, 0.0])
    far.opacities[-1] = -8.0  # a faint floater far away
    assert model_bounds(far)[1] == pytest.approx(radius)


def test_progress_and_cancel():
    seen = []
    render_turntable(_cube(), TurntableConfig(frames=3, resolution=16), progress=lambda d, t: seen.append((d, t)))
    assert seen == [(1, 3), (2, 3), (3, 3)]
    calls = []
    with pytest.raises(Cancelled):
        render_turntable(_cube(), TurntableConfig(frames=3, resolution=16), cancel=lambda: calls.append(1) or True)
    assert calls == [1]


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"frames": 360, "resolution": 1024}, "megapixels"),
        ({"frames": 0}, "frames"),
        ({"resolution": 4096}, "resolution"),
        ({"elevation": 90.0}, "elevation"),
        ({"elevation": float("nan")}, "elevation"),
        ({"background": (1.0, 2.0, 0.0)}, "background"),
        ({"fill": 1.0}, "fill"),
    ],
)
def test_bad_configs_are_refused_with_the_fix(kwargs, words):
    with pytest.raises(InputError, match=words):
        TurntableConfig(**kwargs)


def test_bad_models_are_refused():
    with pytest.raises(InputError, match="empty"):
        render_turntable(_gaussians()[torch.zeros(300, dtype=torch.bool)])
    with pytest.raises(InputError, match="Gaussians or a mesh"):
        render_turntable(torch.zeros(3))


def test_parse_color():
    assert parse_color("#ff8000") == (1.0, 128 / 255, 0.0)
    assert parse_color(" 00FF00 ") == (0.0, 1.0, 0.0)
    for bad in ("white", "#fff", "#gg0000", ""):
        with pytest.raises(InputError, match="hex colour"):
            parse_color(bad)


def test_a_mesh_without_colour_is_lit_from_the_camera_not_a_flat_silhouette():
    import trimesh

    from microdreamer_core.render.turntable import TurntableConfig, render_turntable
    from microdreamer_core.scene.mesh import Mesh

    sphere = trimesh.creation.icosphere(subdivisions=3, radius=0.5)
    mesh = Mesh(torch.as_tensor(sphere.vertices, dtype=torch.float32), torch.as_tensor(sphere.faces))
    frame = render_turntable(mesh, TurntableConfig(frames=1, resolution=64, elevation=0.0))[0]
    centre, rim = frame[32, 32].mean(), frame[32, 8].mean()  # facing the camera vs near the rim
    assert centre > rim + 0.1, (float(centre), float(rim))  # unlit, both would be the same grey
    assert frame[0, 0].tolist() == [1.0, 1.0, 1.0]  # the background stays white
