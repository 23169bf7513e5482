"""Gaussians -> triangle mesh: density grid, marching cubes, clean-up, decimation.

Approach (METHOD.md, "Stage 2")
--------------------------------
The reference converter fits a hash-grid NeRF to Gaussian renders, extracts a 256^3 density grid
from it and then optimises mesh vertices against renders: minutes on a GPU, far too slow on a CPU.
We take DreamGaussian's direct path instead and evaluate the Gaussians' own density on a grid:

    D(x) = sum_i  opacity_i * exp(-0.5 * (x - mu_i)^T Sigma_i^{-1} (x - mu_i)),

truncated at 3 sigma (``SIGMA_CUTOFF``: each term is dropped where its Mahalanobis distance
exceeds 3, i.e. where it is below 1.1% of its peak). ``D`` is dimensionless: 1 means "as much
opacity as one fully opaque Gaussian at its centre".

The grid samples a band-limited ``D`` for needles: a Gaussian with two axes thinner than
``k voxel`` (``prefilter_voxels`` k = 0.5) is widened to ``Sigma_i + (k voxel)^2 I`` and its
opacity scaled by ``sqrt(det Sigma_i / det Sigma_i')^p`` (``prefilter_mass_power`` p = 0.5).
Fitted thin parts (chair legs, handles) are bundles of such needles, sigma across well below a
voxel; sampled raw, the nodes fall between them and marching cubes gives fragments (issue 15).
p = 1 would keep each term's 3D mass but drops a sub-voxel needle's density below the threshold;
p = 0.5 keeps the mass of its rendered 2D footprint seen from the side. Sheets and blobs are not
widened (a dense opaque surface widened by half a voxel moves the 0.15 level out by ~1.5 voxels).
``gaussian_density`` (arbitrary points) stays the raw ``D``.

The surface is the level set ``D = density_threshold``, extracted by marching cubes (PyMCubes)
after clean-up on the grid (:func:`keep_massive_clusters`: solid parts less than
``component_gap_voxels`` apart form one cluster, and clusters with under ``keep_components`` of
the heaviest one's density mass - far-off floaters - are removed; a thin part broken into pieces
next to the body is kept; small inner walls of empty pockets are dropped from the mesh by
:func:`drop_small_voids`), optionally Taubin-smoothed, decimated (fast-simplification's quadric
decimation) and given area-weighted vertex normals and vertex colours from the nearest
Gaussians (so an untextured mesh is coloured too).

Evaluation is O(P * k), not O(P * N): every Gaussian only touches the grid nodes inside its
3-sigma ellipsoid. :func:`density_grid` enumerates (Gaussian, column) pairs over the ellipsoid's
axis-aligned box, solves for the exact run of nodes inside the ellipsoid in each column, and
``index_add``s the terms into the grid in chunks of bounded size, never materialising the grid's
points. :func:`gaussian_density` does the same for arbitrary points by binning them into cells.

Measurements (Duck reconstructed as in tests/eval/test_quality_duck.py: 500 steps at 128 px, 19.1k
Gaussians whose own novel-view PSNR is 27.1 dB; 2-core CPU shared with other jobs,
``OMP_NUM_THREADS=1``; Chamfer = mean of the two mean nearest-neighbour distances between 10k
area-uniform samples of each surface, world units, object radius 0.7):

=========  =====  ==========  ====================  ======================
threshold  grid   Chamfer     vertex-colour PSNR    silhouette IoU
=========  =====  ==========  ====================  ======================
4.0        128    0.0488      17.1 dB               0.67
1.0        128    0.0237      22.2 dB               0.90
0.5        128    0.0203      24.0 dB               0.93
0.25       128    0.0184      24.8 dB               0.95
0.15       128    0.0174      (textured: 26.5 dB)   0.955
0.25       256    0.0187      24.7 dB               0.94
=========  =====  ==========  ====================  ======================

Reconstructed Gaussians are soft and semi-transparent near the surface, so a low iso-level (0.15)
follows the visible silhouette best; a 256 grid is no more accurate than 128 (the reconstruction,
not the grid, limits it) and costs ~8x the density time, so 128 is the default. Density-grid
time at 128: 4.4 s with the per-column ellipsoid runs (13-18 s evaluating whole boxes, 47.5M
pairs). Full stage 2 at the defaults: extract 3.5 s + xatlas unwrap 8 s (50k faces; 1.7 s at
20k faces with the same Chamfer/PSNR) + bake 12 s, 26.5 dB textured novel-view PSNR, Chamfer 0.0174.
(The table predates the needle prefilter and the cluster rule.)

Issue 15 (bench/bench_mesh_fidelity.py on saved Gaussians, grid 128; rows in
bench/results_mesh_fidelity.jsonl): with the raw density and the old face-count component rule
the chair kept leg coverage [0.09, 1, 0.25, 1] and the handle 0.54; with the needle prefilter
(k = 0.5, p = 0.5) and the cluster rule every thin part is 1.0 and the chair's mesh IoU rose from
0.851 to 0.894 (Gaussians 0.904). Widening every Gaussian instead (not only needles) lost legs of
dense synthetic models at coarse grids; k = 1 or p = 1 lowered IoU and lost legs on the chair.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ..errors import InputError
from ..render.mesh import texture
from ..scene.gaussians import Gaussians, quat_to_rotmat
from ..scene.mesh import Mesh, face_areas, sample_surface, vertex_normals

__all__ = [
    "ExtractConfig",
    "SIGMA_CUTOFF",
    "gaussian_density",
    "density_grid",
    "extract_mesh",
    "keep_massive_clusters",
    "drop_small_voids",
    "taubin_smooth",
    "signed_volume",
    "gaussians_on_surface",
    "vertex_colors_from_gaussians",
]

SIGMA_CUTOFF = 3.0
"""Each Gaussian's density term is truncated beyond this Mahalanobis distance."""

