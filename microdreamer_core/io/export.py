"""Writing a :class:`~microdreamer_core.scene.mesh.Mesh` to disk: binary glTF 2.0 (.glb) and OBJ + MTL + PNG.

GLB (:func:`save_glb`) is written by hand with numpy and struct, so every byte is under our
control and the file passes the Khronos glTF Validator with zero errors (tests/io/test_export.py).
What it contains:

* one scene -> one node -> one mesh with one triangle primitive;
* ``POSITION`` float32 with the ``min``/``max`` the spec requires, ``NORMAL`` float32 unit vectors
  (the mesh's own, re-normalised, or area-weighted vertex normals when it has none),
  ``TEXCOORD_0`` float32 when the mesh has uvs, ``COLOR_0`` float32 RGB when it has vertex
  colours but no texture, indices as uint16 when every index fits below 65535 (the primitive
  restart value is not allowed), else uint32;
* with a texture: an embedded PNG (8 bits per channel, lossless) in a bufferView, a sampler with
  LINEAR magnification and minification (no mipmaps are stored; LINEAR minification is what our
  own renderer does, and it never blends across chart borders of a baked atlas the way small mip
  levels do), and CLAMP_TO_EDGE wrapping when every uv lies in [0, 1] (a baked atlas: the edge
  texels must not blend with the opposite edge) or REPEAT otherwise (tiling uvs, glTF's default);
* one ``pbrMetallicRoughness`` material: baseColorTexture (or white with COLOR_0), metallic 0,
  roughness 0.9, single-sided. The baked colours already carry the object's look as seen in the
  views (shading included), so the material should add as little as possible on top: a rough
  dielectric shades almost like a diffuse surface, with at most a faint broad highlight, so a
  viewer adds no shine the reconstruction never saw (metallic would tint and darken the colours
  without an environment map); 0.9 rather than 1.0 only keeps a hint of shape under its lights;
* ``asset.generator = "microdreamer"``.

Conventions: our world is y-up with the front towards +z and metres as units, which is glTF's
own frame, so no node transform is written. Our uvs are OpenGL-style (origin bottom-left, v up);
glTF's origin is the top-left of the image, so ``v_gltf = 1 - v``. Texture row 0 is the top of
the image in both. glTF defines ``COLOR_0`` as *linear* RGB while our vertex colours are the
sRGB-encoded values (as in the source files and the texture), so they are converted with the
sRGB transfer function on the way out; a glTF-conforming viewer then shows the same colour a
texture with those values would.

OBJ (:func:`save_obj`) writes ``name.obj``, plus ``name.mtl`` and ``name.png`` for a textured
mesh: ``v`` (with ``r g b`` appended for vertex colours, the common extension), ``vt`` in OBJ's
convention (v up, the same as ours), ``vn`` and ``f v/vt/vn`` (1-based, one index per vertex
since our attributes are per vertex).

All outputs are written all-or-nothing (:func:`~.io.outputs.atomic_outputs`): to temporary names
beside the targets, then renamed together (the OBJ last, so a reader never finds an OBJ whose MTL
or PNG is missing). Any failure leaves no new file; OS errors become one-line input errors.
"""

from __future__ import annotations

import io
import json
import os
import struct
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError, shown
from ..scene.mesh import Mesh, vertex_normals
from .mesh_files import linear_to_srgb, mesh_from_trimesh, mesh_to_trimesh, srgb_to_linear
from .outputs import atomic_outputs, atomic_path

__all__ = [
    "save_glb",
    "save_obj",
    "save_mesh",
    "mesh_files",
    "glb_bytes",
    "mesh_to_trimesh",
    "mesh_from_trimesh",
    "SAVE_EXTENSIONS",
    "ROUGHNESS",
    "srgb_to_linear",
    "linear_to_srgb",
]

SAVE_EXTENSIONS = (".glb", ".obj")
ROUGHNESS = 0.9  # see the module docstring
GENERATOR = "microdreamer"

