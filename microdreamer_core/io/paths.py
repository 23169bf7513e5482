"""Confining user-given paths to one folder (ComfyUI's input directory on a shared server).

One mechanism, :func:`confined`: the path is joined to the root and resolved to its real path
(``os.path.realpath``: ``..`` and every symlink followed), and anything that ends outside the
root's own real path is refused with the same :class:`~.errors.InputError` whether or not it
exists. The message never shows the path it was given or what it resolved to, so an error
reveals nothing about the file system outside the root. Pure Python; no ComfyUI import.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import InputError

__all__ = ["confined", "folders_holding", "is_inside"]

MAX_LISTED_FOLDERS = 1000
"""At most this many folders are listed by :func:`folders_holding` (a huge input folder stays fast)."""


def _real(path) -> str:
    return os.path.normcase(os.path.realpath(path))


def is_inside(root: str | os.PathLike, path: str | os.PathLike) -> bool:
    """Whether ``path`` (relative to ``root``, or absolute) resolves, symlinks included, to
    ``root`` itself or something inside it. Never raises for odd names (a NUL byte, a symlink
    loop, a name too long): those are simply not inside."""
    try:
        real_root = _real(root)
        real = _real(os.path.join(root, path))
        return real == real_root or os.path.commonpath([real_root, real]) == real_root
    except (OSError, ValueError, TypeError):  # embedded NUL, mixed drives on Windows, not a path at all
        return False


def confined(
    root: str | os.PathLike, relative: str | os.PathLike, what: str = "the path", within: str = "the input folder"
) -> Path:
    """The real path of ``relative`` under ``root``, refused unless it lies inside ``root``.

    ``relative`` is taken relative to ``root``; an absolute path is accepted only if it resolves
    inside ``root``. ``..``, symlinks (in the path or pointing out of the root) and absolute paths
    elsewhere are all refused with one :class:`InputError` naming ``what`` and ``within``, never the
    path itself nor whether it exists.
    """
    if not isinstance(relative, (str, os.PathLike)) or not is_inside(root, relative):
        raise InputError(
            f"{what} leads outside {within}: give a path inside it (no absolute path, "
            f"no '..', no link that points out of it)"
        )
    return Path(os.path.realpath(os.path.join(root, relative)))


def folders_holding(root: str | os.PathLike, filename: str, max_depth: int = 3) -> list[str]:
    """Sub-folders of ``root`` (``/``-separated, relative, sorted) that hold a file ``filename``
    and resolve inside ``root``; at most ``max_depth`` levels deep, hidden folders skipped, at
    most :data:`MAX_LISTED_FOLDERS` results. ``root`` itself is not listed."""
    root = Path(root)
    found: list[str] = []
    if not root.is_dir():
        return found
    level = [Path(".")]
    for _ in range(max_depth + 1):
        below: list[Path] = []
        for rel in level:
            folder = root / rel
            if rel.parts and (folder / filename).is_file() and is_inside(root, rel / filename):
                found.append(rel.as_posix())
                if len(found) >= MAX_LISTED_FOLDERS:
                    return sorted(found)
            try:
                entries = sorted(os.scandir(folder), key=lambda e: e.name)
            except OSError:
                continue
            for entry in entries:
                try:
                    if entry.name.startswith(".") or not entry.is_dir():
                        continue
                except OSError:
                    continue
                if is_inside(root, rel / entry.name):
                    below.append(rel / entry.name)
        level = below[: 10 * MAX_LISTED_FOLDERS]
    return sorted(found)
