"""The mesh stage: 3D Gaussians -> textured mesh, the one runner the CLI, the demo, the pipeline
and the ComfyUI node share.

Three steps, each timed: :func:`~.extract.extract_mesh` (density level set, marching cubes,
decimation; vertex colours), :func:`~.uv.unwrap_uv` (xatlas atlas) and
:func:`~.bake.bake_texture` (texture from renders of the Gaussians). Without baking the mesh keeps
its vertex colours and only the first step runs.

Devices: the density grid is computed where the Gaussians are (CUDA on a GPU); the grid then
moves to the CPU once, for what only CPU libraries do (SciPy's clean-up, PyMCubes, fast-simplification,
xatlas; the hidden-face test runs there too, with the Warp rasteriser when installed), and the
bake renders on the Gaussians' device again. The mesh comes back on the CPU, ready to export.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from ..errors import InputError, check_cancel
from ..runtime import CancelFn, ProgressFn
from ..scene.gaussians import Gaussians
from ..scene.mesh import Mesh
from .bake import BakeConfig, bake_texture
from .extract import ExtractConfig, extract_mesh
from .uv import check_uv_charts, unwrap_uv
from .visibility import remove_hidden_faces

__all__ = ["MeshConfig", "gaussians_to_mesh"]


@dataclass
class MeshConfig:
    """Settings of :func:`gaussians_to_mesh`.

    Attributes:
        resolution: density grid samples per axis for marching cubes (at least 16).
        target_faces: decimate to at most this many triangles; 0 keeps all of them.
        texture_size: side of the square baked texture in pixels (at least 16).
        bake_resolution: size of the Gaussian renders the texture is baked from.
        uv_charts: xatlas chart settings, "fast" (the default) or "quality" (see :data:`~.uv.UV_CHARTS`:
            on the four issue-15 test objects "fast" unwrapped 6-20x faster with the same textured
            PSNR to 0.004 dB).
        remove_hidden: drop the faces that no outside view sees (:func:`~.visibility.remove_hidden_faces`:
            surfaces inside the object, e.g. from Gaussians left inside a light object), before
            unwrapping; part of the ``extract`` step and its time.
    """

    resolution: int = 128
    target_faces: int = 50_000
    texture_size: int = 1024
    bake_resolution: int = 512
    uv_charts: str = "fast"
    remove_hidden: bool = True


def _check(config: MeshConfig, bake: bool) -> None:
    """Refuse bad settings before the slow steps run."""
    if config.resolution < 16:
        raise InputError(f"resolution must be at least 16 grid samples per axis (got {config.resolution})")
    if config.target_faces < 0:
        raise InputError(f"target faces must be 0 (no decimation) or positive (got {config.target_faces})")
    check_uv_charts(config.uv_charts)
    if config.texture_size < 16 and bake:
        raise InputError(f"texture size must be at least 16 pixels (got {config.texture_size})")


def gaussians_to_mesh(
    gaussians: Gaussians,
    config: MeshConfig | None = None,
    *,
    bake: bool = True,
    timings: dict[str, float] | None = None,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
) -> Mesh:
    """A mesh of ``gaussians``: extracted, and with ``bake`` uv-unwrapped and textured.

    ``config`` defaults to :class:`MeshConfig`'s defaults. Step times in seconds go into
    ``timings`` (keys ``extract``, ``unwrap``, ``bake``). ``progress(done, total)`` is called
    after each step (3 steps, 1 without baking) and ``cancel()`` before each (it may raise, or
    return True), so a host can stop between steps (each step itself runs to its end).
    """
    config = MeshConfig() if config is None else config
    _check(config, bake)
    timings = {} if timings is None else timings
    total = 3 if bake else 1
    progress = progress or (lambda done, total: None)
    check_cancel(cancel, "mesh extraction between stages")
    t0 = time.perf_counter()
    mesh = extract_mesh(
        gaussians, ExtractConfig(resolution=int(config.resolution), target_faces=int(config.target_faces))
    )
    if config.remove_hidden:
        mesh = remove_hidden_faces(mesh)
    timings["extract"] = time.perf_counter() - t0
    progress(1, total)
    if not bake:
        return mesh
    check_cancel(cancel, "mesh extraction between stages")
    t1 = time.perf_counter()
    unwrapped = unwrap_uv(mesh, texture_size=int(config.texture_size), charts=config.uv_charts)
    timings["unwrap"] = time.perf_counter() - t1
    progress(2, total)
    check_cancel(cancel, "mesh extraction between stages")
    t2 = time.perf_counter()
    bake_config = BakeConfig(texture_size=int(config.texture_size), render_resolution=int(config.bake_resolution))
    baked = bake_texture(unwrapped, gaussians, bake_config)
    timings["bake"] = time.perf_counter() - t2
    progress(3, total)
    return baked
