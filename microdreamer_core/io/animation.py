"""Animations: a stack of frames written as an animated WEBP or GIF (Pillow) or an MP4 (PyAV).

The file type follows the suffix (:data:`ANIMATION_EXTENSIONS`). Every file loops (WEBP, GIF;
an MP4 plays once, players loop it on request) at ``fps`` frames per second. MP4s are H.264
(``libx264``) in ``yuv420p``, the pixel format every browser and player decodes, where PyAV's
FFmpeg has that encoder, else MPEG-4 Part 2; ``yuv420p`` halves the chroma in both directions,
so a frame of odd width or height gets its last column or row repeated. PyAV is imported only for
MP4 (ComfyUI installs it; elsewhere ``pip install av``). Written all-or-nothing
(:func:`~.outputs.atomic_path`).
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..errors import InputError, shown
from .outputs import atomic_path, check_output

__all__ = ["ANIMATION_EXTENSIONS", "FPS", "check_animation_output", "save_animation", "to_uint8"]

ANIMATION_EXTENSIONS = (".webp", ".gif", ".mp4")
FPS = (1.0, 50.0)
"""Allowed frame rates: browsers show GIF frames shorter than 20 ms (50 fps) for 100 ms."""
_MP4_CODECS = ("libx264", "mpeg4")  # the first one PyAV's FFmpeg can encode with
_WEBP_QUALITY = 85  # lossy: a 36-frame 320 px turntable on white is a few hundred kB


def _suffix(path: Path, what: str) -> str:
    suffix = path.suffix.lower()
    if suffix not in ANIMATION_EXTENSIONS:
        name = f"{what} " if what else ""
        raise InputError(
            f"{name}'{shown(path.name)}' is no animation file type: give a path ending in "
            f"{', '.join(ANIMATION_EXTENSIONS[:-1])} or {ANIMATION_EXTENSIONS[-1]}"
        )
    return suffix


def _mp4_codec() -> str:
    """The H.264 encoder where PyAV has it, else MPEG-4 Part 2; refused without PyAV."""
    try:
        import av
    except ImportError:
        raise InputError("writing MP4 needs PyAV: pip install av (or write .webp / .gif)") from None
    for name in _MP4_CODECS:
        try:
            av.Codec(name, "w")
        except Exception:  # noqa: BLE001 - PyAV raises its own error types for an unknown codec
            continue
        return name
    raise InputError("PyAV's FFmpeg has no H.264 or MPEG-4 encoder: install another av build, or write .webp / .gif")


def check_animation_output(path, what: str = "", made_folder: Path | None = None) -> Path:
    """Refuse an animation output before slow work: an unknown suffix, MP4 without an encoder,
    or a path that cannot be written (:func:`~.outputs.check_output`). ``made_folder``: an output
    folder the command itself creates (already checked); a path directly inside it is accepted."""
    path = Path(path)
    if _suffix(path, what) == ".mp4":
        _mp4_codec()
    if made_folder is not None and path.parent.resolve() == Path(made_folder).resolve() and not path.parent.exists():
        return path
    return check_output(path, what)


def to_uint8(frames: Tensor | np.ndarray) -> np.ndarray:
    """(N, H, W, 3) uint8 from float frames in [0, 1] (clipped, rounded) or uint8 frames."""
    if isinstance(frames, Tensor):
        frames = frames.detach().cpu()
        frames = frames.numpy() if frames.dtype == torch.uint8 else frames.float().numpy()
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or 0 in frames.shape:
        raise InputError(f"animation frames must be (N, H, W, 3) with N, H, W >= 1, got {tuple(frames.shape)}")
    if frames.dtype == np.uint8:
        return frames
    return (np.clip(frames, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def save_animation(frames: Tensor | np.ndarray, path, fps: float = 12.0) -> Path:
    """Write (N, H, W, 3) frames (float in [0, 1], or uint8) as ``path``: .webp or .gif (looping)
    or .mp4, chosen by the suffix. Returns ``path``."""
    path = Path(path)
    suffix = _suffix(path, "")
    if not FPS[0] <= fps <= FPS[1]:  # also refuses NaN
        raise InputError(f"animation frame rate is {fps}: give {FPS[0]:g} to {FPS[1]:g} frames per second")
    pixels = to_uint8(frames)
    codec = _mp4_codec() if suffix == ".mp4" else None  # before the temporary file is made
    with atomic_path(path) as tmp:
        if codec is not None:
            _write_mp4(pixels, tmp, fps, codec)
        else:
            _write_pillow(pixels, tmp, fps, "WEBP" if suffix == ".webp" else "GIF")
    return path


def _write_pillow(pixels: np.ndarray, path: Path, fps: float, fmt: str) -> None:
    from PIL import Image

    images = [Image.fromarray(frame) for frame in pixels]
    options = {"quality": _WEBP_QUALITY, "method": 4} if fmt == "WEBP" else {}
    images[0].save(
        path,
        format=fmt,
        save_all=True,
        append_images=images[1:],
        duration=max(round(1000.0 / fps), 1),
        loop=0,  # forever
        **options,
    )


def _write_mp4(pixels: np.ndarray, path: Path, fps: float, codec: str) -> None:
    import av

    _, h, w, _ = pixels.shape
    if h % 2 or w % 2:  # yuv420p needs even sizes: repeat the last row / column
        pixels = np.pad(pixels, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    with av.open(str(path), mode="w", format="mp4") as container:
        stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height = pixels.shape[2], pixels.shape[1]
        stream.pix_fmt = "yuv420p"
        if codec == "libx264":
            stream.options = {"crf": "20", "preset": "medium"}
        else:  # MPEG-4 Part 2's default bit rate (200 kb/s) smears a turntable
            stream.bit_rate = int(max(1_000_000, 0.15 * pixels.shape[1] * pixels.shape[2] * fps))
        for frame in pixels:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode(None))  # flush the encoder's delayed frames
