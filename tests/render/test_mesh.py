"""The mesh rasteriser's conventions and gradients (torch backend): rasterize, interpolate, texture, render_mesh."""

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from microdreamer_core.eval.demo_object import make_demo_mesh
from microdreamer_core.io.mesh_files import load_mesh
from microdreamer_core.render.mesh import interpolate, rasterize, render_mesh, texture
from microdreamer_core.scene.cameras import Cameras, orbit_cameras
from microdreamer_core.scene.mesh import Mesh, normalize_to_unit_sphere

DUCK = Path(__file__).resolve().parents[3] / "shared" / "assets" / "Duck.glb"


def _duck() -> Mesh:
    if not DUCK.is_file():
        pytest.skip(f"real test data not found at {DUCK}: put the shared/ folder beside the repo")
    return load_mesh(DUCK)


def _clip(xy, z=0.0, w=1.0) -> torch.Tensor:
    """(1, V, 4) clip positions from NDC xy pairs at a common depth."""
    xy = torch.as_tensor(xy, dtype=torch.float32)
    n = len(xy)
    return torch.cat([xy * w, torch.full((n, 1), z * w), torch.full((n, 1), w)], dim=-1)[None]


def _pixel_ndc(h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    """NDC x, y of every pixel centre, row 0 at the top (y = +1)."""
    x = (2 * torch.arange(w) + 1) / w - 1
    y = 1 - (2 * torch.arange(h) + 1) / h
    return x[None, :].expand(h, w), y[:, None].expand(h, w)


def test_triangle_coverage_orientation_and_barycentrics():
    H = W = 64
    verts = [(-0.5, 0.2), (0.5, 0.2), (0.0, 0.9)]  # upper half of clip space
    rast = rasterize(_clip(verts), torch.tensor([[0, 1, 2]]), (H, W), backend="torch")
    assert rast.shape == (1, H, W, 4)
    hit = rast[0, ..., 3] > 0
    rows = hit.nonzero()[:, 0]
    assert rows.max() < H // 2  # upper half of clip space = upper rows
    assert set(rast[0, ..., 3][hit].tolist()) == {1.0}
    assert (rast[0][~hit] == 0).all()
    # Coverage equals the count of pixel centres strictly inside the triangle (area 0.35 of 4).
    assert abs(int(hit.sum()) - 0.35 / 4 * H * W) < 0.1 * H * W * 0.35 / 4
    # nvdiffrast layout: u, v are the weights of vertices 0 and 1; vertex 2 gets 1 - u - v.
    weights = interpolate(torch.eye(3), rast, torch.tensor([[0, 1, 2]]))[0][hit]
    assert torch.allclose(weights[:, 0], rast[0, ..., 0][hit]) and torch.allclose(weights[:, 1], rast[0, ..., 1][hit])
    assert (weights >= -1e-5).all() and torch.allclose(weights.sum(-1), torch.ones(len(weights)))
    # Interpolating the vertex NDC positions gives back each pixel centre (w = 1: affine case).
    xy = interpolate(torch.tensor(verts), rast, torch.tensor([[0, 1, 2]]))[0]
    px, py = _pixel_ndc(H, W)
    assert torch.allclose(xy[hit], torch.stack([px[hit], py[hit]], -1), atol=1e-5)


def test_quad_has_no_cracks_or_gaps():
    H = W = 64
    quad = [(-0.5, -0.5), (0.5, -0.5), (0.5, 0.5), (-0.5, 0.5)]
    faces = torch.tensor([[0, 1, 2], [0, 2, 3]])
    rast = rasterize(_clip(quad), faces, (H, W), backend="torch")
    hit = rast[0, ..., 3] > 0
    assert int(hit.sum()) == 32 * 32  # pixel centres 16..47 in both axes, the diagonal covered once
    assert hit[16:48, 16:48].all()
    full = rasterize(_clip([(-1, -1), (1, -1), (1, 1), (-1, 1)]), faces, (H, W), backend="torch")
    assert (full[..., 3] > 0).all()


def test_depth_test_keeps_the_nearest_triangle():
    faces = torch.tensor([[0, 1, 2], [3, 4, 5]])
    tri = [(-0.8, -0.8), (0.8, -0.8), (0.0, 0.8)]
    near, far = _clip(tri, z=-0.2), _clip(tri, z=0.5)
    for first, second, winner in ((near, far, 1.0), (far, near, 2.0)):
        rast = rasterize(torch.cat([first, second], 1), faces, (32, 32), backend="torch")
        hit = rast[0, ..., 3] > 0
        assert (rast[0, ..., 3][hit] == winner).all()
        assert torch.allclose(rast[0, ..., 2][hit], torch.tensor(-0.2))
    # Interpenetrating triangles: each wins where it is in front.
    slanted = torch.cat(
        [
            _clip(tri, z=0.0)[0, :, :],
            torch.tensor([[-0.8, -0.8, -0.5, 1.0], [0.8, -0.8, 0.5, 1.0], [0.0, 0.8, 0.0, 1.0]]),
        ]
    )
    rast = rasterize(slanted[None], faces, (32, 32), backend="torch")
    ids = rast[0, ..., 3]
    assert (ids[16, 10:15] == 2).all() and (ids[16, 18:22] == 1).all()  # x < 0: the slanted one is nearer


def test_triangles_behind_the_camera_are_dropped_and_depth_is_clipped():
    faces = torch.tensor([[0, 1, 2]])
    behind = _clip([(-0.5, -0.5), (0.5, -0.5), (0.0, 0.5)], w=-1.0)
    assert (rasterize(behind, faces, (16, 16), backend="torch") == 0).all()
    beyond_far = _clip([(-0.5, -0.5), (0.5, -0.5), (0.0, 0.5)], z=1.5)
    assert (rasterize(beyond_far, faces, (16, 16), backend="torch") == 0).all()


def test_perspective_correct_interpolation_on_a_slanted_quad():
    """Interpolated world positions of a receding quad must lie on each pixel's camera ray."""
    H = W = 48
    cam = Cameras(torch.eye(4), math.radians(60.0), W, H)  # at the origin, looking down -z
    world = torch.tensor([[-1.0, -1.0, -2.0], [1.0, -1.0, -5.0], [1.0, 1.0, -5.0], [-1.0, 1.0, -2.0]])
    faces = torch.tensor([[0, 1, 2], [0, 2, 3]])
    homo = torch.cat([world, torch.ones(4, 1)], -1)
    pos = (cam.full_projection()[0] @ homo.T).T[None]
    rast = rasterize(pos, faces, (H, W), backend="torch")
    hit = rast[0, ..., 3] > 0
    assert hit.float().mean() > 0.2
    p = interpolate(world, rast, faces)[0][hit]  # (N, 3)
    clip = (cam.full_projection()[0] @ torch.cat([p, torch.ones(len(p), 1)], -1).T).T
    ndc = clip[:, :2] / clip[:, 3:]
    px, py = _pixel_ndc(H, W)
    # (Screen-space affine barycentrics would miss by up to 0.27 in NDC on this quad.)
    assert torch.allclose(ndc, torch.stack([px[hit], py[hit]], -1), atol=2e-4)
    # z/w channel matches the projected depth of the interpolated point.
    assert torch.allclose(rast[0, ..., 2][hit], clip[:, 2] / clip[:, 3], atol=1e-4)


def test_texture_orientation_and_filtering():
    tex = torch.zeros(2, 1, 3)
    tex[0, 0] = torch.tensor([1.0, 0.0, 0.0])  # top row red
    tex[1, 0] = torch.tensor([0.0, 0.0, 1.0])  # bottom row blue
    uv = torch.tensor([[0.5, 1.0], [0.5, 0.75], [0.5, 0.25], [0.5, 0.0], [0.5, 0.5]]).view(1, 1, 5, 2)
    out = texture(tex, uv, wrap="clamp")[0, 0]
    assert torch.allclose(out[:4], torch.tensor([[1.0, 0, 0], [1, 0, 0], [0, 0, 1], [0, 0, 1]]))
    assert torch.allclose(out[4], torch.tensor([0.5, 0.0, 0.5]))
    # Bilinear filtering agrees with grid_sample (align_corners=False, border = clamp).
    g = torch.Generator().manual_seed(0)
    tex = torch.rand(2, 7, 5, 3, generator=g)
    uv = torch.rand(2, 4, 6, 2, generator=g) * 1.4 - 0.2
    ref = F.grid_sample(
        tex.permute(0, 3, 1, 2),
        torch.stack([uv[..., 0] * 2 - 1, 1 - uv[..., 1] * 2], -1),
        mode="bilinear",
        padding_mode="border",
        align_corners=False,
    ).permute(0, 2, 3, 1)
    assert torch.allclose(texture(tex, uv, wrap="clamp"), ref, atol=1e-5)
    # Repeat wrapping is periodic.
    assert torch.allclose(
        texture(tex, uv, wrap="repeat"), texture(tex, uv + torch.tensor([1.0, -2.0]), wrap="repeat"), atol=1e-5
    )


def test_gradients_fit_texture_and_vertex_colours():
    cams = orbit_cameras([-10.0, 10.0], [20.0, 160.0], 2.0, 32)
    target = make_demo_mesh(32)
    base = Mesh(
        target.vertices,
        target.faces,
        uvs=target.uvs,
        texture=torch.full_like(target.texture, 0.5),
        normals=target.normals,
    )
    goal = render_mesh(target, cams, backend="torch").rgb

    tex = base.texture.clone().requires_grad_(True)
    colors = torch.full((base.num_vertices, 3), 0.5, requires_grad=True)
    opt = torch.optim.Adam([tex, colors], lr=0.05)
    losses = []
    for _ in range(15):
        textured = render_mesh(
            Mesh(base.vertices, base.faces, uvs=base.uvs, texture=tex, normals=base.normals), cams, backend="torch"
        )
        painted = render_mesh(
            Mesh(base.vertices, base.faces, vertex_colors=colors, normals=base.normals), cams, backend="torch"
        )
        loss = (textured.rgb - goal).square().mean() + (painted.rgb - goal).square().mean()
        opt.zero_grad()
        loss.backward()
        assert tex.grad.abs().sum() > 0 and colors.grad.abs().sum() > 0
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.6 * losses[0]


def test_barycentrics_are_differentiable_wrt_positions():
    """Like nvdiffrast: moving a vertex changes interpolated values inside (not the coverage)."""
    faces = torch.tensor([[0, 1, 2]])
    pos = _clip([(-0.9, -0.9), (0.9, -0.9), (0.0, 0.9)], z=0.1, w=1.5).requires_grad_(True)
    attr = torch.tensor([[1.0], [0.0], [0.0]])

    def value(p):
        return interpolate(attr, rasterize(p, faces, (16, 16), backend="torch"), faces)[0, 8, 8, 0]

    value(pos).backward()
    eps = 1e-3
    for k in range(3):
        for c in range(4):
            d = torch.zeros_like(pos)
            d[0, k, c] = eps
            fd = (value(pos.detach() + d) - value(pos.detach() - d)) / (2 * eps)
            assert float(pos.grad[0, k, c]) == pytest.approx(float(fd), abs=2e-3)


def test_render_duck_from_orbit_cameras():
    duck = normalize_to_unit_sphere(_duck(), 0.6)
    cams = orbit_cameras([0.0, 0.0, -30.0, 0.0], [0.0, 90.0, 180.0, 270.0], 2.0, 128)
    out = render_mesh(duck, cams, background=(1.0, 1.0, 1.0), backend="torch")
    assert out.rgb.shape == (4, 128, 128, 3) and out.alpha.shape == (4, 128, 128, 1)
    a = out.alpha[..., 0]
    frac = a.mean((1, 2))
    assert ((frac > 0.05) & (frac < 0.4)).all(), frac
    ys, xs = torch.meshgrid(torch.arange(128.0), torch.arange(128.0), indexing="ij")
    cx, cy = (a * xs).sum((1, 2)) / a.sum((1, 2)), (a * ys).sum((1, 2)) / a.sum((1, 2))
    assert ((cx - 63.5).abs() < 15).all() and ((cy - 63.5).abs() < 15).all(), (cx, cy)
    # Depth: camera at distance 2, object within radius 0.6.
    d = out.depth[..., 0][a > 0]
    assert d.min() > 1.35 and d.max() < 2.65
    assert torch.allclose(out.normal.norm(dim=-1)[a > 0], torch.ones(int((a > 0).sum())), atol=1e-4)
    # Upright: the front view's top third of the silhouette is the green mallard head, the
    # rest the beige body; the background stays white.
    front = out.rgb[0]
    rows = a[0].any(1).nonzero()[:, 0]
    top, bottom = int(rows.min()), int(rows.max())
    cut = top + (bottom - top) // 4
    head = front[top:cut][a[0, top:cut] > 0].mean(0)
    body = front[cut:][a[0, cut:] > 0].mean(0)
    assert head[1] > head[0] and head[1] > head[2], head
    assert body[0] > body[2] + 0.1, body
    assert torch.allclose(out.rgb[a == 0], torch.ones(3))
