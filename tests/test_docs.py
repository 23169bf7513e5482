"""README.md and ARCHITECTURE.md stay true to the code: their Python examples import what exists,
and every library path or dotted name they cite resolves."""

import ast
import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ["README.md", "ARCHITECTURE.md"]
FOLDERS = ("scene", "io", "render", "diffusion", "fit", "meshing", "pipeline", "eval")


def _resolve(dotted: str) -> object:
    """The module or attribute ``microdreamer_core.<dotted>`` names (ImportError / AttributeError if none)."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(["microdreamer_core", *parts[:cut]]))
        except ModuleNotFoundError:
            continue
        for name in parts[cut:]:
            obj = getattr(obj, name)
        return obj
    raise ImportError(dotted)


@pytest.mark.parametrize("doc", DOCS)
def test_python_examples_import_what_exists(doc):
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / doc).read_text(), flags=re.S)
    imports = [
        (node.module, alias.name)
        for block in blocks
        for node in ast.walk(ast.parse(block))
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("microdreamer_core")
        for alias in node.names
    ]
    assert imports or doc != "README.md"
    for module, name in imports:
        assert hasattr(importlib.import_module(module), name), f"{doc}: from {module} import {name}"


@pytest.mark.parametrize("doc", DOCS)
def test_cited_library_paths_and_names_exist(doc):
    text = (ROOT / doc).read_text()
    paths = re.findall(r"`(microdreamer_core/[\w/]+\.py)`", text)
    for path in paths:
        assert (ROOT / path).is_file(), f"{doc} cites {path}"
    folders = "|".join(FOLDERS)
    relative = re.findall(rf"`((?:{folders})/\w+\.py)`", text)
    for path in relative:
        assert (ROOT / "microdreamer_core" / path).is_file(), f"{doc} cites {path}"
    names = [n for n in re.findall(rf"`((?:{folders})\.[\w.]+)`", text) if not n.endswith(".py")]
    for name in names:
        _resolve(name)  # raises if the module or attribute is gone
    assert paths or names or relative
