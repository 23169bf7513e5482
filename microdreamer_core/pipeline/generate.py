"""The whole MicroDreamer pipeline: prompt or image -> 3D Gaussians -> textured mesh.

One function per stage lives in its own module; :func:`generate` runs them in order and reports
what each spent:

1. :func:`~.sir.run_sir`: SIR on 3D Gaussians (stage 1);
2. :func:`~..meshing.stage.gaussians_to_mesh`: density grid, marching cubes, decimation, uv atlas
   and a texture baked from the Gaussians;
3. :func:`~.texture_refine.refine_texture`: the diffusion-guided texture refinement (stage 2).

The condition comes from :func:`~.condition.make_condition`, the preset from :mod:`~.presets`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from ..diffusion.models import Condition, MultiViewModel
from ..errors import check_cancel
from ..meshing.stage import gaussians_to_mesh
from ..runtime import CancelFn, StageProgressFn
from ..scene.gaussians import Gaussians
from ..scene.mesh import Mesh
from ..scene.views import PosedViews
from .presets import Preset, check_preset_kind, get_preset
from .sir import IterationInfo, SIRResult, run_sir
from .texture_refine import TextureRefineResult, refine_texture

__all__ = ["GenerateResult", "generate", "STAGES"]

STAGES = ("sir", "mesh", "texture")
"""The stages :func:`generate` runs and reports, in order."""


@dataclass
class GenerateResult:
    """What :func:`generate` made and what each stage spent (seconds, NFEs)."""

    gaussians: Gaussians
    mesh: Mesh | None
    timings: dict[str, float]
    nfe: dict[str, int]
    sir: SIRResult
    texture: TextureRefineResult | None = None


def generate(
    model: MultiViewModel,
    condition: Condition,
    preset: Preset | str = "zero123",
    init_views: PosedViews | None = None,
    mesh: bool = True,
    progress: StageProgressFn | None = None,
    cancel: CancelFn | None = None,
    on_iteration: Callable[[IterationInfo], None] | None = None,
) -> GenerateResult:
    """Run every stage of ``preset`` and return the Gaussians, the textured mesh and timings.

    ``mesh=False`` stops after SIR. Texture refinement runs when ``preset.refine_texture``.
    ``progress(stage, done, total)`` reports each stage (``"sir"``, ``"mesh"``, ``"texture"``);
    ``cancel()`` is checked between steps. Timings are seconds per stage (CUDA-synchronised).
    """
    p = get_preset(preset) if isinstance(preset, str) else preset
    check_preset_kind(p, model.kind)

    def stage(name: str):
        return None if progress is None else (lambda done, total: progress(name, done, total))

    start = time.perf_counter()
    sir = run_sir(
        model, condition, p.sir, init_views=init_views, progress=stage("sir"), cancel=cancel, on_iteration=on_iteration
    )
    timings = {"sir": sir.timings["total"]}
    nfe = {"sir": sir.nfe["total"], "texture": 0}
    out_mesh, tex = None, None
    if mesh:
        check_cancel(cancel, "before mesh extraction")
        t0 = time.perf_counter()
        mesh_timings: dict[str, float] = {}
        out_mesh = gaussians_to_mesh(sir.gaussians, p.mesh, timings=mesh_timings, progress=stage("mesh"), cancel=cancel)
        timings["mesh"] = time.perf_counter() - t0
        timings |= {f"mesh_{k}": v for k, v in mesh_timings.items()}
        if p.refine_texture:
            check_cancel(cancel, "before texture refinement")
            t0 = time.perf_counter()
            tex = refine_texture(out_mesh, model, condition, p.texture, progress=stage("texture"), cancel=cancel)
            out_mesh = tex.mesh
            timings["texture"] = time.perf_counter() - t0
            nfe["texture"] = tex.nfe
    timings["total"] = time.perf_counter() - start
    nfe["total"] = nfe["sir"] + nfe["texture"]
    return GenerateResult(sir.gaussians, out_mesh, timings, nfe, sir, tex)
