"""Loading mesh files: GLB / glTF / OBJ with textures, vertex and face colours, scene transforms,
and the errors for what cannot be loaded."""

from pathlib import Path

import pytest
import torch

from microdreamer_core.eval.demo_object import make_demo_mesh
from microdreamer_core.io.mesh_files import load_mesh
from microdreamer_core.render.mesh import render_mesh
from microdreamer_core.scene.cameras import orbit_cameras
from microdreamer_core.scene.mesh import Mesh

DUCK = Path(__file__).resolve().parents[3] / "shared" / "assets" / "Duck.glb"


def _duck() -> Mesh:
    if not DUCK.is_file():
        pytest.skip(f"real test data not found at {DUCK}: put the shared/ folder beside the repo")
    return load_mesh(DUCK)


# ---------------------------------------------------------------------------- loading
def test_load_duck_keeps_texture_and_turns_upright():
    mesh = _duck()
    assert 11_000 <= mesh.num_faces <= 13_000
    assert mesh.uvs is not None and mesh.texture is not None and mesh.vertex_colors is None
    assert mesh.texture.ndim == 3 and mesh.texture.shape[-1] == 3
    assert 0.0 <= float(mesh.texture.min()) and float(mesh.texture.max()) <= 1.0
    assert mesh.normals is not None and torch.allclose(
        mesh.normals.norm(dim=-1), torch.ones(mesh.num_vertices), atol=1e-4
    )
    # The node's +90 degree x-rotation is applied: the duck stands along +y.
    lo, hi = mesh.bounds
    assert (hi - lo)[1] == pytest.approx(17.02, abs=0.1)


def test_load_errors(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        load_mesh(tmp_path / "missing.glb")
    bad = tmp_path / "model.stl"
    bad.write_text("solid x\nendsolid x\n")
    with pytest.raises(ValueError, match=r"\.glb.*\.gltf.*\.obj"):
        load_mesh(bad)
    points = tmp_path / "points.obj"
    points.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\n")
    with pytest.raises(ValueError, match="no triangles"):
        load_mesh(points)


def test_scene_transforms_and_face_colours(tmp_path):
    """Two boxes, one moved by its node transform, flat face colours: all survive a .glb round trip."""
    import trimesh

    a = trimesh.creation.box(extents=(1, 1, 1))
    a.visual.face_colors = [255, 0, 0, 255]
    b = trimesh.creation.box(extents=(1, 1, 1))
    b.visual.face_colors = [0, 0, 255, 255]
    scene = trimesh.Scene()
    scene.add_geometry(a, node_name="a")
    scene.add_geometry(b, node_name="b", transform=trimesh.transformations.translation_matrix([3.0, 0.0, 0.0]))
    path = tmp_path / "boxes.glb"
    scene.export(path)
    mesh = load_mesh(path)
    assert mesh.num_faces == 24
    lo, hi = mesh.bounds
    assert float(lo[0]) == pytest.approx(-0.5, abs=1e-5) and float(hi[0]) == pytest.approx(3.5, abs=1e-5)
    right = mesh.vertices[:, 0] > 1.0
    assert torch.allclose(
        mesh.vertex_colors[right], torch.tensor([0.0, 0.0, 1.0]).expand(int(right.sum()), 3), atol=0.02
    )
    assert torch.allclose(
        mesh.vertex_colors[~right], torch.tensor([1.0, 0.0, 0.0]).expand(int((~right).sum()), 3), atol=0.02
    )


def test_obj_round_trip_keeps_texture(tmp_path):
    import trimesh
    from PIL import Image

    demo = make_demo_mesh(64)
    image = Image.fromarray((demo.texture * 255).round().byte().numpy())
    visual = trimesh.visual.TextureVisuals(uv=demo.uvs.numpy(), image=image)
    trimesh.Trimesh(demo.vertices.numpy(), demo.faces.numpy(), visual=visual, process=False).export(
        tmp_path / "demo.obj"
    )
    mesh = load_mesh(tmp_path / "demo.obj")
    assert mesh.texture is not None and mesh.texture.shape == demo.texture.shape
    cams = orbit_cameras([0.0, -20.0], [0.0, 200.0], 2.0, 64)
    a, b = render_mesh(demo, cams).rgb, render_mesh(mesh, cams).rgb
    assert (a - b).abs().mean() < 0.01
