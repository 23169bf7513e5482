"""Differentiable rasterisers: Gaussians and triangle meshes, pure-torch references and CUDA backends."""
