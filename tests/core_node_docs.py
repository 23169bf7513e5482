"""An offline inventory of current ComfyUI core nodes: the ``comfyui-embedded-docs`` wheel.

``comfyui-embedded-docs`` (PyPI) documents every core node of the current release line, one
``docs/<NodeId>/en.md`` each with an Inputs and an Outputs table. The tests read the node ids
and parameter names from it to check what our example workflows use, so a core node renamed
upstream fails our CI instead of a user's workflow. The ComfyUI 0.3.75 test server pins the
older 0.3.1 of that package; this newer one is only downloaded (cached beside ComfyUI) and read
from the wheel, never installed.
"""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from functools import cache
from pathlib import Path

from comfy_server import cache_dir

DOCS_WHEEL = "comfyui-embedded-docs==0.5.15"
_WHEEL_GLOB = "comfyui_embedded_docs-0.5.15-*.whl"


def docs_wheel() -> Path:
    """The cached wheel (downloaded with pip on first use)."""
    folder = cache_dir() / "downloads"
    found = sorted(folder.glob(_WHEEL_GLOB))
    if not found:
        folder.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-d", str(folder)]
        subprocess.run([*cmd, DOCS_WHEEL], check=True, capture_output=True, timeout=600)
        found = sorted(folder.glob(_WHEEL_GLOB))
    return found[-1]


@cache
def _pages() -> dict[str, str]:
    with zipfile.ZipFile(docs_wheel()) as z:
        pages = {}
        for name in z.namelist():
            m = re.fullmatch(r"comfyui_embedded_docs/docs/([^/]+)/en\.md", name)
            if m:
                pages[m.group(1)] = z.read(name).decode("utf-8")
        return pages


def documented_nodes() -> set[str]:
    """Every core node id the current docs describe."""
    return set(_pages())


def _table(page: str, heading: str) -> dict[str, str]:
    """First column -> the column named like 'Type' of the table under ``## <heading>``."""
    section = re.split(r"^## ", page, flags=re.M)
    body = next((s for s in section if s.lower().startswith(heading.lower())), "")
    rows = [line for line in body.splitlines() if line.startswith("|")]
    if len(rows) < 2:
        return {}
    header = [c.strip().lower() for c in rows[0].strip("|").split("|")]
    type_col = next((i for i, c in enumerate(header) if "type" in c), None)
    out = {}
    for row in rows[2:]:
        cells = [c.strip() for c in row.strip("|").split("|")]
        out[cells[0].strip("`")] = cells[type_col] if type_col is not None and type_col < len(cells) else ""
    return out


def documented_inputs(node: str) -> dict[str, str]:
    """Input name -> documented data type."""
    return _table(_pages()[node], "Input")


def documented_outputs(node: str) -> dict[str, str]:
    """Output name -> documented data type."""
    return _table(_pages()[node], "Output")
