"""The benchmark suite: every stage of the pipeline, its physical floor, and SIR against SDS.

One command per machine:

    python bench/suite.py --size tiny                                  # CPU, tiny models (CI-size)
    python bench/suite.py --size full --device cuda --dtype fp16       # a lent GPU, the paper's sizes

What it measures (median of ``--repeats`` runs after one warm-up; CUDA events on GPU,
perf_counter on CPU), for the ``--preset`` (zero123 by default: the issue's headline):

* device calibration: dense matrix throughput (a square GEMM in the model's dtype) and memory
  bandwidth (a large copy), the denominators of every floor;
* ``one_nfe``: one CFG-doubled UNet call at the preset's batch; ``init_sampling``: call 0 of
  SIR (all DDIM steps from noise); ``hybrid_forward``: one SIR iteration's hybrid forward +
  sampling at the first (largest) t2; ``optimiser_step``: render + L1 + backward + Adam for the
  preset's views at its resolution; ``densification``: one densify-and-prune edit;
  ``mesh_extract`` (density grid, marching cubes, decimation), ``uv_unwrap`` (quality and fast
  chart settings), ``bake``, ``texture_refine``, ``glb_write``;
* ``pipeline``: the whole :func:`microdreamer_core.pipeline.generate.generate` (SIR, mesh, texture stage);
  plus the Gaussian count after each SIR iteration;
* ``sds``: DreamGaussian-style score distillation built from the same model, renderer, cameras,
  learning rates and densification (``--sds-steps``, 500 by default as in DreamGaussian), against
  SIR's Gaussian stage of the same preset: NFE and time ratios.

Floors (printed beside each measurement as measured / floor):

* compute floor = matrix FLOPs of the stage (counted by ``torch.utils.flop_counter`` on one run:
  matmuls, convolutions, attention) / measured matrix throughput;
* memory floor (rasterisation and optimiser steps) = bytes that must move at least once / measured
  bandwidth: Gaussian parameters read by the forward pass, their gradients written by the
  backward pass, Adam reading parameter, gradient and both moments and writing three of them,
  and the rendered and target images read and written once each;
* stages that run CPU algorithms with no device floor (marching cubes, decimation, xatlas) say so.

Each run appends one JSON line per stage to ``--out`` (default ``bench/results_suite.jsonl``)
with date, host, device, torch, commit and the exact command, and prints a table.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _common import commit, input_image  # noqa: E402

from microdreamer_core.diffusion.accelerate import UNET_MODES, accelerate_unet  # noqa: E402
from microdreamer_core.diffusion.models import Condition, MultiViewModel  # noqa: E402
from microdreamer_core.diffusion.random_models import build_random_model  # noqa: E402
from microdreamer_core.diffusion.sampling import refine_views, sample  # noqa: E402
from microdreamer_core.fit.fitter import GaussianFitter  # noqa: E402
from microdreamer_core.io.export import save_glb  # noqa: E402
from microdreamer_core.meshing.bake import BakeConfig, bake_texture  # noqa: E402
from microdreamer_core.meshing.extract import ExtractConfig, extract_mesh  # noqa: E402
from microdreamer_core.meshing.uv import unwrap_uv  # noqa: E402
from microdreamer_core.pipeline.condition import make_condition  # noqa: E402
from microdreamer_core.pipeline.generate import GenerateResult, generate  # noqa: E402
from microdreamer_core.pipeline.presets import PRESETS, Preset, get_preset, tiny_preset  # noqa: E402
from microdreamer_core.pipeline.sds import SDSConfig, run_sds  # noqa: E402
from microdreamer_core.pipeline.sir import run_sir  # noqa: E402
from microdreamer_core.pipeline.texture_refine import refine_texture  # noqa: E402
from microdreamer_core.runtime import DTYPES, sync  # noqa: E402
from microdreamer_core.scene.cameras import sample_orbit_cameras  # noqa: E402
from microdreamer_core.scene.gaussians import Gaussians, init_ball  # noqa: E402
from microdreamer_core.scene.mesh import Mesh  # noqa: E402


# ---------------------------------------------------------------------------------------------
# Timing and floors
# ---------------------------------------------------------------------------------------------
def time_once(fn: Callable[[], object], device: torch.device) -> float:
    """Seconds of one call: CUDA events on GPU (after a sync), perf_counter on CPU."""
    if device.type == "cuda":
        sync(device)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1000.0
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def median_time(
    fn: Callable[[], object],
    device: torch.device,
    repeats: int,
    warmup: int = 1,
    setup: Callable[[], object] | None = None,
) -> tuple[float, list[float]]:
    """Median seconds of ``fn`` over ``repeats`` runs after ``warmup`` runs. With ``setup``,
    ``fn`` takes its result (fresh state per run, not timed)."""
    call = (lambda: fn(setup())) if setup is not None else fn
    for _ in range(warmup):
        call()
    times = []
    for _ in range(repeats):
        arg = setup() if setup is not None else None
        times.append(time_once((lambda arg=arg: fn(arg)) if setup is not None else fn, device))
    return statistics.median(times), times


def count_flops(fn: Callable[[], object]) -> int:
    """Matrix FLOPs (matmul, convolution, attention) of one call, counted by torch."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def matmul_throughput(device: torch.device, dtype: torch.dtype) -> float:
    """Measured dense GEMM FLOP/s in ``dtype`` (the compute floor's denominator)."""
    n = 8192 if device.type == "cuda" else 1024
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    _, times = median_time(lambda: a @ b, device, repeats=5)
    return 2 * n**3 / min(times)  # the best run: a floor must be what the device can do


