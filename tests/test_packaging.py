"""Packaging contract: registry metadata, entry points, and a core library free of ComfyUI and CUDA imports."""

import importlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]


def test_pyproject_metadata():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    project = meta["project"]
    assert project["name"] == "microdreamer"
    assert project["scripts"]["microdreamer"] == "microdreamer_core.cli:main"
    assert "Repository" in project["urls"]
    assert not any(d.replace(" ", "").startswith("torch==") for d in project["dependencies"])  # users bring torch
    comfy = meta["tool"]["comfy"]
    assert {"PublisherId", "DisplayName", "Icon"} <= comfy.keys()
    assert {"cuda", "test"} <= project["optional-dependencies"].keys()


def test_comfy_node_validate_passes():
    comfy = shutil.which("comfy") or str(Path(sys.executable).with_name("comfy"))
    if not Path(comfy).exists():
        pytest.fail("comfy-cli is not installed: pip install -r tests/requirements.txt")
    r = subprocess.run([comfy, "--skip-prompt", "--no-enable-telemetry", "node", "validate"], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "passed" in (r.stdout + r.stderr).lower(), r.stdout + r.stderr


def test_core_imports_without_comfyui_or_cuda_backends():
    code = (
        "import sys, importlib, pkgutil, microdreamer_core as m\n"
        "for info in pkgutil.iter_modules(m.__path__):\n"
        "    importlib.import_module('microdreamer_core.' + info.name)\n"
        "bad = [k for k in sys.modules if k.split('.')[0] in ('comfy', 'comfy_api', 'folder_paths', 'gsplat', 'nvdiffrast')]\n"
        "assert not bad, bad\n"
        "print('ok')\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr


def test_core_source_never_mentions_comfy_imports():
    for path in (ROOT / "microdreamer_core").rglob("*.py"):
        text = path.read_text()
        assert "import comfy" not in text and "from comfy" not in text and "import folder_paths" not in text, path


def test_root_entry_point_is_harmless_without_comfyui():
    # Outside ComfyUI the pack's __init__ defines nothing and imports nothing heavy.
    spec = importlib.util.spec_from_file_location("microdreamer_pack", ROOT / "__init__.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert not hasattr(module, "NODE_CLASS_MAPPINGS")


def test_console_script_installed():
    exe = Path(sys.executable).with_name("microdreamer")
    assert exe.exists(), "pip install -e . installs the `microdreamer` console script"
    r = subprocess.run([str(exe), "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "reconstruct" in r.stdout


def test_requirements_txt_matches_pyproject():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    listed = [line.strip() for line in (ROOT / "requirements.txt").read_text().splitlines()
              if line.strip() and not line.startswith("#")]
    assert listed == [d for d in deps if not d.startswith("torch")]
