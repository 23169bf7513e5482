"""GLB/OBJ export: Khronos glTF Validator, round trips through our loader and trimesh, renders, errors."""

from __future__ import annotations

import json
import os
import struct
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from gltf_validator import assert_valid

from microdreamer_core.errors import InputError
from microdreamer_core.eval.demo_object import make_demo_mesh
from microdreamer_core.io.export import (
    linear_to_srgb,
    save_glb,
    save_mesh,
    save_obj,
    srgb_to_linear,
)
from microdreamer_core.io.mesh_files import load_mesh, mesh_from_trimesh, mesh_to_trimesh
from microdreamer_core.render.mesh import render_mesh
from microdreamer_core.scene.cameras import orbit_cameras
from microdreamer_core.scene.mesh import Mesh


def _quantised(t: torch.Tensor) -> torch.Tensor:
    """Values exactly representable in 8 bits, so a PNG round trip is exact."""
    return torch.round(t * 255.0) / 255.0


@pytest.fixture(scope="module")
def textured() -> Mesh:
    m = make_demo_mesh(texture_size=64)
    m.texture = _quantised(m.texture)
    return m


@pytest.fixture(scope="module")
def coloured(textured: Mesh) -> Mesh:
    # Colours that vary smoothly over the surface (from the position), in [0, 1].
    colors = (textured.vertices - textured.vertices.min(0).values) / (
        textured.vertices.max(0).values - textured.vertices.min(0).values
    )
    return Mesh(textured.vertices, textured.faces, vertex_colors=colors, normals=textured.normals)


def _glb_json(path: Path) -> dict:
    data = path.read_bytes()
    magic, version, total = struct.unpack_from("<III", data, 0)
    assert (magic, version, total) == (0x46546C67, 2, len(data))
    length, kind = struct.unpack_from("<II", data, 12)
    assert kind == 0x4E4F534A and length % 4 == 0
    bin_length, bin_kind = struct.unpack_from("<II", data, 20 + length)
    assert bin_kind == 0x004E4942 and bin_length % 4 == 0 and 28 + length + bin_length == len(data)
    return json.loads(data[20 : 20 + length])


def _renders(mesh: Mesh) -> torch.Tensor:
    cams = orbit_cameras([-20.0, 10.0], [30.0, 200.0], 2.0, 96)
    return render_mesh(mesh, cams, backend="torch").rgb


def _same_corners(a: Mesh, b: Mesh, attr: str) -> torch.Tensor:
    """Max difference of a per-vertex attribute over the face corners (robust to dropped unused vertices)."""
    assert a.num_faces == b.num_faces
    return (getattr(a, attr)[a.faces] - getattr(b, attr)[b.faces]).abs().max()


# ---------------------------------------------------------------------------- GLB
def test_textured_glb_is_valid_and_round_trips(tmp_path, textured):
    path = save_glb(textured, tmp_path / "model.glb")
    assert path == tmp_path / "model.glb" and sorted(os.listdir(tmp_path)) == ["model.glb"]
    report = assert_valid(path)
    assert report["info"]["generator"] == "microdreamer" and report["info"]["hasTextures"]
    assert report["issues"]["numWarnings"] == 0, report["issues"]["messages"]

    doc = _glb_json(path)
    prim = doc["meshes"][0]["primitives"][0]
    assert set(prim["attributes"]) == {"POSITION", "NORMAL", "TEXCOORD_0"}
    assert doc["accessors"][prim["indices"]]["componentType"] == 5123  # uint16 for < 65535 vertices
    pbr = doc["materials"][0]["pbrMetallicRoughness"]
    assert pbr["metallicFactor"] == 0.0 and pbr["roughnessFactor"] == pytest.approx(0.9)
    assert doc["materials"][0]["doubleSided"] is False
    assert doc["samplers"][0] == {"magFilter": 9729, "minFilter": 9729, "wrapS": 33071, "wrapT": 33071}

    # Our loader: identical geometry, uvs, pixels; nearly identical renders.
    back = load_mesh(path)
    assert back.num_vertices == textured.num_vertices and torch.equal(back.faces, textured.faces)
    assert torch.allclose(back.vertices, textured.vertices, atol=1e-7)
    assert torch.allclose(back.uvs, textured.uvs, atol=1e-6)
    assert torch.equal(back.texture, textured.texture)
    assert torch.allclose(back.normals, textured.normals, atol=1e-5)
    diff = (_renders(back) - _renders(textured)).abs()
    assert float(diff.mean()) < 1e-3 and float(diff.max()) < 0.05, (float(diff.mean()), float(diff.max()))

    # trimesh: glTF's top-left uv origin converted back to the OpenGL convention trimesh uses.
    import trimesh

    tm = trimesh.load(path, force="mesh", process=False)
    assert np.allclose(tm.vertices, textured.vertices.numpy(), atol=1e-7)
    assert np.allclose(tm.visual.uv, textured.uvs.numpy(), atol=1e-6)
    image = np.asarray(tm.visual.material.baseColorTexture.convert("RGB"))
    assert np.array_equal(image, np.round(textured.texture.numpy() * 255).astype(np.uint8))


