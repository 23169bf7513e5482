"""Wall time and peak RSS of loading a full-size model (random weights of the real architecture),
each load in a fresh process, so one load's memory does not hide another's.

    OMP_NUM_THREADS=2 python bench/bench_loading.py                       # full ImageDream folder, 2 loads
    OMP_NUM_THREADS=2 python bench/bench_loading.py --single-file         # the original-checkpoint layout
    OMP_NUM_THREADS=2 python bench/bench_loading.py --code /tmp/before --hide-accelerate   # "before"

The folder (``--folder``, default ``$TMPDIR/microdreamer-bench-imagedream-full-fp16``) is made
once with ``build_random_model(kind, "full")`` + ``save_diffusers_folder``, in a process of its
own, in the dtype the published ``ashawkey/*-diffusers`` folders use (fp16; ``--save-dtype
float32`` for the other case), and reused afterwards. ``--single-file`` loads an original
single-file checkpoint instead (``<folder>-ldm.safetensors``: UNet, LDM VAE and OpenCLIP text
tower in fp32, as the authors ship them, written once from the folder's weights; tokenizer and
image encoder come from the folder).

``--code DIR`` loads with the ``microdreamer_core`` of another checkout (for example
``git worktree add --detach /tmp/before <commit>``) and ``--hide-accelerate`` as if accelerate
were not installed, so "before" figures come from the same script. Prints one JSON line: date,
host, commits, command, the code that loaded, the source's size on disk, the 1-minute load
average, and per load the wall time of ``load_model`` (imports excluded), the child's wall time,
CPU time and peak RSS (``ru_maxrss``).
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, commit  # noqa: E402

_BUILD = """
import sys, torch
from microdreamer_core.diffusion.folders import save_diffusers_folder
from microdreamer_core.diffusion.random_models import build_random_model
model = build_random_model(sys.argv[1], "full", seed=0, dtype=getattr(torch, sys.argv[2]))
save_diffusers_folder(model, sys.argv[3])
"""

_BUILD_SINGLE = """
import sys
sys.path.insert(0, sys.argv[3])  # tests/: the single-file writer the tests use
from safetensors.torch import save_file
from microdreamer_core.diffusion.loading import load_model
from single_file_layout import to_single_file
model = load_model(sys.argv[1])
model.image_encoder = None  # not part of the original checkpoints
save_file(to_single_file(model), sys.argv[2])
"""

# Runs in the child: the checkout's directory is first on sys.path (python -c puts the cwd there),
# ahead of the editable install's finder, so ``--code`` selects which microdreamer_core loads.
_LOAD = """
import json, os, resource, sys, time
if os.environ.get("BENCH_HIDE_ACCELERATE"):
    sys.modules["accelerate"] = None  # as if not installed (what this project had before it depended on it)
t0 = time.perf_counter()
import torch, microdreamer_core
from microdreamer_core.diffusion.loading import load_model
t1 = time.perf_counter()
extra = {}
if len(sys.argv) > 2:
    extra = {"tokenizer": sys.argv[2] + "/tokenizer", "image_encoder": sys.argv[2] + "/image_encoder"}
model = load_model(sys.argv[1], **extra)
t2 = time.perf_counter()
params = sum(p.numel() for p in model.parameters())
dtypes = sorted({str(p.dtype) for p in model.parameters()})
print(json.dumps({"code": microdreamer_core.__file__, "import_s": round(t1 - t0, 2), "load_s": round(t2 - t1, 2),
                  "params": params, "dtypes": dtypes,
                  "child_peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)}))
"""


def code_commit(code: Path) -> str:
    """Short HEAD id of the checkout that loaded (``+dirty`` with uncommitted tracked changes)."""
    if code == ROOT:
        return commit()
    head = subprocess.run(
        ["git", "-C", str(code), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    )
    dirty = subprocess.run(
        ["git", "-C", str(code), "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
        check=False,
    )
    return (head.stdout.strip() or "unknown") + ("+dirty" if dirty.stdout.strip() else "")


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kind", default="imagedream", choices=["mvdream", "imagedream", "zero123"])
    ap.add_argument("--save-dtype", default="float16", choices=["float16", "float32"])
    ap.add_argument("--folder", default=None, help="model folder (made once when missing)")
    ap.add_argument("--code", default=str(ROOT), help="checkout whose microdreamer_core loads the folder")
    ap.add_argument("--repeats", type=int, default=2, help="loads, each in a fresh process")
    ap.add_argument("--hide-accelerate", action="store_true", help="load as if accelerate were not installed")
    ap.add_argument(
        "--single-file", action="store_true", help="load the original single-file layout instead of the folder"
    )
    args = ap.parse_args()

    folder = Path(
        args.folder
        or Path(tempfile.gettempdir()) / f"microdreamer-bench-{args.kind}-full-{args.save_dtype.replace('float', 'fp')}"
    )
    if not (folder / "model_index.json").is_file():
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", _BUILD, args.kind, args.save_dtype, str(folder)], cwd=ROOT, check=True)
        print(f"built and saved {folder} in {time.perf_counter() - t:.0f} s", file=sys.stderr, flush=True)

    source = [str(folder)]
    if args.single_file:
        single = folder.with_name(folder.name + "-ldm.safetensors")
        if not single.is_file():
            t = time.perf_counter()
            subprocess.run(
                [sys.executable, "-c", _BUILD_SINGLE, str(folder), str(single), str(ROOT / "tests")],
                cwd=ROOT,
                check=True,
            )
            print(f"wrote {single} in {time.perf_counter() - t:.0f} s", file=sys.stderr, flush=True)
        source = [str(single), str(folder)]

    code = Path(args.code).resolve()
    runs = []
    for _ in range(args.repeats):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t = time.perf_counter()
        env = os.environ | ({"BENCH_HIDE_ACCELERATE": "1"} if args.hide_accelerate else {})
        out = subprocess.run(
            [sys.executable, "-c", _LOAD, *source], cwd=code, env=env, check=True, capture_output=True, text=True
        )
        wall = time.perf_counter() - t
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        run = json.loads(out.stdout.strip().splitlines()[-1])
        run["process_s"] = round(wall, 2)
        run["cpu_s"] = round(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, 1)
        run["stderr_lines"] = [line for line in out.stderr.splitlines() if line.strip()][:5]
        runs.append(run)
        print(json.dumps(run), file=sys.stderr, flush=True)

    print(
        json.dumps(
            {
                "bench": "loading",
                "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                "host": platform.node(),
                "cpus": os.cpu_count(),
                "threads": os.environ.get("OMP_NUM_THREADS"),
                "commit": commit(),
                "command": " ".join([Path(sys.executable).name, *sys.argv]),
                "kind": args.kind,
                "source": source[0],
                "source_gib": round(
                    (Path(source[0]).stat().st_size if args.single_file else folder_bytes(folder)) / 2**30, 2
                ),
                "loadavg_1min": round(os.getloadavg()[0], 2),
                "code": runs[0]["code"] if runs else None,
                "code_commit": code_commit(code),
                "accelerate": "hidden"
                if args.hide_accelerate
                else "installed"
                if importlib.util.find_spec("accelerate")
                else "missing",
                "load_s": [r["load_s"] for r in runs],
                "process_s": [r["process_s"] for r in runs],
                "peak_rss_gib": [r["child_peak_rss_gib"] for r in runs],
                "runs": runs,
            }
        )
    )


if __name__ == "__main__":
    main()
