"""bench/gpu_check.sh, the one prepared GPU run, rehearsed on the CPU.

The plan must fit its budget and match the estimates its header states; a dry run (every part at tiny sizes
on the CPU) must print each part's start and end, write its figures under $OUT as it goes within the
device tool's limits on returned files, and a part cut short by its limit must leave the figures before it.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "bench" / "gpu_check.sh"
PARTS = ["env", "versions", "gsplat_build", "nvdiffrast", "tests", "mesh_stage", "zero123", "imagedream", "mvdream"]


def _run(*args: str, out: Path | None = None, timeout: float = 60, **env: str) -> subprocess.CompletedProcess:
    environ = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1", **env}
    if out is not None:
        environ["OUT"] = str(out)
    return subprocess.run(
        ["bash", str(SCRIPT), *args], cwd=ROOT, env=environ, capture_output=True, text=True, timeout=timeout
    )


def _header_estimates() -> dict[str, tuple[int, int]]:
    """{part: (estimate, limit)} from the script's header table."""
    rows = re.findall(r"^#\s+(\w+)\s+(\d+) s\s+(\d+)\s", SCRIPT.read_text(), re.MULTILINE)
    return {name: (int(est), int(limit)) for name, est, limit in rows}


def test_the_plan_fits_the_budget_and_matches_the_header():
    done = _run("--plan")
    assert done.returncode == 0, done.stderr
    plan = {
        m[0]: (int(m[1]), int(m[2]), m[3])
        for m in re.findall(r"^(\w+)\s+estimate\s+(\d+) s\s+limit\s+(\d+) s\s+(\w+)$", done.stdout, re.MULTILINE)
    }
    assert list(plan) == PARTS
    assert {name: (est, limit) for name, (est, limit, _) in plan.items()} == _header_estimates()
    required = sum(est for est, _, kind in plan.values() if kind == "required")
    budget = int(re.search(r"of a (\d+) s budget", done.stdout)[1])
    assert required <= budget <= 540  # ~9 minutes on the machine, inside the tool's 10-minute command limit
    assert f"sum of estimates: {required} s" in SCRIPT.read_text()


def _check_returnable(out: Path) -> list[str]:
    """The device tool returns at most 8 files, 2 folders down, named in letters, digits, '.', '_', '-'."""
    files = [p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()]
    assert 0 < len(files) <= 8, files
    assert all(re.fullmatch(r"[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+){0,2}", f) for f in files), files
    return files


@pytest.mark.slow
def test_dry_run_reports_every_part_and_writes_its_figures(tmp_path):
    """The whole script on the CPU (about 5 minutes on one contended core)."""
    done = _run("--dry-run", out=tmp_path, timeout=1500)
    assert done.returncode == 0, done.stderr
    log, summary = (tmp_path / "log.txt").read_text(), (tmp_path / "summary.txt").read_text()
    for part in PARTS:
        assert re.search(rf"=== \[{part}\] start \d\d:\d\d:\d\d UTC, limit \d+ s", log), part
        assert re.search(rf"=== \[{part}\] end \d\d:\d\d:\d\d UTC, \w+", log), part
        assert re.search(rf"^{part}\s+(ok|n/a)\s+[\d.]+ s\s+start \d\d:\d\d:\d\d", summary, re.MULTILINE), part
    assert "torch 2." in summary and re.search(r"^total \d+ s of a 540 s budget$", summary, re.MULTILINE)
    rows = [json.loads(line) for line in (tmp_path / "pipeline.jsonl").read_text().splitlines()]
    assert [r["preset"] for r in rows] == ["zero123", "imagedream", "mvdream"]
    assert all("error" not in r and r["total_s"] > 0 and r["sir_s"]["total"] > 0 for r in rows)
    after_sir = [json.loads(line) for line in log.splitlines() if line.startswith('{"after": "sir"')]
    assert [r["preset"] for r in after_sir] == ["zero123", "imagedream", "mvdream"]  # printed as each stage ends
    fidelity = json.loads((tmp_path / "mesh_fidelity.jsonl").read_text().splitlines()[-1])
    assert fidelity["object"] == "chair" and fidelity["mesh_iou"] > 0
    for junit in ("junit_files.xml", "junit_cuda.xml"):
        assert 'failures="0"' in (tmp_path / junit).read_text() and 'errors="0"' in (tmp_path / junit).read_text()
    assert "nvdiffrast is not installed" in (tmp_path / "nvdiffrast_build.log").read_text()
    _check_returnable(tmp_path)


@pytest.mark.slow
def test_a_part_cut_short_keeps_what_came_before(tmp_path):
    """A 20 s budget: the versions are recorded, a part that never ends is stopped at the budget and said so,
    and the optional MVDream part is skipped for want of time (about 20 s)."""
    done = _run(
        "--dry-run", out=tmp_path, timeout=120, GPU_CHECK_PARTS="env versions stall mvdream", GPU_CHECK_BUDGET_S="20"
    )
    assert done.returncode == 0, done.stderr
    summary = (tmp_path / "summary.txt").read_text()
    assert re.search(r"^versions\s+ok\s", summary, re.MULTILINE) and "torch 2." in summary, summary
    assert re.search(r"^stall\s+timeout\s", summary, re.MULTILINE), summary
    assert re.search(r"^mvdream\s+skipped\s", summary, re.MULTILINE), summary
    assert re.search(r"^total (19|20|21) s of a 20 s budget$", summary, re.MULTILINE), summary
    log = (tmp_path / "log.txt").read_text()
    assert "a part that never ends" in log and re.search(r"=== \[stall\] end .* timeout", log)
    _check_returnable(tmp_path)
