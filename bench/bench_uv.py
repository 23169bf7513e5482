"""Time uv unwrapping (xatlas) per chart setting on 50k-face test surfaces.

    python bench/bench_uv.py                   # smooth and noisy surfaces, quality and fast
    python bench/bench_uv.py --surface noisy --faces 50000 --texture 1024

Surfaces: marching cubes of a 128^3 field, decimated to ``--faces`` like the pipeline's meshes.
``smooth``: a squashed ball with a gentle wave (what a good reconstruction gives). ``noisy``:
the same plus voxel noise (what random-weight Gaussians give: thousands of tiny charts).
Prints seconds, chart count and atlas utilisation (fraction of texels covered) per setting.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from microdreamer_core.meshing.extract import _decimate  # noqa: E402
from microdreamer_core.meshing.uv import UV_CHARTS, unwrap_uv  # noqa: E402
from microdreamer_core.scene.mesh import Mesh  # noqa: E402


def surface(kind: str, faces: int, n: int = 128) -> Mesh:
    import mcubes

    x = np.linspace(-1, 1, n)
    X, Y, Z = np.meshgrid(x, x, x, indexing="ij")
    r = np.sqrt(X**2 + 1.5 * Y**2 + Z**2) + 0.3 * np.sin(7 * X) * np.cos(5 * Y) * np.sin(6 * Z) * (kind == "noisy")
    field = 0.7 - r
    if kind == "noisy":
        field += 0.03 * np.random.default_rng(0).standard_normal(field.shape)
    v, f = mcubes.marching_cubes(field, 0.0)
    v = (v / (n - 1) * 2 - 1).astype(np.float32)
    v, f = _decimate(v, f.astype(np.int64), faces)
    return Mesh(
        torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)),
        torch.from_numpy(np.ascontiguousarray(f, dtype=np.int64)),
    )


def utilisation(mesh: Mesh) -> float:
    t = mesh.uvs[mesh.faces]
    e1, e2 = t[:, 1] - t[:, 0], t[:, 2] - t[:, 0]
    return float((e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]).abs().sum() / 2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--surface", default="both", choices=["both", "smooth", "noisy"])
    ap.add_argument("--faces", type=int, default=50_000)
    ap.add_argument("--texture", type=int, default=1024)
    args = ap.parse_args()
    for kind in ["smooth", "noisy"] if args.surface == "both" else [args.surface]:
        mesh = surface(kind, args.faces)
        for charts in UV_CHARTS:
            t0 = time.perf_counter()
            out = unwrap_uv(mesh, args.texture, charts=charts)
            sec = time.perf_counter() - t0
            print(
                json.dumps(
                    {
                        "surface": kind,
                        "faces": mesh.num_faces,
                        "charts": charts,
                        "seconds": round(sec, 2),
                        "uv_area": round(utilisation(out), 3),
                        "vertices_after_seams": out.num_vertices,
                        "threads": torch.get_num_threads(),
                    }
                ),
                flush=True,
            )


if __name__ == "__main__":
    main()
