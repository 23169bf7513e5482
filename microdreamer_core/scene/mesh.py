"""Triangle meshes: the :class:`Mesh` container, normals and normalisation.

Conventions
-----------
* ``vertices`` (V, 3) float32 in the project's y-up world, ``faces`` (F, 3) int64.
* ``uvs`` follow OpenGL / trimesh: origin at the bottom-left, ``v`` grows upwards, so ``v = 1`` is
  row 0 of ``texture``.
* ``texture`` is (Ht, Wt, 3) float32 in [0, 1] with row 0 the *top* of the image (PIL order).
* Colours are stored as they are in the file (sRGB-encoded values), no linearisation.

Files: :mod:`~microdreamer_core.io.mesh_files` reads them, :mod:`~microdreamer_core.io.export` writes them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor

from ..errors import InputError

__all__ = ["Mesh", "GREY", "normalize_to_unit_sphere", "vertex_normals", "face_areas", "sample_surface"]

GREY = 0.5
"""Colour of a mesh without texture or vertex colours."""


@dataclass
class Mesh:
    """A triangle mesh with optional uv texture, vertex colours and vertex normals."""

    vertices: Tensor
    faces: Tensor
    uvs: Tensor | None = None
    texture: Tensor | None = None
    vertex_colors: Tensor | None = None
    normals: Tensor | None = None

    def __post_init__(self) -> None:
        self.vertices = torch.as_tensor(self.vertices, dtype=torch.float32)
        self.faces = torch.as_tensor(self.faces, dtype=torch.int64, device=self.vertices.device)
        if self.vertices.ndim != 2 or self.vertices.shape[-1] != 3:
            raise InputError(f"vertices must be (V, 3), got {tuple(self.vertices.shape)}")
        if self.faces.ndim != 2 or self.faces.shape[-1] != 3:
            raise InputError(f"faces must be (F, 3), got {tuple(self.faces.shape)}")
        for name, width in (("uvs", 2), ("vertex_colors", 3), ("normals", 3)):
            value = getattr(self, name)
            if value is not None:
                value = torch.as_tensor(value, dtype=torch.float32, device=self.vertices.device)
                if value.shape != (len(self.vertices), width):
                    raise InputError(f"{name} must be ({len(self.vertices)}, {width}), got {tuple(value.shape)}")
                setattr(self, name, value)
        if self.texture is not None:
            self.texture = torch.as_tensor(self.texture, dtype=torch.float32, device=self.vertices.device)
            if self.texture.ndim != 3:
                raise InputError(f"texture must be (Ht, Wt, C), got {tuple(self.texture.shape)}")
            if self.uvs is None:
                raise InputError("a texture needs uvs")

    # --- basic properties --------------------------------------------------------------
    @property
    def num_vertices(self) -> int:
        return self.vertices.shape[0]

    @property
    def num_faces(self) -> int:
        return self.faces.shape[0]

    @property
    def device(self) -> torch.device:
        return self.vertices.device

    @property
    def has_texture(self) -> bool:
        return self.texture is not None and self.uvs is not None

    @property
    def bounds(self) -> Tensor:
        """(2, 3) axis-aligned bounding box: row 0 the minimum corner, row 1 the maximum."""
        return torch.stack([self.vertices.min(0).values, self.vertices.max(0).values])

    def to(self, device) -> Mesh:
        """A copy with every tensor on ``device``."""
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        return Mesh(
            self.vertices.to(device),
            self.faces.to(device),
            move(self.uvs),
            move(self.texture),
            move(self.vertex_colors),
            move(self.normals),
        )

    # --- geometry -------------------------------------------------------------------------
    def face_normals(self) -> Tensor:
        """(F, 3) unit normals from the counter-clockwise winding (zero for degenerate faces)."""
        v0, v1, v2 = self.vertices[self.faces].unbind(1)
        return torch.nn.functional.normalize(torch.linalg.cross(v1 - v0, v2 - v0, dim=-1), dim=-1)

    def compute_vertex_normals(self) -> Mesh:
        """Set ``normals`` to :func:`vertex_normals` of the current geometry and return self."""
        self.normals = vertex_normals(self.vertices, self.faces)
        return self

    def check(self, what: str = "the mesh") -> None:
        """Refuse an empty mesh, face indices outside the vertices and NaN or infinite values."""
        if self.num_faces == 0 or self.num_vertices == 0:
            raise InputError(f"{what} is empty (0 faces): give a mesh with triangles")
        if int(self.faces.min()) < 0 or int(self.faces.max()) >= self.num_vertices:
            raise InputError(
                f"{what} has face indices outside 0..{self.num_vertices - 1}: "
                "the file or the step that made it is broken"
            )
        for name in ("vertices", "uvs", "vertex_colors", "normals", "texture"):
            value = getattr(self, name)
            if value is not None and not bool(torch.isfinite(value).all()):
                raise InputError(f"{what} has NaN or infinite {name}: the file or the step that made it is broken")

    def vertex_colors_or_grey(self) -> Tensor:
        """(V, 3) vertex colours, or uniform grey when the mesh has none."""
        if self.vertex_colors is not None:
            return self.vertex_colors
        return torch.full_like(self.vertices, GREY)


def vertex_normals(vertices: Tensor, faces: Tensor) -> Tensor:
    """(V, 3) unit vertex normals: area-weighted averages of the adjacent face normals.

    The un-normalised cross product is twice the face area, so summing it weights by area.
    Differentiable w.r.t. ``vertices``. Isolated vertices get +y rather than a zero vector.
    """
    v0, v1, v2 = vertices[faces].unbind(1)
    fn = torch.linalg.cross(v1 - v0, v2 - v0, dim=-1)
    vn = torch.zeros_like(vertices).index_add(0, faces.reshape(-1), fn.repeat_interleave(3, dim=0))
    length = vn.norm(dim=-1, keepdim=True)
    up = torch.tensor([0.0, 1.0, 0.0], device=vertices.device, dtype=vertices.dtype).expand_as(vn)
    return torch.where(length > 1e-20, vn / length.clamp(min=1e-20), up)


def face_areas(vertices: Tensor, faces: Tensor) -> Tensor:
    """(F,) triangle areas."""
    v0, v1, v2 = vertices[faces].unbind(1)
    return torch.linalg.cross(v1 - v0, v2 - v0, dim=-1).norm(dim=-1) / 2


def sample_surface(
    mesh: Mesh, num: int, generator: torch.Generator | None = None, faces: Tensor | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """``num`` points uniform by area on ``mesh``'s surface (or on the subset ``faces``, indices).

    Returns points (num, 3), the face index of each (num,) and its barycentric weights (num, 3),
    so any per-vertex attribute can be interpolated at the points. Draws, in this order, the faces
    (``torch.multinomial`` on the areas) and two uniforms per point from ``generator``.
    """
    subset = torch.arange(mesh.num_faces, device=mesh.device) if faces is None else faces.to(mesh.device)
    area = face_areas(mesh.vertices, mesh.faces[subset])
    if len(subset) == 0 or not bool(area.sum() > 0):
        raise InputError("cannot sample the surface of a mesh without (non-degenerate) triangles")
    pick = torch.multinomial(area.cpu(), num, replacement=True, generator=generator).to(mesh.device)
    face = subset[pick]
    r1 = torch.rand(num, generator=generator).sqrt().to(mesh.device)
    r2 = torch.rand(num, generator=generator).to(mesh.device)
    bary = torch.stack([1 - r1, r1 * (1 - r2), r1 * r2], dim=-1)  # uniform on the triangle
    points = (bary[:, :, None] * mesh.vertices[mesh.faces[face]]).sum(1)
    return points, face, bary


# ----------------------------------------------------------------------------------------
# Loading
# ----------------------------------------------------------------------------------------


def normalize_to_unit_sphere(mesh: Mesh, radius: float = 1.0) -> Mesh:
    """A copy centred on its bounding-box centre and scaled so the farthest vertex is at ``radius``.

    Normals are unchanged by a uniform scale and translation, so they are kept.
    """
    lo, hi = mesh.bounds
    centred = mesh.vertices - (lo + hi) / 2
    extent = centred.norm(dim=-1).max()
    scale = radius / extent if extent > 0 else 1.0
    return replace(mesh, vertices=centred * scale)
