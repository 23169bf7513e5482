"""transforms.json I/O and its error messages."""

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from microdreamer_core.errors import InputError
from microdreamer_core.io.outputs import atomic_path
from microdreamer_core.scene.cameras import orbit_cameras
from microdreamer_core.scene.views import PosedViews
from microdreamer_core.io.transforms import load_cameras, load_transforms, save_transforms


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
    (tmp_path / "transforms.json").write_text(json.dumps(
        {"camera_angle_x": fovx, "frames": [{"file_path": "./train/r_0", "transform_matrix": np.eye(4).tolist()}]}))
    v = load_transforms(tmp_path)
    assert (v.cameras.width, v.cameras.height) == (40, 20)
    assert v.cameras.fovx[0].item() == pytest.approx(fovx, rel=1e-5)
    assert v.cameras.focal[0].item() == pytest.approx(40 / (2 * math.tan(fovx / 2)), rel=1e-5)


def _write(tmp_path, meta):
    (tmp_path / "transforms.json").write_text(meta if isinstance(meta, str) else json.dumps(meta))


@pytest.mark.parametrize("meta, message", [
    ("{not json", "not valid JSON"),
    ({"frames": []}, "camera_angle_x"),
    ({"camera_angle_x": 0.8, "frames": []}, "no frames"),
    ({"camera_angle_x": 0.8, "frames": [{"file_path": "a.png"}]}, "transform_matrix"),
    ({"camera_angle_x": 0.8, "frames": [{"file_path": "a.png", "transform_matrix": [[1, 2]]}]}, "4x4"),
    ({"camera_angle_x": 0.8, "frames": [{"file_path": "nope.png", "transform_matrix": np.eye(4).tolist()}]}, "does not exist"),
    ({"camera_angle_x": 80, "frames": [{"file_path": "a.png", "transform_matrix": np.eye(4).tolist()}]}, "radians"),
])
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
    _write(tmp_path, {"camera_angle_x": 0.8, "frames": [{"file_path": "a.png", "transform_matrix": eye},
                                                        {"file_path": "b.png", "transform_matrix": eye}]})
    with pytest.raises(InputError, match="mixed sizes"):
        load_transforms(tmp_path)
    _write(tmp_path, {"camera_angle_x": 0.8, "frames": [{"file_path": "c.png", "transform_matrix": eye}]})
    with pytest.raises(InputError, match="no alpha channel"):
        load_transforms(tmp_path)


def test_posed_views_validation_and_resize():
    v = _views(size=32)
    with pytest.raises(InputError, match="RGBA"):
        PosedViews(v.images[..., :3], v.cameras)
    with pytest.raises(InputError, match="cameras"):
        PosedViews(v.images[:2], v.cameras)
    bad = v.images.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(InputError, match="NaN"):
        PosedViews(bad, v.cameras)
    small = v.resized(16)
    assert small.images.shape == (3, 16, 16, 4) and small.cameras.width == 16
    assert small.cameras.focal[0].item() == pytest.approx(v.cameras.focal[0].item() / 2)
    # white composite
    rgb = v.rgb_on((1.0, 1.0, 1.0))
    a = v.images[..., 3:]
    assert torch.allclose(rgb, v.images[..., :3] * a + (1 - a))


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("boom")
    assert target.read_bytes() == b"old" and len(list(tmp_path.iterdir())) == 1
    with pytest.raises(InputError, match="does not exist"):
        with atomic_path(tmp_path / "nope" / "x.bin"):
            pass


def test_from_images_and_masks():
    cams = orbit_cameras([0.0, 0.0], [0.0, 90.0], 2.0, 8)
    images, masks = torch.rand(2, 8, 8, 3), torch.rand(2, 8, 8)
    v = PosedViews.from_images_and_masks(images, masks, cams)
    assert torch.equal(v.images[..., 3], masks) and torch.equal(v.images[..., :3], images)
    assert torch.allclose(PosedViews.from_images_and_masks(images, masks, cams, invert_mask=True).masks, 1 - masks)
    with pytest.raises(InputError, match="one mask and one camera per image"):
        PosedViews.from_images_and_masks(images, masks[:1], cams)
    with pytest.raises(InputError, match="masks are 4x4 but images are 8x8"):
        PosedViews.from_images_and_masks(images, masks[:, :4, :4], cams)
    with pytest.raises(InputError, match="image batch"):
        PosedViews.from_images_and_masks(images[0], masks, cams)


def test_check_cancel_accepts_raising_or_true_returning_hooks():
    from microdreamer_core.errors import Cancelled, check_cancel

    check_cancel(None, "x")
    check_cancel(lambda: False, "x")
    with pytest.raises(Cancelled, match="cancelled mesh"):
        check_cancel(lambda: True, "mesh")
