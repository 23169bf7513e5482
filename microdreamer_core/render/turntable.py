"""Turntables: a model rendered on an orbit, the way people look at a 3D result.

:func:`render_turntable` renders our :class:`~..scene.gaussians.Gaussians` or a
:class:`~..scene.mesh.Mesh` (texture, else vertex colours, unlit as the baked colours already
carry the shading; a mesh with neither is grey lit from the camera) from ``frames`` cameras
evenly spaced in azimuth, starting at the front (azimuth 0, see :mod:`~..scene.cameras`) and
turning towards +x, at one elevation (negative = from above). The orbit circles the centre of the
model's bounding box at the distance where its bounding sphere spans ``fill`` of the frame's
height, so any model is framed alike.
The frames (N, H, W, 3) float in [0, 1] go to :func:`~..io.animation.save_animation` or to a
ComfyUI IMAGE batch.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import torch
from torch import Tensor

from ..errors import InputError, check_cancel, shown
from ..runtime import CancelFn, ProgressFn
from ..scene.cameras import DEFAULT_FOVY_DEG, Cameras, orbit_pose
from ..scene.gaussians import Gaussians
from ..scene.mesh import Mesh
from .backends import GaussianBackend, MeshBackend
from .gaussians import render_gaussians
from .mesh import render_mesh

__all__ = [
    "TurntableConfig",
    "FRAMES",
    "RESOLUTION",
    "MAX_MEGAPIXELS",
    "parse_color",
    "model_bounds",
    "turntable_cameras",
    "render_turntable",
]

FRAMES = (1, 360)
"""Allowed frame counts (360: one frame per degree)."""
RESOLUTION = (16, 2048)
"""Allowed square frame sizes in pixels."""
MAX_MEGAPIXELS = 128
"""Bound on frames x width x height (in 2^20 pixels): the frames are held in memory as float32,
3 channels, so 128 megapixels is 1.5 GiB (e.g. 120 frames at 1024 px, 360 at 512 px is refused)."""
_OPAQUE = 0.1  # Gaussians below this opacity do not count for the framing (faint haze, floaters)


@dataclass(frozen=True)
class TurntableConfig:
    """How a turntable is shot.

    Attributes:
        frames: cameras, evenly spaced over 360 degrees of azimuth; frame 0 faces the front.
        elevation: degrees, negative = from above (the orbit convention of :mod:`~..scene.cameras`).
        resolution: square frame size in pixels.
        background: RGB in [0, 1] where nothing covers a pixel.
        fovy_deg: vertical field of view (the presets' by default).
        fill: fraction of the frame's height the model's bounding sphere spans (sets the distance).
        radius: camera distance from the model's centre; None frames the model by ``fill``.
        mesh_supersample: meshes are rendered this many times larger and averaged down (antialiased
            edges; the rasteriser takes one sample per pixel). Gaussians need none.
        gaussian_backend, mesh_backend: rasteriser choice (:mod:`~.backends`).
    """

    frames: int = 36
    elevation: float = -15.0
    resolution: int = 512
    background: tuple[float, float, float] = (1.0, 1.0, 1.0)
    fovy_deg: float = DEFAULT_FOVY_DEG
    fill: float = 0.85
    radius: float | None = None
    mesh_supersample: int = 2
    gaussian_backend: GaussianBackend = "auto"
    mesh_backend: MeshBackend = "auto"

    def __post_init__(self) -> None:
        lo, hi = FRAMES
        if not (isinstance(self.frames, int) and lo <= self.frames <= hi):
            raise InputError(f"turntable frames is {shown(self.frames, 40)}: give a whole number from {lo} to {hi}")
        lo, hi = RESOLUTION
        if not (isinstance(self.resolution, int) and lo <= self.resolution <= hi):
            raise InputError(
                f"turntable resolution is {shown(self.resolution, 40)}: give a whole number of pixels from {lo} to {hi}"
            )
        megapixels = self.frames * self.resolution**2 / 2**20
        if megapixels > MAX_MEGAPIXELS:
            raise InputError(
                f"a turntable of {self.frames} frames at {self.resolution} px is {megapixels:.0f} megapixels, more "
                f"than the {MAX_MEGAPIXELS} it may hold in memory: use fewer frames or a smaller resolution"
            )
        if not -89.0 <= self.elevation <= 89.0:  # also refuses NaN
            raise InputError(f"turntable elevation is {self.elevation}: give an angle from -89 to 89 degrees")
        bg = tuple(float(c) for c in self.background)
        if len(bg) != 3 or not all(0.0 <= c <= 1.0 for c in bg):
            raise InputError(f"turntable background is {shown(self.background, 60)}: give 3 values from 0 to 1 (RGB)")
        object.__setattr__(self, "background", bg)
        if not 0.0 < self.fovy_deg < 180.0:
            raise InputError(f"turntable field of view is {self.fovy_deg}: give an angle between 0 and 180 degrees")
        if not 0.0 < self.fill < 1.0:
            raise InputError(f"turntable fill is {self.fill}: give a fraction of the frame above 0 and below 1")
        if self.radius is not None and not (math.isfinite(self.radius) and self.radius > 0):
            raise InputError(f"turntable radius is {self.radius}: give a positive distance, or none to frame the model")
        if not (isinstance(self.mesh_supersample, int) and 1 <= self.mesh_supersample <= 4):
            raise InputError(f"mesh_supersample is {shown(self.mesh_supersample, 40)}: give 1, 2, 3 or 4")


_HEX = re.compile(r"#?([0-9a-fA-F]{6})")


def parse_color(text: str) -> tuple[float, float, float]:
    """``"#RRGGBB"`` (the ``#`` optional) as RGB in [0, 1]."""
    match = _HEX.fullmatch(text.strip())
    if match is None:
        raise InputError(f"'{shown(text, 40)}' is not a colour: give a hex colour such as #ffffff (white)")
    value = match.group(1)
    return tuple(int(value[i : i + 2], 16) / 255.0 for i in (0, 2, 4))  # type: ignore[return-value]


def model_bounds(model: Gaussians | Mesh) -> tuple[Tensor, float]:
    """(centre (3,), radius): the centre of the model's bounding box and the distance from it to
    the farthest point (mesh vertices; centres of Gaussians at least 10% opaque, all when none is)."""
    if isinstance(model, Mesh):
        model.check("the turntable's mesh")
        points = model.vertices
    else:
        if model.num == 0:
            raise InputError("the turntable's Gaussians are empty (0 Gaussians): give a non-empty model")
        model.check_finite("the turntable's Gaussians")
        opaque = model.activated_opacities() >= _OPAQUE
        points = model.means[opaque] if bool(opaque.any()) else model.means
    points = points.detach().float()
    centre = (points.min(0).values + points.max(0).values) / 2
    radius = float((points - centre).norm(dim=-1).max())
    return centre.cpu(), radius


def turntable_cameras(centre: Tensor, extent: float, config: TurntableConfig) -> Cameras:
    """The orbit around ``centre`` for a model of bounding radius ``extent``: azimuths 0, 360/N, ...
    at ``config.elevation``, at ``config.radius`` or the distance where the bounding sphere's
    outline spans ``config.fill`` of the frame's height."""
    half_fov = math.radians(config.fovy_deg) / 2
    extent = max(extent, 1e-6)  # a single point still gets a camera in front of it
    distance = config.radius or extent / math.sin(math.atan(config.fill * math.tan(half_fov)))
    azimuths = torch.arange(config.frames, dtype=torch.float32) * (360.0 / config.frames)
    c2w = orbit_pose(config.elevation, azimuths, distance, target=centre.float())
    # The clipping planes of every other render (0.01, 100) unless the model is tiny or huge.
    near = min(0.01, 0.5 * max(distance - extent, 1e-6))
    far = max(100.0, 2.0 * (distance + extent))
    res = config.resolution
    return Cameras(c2w, math.radians(config.fovy_deg), res, res, near=near, far=far)


@torch.no_grad()
def render_turntable(
    model: Gaussians | Mesh,
    config: TurntableConfig | None = None,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
) -> Tensor:
    """(frames, H, W, 3) float32 frames in [0, 1] on the CPU: ``model`` rendered on its device
    from :func:`turntable_cameras`, one frame at a time (``progress(done, frames)`` after each,
    ``cancel()`` checked before each)."""
    config = config or TurntableConfig()
    if not isinstance(model, (Gaussians, Mesh)):
        raise InputError(f"a turntable renders 3D Gaussians or a mesh, not {type(model).__name__}")
    centre, extent = model_bounds(model)
    cameras = turntable_cameras(centre, extent, config)
    res = config.resolution
    frames = torch.empty(config.frames, res, res, 3)
    for i in range(config.frames):
        check_cancel(cancel, "the turntable")
        frames[i] = _render_frame(model, cameras[i], config)[0].cpu()
        if progress is not None:
            progress(i + 1, config.frames)
    return frames


def _render_frame(model: Gaussians | Mesh, camera: Cameras, config: TurntableConfig) -> Tensor:
    """(1, H, W, 3) one frame over the background."""
    if isinstance(model, Gaussians):
        rgb = render_gaussians(model, camera, config.background, backend=config.gaussian_backend).rgb
        return rgb.clamp(0.0, 1.0)
    ss = config.mesh_supersample
    big = camera.with_resolution(camera.width * ss, camera.height * ss)
    out = render_mesh(model, big, config.background, backend=config.mesh_backend)
    rgb = out.rgb.clamp(0.0, 1.0)
    if not model.has_texture and model.vertex_colors is None:  # geometry only: a headlight shows its shape
        rgb = _headlight(out.normal, out.alpha, big, config.background)
    if ss == 1:
        return rgb
    return torch.nn.functional.avg_pool2d(rgb.permute(0, 3, 1, 2), ss).permute(0, 2, 3, 1)


def _headlight(normal: Tensor, alpha: Tensor, camera: Cameras, background) -> Tensor:
    """(1, H, W, 3) light grey lit from the camera (|n . view|, both sides), for a mesh with no
    colour of its own, which unlit would be a flat silhouette."""
    towards_camera = camera.w2c_opengl()[0, 2, :3].to(normal)  # the camera looks down its -z
    lit = 0.25 + 0.6 * (normal * towards_camera).sum(-1, keepdim=True).abs()
    bg = torch.as_tensor(background, dtype=normal.dtype, device=normal.device).view(1, 1, 1, -1)
    return (lit.expand(*lit.shape[:-1], 3) * alpha + bg * (1.0 - alpha)).clamp(0.0, 1.0)
