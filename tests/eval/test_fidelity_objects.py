"""The mesh-fidelity test objects: valid, textured, normalised meshes that each expose their failure."""

import pytest
import torch

from microdreamer_core.eval.fidelity_objects import (
    FIDELITY_OBJECTS,
    OBJECT_RADIUS,
    make_fidelity_object,
)
from microdreamer_core.eval.metrics import mean_gradient
from microdreamer_core.eval.protocol import render_rgba
from microdreamer_core.meshing.extract import signed_volume
from microdreamer_core.scene.cameras import orbit_cameras

PX_PER_UNIT_128 = 64 / 2.0 / torch.tan(torch.deg2rad(torch.tensor(49.1 / 2)))  # 128 px views at radius 2


@pytest.fixture(scope="module")
def objects():
    return {name: build() for name, build in FIDELITY_OBJECTS.items()}


def test_registry_has_the_four_failure_cases(objects):
    assert set(objects) == {"chair", "handle", "white_cylinder", "print_panel"}
    assert make_fidelity_object("chair").name == "chair"
    with pytest.raises(KeyError, match="use one of chair"):
        make_fidelity_object("sofa")


@pytest.mark.parametrize("name", sorted(FIDELITY_OBJECTS))
def test_objects_are_valid_textured_normalised_meshes(objects, name):
    obj = objects[name]
    mesh = obj.mesh
    mesh.check(name)
    assert obj.name == name and obj.radius == OBJECT_RADIUS
    assert mesh.has_texture and mesh.normals is not None
    assert float(mesh.texture.min()) >= 0 and float(mesh.texture.max()) <= 1
    assert float(mesh.uvs.min()) > 0 and float(mesh.uvs.max()) < 1  # texel centres: no wrap-around bleeding
    assert float(mesh.vertices.norm(dim=-1).max()) == pytest.approx(OBJECT_RADIUS, abs=1e-5)
    assert torch.allclose(mesh.bounds.mean(0), torch.zeros(3), atol=1e-5)  # centred on its box
    # the parts partition the faces, the thin parts are parts
    faces = torch.cat(list(obj.parts.values()))
    assert torch.equal(faces.sort().values, torch.arange(mesh.num_faces))
    assert set(obj.thin_parts) <= set(obj.parts)
    assert signed_volume(mesh.vertices, mesh.faces) > 0  # wound counter-clockwise seen from outside


def _widths(obj, part):
    v = obj.mesh.vertices[obj.mesh.faces[obj.parts[part]].unique()]
    return v.max(0).values - v.min(0).values


def test_chair_legs_are_thin_rods(objects):
    chair = objects["chair"]
    size = 2 * chair.radius
    assert len(chair.thin_parts) == 4
    for leg in chair.thin_parts:
        w = _widths(chair, leg)
        assert 0.01 <= float(w[0]) / size <= 0.02 and 0.01 <= float(w[2]) / size <= 0.02, (leg, w)
        assert float(w[0]) * PX_PER_UNIT_128 < 2.0  # under two pixels wide in the 128 px views
        assert float(w[1]) / size > 0.3  # long


def test_handle_is_a_thin_arc(objects):
    handle = objects["handle"]
    w = _widths(handle, "handle")
    assert 0.01 <= float(w[2]) / (2 * handle.radius) <= 0.02  # the tube's diameter (the arc lies in x-y)
    assert float(w[2]) * PX_PER_UNIT_128 < 2.0
    assert float(w[0]) > 10 * float(w[2])  # an arc, not a blob


def _front_and_back(mesh, res=128):
    img = render_rgba(mesh, orbit_cameras([0.0, 0.0], [0.0, 180.0], 2.0, res))
    return img[..., :3], img[..., 3] > 0.99


def test_white_cylinder_is_mostly_white(objects):
    rgb, inside = _front_and_back(objects["white_cylinder"].mesh, 64)
    white = (rgb > 0.9).all(-1)
    assert 0.75 < float(white[inside].float().mean()) < 0.97  # mostly white, with a coloured band


def test_print_panel_has_fine_print_on_its_front(objects):
    rgb, inside = _front_and_back(objects["print_panel"].mesh)
    front, back = rgb[0][inside[0]], rgb[1][inside[1]]
    assert float((front < 0.2).all(-1).float().mean()) > 0.15  # black ink on the front
    assert float((back < 0.2).all(-1).float().mean()) < 0.01  # none on the back
    # a 24-cell grid across the front face: about 3 px per feature at 128 px
    width = int(inside[0, 64].sum())
    assert 2.0 <= width / 24 <= 4.0, width
    detail = [mean_gradient(rgb[i : i + 1], inside[i : i + 1]) for i in (0, 1)]
    assert detail[0] > 5 * detail[1]