# glTF enums
_FLOAT, _UNSIGNED_SHORT, _UNSIGNED_INT = 5126, 5123, 5125
_ARRAY_BUFFER, _ELEMENT_ARRAY_BUFFER = 34962, 34963
_LINEAR, _CLAMP_TO_EDGE, _REPEAT = 9729, 33071, 10497
_TRIANGLES = 4
_GLB_MAGIC, _CHUNK_JSON, _CHUNK_BIN = 0x46546C67, 0x4E4F534A, 0x004E4942


def _np(t) -> np.ndarray | None:
    return None if t is None else t.detach().to("cpu", torch.float32).numpy()


def _check_mesh(mesh: Mesh, path: Path) -> None:
    if not isinstance(mesh, Mesh):
        raise InputError(f"expected a microdreamer Mesh to write to {shown(path.name)}, got {type(mesh).__name__}")
    mesh.check(f"the mesh to write to {shown(path.name)}")


def mesh_files(path: str | os.PathLike) -> list[Path]:
    """Every file :func:`save_mesh` may write for ``path``: the .glb, or the .obj with its .mtl and .png."""
    path = Path(path)
    return [path, path.with_suffix(".mtl"), path.with_suffix(".png")] if path.suffix.lower() == ".obj" else [path]


def _unit_normals(mesh: Mesh) -> np.ndarray:
    """(V, 3) float32 unit normals: the mesh's own, else area-weighted vertex normals; +y where undefined."""
    n = mesh.normals if mesh.normals is not None else vertex_normals(mesh.vertices, mesh.faces)
    n = n.detach().to("cpu", torch.float64).numpy()
    length = np.linalg.norm(n, axis=1, keepdims=True)
    n = np.where(length > 1e-12, n / np.maximum(length, 1e-12), np.array([0.0, 1.0, 0.0]))
    return n.astype(np.float32)


def _texture_png(texture: torch.Tensor) -> bytes:
    """(Ht, Wt, C) float texture in [0, 1] -> 8-bit RGB PNG bytes (row 0 = top)."""
    from PIL import Image

    tex = _np(texture)
    if tex.shape[2] == 1:
        tex = np.repeat(tex, 3, axis=2)
    tex = tex[..., :3]
    pixels = np.clip(np.round(tex * 255.0), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels), "RGB").save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


