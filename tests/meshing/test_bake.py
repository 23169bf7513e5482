"""Texture baking: colour dilation, and a bake that renders like the Gaussians it came from."""

from __future__ import annotations

import torch

from microdreamer_core.meshing.bake import BakeConfig, bake_texture, dilate
from microdreamer_core.meshing.extract import ExtractConfig, extract_mesh, gaussians_on_surface
from microdreamer_core.meshing.uv import unwrap_uv


def test_dilate_fills_only_around_the_mask():
    img = torch.zeros(20, 20, 3)
    mask = torch.zeros(20, 20, dtype=torch.bool)
    img[8:12, 8:12] = torch.tensor([0.2, 0.4, 0.6])
    mask[8:12, 8:12] = True
    out = dilate(img, mask, 3)
    torch.testing.assert_close(out[5:15, 5:15], torch.tensor([0.2, 0.4, 0.6]).expand(10, 10, 3))
    assert float(out[:4].abs().sum()) == 0.0


def test_bake_reproduces_a_known_model():
    """Gaussians laid on the textured demo object: extract + unwrap + bake must render like them."""
    from microdreamer_core.eval.demo_object import make_demo_mesh
    from microdreamer_core.eval.metrics import psnr
    from microdreamer_core.eval.protocol import render_rgba
    from microdreamer_core.scene.cameras import orbit_cameras

    demo = make_demo_mesh(128)
    g = gaussians_on_surface(demo, 12000, normal_scale=0.01)
    mesh = extract_mesh(g, ExtractConfig(resolution=96, target_faces=8000))
    unwrapped = unwrap_uv(mesh, texture_size=256)
    baked = bake_texture(unwrapped, g, BakeConfig(texture_size=256, render_resolution=160, azimuths=6, padding=4))
    assert baked.texture.shape == (256, 256, 3)
    assert float(baked.texture.min()) >= 0 and float(baked.texture.max()) <= 1

    cams = orbit_cameras([0.0, -30.0, 20.0, 0.0], [30.0, 120.0, 210.0, 300.0], 2.0, 96)
    on_white = lambda x: x[..., :3] * x[..., 3:] + 1 - x[..., 3:]  # noqa: E731
    truth = on_white(render_rgba(g, cams))
    textured = psnr(on_white(render_rgba(baked, cams)), truth)
    flat = psnr(on_white(render_rgba(type(baked)(baked.vertices, baked.faces), cams)), truth)
    ground = psnr(on_white(render_rgba(baked, cams)), on_white(render_rgba(demo, cams)))
    # Measured: 23.7 dB against the Gaussians, 16.6 dB untextured (grey).
    assert textured >= 22.0 and textured > flat + 5.0, (textured, flat)
    assert ground >= 19.0, ground
