"""The embedded default run: a textured object built in code, rendered, reconstructed, measured.

Needs no download. Writes the training views (NeRF-synthetic layout), the reconstructed Gaussians
(standard 3DGS PLY), a textured mesh extracted from them (GLB), renders of novel views and a
report with novel-view PSNR and mask IoU. Everything is computed first and then written
all-or-nothing (:func:`~.io.outputs.atomic_outputs`): a failure or an interrupt leaves no file.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from ..fit.reconstruct import ReconstructConfig
from ..io.export import save_glb
from ..io.outputs import atomic_outputs, check_output
from ..io.ply import save_ply
from ..meshing.texture import gaussians_to_mesh
from ..scene.cameras import orbit_cameras
from ..io.transforms import save_transforms
from .protocol import evaluate_reconstruction, novel_eval_cameras

# Training views: two rings, above and below the equator, so every side of the object is seen.
TRAIN_ELEVATIONS = [-30.0, 15.0] * 4
TRAIN_AZIMUTHS = [0.0, 45.0, 90.0, 135.0, 180.0, 225.0, 270.0, 315.0]

# Mesh export settings of the demo: smaller than the CLI's defaults (grid 128, 50k faces, 1024 px)
# so the whole demo stays well inside a few minutes on a 2-core CPU; uv unwrapping time grows
# with the face count.
DEMO_MESH_RESOLUTION = 96
DEMO_MESH_FACES = 10_000
DEMO_TEXTURE_SIZE = 512


def run_demo(out: Path, steps: int = 300, resolution: int = 128, seed: int = 0, progress=None, device: str = "auto",
             cancel=None) -> dict:
    """Run the demo into folder ``out`` (created; its parent must exist); returns the report it
    also writes as ``report.json``. ``cancel()`` is checked between steps (see :func:`~.errors.check_cancel`)."""
    from .demo_object import make_demo_mesh

    t0 = time.perf_counter()
    out = check_output(out, folder=True)  # before minutes of work
    train_cams = orbit_cameras(TRAIN_ELEVATIONS, TRAIN_AZIMUTHS, 2.0, resolution)
    novel_cams = novel_eval_cameras(resolution)
    config = ReconstructConfig(steps=steps, seed=seed, device=device)
    ev = evaluate_reconstruction(make_demo_mesh(), train_cams, novel_cams, config, progress, cancel)
    report = ev.report
    t_mesh = time.perf_counter()
    mesh_timings: dict = {}
    mesh = gaussians_to_mesh(ev.result.gaussians, resolution=DEMO_MESH_RESOLUTION, target_faces=DEMO_MESH_FACES,
                             texture_size=DEMO_TEXTURE_SIZE, timings=mesh_timings, cancel=cancel)
    mesh_seconds = time.perf_counter() - t_mesh
    summary = {**report.as_dict(),
               "mesh": {"vertices": mesh.num_vertices, "faces": mesh.num_faces, "texture_size": DEMO_TEXTURE_SIZE,
                        "seconds": round(mesh_seconds, 2), **{f"{k}_seconds": round(v, 2) for k, v in mesh_timings.items()}},
               "total_seconds": round(time.perf_counter() - t0, 2)}
    with atomic_outputs() as staged:
        tmp = staged.folder(out)
        save_transforms(ev.train, tmp / "views")
        save_ply(ev.result.gaussians, tmp / "model.ply")
        save_glb(mesh, tmp / "model.glb")
        save_transforms(ev.pred, tmp / "novel_views")
        save_transforms(ev.truth, tmp / "novel_views_truth")
        (tmp / "report.json").write_text(json.dumps(summary, indent=2))
    print(f"wrote {out / 'views'} ({len(train_cams)} training views of the demo object)")
    print(f"wrote {out / 'model.ply'} ({report.gaussians} Gaussians, {steps} steps in {report.seconds:.1f} s)")
    print(f"wrote {out / 'model.glb'} (textured mesh: {mesh.num_faces} triangles, {DEMO_TEXTURE_SIZE} px texture, {mesh_seconds:.1f} s)")
    print(f"wrote {out / 'novel_views'} and {out / 'novel_views_truth'}: novel-view PSNR {report.psnr_db:.2f} dB, "
          f"mask IoU {report.mask_iou:.3f}")
    print(f"wrote {out / 'report.json'} (total {summary['total_seconds']} s)")
    return summary
