"""Time the multi-view diffusion models: one NFE (a CFG-doubled UNet call at the paper's batch
shape) and, optionally, one whole hybrid-forward + sampling call.

Random weights of the real architecture (speed does not depend on weight values):

    python bench/bench_mv_diffusion.py --kind imagedream --size full --repeats 3
    python bench/bench_mv_diffusion.py --kind all --size tiny --refine
    python bench/bench_mv_diffusion.py --kind all --size full --device cuda --dtype fp16 --repeats 20

Shapes: MVDream 4 views, ImageDream 4 + 1 reference frame, Stable Zero123 6 independent views
(the Zero123 preset's B), all CFG-doubled, 256x256 images (32x32 latents). On CUDA the times come
from CUDA events after warm-up; on CPU from perf_counter. Prints one JSON line per model.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch

from microdreamer_core.diffusion.models import Condition
from microdreamer_core.diffusion.random_models import build_random_model
from microdreamer_core.diffusion.sampling import refine_views
from microdreamer_core.scene.cameras import CAMERA_PRESETS, sample_orbit_cameras


def timed(fn, device: torch.device) -> float:
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        return start.elapsed_time(end) / 1000.0
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kind", default="imagedream", choices=["mvdream", "imagedream", "zero123", "all"])
    ap.add_argument("--size", default="tiny", choices=["tiny", "full"])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="auto", choices=["auto", "fp32", "fp16", "bf16"])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument(
        "--refine",
        action="store_true",
        help="also time one hybrid forward + sampling call (ImageDream preset t2=701, Zero123 preset t2=651)",
    )
    args = ap.parse_args()
    device = torch.device(args.device)
    dtype = {"auto": None, "fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[args.dtype]
    size = 256 if args.size == "full" else 32
    for kind in ["mvdream", "imagedream", "zero123"] if args.kind == "all" else [args.kind]:
        t0 = time.perf_counter()
        model = build_random_model(kind, args.size, seed=0, device=device, dtype=dtype)
        build_s = time.perf_counter() - t0
        preset = CAMERA_PRESETS["zero123" if kind == "zero123" else kind]
        cams = sample_orbit_cameras(preset, size, torch.Generator().manual_seed(0))
        cond = Condition(
            prompt="a yellow rubber duck",
            negative_prompt="ugly",
            image=torch.rand(size, size, 4, generator=torch.Generator().manual_seed(0)),
        )
        prepared = model.prepare(cond, cams, size)
        lat = size // model.vae_factor
        x = torch.randn(len(cams), 4, lat, lat, generator=torch.Generator().manual_seed(1)).to(device)
        for _ in range(args.warmup):
            model.predict_noise(x, 501, prepared, model.defaults.guidance_scale)
        times = [
            timed(
                lambda model=model, x=x, prepared=prepared: model.predict_noise(
                    x, 501, prepared, model.defaults.guidance_scale
                ),
                device,
            )
            for _ in range(args.repeats)
        ]
        row = {
            "kind": kind,
            "size": args.size,
            "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
            "dtype": str(model.dtype).replace("torch.", ""),
            "threads": torch.get_num_threads(),
            "params_M": {k: round(v / 1e6, 3) for k, v in model.parameter_count().items()},
            "unet_batch": len(cams) * 2 + (2 if kind == "imagedream" else 0),
            "latent": lat,
            "build_s": round(build_s, 1),
            "nfe_s_median": round(statistics.median(times), 4),
            "nfe_s_min": round(min(times), 4),
            "repeats": args.repeats,
        }
        if args.refine:
            steps, t2 = (10, 701) if kind != "zero123" else (20, 651)
            views = torch.rand(len(cams), size, size, 3, generator=torch.Generator().manual_seed(2))
            before = model.nfe
            seconds = timed(
                lambda model=model, views=views, cams=cams, prepared=prepared, t2=t2, steps=steps: refine_views(
                    model, views, cams, prepared, t2, steps=steps, image_size=size
                ),
                device,
            )
            row |= {
                "refine_s": round(seconds, 3),
                "refine_nfe": model.nfe - before,
                "refine_t2": t2,
                "refine_steps": steps,
            }
        row["host"] = platform.node()
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
