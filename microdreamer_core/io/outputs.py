"""All-or-nothing output writing.

Outputs are written through :func:`atomic_outputs` (or :func:`atomic_path` for one file): every
output is first written to a temporary sibling and all of them are moved into place together at
the end; any failure (exception, Ctrl-C, SIGTERM) removes what was written and restores what was
there before. OS errors while writing (disk full, read-only folder, a folder in the way) become
one :class:`~microdreamer_core.errors.InputError` that names the output and the problem.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
import threading
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError, shown

__all__ = [
    "check_output",
    "output_error",
    "refuse_overwriting",
    "Outputs",
    "atomic_outputs",
    "atomic_path",
    "open_outputs",
]

# ---------------------------------------------------------------------------------------------
# Output paths
# ---------------------------------------------------------------------------------------------
_FIXES = {
    getattr(errno, "EDQUOT", errno.ENOSPC): "free some of your disk quota or choose an output path on another disk",
    errno.ENOSPC: "free some disk space or choose an output path on another disk",
    errno.EROFS: "the disk is read-only: choose an output path on a writable one",
    errno.EISDIR: "a folder is in the way: choose an output path that names a file",
    errno.ENOTDIR: "a file is in the way where a folder is needed: choose another output path",
    errno.ENAMETOOLONG: "choose an output path with a shorter name",
}
_DEFAULT_FIX = "choose an output path in a folder you can write to"


def output_error(path, error: OSError) -> InputError:
    """The one-line :class:`InputError` for an OS error while writing output ``path``."""
    reason = error.strerror or type(error).__name__
    return InputError(f"cannot write {shown(path)}: {reason}; {_FIXES.get(error.errno, _DEFAULT_FIX)}")


def _subject(path: Path, what: str) -> str:
    return f"{shown(path)} ({what})" if what else shown(path)


def check_output(path, what: str = "", folder: bool = False) -> Path:
    """Refuse an output path that cannot be written, before any slow work: its folder must exist
    and be writable, a file output must not be a folder and a folder output not a file.
    ``what`` names the option in the message (``"--out"``)."""
    path = Path(path)
    parent = path.parent
    if not parent.is_dir():
        problem = "is a file, not a folder; choose" if parent.exists() else "does not exist; create it or choose"
        raise InputError(
            f"cannot write {_subject(path, what)}: the folder {shown(parent)} {problem} another output path"
        )
    if not os.access(parent, os.W_OK):
        read_only = hasattr(os, "statvfs") and bool(os.statvfs(parent).f_flag & os.ST_RDONLY)
        raise InputError(
            f"cannot write {_subject(path, what)}: the folder {shown(parent)} is "
            f"{'on a read-only disk' if read_only else 'not writable'}; {_DEFAULT_FIX}"
        )
    if folder and path.exists() and not path.is_dir():
        raise InputError(f"cannot write {_subject(path, what)}: it is a file, not a folder; choose an output folder")
    if not folder and path.is_dir():
        raise InputError(
            f"cannot write {_subject(path, what)}: it is a folder; choose an output path that names a file"
        )
    return path


def refuse_overwriting(outputs: Iterable, inputs: Iterable) -> None:
    """Refuse outputs that would replace one of the command's own input files."""

    def key(p) -> str:
        return os.path.normcase(os.path.realpath(p))

    sources = {key(p): p for p in inputs}
    for out in outputs:
        if key(out) in sources:
            raise InputError(
                f"writing {shown(out)} would overwrite the input {shown(sources[key(out)])} of this "
                "command: choose another output path"
            )


# ---------------------------------------------------------------------------------------------
# All-or-nothing outputs
# ---------------------------------------------------------------------------------------------
@dataclass
class _Staged:
    tmp: Path  # where the output is written
    target: Path  # where it goes on success
    folder: bool


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _under(path: Path, folder: Path) -> bool:
    return folder in path.parents


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


