"""ComfyUI adapters for microdreamer_core (V3 node API). Only this package imports ComfyUI."""

from __future__ import annotations

from .conditioning import MicroDreamerCondition
from .core_mesh import MicroDreamerComfyMeshToMesh, MicroDreamerMeshToComfyMesh
from .diffusion import (
    MicroDreamerHybridForward,
    MicroDreamerMultiViewModelLoader,
    MicroDreamerMultiViewSampler,
    register_models_folder,
)
from .meshing import MicroDreamerExtractMesh, MicroDreamerRefineTexture
from .output import MicroDreamerSaveGaussians, MicroDreamerSaveGLB
from .preview import MicroDreamerTurntable
from .reconstruction import MicroDreamerSIRReconstruct3DGS
from .splat import SPLAT_NODES, splat_available
from .views import MicroDreamerLoadPosedViews, MicroDreamerOrbitCameras

NODES = [
    MicroDreamerLoadPosedViews,
    MicroDreamerOrbitCameras,
    MicroDreamerMultiViewModelLoader,
    MicroDreamerMultiViewSampler,
    MicroDreamerHybridForward,
    MicroDreamerCondition,
    MicroDreamerSIRReconstruct3DGS,
    MicroDreamerSaveGaussians,
    MicroDreamerExtractMesh,
    MicroDreamerRefineTexture,
    MicroDreamerSaveGLB,
    MicroDreamerTurntable,
    MicroDreamerMeshToComfyMesh,
    MicroDreamerComfyMeshToMesh,
]
"""Every node class of the pack, in menu order."""

if splat_available():  # newer ComfyUI: conversions to and from the core SPLAT type
    NODES += SPLAT_NODES

register_models_folder()

__all__ = ["NODES"] + [n.__name__ for n in NODES]
