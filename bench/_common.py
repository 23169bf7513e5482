"""What the benchmark scripts share: the input photo and the commit they record."""

from __future__ import annotations

import subprocess
from pathlib import Path

import torch

from microdreamer_core.io.transforms import load_rgba

ROOT = Path(__file__).resolve().parents[1]
DUCK_PHOTO = "24_wild2_yellow_duck_rgba.png"


def input_image(path: str | None = None) -> torch.Tensor:
    """The RGBA input for image presets: ``path``, else the shared duck photo (``.gpu/`` copy on a
    device machine, ``../shared/inputs`` here), else a yellow box on transparent."""
    for candidate in [path, ROOT / ".gpu" / DUCK_PHOTO, ROOT.parent / "shared" / "inputs" / DUCK_PHOTO]:
        if candidate and Path(candidate).is_file():
            return load_rgba(Path(candidate))
    img = torch.zeros(256, 256, 4)
    img[60:200, 70:190, :3] = torch.tensor([0.9, 0.8, 0.1])
    img[60:200, 70:190, 3] = 1
    return img


def commit() -> str:
    """Short HEAD id, with ``+dirty`` when tracked files have uncommitted changes."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
        return (head.stdout.strip() or "unknown") + ("+dirty" if dirty.stdout.strip() else "")
    except OSError:
        return "unknown"
