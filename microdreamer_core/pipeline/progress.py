"""Progress of a stage that spends both diffusion calls and optimiser steps, as one count."""

from __future__ import annotations

from ..diffusion.models import MultiViewModel
from ..runtime import ProgressFn

__all__ = ["WorkProgress"]


class WorkProgress:
    """Reports ``progress(done, total)`` with ``done`` = the NFEs ``model`` spent since this was
    made plus the optimiser steps counted by :meth:`step`, capped at ``total``.

    An instance is itself a progress hook: the diffusion samplers call it after every NFE.
    """

    def __init__(self, model: MultiViewModel | None, total: int, progress: ProgressFn | None = None):
        self.model, self.total, self.progress = model, total, progress
        self.nfe0 = 0 if model is None else model.nfe
        self.steps = 0

    @property
    def nfe(self) -> int:
        """NFEs spent since this was made."""
        return 0 if self.model is None else self.model.nfe - self.nfe0

    def __call__(self, *_: object) -> None:
        if self.progress is not None:
            self.progress(min(self.steps + self.nfe, self.total), self.total)

    def step(self, *_: object) -> None:
        """One optimiser step done (any arguments are ignored: usable as an ``on_step`` hook)."""
        self.steps += 1
        self()
