"""The authors' camera vectors, rebuilt from their published conventions (our own code): the
oracles of tests/scene/test_cameras.py and tests/pipeline/test_front.py."""

import numpy as np


def _kiui_orbit(elevation: float, azimuth: float, radius: float) -> np.ndarray:
    """kiui's ``orbit_camera`` (OpenGL c2w; negative elevation = above, azimuth 0 from +z)."""
    el, az = np.deg2rad(elevation), np.deg2rad(azimuth)
    campos = np.array([radius * np.cos(el) * np.sin(az), -radius * np.sin(el), radius * np.cos(el) * np.cos(az)])
    forward = campos / np.linalg.norm(campos)  # OpenGL: the camera's +z points away from the target
    right = np.cross([0.0, 1.0, 0.0], forward)
    right /= np.linalg.norm(right)
    up = np.cross(forward, right)
    pose = np.eye(4)
    pose[:3, :3] = np.stack([right, up, forward], axis=1)
    pose[:3, 3] = campos
    return pose


def _authors_get_camera(num_frames: int, elevation: float) -> np.ndarray:
    """The MVDream/ImageDream training cameras (``get_camera``): kiui poses at elevation
    ``-elevation`` (their sign), azimuths 0, 360/n, ..., radius 1, then to blender (z row negated,
    rows y and z swapped), flattened."""
    out = []
    for az in np.arange(0, 360, 360 / num_frames):
        pose = _kiui_orbit(-elevation, az, 1.0)
        pose[2] *= -1
        pose[[1, 2]] = pose[[2, 1]]
        out.append(pose.flatten())
    return np.stack(out)


def _reference_front_vector(elevation: float, radius: float) -> np.ndarray:
    """The reference MicroDreamer's front camera for MVDream/ImageDream: ``orbit_camera(e, 90, r)``
    through its blender conversion (rows [0, 2, 1, 3], then row 1 negated) and ``normalize_camera``."""
    pose = _kiui_orbit(elevation, 90.0, radius)[[0, 2, 1, 3]]
    pose[1] *= -1
    pose[:3, 3] /= np.linalg.norm(pose[:3, 3]) + 1e-8
    return pose.flatten()
