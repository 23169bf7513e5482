"""Rasteriser backends: the names a config may use and the one rule that picks the one that runs.

Both rasterisers have a pure-PyTorch reference (``"torch"``, any device) and an optional CUDA
package: gsplat for Gaussians, nvdiffrast for meshes. One policy serves both families:

* ``"torch"`` always runs the reference;
* ``"auto"`` runs the CUDA package when every tensor is on CUDA and the package works, else torch;
* naming the CUDA package fails with a one-line ``RuntimeError`` naming the fix when the tensors
  are not on CUDA or the package is missing or broken; an unknown name is a ``ValueError``.

Meshes have a third backend, ``"warp"`` (:mod:`~.mesh_warp`: our torch rasteriser's algorithm
compiled by NVIDIA Warp, ``pip install microdreamer[fast]``; prebuilt CPU and CUDA wheels, no
build step, so it works where nvdiffrast's plugin fails to build). It draws the same pixels as
the torch reference and differentiates identically (checked on the CPU), so on the CPU ``"auto"``
takes it whenever it is installed. On CUDA ``"auto"`` stays nvdiffrast, else torch, until Warp's
CUDA path has been checked against the torch reference on a GPU (no GPU was lent to this project
since it was written: ``backend="warp"`` runs it on CUDA when named). Naming it fails like the
CUDA packages when it is missing, or when the tensors are on CUDA and Warp sees no CUDA device
(its CUDA 13 wheels need an R580+ driver).

Measured on this project's 2-core CPU, one torch thread, best of 5, ranges over 3 runs while
other jobs shared the machine: the Duck (12.1k triangles), 8 orbit views, rasterisation alone
torch -> warp 0.030-0.035 -> 0.023-0.026 s at 128 px, 0.07-0.13 -> 0.039-0.044 s at 256 px,
0.24-0.43 -> 0.09-0.13 s at 512 px; a 48k-face uv layout at 1024^2 (the bake's ``uv_rasterize``)
0.28-0.31 -> 0.17-0.18 s. A full ``render_mesh`` (interpolation and texture sampling stay in
torch) gains less (0.04-0.07 -> 0.036 s, 0.14-0.22 -> 0.08-0.10 s, 0.41-1.0 -> 0.38-0.64 s), and
with its backward pass about nothing. Warp's kernel runs on one CPU thread; its first use on a
machine compiles it (2-3 s, then cached in ``~/.cache/warp``). Not yet measured on CUDA.

The packages are imported lazily (the core imports without them) and probed at most once per
process; a package that is installed but fails to load is reported once with a ``RuntimeWarning``.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import sys
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
MeshBackend = Literal["auto", "torch", "warp", "nvdiffrast"]
"""Mesh rasteriser: ``nvdiffrast`` (CUDA, non-commercial licence), ``warp`` (CPU or CUDA, Apache-2.0),
our pure-torch reference, or ``auto``."""


@dataclass(frozen=True)
class _CudaPackage:
    """An optional CUDA rasteriser: what to import, how to install it, how to check that it runs."""

    module: str
    install: str
    smoke_test: Callable[[ModuleType], object] | None = None


def _init_warp(wp: ModuleType) -> object:
    """Warp loads its native library on ``init``; warnings only, so it prints no banner or compile log."""
    wp.config.log_level = wp.LOG_WARNING
    return wp.init()


def _build_nvdiffrast_plugin(dr: ModuleType) -> object:
    """nvdiffrast JIT-builds its CUDA plugin on first use: build it now, so a failure means fallback.

    nvdiffrast loads the plugin through torch (``cpp_extension.load`` or ``_import_module_from_library``)
    and then imports it by name, which finds it only in ``sys.modules``. A pybind11 3 extension (multi-phase
    init; torch 2.14's headers are pybind11 3.1) loaded from a path is not put there, so the name lookup
    raised ``ModuleNotFoundError: nvdiffrast_plugin_...`` (the H100 run of 2026-11-24; reproduced on the
    CPU with a one-function extension). While building, the loaded module is registered under its name.
    """
    import torch.utils.cpp_extension as cpp_extension

    load_from_path = cpp_extension._import_module_from_library

    def load_and_register(name: str, path: str, is_python_module: bool) -> object:
        module = load_from_path(name, path, is_python_module)
        if is_python_module:
            sys.modules.setdefault(name, module)
        return module

    cpp_extension._import_module_from_library = load_and_register
    try:
        return dr.RasterizeCudaContext(device=torch.device("cuda", torch.cuda.current_device()))
    finally:
        cpp_extension._import_module_from_library = load_from_path


_WARP_INSTALL = "pip install warp-lang==1.19.0"

_PACKAGES = {
    "gsplat": _CudaPackage("gsplat", "pip install gsplat"),
    "warp": _CudaPackage("warp", _WARP_INSTALL, _init_warp),
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


def load_backend(name: Literal["gsplat", "nvdiffrast", "warp"]) -> ModuleType:
    """The imported package of backend ``name`` (``nvdiffrast.torch`` for nvdiffrast, ``warp`` initialised).

    Raises ``RuntimeError`` naming the install command when it is missing or broken.
    """
    module, error = _probe(name)
    if module is None:
        raise RuntimeError(
            f"backend='{name}' requested but {_PACKAGES[name].module} could not be loaded ({_one_line(error)}); "
            f"install it with `{_PACKAGES[name].install}`{'' if name == 'warp' else ' on a CUDA machine'}, "
            "or use backend='torch'"
        ) from error
    return module


def _resolve(backend: str, cuda_name: str, tensors: tuple[Tensor, ...], also: tuple[str, ...] = ()) -> str:
    """The shared policy (module docstring) for a family whose CUDA backend is ``cuda_name``
    (``also``: the family's other names, handled by the caller)."""
    if backend not in ("auto", "torch", *also, cuda_name):
        names = ", ".join(f"'{n}'" for n in ("auto", "torch", *also))
        raise ValueError(f"unknown rasteriser backend {backend!r}; use {names} or '{cuda_name}'")
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


def resolve_mesh_backend(backend: MeshBackend, *tensors: Tensor) -> Literal["torch", "warp", "nvdiffrast"]:
    """The mesh rasteriser that will run for ``backend`` on ``tensors`` (policy: module docstring)."""
    if backend == "warp":
        load_backend("warp")
        if any(t.is_cuda for t in tensors) and not _warp_has_cuda():
            raise RuntimeError(
                "backend='warp' got CUDA tensors but warp sees no CUDA device (its wheels need an R580+ driver); "
                "update the NVIDIA driver, or use backend='torch'"
            )
        return "warp"
    if backend != "auto":
        return _resolve(backend, "nvdiffrast", tensors, also=("warp",))
    on_cuda = all(t.is_cuda for t in tensors)
    if on_cuda and _probe("nvdiffrast")[0] is not None:
        return "nvdiffrast"
    if not any(t.is_cuda for t in tensors) and _probe("warp")[0] is not None:
        return "warp"  # CPU only until Warp's CUDA path is checked on a GPU (module docstring)
    return "torch"


@functools.cache
def _warp_has_cuda() -> bool:
    return bool(load_backend("warp").is_cuda_available())
