"""The command line: real runs on small data, and one clear line for every kind of bad input."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from microdreamer_core.cameras import orbit_cameras
from microdreamer_core.cli import main
from microdreamer_core.gaussians import Gaussians, init_ball
from microdreamer_core.views import PosedViews, load_transforms, save_transforms


@pytest.fixture
def views_dir(tmp_path):
    """Six 32px views of a small red ball of Gaussians."""
    g = init_ball(300, radius=0.3, generator=torch.Generator().manual_seed(0))
    g.opacities[:] = 3.0
    g.sh0[:] = torch.tensor([1.5, -1.0, -1.0])
    cams = orbit_cameras([-20.0, 10.0] * 3, [0, 60, 120, 180, 240, 300], 2.0, 32)
    with torch.no_grad():
        out = g.render(cams, (0.0, 0.0, 0.0))
    rgb = out.rgb / out.alpha.clamp(min=1e-4)
    save_transforms(PosedViews(torch.cat([rgb.clamp(0, 1), out.alpha], -1), cams), tmp_path / "views")
    return tmp_path / "views"


def _error_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def test_reconstruct_and_render_roundtrip(views_dir, tmp_path, capsys):
    out = tmp_path / "model.ply"
    assert main(["reconstruct", str(views_dir), "--out", str(out), "--steps", "40", "--seed", "1"]) == 0
    assert "wrote" in capsys.readouterr().out
    g = Gaussians.load_ply(out)
    assert g.num > 0
    assert main(["render", str(out), "--cameras", str(views_dir / "transforms.json"), "--out", str(tmp_path / "r")]) == 0
    rendered = load_transforms(tmp_path / "r")
    original = load_transforms(views_dir)
    assert rendered.images.shape == original.images.shape
    # 40 steps already put the silhouette in the right place
    inter = ((rendered.masks > 0.5) & (original.masks > 0.5)).sum()
    union = ((rendered.masks > 0.5) | (original.masks > 0.5)).sum()
    assert inter / union > 0.5
    with Image.open(tmp_path / "r" / "images" / "r_0.png") as im:
        assert im.mode == "RGBA"


def test_render_with_resolution_override(views_dir, tmp_path):
    g = init_ball(50, generator=torch.Generator().manual_seed(0))
    g.save_ply(tmp_path / "g.ply")
    assert main(["render", str(tmp_path / "g.ply"), "--cameras", str(views_dir), "--out", str(tmp_path / "r"), "--resolution", "24"]) == 0
    assert load_transforms(tmp_path / "r").images.shape == (6, 24, 24, 4)


def test_bad_inputs_give_one_line_and_no_output(views_dir, tmp_path, capsys):
    out = tmp_path / "model.ply"
    assert main(["reconstruct", str(tmp_path / "nowhere"), "--out", str(out)]) == 2
    assert "no transforms.json" in _error_line(capsys)

    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "transforms.json").write_text("{oops")
    assert main(["reconstruct", str(tmp_path / "bad"), "--out", str(out)]) == 2
    assert "not valid JSON" in _error_line(capsys)

    assert main(["reconstruct", str(views_dir), "--out", str(tmp_path / "model.glb")]) == 2
    assert ".ply" in _error_line(capsys)

    (tmp_path / "model.xyz").write_text("1 2 3")
    assert main(["render", str(tmp_path / "model.xyz"), "--cameras", str(views_dir), "--out", str(tmp_path / "r")]) == 2
    assert "unknown model type" in _error_line(capsys)

    g = init_ball(10, generator=torch.Generator().manual_seed(0))
    g.save_ply(tmp_path / "nan.ply")
    from plyfile import PlyData
    ply = PlyData.read(str(tmp_path / "nan.ply"), mmap=False)
    ply["vertex"]["x"][0] = np.nan
    ply.write(str(tmp_path / "nan.ply"))
    assert main(["render", str(tmp_path / "nan.ply"), "--cameras", str(views_dir), "--out", str(tmp_path / "r")]) == 2
    assert "NaN" in _error_line(capsys)
    assert not (tmp_path / "r").exists()

    mixed = tmp_path / "mixed"
    mixed.mkdir()
    Image.fromarray(np.zeros((8, 8, 4), np.uint8)).save(mixed / "a.png")
    Image.fromarray(np.zeros((9, 9, 4), np.uint8)).save(mixed / "b.png")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(mixed / "c.png")
    frames = [{"file_path": n, "transform_matrix": np.eye(4).tolist()} for n in ("a.png", "b.png")]
    (mixed / "transforms.json").write_text(json.dumps({"camera_angle_x": 0.8, "frames": frames}))
    assert main(["reconstruct", str(mixed), "--out", str(out)]) == 2
    assert "mixed sizes" in _error_line(capsys)
    (mixed / "transforms.json").write_text(json.dumps({"camera_angle_x": 0.8, "frames": [{"file_path": "c.png", "transform_matrix": np.eye(4).tolist()}]}))
    assert main(["reconstruct", str(mixed), "--out", str(out)]) == 2
    assert "no alpha" in _error_line(capsys)
    assert not out.exists() and not list(tmp_path.glob(".model.ply.*"))


def test_interrupt_leaves_no_partial_file(views_dir, tmp_path, monkeypatch, capsys):
    import microdreamer_core.reconstruct as rec

    calls = {"n": 0}
    real_step = rec.GaussianFitter.step

    def step(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real_step(self, *a, **k)

    monkeypatch.setattr(rec.GaussianFitter, "step", step)
    out = tmp_path / "model.ply"
    assert main(["reconstruct", str(views_dir), "--out", str(out), "--steps", "10"]) == 130
    assert "interrupted" in capsys.readouterr().err
    assert not out.exists() and not list(tmp_path.glob(".model.ply.*"))


def test_console_entry_point_help():
    r = subprocess.run([sys.executable, "-m", "microdreamer_core.cli", "--help"], capture_output=True, text=True)
    assert r.returncode == 0
    for cmd in ("reconstruct", "render", "demo"):
        assert cmd in r.stdout


def test_render_a_glb_mesh(views_dir, tmp_path):
    import trimesh

    box = trimesh.creation.box(extents=(0.6, 0.6, 0.6))
    box.visual.vertex_colors = np.tile(np.array([[30, 200, 40, 255]], np.uint8), (len(box.vertices), 1))
    box.export(tmp_path / "box.glb")
    assert main(["render", str(tmp_path / "box.glb"), "--cameras", str(views_dir), "--out", str(tmp_path / "r")]) == 0
    v = load_transforms(tmp_path / "r")
    covered = v.masks > 0.5
    assert 0.05 < covered.float().mean() < 0.6  # a box in the middle of each view
    green = v.images[..., :3][covered].mean(0)
    assert green[1] > 0.6 and green[0] < 0.3 and green[2] < 0.3, green
