"""The embedded default run: a textured object built in code, rendered, reconstructed, measured.

Needs no download. Writes the training views (NeRF-synthetic layout), the reconstructed Gaussians
(standard 3DGS PLY), a textured mesh extracted from them (GLB), renders of novel views and a
report with novel-view PSNR and mask IoU. Everything is computed first and then written
all-or-nothing (:func:`~.io.outputs.atomic_outputs`): a failure or an interrupt leaves no file.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from ..fit.fitter import FitRuntime
from ..fit.reconstruct import ReconstructConfig
from ..io.export import save_glb
from ..io.outputs import atomic_outputs, check_output
from ..io.ply import save_ply
from ..io.transforms import save_transforms
from ..meshing.stage import MeshConfig, gaussians_to_mesh
from ..runtime import CancelFn, ProgressFn
from ..scene.cameras import orbit_cameras
from ..scene.mesh import Mesh
from .protocol import evaluate_reconstruction, novel_eval_cameras

__all__ = ["DemoResult", "run_demo"]

# Training views: two rings, above and below the equator, so every side of the object is seen.
TRAIN_ELEVATIONS = [-30.0, 15.0] * 4
TRAIN_AZIMUTHS = [0.0, 45.0, 90.0, 135.0, 180.0, 225.0, 270.0, 315.0]

DEMO_MESH = MeshConfig(resolution=96, target_faces=10_000, texture_size=512)
"""Mesh export settings of the demo: smaller than the CLI's defaults (grid 128, 50k faces, 1024 px)
so the whole demo stays well inside a few minutes on a 2-core CPU; uv unwrapping time grows with
the face count."""


@dataclass
class DemoResult:
    """What :func:`run_demo` made: ``report`` (the content of report.json), ``written``, one
    line per output saying what it holds, for the host to show, and ``mesh``, model.glb's mesh."""

    report: dict
    written: list[str]
    mesh: Mesh


def run_demo(
    out: Path,
    steps: int = 300,
    resolution: int = 128,
    seed: int = 0,
    progress: ProgressFn | None = None,
    device: str = "auto",
    cancel: CancelFn | None = None,
) -> DemoResult:
    """Run the demo into folder ``out`` (created; its parent must exist). ``cancel()`` is checked
    between steps (see :func:`~.errors.check_cancel`)."""
    from .demo_object import make_demo_mesh

    t0 = time.perf_counter()
    out = check_output(out, folder=True)  # before minutes of work
    train_cams = orbit_cameras(TRAIN_ELEVATIONS, TRAIN_AZIMUTHS, 2.0, resolution)
    novel_cams = novel_eval_cameras(resolution)
    config = ReconstructConfig(steps=steps, runtime=FitRuntime(seed=seed, device=device))
    ev = evaluate_reconstruction(make_demo_mesh(), train_cams, novel_cams, config, progress, cancel)
    report = ev.report
    t_mesh = time.perf_counter()
    mesh_timings: dict[str, float] = {}
    mesh = gaussians_to_mesh(ev.result.gaussians, DEMO_MESH, timings=mesh_timings, cancel=cancel)
    mesh_seconds = time.perf_counter() - t_mesh
    summary = {
        **report.as_dict(),
        "mesh": {
            "vertices": mesh.num_vertices,
            "faces": mesh.num_faces,
            "texture_size": DEMO_MESH.texture_size,
            "seconds": round(mesh_seconds, 2),
            **{f"{k}_seconds": round(v, 2) for k, v in mesh_timings.items()},
        },
        "total_seconds": round(time.perf_counter() - t0, 2),
    }
    with atomic_outputs() as staged:
        tmp = staged.folder(out)
        save_transforms(ev.train, tmp / "views")
        save_ply(ev.result.gaussians, tmp / "model.ply")
        save_glb(mesh, tmp / "model.glb")
        save_transforms(ev.pred, tmp / "novel_views")
        save_transforms(ev.truth, tmp / "novel_views_truth")
        (tmp / "report.json").write_text(json.dumps(summary, indent=2))
    written = [
        f"wrote {out / 'views'} ({len(train_cams)} training views of the demo object)",
        f"wrote {out / 'model.ply'} ({report.gaussians} Gaussians, {steps} steps in {report.seconds:.1f} s)",
        f"wrote {out / 'model.glb'} (textured mesh: {mesh.num_faces} "
        f"triangles, {DEMO_MESH.texture_size} px texture, {mesh_seconds:.1f} s)",
        f"wrote {out / 'novel_views'} and {out / 'novel_views_truth'}: novel-view PSNR {report.psnr_db:.2f} dB, "
        f"mask IoU {report.mask_iou:.3f}",
        f"wrote {out / 'report.json'} (total {summary['total_seconds']} s)",
    ]
    return DemoResult(summary, written, mesh)
