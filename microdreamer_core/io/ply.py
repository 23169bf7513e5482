"""The standard 3DGS PLY layout (Kerbl et al. 2023), read and written.

Columns ``x y z nx ny nz f_dc_* f_rest_* opacity scale_* rot_*`` hold the raw parameters of
:class:`~microdreamer_core.scene.gaussians.Gaussians` (SH degree 0-3, ``f_rest`` channel-major).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from plyfile import PlyData, PlyElement
from torch import Tensor

from ..errors import InputError
from ..scene.gaussians import Gaussians
from .outputs import atomic_path

__all__ = ["save_ply", "load_ply"]


def save_ply(gaussians: Gaussians, path: str | Path) -> Path:
    """Write the standard 3DGS PLY (x y z nx ny nz f_dc_* f_rest_* opacity scale_* rot_*), atomically."""
    gaussians.check_finite("refusing to save: the Gaussian model")
    g = gaussians.detach().to("cpu")
    n, k = g.num, g.shN.shape[1]
    rest = g.shN.transpose(1, 2).reshape(n, 3 * k)  # channel-major, as the reference PLY stores it
    columns = [g.means, torch.zeros(n, 3), g.sh0[:, 0], rest, g.opacities[:, None], g.scales, g.quats]
    names = (
        ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
        + [f"f_rest_{i}" for i in range(3 * k)]
        + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    )
    data = torch.cat(columns, dim=1).numpy().astype(np.float32)
    vertex = np.empty(n, dtype=[(name, "f4") for name in names])
    for i, name in enumerate(names):
        vertex[name] = data[:, i]
    path = Path(path)
    with atomic_path(path) as tmp:
        PlyData([PlyElement.describe(vertex, "vertex")]).write(str(tmp))
    return path


def load_ply(path: str | Path) -> Gaussians:
    """Read a standard 3DGS PLY (any SH degree 0-3)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"no Gaussian PLY at {path}: check the path")
    try:
        ply = PlyData.read(str(path), mmap=False)  # no memory map: the file may be replaced while in use
        v = ply["vertex"]
    except Exception as e:  # plyfile raises assorted errors for non-PLY input
        raise InputError(f"{path.name} is not a readable PLY file ({type(e).__name__}: {e})") from None
    props = {p.name for p in v.properties}
    need = (
        ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity"]
        + [f"scale_{i}" for i in range(3)]
        + [f"rot_{i}" for i in range(4)]
    )
    missing = [p for p in need if p not in props]
    if missing:
        raise InputError(
            f"{path.name} is not a 3D Gaussian splatting PLY (missing {', '.join(missing)}): "
            "expected the standard 3DGS layout (x y z f_dc_* f_rest_* opacity scale_* rot_*)"
        )
    n_rest = len([p for p in props if p.startswith("f_rest_")])
    if n_rest % 3 or n_rest // 3 not in (0, 3, 8, 15):
        raise InputError(f"{path.name} has {n_rest} f_rest_* columns; expected 0, 9, 24 or 45 (SH degree 0-3)")

    def col(*names: str) -> Tensor:
        return torch.from_numpy(np.stack([np.asarray(v[name], dtype=np.float32) for name in names], axis=1))

    n, k = len(v.data), n_rest // 3
    rest = col(*[f"f_rest_{i}" for i in range(n_rest)]) if k else torch.zeros(n, 0)
    g = Gaussians(
        means=col("x", "y", "z"),
        scales=col("scale_0", "scale_1", "scale_2"),
        quats=col("rot_0", "rot_1", "rot_2", "rot_3"),
        opacities=col("opacity")[:, 0],
        sh0=col("f_dc_0", "f_dc_1", "f_dc_2")[:, None],
        shN=rest.reshape(n, 3, k).transpose(1, 2).contiguous(),
    )
    g.check_finite(f"{path.name}")
    return g
