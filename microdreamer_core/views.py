"""Posed views: RGBA images with their cameras, and NeRF-synthetic ``transforms.json`` I/O.

The on-disk layout is the one of the NeRF synthetic data sets that most tools read and write:

    transforms.json   {"camera_angle_x": <horizontal fov, radians>,
                       "frames": [{"file_path": "images/r_0", "transform_matrix": <4x4 OpenGL c2w>}, ...]}
    images/r_0.png    RGBA, straight alpha, object on a transparent background

``file_path`` is relative to the json file and may omit the ``.png`` extension.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from .cameras import Cameras
from .errors import InputError, atomic_path

__all__ = ["PosedViews", "load_transforms", "load_cameras", "save_transforms", "load_rgba", "save_rgba"]


@dataclass
class PosedViews:
    """N images with their cameras.

    Attributes:
        images: (N, H, W, 4) float RGBA in [0, 1], straight (not premultiplied) alpha.
        cameras: the N cameras, at the images' size.
    """

    images: Tensor
    cameras: Cameras

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or self.images.shape[-1] != 4:
            raise InputError(f"posed views need (N, H, W, 4) RGBA images, got shape {tuple(self.images.shape)}")
        n, h, w, _ = self.images.shape
        if n != len(self.cameras):
            raise InputError(f"{n} images but {len(self.cameras)} cameras: give one camera per image")
        if (w, h) != (self.cameras.width, self.cameras.height):
            self.cameras = self.cameras.with_resolution(w, h)
        if not torch.isfinite(self.images).all():
            raise InputError("images contain NaN or infinite values: check the node or file that produced them")

    def __len__(self) -> int:
        return self.images.shape[0]

    @classmethod
    def from_images_and_masks(cls, images: Tensor, masks: Tensor, cameras: Cameras, invert_mask: bool = False) -> "PosedViews":
        """Pack an (N, H, W, 3) image batch and an (N, H, W) mask batch (1 = object) as RGBA views.

        ``invert_mask`` takes ``1 - mask``, for masks where 1 means transparent (ComfyUI's LoadImage).
        """
        if images.ndim != 4 or images.shape[-1] not in (3, 4):
            raise InputError(f"images must be an image batch (N, H, W, 3), got shape {tuple(images.shape)}")
        if masks.ndim == 2:
            masks = masks[None]
        if masks.ndim != 3:
            raise InputError(f"masks must be a mask batch (N, H, W), got shape {tuple(masks.shape)}")
        n, h, w = images.shape[:3]
        if masks.shape[0] != n or len(cameras) != n:
            raise InputError(
                f"{n} images, {masks.shape[0]} masks and {len(cameras)} cameras: give exactly one mask and one "
                "camera per image (batch the views in the same order)"
            )
        if tuple(masks.shape[1:]) != (h, w):
            raise InputError(
                f"masks are {masks.shape[2]}x{masks.shape[1]} but images are {w}x{h}: use the masks that belong to "
                "these images (an image without alpha gets a 64x64 empty mask from LoadImage: remove the background first)"
            )
        alpha = masks.to(images)
        if invert_mask:
            alpha = 1.0 - alpha
        rgba = torch.cat([images[..., :3], alpha[..., None]], dim=-1).float().clamp(0.0, 1.0)
        return cls(rgba, cameras.with_resolution(w, h))

    @property
    def masks(self) -> Tensor:
        """(N, H, W) object coverage (the alpha channel)."""
        return self.images[..., 3]

    def rgb_on(self, background: tuple[float, float, float] | Tensor = (1.0, 1.0, 1.0)) -> Tensor:
        """(N, H, W, 3) colours composited over a solid background."""
        bg = torch.as_tensor(background, dtype=self.images.dtype, device=self.images.device)
        a = self.images[..., 3:]
        return self.images[..., :3] * a + bg * (1.0 - a)

    def resized(self, resolution: int) -> "PosedViews":
        """Square-resize the images (area filter when shrinking) and the cameras with them."""
        h, w = self.images.shape[1:3]
        if (h, w) == (resolution, resolution):
            return self
        if h != w:
            raise InputError(f"views are {w}x{h}; resizing to a square {resolution} needs square images")
        x = self.images.permute(0, 3, 1, 2)
        # Resize premultiplied colour so the transparent background does not bleed into edges.
        x = torch.cat([x[:, :3] * x[:, 3:], x[:, 3:]], dim=1)
        mode = "area" if resolution < h else "bilinear"
        x = torch.nn.functional.interpolate(x, size=(resolution, resolution), mode=mode)
        a = x[:, 3:]
        rgb = torch.where(a > 1e-6, x[:, :3] / a.clamp(min=1e-6), torch.zeros_like(x[:, :3]))
        images = torch.cat([rgb.clamp(0, 1), a.clamp(0, 1)], dim=1).permute(0, 2, 3, 1).contiguous()
        return PosedViews(images, self.cameras.with_resolution(resolution, resolution))


def load_rgba(path: Path) -> Tensor:
    """Read an RGBA image as (H, W, 4) float in [0, 1]; images without alpha are refused."""
    try:
        with Image.open(path) as im:
            if im.mode not in ("RGBA", "LA", "PA") and not (im.mode == "P" and "transparency" in im.info):
                raise InputError(
                    f"{path.name} has no alpha channel (mode {im.mode}): reconstruction needs RGBA images with a "
                    "transparent background; remove the background first"
                )
            arr = np.asarray(im.convert("RGBA"), dtype=np.float32) / 255.0
    except (OSError, SyntaxError) as e:  # PIL raises these for unreadable files
        raise InputError(f"cannot read image {path}: {e}") from None
    return torch.from_numpy(arr.copy())


def save_rgba(path: Path, image: Tensor) -> None:
    """Write (H, W, 4) or (H, W, 3) float [0, 1] as PNG, atomically."""
    arr = (image.detach().clamp(0, 1).cpu().numpy() * 255.0 + 0.5).astype(np.uint8)
    with atomic_path(path) as tmp:
        Image.fromarray(arr).save(tmp, format="PNG")


def _resolve_frame_path(root: Path, file_path: str) -> Path:
    p = (root / file_path).resolve()
    if p.suffix.lower() in (".png", ".webp", ".tif", ".tiff") and p.is_file():
        return p
    for ext in (".png", ".PNG"):
        if (q := p.with_name(p.name + ext)).is_file():
            return q
    if p.is_file():
        return p
    raise InputError(f"transforms.json names the image '{file_path}' but {p} does not exist: fix the file_path or add the image")


def _read_transforms(path: str | Path) -> tuple[Path, float, list[dict], list[Tensor]]:
    """Parse and check a ``transforms.json``: (json path, camera_angle_x, frames, c2w poses)."""
    path = Path(path)
    json_path = path / "transforms.json" if path.is_dir() else path
    if not json_path.is_file():
        raise InputError(f"no transforms.json at {json_path}: point to a folder with transforms.json and RGBA PNGs")
    try:
        meta = json.loads(json_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"{json_path} is not valid JSON ({e}): fix or regenerate it") from None
    if not isinstance(meta, dict) or "frames" not in meta or "camera_angle_x" not in meta:
        raise InputError(f"{json_path} needs 'camera_angle_x' and 'frames' (NeRF-synthetic layout)")
    frames = meta["frames"]
    if not isinstance(frames, list) or not frames:
        raise InputError(f"{json_path} has no frames: add at least one frame with file_path and transform_matrix")
    try:
        fovx = float(meta["camera_angle_x"])
    except (TypeError, ValueError):
        raise InputError(f"{json_path}: camera_angle_x must be a number (horizontal field of view in radians)") from None
    if not 0.0 < fovx < math.pi:
        raise InputError(f"{json_path}: camera_angle_x={fovx} is not a field of view in radians (0, pi)")
    poses = []
    for i, frame in enumerate(frames):
        if not isinstance(frame, dict) or "file_path" not in frame or "transform_matrix" not in frame:
            raise InputError(f"{json_path}: frame {i} needs 'file_path' and 'transform_matrix'")
        m = np.asarray(frame["transform_matrix"], dtype=np.float64) if _is_matrix(frame["transform_matrix"]) else None
        if m is None or not np.isfinite(m).all():
            raise InputError(f"{json_path}: frame {i} transform_matrix must be a finite 4x4 matrix (OpenGL camera-to-world)")
        poses.append(torch.from_numpy(m).float())
    return json_path, fovx, frames, poses


def _cameras(poses: list[Tensor], fovx: float, width: int, height: int) -> Cameras:
    focal = width / (2.0 * math.tan(fovx / 2.0))
    return Cameras(torch.stack(poses), 2.0 * math.atan(height / (2.0 * focal)), width, height)


def load_transforms(path: str | Path) -> PosedViews:
    """Load posed RGBA views from a folder holding ``transforms.json`` (or the json file itself)."""
    json_path, fovx, frames, poses = _read_transforms(path)
    images = [load_rgba(_resolve_frame_path(json_path.parent, str(f["file_path"]))) for f in frames]
    sizes = {tuple(im.shape[:2]) for im in images}
    if len(sizes) > 1:
        listed = ", ".join(f"{w}x{h}" for h, w in sorted(sizes))
        raise InputError(f"{json_path}: images have mixed sizes ({listed}): resize them all to one size")
    h, w = images[0].shape[:2]
    return PosedViews(torch.stack(images), _cameras(poses, fovx, w, h))


def _is_matrix(value) -> bool:
    try:
        return np.asarray(value, dtype=np.float64).shape == (4, 4)
    except (TypeError, ValueError):
        return False


def save_transforms(views: PosedViews, folder: str | Path, prefix: str = "r_") -> Path:
    """Write ``views`` as ``folder/transforms.json`` + ``folder/images/<prefix><i>.png``; returns the json path.

    The json is written last (and atomically), so an interrupted save never leaves a
    transforms.json that points at missing images.
    """
    folder = Path(folder)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    cams = views.cameras
    frames = []
    for i in range(len(views)):
        rel = f"images/{prefix}{i}.png"
        save_rgba(folder / rel, views.images[i])
        frames.append({"file_path": rel, "transform_matrix": cams.c2w[i].cpu().tolist()})
    fovx = float(cams.fovx[0])
    if not torch.allclose(cams.fovx, cams.fovx[0]):
        raise InputError("transforms.json stores one camera_angle_x: all views must share the field of view")
    json_path = folder / "transforms.json"
    with atomic_path(json_path) as tmp:
        tmp.write_text(json.dumps({"camera_angle_x": fovx, "frames": frames}, indent=2))
    return json_path


def load_cameras(path: str | Path, resolution: int | None = None) -> Cameras:
    """Only the cameras of a ``transforms.json``; the image size comes from ``resolution`` (square)
    or, when None, from the first frame's image header."""
    json_path, fovx, frames, poses = _read_transforms(path)
    if resolution:
        w = h = int(resolution)
    else:
        with Image.open(_resolve_frame_path(json_path.parent, str(frames[0]["file_path"]))) as im:
            w, h = im.size
    return _cameras(poses, fovx, w, h)