# ----------------------------------------------------------------------------------------
# GLB
# ----------------------------------------------------------------------------------------
class _BinBuilder:
    """The BIN chunk and its bufferViews/accessors, every view starting on a 4-byte boundary."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.length = 0
        self.buffer_views: list[dict] = []
        self.accessors: list[dict] = []

    def view(self, data: bytes, target: int | None = None) -> int:
        view = {"buffer": 0, "byteOffset": self.length, "byteLength": len(data)}
        if target is not None:
            view["target"] = target
        self.parts.append(data)
        pad = (-len(data)) % 4
        self.parts.append(b"\x00" * pad)
        self.length += len(data) + pad
        self.buffer_views.append(view)
        return len(self.buffer_views) - 1

    def accessor(self, array: np.ndarray, type_: str, component: int, target: int | None, min_max: bool = False) -> int:
        array = np.ascontiguousarray(array)
        acc = {
            "bufferView": self.view(array.tobytes(), target),
            "componentType": component,
            "count": int(array.shape[0]),
            "type": type_,
        }
        if min_max:
            acc["min"] = [float(x) for x in array.min(axis=0)]
            acc["max"] = [float(x) for x in array.max(axis=0)]
        self.accessors.append(acc)
        return len(self.accessors) - 1

    def bytes(self) -> bytes:
        return b"".join(self.parts)


def glb_bytes(mesh: Mesh, extras: dict | None = None) -> bytes:
    """The complete .glb file for ``mesh`` (see the module docstring for its contents).

    ``extras`` (JSON-serialisable) goes into ``asset.extras``, where ComfyUI keeps the prompt and
    workflow of the run that made the file.
    """
    binb = _BinBuilder()
    positions = _np(mesh.vertices).astype(np.float32)
    faces = mesh.faces.detach().cpu().numpy()
    attributes = {
        "POSITION": binb.accessor(positions, "VEC3", _FLOAT, _ARRAY_BUFFER, min_max=True),
        "NORMAL": binb.accessor(_unit_normals(mesh), "VEC3", _FLOAT, _ARRAY_BUFFER),
    }
    if mesh.uvs is not None:
        uv = _np(mesh.uvs).astype(np.float64)
        uv_gltf = np.stack([uv[:, 0], 1.0 - uv[:, 1]], axis=1).astype(np.float32)
        attributes["TEXCOORD_0"] = binb.accessor(uv_gltf, "VEC2", _FLOAT, _ARRAY_BUFFER)
    if mesh.vertex_colors is not None and not mesh.has_texture:
        linear = srgb_to_linear(_np(mesh.vertex_colors).astype(np.float64)).astype(np.float32)
        attributes["COLOR_0"] = binb.accessor(linear, "VEC3", _FLOAT, _ARRAY_BUFFER)
    if mesh.num_vertices <= 65535:  # indices < 65535: 65535 is the forbidden primitive-restart value
        index_array, index_type = faces.reshape(-1).astype(np.uint16), _UNSIGNED_SHORT
    else:
        index_array, index_type = faces.reshape(-1).astype(np.uint32), _UNSIGNED_INT
    indices = binb.accessor(index_array, "SCALAR", index_type, _ELEMENT_ARRAY_BUFFER)

    pbr: dict = {"metallicFactor": 0.0, "roughnessFactor": ROUGHNESS}
    doc: dict = {"asset": {"version": "2.0", "generator": GENERATOR}}
    if extras:
        doc["asset"]["extras"] = extras
    if mesh.has_texture:
        image_view = binb.view(_texture_png(mesh.texture))
        uv = _np(mesh.uvs)
        wrap = _CLAMP_TO_EDGE if (uv.min() >= 0.0 and uv.max() <= 1.0) else _REPEAT
        doc["images"] = [{"bufferView": image_view, "mimeType": "image/png", "name": "baseColor"}]
        doc["samplers"] = [{"magFilter": _LINEAR, "minFilter": _LINEAR, "wrapS": wrap, "wrapT": wrap}]
        doc["textures"] = [{"sampler": 0, "source": 0}]
        pbr["baseColorTexture"] = {"index": 0, "texCoord": 0}
    doc.update(
        {
            "scene": 0,
            "scenes": [{"name": "microdreamer", "nodes": [0]}],
            "nodes": [{"name": "microdreamer", "mesh": 0}],
            "meshes": [
                {
                    "name": "microdreamer",
                    "primitives": [{"attributes": attributes, "indices": indices, "material": 0, "mode": _TRIANGLES}],
                }
            ],
            "materials": [{"name": "microdreamer", "pbrMetallicRoughness": pbr, "doubleSided": False}],
            "accessors": binb.accessors,
            "bufferViews": binb.buffer_views,
            "buffers": [{"byteLength": binb.length}],
        }
    )

    json_chunk = json.dumps(doc, separators=(",", ":")).encode("utf-8")
    json_chunk += b" " * ((-len(json_chunk)) % 4)
    bin_chunk = binb.bytes()  # already 4-aligned (every view is padded with zeros)
    total = 12 + 8 + len(json_chunk) + 8 + len(bin_chunk)
    return b"".join(
        [
            struct.pack("<III", _GLB_MAGIC, 2, total),
            struct.pack("<II", len(json_chunk), _CHUNK_JSON),
            json_chunk,
            struct.pack("<II", len(bin_chunk), _CHUNK_BIN),
            bin_chunk,
        ]
    )


def save_glb(mesh: Mesh, path: str | os.PathLike, extras: dict | None = None) -> Path:
    """Write ``mesh`` as a binary glTF 2.0 file at ``path`` (atomically) and return the path.

    ``extras``: optional JSON-serialisable metadata stored as ``asset.extras``.

    Raises :class:`InputError` for an empty or non-finite mesh and for a path that cannot be
    written (missing or read-only folder), naming the path and what to do.
    """
    path = Path(path)
    _check_mesh(mesh, path)
    data = glb_bytes(mesh, extras)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return path


# ----------------------------------------------------------------------------------------
# OBJ
# ----------------------------------------------------------------------------------------
def _rows(fmt: str, array: np.ndarray) -> str:
    if len(array) == 0:
        return ""
    return "\n".join(fmt % tuple(row) for row in array.tolist()) + "\n"


def save_obj(mesh: Mesh, path: str | os.PathLike) -> Path:
    """Write ``mesh`` as ``path`` (.obj); with a texture also the .mtl and .png of the same stem.

    A mesh without texture is written as the OBJ alone (vertex colours as ``v x y z r g b``): a
    material would make readers such as trimesh ignore the vertex colours. All files are written
    atomically, the OBJ last. Returns the OBJ path.
    """
    path = Path(path)
    _check_mesh(mesh, path)
    _, mtl_path, png_path = mesh_files(path)
    textured = mesh.has_texture

    v = _np(mesh.vertices).astype(np.float64)
    if mesh.vertex_colors is not None and not textured:
        v_text = _rows("v %.9g %.9g %.9g %.6g %.6g %.6g", np.concatenate([v, _np(mesh.vertex_colors)], axis=1))
    else:
        v_text = _rows("v %.9g %.9g %.9g", v)
    n_text = _rows("vn %.6g %.6g %.6g", _unit_normals(mesh).astype(np.float64))
    idx = mesh.faces.detach().cpu().numpy() + 1
    if mesh.uvs is not None:
        vt_text = _rows("vt %.9g %.9g", _np(mesh.uvs).astype(np.float64))
        f_text = _rows("f %d/%d/%d %d/%d/%d %d/%d/%d", np.repeat(idx, 3, axis=1))
    else:
        vt_text = ""
        f_text = _rows("f %d//%d %d//%d %d//%d", np.repeat(idx, 2, axis=1))
    header = f"# written by {GENERATOR}: {mesh.num_vertices} vertices, {mesh.num_faces} triangles\n"
    if textured:
        header += f"mtllib {mtl_path.name}\n"
        f_text = "usemtl material0\n" + f_text
    obj_text = header + v_text + vt_text + n_text + f_text

    with atomic_outputs() as out:
        obj_tmp = out.file(path)  # asked for first: moved into place last
        if textured:
            mtl_tmp, png_tmp = out.file(mtl_path), out.file(png_path)
            png_tmp.write_bytes(_texture_png(mesh.texture))
            mtl_tmp.write_text(
                f"# written by {GENERATOR}\nnewmtl material0\nKa 0 0 0\nKd 1 1 1\nKs 0 0 0\nNs 10\n"
                f"d 1\nillum 1\nmap_Kd {png_path.name}\n"
            )
        obj_tmp.write_text(obj_text)
    return path


# ----------------------------------------------------------------------------------------
# Dispatch
# ----------------------------------------------------------------------------------------
def save_mesh(mesh: Mesh, path: str | os.PathLike) -> Path:
    """Write ``mesh`` to ``path``, the format chosen by its extension (.glb or .obj)."""
    path = Path(path)
    ext = path.suffix.lower()
    if ext == ".glb":
        return save_glb(mesh, path)
    if ext == ".obj":
        return save_obj(mesh, path)
    raise InputError(
        f"cannot write mesh format '{ext or path.name}': give a path ending in "
        f"{' or '.join(SAVE_EXTENSIONS)} (.glb: one file with the texture embedded)"
    )