def memory_bandwidth(device: torch.device) -> float:
    """Measured copy bandwidth in bytes/s (read + write; the memory floor's denominator)."""
    n = (1 << 28) if device.type == "cuda" else (1 << 25)  # 1 GiB / 128 MiB of float32
    src = torch.empty(n, device=device).fill_(1.0)
    dst = torch.empty_like(src)
    _, times = median_time(lambda: dst.copy_(src), device, repeats=5)
    return 2 * 4 * n / min(times)


def step_bytes(num_gaussians: int, views: int, resolution: int, params_per_gaussian: int = 14) -> int:
    """Bytes one render + L1 + backward + Adam step must move at least once (float32).

    Parameters: read by the forward pass, their gradients written by the backward pass; Adam
    reads parameter, gradient and two moments and writes parameter and two moments (7 passes).
    Images: rendered RGB + alpha written, target read, output gradient written and read back.
    """
    param_bytes = 4 * params_per_gaussian * num_gaussians
    pixels = views * resolution * resolution
    return param_bytes * (1 + 1 + 7) + 4 * pixels * (4 + 3 + 4 + 4)


# ---------------------------------------------------------------------------------------------
# The suite
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Row:
    """One measured stage: median seconds, its floor (None where the device sets none), what the
    floor counts, and the stage's own numbers (one JSON line of bench/results_suite.jsonl)."""

    stage: str
    seconds: float
    floor_s: float | None = None
    floor_kind: str = ""
    extra: dict = dataclasses.field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        return self.seconds / self.floor_s if self.floor_s else None


@dataclasses.dataclass
class Suite:
    """What the steps share: the command line, the preset, model and input, the device's measured
    throughput and bandwidth, the rows so far, and ``gen``, the one generator the steps draw their
    random inputs from, in the order :func:`run_suite` runs them."""

    args: argparse.Namespace
    device: torch.device
    preset: Preset
    model: MultiViewModel
    cond: Condition
    gen: torch.Generator
    flops_s: float
    bytes_s: float
    say: Callable[[str], None]
    rows: list[Row] = dataclasses.field(default_factory=list)

    def row(self, stage: str) -> Row:
        return next(r for r in self.rows if r.stage == stage)


