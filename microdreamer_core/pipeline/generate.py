"""The whole MicroDreamer pipeline: prompt or image -> 3D Gaussians -> textured mesh.

One function per stage lives in its own module; :func:`generate` runs them in order and reports
what each spent:

1. :func:`~.sir.run_sir`: SIR on 3D Gaussians (stage 1);
2. :func:`~.texture.gaussians_to_mesh`: density grid, marching cubes, decimation, uv atlas and a
   texture baked from the Gaussians;
3. :func:`~.texture_refine.refine_texture`: the diffusion-guided texture refinement (stage 2).

:func:`make_condition` turns user input (prompt, image, mask) into the model's
:class:`~.mv_models.Condition`, including the image preprocessing of METHOD.md (object re-centred
to fill 80% of a 256 canvas on white).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from torch import Tensor

from ..diffusion.models import DEFAULT_NEGATIVE_PROMPT, Condition, MultiViewModel
from ..errors import InputError, check_cancel
from ..scene.images import check_images, check_masks
from ..meshing.texture import gaussians_to_mesh
from ..scene.gaussians import Gaussians
from ..scene.mesh import Mesh
from ..scene.views import PosedViews
from .image_prep import recenter_rgba
from .presets import Preset, get_preset
from .sir import IterationInfo, SIRResult, run_sir
from .texture_refine import TextureRefineResult, refine_texture

__all__ = ["GenerateResult", "make_condition", "generate", "STAGES"]

STAGES = ("sir", "mesh", "texture")
StageProgress = Callable[[str, int, int], None]


def make_condition(
    model_kind: str | None,
    prompt: str = "",
    negative_prompt: str | None = None,
    image: Tensor | None = None,
    mask: Tensor | None = None,
    invert_mask: bool = False,
    elevation: float = 0.0,
    size: int = 256,
) -> Condition:
    """The :class:`Condition` for a model kind from user input.

    ``image``: (H, W, 3|4) or a (B, H, W, 3|4) batch (the first image is used) in [0, 1];
    ``mask``: (H, W) or (B, H, W), 1 = object (``invert_mask`` for masks that are 1 on the
    background, like ComfyUI's LoadImage). RGBA images carry their own mask. The object is
    re-centred to fill 80% of a ``size`` canvas. Image models need an image with a mask; MVDream
    needs a prompt; ``negative_prompt`` None = the paper's negative prompt for the text models.
    ``model_kind`` None: for whichever model comes later (a prompt, an image, or both).
    """
    if not -89.0 <= float(elevation) <= 89.0:  # NaN fails too
        raise InputError(f"elevation must be between -89 and 89 degrees (got {elevation})")
    if model_kind is None:
        if image is None and not prompt.strip():
            raise InputError("nothing to condition on: write a prompt (text-to-3D) or connect an image and its mask (image-to-3D)")
        model_kind = "mvdream" if image is None else "imagedream"  # the checks that apply: text only, or image
    if negative_prompt is None:
        negative_prompt = DEFAULT_NEGATIVE_PROMPT if model_kind in ("mvdream", "imagedream") else ""
    if model_kind == "mvdream":
        if not prompt.strip():
            raise InputError("MVDream is a text-to-3D model: give a prompt describing the object")
        return Condition(prompt=prompt, negative_prompt=negative_prompt)
    if image is None:
        raise InputError(f"the {model_kind} model is image-to-3D: give an input image (RGBA, or IMAGE + MASK)")
    img = check_images(image[None] if image.ndim == 3 else image, "the input image")[0]
    alpha = None
    if mask is not None:
        m = check_masks(mask, "the mask")[0].float().cpu()
        if m.shape != img.shape[:2]:
            raise InputError(f"the mask is {m.shape[1]}x{m.shape[0]} but the image is {img.shape[1]}x{img.shape[0]}: connect "
                             "the mask that belongs to the image (LoadImage gives a 64x64 empty mask for images without alpha)")
        alpha = 1.0 - m if invert_mask else m
    elif img.shape[-1] == 4:
        alpha = img[..., 3].float().cpu()
    else:
        raise InputError("the input image has no mask: give an RGBA image or connect a MASK (a background-removal node's, "
                         "or LoadImage's MASK with invert_mask on)")
    if float(alpha.max()) <= 0.5:
        raise InputError("the mask is empty (no foreground pixel): check the background removal, or toggle invert_mask")
    if float(alpha.min()) > 0.5:
        raise InputError("the mask covers the whole image (no background): remove the background first, or toggle invert_mask")
    rgba = recenter_rgba(img[..., :3].float().cpu(), alpha, size)
    return Condition(prompt=prompt, negative_prompt=negative_prompt, image=rgba, reference_elevation=float(elevation))


@dataclass
class GenerateResult:
    """What :func:`generate` made and what each stage spent (seconds, NFEs)."""

    gaussians: Gaussians
    mesh: Mesh | None
    timings: dict[str, float]
    nfe: dict[str, int]
    sir: SIRResult
    texture: TextureRefineResult | None = None
    iterations: list[IterationInfo] = field(default_factory=list)


def _check_kind(model: MultiViewModel, preset: Preset) -> None:
    if model.kind != preset.model_kind:
        raise InputError(f"preset '{preset.name}' is made for a {preset.model_kind} model, but the model is "
                         f"{model.display_name} ({model.kind}): choose the '{model.kind}' preset or load a {preset.model_kind} model")


def generate(
    model: MultiViewModel,
    condition: Condition,
    preset: Preset | str = "zero123",
    init_views: PosedViews | None = None,
    mesh: bool = True,
    progress: StageProgress | None = None,
    cancel: Callable[[], object] | None = None,
    on_iteration: Callable[[IterationInfo], None] | None = None,
) -> GenerateResult:
    """Run every stage of ``preset`` and return the Gaussians, the textured mesh and timings.

    ``mesh=False`` stops after SIR. Texture refinement runs when ``preset.refine_texture``.
    ``progress(stage, done, total)`` reports each stage (``"sir"``, ``"mesh"``, ``"texture"``);
    ``cancel()`` is checked between steps. Timings are seconds per stage (CUDA-synchronised).
    """
    p = get_preset(preset) if isinstance(preset, str) else preset
    _check_kind(model, p)

    def stage(name: str):
        return None if progress is None else (lambda done, total: progress(name, done, total))

    start = time.perf_counter()
    sir = run_sir(model, condition, p.sir, init_views=init_views, progress=stage("sir"), cancel=cancel, on_iteration=on_iteration)
    timings = {"sir": sir.timings["total"]}
    nfe = {"sir": sir.nfe["total"], "texture": 0}
    out_mesh, tex = None, None
    if mesh:
        check_cancel(cancel, "before mesh extraction")
        t0 = time.perf_counter()
        mesh_timings: dict[str, float] = {}
        out_mesh = gaussians_to_mesh(sir.gaussians, resolution=p.mesh.resolution, target_faces=p.mesh.target_faces,
                                     texture_size=p.mesh.texture_size, bake=True, bake_resolution=p.mesh.bake_resolution, uv_charts=p.mesh.uv_charts, timings=mesh_timings,
                                     progress=stage("mesh"), cancel=cancel)
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
    return GenerateResult(sir.gaussians, out_mesh, timings, nfe, sir, tex, sir.iterations)


def tiny_preset(name: str, iterations: int = 2, init_steps: int = 3, steps_per_iteration: int = 2) -> Preset:
    """A preset shrunk for tests and CPU smoke runs with tiny random models (32 px diffusion,
    64 px renders and floater filter, small mesh/texture); the schedule shape (t2 range, grid) is
    the preset's."""
    import dataclasses

    p = get_preset(name)
    floaters = None if p.sir.floaters is None else dataclasses.replace(p.sir.floaters, resolution=64)
    sir = dataclasses.replace(p.sir, iterations=iterations, init_steps=init_steps, steps_per_iteration=steps_per_iteration,
                              resolution=64, image_size=32, num_init=1000, floaters=floaters)
    tex = dataclasses.replace(p.texture, render_resolution=64, image_size=32, steps=3)
    mesh = dataclasses.replace(p.mesh, resolution=32, target_faces=2000, texture_size=64, bake_resolution=64)
    return dataclasses.replace(p, sir=sir, texture=tex, mesh=mesh)
