"""An in-repo double of what newer ComfyUI releases (0.4x, v0.45.2 in November 2026) add to the
node API and the core 3D types, installed on top of the real ComfyUI 0.3.75.

No ComfyUI newer than 0.3.75 installs offline, so the pack's behaviour on current releases is
tested against these classes. They are written by us from the published signatures (ComfyUI's
``comfy_api/latest/_util/geometry_types.py``, ``comfy_api/latest/_io.py``; see
``../shared/docs/COMFYUI.md``), not copied: constructor parameters, attribute names and socket
type strings are what the pack relies on, and what this double pins.

:func:`install` adds to 0.3.75's ``comfy_api.latest``:

* ``Types.MESH`` with the newer optional fields, ``Types.SPLAT``, ``Types.File3D``;
* sockets ``io.Splat`` (``SPLAT``), ``io.File3DAny`` (``FILE_3D``) and the per-format
  ``io.File3D*`` (``FILE_3D_GLB``, ``FILE_3D_PLY``, ``FILE_3D_SPLAT_ANY``, ...);
* the schema field ``search_aliases`` / ``essentials_category`` and ``advanced=`` on widget inputs.
"""

from __future__ import annotations

import dataclasses
import shutil
from io import BytesIO
from pathlib import Path

SOCKETS = {
    "Splat": "SPLAT",
    "File3DAny": "FILE_3D",
    "File3DGLB": "FILE_3D_GLB",
    "File3DGLTF": "FILE_3D_GLTF",
    "File3DOBJ": "FILE_3D_OBJ",
    "File3DFBX": "FILE_3D_FBX",
    "File3DSTL": "FILE_3D_STL",
    "File3DUSDZ": "FILE_3D_USDZ",
    "File3DPLY": "FILE_3D_PLY",
    "File3DSPLAT": "FILE_3D_SPLAT",
    "File3DSPZ": "FILE_3D_SPZ",
    "File3DKSPLAT": "FILE_3D_KSPLAT",
    "File3DSplatAny": "FILE_3D_SPLAT_ANY",
    "File3DPointCloudAny": "FILE_3D_POINT_CLOUD_ANY",
}
"""Socket class name -> io type string, as in the published ``_io.py``."""


class MESH:
    """``Types.MESH`` of current releases: batched geometry, optional per-vertex and material fields."""

    def __init__(
        self,
        vertices,
        faces,
        uvs=None,
        vertex_colors=None,
        texture=None,
        metallic_roughness=None,
        vertex_counts=None,
        face_counts=None,
        unlit=False,
        normals=None,
        tangents=None,
        normal_map=None,
        occlusion_in_mr=False,
        material=None,
        emissive=None,
    ):
        if (vertex_counts is None) != (face_counts is None):
            raise AssertionError("vertex_counts and face_counts must be provided together")
        self.vertices, self.faces, self.uvs, self.vertex_colors = vertices, faces, uvs, vertex_colors
        self.texture, self.metallic_roughness, self.unlit = texture, metallic_roughness, unlit
        self.vertex_counts, self.face_counts = vertex_counts, face_counts
        self.normals, self.tangents, self.normal_map = normals, tangents, normal_map
        self.occlusion_in_mr, self.material, self.emissive = occlusion_in_mr, material, emissive


class SPLAT:
    """``Types.SPLAT``: activated Gaussians in the 3DGS frame, batched."""

    def __init__(self, positions, scales, rotations, opacities, sh, counts=None):
        self.positions, self.scales, self.rotations = positions, scales, rotations
        self.opacities, self.sh, self.counts = opacities, sh, counts


class File3D:
    """``Types.File3D``: a 3D file on disk (a path) or in memory (a binary stream), with its format."""

    def __init__(self, source, file_format: str = ""):
        self._source = source
        inferred = Path(source).suffix.lstrip(".").lower() if isinstance(source, str) else ""
        self.format = file_format or inferred

    @property
    def is_disk_backed(self) -> bool:
        return isinstance(self._source, str)

    def get_bytes(self) -> bytes:
        if isinstance(self._source, str):
            return Path(self._source).read_bytes()
        self._source.seek(0)
        return self._source.read()

    def get_data(self) -> BytesIO:
        return BytesIO(self.get_bytes())

    def save_to(self, path: str) -> str:
        dest = Path(path)
        dest.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(self._source, str):
            shutil.copyfile(self._source, dest)
        else:
            dest.write_bytes(self.get_bytes())
        return str(dest)


def _with_advanced(input_class):
    """A subclass of a 0.3.75 widget ``Input`` that takes ``advanced=`` as newer releases do."""

    class Input(input_class):
        def __init__(self, *args, advanced: bool | None = None, **kwargs):
            super().__init__(*args, **kwargs)
            self.advanced = advanced

        def as_dict(self):
            return super().as_dict() | ({"advanced": True} if self.advanced else {})

    Input.__name__ = Input.__qualname__ = input_class.__name__
    return Input


def install(latest) -> None:
    """Give the imported 0.3.75 ``comfy_api.latest`` module the newer types, sockets and fields."""
    io = latest.io
    latest.Types.MESH, latest.Types.SPLAT, latest.Types.File3D = MESH, SPLAT, File3D
    for name, io_type in SOCKETS.items():
        setattr(io, name, io.Custom(io_type))

    @dataclasses.dataclass
    class Schema(io.Schema):
        search_aliases: list[str] | None = None
        essentials_category: str | None = None

    io.Schema = Schema
    for socket in (io.Int, io.Float, io.Boolean, io.String, io.Combo):
        socket.Input = _with_advanced(socket.Input)


_PREVIEW3D_TYPES = "STRING,FILE_3D_GLB,FILE_3D_GLTF,FILE_3D_FBX,FILE_3D_OBJ,FILE_3D_STL,FILE_3D_USDZ,FILE_3D"

CORE_NODES: dict[str, dict] = {
    "LoadBackgroundRemovalModel": {
        "input": {"required": {"bg_removal_name": [["birefnet.safetensors"], {}]}},
        "input_order": {"required": ["bg_removal_name"]},
        "output": ["BACKGROUND_REMOVAL"],
        "output_name": ["bg_model"],
    },
    "RemoveBackground": {
        "input": {"required": {"image": ["IMAGE", {}], "bg_removal_model": ["BACKGROUND_REMOVAL", {}]}},
        "input_order": {"required": ["image", "bg_removal_model"]},
        "output": ["MASK"],
        "output_name": ["mask"],
    },
    "Preview3D": {
        "input": {
            "required": {"model_file": [_PREVIEW3D_TYPES, {"default": ""}]},
            "optional": {"camera_info": ["LOAD3D_CAMERA", {}], "bg_image": ["IMAGE", {}]},
        },
        "input_order": {"required": ["model_file"], "optional": ["camera_info", "bg_image"]},
        "output": [],
        "output_name": [],
    },
}
"""``/object_info`` entries of current core nodes our example workflows use, as the published
schemas declare them (``comfy_extras/nodes_bg_removal.py``, ``nodes_load_3d.py``): the two
background-removal nodes 0.3.75 lacks, and Preview 3D, whose ``model_file`` became a multi-type
socket taking a path STRING or a core 3D file. Only the socket types and names matter here."""


def with_newer_core_nodes(object_info: dict) -> dict:
    """A server's ``/object_info`` plus the :data:`CORE_NODES` it lacks (its own entries kept)."""
    return {**CORE_NODES, **object_info}
