"""NeRF-synthetic ``transforms.json`` folders: posed views read and written.

The on-disk layout is the one of the NeRF synthetic data sets that most tools read and write:

    transforms.json   {"camera_angle_x": <horizontal fov, radians>,
                       "frames": [{"file_path": "images/r_0", "transform_matrix": <4x4 OpenGL c2w>}, ...]}
    images/r_0.png    RGBA, straight alpha, object on a transparent background

``file_path`` is relative to the json file and may omit the ``.png`` extension. A
``transforms.json`` is read with bounds (at most 64 MiB, nesting at most 32 deep) and every pose
is checked (:func:`~microdreamer_core.scene.cameras.check_poses`) before any image is decoded; images are decoded by
:func:`~.images.read_rgba` (pixel limit). :func:`save_transforms` writes all-or-nothing.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from ..errors import InputError, shown
from ..scene.cameras import Cameras, check_poses
from ..scene.views import PosedViews
from .images import image_size, read_rgba
from .outputs import atomic_outputs, atomic_path
from .paths import confined

__all__ = [
    "load_transforms",
    "load_cameras",
    "save_transforms",
    "transforms_files",
    "transforms_inputs",
    "load_rgba",
    "save_rgba",
]

MAX_JSON_BYTES = 64 * 2**20
MAX_JSON_DEPTH = 32


def load_rgba(path: Path) -> Tensor:
    """Read an RGBA image as (H, W, 4) float in [0, 1]; images without alpha are refused."""
    return read_rgba(
        path,
        "image",
        need_alpha="reconstruction needs RGBA images with a transparent background; remove the background first",
    )


def _write_png(path: Path, image: Tensor) -> None:
    arr = (image.detach().clamp(0, 1).cpu().numpy() * 255.0 + 0.5).astype(np.uint8)
    Image.fromarray(arr).save(path, format="PNG")


def save_rgba(path: Path, image: Tensor) -> None:
    """Write (H, W, 4) or (H, W, 3) float [0, 1] as PNG, atomically."""
    with atomic_path(path) as tmp:
        _write_png(tmp, image)


def _resolve_frame_path(root: Path, file_path: str) -> Path:
    try:
        p = (root / file_path).resolve()
        if p.suffix.lower() in (".png", ".webp", ".tif", ".tiff") and p.is_file():
            return p
        for ext in (".png", ".PNG"):
            if (q := p.with_name(p.name + ext)).is_file():
                return q
        if p.is_file():
            return p
    except (OSError, ValueError, RuntimeError):  # a NUL byte, a name too long, a symlink loop
        pass
    raise InputError(
        f"transforms.json names the image '{shown(file_path)}', which does not exist in {shown(root)}: "
        "fix the file_path or add the image"
    )


def _depth(value) -> int:
    """How deeply ``value`` (parsed JSON) nests, counted without recursion up to MAX_JSON_DEPTH + 1."""
    depth, level = 0, [value]
    while level and depth <= MAX_JSON_DEPTH:
        depth += 1
        level = [v for x in level if isinstance(x, (list, dict)) for v in (x.values() if isinstance(x, dict) else x)]
    return depth


def _read_transforms(path: str | Path) -> tuple[Path, float, list[dict], list[Tensor]]:
    """Parse and check a ``transforms.json``: (json path, camera_angle_x, frames, c2w poses)."""
    path = Path(path)
    json_path = path / "transforms.json" if path.is_dir() else path
    name = shown(json_path)
    if not json_path.is_file():
        raise InputError(f"no transforms.json at {name}: point to a folder with transforms.json and RGBA PNGs")
    if json_path.stat().st_size > MAX_JSON_BYTES:
        raise InputError(
            f"{name} is larger than {MAX_JSON_BYTES // 2**20} MiB: that is no transforms.json; check the path"
        )
    try:
        meta = json.loads(json_path.read_bytes().decode("utf-8"))
    except RecursionError:
        meta = None  # nested beyond Python's limit: refused below with the depth check's message
    except (ValueError, OSError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise InputError(f"{name} is not valid JSON ({shown(e, 120)}): fix or regenerate it") from None
    if meta is None or _depth(meta) > MAX_JSON_DEPTH:
        raise InputError(
            f"{name} nests deeper than {MAX_JSON_DEPTH} levels: that is no transforms.json; fix or regenerate it"
        )
    if not isinstance(meta, dict) or "frames" not in meta or "camera_angle_x" not in meta:
        raise InputError(f"{name} needs 'camera_angle_x' and 'frames' (NeRF-synthetic layout)")
    frames = meta["frames"]
    if not isinstance(frames, list) or not frames:
        raise InputError(f"{name} has no frames: add at least one frame with file_path and transform_matrix")
    try:
        fovx = float(meta["camera_angle_x"])
    except (TypeError, ValueError, OverflowError):
        raise InputError(f"{name}: camera_angle_x must be a number (horizontal field of view in radians)") from None
    if not 0.0 < fovx < math.pi:
        raise InputError(f"{name}: camera_angle_x={shown(fovx)} is not a field of view in radians (0, pi)")
    poses = []
    for i, frame in enumerate(frames):
        if not isinstance(frame, dict) or "file_path" not in frame or "transform_matrix" not in frame:
            raise InputError(f"{name}: frame {i} needs 'file_path' and 'transform_matrix'")
        m = np.asarray(frame["transform_matrix"], dtype=np.float64) if _is_matrix(frame["transform_matrix"]) else None
        if m is None or not np.isfinite(m).all():
            raise InputError(f"{name}: frame {i} transform_matrix must be a finite 4x4 matrix (OpenGL camera-to-world)")
        poses.append(torch.from_numpy(m).float())
    try:
        check_poses(torch.stack(poses))
    except InputError as e:
        raise InputError(f"{name}: {e}") from None
    return json_path, fovx, frames, poses


def _cameras(poses: list[Tensor], fovx: float, width: int, height: int) -> Cameras:
    focal = width / (2.0 * math.tan(fovx / 2.0))
    return Cameras(torch.stack(poses), 2.0 * math.atan(height / (2.0 * focal)), width, height)


def load_transforms(path: str | Path, root: Path | None = None) -> PosedViews:
    """Load posed RGBA views from a folder holding ``transforms.json`` (or the json file itself).

    ``root``, when given, confines every file read to it (:func:`~.paths.confined`): ``path`` is
    taken relative to ``root``, and the json and every frame's ``file_path`` must resolve (symlinks
    included) inside ``root``; a frame leading out is refused before any file is looked at."""
    if root is not None:
        path = confined(root, path, "the views folder")
        path = confined(root, path / "transforms.json", "transforms.json") if path.is_dir() else path
    json_path, fovx, frames, poses = _read_transforms(path)
    if root is not None:  # every name first (whether or not it exists), then the file each leads to
        for i, f in enumerate(frames):
            confined(root, json_path.parent / str(f["file_path"]), f"frame {i}'s file_path in transforms.json")
        files = [
            confined(root, _resolve_frame_path(json_path.parent, str(f["file_path"])), f"frame {i}'s image")
            for i, f in enumerate(frames)
        ]
    else:
        files = [_resolve_frame_path(json_path.parent, str(f["file_path"])) for f in frames]
    images = [load_rgba(f) for f in files]
    sizes = {tuple(im.shape[:2]) for im in images}
    if len(sizes) > 1:
        listed = ", ".join(f"{w}x{h}" for h, w in sorted(sizes))
        raise InputError(f"{json_path}: images have mixed sizes ({listed}): resize them all to one size")
    h, w = images[0].shape[:2]
    return PosedViews(torch.stack(images), _cameras(poses, fovx, w, h))


def _is_matrix(value) -> bool:
    try:
        return np.asarray(value, dtype=np.float64).shape == (4, 4)
    except (TypeError, ValueError, OverflowError):
        return False


def transforms_files(count: int, prefix: str = "r_") -> list[str]:
    """The files :func:`save_transforms` writes for ``count`` views, relative to its folder."""
    return [f"images/{prefix}{i}.png" for i in range(count)] + ["transforms.json"]


def save_transforms(views: PosedViews, folder: str | Path, prefix: str = "r_") -> Path:
    """Write ``views`` as ``folder/transforms.json`` + ``folder/images/<prefix><i>.png``; returns the json path.

    All-or-nothing (:func:`~.io.outputs.atomic_outputs`): everything is written into a temporary folder
    beside ``folder`` and moved in at the end, the json last; a failure leaves nothing. The
    folder's parent must exist; an existing folder keeps its other files.
    """
    folder = Path(folder)
    cams = views.cameras
    if not torch.allclose(cams.fovx, cams.fovx[0]):
        raise InputError("transforms.json stores one camera_angle_x: all views must share the field of view")
    *images, json_name = transforms_files(len(views), prefix)
    with atomic_outputs() as out:
        tmp = out.folder(folder)
        (tmp / "images").mkdir()
        for i, rel in enumerate(images):
            _write_png(tmp / rel, views.images[i])
        frames = [{"file_path": rel, "transform_matrix": cams.c2w[i].cpu().tolist()} for i, rel in enumerate(images)]
        (tmp / json_name).write_text(json.dumps({"camera_angle_x": float(cams.fovx[0]), "frames": frames}, indent=2))
    return folder / json_name


def transforms_inputs(path: str | Path) -> list[Path]:
    """The files a ``transforms.json`` (or its folder) has a reader use: the json itself and the
    frames' images that exist (to refuse outputs that would overwrite them)."""
    json_path, _, frames, _ = _read_transforms(path)
    found = [json_path]
    for frame in frames:
        try:
            found.append(_resolve_frame_path(json_path.parent, str(frame["file_path"])))
        except InputError:
            pass
    return found


def load_cameras(path: str | Path, resolution: int | None = None) -> Cameras:
    """Only the cameras of a ``transforms.json``; the image size comes from ``resolution`` (square)
    or, when None, from the first frame's image header."""
    json_path, fovx, frames, poses = _read_transforms(path)
    if resolution is not None:
        if int(resolution) != resolution or resolution < 1:
            raise InputError(f"resolution must be a whole number of pixels, at least 1 (got {shown(resolution)})")
        w = h = int(resolution)
    else:
        w, h = image_size(_resolve_frame_path(json_path.parent, str(frames[0]["file_path"])))
    return _cameras(poses, fovx, w, h)
