"""Where and how a run executes: devices, dtypes, host syncs and the host's hooks.

Every long function of the library takes the same two hooks, so a host (the CLI, a ComfyUI node,
a notebook) drives all of them the same way:

* ``progress(done, total)``: called as work completes (a progress bar);
* ``cancel()``: called between steps; it may raise the host's own exception (ComfyUI's
  interrupt) or return True, which stops the run with :class:`~microdreamer_core.errors.Cancelled`
  (see :func:`~microdreamer_core.errors.check_cancel`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from .errors import InputError, shown

__all__ = ["ProgressFn", "StageProgressFn", "CancelFn", "DTYPES", "resolve_device", "sync", "autograd_safe"]

ProgressFn = Callable[[int, int], None]
"""``progress(done, total)``."""
StageProgressFn = Callable[[str, int, int], None]
"""``progress(stage, done, total)`` for multi-stage runs (:func:`~microdreamer_core.pipeline.generate.generate`)."""
CancelFn = Callable[[], "bool | None"]
"""``cancel()``: raise, or return True to stop; falsy to go on."""

DTYPES: dict[str, torch.dtype | None] = {
    "auto": None,
    "fp32": torch.float32,
    "fp16": torch.float16,
    "bf16": torch.bfloat16,
}
"""Precision names the CLI and the nodes offer; ``auto`` lets the loader choose per device."""


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` (CUDA when available) or a torch device name; an unknown name, or CUDA where
    PyTorch sees no GPU, is refused with the fix."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise InputError(f"unknown device '{shown(device)}': use auto, cpu or cuda") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(
            "device cuda, but PyTorch sees no CUDA GPU: use cpu (slow) or auto, or install a CUDA build of PyTorch"
        )
    return dev


def sync(device: torch.device) -> None:
    """Wait for queued GPU work, so wall-clock timings measure it (a no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def autograd_safe(t: Tensor) -> Tensor:
    """``t``, or a copy of it when it was created under inference mode (autograd cannot save those)."""
    return t.clone() if t.is_inference() else t