def prepare(args: argparse.Namespace) -> Suite:
    """The preset at the asked size on the asked device, a random-weight model, the device
    calibration (first row) and the model's condition."""
    device = torch.device(args.device)
    torch.manual_seed(0)
    preset = (
        tiny_preset(args.preset, iterations=args.iterations or 2) if args.size == "tiny" else get_preset(args.preset)
    )
    if args.iterations and args.size == "full":
        preset = preset.with_overrides(iterations=args.iterations)
    preset = dataclasses.replace(
        preset.with_overrides(device=str(device)),
        mesh=dataclasses.replace(preset.mesh, uv_charts=args.uv_charts),
        sir=dataclasses.replace(preset.sir, unet_mode=args.unet_mode),
    )
    model = build_random_model(preset.model_kind, args.size, seed=0, device=device, dtype=DTYPES[args.dtype])
    accelerate_unet(model, args.unet_mode)  # the diffusion stages call the model directly
    dtype = model.dtype
    say = (lambda msg: print(msg, file=sys.stderr, flush=True)) if not args.quiet else (lambda msg: None)

    say(f"calibrating {device} ({dtype})")
    flops_s = matmul_throughput(device, dtype)
    bytes_s = memory_bandwidth(device)
    calibration = Row(
        "calibration",
        0.0,
        extra={
            "matmul_tflops": round(flops_s / 1e12, 3),
            "bandwidth_gbs": round(bytes_s / 1e9, 2),
            "dtype": str(dtype).replace("torch.", ""),
        },
    )

    prompt = "a yellow rubber duck" if preset.input == "text" else ""
    cond = make_condition(preset.model_kind, prompt, image=None if preset.input == "text" else input_image(args.image))
    return Suite(
        args, device, preset, model, cond, torch.Generator().manual_seed(0), flops_s, bytes_s, say, [calibration]
    )


def bench_diffusion(s: Suite) -> None:
    """One NFE, call-0 sampling and one hybrid forward, each against its compute floor."""
    args, model, cond, sir_cfg, gen, device = s.args, s.model, s.cond, s.preset.sir, s.gen, s.device
    cams = sample_orbit_cameras(sir_cfg.cameras, sir_cfg.image_size, gen)
    views = len(cams)

    s.say("one NFE")
    prepared = model.prepare(cond, cams.to(device), sir_cfg.image_size)
    lat = sir_cfg.image_size // model.vae_factor
    x = torch.randn(views, 4, lat, lat, generator=gen).to(device, model.dtype)
    nfe_fn = lambda: model.predict_noise(x, 501, prepared, sir_cfg.guidance_scale)  # noqa: E731
    flops_nfe = count_flops(nfe_fn)
    sec, _ = median_time(nfe_fn, device, args.repeats_fast)
    s.rows.append(
        Row("one_nfe", sec, flops_nfe / s.flops_s, "compute", {"gflops": round(flops_nfe / 1e9, 2), "views": views})
    )

    s.say("initial sampling (call 0)")

    def init_fn():
        return sample(
            model,
            cond,
            cams,
            steps=sir_cfg.denoise_steps,
            guidance_scale=sir_cfg.guidance_scale,
            eta=sir_cfg.eta,
            seed=0,
            image_size=sir_cfg.image_size,
        )

    n0 = model.nfe
    flops = count_flops(init_fn)
    nfe = model.nfe - n0
    sec, _ = median_time(init_fn, device, args.repeats)
    s.rows.append(
        Row("init_sampling", sec, flops / s.flops_s, "compute", {"nfe": nfe, "s_per_nfe": round(sec / max(nfe, 1), 4)})
    )

    s.say("hybrid forward + sampling (first SIR iteration)")
    t2 = sir_cfg.t2_schedule()[0]
    renders = torch.rand(views, sir_cfg.image_size, sir_cfg.image_size, 3, generator=gen)

    def hyb_fn():
        return refine_views(
            model,
            renders,
            cams,
            cond,
            t2,
            steps=sir_cfg.denoise_steps,
            inv_ratio=sir_cfg.inv_ratio,
            mode=sir_cfg.forward_mode,
            guidance_scale=sir_cfg.guidance_scale,
            eta=sir_cfg.eta,
            seed=1,
            image_size=sir_cfg.image_size,
        )

    n0 = model.nfe
    flops = count_flops(hyb_fn)
    nfe = model.nfe - n0
    sec, _ = median_time(hyb_fn, device, args.repeats)
    s.rows.append(
        Row(
            "hybrid_forward",
            sec,
            flops / s.flops_s,
            "compute",
            {"t2": t2, "nfe": nfe, "s_per_nfe": round(sec / max(nfe, 1), 4)},
        )
    )


