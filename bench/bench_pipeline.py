"""Time the whole MicroDreamer pipeline per stage, for each preset, with random-weight models.

Random weights of the real architecture: timing only (speed does not depend on weight values,
the shapes they make are meaningless). Stage times are CUDA-synchronised wall-clock seconds.

    python bench/bench_pipeline.py --preset all --size tiny                      # CPU smoke (CI-size)
    python bench/bench_pipeline.py --preset all --size full --device cuda        # a lent GPU, paper sizes

``--size tiny`` shrinks each preset with :func:`microdreamer_core.pipeline.generate.tiny_preset`;
``--size full`` keeps the paper's values (K iterations, 256 px, 512 px texture stage, 1024
texture, 50k faces). One warm-up run (1 iteration, no mesh) precedes the timed run. Prints one
JSON line per preset and appends it to ``--jsonl`` when given.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch
from _common import commit, input_image

from microdreamer_core.diffusion.random_models import build_random_model
from microdreamer_core.meshing.stage import gaussians_to_mesh
from microdreamer_core.pipeline.condition import make_condition
from microdreamer_core.pipeline.generate import generate
from microdreamer_core.pipeline.presets import PRESETS, get_preset, tiny_preset
from microdreamer_core.pipeline.sir import run_sir
from microdreamer_core.pipeline.texture_refine import refine_texture


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="all", choices=["all", *PRESETS])
    ap.add_argument("--size", default="tiny", choices=["tiny", "full"])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="auto", choices=["auto", "fp32", "fp16", "bf16"])
    ap.add_argument("--iterations", type=int, default=None, help="override K (default: the preset's)")
    ap.add_argument("--image", default=None, help="RGBA input for the image presets (default: the shared duck photo)")
    ap.add_argument("--no-warmup", action="store_true")
    ap.add_argument("--jsonl", default=None, help="append the JSON lines to this file")
    ap.add_argument("--commit", default=None, help="commit id to record (default: git rev-parse)")
    args = ap.parse_args()
    device = torch.device(args.device)
    dtype = {"auto": None, "fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[args.dtype]
    image = input_image(args.image)
    for name in list(PRESETS) if args.preset == "all" else [args.preset]:
        preset = tiny_preset(name, iterations=args.iterations or 2) if args.size == "tiny" else get_preset(name)
        if args.iterations and args.size == "full":
            preset = preset.with_overrides(iterations=args.iterations)
        preset = preset.with_overrides(device=str(device))
        t0 = time.perf_counter()
        model = build_random_model(preset.model_kind, args.size, seed=0, device=device, dtype=dtype)
        build_s = time.perf_counter() - t0
        prompt = "a yellow rubber duck" if preset.input == "text" else ""
        cond = make_condition(preset.model_kind, prompt, image=None if preset.input == "text" else image)
        if not args.no_warmup:
            warm = preset.with_overrides(iterations=1)
            generate(model, cond, warm, mesh=False)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        row: dict = {"preset": name, "size": args.size, "iterations": preset.sir.iterations}
        try:  # stage by stage, so a failing late stage keeps the earlier stages' figures
            t_all = time.perf_counter()
            sir = run_sir(model, cond, preset.sir)
            its = sir.iterations
            row |= {
                "sir_s": {k: round(v, 3) for k, v in sir.timings.items()},
                "nfe_sir": sir.nfe,
                "per_iteration_s": round(sum(i.seconds for i in its) / max(len(its), 1), 4),
                "per_nfe_s": round(sir.timings["diffusion"] / max(sir.nfe["iterations"], 1), 4),
                "per_adam_step_s": round(
                    sir.timings["optimise"] / max(preset.sir.iterations * preset.sir.steps_per_iteration, 1), 4
                ),
                "gaussians": sir.gaussians.num,
            }
            print(json.dumps({"after": "sir", **row}), flush=True)  # a run cut short keeps each stage's figures
            mesh_t: dict = {}
            t0 = time.perf_counter()
            mesh = gaussians_to_mesh(sir.gaussians, preset.mesh, timings=mesh_t)
            row |= {
                "mesh_s": round(time.perf_counter() - t0, 3),
                "mesh_stages_s": {k: round(v, 3) for k, v in mesh_t.items()},
                "faces": mesh.num_faces,
            }
            print(json.dumps({"after": "mesh", **row}), flush=True)
            tex = refine_texture(mesh, model, cond, preset.texture)
            row |= {
                "texture_s": {k: round(v, 3) for k, v in tex.timings.items()},
                "nfe_texture": tex.nfe,
                "total_s": round(time.perf_counter() - t_all, 3),
            }
        except Exception as e:  # random weights can make a degenerate shape; say so and go on
            row["error"] = f"{type(e).__name__}: {e}"
        row |= {
            "device": torch.cuda.get_device_name(device)
            if device.type == "cuda"
            else f"cpu ({torch.get_num_threads()} threads)",
            "dtype": str(model.dtype).replace("torch.", ""),
            "build_s": round(build_s, 1),
            "peak_gpu_gib": round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
            if device.type == "cuda"
            else None,
            "torch": torch.__version__,
            "commit": args.commit or commit(),
            "date": time.strftime("%Y-%m-%d"),
            "host": platform.node(),
        }
        line = json.dumps(row)
        print(line, flush=True)
        if args.jsonl:
            with open(args.jsonl, "a") as f:
                f.write(line + "\n")
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
