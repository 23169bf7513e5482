"""The Mesh container's geometry helpers."""

from pathlib import Path

import pytest
import torch

from microdreamer_core.io.mesh_files import load_mesh
from microdreamer_core.scene.mesh import normalize_to_unit_sphere

DUCK = Path(__file__).resolve().parents[3] / "shared" / "assets" / "Duck.glb"


def test_normalize_to_unit_sphere_moves_geometry_only():
    if not DUCK.is_file():
        pytest.skip(f"real test data not found at {DUCK}: put the shared/ folder beside the repo")
    mesh = load_mesh(DUCK)
    unit = normalize_to_unit_sphere(mesh, 1.0)
    assert float(unit.vertices.norm(dim=-1).max()) == pytest.approx(1.0, abs=1e-5)
    lo, hi = unit.bounds
    assert torch.allclose((lo + hi) / 2, torch.zeros(3), atol=1e-5)
    assert unit.texture is mesh.texture  # colour data is shared, only geometry changes
