"""The benchmark suite runs end to end at CI size and its numbers make physical sense."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

STAGES = {
    "calibration",
    "one_nfe",
    "init_sampling",
    "hybrid_forward",
    "optimiser_step",
    "densification",
    "pipeline",
    "mesh_extract",
    "uv_unwrap_quality",
    "uv_unwrap_fast",
    "bake",
    "texture_refine",
    "glb_write",
    "sds",
    "sir_gaussians",
}


@pytest.mark.slow
def test_tiny_suite_runs_and_every_measurement_is_above_its_floor(tmp_path):
    out = tmp_path / "suite.jsonl"
    cmd = [
        sys.executable,
        str(ROOT / "bench" / "suite.py"),
        "--size",
        "tiny",
        "--repeats",
        "1",
        "--repeats-fast",
        "2",
        "--repeats-pipeline",
        "1",
        "--sds-steps",
        "8",
        "--compare-iterations",
        "2",
        "--out",
        str(out),
        "--quiet",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = {r["stage"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert set(rows) == STAGES
    for r in rows.values():  # every line says where and how it was measured
        assert (
            r["command"].startswith("python bench/suite.py --size tiny")
            and r["date"]
            and r["commit"]
            and r["device"] == "cpu"
        )
    cal = rows["calibration"]
    assert cal["matmul_tflops"] > 0 and cal["bandwidth_gbs"] > 0
    for stage, r in rows.items():
        if stage == "calibration":
            continue
        assert r["seconds"] > 0, stage
        if r["floor_s"] is not None:
            # nothing beats the device's measured matrix throughput or memory bandwidth
            assert r["measured_over_floor"] >= 1.0, (stage, r)
    # the counts the floors are built on are the pipeline's real ones
    assert rows["one_nfe"]["gflops"] > 0
    assert rows["init_sampling"]["nfe"] == 20  # the zero123 preset's DDIM steps from noise
    assert rows["pipeline"]["nfe"]["sir"] == rows["pipeline"]["planned_sir_nfe"] > 20
    assert len(rows["pipeline"]["gaussians_per_iteration"]) == 2
    assert rows["sds"]["nfe"] == 8
    # the SDS comparison runs SIR with the paper's Adam schedule (init steps + 15 per iteration)
    from microdreamer_core.pipeline.presets import get_preset

    paper = get_preset("zero123").sir
    assert rows["sir_gaussians"]["iterations"] == 2
    assert rows["sir_gaussians"]["adam_steps"] == paper.init_steps + 2 * paper.steps_per_iteration
    assert rows["sir_gaussians"]["sds_over_sir_nfe"] == pytest.approx(8 / rows["sir_gaussians"]["nfe"], abs=0.01)
    assert "measured/floor" in proc.stdout and "pipeline" in proc.stdout