def bench_fitting(s: Suite) -> None:
    """One optimiser step and one densify-and-prune edit, against their memory floors."""
    args, sir_cfg, gen, device = s.args, s.preset.sir, s.gen, s.device
    s.say("optimiser step")
    n_gauss = args.gaussians or (20_000 if args.size == "full" else 2_000)
    rcams = sample_orbit_cameras(sir_cfg.cameras, sir_cfg.resolution, gen).to(device)
    target = torch.rand(len(rcams), sir_cfg.resolution, sir_cfg.resolution, 3, generator=gen).to(device)
    g0 = init_ball(n_gauss, sir_cfg.init.radius, 0.5, generator=torch.Generator().manual_seed(1)).to(device)
    run = sir_cfg.runtime
    fitter = GaussianFitter(
        g0, sir_cfg.lr, dataclasses.replace(sir_cfg.densify, steps=()), run.background, run.gaussian_backend
    )
    step_fn = lambda: fitter.step(rcams, target)  # noqa: E731
    sec, _ = median_time(step_fn, device, args.repeats_fast)
    floor = step_bytes(n_gauss, len(rcams), sir_cfg.resolution) / s.bytes_s
    s.rows.append(
        Row(
            "optimiser_step",
            sec,
            floor,
            "memory",
            {
                "gaussians": n_gauss,
                "views": len(rcams),
                "resolution": sir_cfg.resolution,
                "backend": run.gaussian_backend,
            },
        )
    )

    s.say("densification")

    def densify_setup():
        f = GaussianFitter(
            g0, sir_cfg.lr, dataclasses.replace(sir_cfg.densify, steps=()), run.background, run.gaussian_backend
        )
        for _ in range(2):
            out = f.render(rcams)
            out.means2d.retain_grad()
            (out.rgb - target).abs().sum().backward()
            f.strategy._accumulate(out, n_gauss)
        return f

    densify_fn = lambda f: f.strategy._densify_and_prune(f.params, f.optimizer, 100)  # noqa: E731
    sec, _ = median_time(densify_fn, device, args.repeats, setup=densify_setup)
    s.rows.append(Row("densification", sec, 4 * 14 * n_gauss * 2 * 3 / s.bytes_s, "memory", {"gaussians": n_gauss}))


def bench_pipeline(s: Suite) -> GenerateResult:
    """The whole :func:`generate` (its last run is returned: the mesh stages start from its Gaussians).

    Floor: every SIR NFE at the one-NFE compute floor and every SIR Adam step at the step memory
    floor; :func:`bench_texture_and_glb` adds the texture stage's compute floor. The mesh stage's
    CPU algorithms have none."""
    args, preset, sir_cfg = s.args, s.preset, s.preset.sir
    s.say(f"whole pipeline ({preset.name})")
    results = []

    def pipeline_fn():
        results.append(generate(s.model, s.cond, preset))

    sec, times = median_time(pipeline_fn, s.device, args.repeats_pipeline, warmup=0 if args.size == "full" else 1)
    res = results[-1]
    gcounts = [i.gaussians for i in res.sir.iterations]
    sir_steps = sir_cfg.init_steps + sir_cfg.iterations * sir_cfg.steps_per_iteration
    pipeline_floor = s.row("one_nfe").floor_s * res.nfe["sir"] + s.row("optimiser_step").floor_s * sir_steps
    s.rows.append(
        Row(
            "pipeline",
            sec,
            pipeline_floor,
            "compute + memory (SIR NFEs, SIR steps; + texture stage)",
            {
                "preset": preset.name,
                "uv_charts": args.uv_charts,
                "iterations": sir_cfg.iterations,
                "nfe": res.nfe,
                "planned_sir_nfe": sir_cfg.planned_nfes(),
                "runs_s": [round(t, 3) for t in times],
                "stages_s": {k: round(v, 3) for k, v in res.timings.items()},
                "sir_s": {k: round(v, 3) for k, v in res.sir.timings.items()},
                "gaussians_per_iteration": gcounts,
                "faces": res.mesh.num_faces if res.mesh is not None else None,
            },
        )
    )
    return res


