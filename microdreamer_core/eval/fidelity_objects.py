"""Test objects for the mesh stage's fidelity, built in code: each one exposes one way a mesh
extracted from 3D Gaussians can lose what the Gaussians show (issue 15).

* ``chair``: a seat on four thin square legs (about 1.6% of the object's size, under 2 px wide
  at 128 px) and a back panel: thin parts that must survive the density threshold.
* ``handle``: a box bag with a carrying handle, a thin tube bent in a half circle above its top
  (as thin as the chair's legs: a 2 px tube survived the mesh stage in the first measurement).
* ``white_cylinder``: a near-white cylinder (the colour of the background the views are shown
  on) with one blue band, so PSNR still measures something: light surfaces must not inflate.
* ``print_panel``: a standing panel whose front carries fine black-on-white "print" (lines of
  text-like words, a checker, stripes) with features of about 3 px at 128 px: the baked
  texture must stay as sharp as the Gaussians' renders.

Conventions as :mod:`.demo_object`: y-up, the front faces +z (azimuth 0), faces counter-clockwise
seen from outside, one texture atlas (each part's tile side by side, uvs at texel centres so
bilinear filtering never reads a neighbouring tile). Only visible surfaces are modelled (a leg
has no top face where it meets the seat, the handle's tube ends are open on the bag's top), so
area-uniform samples of the mesh are samples of the visible surface, which the Chamfer distances
of :mod:`.fidelity` need. Every object is centred on its bounding box and scaled so its farthest
vertex is at :data:`OBJECT_RADIUS` (the Duck's framing).

Each builder returns a :class:`FidelityObject`: the mesh, its parts (name -> face indices) and
the names of the thin parts that a faithful mesh must keep.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from ..scene.mesh import Mesh, face_areas, normalize_to_unit_sphere
from .protocol import DUCK_RADIUS

__all__ = ["OBJECT_RADIUS", "FidelityObject", "FIDELITY_OBJECTS", "make_fidelity_object"]

OBJECT_RADIUS = DUCK_RADIUS
"""Radius every fidelity object is normalised to (its farthest vertex from the origin)."""


@dataclass
class FidelityObject:
    """A textured test object and the parts a faithful mesh of it must keep.

    Attributes:
        name: its key in :data:`FIDELITY_OBJECTS`.
        mesh: the textured mesh, normalised to ``radius``.
        parts: part name -> (F_part,) face indices into ``mesh.faces`` (every face in one part).
        thin_parts: the parts whose presence :func:`~.fidelity.evaluate_mesh_fidelity` checks.
        radius: the normalisation radius (distances are reported as fractions of it).
        description: one line: what the object tests.
    """

    name: str
    mesh: Mesh
    parts: dict[str, Tensor]
    thin_parts: tuple[str, ...]
    radius: float
    description: str


# ----------------------------------------------------------------------------------------
# Geometry: parametric patches and the parts built from them
# ----------------------------------------------------------------------------------------
@dataclass
class _Patch:
    """One surface patch: vertices, faces, tile-local uvs in [0, 1]^2 and the tile they index."""

    vertices: Tensor
    faces: Tensor
    uvs: Tensor
    tile: Tensor  # (h, w, 3)


def _grid(fn: Callable[[Tensor, Tensor], Tensor], nu: int, nv: int, tile: Tensor, uv_fn=None) -> _Patch:
    """Patch of the parametric surface ``fn(u, v)`` (u, v in [0, 1]) on an (nu, nv) grid.

    Faces wind so that the normal is d/du x d/dv; zero-area triangles (at poles) are dropped.
    The uvs are (u, v) unless ``uv_fn(u, v)`` maps them.
    """
    v, u = torch.meshgrid(torch.linspace(0, 1, nv + 1), torch.linspace(0, 1, nu + 1), indexing="ij")
    u, v = u.reshape(-1), v.reshape(-1)
    verts = fn(u, v)
    i, j = torch.meshgrid(torch.arange(nv), torch.arange(nu), indexing="ij")
    a = (i * (nu + 1) + j).reshape(-1)
    b, c, d = a + 1, a + nu + 2, a + nu + 1  # (i, j+1), (i+1, j+1), (i+1, j)
    faces = torch.cat([torch.stack([a, b, c], -1), torch.stack([a, c, d], -1)])
    faces = faces[face_areas(verts, faces) > 1e-12]
    uvs = torch.stack([u, v], -1) if uv_fn is None else uv_fn(u, v)
    return _Patch(verts, faces, uvs, tile)


def _plane(origin, du, dv, tile: Tensor, step: float = 0.1) -> _Patch:
    """The parallelogram origin + u du + v dv, its normal du x dv, split into cells of at most
    ``step`` per side (no long slivers: surface sampling and distances stay well conditioned)."""
    o, a, b = (torch.tensor(x, dtype=torch.float32) for x in (origin, du, dv))
    nu, nv = (max(1, math.ceil(float(t.norm()) / step - 1e-6)) for t in (a, b))
    return _grid(lambda u, v: o + u[:, None] * a + v[:, None] * b, nu, nv, tile)


_BOX_FACES = ("front", "back", "right", "left", "top", "bottom")


def _box(lo, hi, tiles: dict[str, Tensor] | Tensor, skip: tuple[str, ...] = ()) -> list[_Patch]:
    """Axis-aligned box from corner ``lo`` to ``hi``, one patch per face (front = +z) except
    ``skip``; ``tiles`` is one tile or a tile per face name. Each face shows its whole tile
    upright: seen from outside, u runs to the right and v up (top/bottom: v towards the back/front)."""
    (x0, y0, z0), (x1, y1, z1) = lo, hi
    w, h, d = x1 - x0, y1 - y0, z1 - z0
    spec = {
        "front": ((x0, y0, z1), (w, 0, 0), (0, h, 0)),
        "back": ((x1, y0, z0), (-w, 0, 0), (0, h, 0)),
        "right": ((x1, y0, z1), (0, 0, -d), (0, h, 0)),
        "left": ((x0, y0, z0), (0, 0, d), (0, h, 0)),
        "top": ((x0, y1, z1), (w, 0, 0), (0, 0, -d)),
        "bottom": ((x0, y0, z0), (w, 0, 0), (0, 0, d)),
    }
    patches = []
    for name in _BOX_FACES:
        if name not in skip:
            tile = tiles[name] if isinstance(tiles, dict) else tiles
            patches.append(_plane(*spec[name], tile))
    return patches


def _cylinder(radius: float, y0: float, y1: float, side: Tensor, caps: Tensor, segments: int = 64) -> list[_Patch]:
    """Cylinder about the y axis: side (u = azimuth from -180 degrees, the seam at the back; v up)
    and both caps (discs mapped onto their tile)."""

    def wall(u, v):
        phi = (u * 2 - 1) * math.pi
        return torch.stack([radius * phi.sin(), y0 + v * (y1 - y0), radius * phi.cos()], -1)

    def disc(y: float, outward_up: bool):
        def fn(u, v):
            phi = (u * 2 - 1) * math.pi
            rho = radius * ((1 - v) if outward_up else v)  # rho from the rim inwards: normal +y
            return torch.stack([rho * phi.sin(), torch.full_like(u, y), rho * phi.cos()], -1)

        def uv(u, v):
            phi = (u * 2 - 1) * math.pi
            rho = 0.5 * ((1 - v) if outward_up else v)
            return torch.stack([0.5 + rho * phi.sin(), 0.5 + rho * phi.cos()], -1)

        return _grid(fn, segments, max(1, math.ceil(radius / 0.1)), caps, uv)

    rows = max(1, math.ceil((y1 - y0) / 0.1))  # no long slivers (see _plane)
    return [_grid(wall, segments, rows, side), disc(y1, True), disc(y0, False)]


def _arc_tube(
    arc_radius: float, tube_radius: float, centre, tile: Tensor, segments: int = 48, sides: int = 12
) -> _Patch:
    """Open tube of ``tube_radius`` around the half circle of ``arc_radius`` in the x-y plane above
    ``centre`` (angles 0..180 degrees: both ends point straight down onto the plane y = centre y)."""
    c = torch.tensor(centre, dtype=torch.float32)

    def fn(u, v):
        t, phi = u * math.pi, v * 2 * math.pi
        radial = torch.stack([t.cos(), t.sin(), torch.zeros_like(t)], -1)
        z = torch.tensor([0.0, 0.0, 1.0])
        return c + arc_radius * radial + tube_radius * (phi.cos()[:, None] * radial + phi.sin()[:, None] * z)

    return _grid(fn, segments, sides, tile)  # d/dt x d/dphi is the outward normal


# ----------------------------------------------------------------------------------------
# Textures
# ----------------------------------------------------------------------------------------
def _solid(rgb) -> Tensor:
    return torch.tensor(rgb, dtype=torch.float32).expand(4, 4, 3).clone()


def _two_tone(size: int, mask: Tensor, a, b) -> Tensor:
    """(size, size, 3): colour ``a`` where ``mask`` (size, size), else ``b``."""
    return torch.where(mask[..., None], torch.tensor(a), torch.tensor(b)).float()


def _coords(size: int) -> tuple[Tensor, Tensor]:
    """Tile coordinates (x to the right, y up) in [0, 1) of each texel of a (size, size) tile."""
    y, x = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    return (x.float() + 0.5) / size, 1 - (y.float() + 0.5) / size


def _print_tile(cells: int = 24, texels_per_cell: int = 16, seed: int = 0) -> Tensor:
    """Black "print" on white paper on a ``cells`` x ``cells`` grid (one cell ~3 px at 128 px):
    a margin cell, 7 lines of text-like words (runs of 1-4 ink cells, glyphs split by a thin gap)
    with a blank cell between lines, then a checker of single cells (left) beside vertical
    one-cell stripes (right), and a red underline under the title line."""
    gen = torch.Generator().manual_seed(seed)
    ink = torch.zeros(cells, cells, dtype=torch.bool)
    red = torch.zeros(cells, cells, dtype=torch.bool)
    for line in range(7):
        row = 1 + 2 * line
        col = 1
        while col < cells - 1:
            word = int(torch.randint(1, 5, (), generator=gen))
            end = min(col + word, cells - 1)
            ink[row, col:end] = True
            col = end + 1
    red[2, 1 : cells - 1] = True  # underline of the title line (row 1)
    for r in range(16, cells - 1):
        for c in range(1, cells - 1):
            if c < cells // 2:
                ink[r, c] = (r + c) % 2 == 0
            else:
                ink[r, c] = c % 2 == 0
    t = texels_per_cell
    big_ink = ink.repeat_interleave(t, 0).repeat_interleave(t, 1)
    big_red = red.repeat_interleave(t, 0).repeat_interleave(t, 1)
    # text glyphs: a one-quarter-cell gap every cell inside the text lines, so words read as letters
    glyph_gap = torch.zeros(cells * t, cells * t, dtype=torch.bool)
    glyph_gap[: 15 * t, :] = (torch.arange(cells * t) % t >= t - t // 4)[None, :]
    big_ink &= ~glyph_gap
    paper = torch.tensor([0.96, 0.95, 0.92])
    tile = torch.where(big_ink[..., None], torch.tensor([0.05, 0.05, 0.06]), paper)
    return torch.where(big_red[..., None], torch.tensor([0.80, 0.10, 0.10]), tile)


# ----------------------------------------------------------------------------------------
# Assembly
# ----------------------------------------------------------------------------------------
def _assemble(parts: dict[str, list[_Patch]], radius: float) -> tuple[Mesh, dict[str, Tensor]]:
    """One mesh from named lists of patches: tiles packed side by side into one atlas (the same
    tile object is stored once), the whole normalised to ``radius``."""
    tiles: dict[int, tuple[int, Tensor]] = {}
    x = 0
    for patches in parts.values():
        for p in patches:
            if id(p.tile) not in tiles:
                tiles[id(p.tile)] = (x, p.tile)
                x += p.tile.shape[1]
    width, height = x, max(t.shape[0] for _, t in tiles.values())
    atlas = torch.ones(height, width, 3)
    for x0, t in tiles.values():
        atlas[: t.shape[0], x0 : x0 + t.shape[1]] = t

    verts, faces, uvs, index, offset, n_faces = [], [], [], {}, 0, 0
    for name, patches in parts.items():
        first = n_faces
        for p in patches:
            x0, t = tiles[id(p.tile)]
            h, w = t.shape[:2]
            # tile-local [0, 1] -> texel centres of the tile's columns/rows (row 0 = the atlas top, v = 1)
            u = (x0 + 0.5 + p.uvs[:, 0] * (w - 1)) / width
            v = 1.0 - (0.5 + (1.0 - p.uvs[:, 1]) * (h - 1)) / height
            verts.append(p.vertices)
            faces.append(p.faces + offset)
            uvs.append(torch.stack([u, v], -1))
            offset += len(p.vertices)
            n_faces += len(p.faces)
        index[name] = torch.arange(first, n_faces)
    mesh = Mesh(torch.cat(verts), torch.cat(faces), uvs=torch.cat(uvs), texture=atlas)
    return normalize_to_unit_sphere(mesh, radius).compute_vertex_normals(), index


def _object(name: str, parts: dict[str, list[_Patch]], thin: tuple[str, ...], description: str) -> FidelityObject:
    mesh, index = _assemble(parts, OBJECT_RADIUS)
    return FidelityObject(name, mesh, index, thin, OBJECT_RADIUS, description)


# ----------------------------------------------------------------------------------------
# The objects
# ----------------------------------------------------------------------------------------
def make_chair(leg_width: float = 0.04) -> FidelityObject:
    """A 1 x 1 seat 0.9 above the floor on four square legs ``leg_width`` wide (before scaling;
    the default is 1.6% of the normalised object's diameter), and a back panel 1.0 high."""
    wood_light, wood_dark = (0.80, 0.55, 0.30), (0.62, 0.38, 0.18)
    x, y = _coords(64)
    seat = _two_tone(64, (x * 8).floor() % 2 == 0, wood_light, wood_dark)  # planks
    back_front = _two_tone(64, ((x - 0.5).abs() < 0.3) & ((y - 0.55).abs() < 0.3), (0.75, 0.12, 0.15), wood_light)
    edge, leg = _solid(wood_dark), _solid((0.22, 0.12, 0.06))
    h_leg, t_seat, h_back, t_back = 0.9, 0.1, 1.0, 0.1
    parts = {
        "seat": _box((-0.5, h_leg, -0.5), (0.5, h_leg + t_seat, 0.5), {**dict.fromkeys(_BOX_FACES, edge), "top": seat}),
        "back": _box(
            (-0.5, h_leg + t_seat, -0.5),
            (0.5, h_leg + t_seat + h_back, -0.5 + t_back),
            {**dict.fromkeys(_BOX_FACES, edge), "front": back_front, "back": seat},
            skip=("bottom",),
        ),
    }
    inset, w = 0.06, leg_width
    for label, (sx, sz) in {"leg_front_left": (-1, 1), "leg_front_right": (1, 1), "leg_back_left": (-1, -1)}.items():
        cx, cz = sx * (0.5 - inset - w / 2), sz * (0.5 - inset - w / 2)
        parts[label] = _box((cx - w / 2, 0.0, cz - w / 2), (cx + w / 2, h_leg, cz + w / 2), leg, skip=("top",))
    cx, cz = 0.5 - inset - w / 2, -(0.5 - inset - w / 2)
    parts["leg_back_right"] = _box((cx - w / 2, 0.0, cz - w / 2), (cx + w / 2, h_leg, cz + w / 2), leg, skip=("top",))
    legs = ("leg_front_left", "leg_front_right", "leg_back_left", "leg_back_right")
    return _object("chair", parts, legs, "seat and back on four thin legs: thin parts must survive meshing")


def make_handle(tube_radius: float = 0.011) -> FidelityObject:
    """A 1.0 x 0.7 x 0.4 box bag with a half-circle handle (radius 0.3, tube ``tube_radius``
    before scaling: the default is 1.5% of the normalised object's diameter, ~1.5 px at 128 px)
    standing on its top, in the front-facing x-y plane."""
    x, y = _coords(64)
    body = _two_tone(64, (y > 0.62) & (y < 0.72), (0.35, 0.20, 0.10), (0.78, 0.62, 0.40))  # a strap band
    front = body.clone()
    clasp = ((x - 0.5).abs() < 0.08) & ((y - 0.67).abs() < 0.1)
    front[clasp] = torch.tensor([0.85, 0.75, 0.20])
    width, height, depth = 1.0, 0.7, 0.4
    parts = {
        "bag": _box(
            (-width / 2, 0.0, -depth / 2),
            (width / 2, height, depth / 2),
            {**dict.fromkeys(_BOX_FACES, body), "front": front, "top": _solid((0.70, 0.55, 0.35))},
        ),
        "handle": [_arc_tube(0.3, tube_radius, (0.0, height, 0.0), _solid((0.12, 0.08, 0.05)))],
    }
    return _object("handle", parts, ("handle",), "box bag with a thin handle loop: a thin arc must stay connected")


def make_white_cylinder() -> FidelityObject:
    """A near-white cylinder (radius 0.4, height 1.2) with a blue band and a thin red line, light grey caps."""
    _, y = _coords(64)
    side = torch.full((64, 64, 3), 0.97)
    side[((y - 0.35).abs() < 0.06)] = torch.tensor([0.15, 0.35, 0.85])
    side[((y - 0.75).abs() < 0.012)] = torch.tensor([0.85, 0.15, 0.15])
    parts = {"cylinder": _cylinder(0.4, -0.6, 0.6, side, _solid((0.92, 0.92, 0.93)))}
    return _object("white_cylinder", parts, (), "near-white cylinder on a white background: must not inflate")


def make_print_panel() -> FidelityObject:
    """A 1 x 1 x 0.15 standing panel: fine black print on its front, a coarse two-colour back,
    grey edges."""
    x, y = _coords(32)
    back = _two_tone(32, ((x * 2).floor() + (y * 2).floor()) % 2 == 0, (0.20, 0.45, 0.80), (0.90, 0.80, 0.25))
    tiles = {**dict.fromkeys(_BOX_FACES, _solid((0.55, 0.55, 0.58))), "front": _print_tile(), "back": back}
    parts = {"panel": _box((-0.5, -0.5, -0.075), (0.5, 0.5, 0.075), tiles)}
    return _object("print_panel", parts, (), "panel with fine print (~3 px features): the texture must stay sharp")


FIDELITY_OBJECTS: dict[str, Callable[[], FidelityObject]] = {
    "chair": make_chair,
    "handle": make_handle,
    "white_cylinder": make_white_cylinder,
    "print_panel": make_print_panel,
}
"""Every fidelity object: name -> builder (no arguments needed)."""


def make_fidelity_object(name: str) -> FidelityObject:
    """The object called ``name`` (a key of :data:`FIDELITY_OBJECTS`)."""
    if name not in FIDELITY_OBJECTS:
        raise KeyError(f"unknown fidelity object {name!r}: use one of {', '.join(FIDELITY_OBJECTS)}")
    return FIDELITY_OBJECTS[name]()
