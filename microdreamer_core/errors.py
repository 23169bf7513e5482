"""User-facing errors and safe messages.

Every error a user can cause (bad file, wrong shape, NaN, an output that cannot be written) is
raised as :class:`InputError` with one line that names the problem and the fix, so the CLI and
the ComfyUI nodes can show it as is. Text that comes from the user or from input files goes into
messages through :func:`shown` (no newlines or terminal escapes, bounded length).

"""

from __future__ import annotations

import os
import unicodedata

__all__ = ["MicroDreamerError", "InputError", "Cancelled", "check_cancel", "shown"]


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


# ---------------------------------------------------------------------------------------------
# Messages
# ---------------------------------------------------------------------------------------------
def shown(value, limit: int = 160) -> str:
    """``value`` (a path, a name, text read from a file) made safe for a one-line message: control,
    format and surrogate characters escaped (no newline, no terminal escape code gets through) and
    at most ``limit`` characters (the middle elided, so a path keeps its file name)."""
    text = os.fspath(value) if isinstance(value, os.PathLike) else str(value)
    if len(text) > 2 * limit:  # never escape more than can be shown
        text = text[:limit] + text[-limit:]
    text = "".join(
        ch if unicodedata.category(ch)[0] != "C" else (f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}")
        for ch in text
    )
    if len(text) > limit:
        keep = (limit - 3) // 2
        text = f"{text[:keep]}...{text[-keep:]}"
    return text
