"""transforms.json I/O (NeRF-synthetic layout) and its error messages."""

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from microdreamer_core.errors import InputError
from microdreamer_core.io.transforms import load_cameras, load_transforms, save_transforms
from microdreamer_core.scene.cameras import orbit_cameras
from microdreamer_core.scene.views import PosedViews


def _views(n=3, size=16):
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(n, size, size, 4, generator=gen)
    images = (images * 255).round() / 255  # exactly representable in 8 bits
    return PosedViews(images, orbit_cameras([-10.0] * n, [0.0, 120.0, 240.0][:n], 2.0, size))


def test_roundtrip(tmp_path):
    v = _views()
    path = save_transforms(v, tmp_path / "views")
    meta = json.loads(path.read_text())
    assert meta["camera_angle_x"] == pytest.approx(math.radians(49.1), rel=1e-5)  # square: fovx == fovy
    assert meta["frames"][0]["file_path"] == "images/r_0.png"
    w = load_transforms(tmp_path / "views")
    assert torch.allclose(w.images, v.images, atol=1e-6)
    assert torch.allclose(w.cameras.c2w, v.cameras.c2w, atol=1e-6)
    assert torch.allclose(w.cameras.fovy, v.cameras.fovy, atol=1e-6)
    assert load_transforms(path).images.shape == (3, 16, 16, 4)  # the json itself works too
    cams = load_cameras(path)
    assert (cams.width, cams.height) == (16, 16) and torch.allclose(cams.c2w, v.cameras.c2w, atol=1e-6)
    assert load_cameras(path, resolution=64).width == 64


def test_nerf_synthetic_style_paths_without_extension_and_non_square(tmp_path):
    (tmp_path / "train").mkdir()
    Image.fromarray(np.zeros((20, 40, 4), np.uint8)).save(tmp_path / "train" / "r_0.png")
    fovx = 0.69
    (tmp_path / "transforms.json").write_text(
        json.dumps(
            {"camera_angle_x": fovx, "frames": [{"file_path": "./train/r_0", "transform_matrix": np.eye(4).tolist()}]}
        )
    )
    v = load_transforms(tmp_path)
    assert (v.cameras.width, v.cameras.height) == (40, 20)
    assert v.cameras.fovx[0].item() == pytest.approx(fovx, rel=1e-5)
    assert v.cameras.focal[0].item() == pytest.approx(40 / (2 * math.tan(fovx / 2)), rel=1e-5)


def _write(tmp_path, meta):
    (tmp_path / "transforms.json").write_text(meta if isinstance(meta, str) else json.dumps(meta))


@pytest.mark.parametrize(
    "meta, message",
    [
        ("{not json", "not valid JSON"),
        ({"frames": []}, "camera_angle_x"),
        ({"camera_angle_x": 0.8, "frames": []}, "no frames"),
        ({"camera_angle_x": 0.8, "frames": [{"file_path": "a.png"}]}, "transform_matrix"),
        ({"camera_angle_x": 0.8, "frames": [{"file_path": "a.png", "transform_matrix": [[1, 2]]}]}, "4x4"),
        (
            {"camera_angle_x": 0.8, "frames": [{"file_path": "nope.png", "transform_matrix": np.eye(4).tolist()}]},
            "does not exist",
        ),
        ({"camera_angle_x": 80, "frames": [{"file_path": "a.png", "transform_matrix": np.eye(4).tolist()}]}, "radians"),
    ],
)
def test_malformed_transforms(tmp_path, meta, message):
    Image.fromarray(np.zeros((8, 8, 4), np.uint8)).save(tmp_path / "a.png")
    _write(tmp_path, meta)
    with pytest.raises(InputError, match=message):
        load_transforms(tmp_path)


def test_missing_transforms(tmp_path):
    with pytest.raises(InputError, match="no transforms.json"):
        load_transforms(tmp_path)


def test_mixed_sizes_and_missing_alpha(tmp_path):
    Image.fromarray(np.zeros((8, 8, 4), np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(np.zeros((16, 16, 4), np.uint8)).save(tmp_path / "b.png")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "c.png")
    eye = np.eye(4).tolist()
    _write(
        tmp_path,
        {
            "camera_angle_x": 0.8,
            "frames": [
                {"file_path": "a.png", "transform_matrix": eye},
                {"file_path": "b.png", "transform_matrix": eye},
            ],
        },
    )
    with pytest.raises(InputError, match="mixed sizes"):
        load_transforms(tmp_path)
    _write(tmp_path, {"camera_angle_x": 0.8, "frames": [{"file_path": "c.png", "transform_matrix": eye}]})
    with pytest.raises(InputError, match="no alpha channel"):
        load_transforms(tmp_path)
