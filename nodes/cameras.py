"""Camera batches for reconstruction: the paper's random orbit presets or explicit orbit views."""

from __future__ import annotations

import dataclasses

import torch
from comfy_api.latest import io

from microdreamer_core.errors import InputError
from microdreamer_core.scene.cameras import (
    CAMERA_PRESETS,
    orbit_cameras,
    sample_orbit_cameras,
)

from .types import MDCameras


def _floats(text: str, name: str) -> list[float]:
    try:
        return [float(v) for v in text.replace(";", ",").split(",") if v.strip()]
    except ValueError:
        raise InputError(f"{name} must be comma-separated numbers in degrees, e.g. '0, 90, 180, 270'; got '{text}'") from None


class MicroDreamerOrbitCameras(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        presets = ", ".join(f"{k}: {p.num_views} views at radius {p.radius}" for k, p in CAMERA_PRESETS.items())
        return io.Schema(
            node_id="MicroDreamerOrbitCameras",
            display_name="Orbit Cameras (paper presets)",
            category="MicroDreamer/cameras",
            description=(
                "Cameras on an orbit around the origin, looking at it (y-up world; negative elevation = "
                "above the object; azimuth 0 looks from +z, at the object's front, for every model). With elevations and azimuths empty it draws "
                f"one random set of the preset's views from the seed ({presets}): evenly spaced azimuths "
                "from a random offset, random integer elevations in the preset's range. With azimuths "
                "given it places one camera per azimuth instead (fixed views)."
            ),
            inputs=[
                io.Combo.Input("preset", options=list(CAMERA_PRESETS), default="zero123",
                               tooltip="Paper preset: number of views, orbit radius, elevation range and field of view (49.1 degrees)."),
                io.Int.Input("resolution", default=256, min=16, max=4096, step=8,
                             tooltip="Square image size in pixels the cameras are made for."),
                io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=True,
                             tooltip="Seeds the random azimuth offset and elevations of the preset (ignored when azimuths are given)."),
                io.String.Input("elevations", default="", optional=True,
                                tooltip="Comma-separated elevations in degrees (negative = above). One value applies to every azimuth. Empty: random from the preset."),
                io.String.Input("azimuths", default="", optional=True,
                                tooltip="Comma-separated azimuths in degrees, one camera each. Empty: the preset's random views."),
                io.Float.Input("radius", default=0.0, min=0.0, max=100.0, step=0.05, optional=True,
                               tooltip="Distance of the cameras from the origin; 0 uses the preset's radius."),
            ],
            outputs=[MDCameras.Output("cameras", display_name="cameras")],
        )

    @classmethod
    def execute(cls, preset: str, resolution: int, seed: int, elevations: str = "",
                azimuths: str = "", radius: float = 0.0) -> io.NodeOutput:
        p = CAMERA_PRESETS[preset]
        if radius > 0:
            p = dataclasses.replace(p, radius=float(radius))
        az = _floats(azimuths or "", "azimuths")
        el = _floats(elevations or "", "elevations")
        if not az:
            if el:
                raise InputError("elevations are given but azimuths are empty: give one azimuth per camera, or clear elevations to use the preset")
            gen = torch.Generator().manual_seed(int(seed))
            return io.NodeOutput(sample_orbit_cameras(p, resolution, gen))
        if not el:
            el = [0.0]
        if len(el) == 1:
            el = el * len(az)
        if len(el) != len(az):
            raise InputError(f"{len(el)} elevations but {len(az)} azimuths: give one elevation, or one per azimuth")
        return io.NodeOutput(orbit_cameras(el, az, p.radius, resolution, p.fovy_deg))
