"""Benchmark the torch Gaussian rasteriser: forward + backward time and peak memory.

Scene: N Gaussians uniform in a ball of radius 0.5, scales 0.02-0.05, opacities 0.1-0.9,
random quaternions and colours; V cameras evenly spaced in azimuth at radius 2 (fovy 49.1 deg,
elevations alternating -15/+15). Peak memory is the growth of the process's max RSS over the
baseline after importing torch and building the scene, so run it in a fresh process.

    python bench/bench_gaussian_render.py --views 6 --res 128 --n 5000 --repeats 10
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from microdreamer_core.render.gaussians import rasterize_gaussians
from microdreamer_core.scene.cameras import orbit_cameras


def make_scene(n: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Random object-like Gaussians (leaf tensors with requires_grad)."""
    d = torch.nn.functional.normalize(torch.randn(n, 3, generator=generator), dim=-1)
    means = d * 0.5 * torch.rand(n, 1, generator=generator) ** (1 / 3)
    scene = {
        "means": means,
        "quats": torch.randn(n, 4, generator=generator),
        "scales": 0.02 + 0.03 * torch.rand(n, 3, generator=generator),
        "opacities": 0.1 + 0.8 * torch.rand(n, generator=generator),
        "colors": torch.rand(n, 3, generator=generator),
    }
    return {k: v.requires_grad_() for k, v in scene.items()}


def max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--views", type=int, default=6)
    parser.add_argument("--res", type=int, default=128)
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--backend", default="torch")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    g = torch.Generator().manual_seed(0)
    scene = {k: v.detach().to(args.device).requires_grad_() for k, v in make_scene(args.n, g).items()}
    az = torch.arange(args.views) * 360.0 / args.views
    el = torch.tensor([-15.0, 15.0]).repeat((args.views + 1) // 2)[: args.views]
    cams = orbit_cameras(el, az, 2.0, args.res).to(args.device)
    viewmats, Ks = cams.w2c_opencv(), cams.intrinsics()
    target = torch.rand(args.views, args.res, args.res, 3, generator=g).to(args.device)
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    baseline = max_rss_mb()

    def step() -> tuple[float, float]:
        t0 = time.perf_counter()
        out = rasterize_gaussians(
            **scene,
            viewmats=viewmats,
            Ks=Ks,
            width=args.res,
            height=args.res,
            background=torch.ones(3),
            backend=args.backend,
        )
        out.means2d.retain_grad()
        loss = (out.rgb - target).abs().mean() + out.alpha.mean() + 0.01 * out.depth.mean()
        sync()
        t1 = time.perf_counter()
        loss.backward()
        sync()
        t2 = time.perf_counter()
        for v in scene.values():
            v.grad = None
        return t1 - t0, t2 - t1

    step()  # warm-up
    fwd, bwd = zip(*(step() for _ in range(args.repeats)), strict=True)
    total = [f + b for f, b in zip(fwd, bwd, strict=True)]
    best = min(range(args.repeats), key=total.__getitem__)
    median = sorted(total)[args.repeats // 2]
    print(
        f"backend={args.backend} device={args.device} threads={torch.get_num_threads()} "
        f"N={args.n} views={args.views} res={args.res}: best forward {1000 * fwd[best]:.0f} ms + "
        f"backward {1000 * bwd[best]:.0f} ms = {1000 * total[best]:.0f} ms, median {1000 * median:.0f} ms "
        f"({args.repeats} repeats); peak RSS +{max_rss_mb() - baseline:.0f} MB over baseline {baseline:.0f} MB"
    )


if __name__ == "__main__":
    main()
