"""Model weights into modules: reading checkpoint files, building modules without weights and
loading tensors into them strictly.

Every component a loader builds is built without weights first (parameters on the ``meta``
device: diffusers' ``low_cpu_mem_usage`` path, which needs ``accelerate``, transformers' own, and
:func:`empty_weights` for what the library builds itself) and then takes the file's tensors:
no full-size module is allocated or randomly initialised only to be overwritten.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import InputError

__all__ = ["default_dtype", "read_state_dict", "empty_weights", "load_strict", "transformers_kwargs", "load_component"]


def default_dtype(device: torch.device | str) -> torch.dtype:
    """fp16 on CUDA (bf16 where fp16 is unsupported is not a case on CUDA GPUs), fp32 elsewhere."""
    return torch.float16 if torch.device(device).type == "cuda" else torch.float32


def read_state_dict(path: str | os.PathLike) -> dict[str, Tensor]:
    """A checkpoint's tensors (safetensors or a torch pickle, unwrapping ``state_dict``), with a
    clear error for a truncated or corrupt file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"model file {path} does not exist")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            sd = load_file(str(path))
        else:
            sd = _torch_load(path)
    except Exception as exc:  # noqa: BLE001 - any failure means the file is unusable
        raise InputError(
            f"could not read {path.name} ({type(exc).__name__}: {str(exc)[:160]}): the file is truncated, corrupt or "
            "not a model checkpoint; download it again"
        ) from exc
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict) or not all(isinstance(v, Tensor) for v in sd.values()):
        raise InputError(f"{path.name} does not hold a state dict of tensors: it is not a model checkpoint")
    return sd


def _lightning_globals() -> list:
    """What PyTorch Lightning training checkpoints (the authors' ``.ckpt`` files) pickle beside the
    weights that a weights-only load refuses by default: the ModelCheckpoint callback's class (a
    dictionary key only: a stand-in of the same name, without behaviour) and the NumPy scalars and
    dtypes of its state (pickled under ``numpy.core`` by NumPy 1, ``numpy._core`` by NumPy 2; bytes
    through ``_codecs.encode``). ComfyUI allows the same few to read these files safely."""
    import codecs

    import numpy as np

    checkpoint = type("ModelCheckpoint", (), {"__module__": "pytorch_lightning.callbacks.model_checkpoint"})
    scalar = np.float64(0).__reduce__()[0]  # the function NumPy rebuilds pickled scalars with
    allowed: list = [checkpoint, np.dtype, codecs.encode]
    allowed += [(scalar, f"{module}.scalar") for module in ("numpy.core.multiarray", "numpy._core.multiarray")]
    dtypes = getattr(np, "dtypes", None)  # NumPy >= 1.25 pickles dtypes by their class
    allowed += [getattr(dtypes, name) for name in ("Float64DType", "Float32DType", "Int64DType") if dtypes]
    return allowed


def _torch_load(path: Path) -> Any:
    """A torch pickle memory-mapped (tensors are read when used: the parts of a checkpoint a
    model does not take, such as EMA copies, never reach memory), or read whole where the file
    predates the zip format that mapping needs. Weights only, with the few extra types a
    Lightning training checkpoint holds (:func:`_lightning_globals`)."""
    with torch.serialization.safe_globals(_lightning_globals()):
        try:
            return torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError:
            return torch.load(str(path), map_location="cpu", weights_only=True)


def _has_accelerate() -> bool:
    return importlib.util.find_spec("accelerate") is not None


@contextlib.contextmanager
def empty_weights() -> Iterator[None]:
    """Build modules with their parameters on the ``meta`` device: no memory, no random
    initialisation; buffers (position ids...) stay real. Load into them with
    ``load_strict(..., assign=True)``. Without ``accelerate`` this is a plain build (slower, same
    result)."""
    if not _has_accelerate():
        yield
        return
    from accelerate import init_empty_weights

    with init_empty_weights(include_buffers=False):
        yield


def transformers_kwargs(dtype: torch.dtype) -> dict[str, Any]:
    """``from_pretrained`` arguments that load a transformers model straight into ``dtype`` on
    meta-initialised modules (transformers 5 always does; 4.x needs ``low_cpu_mem_usage`` and
    accelerate, and calls the dtype argument ``torch_dtype`` before 4.56)."""
    import transformers

    version = tuple(int(p) for p in transformers.__version__.split(".")[:2] if p.isdigit())
    kwargs: dict[str, Any] = {"dtype" if version >= (4, 56) else "torch_dtype": dtype}
    if version < (5,) and _has_accelerate():
        kwargs["low_cpu_mem_usage"] = True
    return kwargs


def load_component(name: str, fn, *args, **kwargs):
    """Run a ``from_pretrained`` and turn its failure into one user-facing line."""
    try:
        return fn(*args, **kwargs)
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise InputError(
            f"could not load the {name} ({type(exc).__name__}: {str(exc)[:200]}): "
            "the folder is incomplete or corrupt; download it again"
        ) from exc


def load_strict(module: nn.Module, sd: dict[str, Tensor], what: str, assign: bool = False) -> None:
    """Load ``sd`` into ``module``, refusing missing/unexpected keys and non-finite values.
    ``assign``: the tensors become the parameters (for modules built under :func:`empty_weights`,
    whose parameters are on ``meta``; they keep the file's dtype until the model is moved)."""
    if assign:
        sd = {k: v if v.is_contiguous() else v.contiguous() for k, v in sd.items()}
    missing, unexpected = module.load_state_dict(sd, strict=False, assign=assign)
    if missing or unexpected:
        raise InputError(
            f"the {what} weights do not match the architecture (missing {len(missing)} e.g. {missing[:2]}, unexpected "
            f"{len(unexpected)} e.g. {unexpected[:2]}): the file is of another model kind"
        )
    for k, v in sd.items():
        if not _all_finite(v):
            raise InputError(
                f"the {what} weight {k} contains NaN or infinite values: the file is corrupt; download it again"
            )


def _all_finite(v: Tensor) -> bool:
    """Whether ``v`` has no NaN/inf. A NaN or inf anywhere makes the sum NaN or inf, so a finite
    sum settles it in one pass without temporaries (``isfinite`` builds several full-size ones:
    seconds per GB); a non-finite sum (or an overflowing one) gets the element-wise check."""
    if not v.is_floating_point():
        return True
    return bool(torch.isfinite(v.sum())) or bool(torch.isfinite(v).all())
