"""Mesh-stage fidelity (issue 15): how much of what the Gaussians show survives the mesh stage.

For every object of microdreamer_core/eval/fidelity_objects.py (or ``--object NAME``): render it
from 6 views, reconstruct Gaussians (``--steps`` at ``--res``), run the mesh stage at its
defaults, and score held-out views and surface distances (microdreamer_core/eval/fidelity.py's
docstring defines every number). Prints a table and appends one JSON line per object to
``--out`` (date, host, machine, device, torch, commit, the exact command, every number).

    OMP_NUM_THREADS=2 python bench/bench_mesh_fidelity.py                       # all objects, 500 steps, 128 px
    python bench/bench_mesh_fidelity.py --object chair --save-dir /tmp/fid     # keep Gaussians, mesh, views
    python bench/bench_mesh_fidelity.py --gaussians-dir /tmp/fid               # re-mesh saved Gaussians only
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _common import commit  # noqa: E402

from microdreamer_core.eval.fidelity import FidelityConfig, evaluate_mesh_fidelity  # noqa: E402
from microdreamer_core.eval.fidelity_objects import FIDELITY_OBJECTS, make_fidelity_object  # noqa: E402
from microdreamer_core.io.export import save_glb  # noqa: E402
from microdreamer_core.io.ply import load_ply, save_ply  # noqa: E402
from microdreamer_core.io.transforms import save_rgba  # noqa: E402
from microdreamer_core.meshing.stage import MeshConfig  # noqa: E402
from microdreamer_core.meshing.uv import UV_CHARTS  # noqa: E402

COLUMNS = [  # (header, report key, format)
    ("object", "object", "{}"),
    ("G IoU", "gaussians_iou", "{:.3f}"),
    ("G dB", "gaussians_psnr_db", "{:.2f}"),
    ("M IoU", "mesh_iou", "{:.3f}"),
    ("M dB", "mesh_psnr_db", "{:.2f}"),
    ("M/G dB", "mesh_vs_gaussians_psnr_db", "{:.2f}"),
    ("M/G IoU", "mesh_vs_gaussians_iou", "{:.3f}"),
    ("CD", "chamfer", "{:.4f}"),
    ("M->T", "chamfer_mesh_to_truth", "{:.4f}"),
    ("T->M", "chamfer_truth_to_mesh", "{:.4f}"),
    ("signed", "signed_mesh_to_truth", "{:+.4f}"),
    ("thin min", "thin_part_min", "{:.3f}"),
    ("det G/T", "detail_gaussians_over_truth", "{:.2f}"),
    ("det M/G", "detail_mesh_over_gaussians", "{:.2f}"),
    ("bakeT dB", "truth_baked_psnr_db", "{:.2f}"),
    ("recon s", "reconstruct_s", "{:.0f}"),
]


def _cell(fmt: str, value) -> str:
    return "-" if value is None else fmt.format(value)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--object", choices=sorted(FIDELITY_OBJECTS), action="append", help="repeatable; default: all")
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--res", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--mesh-resolution", type=int, default=MeshConfig.resolution)
    ap.add_argument("--target-faces", type=int, default=MeshConfig.target_faces)
    ap.add_argument("--texture-size", type=int, default=MeshConfig.texture_size)
    ap.add_argument("--uv-charts", choices=sorted(UV_CHARTS), default=MeshConfig.uv_charts, help="xatlas chart setting")
    ap.add_argument("--keep-hidden", action="store_true", help="MeshConfig.remove_hidden=False")
    ap.add_argument("--no-bake-on-truth", action="store_true", help="skip the bake onto the true geometry")
    ap.add_argument("--save-dir", default="", help="write NAME.ply (Gaussians), NAME.glb and NAME_views.png here")
    ap.add_argument("--gaussians-dir", default="", help="load NAME.ply from here instead of reconstructing")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results_mesh_fidelity.jsonl"), help="'' = do not write")
    args = ap.parse_args()

    mesh_cfg = MeshConfig(
        resolution=args.mesh_resolution,
        target_faces=args.target_faces,
        texture_size=args.texture_size,
        uv_charts=args.uv_charts,
        remove_hidden=not args.keep_hidden,
    )
    cfg = FidelityConfig(
        steps=args.steps,
        resolution=args.res,
        seed=args.seed,
        device=args.device,
        mesh=mesh_cfg,
        bake_on_truth=not args.no_bake_on_truth,
    )
    meta = {
        "date": time.strftime("%Y-%m-%d"),
        "host": platform.node(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads",
        "device": args.device,
        "torch": torch.__version__,
        "commit": commit(),
        "command": "python bench/bench_mesh_fidelity.py " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
    }
    print(f"{meta['command']}  ({meta['machine']}, torch {meta['torch']}, commit {meta['commit']})", flush=True)
    rows = []
    for name in args.object or list(FIDELITY_OBJECTS):
        obj = make_fidelity_object(name)
        saved = load_ply(Path(args.gaussians_dir) / f"{name}.ply") if args.gaussians_dir else None
        run = evaluate_mesh_fidelity(obj, cfg, gaussians=saved)
        row = {**meta, **run.report.as_dict(), "mesh_config": mesh_cfg.__dict__, "loaded_gaussians": bool(saved)}
        rows.append(row)
        print(json.dumps(row), flush=True)
        if args.save_dir:
            out = Path(args.save_dir)
            out.mkdir(parents=True, exist_ok=True)
            save_ply(run.gaussians, out / f"{name}.ply")
            save_glb(run.mesh, out / f"{name}.glb")
            strip = torch.cat([v.images for v in (run.truth, run.gaussian_views, run.mesh_views)], dim=1)
            save_rgba(out / f"{name}_views.png", torch.cat(list(strip), dim=1))  # rows: truth, Gaussians, mesh
        if args.out:
            with open(args.out, "a") as f:
                f.write(json.dumps(row) + "\n")

    print("\n" + "  ".join(f"{h:>9}" for h, _, _ in COLUMNS))
    for r in rows:
        print("  ".join(f"{_cell(fmt, r[key]):>9}" for _, key, fmt in COLUMNS))
    print("\nmesh stage seconds (extract / unwrap / bake), thin-part coverage:")
    for r in rows:
        t = r["mesh_times_s"]
        times = f"{t['extract']:.1f} / {t['unwrap']:.1f} / {t['bake']:.1f}"
        print(f"  {r['object']:>14}: {times}  {r['thin_part_coverage']}")
    if args.out:
        print(f"appended {len(rows)} lines to {args.out}")


if __name__ == "__main__":
    main()
