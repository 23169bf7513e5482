"""Time repeated ``model.prepare()`` calls: same condition, new cameras each call (what SIR does
once per iteration). The first call encodes; later ones hit the condition cache.

    OMP_NUM_THREADS=1 python bench/bench_prepare.py tiny 15     # the three tiny models
    OMP_NUM_THREADS=1 python bench/bench_prepare.py full 3      # full-size ImageDream (builds ~30-50 s)

"Before the cache" figures come from the same script run against commit 1df96f5 (for example
in a ``git worktree``), which re-encoded on every call.
"""

import statistics
import sys
import time

import torch

import microdreamer_core.diffusion.models as mm
from microdreamer_core.diffusion.models import Condition
from microdreamer_core.diffusion.random_models import build_random_model
from microdreamer_core.scene.cameras import CAMERA_PRESETS, sample_orbit_cameras

size = sys.argv[1] if len(sys.argv) > 1 else "tiny"
reps = int(sys.argv[2]) if len(sys.argv) > 2 else 7
kinds = ["mvdream", "imagedream", "zero123"] if size == "tiny" else ["imagedream"]
img_size = 32 if size == "tiny" else 256
print("module:", mm.__file__, "torch threads:", torch.get_num_threads())
cond = Condition(
    prompt="a yellow duck",
    negative_prompt=mm.DEFAULT_NEGATIVE_PROMPT,
    image=torch.rand(512, 512, 4, generator=torch.Generator().manual_seed(0)),
)
gen = torch.Generator().manual_seed(0)
for kind in kinds:
    t0 = time.perf_counter()
    model = build_random_model(kind, size, seed=0)
    print(f"{kind} {size}: built in {time.perf_counter() - t0:.1f} s", flush=True)
    preset = CAMERA_PRESETS["zero123" if kind == "zero123" else kind]
    first = None
    times = []
    for i in range(reps + 1):
        cams = sample_orbit_cameras(preset, img_size, gen)
        t = time.perf_counter()
        p = model.prepare(cond, cams, img_size)
        dt = time.perf_counter() - t
        if i == 0:
            first = dt
        else:
            times.append(dt)
    print(
        f"{kind} {size}: first call {first * 1e3:.2f} ms; "
        f"repeated calls median {statistics.median(times) * 1e3:.2f} ms "
        f"(min {min(times) * 1e3:.2f}, max {max(times) * 1e3:.2f}, n={len(times)})",
        flush=True,
    )
