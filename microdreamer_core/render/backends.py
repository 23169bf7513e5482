"""Rasteriser backends: the names a config may use (the selection mechanism follows here)."""

from __future__ import annotations

from typing import Literal

__all__ = ["GaussianBackend", "MeshBackend"]

GaussianBackend = Literal["auto", "torch", "gsplat"]
"""Gaussian rasteriser: ``gsplat`` (CUDA), our pure-torch reference, or ``auto`` (gsplat on CUDA when it imports)."""
MeshBackend = Literal["auto", "torch", "nvdiffrast"]
"""Mesh rasteriser: ``nvdiffrast`` (CUDA, non-commercial licence), our pure-torch reference, or ``auto``."""
