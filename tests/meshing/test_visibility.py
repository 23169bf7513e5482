"""Hidden-face removal: surfaces inside the object go, everything an outside camera sees stays."""

from __future__ import annotations

import torch

from microdreamer_core.meshing.visibility import fibonacci_directions, remove_hidden_faces, visible_faces
from microdreamer_core.scene.mesh import Mesh


def _box(
    lo: tuple[float, float, float], hi: tuple[float, float, float], n: int = 4
) -> tuple[torch.Tensor, torch.Tensor]:
    """A closed axis-aligned box, each side split into n x n quads (2 triangles each), outward winding."""
    lo_t, hi_t = torch.tensor(lo), torch.tensor(hi)
    verts, faces = [], []
    t = torch.linspace(0.0, 1.0, n + 1)
    a, b = torch.meshgrid(t, t, indexing="ij")
    for axis in range(3):
        for side in (0.0, 1.0):
            u_ax, v_ax = (axis + 1) % 3, (axis + 2) % 3
            p = torch.zeros(n + 1, n + 1, 3)
            p[..., axis] = side
            p[..., u_ax], p[..., v_ax] = a, b
            base = sum(len(v) for v in verts)
            verts.append((lo_t + p * (hi_t - lo_t)).reshape(-1, 3))
            idx = torch.arange((n + 1) ** 2).reshape(n + 1, n + 1) + base
            q0, q1, q2, q3 = idx[:-1, :-1], idx[1:, :-1], idx[1:, 1:], idx[:-1, 1:]
            tri = torch.cat([torch.stack([q0, q1, q2], -1), torch.stack([q0, q2, q3], -1)]).reshape(-1, 3)
            faces.append(tri if side == 1.0 else tri[:, [0, 2, 1]])
    return torch.cat(verts), torch.cat(faces)


def _join(*parts):
    verts, faces, offset = [], [], 0
    for v, f in parts:
        verts.append(v)
        faces.append(f + offset)
        offset += len(v)
    return torch.cat(verts), torch.cat(faces)


def test_directions_are_unit_and_spread():
    d = fibonacci_directions(32)
    assert torch.allclose(d.norm(dim=-1), torch.ones(32), atol=1e-5)
    assert float(d.mean(0).norm()) < 0.05  # balanced over the sphere


def test_inner_box_removed_outer_box_and_thin_rod_kept():
    outer = _box((-0.5, -0.5, -0.5), (0.5, 0.5, 0.5))
    inner = _box((-0.2, -0.2, -0.2), (0.2, 0.2, 0.2))
    rod = _box((0.6, -0.5, -0.01), (0.62, 0.5, 0.01), n=2)  # a thin leg beside the box, ~3 px wide
    v, f = _join(outer, inner, rod)
    n_outer, n_inner, n_rod = len(outer[1]), len(inner[1]), len(rod[1])
    keep = visible_faces(v, f)
    assert keep[:n_outer].all()
    assert not keep[n_outer : n_outer + n_inner].any()
    assert keep[n_outer + n_inner :].all() and n_rod > 0

    colours = torch.rand(len(v), 3)
    mesh = Mesh(v, f, vertex_colors=colours)
    out = remove_hidden_faces(mesh)
    assert out.num_faces == n_outer + n_rod
    assert out.num_vertices == len(outer[0]) + len(rod[0])  # the inner box's vertices are gone
    keep_v = torch.ones(len(v), dtype=torch.bool)
    keep_v[len(outer[0]) : len(outer[0]) + len(inner[0])] = False
    assert torch.equal(out.vertex_colors, colours[keep_v]) and torch.equal(out.vertices, v[keep_v])


def test_fully_visible_mesh_is_returned_unchanged():
    mesh = Mesh(*_box((-0.5, -0.5, -0.5), (0.5, 0.5, 0.5)))
    assert remove_hidden_faces(mesh) is mesh