class Outputs:
    """The outputs of one :func:`atomic_outputs` block: ask for a temporary path per output with
    :meth:`file` / :meth:`folder`, write there; they are moved into place together at the end."""

    def __init__(self) -> None:
        self.staged: list[_Staged] = []

    def file(self, path, what: str = "") -> Path:
        """A temporary file beside output file ``path``, to write instead of it."""
        path = check_output(path, what)
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        except OSError as e:
            raise output_error(path, e) from e
        self.staged.append(_Staged(Path(tmp), path, False))
        os.close(fd)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; outputs get the usual mode
        return Path(tmp)

    def folder(self, path, what: str = "") -> Path:
        """A temporary empty folder beside output folder ``path``, to fill instead of it. An
        existing folder keeps its other files: the new ones are merged into it."""
        path = check_output(path, what, folder=True)
        try:
            tmp = tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        except OSError as e:
            raise output_error(path, e) from e
        self.staged.append(_Staged(Path(tmp), path, True))
        os.chmod(tmp, 0o777 & ~_umask())
        return Path(tmp)

    # --- the end of the block --------------------------------------------------------------
    def discard(self) -> None:
        """Remove every temporary output of this block (nothing is moved into place)."""
        for s in reversed(self.staged):
            _remove(s.tmp)
        self.staged.clear()

    def _moves(self, s: _Staged) -> list[tuple[Path, Path]]:
        """(source, destination) renames that put ``s`` in place: the whole temporary path, or for
        a folder that exists already every file in it (files in subfolders first)."""
        if not (s.folder and s.target.is_dir()):
            return [(s.tmp, s.target)]
        files = [p for p in s.tmp.rglob("*") if not p.is_dir()]
        files.sort(key=lambda p: (-len(p.relative_to(s.tmp).parts), str(p)))
        return [(p, s.target / p.relative_to(s.tmp)) for p in files]

    def _commit(self) -> None:
        """Move every output into place, the first one asked for last (so outputs written inside a
        staged folder go before it); on any failure undo the moves already made, so the
        destination is as it was (old files are kept as hard links until the end)."""
        undo: list[tuple[Path, Path | None]] = []  # (created folder or moved-in file, backup of the old file)
        try:
            for s in reversed(self.staged):
                for src, dst in self._moves(s):
                    for folder in reversed([dst.parent, *dst.parent.parents]):
                        if not folder.exists():
                            folder.mkdir()
                            undo.append((folder, None))
                    if dst.is_dir() and not dst.is_symlink():
                        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(dst))
                    backup = None
                    if dst.exists() or dst.is_symlink():
                        backup = dst.with_name(f".{dst.name}.{uuid.uuid4().hex[:8]}.tmp")
                        try:
                            os.link(dst, backup, follow_symlinks=False)  # the old file stays in place
                        except OSError:
                            os.replace(dst, backup)
                    undo.append((dst, backup))
                    os.replace(src, dst)
        except BaseException:
            for path, backup in reversed(undo):
                with contextlib.suppress(OSError):
                    if backup is not None:
                        os.replace(backup, path)
                    elif path.is_dir() and not any(path.iterdir()):
                        path.rmdir()
                    else:
                        _remove(path)
            raise
        finally:
            for _, backup in undo:
                if backup is not None:
                    backup.unlink(missing_ok=True)

    def _display(self, name, stack: list[Outputs]) -> Path:
        """The output a temporary path stands for (``name`` of an OS error), or the last output staged."""
        if not name:
            staged = [s for o in stack for s in o.staged] or [None]
            path = staged[-1].target if staged[-1] else Path(".")
        else:
            path = Path(os.fsdecode(name))
        for _ in range(len(stack) + 1):  # outputs staged inside staged folders: map level by level
            for s in (s for o in reversed(stack) for s in o.staged):
                if path == s.tmp or _under(path, s.tmp):
                    path = s.target / path.relative_to(s.tmp)
                    break
        return path


_active = threading.local()


def staged_path(path: str | os.PathLike) -> Path:
    """Where to write ``path`` now: inside the temporary folder of an open block when that block
    stages the folder ``path`` lies in (it is moved into place with the folder), else ``path``."""
    path = Path(path)
    real = path.resolve()
    for out in reversed(_active.__dict__.get("stack", [])):
        for s in out.staged:
            if s.folder and _under(real, s.target.resolve()):
                return s.tmp / real.relative_to(s.target.resolve())
    return path


def open_outputs() -> list[Outputs]:
    """The all-or-nothing blocks open in the calling thread, outermost first: what a last-resort
    clean-up from another thread must :meth:`Outputs.discard` (see the CLI's stop signals)."""
    return list(_active.__dict__.get("stack", []))


@contextlib.contextmanager
def atomic_outputs() -> Iterator[Outputs]:
    """Write several outputs all-or-nothing: ``with atomic_outputs() as out: write(out.file(p))``.

    On success every output is moved into place; on failure (an exception, Ctrl-C, a signal
    handled as one) every temporary file is removed and existing files are left as they were.
    A block inside another one joins it: its outputs are moved when the outermost block ends.
    OS errors become an :class:`InputError` naming the output and the problem.
    """
    stack: list[Outputs] = _active.__dict__.setdefault("stack", [])
    out = Outputs()
    stack.append(out)
    try:
        yield out
        if len(stack) > 1:  # nested: the outermost block moves everything together
            stack[-2].staged.extend(out.staged)
            out.staged = []
        else:
            out._commit()
    except OSError as e:
        raise output_error(out._display(e.filename, stack), e) from e
    finally:
        out.discard()
        stack.remove(out)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path``.

    A failure (exception, Ctrl-C) removes the temporary file, so a reader never sees a
    half-written output and an older file at ``path`` survives untouched.
    """
    with atomic_outputs() as out:
        yield out.file(path)