_CHUNK = 1 << 22  # (Gaussian, voxel/point) pairs evaluated per chunk: ~200 MB of temporaries


@dataclass
class ExtractConfig:
    """How :func:`extract_mesh` turns Gaussians into a mesh.

    Attributes:
        resolution: grid samples per axis (128-256). The grid is a cube around the Gaussians.
        density_threshold: iso-level of the opacity-weighted density ``D`` (module docstring);
            1 = one fully opaque Gaussian's peak. Chosen by measurement on the Duck.
        bound: the grid never extends beyond [-bound, bound]^3 (Gaussians outside are ignored).
        auto_bound: shrink the grid to the Gaussians' 3-sigma extent plus ``margin_voxels``, so
            all ``resolution`` samples land on the object instead of on empty space.
        margin_voxels: empty voxels left around the object (marching cubes closes the surface there).
        fill_cavities: treat closed empty pockets inside the object as solid, so a hollow shell of
            Gaussians (the usual result of fitting surfaces) gives one outer surface, not an extra
            inward-facing inner one. Pockets connected to the outside through pinholes up to
            about ``2 * seal_voxels`` voxels wide still count (the shell is morphologically
            closed by ``seal_voxels`` before the flood fill; the surface itself is not moved).
        min_opacity: Gaussians below this opacity are ignored (they can barely reach a threshold).
        prefilter_voxels: before sampling, every needle Gaussian (two axes thinner than this
            width) is widened by an isotropic Gaussian of this many voxels' standard deviation
            (Sigma + (k voxel)^2 I): a band-limiting prefilter, so needle-thin Gaussians (sigma
            across << voxel, e.g. fitted chair legs) are not missed by the grid nodes. Sheets and
            blobs are left as they are (nodes sample them well, and widening a dense surface would
            move the low iso-level outwards). 0 = sample the raw density.
        prefilter_mass_power: the widened Gaussian's opacity is scaled by
            ``sqrt(det Sigma / det Sigma')`` to this power: 1 keeps its 3D integral (and drops a
            thin leg's density below the threshold), 0 keeps its peak (inflates every thin
            axis), 0.5 keeps a needle's rendered 2D footprint mass seen from the side (its two
            thin axes contribute sigma/sigma' each, the view direction's one cancels).
        keep_components: clean-up: keep solid clusters (see ``component_gap_voxels``) holding at
            least this fraction of the largest cluster's density mass (1.0 = only the largest,
            0.0 = keep everything); after marching cubes, mesh components with fewer than this
            fraction of the largest one's faces are dropped only when they bound an empty pocket
            inside the solid (:func:`drop_small_voids`).
        component_gap_voxels: solid parts (density above the threshold) closer than about this
            many voxels count as one cluster for ``keep_components``, so a thin part that
            breaks up into fragments next to the body stays; only far-off floaters can go.
        smooth_iterations: Taubin smoothing passes (volume-preserving; 0 = off, the default: not
            measured to help on the Duck, whose error is the reconstruction's, not the grid's).
        target_faces: quadric decimation target (fast-simplification); 0 = no decimation.
    """

    resolution: int = 128
    density_threshold: float = 0.15
    bound: float = 1.0
    auto_bound: bool = True
    margin_voxels: int = 2
    fill_cavities: bool = True
    seal_voxels: int = 2
    min_opacity: float = 0.005
    prefilter_voxels: float = 0.5
    prefilter_mass_power: float = 0.5
    keep_components: float = 0.05
    component_gap_voxels: int = 2
    smooth_iterations: int = 0
    target_faces: int = 50_000


