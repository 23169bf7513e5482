"""Socket types the MicroDreamer nodes pass between each other (plain Python objects on links)."""

from __future__ import annotations

from comfy_api.latest import io

MDCameras = io.Custom("MD_CAMERAS")
"""A ``microdreamer_core.scene.cameras.Cameras`` batch: N posed pinhole cameras sharing one image size."""

MDGaussians = io.Custom("MD_GAUSSIANS")
"""A ``microdreamer_core.scene.gaussians.Gaussians`` set of 3D Gaussians."""

MDMesh = io.Custom("MD_MESH")
"""A ``microdreamer_core.scene.mesh.Mesh``: triangles with uvs + texture or vertex colours, and normals."""

MDMultiViewModel = io.Custom("MD_MV_MODEL")
"""A ``nodes._vram.ManagedModel``: a ``microdreamer_core.diffusion.models.MultiViewModel`` (MVDream,
ImageDream or Stable Zero123 with its VAE and encoders) in ComfyUI's model management; nodes get the
model on ComfyUI's device from ``_vram.on_device``."""

MDCondition = io.Custom("MD_CONDITION")
"""A ``microdreamer_core.diffusion.models.Condition``: prompt, negative prompt and the pre-processed input
image (object re-centred on a 256 canvas, RGBA) that the multi-view models condition on."""
