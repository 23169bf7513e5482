"""UV unwrapping with xatlas: a mesh gets a texture atlas layout (vertices split along seams)."""

from __future__ import annotations

import numpy as np
import torch

from ..errors import InputError
from ..scene.mesh import Mesh

__all__ = ["UV_CHARTS", "check_uv_charts", "unwrap_uv"]

UV_CHARTS = {
    "quality": {"max_iterations": 1, "max_chart_fraction": 0.0},
    "fast": {"max_iterations": 0, "max_chart_fraction": 0.01},
}
"""xatlas chart settings by name. ``quality`` is xatlas' default (one chart-growing refinement
iteration, charts of any size). ``fast`` skips the refinement and caps a chart at 1 % of the
surface area. Measured on this project's 2-core CPU (``bench/bench_uv.py``, 50k faces, 1024
atlas, other jobs running; bench/RESULTS.md): smooth surface 52 s -> 2.1 s, uv area used
0.47 -> 0.46; noisy surface (what random-weight Gaussians give) 500 s -> 6.1 s, 0.122 -> 0.116.
On the Duck both give the same textured novel-view PSNR (26.46 dB); on the four issue-15 fidelity
objects (bench/bench_mesh_fidelity.py, saved Gaussians, 30-45k faces) ``fast`` unwrapped in
1.0-1.6 s against 6.1-20.4 s with textured PSNR equal to 0.004 dB, so ``fast`` is the default."""


def check_uv_charts(name: str) -> None:
    """Refuse a chart setting name that is not in :data:`UV_CHARTS`, with the names that are."""
    if name not in UV_CHARTS:
        raise InputError(f"unknown uv chart setting {name!r}: use one of {', '.join(UV_CHARTS)}")


def unwrap_uv(mesh: Mesh, texture_size: int = 1024, padding: int = 4, charts: str = "fast") -> Mesh:
    """A copy of ``mesh`` with xatlas uvs in [0, 1]; vertices are split along chart seams.

    xatlas packs charts into an atlas image whose row 0 is at v = 0; our uvs are OpenGL's
    (v = 1 is row 0 of the texture), so v is flipped. Nothing depends on it being flipped as we
    bake ourselves, but it keeps the atlas the right way up relative to xatlas' own layout.
    Vertex attributes (colours, normals) follow the split through xatlas' vertex mapping.
    ``charts`` names the chart settings (:data:`UV_CHARTS`).
    """
    import xatlas

    if mesh.num_faces == 0:
        raise InputError("cannot unwrap an empty mesh: extract a mesh with faces first")
    check_uv_charts(charts)
    vertices = mesh.vertices.detach().cpu().numpy().astype(np.float32)
    faces = mesh.faces.cpu().numpy().astype(np.uint32)
    atlas = xatlas.Atlas()
    atlas.add_mesh(vertices, faces)
    chart = xatlas.ChartOptions()
    chart.max_iterations = UV_CHARTS[charts]["max_iterations"]
    fraction = UV_CHARTS[charts]["max_chart_fraction"]
    if fraction > 0:
        tri = vertices[faces.astype(np.int64)]
        area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1).sum()
        chart.max_chart_area = float(fraction * area)
    pack = xatlas.PackOptions()
    pack.resolution = int(texture_size)
    pack.padding = int(padding)
    pack.bilinear = True
    atlas.generate(chart, pack)
    vmapping, indices, uvs = atlas[0]
    vmap = torch.from_numpy(vmapping.astype(np.int64))
    uvs = torch.from_numpy(uvs.astype(np.float32))
    uvs[:, 1] = 1.0 - uvs[:, 1]
    pick = lambda t: None if t is None else t[vmap.to(t.device)]  # noqa: E731
    return Mesh(
        mesh.vertices[vmap.to(mesh.device)],
        torch.from_numpy(indices.astype(np.int64)).to(mesh.device),
        uvs=uvs.to(mesh.device),
        vertex_colors=pick(mesh.vertex_colors),
        normals=pick(mesh.normals),
    )
