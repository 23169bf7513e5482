"""A small textured test object built in code, so demos and tests need no download.

The object is a slightly squashed sphere ("body") with an elongated ellipsoid "nose" sticking
out towards +z, the front (azimuth 0 in the orbit convention). Its texture changes per side so
every view is distinguishable, while staying made of large flat-coloured regions that Gaussian
splatting reconstructs well from 6-8 views:

* front  (around +z): horizontal red / yellow bands,
* right  (around +x): green / dark-green vertical stripes,
* back   (around -z): blue / white checker,
* left   (around -x): purple / orange diagonal stripes,
* nose: magenta with a white tip.

Texture layout: one (T, T) image holding two tiles side by side, the body's on the left
(3/4 of the width) and the nose's on the right. Each tile's uvs are inset by half a texel
so bilinear filtering never reads the neighbouring tile. The body's uv seam sits at the back
(azimuth 180) where it is least visible. The whole object is scaled so its farthest vertex is
at ``radius`` (0.55 by default: well inside the view of cameras at radius 2 with fovy 49.1).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..scene.mesh import Mesh

__all__ = ["make_demo_mesh"]

_COLORS = {
    "red": (0.86, 0.15, 0.12),
    "yellow": (0.98, 0.82, 0.16),
    "green": (0.20, 0.70, 0.25),
    "dark_green": (0.05, 0.35, 0.12),
    "blue": (0.15, 0.30, 0.85),
    "white": (0.95, 0.95, 0.95),
    "purple": (0.50, 0.20, 0.65),
    "orange": (0.98, 0.55, 0.10),
    "magenta": (0.90, 0.15, 0.65),
}


def _uv_sphere(n_lat: int, n_lon: int, radii: tuple[float, float, float]) -> tuple[Tensor, Tensor, Tensor]:
    """Ellipsoid grid: vertices (V, 3), faces (F, 3) counter-clockwise from outside, uvs (V, 2).

    Row i has polar angle pi * i / n_lat from +y (v = 1 at the north pole); column j has
    azimuth 2 pi j / n_lon - pi measured from +z towards +x (u = 0.5 faces +z), with a
    duplicated seam column at the back. Pole triangles that would be degenerate are skipped.
    """
    theta = torch.linspace(0.0, math.pi, n_lat + 1)
    phi = torch.linspace(-math.pi, math.pi, n_lon + 1)
    th, ph = torch.meshgrid(theta, phi, indexing="ij")
    rx, ry, rz = radii
    vertices = torch.stack([rx * th.sin() * ph.sin(), ry * th.cos(), rz * th.sin() * ph.cos()], dim=-1).reshape(-1, 3)
    u = torch.linspace(0.0, 1.0, n_lon + 1).expand(n_lat + 1, -1)
    v = torch.linspace(1.0, 0.0, n_lat + 1)[:, None].expand(-1, n_lon + 1)
    uvs = torch.stack([u, v], dim=-1).reshape(-1, 2)

    i, j = torch.meshgrid(torch.arange(n_lat), torch.arange(n_lon), indexing="ij")
    a = i * (n_lon + 1) + j  # (i, j)
    b = a + (n_lon + 1)  # (i + 1, j)
    c = b + 1  # (i + 1, j + 1)
    d = a + 1  # (i, j + 1)
    first = torch.stack([a, b, c], dim=-1)[i < n_lat - 1]  # degenerate at the south pole
    second = torch.stack([a, c, d], dim=-1)[i > 0]  # degenerate at the north pole
    faces = torch.cat([first, second]).reshape(-1, 3)
    return vertices, faces, uvs


def _tile_uv(uv: Tensor, x0: int, width: int, size: int) -> Tensor:
    """Map tile-local uvs in [0, 1]^2 onto texel centres of columns [x0, x0 + width) of a
    (size, size) texture, so u = 0/1 land on the first/last column centre (no bleeding)."""
    u = (x0 + 0.5 + uv[:, 0] * (width - 1)) / size
    v = 1.0 - (0.5 + (1.0 - uv[:, 1]) * (size - 1)) / size
    return torch.stack([u, v], dim=-1)


def _pick(mask: Tensor, a: str, b: str) -> Tensor:
    """Per-texel colour: ``a`` where mask, else ``b``."""
    ca, cb = torch.tensor(_COLORS[a]), torch.tensor(_COLORS[b])
    return torch.where(mask[..., None], ca, cb)


def _body_texture(height: int, width: int) -> Tensor:
    """(height, width, 3) body tile; texel (i, j) is at tile uv (j / (width-1), 1 - i / (height-1))."""
    u = torch.linspace(0.0, 1.0, width)[None, :].expand(height, -1)
    v = torch.linspace(1.0, 0.0, height)[:, None].expand(-1, width)
    azimuth = u * 360.0 - 180.0  # degrees from +z towards +x, matching the geometry
    polar = (1.0 - v) * 180.0

    front = _pick((polar / 30.0).floor() % 2 == 0, "red", "yellow")
    right = _pick((azimuth / 15.0).floor() % 2 == 0, "green", "dark_green")
    back = _pick(((azimuth / 30.0).floor() + (polar / 36.0).floor()) % 2 == 0, "blue", "white")
    left = _pick(((azimuth + polar) / 25.0).floor() % 2 == 0, "purple", "orange")

    tex = back.clone()
    sector = [(-45.0, 45.0, front), (45.0, 135.0, right), (-135.0, -45.0, left)]
    for lo, hi, img in sector:
        inside = (azimuth >= lo) & (azimuth < hi)
        tex = torch.where(inside[..., None], img, tex)
    return tex


def _nose_texture(height: int, width: int) -> Tensor:
    """(height, width, 3) nose tile: white around the tip (its north pole, pointing to +z)."""
    v = torch.linspace(1.0, 0.0, height)[:, None].expand(-1, width)
    return _pick(v > 0.8, "white", "magenta")


def make_demo_mesh(texture_size: int = 256, radius: float = 0.55) -> Mesh:
    """The textured demo object (about 10k triangles, a ``texture_size`` square texture)."""
    if texture_size < 16:
        raise ValueError("texture_size must be at least 16")
    size = texture_size
    body_w = size - size // 4
    nose_w = size - body_w

    body_v, body_f, body_uv = _uv_sphere(48, 96, (0.42, 0.40, 0.42))

    # Nose: an ellipsoid elongated along its own +y (its "north pole" is the tip), rotated so
    # the tip points to +z and moved to the front, slightly above the equator.
    nose_v, nose_f, nose_uv = _uv_sphere(16, 32, (0.09, 0.17, 0.09))
    rot = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])  # +y -> +z, proper rotation
    nose_v = nose_v @ rot.T + torch.tensor([0.0, 0.06, 0.38])

    vertices = torch.cat([body_v, nose_v])
    faces = torch.cat([body_f, nose_f + len(body_v)])
    uvs = torch.cat([_tile_uv(body_uv, 0, body_w, size), _tile_uv(nose_uv, body_w, nose_w, size)])
    tex = torch.cat([_body_texture(size, body_w), _nose_texture(size, nose_w)], dim=1)

    vertices = vertices * (radius / vertices.norm(dim=-1).max())
    return Mesh(vertices, faces, uvs=uvs, texture=tex).compute_vertex_normals()
