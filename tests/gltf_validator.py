"""The Khronos glTF Validator (npm ``gltf-validator``), provisioned at test time, run under Node.

:func:`validate_glb` returns the validator's JSON report for a file. The package is installed
once with ``npm install --prefix <cache>/npm`` (the test cache is ``$MICRODREAMER_TEST_CACHE`` or
``<repo>/.test_cache``, like tests/comfy_server.py); nothing of it is committed. Tests that need
it skip when Node/npm are missing and fail with npm's output when the install fails.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from comfy_server import cache_dir

VALIDATOR_VERSION = "2.0.0-dev.3.10"  # the npm package's latest release (December 2024)
_SCRIPT = Path(__file__).resolve().parent / "gltf_validate.mjs"


def provision_validator() -> Path:
    """The ``node_modules`` folder holding gltf-validator at the pinned version (installing it)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        pytest.skip("Node.js and npm are needed to run the Khronos glTF Validator")
    prefix = cache_dir() / "npm"
    modules = prefix / "node_modules"
    package = modules / "gltf-validator" / "package.json"
    if package.is_file() and json.loads(package.read_text()).get("version") == VALIDATOR_VERSION:
        return modules
    prefix.mkdir(parents=True, exist_ok=True)
    cmd = [
        npm,
        "install",
        "--prefix",
        str(prefix),
        "--no-audit",
        "--no-fund",
        "--no-save",
        f"gltf-validator@{VALIDATOR_VERSION}",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    if proc.returncode != 0 or not package.is_file():
        pytest.fail(f"`{' '.join(cmd)}` failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return modules


def validate_glb(path: str | Path) -> dict:
    """The validator's report (dict) for a .glb/.gltf file; prints its issue counts and messages."""
    modules = provision_validator()
    proc = subprocess.run(
        ["node", str(_SCRIPT), str(modules), str(path)], capture_output=True, text=True, timeout=120, check=False
    )
    if proc.returncode != 0:
        pytest.fail(f"glTF Validator could not read {path}: {proc.stderr[-2000:]}")
    report = json.loads(proc.stdout)
    issues = report["issues"]
    print(
        f"\nglTF Validator {report.get('validatorVersion')} on {Path(path).name}: "
        f"{issues['numErrors']} errors, {issues['numWarnings']} warnings, {issues['numInfos']} infos, "
        f"{issues['numHints']} hints"
    )
    for msg in issues["messages"]:
        print(
            f"  [{('error', 'warning', 'info', 'hint')[msg['severity']]}] "
            f"{msg['code']} at {msg.get('pointer', '')}: {msg['message']}"
        )
    return report


def assert_valid(path: str | Path) -> dict:
    """Validate and assert zero errors; returns the report."""
    report = validate_glb(path)
    errors = [m for m in report["issues"]["messages"] if m["severity"] == 0]
    assert report["issues"]["numErrors"] == 0, json.dumps(errors[:20], indent=1)
    return report
