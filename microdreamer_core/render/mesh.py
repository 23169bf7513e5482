"""Differentiable triangle rasterisation with three interchangeable backends.

The functional API mirrors nvdiffrast (``rasterize`` -> ``interpolate`` -> ``texture``) so code
written against it runs on a CPU-only machine through the pure-PyTorch backend and on a GPU
through nvdiffrast, with identical conventions:

* ``pos_clip`` (C, V, 4) are OpenGL clip coordinates: x right, y *up*, visible when
  -w <= x, y, z <= w. Images are stored top row first: row 0 is clip y = +1 (nvdiffrast's
  own row 0 is y = -1; its output is flipped here).
* ``rast`` (C, H, W, 4) holds ``[u, v, z/w, triangle_id + 1]`` and is all zero where no
  triangle was hit. ``u, v`` are perspective-correct barycentric weights of the triangle's
  vertices 0 and 1; vertex 2 gets ``1 - u - v``. This is exactly nvdiffrast's layout, so a
  ``rast`` from either backend works with both ``interpolate`` implementations (and with
  ``nvdiffrast.torch.antialias`` after flipping it back).
* uvs follow OpenGL: ``v = 1`` samples row 0 (the top) of a texture stored top row first.

Both backends differentiate alike (as nvdiffrast without ``antialias``): ``rast[..., :3]`` w.r.t.
``pos_clip`` (interior motion of surfaces; coverage and visibility carry no gradient), and
``interpolate`` / ``texture`` w.r.t. their attributes/texture and the barycentrics/uvs.

Pure-PyTorch backend (``backend="torch"``)
------------------------------------------
:mod:`~microdreamer_core.render.mesh_torch`, which documents its algorithm and timings.

Warp backend (``backend="warp"``)
---------------------------------
:mod:`~microdreamer_core.render.mesh_warp`: the torch backend's rasteriser with its scan
conversion compiled by NVIDIA Warp (CPU or CUDA, no build step); same pixels, same gradients.
Interpolation and texture sampling run in torch.

nvdiffrast backend (``backend="nvdiffrast"``)
---------------------------------------------
CUDA only, under NVIDIA's non-commercial licence (PyPI package ``diffrp-nvdiffrast``), imported
lazily; one ``RasterizeCudaContext`` is cached per device. ``"auto"`` picks it when the tensors
are on CUDA and it works, otherwise the torch backend; on the CPU it picks warp when installed,
otherwise torch (:mod:`~microdreamer_core.render.backends`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from ..scene.cameras import Cameras
from ..scene.mesh import Mesh, vertex_normals
from . import mesh_torch, mesh_warp
from .backends import MeshBackend, load_backend, resolve_mesh_backend

__all__ = ["MeshRenderOutput", "interpolate", "rasterize", "render_mesh", "texture"]


@functools.cache
def _nv_context(index: int) -> object:
    """One cached ``RasterizeCudaContext`` per CUDA device."""
    return load_backend("nvdiffrast").RasterizeCudaContext(device=torch.device("cuda", index))


# ----------------------------------------------------------------------------------------
# Rasterisation
# ----------------------------------------------------------------------------------------
def rasterize(
    pos_clip: Tensor, faces: Tensor, resolution: tuple[int, int] | Sequence[int], backend: MeshBackend = "auto"
) -> Tensor:
    """Rasterise triangles into ``rast`` (C, H, W, 4) = [u, v, z/w, triangle_id + 1], row 0 on top.

    Args:
        pos_clip: (C, V, 4) or (V, 4) OpenGL clip-space vertex positions.
        faces: (F, 3) vertex indices (any integer dtype).
        resolution: (H, W) of the output image.
        backend: "torch", "warp", "nvdiffrast" or "auto" (see module docstring).
    """
    if pos_clip.ndim == 2:
        pos_clip = pos_clip[None]
    if pos_clip.ndim != 3 or pos_clip.shape[-1] != 4:
        raise ValueError(f"pos_clip must be (C, V, 4), got {tuple(pos_clip.shape)}")
    if faces.ndim != 2 or faces.shape[-1] != 3:
        raise ValueError(f"faces must be (F, 3), got {tuple(faces.shape)}")
    height, width = int(resolution[0]), int(resolution[1])
    chosen = resolve_mesh_backend(backend, pos_clip, faces)
    if chosen == "warp":
        return mesh_warp.rasterize(pos_clip, faces.long(), height, width)
    if chosen == "nvdiffrast":
        index = pos_clip.device.index if pos_clip.device.index is not None else torch.cuda.current_device()
        rast, _ = load_backend("nvdiffrast").rasterize(
            _nv_context(index), pos_clip.float().contiguous(), faces.int().contiguous(), (height, width)
        )
        return rast.flip(1)  # nvdiffrast's row 0 is clip y = -1 (bottom)
    return mesh_torch.rasterize(pos_clip, faces.long(), height, width)


# ----------------------------------------------------------------------------------------
# Attribute interpolation and texture sampling
# ----------------------------------------------------------------------------------------
def interpolate(attr: Tensor, rast: Tensor, faces: Tensor, backend: MeshBackend = "auto") -> Tensor:
    """Barycentric interpolation of per-vertex attributes into the image: (C, H, W, D).

    ``attr`` is (V, D) shared by all images or (C, V, D) per image (C = 1 broadcasts).
    Background pixels get 0. Differentiable w.r.t. ``attr`` and ``rast[..., :2]``.
    """
    if rast.ndim != 4 or rast.shape[-1] != 4:
        raise ValueError(f"rast must be (C, H, W, 4), got {tuple(rast.shape)}")
    if attr.ndim not in (2, 3):
        raise ValueError(f"attr must be (V, D) or (C, V, D), got {tuple(attr.shape)}")
    if resolve_mesh_backend(backend, attr, rast, faces) == "nvdiffrast":
        out, _ = load_backend("nvdiffrast").interpolate(
            attr.float().contiguous(), rast.contiguous(), faces.int().contiguous()
        )
        return out  # per-pixel op: works on our flipped (top-row-first) rast as is
    return mesh_torch.interpolate(attr, rast, faces.long())


def texture(
    tex: Tensor, uv: Tensor, wrap: Literal["repeat", "clamp"] = "repeat", backend: MeshBackend = "auto"
) -> Tensor:
    """Bilinear texture lookup: (C, H, W, D).

    ``tex`` is (Ht, Wt, D) or (C, Ht, Wt, D) (C = 1 broadcasts), stored top row first; ``uv``
    (C, H, W, 2) in OpenGL convention, so v = 1 is the top row. Texel centres sit at
    ((j + 0.5) / Wt, 1 - (i + 0.5) / Ht). ``wrap`` "repeat" tiles the texture, "clamp"
    extends the border texels. Differentiable w.r.t. ``tex`` and ``uv``.
    """
    if wrap not in ("repeat", "clamp"):
        raise ValueError(f"wrap must be 'repeat' or 'clamp', got {wrap!r}")
    if tex.ndim == 3:
        tex = tex[None]
    if tex.ndim != 4 or uv.ndim != 4 or uv.shape[-1] != 2:
        raise ValueError(
            f"expected tex (C, Ht, Wt, D) and uv (C, H, W, 2), got {tuple(tex.shape)} and {tuple(uv.shape)}"
        )
    if resolve_mesh_backend(backend, tex, uv) == "nvdiffrast":
        uv_nv = torch.stack([uv[..., 0], 1.0 - uv[..., 1]], dim=-1)  # nvdiffrast: v = 0 is row 0
        return load_backend("nvdiffrast").texture(
            tex.float().contiguous(),
            uv_nv.float().contiguous(),
            filter_mode="linear",
            boundary_mode="wrap" if wrap == "repeat" else "clamp",
        )
    return mesh_torch.texture(tex, uv, wrap)


# ----------------------------------------------------------------------------------------
# Mesh rendering
# ----------------------------------------------------------------------------------------
@dataclass
class MeshRenderOutput:
    """Images from :func:`render_mesh`, all (C, H, W, ·), row 0 on top.

    rgb: colour composited over the background; alpha: 1 where a triangle covers the pixel;
    depth: camera-space distance along the view axis (positive, 0 on background);
    normal: interpolated unit world-space vertex normals (0 on background); rast: raw raster.
    """

    rgb: Tensor
    alpha: Tensor
    depth: Tensor
    normal: Tensor
    rast: Tensor


def render_mesh(
    mesh: Mesh,
    cameras: Cameras,
    background: Sequence[float] | Tensor = (1.0, 1.0, 1.0),
    backend: MeshBackend = "auto",
    texture_activation: Callable[[Tensor], Tensor] | None = None,
) -> MeshRenderOutput:
    """Render ``mesh`` from every camera: colour from the texture (uvs + texture), else vertex
    colours, else grey 0.5. No lighting, no antialiasing. Differentiable w.r.t. texture, vertex
    colours and (through barycentrics, not silhouettes) vertex positions.

    ``texture_activation``: applied to the colour *sampled* from the texture, before compositing
    over the background (textured meshes only; vertex colours are used as they are). With
    ``torch.sigmoid`` the texture holds logits and is activated after bilinear sampling, as the
    MicroDreamer reference does in its texture refinement (see ``texture_refine``).
    """
    device = mesh.device
    cams = cameras.to(device)
    C, H, W = len(cams), cams.height, cams.width
    faces = mesh.faces
    verts_h = torch.cat([mesh.vertices, torch.ones_like(mesh.vertices[:, :1])], dim=-1)  # (V, 4)
    pos_clip = torch.einsum("cij,vj->cvi", cams.full_projection(), verts_h)
    be = resolve_mesh_backend(backend, pos_clip, faces)
    rast = rasterize(pos_clip, faces, (H, W), backend=be)

    # One interpolation pass for everything per-vertex: [depth | normal | uv or colour].
    view_z = torch.einsum("cj,vj->cv", cams.w2c_opengl()[:, 2], verts_h)  # camera looks down -z
    normals = mesh.normals if mesh.normals is not None else vertex_normals(mesh.vertices, faces)
    if mesh.has_texture:
        extra = mesh.uvs
    else:
        extra = mesh.vertex_colors_or_grey()
    shared = torch.cat([normals, extra], dim=-1)  # (V, 3 + k)
    attrs = torch.cat([-view_z[..., None], shared.expand(C, -1, -1)], dim=-1)
    inter = interpolate(attrs, rast, faces, backend=be)

    alpha = (rast[..., 3:4] > 0).to(inter.dtype)
    depth = inter[..., 0:1]
    normal = torch.nn.functional.normalize(inter[..., 1:4], dim=-1) * alpha
    if mesh.has_texture:
        color = texture(mesh.texture, inter[..., 4:6], wrap="repeat", backend=be)
        if texture_activation is not None:
            color = texture_activation(color)
    else:
        color = inter[..., 4:7]
    bg = torch.as_tensor(background, dtype=color.dtype, device=device).view(1, 1, 1, -1)
    rgb = color * alpha + bg * (1.0 - alpha)
    return MeshRenderOutput(rgb=rgb, alpha=alpha, depth=depth, normal=normal, rast=rast)
