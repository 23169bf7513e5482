"""The embedded default run: a textured object built in code, rendered, reconstructed, measured.

Needs no download. It writes the input views (NeRF-synthetic layout), the reconstructed
Gaussians (standard 3DGS PLY) and renders of novel views, and prints novel-view PSNR / mask IoU.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from .cameras import orbit_cameras
from .metrics import mask_iou, psnr
from .reconstruct import ReconstructConfig, reconstruct
from .views import PosedViews, save_transforms

# Training views: two rings (above and below the equator), so every side of the object is seen.
TRAIN_ELEVATIONS = [-30.0, 15.0] * 4
TRAIN_AZIMUTHS = [0.0, 45.0, 90.0, 135.0, 180.0, 225.0, 270.0, 315.0]
# Novel views: the equator, between the training azimuths.
NOVEL_ELEVATIONS = [0.0] * 4
NOVEL_AZIMUTHS = [22.5, 112.5, 202.5, 292.5]


def render_views(mesh, cameras) -> PosedViews:
    """Ground-truth RGBA views of a mesh."""
    from .cli import render_model

    return PosedViews(render_model(mesh, cameras), cameras)


def run_demo(out: Path, steps: int = 300, resolution: int = 128, seed: int = 0) -> dict:
    from .demo_object import make_demo_mesh

    t0 = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    mesh = make_demo_mesh()
    train = render_views(mesh, orbit_cameras(TRAIN_ELEVATIONS, TRAIN_AZIMUTHS, 2.0, resolution))
    novel = render_views(mesh, orbit_cameras(NOVEL_ELEVATIONS, NOVEL_AZIMUTHS, 2.0, resolution))
    save_transforms(train, out / "views")
    print(f"rendered {len(train)} training views of the demo object -> {out / 'views'}")

    from .cli import _progress_bar, render_model

    result = reconstruct(train, ReconstructConfig(steps=steps, seed=seed), progress=_progress_bar(steps, "reconstruct"))
    ply = result.gaussians.save_ply(out / "model.ply")
    pred = PosedViews(render_model(result.gaussians, novel.cameras), novel.cameras)
    save_transforms(pred, out / "novel_views")
    report = {
        "gaussians": result.gaussians.num,
        "reconstruct_seconds": round(result.seconds, 2),
        "novel_psnr_db": round(psnr(pred.rgb_on(), novel.rgb_on()), 2),
        "novel_mask_iou": round(mask_iou(pred.masks, novel.masks), 4),
        "total_seconds": round(time.perf_counter() - t0, 2),
    }
    (out / "report.json").write_text(json.dumps(report, indent=2))
    print(f"wrote {ply} ({report['gaussians']} Gaussians, reconstructed in {report['reconstruct_seconds']} s)")
    print(f"wrote {out / 'novel_views'} (novel views: PSNR {report['novel_psnr_db']} dB, mask IoU {report['novel_mask_iou']})")
    print(f"wrote {out / 'report.json'}; total {report['total_seconds']} s")
    return report
