"""Interchange with ComfyUI's core ``MESH`` layout: a zero-padded batch of meshes.

ComfyUI's ``MESH`` holds ``vertices`` (B, N, 3) and ``faces`` (B, M, 3) and, in newer releases,
optional per-vertex ``uvs`` (B, N, 2), ``vertex_colors`` (B, N, 3 or 4) and ``normals``
(B, N, 3), one ``texture`` per item (B, H, W, 3) in [0, 1], and ``vertex_counts`` /
``face_counts`` (B,) when items of different sizes are zero-padded to one N and M. Its uvs follow
glTF (origin at the image's top-left, v down: core's GLB writer stores them as they are), ours
follow OpenGL (v up), so ``v`` becomes ``1 - v`` both ways. Texture row 0 is the top of the image
in both. Vertex colours pass as they are (our sRGB-encoded values, like the texture's).

This module only produces and consumes the tensors; the ComfyUI node wraps them in
``Types.MESH`` (``nodes/core_mesh.py``) with the fields the running release's constructor takes,
so the library stays free of ComfyUI imports.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..errors import InputError
from .mesh import Mesh

__all__ = ["mesh_to_batch", "mesh_from_batch"]


def _flip_v(uvs: Tensor) -> Tensor:
    return torch.stack([uvs[..., 0], 1.0 - uvs[..., 1]], dim=-1)


def mesh_to_batch(mesh: Mesh) -> dict[str, Tensor]:
    """The fields of a core ``MESH`` batch of one, by constructor keyword (absent fields left out).

    Float fields are float32 on the CPU, faces int64; the texture keeps its first three channels.
    """
    m = mesh.to("cpu")
    fields = {"vertices": m.vertices.detach().float()[None], "faces": m.faces.to(torch.int64)[None]}
    if m.uvs is not None:
        fields["uvs"] = _flip_v(m.uvs.detach().float())[None]
    if m.texture is not None:
        fields["texture"] = m.texture.detach().float()[..., :3].clamp(0.0, 1.0)[None]
    if m.vertex_colors is not None:
        fields["vertex_colors"] = m.vertex_colors.detach().float()[None]
    if m.normals is not None:
        fields["normals"] = m.normals.detach().float()[None]
    return fields


def _item(value: Tensor | None, index: int, count: int | None) -> Tensor | None:
    if value is None:
        return None
    row = value[index]
    return row[:count] if count is not None else row


def mesh_from_batch(
    vertices: Tensor,
    faces: Tensor,
    uvs: Tensor | None = None,
    vertex_colors: Tensor | None = None,
    texture: Tensor | None = None,
    normals: Tensor | None = None,
    vertex_counts: Tensor | None = None,
    face_counts: Tensor | None = None,
    index: int = 0,
) -> Mesh:
    """Item ``index`` of a core ``MESH`` batch as our :class:`Mesh` (uvs turned back to v up,
    padding cut off with the counts, an RGBA texture or vertex colours reduced to RGB).

    A texture without uvs cannot be placed on the surface: it is dropped rather than guessed.
    """
    if vertices.ndim != 3 or faces.ndim != 3:
        raise InputError(
            f"a core MESH holds batched vertices (B, N, 3) and faces (B, M, 3), got "
            f"{tuple(vertices.shape)} and {tuple(faces.shape)}"
        )
    batch = vertices.shape[0]
    if not 0 <= index < batch:
        raise InputError(f"batch_index {index} is outside the MESH batch of {batch}: pick 0..{batch - 1}")
    n = int(vertex_counts[index]) if vertex_counts is not None else None
    m = int(face_counts[index]) if face_counts is not None else None
    item_uvs = _item(uvs, index, n)
    colors = _item(vertex_colors, index, n)
    tex = texture[index if texture.shape[0] > 1 else 0] if texture is not None and texture.ndim == 4 else texture
    if item_uvs is None:
        tex = None
    mesh = Mesh(
        _item(vertices, index, n).float().cpu(),
        _item(faces, index, m).to(torch.int64).cpu(),
        uvs=None if item_uvs is None else _flip_v(item_uvs.float().cpu()),
        texture=None if tex is None else tex[..., :3].float().cpu(),
        vertex_colors=None if colors is None else colors[..., :3].float().cpu(),
        normals=None if _item(normals, index, n) is None else _item(normals, index, n).float().cpu(),
    )
    mesh.check("the core MESH")
    return mesh
