"""The demo object: a textured mesh built in code, recognisable from every side."""

import pytest

from microdreamer_core.eval.demo_object import make_demo_mesh
from microdreamer_core.render.mesh import render_mesh
from microdreamer_core.scene.cameras import orbit_cameras


def test_demo_object_renders_and_is_not_front_back_symmetric():
    mesh = make_demo_mesh(128)
    assert mesh.texture.shape == (128, 128, 3) and mesh.uvs is not None
    assert float(mesh.vertices.norm(dim=-1).max()) == pytest.approx(0.55, abs=1e-4)
    cams = orbit_cameras([0.0, 0.0], [0.0, 180.0], 2.0, 96)
    out = render_mesh(mesh, cams, backend="torch")
    front, back = out.rgb[0][out.alpha[0, ..., 0] > 0], out.rgb[1][out.alpha[1, ..., 0] > 0]
    assert front.mean(0)[0] > front.mean(0)[2] + 0.3  # red / yellow front
    assert back.mean(0)[2] > back.mean(0)[0] + 0.2  # blue / white back
    covered = (out.alpha[0] + out.alpha[1].flip(1))[..., 0] > 0
    assert (out.rgb[0] - out.rgb[1].flip(1)).abs()[covered].mean() > 0.2  # not a mirror image either
    side = render_mesh(mesh, orbit_cameras([0.0], [90.0], 2.0, 96), backend="torch").alpha[0, ..., 0]
    assert (side - side.flip(1)).abs().sum() > 20  # seen from the side, the nose breaks the silhouette symmetry
