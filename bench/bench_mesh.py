"""Benchmark Stage 2 on the CPU: mesh extraction, UV unwrapping and texture baking.

    python bench/bench_mesh.py [GAUSSIANS.ply] [--resolutions 128 256] [--num 5000]

Without a PLY the model is synthetic: ``--num`` flat Gaussians laid on the demo object's surface
(a hollow shell, like a reconstruction). Prints one JSON line per grid resolution with the stage
times in seconds and the mesh size. Set OMP_NUM_THREADS to pin the thread count.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from microdreamer_core.eval.demo_object import make_demo_mesh  # noqa: E402
from microdreamer_core.io.ply import load_ply  # noqa: E402
from microdreamer_core.meshing.bake import BakeConfig, bake_texture  # noqa: E402
from microdreamer_core.meshing.extract import (  # noqa: E402
    ExtractConfig,
    extract_mesh,
    gaussians_on_surface,
)
from microdreamer_core.meshing.uv import unwrap_uv  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ply", nargs="?", help="a 3DGS PLY (default: synthetic model)")
    parser.add_argument("--resolutions", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--num", type=int, default=5000, help="Gaussians in the synthetic model")
    parser.add_argument("--texture-size", type=int, default=1024)
    parser.add_argument("--target-faces", type=int, default=ExtractConfig.target_faces)
    args = parser.parse_args()

    if args.ply:
        gaussians, source = load_ply(args.ply), Path(args.ply).name
    else:
        gaussians, source = gaussians_on_surface(make_demo_mesh(256), args.num, normal_scale=0.015), "synthetic"
    for res in args.resolutions:
        stages: dict[str, float] = {}
        t = time.perf_counter()
        mesh = extract_mesh(gaussians, ExtractConfig(resolution=res, target_faces=args.target_faces), stages)
        t_extract = time.perf_counter() - t
        t = time.perf_counter()
        unwrapped = unwrap_uv(mesh, args.texture_size)
        t_unwrap = time.perf_counter() - t
        t = time.perf_counter()
        bake_texture(unwrapped, gaussians, BakeConfig(texture_size=args.texture_size))
        t_bake = time.perf_counter() - t
        print(
            json.dumps(
                {
                    "model": source,
                    "gaussians": gaussians.num,
                    "resolution": res,
                    "threads": torch.get_num_threads(),
                    "faces": mesh.num_faces,
                    "extract_s": round(t_extract, 2),
                    "extract_stages_s": {k: round(v, 2) for k, v in stages.items()},
                    "unwrap_s": round(t_unwrap, 2),
                    "bake_s": round(t_bake, 2),
                    "total_s": round(t_extract + t_unwrap + t_bake, 2),
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
