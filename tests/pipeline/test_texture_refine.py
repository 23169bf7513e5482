"""Stage 2 (texture refinement) computes what the authors' reference computes: Adam on the
texture's logits with sigmoid after sampling, and the front term masked by the rendered mesh's
coverage and facing angle (Stable Zero123 by default). Real renders of a small textured cube."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from tiny_models import KINDS, blob_rgba, condition_for  # tests/ is on sys.path

from microdreamer_core.diffusion.models import Condition
from microdreamer_core.errors import InputError
from microdreamer_core.pipeline.condition import make_condition
from microdreamer_core.pipeline.generate import generate
from microdreamer_core.pipeline.presets import tiny_preset
from microdreamer_core.pipeline.texture_refine import (
    TextureRefineConfig,
    fit_texture,
    front_mask,
    front_reference,
    refine_texture,
    texture_logit,
)
from microdreamer_core.render.mesh import render_mesh
from microdreamer_core.scene.cameras import orbit_cameras
from microdreamer_core.scene.mesh import Mesh

BLOCK = 8  # texels per cube face, per side; the faces sit in a 3 x 2 grid of blocks
# (outward normal, texture block (row, column)) of each face
FACES = {
    "+x": ((1, 0, 0), (0, 0)),
    "-x": ((-1, 0, 0), (0, 1)),
    "+y": ((0, 1, 0), (0, 2)),
    "-y": ((0, -1, 0), (1, 0)),
    "+z": ((0, 0, 1), (1, 1)),
    "-z": ((0, 0, -1), (1, 2)),
}


def textured_cube(texture: torch.Tensor, half: float = 0.5) -> Mesh:
    """A cube with flat per-face normals; each face maps to the inner 6 x 6 texel centres of its
    own 8 x 8 block, so the bilinear footprints of two faces never share a texel."""
    th, tw = texture.shape[:2]
    verts, uvs, normals, faces = [], [], [], []
    for normal, (row, col) in FACES.values():
        n = torch.tensor(normal, dtype=torch.float32)
        t1 = torch.tensor([0.0, 1.0, 0.0]) if n[1] == 0 else torch.tensor([1.0, 0.0, 0.0])
        t2 = torch.linalg.cross(n, t1)
        base = len(verts)
        for a, b in ((0, 0), (1, 0), (1, 1), (0, 1)):
            verts.append(half * (n + (2 * a - 1) * t1 + (2 * b - 1) * t2))
            x = col * BLOCK + 1 + 5 * a  # continuous texel coordinate (centres at integers): 1 .. 6 in the block
            y = row * BLOCK + 1 + 5 * b
            uvs.append(torch.tensor([(x + 0.5) / tw, 1.0 - (y + 0.5) / th]))
            normals.append(n)
        faces += [[base, base + 1, base + 2], [base, base + 2, base + 3]]
    return Mesh(
        torch.stack(verts), torch.tensor(faces), uvs=torch.stack(uvs), texture=texture, normals=torch.stack(normals)
    )


def block(texture: torch.Tensor, face: str) -> torch.Tensor:
    """The texels a face samples (its block's inner 6 x 6)."""
    row, col = FACES[face][1]
    return texture[row * BLOCK + 1 : row * BLOCK + 7, col * BLOCK + 1 : col * BLOCK + 7]


def random_texture(seed: int = 0, lo: float = 0.2, hi: float = 0.8) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return lo + (hi - lo) * torch.rand(2 * BLOCK, 3 * BLOCK, 3, generator=g)


def test_render_mesh_activates_the_texture_after_sampling():
    """``texture_activation`` acts on the bilinearly sampled value: sigmoid(sample(raw))."""
    raw = 6.0 * random_texture(1, -1.0, 1.0)  # logits far apart: sampling and sigmoid do not commute
    mesh = textured_cube(raw)
    cams = orbit_cameras([-25.0, 10.0], [30.0, 200.0], 2.5, 48)
    plain = render_mesh(mesh, cams, backend="torch")
    active = render_mesh(mesh, cams, backend="torch", texture_activation=torch.sigmoid)
    cover = plain.alpha[..., 0] > 0
    assert cover.sum() > 500
    assert torch.allclose(active.rgb[cover], torch.sigmoid(plain.rgb[cover]), atol=1e-6)
    assert torch.equal(active.rgb[~cover], plain.rgb[~cover])  # background untouched (white)
    activated_first = render_mesh(textured_cube(torch.sigmoid(raw)), cams, backend="torch").rgb
    assert (activated_first[cover] - active.rgb[cover]).abs().max() > 0.05  # not sigmoid-then-sample


def test_the_parameter_is_a_logit_and_a_texel_moves_less_than_0_06_per_step():
    """Adam at lr 0.2 on logits: a texel whose target is 1e-4 away moves by <= ~0.05 per step
    (optimising the colours directly at lr 0.2 moves it by ~0.2)."""
    texture = random_texture(0)
    mesh = textured_cube(texture)
    cams = orbit_cameras([-30.0] * 4 + [30.0] * 4, [0, 90, 180, 270, 45, 135, 225, 315], 2.2, 32)
    targets = render_mesh(textured_cube(texture + 1e-4), cams, backend="torch").rgb

    start = fit_texture(mesh, cams, targets, steps=0, backend="torch")
    assert start.losses == [] and torch.allclose(start.raw, texture_logit(texture))
    assert (torch.sigmoid(start.raw) - texture).abs().max() < 1e-5 and (start.texture - texture).abs().max() < 1e-5
    ends = torch.tensor([0.0, 0.5, 1.0])  # clamped to [1e-6, 1 - 1e-6] first: finite logits
    assert torch.isfinite(texture_logit(ends)).all() and (torch.sigmoid(texture_logit(ends)) - ends).abs().max() < 1e-5

    seen = [texture]
    fit = fit_texture(
        mesh,
        cams,
        targets,
        steps=6,
        lr=0.2,
        backend="torch",
        on_step=lambda k, raw: seen.append(torch.sigmoid(raw.clone())),
    )
    assert len(seen) == 7 and len(fit.losses) == 6
    assert torch.allclose(seen[-1], fit.texture) and torch.allclose(fit.texture, torch.sigmoid(fit.raw))
    moves = torch.stack([(b - a).abs().amax() for a, b in zip(seen, seen[1:], strict=False)])
    assert (moves < 0.06).all(), moves
    assert moves[0] > 0.04  # the bound is nearly reached: Adam's first step is ~lr in logit space


def test_front_mask_is_the_rendered_coverage_facing_the_camera_not_the_input_alpha(models):
    """An input whose alpha is all zero still pulls the texels that face the front camera (the
    top, seen from 70 degrees above: viewcos 0.94); the visible +z side (viewcos 0.34) gets no
    gradient from the front term, nor do the hidden faces."""
    texture = torch.full((2 * BLOCK, 3 * BLOCK, 3), 0.3)
    mesh = textured_cube(texture)
    cond = Condition(image=torch.zeros(64, 64, 4), reference_elevation=-70.0)  # alpha 0 everywhere (rgb black)
    cfg = dataclasses.replace(TextureRefineConfig(), reference_resolution=64)
    ref = front_reference(models["zero123"], cond, cfg)
    assert ref is not None and torch.equal(ref.image.rgb, torch.ones(1, 64, 64, 3))  # composited on white

    out = render_mesh(mesh, ref.image.camera, backend="torch")
    mask = front_mask(out, ref.image.camera)
    covered = out.alpha[..., 0] > 0
    assert mask.shape == (1, 64, 64, 1) and not mask.requires_grad
    assert mask.sum() > 200 and (covered & ~mask[..., 0]).sum() > 100  # the +z side is seen but masked out
    assert not (mask[..., 0] & ~covered).any()

    # The view term is exactly zero (the targets are the fit's own renders), so one step shows the
    # front term's gradient alone: Adam leaves a texel with zero gradient exactly where it was.
    cams = orbit_cameras([-20.0, -20.0], [45.0, 225.0], 2.5, 32)
    targets = render_mesh(
        Mesh(mesh.vertices, mesh.faces, uvs=mesh.uvs, texture=texture_logit(texture), normals=mesh.normals),
        cams,
        backend="torch",
        texture_activation=torch.sigmoid,
    ).rgb
    fit = fit_texture(mesh, cams, targets, steps=1, lr=0.2, reference=ref, backend="torch")
    top = block(fit.texture, "+y") - block(texture, "+y")
    assert (top > 0.02).float().mean() > 0.5  # pulled towards the white input
    start = torch.sigmoid(texture_logit(texture))
    for face in ("+z", "+x", "-x", "-y", "-z"):
        assert torch.equal(block(fit.texture, face), block(start, face)), face
    assert fit.losses[0] > 0


def test_front_term_defaults_per_model(models):
    """Stable Zero123: front term at azimuth 0, the condition's elevation, 256 px. ImageDream: off
    unless reference_weight > 0 (then the same azimuth-0 camera). MVDream: never."""
    small = dataclasses.replace(TextureRefineConfig(), views=4, render_resolution=32, image_size=32, steps=1)
    mesh = textured_cube(random_texture(2))

    z = refine_texture(mesh, models["zero123"], make_condition("zero123", image=blob_rgba(), elevation=-20.0), small)
    cam = z.reference_camera
    assert cam is not None and (len(cam), cam.width, cam.height) == (1, 256, 256) and z.reference_weight == 1.0
    el, az, r = cam.spherical()
    assert torch.allclose(torch.stack([el[0], az[0], r[0]]), torch.tensor([-20.0, 0.0, 2.0]), atol=1e-4)
    assert torch.allclose(cam.c2w, orbit_cameras([-20.0], [0.0], 2.0, 256).c2w, atol=1e-6)
    off = refine_texture(
        mesh,
        models["zero123"],
        make_condition("zero123", image=blob_rgba(), elevation=-20.0),
        dataclasses.replace(small, reference_weight=0.0),
    )
    assert off.reference_camera is None and off.reference_weight == 0.0
    assert off.losses[0] < z.losses[0]  # the same view term; the front term adds to it

    i = refine_texture(mesh, models["imagedream"], condition_for("imagedream"), small)
    assert i.reference_camera is None and i.reference_weight == 0.0
    on = refine_texture(
        mesh, models["imagedream"], condition_for("imagedream"), dataclasses.replace(small, reference_weight=0.5)
    )
    assert on.reference_weight == 0.5 and on.reference_camera.width == 256
    assert torch.allclose(on.reference_camera.c2w, orbit_cameras([0.0], [0.0], 2.0, 256).c2w, atol=1e-6)

    for w in (None, 1.0):
        m = refine_texture(
            mesh, models["mvdream"], condition_for("mvdream"), dataclasses.replace(small, reference_weight=w)
        )
        assert m.reference_camera is None and m.reference_weight == 0.0


def test_fit_texture_checks_cancel_before_each_step():
    from microdreamer_core.errors import Cancelled

    texture = random_texture(3)
    mesh = textured_cube(texture)
    cams = orbit_cameras([-20.0], [30.0], 2.5, 24)
    targets = render_mesh(mesh, cams, backend="torch").rgb
    calls = []
    with pytest.raises(Cancelled):
        fit_texture(
            mesh,
            cams,
            targets,
            steps=5,
            backend="torch",
            on_step=lambda k, raw: calls.append(k),
            cancel=lambda: len(calls) >= 2,
        )
    assert calls == [1, 2]


def test_texture_refinement_fits_the_targets_for_every_kind(models):

    base = generate(
        models["zero123"], condition_for("zero123"), dataclasses.replace(tiny_preset("zero123"), refine_texture=False)
    )
    assert base.texture is None
    for kind in KINDS:
        cfg = dataclasses.replace(TextureRefineConfig(), render_resolution=64, image_size=32, steps=8, lr=0.05)
        before = models[kind].nfe
        out = refine_texture(base.mesh, models[kind], condition_for(kind), cfg)
        calls = 1 if kind == "zero123" else 2  # 8 views: one batch, or two 4-view orbits
        assert models[kind].nfe - before == calls * 10  # t=181 on the 50-step grid: 10 DDIM steps
        assert out.losses[-1] < out.losses[0]
        assert out.mesh.texture.shape == base.mesh.texture.shape and not torch.equal(
            out.mesh.texture, base.mesh.texture
        )
        assert torch.equal(out.mesh.vertices, base.mesh.vertices)  # texture only
    with pytest.raises(InputError, match="multiple of 4"):
        refine_texture(base.mesh, models["mvdream"], condition_for("mvdream"), dataclasses.replace(cfg, views=6))


def _fit_by_rendering_every_step(mesh, cams, targets, steps, lr, reference):
    """:func:`fit_texture` as it was before it rasterised once: ``render_mesh`` of the views and
    of the front view at every step (the reference implementation's loop)."""
    raw = torch.nn.Parameter(texture_logit(mesh.texture))
    optimizer = torch.optim.Adam([raw], lr=lr)
    losses = []
    for _ in range(steps):
        logits = Mesh(mesh.vertices, mesh.faces, uvs=mesh.uvs, texture=raw, normals=mesh.normals)
        rgb = render_mesh(logits, cams, backend="torch", texture_activation=torch.sigmoid).rgb
        loss = torch.nn.functional.mse_loss(rgb, targets)
        camera = reference.image.camera
        front = render_mesh(logits, camera, backend="torch", texture_activation=torch.sigmoid)
        mask = front_mask(front, camera)
        loss = loss + reference.weight * torch.nn.functional.mse_loss(front.rgb * mask, reference.image.rgb * mask)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    return raw.detach(), losses


def test_rasterising_once_gives_the_same_fit_as_rendering_every_step(models):
    """The mesh does not move, so fit_texture rasterises each view once and a step is a texture
    lookup at the covered pixels: the same renders and losses as rendering the mesh at every step;
    the logits agree to rounding (a texel's gradient sums the same pixels' terms, without the
    zeros of the background pixels, which changes the summation order of torch's accumulation)."""
    mesh = textured_cube(random_texture(4))
    cams = orbit_cameras([-20.0, 10.0, 30.0], [20.0, 150.0, 260.0], 2.4, 40)
    targets = render_mesh(textured_cube(random_texture(5)), cams, backend="torch").rgb
    cfg = dataclasses.replace(TextureRefineConfig(), reference_resolution=48)
    ref = front_reference(models["zero123"], make_condition("zero123", image=blob_rgba(), elevation=-25.0), cfg)
    fit = fit_texture(mesh, cams, targets, steps=5, lr=0.2, reference=ref, backend="torch", check_every=2)
    raw, losses = _fit_by_rendering_every_step(mesh, cams, targets, 5, 0.2, ref)
    assert fit.losses[0] == losses[0]  # the same renders, bit for bit
    assert fit.losses == pytest.approx(losses, rel=1e-6) and (fit.raw - raw).abs().max() < 1e-6


def test_a_nan_loss_raises_within_check_every_steps():
    """The loss is read on the host every ``check_every`` steps, not every step: a NaN made at
    step 3 (the targets turn to NaN in place) raises at the read after step 3, naming step 3."""
    mesh = textured_cube(random_texture(6))
    cams = orbit_cameras([-20.0], [30.0], 2.5, 24)
    targets = render_mesh(textured_cube(random_texture(7)), cams, backend="torch").rgb
    done = []

    def poison(k, raw):
        done.append(k)
        if k == 3:  # after step 3 (k = 1..): the loss of step index 3 is the first NaN
            targets.fill_(float("nan"))

    with pytest.raises(FloatingPointError, match=r"texture refinement loss became nan at step 3 \(.*steps 0-3\)"):
        fit_texture(mesh, cams, targets, steps=20, backend="torch", on_step=poison, check_every=4)
    assert done == [1, 2, 3]  # raised when recording step 3's loss, before its Adam step
    targets.copy_(render_mesh(mesh, cams, backend="torch").rgb)
    with pytest.raises(FloatingPointError, match="at step 3"):  # a NaN pending at the end is read too
        fit_texture(mesh, cams, targets, steps=4, backend="torch", on_step=poison, check_every=100)
