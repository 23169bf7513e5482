"""Remove the faces of a mesh that no camera outside it can see.

Gaussians fitted to a light object on a light background leave much of their opacity inside the
object (nothing in the images penalises it), so the extracted level set has surfaces inside the
object: they pull the mesh-to-truth distance inward and waste uv atlas space and bake time.
Cavity filling (:mod:`~.extract`) cannot remove them when the object's wall has gaps that connect
the inner voids to the outside.

:func:`visible_faces` rasterises the mesh orthographically (:func:`~..render.mesh.rasterize`, the
torch backend on CPU) from ``views`` directions spread evenly over the sphere (a Fibonacci
lattice), each view framing the mesh's bounding sphere, and counts the views in which each
vertex touches a triangle that wins at least one pixel (per vertex, not per triangle: the tiny
triangles of a thin leg rarely win a pixel centre themselves, but each view sees some triangle
around each of their vertices). A face counts as seen when each of its vertices is seen from
``min_views`` views: an outer surface is seen from most of the views it faces (about half of
them), while inner surfaces seen through a gap in the wall (the white cylinder's case, measured)
show in only one or two aligned views. A face
whose three vertices all belong to seen faces is kept too: such faces are small faces between
seen ones (too small to win a pixel centre), and dropping them would punch pinholes into the
visible surface. :func:`remove_hidden_faces` keeps these faces and the vertices they use.

Orthographic views are lines of sight from infinitely far away; every camera at a distance sees
along such lines through the bounding sphere, so a face none of them sees is enclosed by the
mesh (or hidden in a crevice narrower than a pixel of the views).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..render.mesh import rasterize
from ..scene.mesh import Mesh

__all__ = ["fibonacci_directions", "remove_hidden_faces", "visible_faces"]


def fibonacci_directions(num: int) -> Tensor:
    """(num, 3) unit vectors spread evenly over the sphere (Fibonacci lattice)."""
    i = torch.arange(num, dtype=torch.float64) + 0.5
    y = 1.0 - 2.0 * i / num
    r = (1.0 - y * y).clamp(min=0.0).sqrt()
    phi = i * math.pi * (3.0 - math.sqrt(5.0))
    return torch.stack([r * phi.cos(), y, r * phi.sin()], dim=-1).float()


def _view_bases(directions: Tensor) -> tuple[Tensor, Tensor]:
    """Right and up unit vectors (C, 3) perpendicular to each viewing direction."""
    helper = torch.zeros_like(directions)
    near_pole = directions[:, 1].abs() > 0.9
    helper[:, 1] = (~near_pole).to(helper.dtype)
    helper[:, 0] = near_pole.to(helper.dtype)
    right = torch.nn.functional.normalize(torch.linalg.cross(helper, directions, dim=-1), dim=-1)
    up = torch.linalg.cross(directions, right, dim=-1)
    return right, up


def visible_faces(
    vertices: Tensor,
    faces: Tensor,
    views: int = 32,
    resolution: int = 256,
    min_views: int = 3,
    batch: int = 8,
    close: bool = True,
) -> Tensor:
    """(F,) bool: the faces whose vertices are all seen in at least ``min_views`` of ``views``
    orthographic views of ``resolution`` pixels square (module docstring); with ``close``, also the
    other faces whose three vertices all belong to such faces."""
    device = vertices.device
    faces = faces.long()
    centre = (vertices.min(0).values + vertices.max(0).values) / 2
    radius = float((vertices - centre).norm(dim=-1).max()) * 1.02 + 1e-6
    local = (vertices - centre) / radius
    dirs = fibonacci_directions(int(views)).to(device)
    right, up = _view_bases(dirs)
    count = torch.zeros(len(vertices), dtype=torch.int32, device=device)
    for start in range(0, len(dirs), int(batch)):
        d, r, u = dirs[start : start + batch], right[start : start + batch], up[start : start + batch]
        # camera on the +d side looking along -d: nearer points have larger p.d, so smaller z
        x, y, z = local @ r.T, local @ u.T, -(local @ d.T)
        pos = torch.stack([x, y, z, torch.ones_like(x)], dim=-1).permute(1, 0, 2).contiguous()
        with torch.no_grad():
            rast = rasterize(pos, faces, (int(resolution), int(resolution)))
        for image in rast[..., 3].long():
            ids = image.unique()
            ids = ids[ids > 0] - 1  # id 0 is the background
            hit = torch.zeros(len(vertices), dtype=torch.bool, device=device)
            hit[faces[ids].reshape(-1)] = True
            count += hit.int()
    seen = count[faces].min(dim=1).values >= max(int(min_views), 1)
    if close and bool(seen.any()):
        on_seen = torch.zeros(len(vertices), dtype=torch.bool, device=device)
        on_seen[faces[seen].reshape(-1)] = True
        seen = seen | on_seen[faces].all(dim=1)
    return seen


def remove_hidden_faces(mesh: Mesh, views: int = 32, resolution: int = 256, min_views: int = 3) -> Mesh:
    """``mesh`` without the faces no outside camera sees and without unused vertices (every
    per-vertex attribute and the texture follow). Returns ``mesh`` itself when every face is seen
    or none is (nothing sensible to remove then)."""
    keep = visible_faces(mesh.vertices, mesh.faces, views=views, resolution=resolution, min_views=min_views)
    if bool(keep.all()) or not bool(keep.any()):
        return mesh
    faces = mesh.faces[keep]
    used = torch.zeros(mesh.num_vertices, dtype=torch.bool, device=mesh.device)
    used[faces.reshape(-1)] = True
    remap = torch.cumsum(used.long(), 0) - 1
    pick = lambda t: None if t is None else t[used]  # noqa: E731
    return Mesh(
        mesh.vertices[used],
        remap[faces],
        uvs=pick(mesh.uvs),
        texture=mesh.texture,
        vertex_colors=pick(mesh.vertex_colors),
        normals=pick(mesh.normals),
    )
