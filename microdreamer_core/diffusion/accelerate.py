"""Faster UNet calls at SIR's fixed shapes: ``torch.compile`` or CUDA graphs, opt-in.

SIR makes a few hundred UNet calls (NFEs) with two batch shapes per run: the CFG-doubled batch of
reverse sampling and the unconditional batch of DDIM inversion. At full size on a GPU a call is
overhead-bound (kernel launches, not arithmetic), which is what these modes remove:

* ``"eager"``: the plain call (the default, and the reference the others are tested against);
* ``"compile"``: ``torch.compile`` of the model's UNet call (inductor; ``mode="reduce-overhead"``
  on CUDA, where inductor also replays the call as a CUDA graph). The first call at each shape
  compiles: for the tiny test models on 2 CPU cores 60-85 s per shape with a cold inductor cache,
  ~5 s with a warm one, for ~10% off a CPU NFE (bench/RESULTS.md); it pays off only over many NFEs;
* ``"cuda_graph"``: the call captured once per shape into a ``torch.cuda.CUDAGraph`` (a few eager
  warm-up calls, no compiler), inputs copied into static buffers before each replay. CUDA only.

The timestep goes in as a 0-dim tensor on the device, so one compiled or captured call serves
every timestep. Outputs are cloned out of the static buffers, so a later call never overwrites
a result already returned (which is also what makes sharing one memory pool between the graphs
safe). Install with :func:`accelerate_unet` (or for a block, :func:`accelerated_unet`); the
sampling code is unchanged, it calls :meth:`~.models.MultiViewModel.predict_noise` as before.

What is checked where: on the CPU the compiled call gives the eager outputs within 1e-5 for the
three tiny models, and the static-buffer bookkeeping of the graph runner runs with an eager replay
in place of the graph (tests/diffusion/test_accelerate.py); the capture itself and
``reduce-overhead`` only run on CUDA (the same file's CUDA tests, run by the GPU check).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal, get_args

import torch
from torch import Tensor

from ..errors import InputError
from .models import MultiViewModel

__all__ = ["UNetMode", "UNET_MODES", "accelerate_unet", "accelerated_unet", "CompiledUNet", "GraphedUNet"]

UNetMode = Literal["eager", "compile", "cuda_graph"]
UNET_MODES: tuple[str, ...] = get_args(UNetMode)

UNetCall = Callable[[Tensor, "int | Tensor", dict[str, Tensor], int], Tensor]
"""``model._unet``: (latents, timestep, conditioning inputs, views per sample) -> epsilon."""


def _timestep(t: int, device: torch.device) -> Tensor:
    """``t`` as a 0-dim int64 tensor on ``device``, written by a fill kernel (no host copy)."""
    return torch.full((), t, dtype=torch.int64, device=device)


class CompiledUNet:
    """``torch.compile`` of ``model._unet``, one graph per input shape (``dynamic=False``)."""

    def __init__(self, model: MultiViewModel):
        self.cuda = model.device.type == "cuda"
        self.fn = torch.compile(model._unet, mode="reduce-overhead" if self.cuda else None, dynamic=False)

    def __call__(self, x: Tensor, t: int, inputs: dict[str, Tensor], num_views: int) -> Tensor:
        if self.cuda:  # each call is a new step for inductor's CUDA graphs: their outputs get reused
            torch.compiler.cudagraph_mark_step_begin()
        out = self.fn(x, _timestep(t, x.device), inputs, num_views)
        return out.clone() if self.cuda else out


@dataclass
class _Captured:
    """One shape's static buffers and the call that runs on them."""

    x: Tensor
    t: Tensor
    inputs: dict[str, Tensor]
    run: Callable[[], Tensor]


class GraphedUNet:
    """``model._unet`` captured in a CUDA graph per input shape, replayed on static buffers.

    ``capture=False`` keeps the static buffers and the copies into them but runs the eager call on
    them instead of replaying a graph: how the CPU tests check the bookkeeping.
    """

    warmup_calls = 3  # eager calls on a side stream before capture (cuBLAS / cuDNN set-up)

    def __init__(self, model: MultiViewModel, capture: bool = True):
        if capture and model.device.type != "cuda":
            raise InputError(f"the UNet mode 'cuda_graph' needs a CUDA device (the model is on {model.device})")
        self.fn: UNetCall = model._unet
        self.capture = capture
        self.captured: dict[tuple, _Captured] = {}
        self.pool = None  # one memory pool shared by all graphs: outputs are cloned out after each replay

    def __call__(self, x: Tensor, t: int, inputs: dict[str, Tensor], num_views: int) -> Tensor:
        key = (
            tuple(x.shape),
            x.dtype,
            num_views,
            tuple((k, tuple(v.shape), v.dtype) for k, v in sorted(inputs.items())),
        )
        entry = self.captured.get(key)
        if entry is None:
            entry = self.captured[key] = self._capture(x, inputs, num_views)
        entry.x.copy_(x)
        entry.t.fill_(t)
        for k, v in inputs.items():
            entry.inputs[k].copy_(v)
        return entry.run().clone()

    def _capture(self, x: Tensor, inputs: dict[str, Tensor], num_views: int) -> _Captured:
        """Static buffers for this shape and the call on them (a graph replay on CUDA)."""
        sx = x.clone(memory_format=torch.contiguous_format)
        st = _timestep(0, x.device)
        sin = {k: v.clone(memory_format=torch.contiguous_format) for k, v in inputs.items()}
        fn = self.fn
        if not self.capture:
            return _Captured(sx, st, sin, lambda: fn(sx, st, sin, num_views))
        stream = torch.cuda.Stream(x.device)
        stream.wait_stream(torch.cuda.current_stream(x.device))
        with torch.cuda.stream(stream):
            for _ in range(self.warmup_calls):
                fn(sx, st, sin, num_views)
        torch.cuda.current_stream(x.device).wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self.pool):
            out = fn(sx, st, sin, num_views)
        self.pool = graph.pool()

        def replay() -> Tensor:
            graph.replay()
            return out

        return _Captured(sx, st, sin, replay)


def accelerate_unet(model: MultiViewModel, mode: UNetMode) -> None:
    """Make ``model.predict_noise`` use the ``mode`` UNet call from now on (``"eager"``: the plain
    one). Compiled functions and captured graphs live on the model until the mode changes."""
    if mode not in UNET_MODES:
        raise InputError(f"unknown UNet mode {mode!r}: use one of {', '.join(UNET_MODES)}")
    runners = {"eager": lambda m: None, "compile": CompiledUNet, "cuda_graph": GraphedUNet}
    model.unet_runner = runners[mode](model)


@contextmanager
def accelerated_unet(model: MultiViewModel | None, mode: UNetMode) -> Iterator[None]:
    """:func:`accelerate_unet` for the block, then the model's previous UNet call again (a no-op
    for ``model=None``: runs without a diffusion model)."""
    if model is None:
        yield
        return
    previous = model.unet_runner
    accelerate_unet(model, mode)
    try:
        yield
    finally:
        model.unet_runner = previous