# ----------------------------------------------------------------------------------------
# Density
# ----------------------------------------------------------------------------------------
def _gaussian_terms(g: Gaussians, prefilter: float = 0.0, mass_power: float = 1.0) -> tuple[Tensor, Tensor, Tensor]:
    """Per Gaussian: packed parameters (N, 10) = [mu (3), Sigma^-1 upper triangle (6), opacity]
    and the half extent (N, 3) of its axis-aligned 3-sigma box.

    ``prefilter`` > 0 (world units) convolves every needle Gaussian (two axes thinner than
    ``prefilter``) with an isotropic Gaussian of that standard deviation,
    Sigma' = Sigma + prefilter^2 I, and scales its opacity by
    ``sqrt(det Sigma / det Sigma') ** mass_power`` (1 keeps each term's integral, 0 its peak;
    :class:`ExtractConfig`'s ``prefilter_mass_power``).
    """
    rot = quat_to_rotmat(g.quats.float())
    s = g.activated_scales().float()
    opacity = g.activated_opacities().float()
    if prefilter > 0:
        rs = rot * s[:, None, :]  # R S
        # Only needles (two axes under the prefilter width) are widened: sheets and blobs are
        # sampled well by the nodes, and widening dense surfaces would move the low iso-level out.
        needle = s.sort(-1).values[:, 1] < prefilter
        blur2 = torch.where(needle, prefilter**2, 0.0)
        cov = rs @ rs.transpose(1, 2) + blur2[:, None, None] * torch.eye(3, device=s.device)
        inv_cov = torch.linalg.inv(cov)
        cov_diag = torch.diagonal(cov, dim1=1, dim2=2)
        opacity = opacity * (s.prod(-1) / torch.linalg.det(cov).clamp(min=1e-30).sqrt()) ** mass_power
    else:
        m = rot / s[:, None, :]  # R S^-1
        inv_cov = m @ m.transpose(1, 2)  # R S^-2 R^T
        cov_diag = (rot * s[:, None, :]).square().sum(-1)  # diag(R S^2 R^T)
    extent = SIGMA_CUTOFF * cov_diag.sqrt()
    iu = ([0, 1, 2, 0, 0, 1], [0, 1, 2, 1, 2, 2])
    packed = torch.cat([g.means.float(), inv_cov[:, iu[0], iu[1]], opacity[:, None]], dim=1)
    return packed, extent, inv_cov


def _weights(packed: Tensor, points: Tensor) -> Tensor:
    """Truncated density terms opacity * exp(-m^2 / 2) of Gaussians ``packed`` (S, 10) at ``points`` (S, 3)."""
    d = points - packed[:, 0:3]
    a = packed[:, 3:9]
    m2 = (
        a[:, 0] * d[:, 0] ** 2
        + a[:, 1] * d[:, 1] ** 2
        + a[:, 2] * d[:, 2] ** 2
        + 2.0 * (a[:, 3] * d[:, 0] * d[:, 1] + a[:, 4] * d[:, 0] * d[:, 2] + a[:, 5] * d[:, 1] * d[:, 2])
    )
    w = packed[:, 9] * torch.exp(-0.5 * m2)
    return torch.where(m2 <= SIGMA_CUTOFF**2, w, torch.zeros_like(w))


def _flat_boxes(start: Tensor, size: Tensor, chunk: int):
    """Enumerate integer boxes ``start + [0, size)`` (B, 3) flat, ``chunk`` cells at a time.

    Yields (box index (S,), cell index (S, 3)). A chunk may split a box, so memory stays bounded
    whatever the box sizes.
    """
    counts = size.clamp(min=0).prod(-1)
    ends = torch.cumsum(counts, 0)
    total = int(ends[-1]) if len(ends) else 0
    begins = ends - counts
    for s in range(0, total, chunk):
        e = min(s + chunk, total)
        b0 = int(torch.searchsorted(ends, torch.tensor(s, device=ends.device), right=True))
        b1 = int(torch.searchsorted(ends, torch.tensor(e - 1, device=ends.device), right=True))
        boxes = torch.arange(b0, b1 + 1, device=ends.device)
        n = ends[boxes].clamp(max=e) - begins[boxes].clamp(min=s)
        b = torch.repeat_interleave(boxes, n)
        local = torch.arange(s, e, device=ends.device) - begins[b]
        sz = size[b]
        k = local % sz[:, 2]
        rest = torch.div(local, sz[:, 2], rounding_mode="floor")
        j = rest % sz[:, 1]
        i = torch.div(rest, sz[:, 1], rounding_mode="floor")
        yield b, start[b] + torch.stack([i, j, k], dim=-1)


