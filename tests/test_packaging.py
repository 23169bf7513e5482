"""Packaging contract: registry metadata, entry points, a core library free of ComfyUI and CUDA
imports, and the core's layering (a module imports only from its own folder or from folders
below it in the data flow)."""

import ast
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
    r = subprocess.run(
        [comfy, "--skip-prompt", "--no-enable-telemetry", "node", "validate"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "passed" in (r.stdout + r.stderr).lower(), r.stdout + r.stderr


def test_core_imports_without_comfyui_or_cuda_backends():
    code = (
        "import sys, importlib, pkgutil, microdreamer_core as m\n"
        "names = [info.name for info in pkgutil.walk_packages(m.__path__, 'microdreamer_core.')]\n"
        "assert len(names) > 40, names\n"
        "for name in names:\n"
        "    importlib.import_module(name)\n"
        "bad = [k for k in sys.modules\n"
        "       if k.split('.')[0] in ('comfy', 'comfy_api', 'folder_paths', 'gsplat', 'nvdiffrast', 'warp')]\n"
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
    # Outside ComfyUI the pack's __init__ defines nothing and imports nothing heavy: run it in a
    # fresh interpreter and look at what it defined and what got imported.
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('microdreamer_pack', {str(ROOT / '__init__.py')!r})\n"
        "module = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(module)\n"
        "defined = sorted(k for k in vars(module) if not k.startswith('__'))\n"
        "heavy = sorted(k for k in sys.modules\n"
        "               if k.split('.')[0] in ('torch', 'numpy', 'microdreamer_core', 'nodes', 'diffusers'))\n"
        "print(defined, heavy)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT / "tests")
    assert r.returncode == 0, r.stderr
    defined, heavy = r.stdout.strip().split("] [")
    assert "NODE_CLASS_MAPPINGS" not in defined and "comfy_entrypoint" not in defined and "NODES" not in defined, (
        defined
    )
    assert heavy.strip("[]") == "", heavy


# The data flow, bottom to top: a core module may import from its own folder (or top-level module)
# and from anything earlier in this list, never from anything later.
LAYERS = ["errors", "runtime", "scene", "io", "render", "diffusion", "fit", "meshing", "pipeline", "eval", "cli"]


def _core_imports():
    """(module path, line, imported layer, own layer) for every import inside microdreamer_core."""
    core = ROOT / "microdreamer_core"
    for path in sorted(core.rglob("*.py")):
        rel = path.relative_to(core).parts
        own = rel[0].removesuffix(".py")
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                package = list(rel[:-1])
                target = package[: len(package) - (node.level - 1)] + (node.module.split(".") if node.module else [])
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("microdreamer_core."):
                target = node.module.split(".")[1:]
            elif isinstance(node, ast.Import):
                found = [a.name.split(".")[1:] for a in node.names if a.name.startswith("microdreamer_core.")]
                if not found:
                    continue
                target = found[0]
            else:
                continue
            if target:
                yield "/".join(rel), node.lineno, target[0], own


def test_core_layers_are_known():
    core = ROOT / "microdreamer_core"
    folders = {p.name for p in core.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    modules = {p.stem for p in core.glob("*.py") if p.stem != "__init__"}
    assert folders | modules == set(LAYERS), "add the new folder or module to LAYERS at its place in the data flow"


def test_core_imports_only_downwards():
    upward = [
        f"{where}:{line} imports {target} ({LAYERS.index(target)}) from {own} ({LAYERS.index(own)})"
        for where, line, target, own in _core_imports()
        if target in LAYERS and LAYERS.index(target) > LAYERS.index(own)
    ]
    imports = list(_core_imports())
    assert len(imports) > 100  # the walk sees the package's imports
    assert not upward, "\n".join(upward)


def test_console_script_installed():
    exe = Path(sys.executable).with_name("microdreamer")
    assert exe.exists(), "pip install -e . installs the `microdreamer` console script"
    r = subprocess.run([str(exe), "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "reconstruct" in r.stdout


def test_requirements_txt_matches_pyproject():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    listed = [
        line.strip()
        for line in (ROOT / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert listed == [d for d in deps if not d.startswith("torch")]
