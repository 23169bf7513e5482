"""Rasteriser backends: the names a config may use and the one rule that picks the one that runs.

Both rasterisers have a pure-PyTorch reference (``"torch"``, any device) and an optional CUDA
package: gsplat for Gaussians, nvdiffrast for meshes. One policy serves both families:

* ``"torch"`` always runs the reference;
* ``"auto"`` runs the CUDA package when every tensor is on CUDA and the package works, else torch;
* naming the CUDA package fails with a one-line ``RuntimeError`` naming the fix when the tensors
  are not on CUDA or the package is missing or broken; an unknown name is a ``ValueError``.

The packages are imported lazily (the core imports without them) and probed at most once per
process; a package that is installed but fails to load is reported once with a ``RuntimeWarning``.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Literal

import torch
from torch import Tensor

__all__ = ["GaussianBackend", "MeshBackend", "load_backend", "resolve_gaussian_backend", "resolve_mesh_backend"]

GaussianBackend = Literal["auto", "torch", "gsplat"]
"""Gaussian rasteriser: ``gsplat`` (CUDA), our pure-torch reference, or ``auto`` (gsplat on CUDA when it imports)."""
MeshBackend = Literal["auto", "torch", "nvdiffrast"]
"""Mesh rasteriser: ``nvdiffrast`` (CUDA, non-commercial licence), our pure-torch reference, or ``auto``."""


@dataclass(frozen=True)
class _CudaPackage:
    """An optional CUDA rasteriser: what to import, how to install it, how to check that it runs."""

    module: str
    install: str
    smoke_test: Callable[[ModuleType], object] | None = None


def _build_nvdiffrast_plugin(dr: ModuleType) -> object:
    """nvdiffrast JIT-builds its CUDA plugin on first use: build it now, so a failure means fallback."""
    return dr.RasterizeCudaContext(device=torch.device("cuda", torch.cuda.current_device()))


_PACKAGES = {
    "gsplat": _CudaPackage("gsplat", "pip install gsplat"),
    "nvdiffrast": _CudaPackage(
        "nvdiffrast.torch", "pip install diffrp-nvdiffrast (NVIDIA's non-commercial licence)", _build_nvdiffrast_plugin
    ),
}


@functools.cache
def _probe(name: str) -> tuple[ModuleType | None, Exception | None]:
    """Import the CUDA package ``name`` once: ``(module, None)``, or ``(None, why it is unusable)``."""
    package = _PACKAGES[name]
    try:
        module = importlib.import_module(package.module)
        if package.smoke_test is not None:
            package.smoke_test(module)
    except Exception as exc:  # ImportError, or a failing CUDA extension build / load
        if importlib.util.find_spec(package.module.split(".")[0]) is not None:
            warnings.warn(
                f"{name} is installed but unusable ({_one_line(exc)}); backend='auto' uses the "
                "built-in torch rasteriser instead",
                RuntimeWarning,
                stacklevel=2,
            )
        return None, exc
    return module, None


def _one_line(exc: Exception) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def load_backend(name: Literal["gsplat", "nvdiffrast"]) -> ModuleType:
    """The imported CUDA package of backend ``name`` (``nvdiffrast.torch`` for nvdiffrast).

    Raises ``RuntimeError`` naming the install command when it is missing or broken.
    """
    module, error = _probe(name)
    if module is None:
        raise RuntimeError(
            f"backend='{name}' requested but {_PACKAGES[name].module} could not be loaded ({_one_line(error)}); "
            f"install it with `{_PACKAGES[name].install}` on a CUDA machine, or use backend='torch'"
        ) from error
    return module


def _resolve(backend: str, cuda_name: str, tensors: tuple[Tensor, ...]) -> str:
    """The shared policy (module docstring) for a family whose CUDA backend is ``cuda_name``."""
    if backend not in ("auto", "torch", cuda_name):
        raise ValueError(f"unknown rasteriser backend {backend!r}; use 'auto', 'torch' or '{cuda_name}'")
    if backend == "torch":
        return "torch"
    on_cuda = all(t.is_cuda for t in tensors)
    if backend == "auto":
        return cuda_name if on_cuda and _probe(cuda_name)[0] is not None else "torch"
    if not on_cuda:
        where = (
            "CUDA is not available on this machine" if not torch.cuda.is_available() else "the tensors are not on CUDA"
        )
        raise RuntimeError(
            f"backend='{cuda_name}' needs CUDA tensors (it only has CUDA kernels), but {where}; move the inputs to a "
            f"CUDA device (.to('cuda')) or use backend='torch' (backend='auto' picks {cuda_name} on CUDA)"
        )
    load_backend(cuda_name)
    return cuda_name


def resolve_gaussian_backend(backend: GaussianBackend, *tensors: Tensor) -> Literal["torch", "gsplat"]:
    """The Gaussian rasteriser that will run for ``backend`` on ``tensors`` (policy: module docstring)."""
    return _resolve(backend, "gsplat", tensors)


def resolve_mesh_backend(backend: MeshBackend, *tensors: Tensor) -> Literal["torch", "nvdiffrast"]:
    """The mesh rasteriser that will run for ``backend`` on ``tensors`` (policy: module docstring)."""
    return _resolve(backend, "nvdiffrast", tensors)
