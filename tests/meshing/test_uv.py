"""UV unwrapping (xatlas): a valid, non-overlapping atlas that only splits vertices."""

from __future__ import annotations

import gaussian_shapes as shapes
import pytest
import torch

from microdreamer_core.errors import InputError
from microdreamer_core.meshing.extract import ExtractConfig, extract_mesh
from microdreamer_core.meshing.uv import unwrap_uv


@pytest.mark.parametrize("charts", ["quality", "fast"])
def test_unwrap_uv_gives_valid_atlas(charts):
    mesh = extract_mesh(shapes.ball(0.4, 2000), ExtractConfig(resolution=40, target_faces=2000))
    unwrapped = unwrap_uv(mesh, texture_size=256, charts=charts)
    uv = unwrapped.uvs
    assert uv.min() >= 0 and uv.max() <= 1
    assert unwrapped.num_faces == mesh.num_faces and unwrapped.num_vertices >= mesh.num_vertices
    # Seams split vertices but never move them: every new vertex is an old one.
    d = torch.cdist(unwrapped.vertices, mesh.vertices, compute_mode="donot_use_mm_for_euclid_dist").min(1).values
    assert float(d.max()) < 1e-6
    t = uv[unwrapped.faces]
    area = (
        (t[:, 1] - t[:, 0])[:, 0] * (t[:, 2] - t[:, 0])[:, 1] - (t[:, 1] - t[:, 0])[:, 1] * (t[:, 2] - t[:, 0])[:, 0]
    ) / 2
    assert float((area.abs() > 1e-8).float().mean()) > 0.99
    assert unwrapped.vertex_colors is not None and unwrapped.normals is not None
    # charts do not overlap: their uv areas add up to no more than the unit square
    assert 0.2 < float(area.abs().sum()) <= 1.0


def test_unknown_uv_chart_setting_is_refused():
    mesh = extract_mesh(shapes.ball(0.4, 500), ExtractConfig(resolution=24, target_faces=500))
    with pytest.raises(InputError, match="use one of quality, fast"):
        unwrap_uv(mesh, charts="turbo")