def bench_mesh_stages(s: Suite, gaussians: Gaussians) -> Mesh:
    """Extraction, uv unwrapping with both chart settings and baking (from the quality atlas) of
    ``gaussians``; returns the baked mesh."""
    args, device, mcfg = s.args, s.device, s.preset.mesh
    s.say("mesh extraction")
    meshes = []
    sec, _ = median_time(
        lambda: meshes.append(
            extract_mesh(gaussians, ExtractConfig(resolution=mcfg.resolution, target_faces=mcfg.target_faces))
        ),
        device,
        args.repeats,
        warmup=0,
    )
    mesh = meshes[-1]
    s.rows.append(
        Row(
            "mesh_extract",
            sec,
            None,
            "n/a: marching cubes and decimation run on the CPU",
            {"faces": mesh.num_faces, "grid": mcfg.resolution},
        )
    )
    unwrapped = {}
    for charts in ("quality", "fast"):
        s.say(f"uv unwrap ({charts})")
        out = []
        sec, _ = median_time(
            lambda out=out, charts=charts: out.append(unwrap_uv(mesh, mcfg.texture_size, charts=charts)),
            device,
            1 if (charts == "quality" and args.size == "full") else args.repeats,
            warmup=0,
        )
        unwrapped[charts] = out[-1]
        s.rows.append(
            Row(
                f"uv_unwrap_{charts}",
                sec,
                None,
                "n/a: xatlas runs on the CPU",
                {"faces": mesh.num_faces, "texture": mcfg.texture_size},
            )
        )
    s.say("bake")
    baked = []
    bake_cfg = BakeConfig(texture_size=mcfg.texture_size, render_resolution=mcfg.bake_resolution)
    sec, _ = median_time(
        lambda: baked.append(bake_texture(unwrapped["quality"], gaussians, bake_cfg)), device, args.repeats, warmup=0
    )
    s.rows.append(Row("bake", sec, None, "", {"texture": mcfg.texture_size, "render_resolution": mcfg.bake_resolution}))
    return baked[-1]


def bench_texture_and_glb(s: Suite, baked: Mesh) -> None:
    """Texture refinement of ``baked`` against its compute floor (also added to the pipeline's
    floor), and writing it as a GLB against the file's bytes at memory bandwidth."""
    args, device, tex_cfg = s.args, s.device, s.preset.texture
    s.say("texture refinement")
    tex_fn = lambda: refine_texture(baked, s.model, s.cond, tex_cfg)  # noqa: E731
    n0 = s.model.nfe
    flops = count_flops(tex_fn)
    nfe = s.model.nfe - n0
    sec, _ = median_time(tex_fn, device, args.repeats, warmup=0)
    s.rows.append(
        Row(
            "texture_refine",
            sec,
            flops / s.flops_s,
            "compute",
            {"nfe": nfe, "steps": tex_cfg.steps, "views": tex_cfg.views},
        )
    )
    s.row("pipeline").floor_s += flops / s.flops_s

    s.say("GLB write")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.glb"
        sec, _ = median_time(lambda: save_glb(baked, path), device, args.repeats, warmup=0)
        size = path.stat().st_size
    s.rows.append(
        Row("glb_write", sec, size / s.bytes_s, "memory (file bytes; PNG encoding is CPU work)", {"bytes": size})
    )


def bench_sds_against_sir(s: Suite) -> None:
    """SDS and SIR's Gaussian stage on equal settings: SIR with the paper's schedule (K, init and
    per-iteration Adam steps) at this size's resolution; SDS from the same config (cameras,
    renderer, learning rates, densification). One timed run each."""
    args, model, device = s.args, s.model, s.device
    paper = get_preset(args.preset).sir
    cmp_cfg = dataclasses.replace(
        s.preset.sir,
        iterations=args.compare_iterations or paper.iterations,
        init_steps=paper.init_steps,
        steps_per_iteration=paper.steps_per_iteration,
    )
    s.say(f"SDS, {args.sds_steps} steps, against SIR with K = {cmp_cfg.iterations}")
    sds_cfg = SDSConfig.from_sir(cmp_cfg, steps=args.sds_steps)
    n0 = model.nfe
    sds_res = []
    sec_sds = time_once(lambda: sds_res.append(run_sds(model, s.cond, sds_cfg)), device)
    sds_nfe = model.nfe - n0
    n0 = model.nfe
    sir_res = []
    sec_sir = time_once(lambda: sir_res.append(run_sir(model, s.cond, cmp_cfg)), device)
    sir_nfe = model.nfe - n0
    s.rows.append(
        Row(
            "sds",
            sec_sds,
            None,
            "",
            {
                "steps": args.sds_steps,
                "nfe": sds_nfe,
                "guidance_scale": sds_cfg.guidance_scale,
                "timings_s": {k: round(v, 3) for k, v in sds_res[-1].timings.items()},
                "gaussians": sds_res[-1].gaussians.num,
            },
        )
    )
    s.rows.append(
        Row(
            "sir_gaussians",
            sec_sir,
            None,
            "",
            {
                "nfe": sir_nfe,
                "gaussians": sir_res[-1].gaussians.num,
                "iterations": cmp_cfg.iterations,
                "adam_steps": cmp_cfg.total_steps,
                "sds_over_sir_time": round(sec_sds / sec_sir, 2),
                "sds_over_sir_nfe": round(sds_nfe / max(sir_nfe, 1), 2),
            },
        )
    )