def test_vertex_coloured_glb_is_valid_and_round_trips(tmp_path, coloured):
    path = save_glb(coloured, tmp_path / "coloured.glb")
    report = assert_valid(path)
    assert not report["info"]["hasTextures"]
    doc = _glb_json(path)
    assert set(doc["meshes"][0]["primitives"][0]["attributes"]) == {"POSITION", "NORMAL", "COLOR_0"}
    assert "baseColorTexture" not in doc["materials"][0]["pbrMetallicRoughness"]

    # What the file holds, read with trimesh: COLOR_0 is linear RGB by the glTF spec (our
    # colours are sRGB-encoded values). With a material present trimesh keeps COLOR_0 as a
    # vertex attribute of its TextureVisuals.
    import trimesh

    (tm,) = trimesh.load(path, force="scene", process=False).geometry.values()
    assert np.allclose(tm.vertices, coloured.vertices.numpy(), atol=1e-7)
    stored = np.asarray(tm.visual.vertex_attributes["color"], dtype=np.float32)
    assert np.allclose(stored, srgb_to_linear(coloured.vertex_colors.numpy()), atol=1e-6)
    back = Mesh(
        torch.from_numpy(np.asarray(tm.vertices, np.float32)),
        torch.from_numpy(np.asarray(tm.faces)),
        vertex_colors=torch.from_numpy(linear_to_srgb(stored).astype(np.float32)),
    )
    assert torch.allclose(back.vertex_colors, coloured.vertex_colors, atol=1e-5)
    assert float((_renders(back) - _renders(coloured)).abs().max()) < 1e-3


def test_load_mesh_reads_vertex_coloured_glb(tmp_path, coloured):
    back = load_mesh(save_glb(coloured, tmp_path / "coloured.glb"))
    assert back.vertex_colors is not None
    assert torch.allclose(back.vertex_colors, coloured.vertex_colors, atol=1e-4)


def test_large_mesh_uses_uint32_indices_and_tiling_uvs_repeat(tmp_path):
    gen = torch.Generator().manual_seed(0)
    n = 70_000 // 3 + 1  # a triangle soup with more vertices than uint16 can index
    vertices = torch.rand(3 * n, 3, generator=gen) - 0.5
    faces = torch.arange(3 * n).reshape(n, 3)
    uvs = torch.rand(3 * n, 2, generator=gen) * 3.0 - 1.0  # tiling uvs outside [0, 1]
    mesh = Mesh(vertices, faces, uvs=uvs, texture=_quantised(torch.rand(8, 8, 3, generator=gen)))
    path = save_glb(mesh, tmp_path / "big.glb")
    assert_valid(path)
    doc = _glb_json(path)
    assert doc["accessors"][doc["meshes"][0]["primitives"][0]["indices"]]["componentType"] == 5125
    assert doc["samplers"][0]["wrapS"] == doc["samplers"][0]["wrapT"] == 10497
    back = load_mesh(path)
    assert torch.equal(back.faces, faces) and torch.allclose(back.uvs, uvs, atol=1e-6)


def test_plain_mesh_without_normals_gets_unit_normals(tmp_path):
    # A tetrahedron without colours or normals: grey material, computed normals, valid file.
    v = torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]])
    f = torch.tensor([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]])
    path = save_glb(Mesh(v, f), tmp_path / "tet.glb")
    assert_valid(path)
    doc = _glb_json(path)
    pos = doc["accessors"][doc["meshes"][0]["primitives"][0]["attributes"]["POSITION"]]
    assert pos["min"] == [0.0, 0.0, 0.0] and pos["max"] == [1.0, 1.0, 1.0]


# ---------------------------------------------------------------------------- OBJ
def test_obj_round_trip_textured(tmp_path, textured):
    path = save_obj(textured, tmp_path / "model.obj")
    assert sorted(os.listdir(tmp_path)) == ["model.mtl", "model.obj", "model.png"]
    assert "map_Kd model.png" in (tmp_path / "model.mtl").read_text()
    back = load_mesh(path)  # trimesh drops the demo object's unreferenced pole vertices
    assert back.has_texture and back.num_faces == textured.num_faces
    assert _same_corners(back, textured, "vertices") < 1e-6
    assert _same_corners(back, textured, "uvs") < 1e-6
    assert torch.equal(back.texture, textured.texture)
    diff = (_renders(back) - _renders(textured)).abs()
    assert float(diff.mean()) < 1e-3 and float(diff.max()) < 0.05


