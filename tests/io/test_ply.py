"""3DGS PLY I/O (microdreamer_core.io.ply): round trips, the standard layout, foreign files, errors."""

import math

import numpy as np
import pytest
import torch
from plyfile import PlyData, PlyElement

from microdreamer_core.errors import InputError
from microdreamer_core.io.ply import load_ply, save_ply
from microdreamer_core.scene.gaussians import SH_C0, Gaussians


def _random_gaussians(n=50, degree=2):
    gen = torch.Generator().manual_seed(1)
    k = (degree + 1) ** 2 - 1
    return Gaussians(
        torch.randn(n, 3, generator=gen),
        torch.randn(n, 3, generator=gen),
        torch.randn(n, 4, generator=gen),
        torch.randn(n, generator=gen),
        torch.randn(n, 1, 3, generator=gen),
        torch.randn(n, k, 3, generator=gen),
    )


@pytest.mark.parametrize("degree", [0, 1, 3])
def test_ply_roundtrip(tmp_path, degree):
    g = _random_gaussians(degree=degree)
    path = save_ply(g, tmp_path / "g.ply")
    h = load_ply(path)
    for name in Gaussians.PARAMS:
        assert torch.equal(getattr(g, name), getattr(h, name)), name
    assert not list(tmp_path.glob(".*.tmp"))  # no temp file left behind


def test_ply_layout_is_the_standard_3dgs_one(tmp_path):
    g = _random_gaussians(n=3, degree=1)
    ply = PlyData.read(str(save_ply(g, tmp_path / "g.ply")))
    names = [p.name for p in ply["vertex"].properties]
    assert names == (
        ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
        + [f"f_rest_{i}" for i in range(9)]
        + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    )
    assert not ply.text and ply.byte_order in ("<", "=")
    # f_rest is channel-major: f_rest_0..2 are the red coefficients of bands 1..3
    v = ply["vertex"]
    assert v["f_rest_1"][0] == pytest.approx(g.shN[0, 1, 0].item())
    assert v["f_rest_3"][0] == pytest.approx(g.shN[0, 0, 1].item())


def test_load_a_ply_written_by_another_tool(tmp_path):
    # What the Inria code writes: float32 binary PLY, our column names, degree 0.
    n = 4
    dtype = [
        (k, "f4")
        for k in [
            "x",
            "y",
            "z",
            "nx",
            "ny",
            "nz",
            "f_dc_0",
            "f_dc_1",
            "f_dc_2",
            "opacity",
            "scale_0",
            "scale_1",
            "scale_2",
            "rot_0",
            "rot_1",
            "rot_2",
            "rot_3",
        ]
    ]
    arr = np.zeros(n, dtype=dtype)
    arr["x"] = np.arange(n)
    arr["f_dc_0"] = (1.0 - 0.5) / SH_C0  # red
    arr["rot_0"] = 1.0
    arr["opacity"] = 2.0
    PlyData([PlyElement.describe(arr, "vertex")]).write(str(tmp_path / "inria.ply"))
    g = load_ply(tmp_path / "inria.ply")
    assert g.num == n and g.sh_degree == 0
    assert torch.allclose(g.base_colors()[0], torch.tensor([1.0, 0.5, 0.5]))
    assert g.activated_opacities()[0] == pytest.approx(1 / (1 + math.exp(-2)), rel=1e-6)


def test_ply_errors(tmp_path):
    with pytest.raises(InputError, match="no Gaussian PLY"):
        load_ply(tmp_path / "missing.ply")
    (tmp_path / "junk.ply").write_bytes(b"not a ply at all")
    with pytest.raises(InputError, match="not a readable PLY"):
        load_ply(tmp_path / "junk.ply")
    arr = np.zeros(2, dtype=[("x", "f4"), ("y", "f4"), ("z", "f4")])
    PlyData([PlyElement.describe(arr, "vertex")]).write(str(tmp_path / "points.ply"))
    with pytest.raises(InputError, match="not a 3D Gaussian splatting PLY"):
        load_ply(tmp_path / "points.ply")
    g = _random_gaussians(degree=0)
    save_ply(g, tmp_path / "nan.ply")
    ply = PlyData.read(str(tmp_path / "nan.ply"), mmap=False)
    ply["vertex"]["opacity"][3] = np.nan
    ply.write(str(tmp_path / "nan.ply"))
    with pytest.raises(InputError, match="NaN"):
        load_ply(tmp_path / "nan.ply")
    # refusing to save NaN leaves no file
    bad = g.map(lambda t: t.clone())
    bad.means[0, 0] = float("nan")
    with pytest.raises(InputError, match="NaN"):
        save_ply(bad, tmp_path / "out.ply")
    assert not (tmp_path / "out.ply").exists()