def run_suite(args: argparse.Namespace) -> list[Row]:
    """Every step in order; one :class:`Row` per measured stage."""
    s = prepare(args)
    bench_diffusion(s)
    bench_fitting(s)
    res = bench_pipeline(s)
    baked = bench_mesh_stages(s, res.gaussians)
    bench_texture_and_glb(s, baked)
    bench_sds_against_sir(s)
    return s.rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="zero123", choices=list(PRESETS))
    ap.add_argument("--size", default="tiny", choices=["tiny", "full"])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="auto", choices=list(DTYPES))
    ap.add_argument(
        "--iterations", type=int, default=None, help="SIR iterations K (default: the preset's; 2 with --size tiny)"
    )
    ap.add_argument(
        "--gaussians",
        type=int,
        default=None,
        help="Gaussians in the optimiser-step benchmark (default 20000 full, 2000 tiny)",
    )
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per stage (median)")
    ap.add_argument(
        "--repeats-fast", type=int, default=10, help="timed runs of the sub-second stages (one NFE, one step)"
    )
    ap.add_argument("--repeats-pipeline", type=int, default=3, help="timed runs of the whole pipeline")
    ap.add_argument(
        "--uv-charts",
        default="fast",
        choices=["fast", "quality"],
        help="uv chart settings of the whole-pipeline runs (default fast; both are timed in the uv_unwrap stages)",
    )
    ap.add_argument(
        "--unet-mode",
        default="eager",
        choices=UNET_MODES,
        help="UNet call (diffusion/accelerate.py); the first NFE of each shape compiles / captures, "
        "which the warm-up run absorbs",
    )
    ap.add_argument("--sds-steps", type=int, default=500, help="SDS steps (DreamGaussian: 500)")
    ap.add_argument(
        "--compare-iterations",
        type=int,
        default=None,
        help=(
            "SIR iterations K in the SDS comparison (default: the paper's; its Adam step counts are always the paper's)"
        ),
    )
    ap.add_argument("--image", default=None, help="RGBA input for image presets (default: the shared duck photo)")
    ap.add_argument(
        "--out", default=str(ROOT / "bench" / "results_suite.jsonl"), help="append JSON lines here ('' = do not write)"
    )
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args()

    rows = run_suite(args)
    device = torch.device(args.device)
    meta = {
        "date": time.strftime("%Y-%m-%d"),
        "host": platform.node(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads",
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "commit": commit(),
        "command": "python bench/suite.py " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
        "size": args.size,
        "preset": args.preset,
    }
    print(f"\n{meta['command']}  ({meta['device']}, {meta['machine']}, torch {meta['torch']}, commit {meta['commit']})")
    print(f"{'stage':<22}{'median s':>12}{'floor s':>12}{'measured/floor':>16}  notes")
    for r in rows:
        floor = f"{r.floor_s:.5f}" if r.floor_s else "-"
        ratio = f"{r.ratio:.1f}x" if r.ratio else "-"
        note = r.floor_kind + ("; " if r.floor_kind and r.extra else "") + json.dumps(r.extra)
        print(f"{r.stage:<22}{r.seconds:>12.4f}{floor:>12}{ratio:>16}  {note}")
    lines = [
        json.dumps(
            {
                **meta,
                "stage": r.stage,
                "seconds": round(r.seconds, 5),
                "floor_s": None if r.floor_s is None else round(r.floor_s, 6),
                "measured_over_floor": None if r.ratio is None else round(r.ratio, 2),
                "floor_kind": r.floor_kind,
                **r.extra,
            }
        )
        for r in rows
    ]
    if args.out:
        with open(args.out, "a") as f:
            f.write("\n".join(lines) + "\n")
        print(f"appended {len(lines)} lines to {args.out}")


if __name__ == "__main__":
    main()