def test_obj_round_trip_vertex_colours(tmp_path, coloured):
    path = save_mesh(coloured, tmp_path / "c.obj")
    assert sorted(os.listdir(tmp_path)) == ["c.obj"]  # no material: it would hide the vertex colours
    back = load_mesh(path)
    assert not back.has_texture and back.vertex_colors is not None
    assert _same_corners(back, coloured, "vertex_colors") < 1 / 255 + 1e-6  # trimesh keeps colours as uint8
    assert float((_renders(back) - _renders(coloured)).abs().mean()) < 2e-3


def test_trimesh_conversion_round_trip(textured, coloured):
    back = mesh_from_trimesh(mesh_to_trimesh(textured))
    assert torch.equal(back.vertices, textured.vertices) and torch.equal(back.faces, textured.faces)
    assert torch.equal(back.uvs, textured.uvs) and torch.equal(back.texture, textured.texture)
    tm = mesh_to_trimesh(coloured)
    assert tm.visual.kind == "vertex" and len(tm.vertices) == coloured.num_vertices
    back = mesh_from_trimesh(tm)
    assert float((back.vertex_colors - coloured.vertex_colors).abs().max()) <= 0.5 / 255 + 1e-6


# ---------------------------------------------------------------------------- errors and atomicity
def test_failure_mid_write_leaves_no_file(tmp_path, textured, monkeypatch):
    def half_then_fail(self, data):
        with open(self, "wb") as fh:
            fh.write(data[: len(data) // 2])
        raise RuntimeError("disk went away")

    monkeypatch.setattr(Path, "write_bytes", half_then_fail)
    with pytest.raises(RuntimeError, match="disk went away"):
        save_glb(textured, tmp_path / "model.glb")
    with pytest.raises(RuntimeError, match="disk went away"):
        save_obj(textured, tmp_path / "model.obj")  # fails on the PNG, before anything is renamed
    assert os.listdir(tmp_path) == []
    monkeypatch.undo()

    # An older file survives a failed overwrite; OBJ failing last leaves no OBJ/MTL/PNG.
    old = save_glb(textured, tmp_path / "model.glb").read_bytes()
    monkeypatch.setattr(Path, "write_bytes", half_then_fail)
    with pytest.raises(RuntimeError):
        save_glb(textured, tmp_path / "model.glb")
    assert (tmp_path / "model.glb").read_bytes() == old
    monkeypatch.undo()
    real_write_text = Path.write_text

    def fail_obj(self, text, *a, **k):
        if ".model.obj." in self.name:
            raise RuntimeError("obj failed")
        return real_write_text(self, text, *a, **k)

    monkeypatch.setattr(Path, "write_text", fail_obj)
    with pytest.raises(RuntimeError, match="obj failed"):
        save_obj(textured, tmp_path / "model.obj")
    assert sorted(os.listdir(tmp_path)) == ["model.glb"]


def test_unwritable_destinations_raise_input_error(tmp_path, textured, monkeypatch):
    with pytest.raises(InputError, match="does not exist"):
        save_glb(textured, tmp_path / "no_such_folder" / "model.glb")
    (tmp_path / "folder.glb").mkdir()
    with pytest.raises(InputError, match=r"cannot write .*folder\.glb.*choose an output path"):
        save_glb(textured, tmp_path / "folder.glb")

    def refuse(*a, **k):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)  # what a read-only folder does (root ignores chmod)
    for save, name in ((save_glb, "model.glb"), (save_obj, "model.obj")):
        with pytest.raises(InputError, match=rf"cannot write .*{name}: Permission denied; choose an output path"):
            save(textured, tmp_path / name)
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["folder.glb"]

    if os.geteuid() != 0:  # a real read-only folder (root may write anyway)
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        try:
            with pytest.raises(InputError, match="not writable"):
                save_glb(textured, ro / "model.glb")
        finally:
            ro.chmod(0o755)


def test_empty_mesh_and_unknown_format_raise_input_error(tmp_path, textured):
    empty = Mesh(torch.zeros(0, 3), torch.zeros(0, 3, dtype=torch.int64))
    for save in (save_glb, save_obj):
        with pytest.raises(InputError, match="empty"):
            save(empty, tmp_path / "empty.glb")
    bad = Mesh(textured.vertices.clone(), textured.faces)
    bad.vertices[0, 0] = float("nan")
    with pytest.raises(InputError, match="NaN"):
        save_glb(bad, tmp_path / "nan.glb")
    with pytest.raises(InputError, match=r"\.glb or \.obj"):
        save_mesh(textured, tmp_path / "model.stl")
    assert os.listdir(tmp_path) == []
