"""MicroDreamer core: cameras, 3D Gaussians, rendering and score-based iterative reconstruction.

A pure PyTorch library (no ComfyUI import). CUDA backends (gsplat, nvdiffrast) are imported
lazily when used; on CPU our own pure-torch rasterisers with the same interfaces are used.
"""

__version__ = "0.1.0"
