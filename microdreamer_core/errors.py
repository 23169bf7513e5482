"""User-facing errors and small safe-write helpers.

Every error a user can cause (bad file, wrong shape, NaN) is raised as :class:`InputError` with
one line that names the problem and the fix, so the CLI and the ComfyUI nodes can show it as is.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator

__all__ = ["MicroDreamerError", "InputError", "Cancelled", "check_cancel", "atomic_path"]


class MicroDreamerError(Exception):
    """Base class of the errors this library raises on purpose."""


class InputError(MicroDreamerError, ValueError):
    """Bad user input: the message names the problem and how to fix it."""


class Cancelled(MicroDreamerError):
    """A long computation was stopped by its cancel hook."""


def check_cancel(cancel, where: str) -> None:
    """Run a host's cancel hook: it may raise its own exception (ComfyUI's interrupt) or return
    True, which raises :class:`Cancelled` naming ``where``."""
    if cancel is not None and cancel():
        raise Cancelled(f"cancelled {where}")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path``.

    A failure (exception, Ctrl-C) removes the temporary file, so a reader never sees a
    half-written output and an older file at ``path`` survives untouched.
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise InputError(f"output folder {folder} does not exist: create it or choose another output path")
    if not os.access(folder, os.W_OK):
        raise InputError(f"output folder {folder} is not writable: choose another output path")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp makes 0600 files; outputs get the usual mode
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