def _splat(
    g: Gaussians,
    origin: Tensor,
    voxel: float,
    shape: tuple[int, int, int],
    chunk: int = _CHUNK,
    prefilter: float = 0.0,
    mass_power: float = 1.0,
) -> Tensor:
    """Density at the nodes ``origin + voxel * (i, j, k)`` of a grid of ``shape`` (needle Gaussians
    widened by ``prefilter``: see :func:`_gaussian_terms`).

    Every Gaussian visits the (i, j) columns of its 3-sigma box; in each column the exact range
    of k inside its 3-sigma *ellipsoid* is solved for (m^2 is quadratic in z), so only nodes
    with a non-zero term are evaluated (about half the box for round Gaussians, far less for
    tilted flat ones). Terms are ``index_add``-ed into the flat grid.
    """
    packed, extent, inv_cov = _gaussian_terms(g, prefilter, mass_power)
    device = g.means.device
    dims = torch.tensor(shape, device=device)
    mu = packed[:, :3]
    lo = torch.ceil((mu - extent - origin) / voxel).long().clamp(min=0)
    hi = torch.floor((mu + extent - origin) / voxel).long().minimum(dims - 1)
    size = (hi - lo + 1).clamp(min=0)
    size[:, 2] = size[:, 2].clamp(max=1)  # enumerate (i, j) columns only
    density = torch.zeros(int(np.prod(shape)), device=device)
    a_zz = inv_cov[:, 2, 2]
    cutoff2 = SIGMA_CUTOFF**2
    for b, idx in _flat_boxes(lo, size, max(chunk // 16, 1)):
        # Column (i, j) of Gaussian b: m^2(dz) = a dz^2 + 2 q dz + c with dx, dy fixed.
        d = origin[:2] + voxel * idx[:, :2].float() - mu[b, :2]
        A = inv_cov[b]
        a = a_zz[b]
        q = A[:, 0, 2] * d[:, 0] + A[:, 1, 2] * d[:, 1]
        c = A[:, 0, 0] * d[:, 0] ** 2 + A[:, 1, 1] * d[:, 1] ** 2 + 2 * A[:, 0, 1] * d[:, 0] * d[:, 1]
        disc = q * q - a * (c - cutoff2)
        root = disc.clamp(min=0).sqrt()
        z0 = mu[b, 2] + (-q - root) / a
        z1 = mu[b, 2] + (-q + root) / a
        k0 = torch.ceil((z0 - origin[2]) / voxel).long().clamp(min=0)
        k1 = torch.floor((z1 - origin[2]) / voxel).long().clamp(max=shape[2] - 1)
        n = torch.where(disc > 0, (k1 - k0 + 1).clamp(min=0), torch.zeros_like(k0))
        ends = torch.cumsum(n, 0)
        begin = 0
        while begin < len(n):  # (column, k) pairs, at most ``chunk`` at a time
            base = int(ends[begin - 1]) if begin else 0
            stop = max(int(torch.searchsorted(ends, torch.tensor(base + chunk, device=device), right=True)), begin + 1)
            col = torch.repeat_interleave(torch.arange(begin, stop, device=device), n[begin:stop])
            k = k0[col] + torch.arange(len(col), device=device) - (ends[col] - n[col] - base)
            node = torch.stack([idx[col, 0], idx[col, 1], k], dim=-1)
            w = _weights(packed[b[col]], origin + voxel * node.float())
            density.index_add_(0, (idx[col, 0] * shape[1] + idx[col, 1]) * shape[2] + k, w)
            begin = stop
    return density.view(shape)


def _accumulate(
    g: Gaussians, points: Tensor, values: Tensor | None = None, chunk: int = _CHUNK
) -> tuple[Tensor, Tensor | None]:
    """Density (P,) and density-weighted sum of ``values`` at arbitrary ``points`` (P, 3).

    Points are binned into cubic cells about one typical 3-sigma box wide; each Gaussian visits
    the cells its box overlaps and, in them, only the points that fall inside its box.
    """
    points = points.float()
    P = points.shape[0]
    device = points.device
    density = torch.zeros(P, device=device)
    acc = None if values is None else torch.zeros(P, values.shape[1], device=device)
    if P == 0 or g.num == 0:
        return density, acc
    packed, extent, _ = _gaussian_terms(g)
    lo_p, hi_p = points.min(0).values, points.max(0).values
    cell = float(max((2 * extent).max(-1).values.median(), float((hi_p - lo_p).max()) / 256, 1e-6))
    dims = torch.floor((hi_p - lo_p) / cell).long() + 1
    cell_of = torch.floor((points - lo_p) / cell).long().minimum(dims - 1)
    key = (cell_of[:, 0] * dims[1] + cell_of[:, 1]) * dims[2] + cell_of[:, 2]
    order = torch.argsort(key)
    n_cells = int(dims.prod())
    per_cell = torch.bincount(key, minlength=n_cells)
    cell_start = torch.cumsum(per_cell, 0) - per_cell

    # Level 1: (Gaussian, cell) pairs over each Gaussian's box of cells.
    c_lo = torch.floor((packed[:, :3] - extent - lo_p) / cell).long().clamp(min=0)
    c_hi = torch.floor((packed[:, :3] + extent - lo_p) / cell).long().minimum(dims - 1)
    size = (c_hi - c_lo + 1).clamp(min=0)
    for gid, cidx in _flat_boxes(c_lo, size, chunk):
        ckey = (cidx[:, 0] * dims[1] + cidx[:, 1]) * dims[2] + cidx[:, 2]
        n = per_cell[ckey]
        busy = n > 0
        gid, ckey, n = gid[busy], ckey[busy], n[busy]
        # Level 2: (Gaussian, point) pairs, at most ``chunk`` at a time.
        ends = torch.cumsum(n, 0)
        begin = 0
        while begin < len(n):
            base = int(ends[begin - 1]) if begin else 0
            stop = max(int(torch.searchsorted(ends, torch.tensor(base + chunk, device=device), right=True)), begin + 1)
            sl = slice(begin, stop)
            pair = torch.repeat_interleave(torch.arange(begin, stop, device=device), n[sl])
            offset = torch.arange(len(pair), device=device) - (ends[pair] - n[pair] - base)
            pid = order[cell_start[ckey[pair]] + offset]
            gi = gid[pair]
            w = _weights(packed[gi], points[pid])
            density.index_add_(0, pid, w)
            if acc is not None:
                acc.index_add_(0, pid, w[:, None] * values[gi])
            begin = stop
    return density, acc


def gaussian_density(gaussians: Gaussians, points: Tensor, chunk: int = _CHUNK) -> Tensor:
    """(P,) opacity-weighted, 3-sigma-truncated Gaussian density at ``points`` (P, 3).

    ``sum_i opacity_i * exp(-0.5 d^T Sigma_i^-1 d)`` over the Gaussians whose 3-sigma ellipsoid
    contains the point; spatially culled, so the cost grows with the number of nearby Gaussians.
    """
    with torch.no_grad():
        return _accumulate(gaussians.detach().to(points.device), points.detach(), chunk=chunk)[0]


def _grid_box(g: Gaussians, config: ExtractConfig) -> tuple[Tensor, float]:
    """(origin (3,), voxel size) of the cubic ``resolution``^3 grid of nodes used for extraction."""
    R = int(config.resolution)
    b = float(config.bound)
    if config.auto_bound and g.num:
        _, extent, _ = _gaussian_terms(g)
        lo = (g.means - extent).min(0).values.clamp(-b, b)
        hi = (g.means + extent).max(0).values.clamp(-b, b)
        half = float((hi - lo).max()) / 2
        centre = (lo + hi) / 2
        # The margin is a number of voxels of the final grid: half + m * 2 * half' / (R - 1) = half'.
        half = half / (1.0 - 2.0 * config.margin_voxels / (R - 1))
        half = min(max(half, 1e-3), b * 1.0)
        centre = centre.clamp(-b + half, b - half) if half < b else torch.zeros_like(centre)
        origin = centre - half
        return origin, 2 * half / (R - 1)
    return torch.full((3,), -b, device=g.means.device), 2 * b / (R - 1)


def _visible_subset(gaussians: Gaussians, config: ExtractConfig) -> Gaussians:
    """The Gaussians that can make a surface (opaque enough, inside the bound), on their own device."""
    g = gaussians.detach()
    if g.num:
        g.check_finite()
    keep = g.activated_opacities() >= config.min_opacity
    keep &= (g.means.abs() <= config.bound).all(-1)
    return g[keep]


def density_grid(gaussians: Gaussians, config: ExtractConfig | None = None) -> tuple[Tensor, Tensor]:
    """Sample :func:`gaussian_density` on a cubic grid (``config`` defaults to :class:`ExtractConfig`'s defaults).

    Returns ``grid`` (R, R, R), indexed [x, y, z], and ``bbox`` (2, 3): the world positions of
    nodes (0, 0, 0) and (R-1, R-1, R-1); node (i, j, k) is at ``bbox[0] + (i, j, k) * voxel``.
    """
    config = ExtractConfig() if config is None else config
    if config.resolution < 8:
        raise InputError(
            f"mesh extraction resolution {config.resolution} is too small: use 64 or more (128-256 recommended)"
        )
    g = _visible_subset(gaussians, config)
    R = int(config.resolution)
    origin, voxel = _grid_box(g, config)
    with torch.no_grad():
        grid = _splat(
            g,
            origin,
            voxel,
            (R, R, R),
            prefilter=float(config.prefilter_voxels) * voxel,
            mass_power=config.prefilter_mass_power,
        )
    return grid, torch.stack([origin, origin + voxel * (R - 1)])


# ----------------------------------------------------------------------------------------
# Mesh clean-up
# ----------------------------------------------------------------------------------------
def signed_volume(vertices: Tensor, faces: Tensor) -> float:
    """Signed enclosed volume; positive when faces wind counter-clockwise seen from outside."""
    v = vertices.double()[faces]
    return float(torch.linalg.det(v).sum() / 6.0)


def keep_massive_clusters(volume: np.ndarray, threshold: float, fraction: float, gap: int) -> np.ndarray:
    """``volume`` with the solid clusters lighter than ``fraction`` x the heaviest one's density
    mass set to 0 (a copy when anything is dropped).

    Solid = nodes above ``threshold``; a cluster = a connected component of the solid dilated by
    ``gap`` nodes, so parts up to about ``gap`` voxels apart (a thin leg sampled as fragments
    along the body) belong together. Mass = the summed density of a cluster's solid nodes.
    Dropped clusters lie more than ``gap`` nodes from every kept solid node, so zeroing them
    leaves the kept surfaces exactly as they were.
    """
    from scipy.ndimage import binary_dilation, label

    solid = volume > threshold
    if fraction <= 0 or not solid.any():
        return volume
    near = binary_dilation(solid, iterations=int(gap)) if gap > 0 else solid
    labels, n = label(near)
    if n <= 1:
        return volume
    mass = np.bincount(labels[solid], weights=volume[solid], minlength=n + 1)
    keep = mass >= fraction * mass[1:].max()
    keep[0] = False
    drop = ~keep[labels] & (labels > 0)
    if not drop.any():
        return volume
    volume = volume.copy()
    volume[drop] = 0.0
    return volume


def drop_small_voids(vertices: np.ndarray, faces: np.ndarray, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Drop connected components with fewer than ``fraction`` x the largest one's faces that bound
    a void (signed volume of the opposite sign to the largest's: the inner wall of an empty
    pocket inside the solid, invisible from outside); reindex.

    Small components of the same orientation are solid pieces (a thin part's fragment next to
    the body) and stay: far-off floaters are removed on the grid by :func:`keep_massive_clusters`.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    if len(faces) == 0 or fraction <= 0:
        return vertices, faces
    V = len(vertices)
    rows = np.concatenate([faces[:, 0], faces[:, 1], faces[:, 2]])
    cols = np.concatenate([faces[:, 1], faces[:, 2], faces[:, 0]])
    graph = coo_matrix((np.ones(len(rows), dtype=np.int8), (rows, cols)), shape=(V, V))
    _, label = connected_components(graph, directed=False)
    face_label = label[faces[:, 0]]
    sizes = np.bincount(face_label)
    v = vertices[faces].astype(np.float64)
    volume = np.bincount(face_label, weights=np.einsum("fi,fi->f", v[:, 0], np.cross(v[:, 1], v[:, 2])))
    main = int(np.argmax(sizes))
    void = (sizes < fraction * sizes[main]) & (volume * volume[main] < 0)
    if not void.any():
        return vertices, faces
    return compact(vertices, faces[~void[face_label]])


def compact(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Drop vertices no face uses and reindex the faces."""
    used = np.unique(faces)
    remap = np.full(len(vertices), -1, dtype=np.int64)
    remap[used] = np.arange(len(used))
    return vertices[used], remap[faces]


def taubin_smooth(vertices: Tensor, faces: Tensor, iterations: int, lam: float = 0.5, mu: float = -0.53) -> Tensor:
    """Taubin lambda|mu smoothing with uniform umbrella weights: smooths without shrinking."""
    if iterations <= 0:
        return vertices
    V = len(vertices)
    i = torch.cat([faces[:, 0], faces[:, 1], faces[:, 2], faces[:, 1], faces[:, 2], faces[:, 0]])
    j = torch.cat([faces[:, 1], faces[:, 2], faces[:, 0], faces[:, 0], faces[:, 1], faces[:, 2]])
    degree = torch.zeros(V, device=vertices.device).index_add_(0, i, torch.ones(len(i), device=vertices.device))
    degree = degree.clamp(min=1)[:, None]
    v = vertices.clone()
    for _ in range(iterations):
        for factor in (lam, mu):
            mean = torch.zeros_like(v).index_add_(0, i, v[j]) / degree
            v = v + factor * (mean - v)
    return v


def _decimate(vertices: np.ndarray, faces: np.ndarray, target: int) -> tuple[np.ndarray, np.ndarray]:
    import fast_simplification

    if target <= 0 or len(faces) <= target:
        return vertices, faces
    v, f = fast_simplification.simplify(vertices.astype(np.float64), faces.astype(np.int32), target_count=int(target))
    return v.astype(np.float32), f.astype(np.int64)


def _drop_degenerate(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    distinct = (faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2]) & (faces[:, 0] != faces[:, 2])
    faces = faces[distinct]
    v = vertices[faces]
    area2 = np.linalg.norm(np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0]), axis=-1)
    return faces[area2 > 1e-12]


def vertex_colors_from_gaussians(gaussians: Gaussians, points: Tensor, k: int = 8) -> Tensor:
    """(P, 3) base colour around each point: the mean of its ``k`` nearest Gaussian centres'
    colours weighted by opacity / distance (a KD-tree query, milliseconds; evaluating the full
    density-weighted mean costs seconds and looked no better on the Duck)."""
    from scipy.spatial import cKDTree

    g = gaussians.detach().to("cpu")
    k = min(k, g.num)
    dist, idx = cKDTree(g.means.numpy()).query(points.detach().cpu().numpy(), k=k)
    dist, idx = torch.from_numpy(dist.reshape(len(points), k)).float(), torch.from_numpy(idx.reshape(len(points), k))
    w = g.activated_opacities()[idx] / (dist + 1e-4)
    return ((w[..., None] * g.base_colors()[idx]).sum(1) / w.sum(1, keepdim=True)).clamp(0, 1)


# ----------------------------------------------------------------------------------------
# Extraction
# ----------------------------------------------------------------------------------------
def extract_mesh(
    gaussians: Gaussians, config: ExtractConfig | None = None, timings: dict[str, float] | None = None
) -> Mesh:
    """Mesh of the level set ``density = config.density_threshold`` of the Gaussians (``config``
    defaults to :class:`ExtractConfig`'s defaults).

    World coordinates (same frame as the Gaussians), faces counter-clockwise seen from outside,
    vertex normals and vertex colours set. Raises :class:`InputError` when there is no surface.
    Stage times in seconds go into ``timings`` when a dict is given.
    """
    import mcubes

    config = ExtractConfig() if config is None else config

    t0 = time.perf_counter()
    g = _visible_subset(gaussians, config)
    if g.num == 0:
        raise InputError(
            "no surface to extract: the Gaussian model is empty or fully transparent (every opacity "
            f"below {config.min_opacity}) or lies outside [-{config.bound}, "
            f"{config.bound}]^3; reconstruct first or raise `bound`"
        )
    grid, bbox = density_grid(g, config)
    t1 = time.perf_counter()
    peak = float(grid.max())
    if not peak > config.density_threshold:
        raise InputError(
            f"no surface to extract: the Gaussian density peaks at {peak:.3g}, below the threshold "
            f"{config.density_threshold:g}; lower density_threshold (e.g. to {0.5 * peak:.2g}) or reconstruct longer"
        )
    volume = grid.cpu().numpy().astype(np.float64)  # the one move to the CPU: SciPy, PyMCubes
    if config.fill_cavities:
        from scipy.ndimage import binary_closing, binary_fill_holes

        solid = volume > config.density_threshold
        if config.seal_voxels > 0:
            solid = binary_closing(solid, iterations=int(config.seal_voxels), border_value=0)
        cavity = binary_fill_holes(solid) & ~solid
        volume[cavity] = 2.0 * config.density_threshold
    volume = keep_massive_clusters(
        volume, config.density_threshold, config.keep_components, config.component_gap_voxels
    )
    # One layer of empty nodes all around so every surface is closed.
    padded = np.pad(volume, 1, constant_values=0.0)
    verts, faces = mcubes.marching_cubes(padded, float(config.density_threshold))
    voxel = float((bbox[1, 0] - bbox[0, 0]) / (config.resolution - 1))
    verts = (verts - 1.0) * voxel + bbox[0].cpu().numpy().astype(np.float64)
    faces = faces.astype(np.int64)
    t2 = time.perf_counter()

    faces = _drop_degenerate(verts, faces)
    verts, faces = compact(*drop_small_voids(verts, faces, config.keep_components))
    if len(faces) == 0:
        raise InputError(
            "no surface to extract: marching cubes found no triangles; lower density_threshold or raise resolution"
        )
    v = torch.from_numpy(verts.astype(np.float32))
    f = torch.from_numpy(faces)
    if config.smooth_iterations > 0:
        v = taubin_smooth(v, f, config.smooth_iterations)
    verts, faces = _decimate(v.numpy(), faces, config.target_faces)
    verts, faces = compact(verts, _drop_degenerate(verts, faces))
    v, f = (
        torch.from_numpy(np.ascontiguousarray(verts, dtype=np.float32)),
        torch.from_numpy(np.ascontiguousarray(faces)),
    )
    if signed_volume(v, f) < 0:  # marching cubes' winding depends on the iso direction: enforce outward
        f = f[:, [0, 2, 1]]
    t3 = time.perf_counter()
    mesh = Mesh(v, f, vertex_colors=vertex_colors_from_gaussians(g, v), normals=vertex_normals(v, f))
    t4 = time.perf_counter()
    if timings is not None:
        timings.update(density=t1 - t0, marching_cubes=t2 - t1, cleanup=t3 - t2, colors=t4 - t3, total=t4 - t0)
    return mesh


# ----------------------------------------------------------------------------------------
# A known-answer Gaussian model
# ----------------------------------------------------------------------------------------
def gaussians_on_surface(
    mesh: Mesh,
    num: int = 20_000,
    tangent_scale: float | None = None,
    normal_scale: float = 0.01,
    opacity: float = 0.95,
    seed: int = 0,
) -> Gaussians:
    """Flat Gaussians lying on ``mesh``'s surface, coloured from its texture/vertex colours.

    Points are sampled uniformly by area; each Gaussian is a disc (``tangent_scale`` in the
    surface, default the mean sample spacing, and ``normal_scale`` along the face normal). Gives
    a Gaussian model whose true surface and colours are known: for tests and benchmarks.
    """
    points, face, bary = sample_surface(mesh, num, torch.Generator().manual_seed(seed))
    normal = mesh.face_normals()[face]
    if mesh.has_texture:
        uv = (bary[:, :, None] * mesh.uvs[mesh.faces[face]]).sum(1)
        color = texture(mesh.texture, uv[None, None], wrap="repeat", backend="torch")[0, 0]
    else:
        color = (bary[:, :, None] * mesh.vertex_colors_or_grey()[mesh.faces[face]]).sum(1)
    if tangent_scale is None:
        tangent_scale = float(math.sqrt(face_areas(mesh.vertices, mesh.faces).sum() / num))
    # Quaternion turning +z onto the normal: axis z x n, angle acos(n_z) (half-angle form).
    quats = torch.stack([1.0 + normal[:, 2], -normal[:, 1], normal[:, 0], torch.zeros(num)], dim=-1)
    flipped = quats.norm(dim=-1) < 1e-6  # normal = -z: half turn about x
    quats[flipped] = torch.tensor([0.0, 1.0, 0.0, 0.0])
    scales = torch.log(torch.tensor([tangent_scale, tangent_scale, normal_scale])).expand(num, 3).clone()
    return Gaussians(
        means=points,
        scales=scales,
        quats=torch.nn.functional.normalize(quats, dim=-1),
        opacities=torch.full((num,), math.log(opacity / (1 - opacity))),
        sh0=((color.clamp(0, 1) - 0.5) / 0.28209479177387814)[:, None, :],
        shN=torch.zeros(num, 0, 3),
    )
