"""Duck reconstruction quality and cost (issue 2's protocol; the CI test asserts the same numbers).

Renders ../shared/assets/Duck.glb (normalised to radius 0.7) from one draw of the Zero123
preset's 6 cameras, reconstructs 3D Gaussians, and scores 8 novel views (elevation 0 / 20,
azimuths 45 degrees apart) by PSNR on white and mask IoU. Prints one JSON line.

    python bench/bench_duck.py --res 128 --steps 500
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from microdreamer_core.eval.protocol import (  # noqa: E402
    DUCK_RADIUS,
    evaluate_reconstruction,
    novel_eval_cameras,
    zero123_train_cameras,
)
from microdreamer_core.fit.fitter import FitRuntime  # noqa: E402
from microdreamer_core.fit.reconstruct import ReconstructConfig  # noqa: E402
from microdreamer_core.io.mesh_files import load_mesh  # noqa: E402
from microdreamer_core.scene.mesh import normalize_to_unit_sphere  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--res", type=int, default=128)
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--duck", default=str(ROOT.parent / "shared" / "assets" / "Duck.glb"))
    args = p.parse_args()
    duck = normalize_to_unit_sphere(load_mesh(args.duck), DUCK_RADIUS)
    cfg = ReconstructConfig(steps=args.steps, runtime=FitRuntime(seed=args.seed, device=args.device))
    ev = evaluate_reconstruction(duck, zero123_train_cameras(args.res, args.seed), novel_eval_cameras(args.res), cfg)
    out = {**ev.report.as_dict(), "device": str(ev.result.gaussians.device), "torch_threads": torch.get_num_threads()}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
