"""Our pure-PyTorch Gaussian rasteriser: tiled, exact, with an analytic compositing backward.

:func:`rasterize_tiles` composites Gaussians already projected by
:func:`~microdreamer_core.render.gaussians.project_gaussians` (the model, shared with gsplat, is
described there); it is what ``backend="torch"`` runs, on any device.

Evaluating every Gaussian at every pixel is far too slow, so the image is cut into square
tiles (8x8 measured fastest on CPU: 0.39 s vs 0.44 s for 4x4 and 16x16 in the 128² benchmark
below, single thread) and each visible Gaussian is binned into the tiles its *opacity-aware*
extent ``sqrt(2·ln(255·opacity)·λ_max)`` overlaps; candidate tiles whose pixel centres all lie
outside the ellipse where alpha reaches 1/255 are then dropped (about a third of the pairs). Both
bounds are exact: outside them alpha is below 1/255 and would be zeroed anyway, so tiling is a
pure optimisation -- the image equals the dense "every Gaussian at every pixel" result to float
rounding (the tests check 1e-5, gradients included).

Pairs (tile, Gaussian) are sorted by (tile, depth) with a single integer-key sort. Tiles are
ordered by their list length and processed in chunks padded to the longest list of the chunk,
which keeps padding waste small (~10%) and bounds memory (``_CHUNK_ELEMENTS`` Gaussian-pixel
values per scratch buffer; the buffers are reused across chunks, since fresh multi-MB allocations
page-fault on first touch and cost more than the arithmetic). Per chunk the quadratic form of every
Gaussian at every pixel of its tile is one small matmul against the pixel basis ``[u², uv, v², u, v, 1]``
(tile-centred coordinates keep it well conditioned), with ``-log(opacity)`` folded into the constant term so
``alpha`` is a single ``exp``. Transmittance is a ``cumprod`` along the depth-sorted list.

Compositing is a custom :class:`torch.autograd.Function` with an analytic backward that recomputes
alpha instead of storing it (nothing of size Gaussian-pixels survives the forward). With
``v_i = f_i·g`` (feature times output gradient)::

    dL/dα_i = T_i v_i - (Σ_{k>i} α_k T_k v_k + T_final·dL/dT_final) / (1 - α_i)

and the per-pair gradient of the quadratic-form coefficients is again one matmul against the
pixel basis. Everything outside that Function (projection, SH, coefficient set-up, background,
depth normalisation) is ordinary autograd, so gradients reach means, quats, scales, opacities,
colours and the returned ``means2d`` (``means2d.retain_grad()`` gives d loss / d pixel position).

Measured with bench/bench_gaussian_render.py (5000 Gaussians in a ball of radius 0.5, scales
0.02-0.05, opacity 0.1-0.9, 6 views at radius 2, fovy 49.1°, forward + backward; ~14M
Gaussian-pixel evaluations at 128² after tile culling, ~38M at 256²):

* 2 idle CPU cores: 128x128 ~0.25 s per step, 256x256 ~0.52 s; peak RSS +105 / +220 MB;
* 1 thread (``OMP_NUM_THREADS=1``) while another process kept the second core busy:
  128x128 ~0.35 s, 256x256 ~1.1 s.

Beware CPU oversubscription: with 2 OpenMP threads on 2 cores that another process is also using,
every small op waits on a descheduled thread and the same step took 5-6 s. Use one thread per
free core (``torch.set_num_threads``) when sharing the machine.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

if TYPE_CHECKING:
    from .gaussians import Projection

__all__ = ["TILE_SIZE", "rasterize_tiles"]

TILE_SIZE = 8
"""Tile edge in pixels for the torch backend (8 beat 16 and 4 on CPU in our benchmark)."""

_CHUNK_ELEMENTS = 1 << 20
"""Gaussian-pixel values per scratch buffer in one compositing chunk (4 MiB in float32, cache-friendly)."""

_ALPHA_MIN = 1.0 / 255.0
_ALPHA_MAX = 0.99
_PAD_LOGIT = 1.0e4  # quadratic-form constant of padding entries: exp(-1e4) == 0


# ---------------------------------------------------------------------------------------------
# Tile binning (no gradients)
# ---------------------------------------------------------------------------------------------


@dataclass
class _TilePlan:
    """Depth-sorted (tile, Gaussian) pairs and the chunks the compositor walks through.

    ``pair_src``/``pair_tile``: (M,) flat camera*N + gaussian index and flat tile index of each
    pair, sorted by (tile, depth). ``chunks``: list of (B, K) padded pair indices (M = padding).
    ``chunk_tiles``: list of (B,) flat tile indices of each chunk.
    """

    tile: int
    tiles_x: int
    tiles_y: int
    num_tiles: int
    pair_src: Tensor
    pair_tile: Tensor
    chunks: list[Tensor]
    chunk_tiles: list[Tensor]
    neg_basis: Tensor  # (P, 6) minus the pixel basis [u², uv, v², u, v, 1], tile-centred coordinates
    may_clamp: bool  # some opacity exceeds 0.99, so the 0.99 alpha clamp can apply


def _bin_tiles(
    means2d: Tensor,
    conics: Tensor,
    log_ratio: Tensor,
    extent: Tensor,
    visible: Tensor,
    depths: Tensor,
    width: int,
    height: int,
    tile: int,
    dtype: torch.dtype,
    may_clamp: bool,
) -> _TilePlan:
    """Pair each visible Gaussian with the tiles where its alpha can reach 1/255.

    Candidates are the tiles under the square of half-width ``extent``; those whose pixel
    centres all lie outside the ellipse ``½ dᵀ conic d <= log_ratio`` are dropped
    (:func:`_min_quad_over_box`), which removes a third of the pairs for typical scenes.
    """
    device = means2d.device
    C, N = depths.shape
    tiles_x, tiles_y = -(-width // tile), -(-height // tile)
    mx, my = means2d[..., 0], means2d[..., 1]
    x0 = torch.floor((mx - extent) / tile).clamp(0, tiles_x - 1).long()
    x1 = torch.floor((mx + extent) / tile).clamp(0, tiles_x - 1).long()
    y0 = torch.floor((my - extent) / tile).clamp(0, tiles_y - 1).long()
    y1 = torch.floor((my + extent) / tile).clamp(0, tiles_y - 1).long()
    rect_w = x1 - x0 + 1
    counts = torch.where(visible, rect_w * (y1 - y0 + 1), torch.zeros_like(rect_w)).reshape(-1)

    src = torch.repeat_interleave(torch.arange(C * N, device=device), counts)
    first = torch.cumsum(counts, 0) - counts
    local = torch.arange(src.numel(), device=device) - first[src]
    rw = rect_w.reshape(-1)[src]
    tx = x0.reshape(-1)[src] + local % rw
    ty = y0.reshape(-1)[src] + torch.div(local, rw, rounding_mode="floor")

    # exact ellipse-vs-tile test on the box spanned by the tile's pixel centres
    lo_x, lo_y = tx.to(dtype) * tile + 0.5, ty.to(dtype) * tile + 0.5
    q_min = _min_quad_over_box(
        means2d.reshape(-1, 2)[src], conics.reshape(-1, 3)[src], lo_x, lo_x + (tile - 1), lo_y, lo_y + (tile - 1)
    )
    thr = log_ratio.reshape(-1)[src]
    keep = q_min <= thr * (1.0 + 1e-4) + 1e-4
    src, tx, ty = src[keep], tx[keep], ty[keep]
    tile_id = (src // N) * (tiles_x * tiles_y) + ty * tiles_x + tx

    rank = torch.empty((C, N), dtype=torch.long, device=device)  # depth rank within its camera
    rank.scatter_(1, torch.argsort(depths, dim=1), torch.arange(N, device=device).expand(C, N).contiguous())
    order = torch.argsort(tile_id * N + rank.reshape(-1)[src])
    src, tile_id = src[order], tile_id[order]

    num_tiles = C * tiles_x * tiles_y
    per_tile = torch.bincount(tile_id, minlength=num_tiles)
    start = torch.cumsum(per_tile, 0) - per_tile
    chunks, chunk_tiles = _make_chunks(per_tile, start, src.numel(), tile * tile)

    r = torch.arange(tile, device=device, dtype=dtype) + 0.5 - 0.5 * tile
    u, v = r[None, :].expand(tile, tile).reshape(-1), r[:, None].expand(tile, tile).reshape(-1)
    neg_basis = -torch.stack([u * u, u * v, v * v, u, v, torch.ones_like(u)], dim=-1)
    return _TilePlan(tile, tiles_x, tiles_y, num_tiles, src, tile_id, chunks, chunk_tiles, neg_basis, may_clamp)


def _min_quad_over_box(mean: Tensor, conic: Tensor, x_lo: Tensor, x_hi: Tensor, y_lo: Tensor, y_hi: Tensor) -> Tensor:
    """min over the box of ``½ dᵀ [[a, b], [b, c]] d`` with ``d = p - mean`` (all (M,) tensors).

    Zero when the mean is inside; otherwise the minimum lies on an edge, where the 1D
    quadratic's minimiser is clamped to the edge.
    """
    a, b, c = conic.unbind(-1)
    mx, my = mean.unbind(-1)

    def quad(dx: Tensor, dy: Tensor) -> Tensor:
        return 0.5 * (a * dx * dx + 2.0 * b * dx * dy + c * dy * dy)

    best = None
    for x_edge in (x_lo, x_hi):  # vertical edges: minimise over y
        dx = x_edge - mx
        dy = (my - b * dx / c).clamp(y_lo, y_hi) - my
        val = quad(dx, dy)
        best = val if best is None else torch.minimum(best, val)
    for y_edge in (y_lo, y_hi):  # horizontal edges: minimise over x
        dy = y_edge - my
        dx = (mx - b * dy / a).clamp(x_lo, x_hi) - mx
        best = torch.minimum(best, quad(dx, dy))
    inside = (mx >= x_lo) & (mx <= x_hi) & (my >= y_lo) & (my <= y_hi)
    return best.masked_fill(inside, 0.0)


def _make_chunks(per_tile: Tensor, start: Tensor, pad: int, pixels: int) -> tuple[list[Tensor], list[Tensor]]:
    """Group non-empty tiles by list length into padded (B, K) index blocks of bounded size."""
    active = torch.nonzero(per_tile, as_tuple=True)[0]
    lengths, order = torch.sort(per_tile[active], descending=True)
    active = active[order]
    lengths_cpu = lengths.tolist()
    chunks, chunk_tiles, i = [], [], 0
    while i < len(lengths_cpu):
        k = lengths_cpu[i]
        b = max(1, _CHUNK_ELEMENTS // (k * pixels))
        tiles = active[i : i + b]
        ar = torch.arange(k, device=per_tile.device)
        idx = start[tiles, None] + ar
        chunks.append(torch.where(ar < per_tile[tiles, None], idx, torch.full_like(idx, pad)))
        chunk_tiles.append(tiles)
        i += b
    return chunks, chunk_tiles


# ---------------------------------------------------------------------------------------------
# Compositing (custom autograd Function)
# ---------------------------------------------------------------------------------------------
#
# Per chunk of B tiles with lists padded to K Gaussians, all Gaussian-pixel values live in
# (B, P, K) buffers (the depth-sorted list is the contiguous axis, which makes cumprod/cumsum
# cheap). The buffers are allocated once per call and reused by every chunk: fresh multi-MB
# allocations page-fault on every touch and would cost more than the arithmetic.


class _Workspace:
    """Reusable flat scratch buffers, viewed as (B, P, K) per chunk."""

    def __init__(self, plan: _TilePlan, like: Tensor, count: int) -> None:
        P = plan.neg_basis.shape[0]
        size = max((idx.numel() * P for idx in plan.chunks), default=0)
        self.bufs = [like.new_empty(size) for _ in range(count)]
        self.mask = torch.empty(size if plan.may_clamp else 0, dtype=torch.bool, device=like.device)

    def views(self, shape: tuple[int, int, int]) -> list[Tensor]:
        n = shape[0] * shape[1] * shape[2]
        mask = self.mask[:n].view(shape) if self.mask.numel() else None
        return [b[:n].view(shape) for b in self.bufs] + [mask]


def _log_alpha(q: Tensor, neg_basis: Tensor, out: Tensor) -> Tensor:
    """``out`` (B, P, K) = -s: (B, K, 6) coefficients against the (P, 6) negated pixel basis.

    A matmul on CPU. Elsewhere an explicit sum, because CUDA matmuls may silently run in TF32,
    whose 10-bit mantissa is far too coarse for this expanded (cancelling) quadratic form.
    """
    if q.device.type == "cpu":
        return torch.matmul(neg_basis, q.transpose(1, 2), out=out)
    out.copy_(q[:, None, :, 5].expand_as(out)).neg_()
    for k in range(5):
        out.addcmul_(neg_basis[None, :, k, None], q[:, None, :, k])
    return out


def _reduce_basis(g: Tensor, neg_basis: Tensor) -> Tensor:
    """(B, P, K) gradients w.r.t. -s -> (B, K, 6) gradients of the quadratic-form coefficients."""
    if g.device.type == "cpu":
        return g.transpose(1, 2) @ neg_basis
    return torch.stack([(g * neg_basis[None, :, k, None]).sum(1) for k in range(6)], dim=-1)


def _alpha(q: Tensor, plan: _TilePlan, out: Tensor, clamped: Tensor | None = None) -> Tensor:
    """``out = min(0.99, exp(-s))``, zeroed below 1/255; ``clamped`` marks where 0.99 applied.

    The clamp is skipped when no opacity exceeds 0.99 (alpha <= opacity then).
    """
    _log_alpha(q, plan.neg_basis, out).exp_()
    if plan.may_clamp:
        if clamped is not None:
            torch.gt(out, _ALPHA_MAX, out=clamped)
        out.clamp_(max=_ALPHA_MAX)
    return torch.nn.functional.threshold_(out, _ALPHA_MIN, 0.0)


def _transmittance(alpha: Tensor, out: Tensor) -> Tensor:
    """Inclusive transmittance ``out[..., i] = Π_{j<=i} (1 - α_j)``."""
    return _one_minus(alpha, out).cumprod_(dim=-1)


def _one_minus(x: Tensor, out: Tensor) -> Tensor:
    """``out = 1 - x`` in one pass (``torch.rsub`` has no ``out=``)."""
    return torch.sub(x.new_ones(()), x, out=out)


def _weights(alpha: Tensor, t_incl: Tensor, out: Tensor) -> Tensor:
    """Blend weights ``w_i = α_i T_i`` (``T_i`` exclusive transmittance); ``out`` may be ``alpha``."""
    out[..., 0] = alpha[..., 0]
    torch.mul(alpha[..., 1:], t_incl[..., :-1], out=out[..., 1:])
    return out


class _Composite(torch.autograd.Function):
    """Front-to-back alpha compositing of depth-sorted per-tile Gaussian lists.

    Inputs: per-pair quadratic-form coefficients ``coefs`` (M, 6) (``s = -log alpha`` as a
    function of tile-centred pixel position) and features ``feats`` (M, F) (colour, depth).
    Outputs per tile: ``Σ_i w_i f_i`` (T, P, F) and ``T_final`` (T, P).
    """

    @staticmethod
    def forward(ctx, coefs: Tensor, feats: Tensor, plan: _TilePlan) -> tuple[Tensor, Tensor]:
        P, F = plan.neg_basis.shape[0], feats.shape[1]
        coefs_p, feats_p = _padded(coefs, feats)
        accum = coefs.new_zeros(plan.num_tiles, P, F)
        t_final = coefs.new_ones(plan.num_tiles, P)
        ws = _Workspace(plan, coefs, 2)
        for idx, tiles in zip(plan.chunks, plan.chunk_tiles, strict=True):
            alpha, t_incl, _ = ws.views((idx.shape[0], P, idx.shape[1]))
            _alpha(coefs_p[idx], plan, alpha)
            _transmittance(alpha, t_incl)
            w = _weights(alpha, t_incl, out=alpha)
            accum[tiles] = w @ feats_p[idx]
            t_final[tiles] = t_incl[..., -1]
        ctx.plan = plan
        ctx.save_for_backward(coefs, feats, t_final)
        return accum, t_final

    @staticmethod
    def backward(ctx, g_accum: Tensor, g_tfinal: Tensor):
        # With v_i = f_i · dL/daccum and suffix_i = Σ_{k>i} w_k v_k + T_final dL/dT_final:
        #   dL/dα_i = T_i v_i - suffix_i / (1 - α_i)
        # and since α = exp(-s), the gradient w.r.t. -s is α dL/dα = w_i v_i - suffix_i α_i / (1 - α_i).
        coefs, feats, t_final = ctx.saved_tensors
        plan: _TilePlan = ctx.plan
        P = plan.neg_basis.shape[0]
        coefs_p, feats_p = _padded(coefs, feats)
        g_coefs = torch.zeros_like(coefs_p)
        g_feats = torch.zeros_like(feats_p)
        g_accum = g_accum.contiguous()
        tg = (t_final * g_tfinal)[..., None]  # (T, P, 1)
        ws = _Workspace(plan, coefs, 4)
        for idx, tiles in zip(plan.chunks, plan.chunk_tiles, strict=True):
            alpha, t, w, wv, clamped = ws.views((idx.shape[0], P, idx.shape[1]))
            _alpha(coefs_p[idx], plan, alpha, clamped)
            _transmittance(alpha, t)
            _weights(alpha, t, out=w)
            g = g_accum[tiles]  # (B, P, F)
            g_feats[idx] = w.transpose(1, 2) @ g
            torch.matmul(g, feats_p[idx].transpose(1, 2), out=wv).mul_(w)  # w_i v_i
            suffix = torch.cumsum(wv, dim=-1, out=w)
            torch.sub(suffix[..., -1:] + tg[tiles], suffix, out=suffix)
            ratio = alpha.div_(_one_minus(alpha, out=t))  # α / (1 - α), 1 - α >= 0.01
            g_neg_s = wv.sub_(suffix.mul_(ratio))
            if clamped is not None:
                g_neg_s.masked_fill_(clamped, 0.0)  # zero gradient through the 0.99 clamp
            g_coefs[idx] = _reduce_basis(g_neg_s, plan.neg_basis)
        return g_coefs[:-1], g_feats[:-1], None


def _padded(coefs: Tensor, feats: Tensor) -> tuple[Tensor, Tensor]:
    """Append the padding row (index M): alpha exactly 0, zero features."""
    pad_c = coefs.new_zeros(1, coefs.shape[1])
    pad_c[0, 5] = _PAD_LOGIT
    return torch.cat([coefs, pad_c]), torch.cat([feats, feats.new_zeros(1, feats.shape[1])])


# ---------------------------------------------------------------------------------------------
# The rasteriser
# ---------------------------------------------------------------------------------------------


def rasterize_tiles(
    proj: Projection, opacities: Tensor, colors: Tensor, background: Tensor, width: int, height: int
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Composite projected Gaussians: (C, H, W, 3) rgb, (C, H, W, 1) alpha and depth, (C, N) radii.

    Args:
        proj: the Gaussians seen from C cameras.
        opacities: (N,) activated opacities.
        colors: (C, N, 3) colour of each Gaussian as seen from each camera.
        background: (C, 3) colour behind the Gaussians.
    """
    tile = TILE_SIZE
    C, N = proj.depths.shape
    dtype = proj.means2d.dtype

    # Opacity-aware extent: outside it alpha < 1/255, so binning by it is exact.
    with torch.no_grad():
        op = opacities.detach()[None].expand(C, N)
        log_ratio = torch.log((op * 255.0).clamp_min(1e-30))
        visible = proj.in_range & (log_ratio >= 0)
        extent = torch.sqrt(2.0 * log_ratio.clamp_min(0.0) * proj.lambda_max) * 1.001 + 1e-3
        m2 = proj.means2d.detach()
        visible &= (m2[..., 0] + extent > 0) & (m2[..., 0] - extent < width)
        visible &= (m2[..., 1] + extent > 0) & (m2[..., 1] - extent < height)
        radii = torch.where(visible, torch.ceil(3.0 * torch.sqrt(proj.lambda_max)), 0.0).to(torch.int32)
        plan = _bin_tiles(
            m2,
            proj.conics.detach(),
            log_ratio,
            extent,
            visible,
            proj.depths.detach(),
            width,
            height,
            tile,
            dtype,
            bool(op.max() > _ALPHA_MAX) if N else False,
        )

    # Per-pair quadratic-form coefficients of s = ½ dᵀ Σ'⁻¹ d - log(opacity) in tile-centred
    # coordinates (u, v): s = ½a u² + b uv + ½c v² - (a μu + b μv) u - (b μu + c μv) v + s0.
    src, t_id = plan.pair_src, plan.pair_tile
    local = t_id % (plan.tiles_x * plan.tiles_y)
    centre_x = (local % plan.tiles_x).to(dtype) * tile + 0.5 * tile
    centre_y = torch.div(local, plan.tiles_x, rounding_mode="floor").to(dtype) * tile + 0.5 * tile
    log_op = torch.log(opacities.clamp_min(1e-30))[None].expand(C, N)
    geom = torch.cat([proj.means2d, proj.conics, log_op[..., None]], -1).reshape(C * N, 6)
    mx, my, a, b, c, lo = geom.index_select(0, src).unbind(-1)
    mu, mv = mx - centre_x, my - centre_y
    au_bv, bu_cv = a * mu + b * mv, b * mu + c * mv
    s0 = 0.5 * (au_bv * mu + bu_cv * mv) - lo
    coefs = torch.stack([0.5 * a, b, 0.5 * c, -au_bv, -bu_cv, s0], dim=-1)
    feats = torch.cat([colors, proj.depths[..., None]], -1).reshape(C * N, 4).index_select(0, src)

    accum, t_final = _Composite.apply(coefs, feats, plan)
    accum, t_final = _untile(accum, plan, C, width, height), _untile(t_final[..., None], plan, C, width, height)
    alpha = 1.0 - t_final
    rgb = accum[..., :3] + t_final * background[:, None, None, :]
    depth = accum[..., 3:4] / alpha.clamp_min(1e-10)
    return rgb, alpha, depth, radii


def _untile(x: Tensor, plan: _TilePlan, C: int, width: int, height: int) -> Tensor:
    """(C·TY·TX, P, F) per-tile values -> (C, H, W, F) image (edge tiles cropped)."""
    t = plan.tile
    x = x.reshape(C, plan.tiles_y, plan.tiles_x, t, t, x.shape[-1]).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(C, plan.tiles_y * t, plan.tiles_x * t, -1)[:, :height, :width]
