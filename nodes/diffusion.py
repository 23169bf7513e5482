"""Multi-view diffusion nodes: load MVDream / ImageDream / Stable Zero123, sample views from noise,
and refine rendered views with the hybrid forward process (a multi-view img2img)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import folder_paths
import torch
from comfy_api.latest import io

from microdreamer_core.diffusion.hub import HUB_IDS, MAX_HUB_DOWNLOAD_BYTES, check_repo_id, load_from_hub
from microdreamer_core.diffusion.loading import load_model
from microdreamer_core.diffusion.model_files import (
    clip_vision_width,
    image_embedding_width,
    is_multiview_checkpoint,
    matching_clip_vision,
)
from microdreamer_core.diffusion.sampling import refine_views, sample
from microdreamer_core.diffusion.schedules import DDIMSchedule
from microdreamer_core.diffusion.single_file import SINGLE_FILE_SUFFIXES
from microdreamer_core.errors import InputError
from microdreamer_core.pipeline.condition import DEFAULT_NEGATIVE, make_condition
from microdreamer_core.runtime import DTYPES
from microdreamer_core.scene.cameras import CAMERA_PRESETS, sample_orbit_cameras

from . import _compat, _vram
from ._comfy import cancel_hook, comfy_tokenizer_folder, model_file, progress_hook
from .types import MDCameras, MDMultiViewModel

MODELS_FOLDER = "microdreamer"
"""ComfyUI models sub-folder (``models/microdreamer``) scanned for model folders and files."""
HUB_PREFIX = "hub: "
CHECKPOINTS, CLIP_VISION = "checkpoints", "clip_vision"
"""ComfyUI's own model folders the loader reads too: original checkpoints, CLIP image encoders."""
CHECKPOINT_PREFIX = CHECKPOINTS + "/"
AUTO = "auto"
VIT_H_WIDTH = 1280  # OpenCLIP ViT-H/14, the image encoder ImageDream was trained with


def register_models_folder() -> None:
    """Register ``models/microdreamer`` (extra_model_paths.yaml may add more under that name)."""
    default = os.path.join(folder_paths.models_dir, MODELS_FOLDER)
    folder_paths.add_model_folder_path(MODELS_FOLDER, default, is_default=True)


def _files(folder: str, keep) -> list[str]:
    """The names ComfyUI lists in its model folder ``folder`` whose file passes ``keep(path)``."""
    names = []
    for name in folder_paths.get_filename_list(folder):
        path = folder_paths.get_full_path(folder, name)
        if path is not None and keep(path):
            names.append(name)
    return names


def checkpoint_choices() -> list[str]:
    """Multi-view models in models/checkpoints (Stable Zero123's stable_zero123.ckpt, MVDream /
    ImageDream originals): .safetensors by their header, pickles by their published names."""
    return _files(CHECKPOINTS, is_multiview_checkpoint)


def clip_vision_choices() -> list[str]:
    """CLIP image encoders in models/clip_vision (.safetensors holding a vision tower)."""
    return _files(CLIP_VISION, lambda path: clip_vision_width(path) is not None)


def _clip_vision_for(width: int) -> Path | None:
    """The first file of models/clip_vision with a CLIP vision tower ``width`` wide."""
    return matching_clip_vision((folder_paths.get_full_path(CLIP_VISION, n) for n in clip_vision_choices()), width)


def _own_models() -> dict[str, Path]:
    """Diffusers folders and single-file checkpoints in the registered models/microdreamer folders,
    by the name listed (the first folder holding a name wins)."""
    found: dict[str, Path] = {}
    for root in folder_paths.get_folder_paths(MODELS_FOLDER):
        base = Path(root)
        if not base.is_dir():
            continue
        for entry in sorted(base.iterdir()):
            if (entry / "unet" / "config.json").is_file() or (
                entry.is_file() and entry.suffix.lower() in SINGLE_FILE_SUFFIXES
            ):
                found.setdefault(entry.name, entry)
    return found


def model_choices() -> list[str]:
    """Our models folder's entries, the multi-view checkpoints of models/checkpoints, then the hub ids."""
    return [
        *_own_models(),
        *(CHECKPOINT_PREFIX + name for name in checkpoint_choices()),
        *(HUB_PREFIX + h for h in HUB_IDS.values()),
    ]


def _locate(name: str) -> Path:
    """The path of a listed local model; a name the lists do not hold (a path, ``..``) is refused
    (ComfyUI 0.3.75 does not check V3 combo values against their options)."""
    if name.startswith(CHECKPOINT_PREFIX):
        return model_file(CHECKPOINTS, name[len(CHECKPOINT_PREFIX) :], checkpoint_choices())
    path = _own_models().get(name)
    if path is None:
        raise InputError(
            f"that model is not in models/{MODELS_FOLDER}: refresh the node list (R) and pick one it lists"
        )
    return path


def single_file_sources(path: Path, image_encoder: str) -> dict[str, Path]:
    """What an original checkpoint takes from ComfyUI's folders instead of the hub: ComfyUI's
    tokenizer files and, for ImageDream, a models/clip_vision file (``auto``: the first as wide as
    the checkpoint's image features, i.e. the OpenCLIP ViT-H/14 for the real model)."""
    sources: dict[str, Path] = {}
    if (tokenizer := comfy_tokenizer_folder()) is not None:
        sources["tokenizer"] = tokenizer
    if image_encoder != AUTO:
        sources["image_encoder"] = model_file(CLIP_VISION, image_encoder, clip_vision_choices())
    elif (width := image_embedding_width(path)) is not None and (found := _clip_vision_for(width)) is not None:
        sources["image_encoder"] = found
    return sources


def _log_sources(path: Path, sources: dict[str, Path]) -> None:
    """One console line naming the files a single-file load uses (and what still comes from the hub)."""
    tokenizer, encoder = sources.get("tokenizer"), sources.get("image_encoder")
    if image_embedding_width(path) is None:  # not ImageDream
        encoder_text = "none needed"
    elif encoder is None:
        encoder_text = f"the hub's OpenCLIP ViT-H/14 (none found in models/{CLIP_VISION})"
    else:
        encoder_text = f"models/{CLIP_VISION}/{encoder.name}"
    logging.info(
        "MicroDreamer: loading %s with tokenizer %s, image encoder %s",
        path.name,
        "comfy/sd1_tokenizer" if tokenizer else "open_clip_torch's vocabulary or the hub",
        encoder_text,
    )


class MicroDreamerMultiViewModelLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return _compat.schema(
            node_id="MicroDreamerMultiViewModelLoader",
            display_name="Load Multi-View Diffusion Model",
            search_aliases=["mvdream", "imagedream", "stable zero123", "multi-view model"],
            category="MicroDreamer/diffusion",
            description=(
                f"Loads MVDream (text-to-3D), ImageDream or Stable Zero123 (image-to-3D). Lists diffusers folders "
                f"(e.g. ashawkey/imagedream-ipmv-diffusers) and original checkpoints (sd-v2.1-base-4view(-ipmv).pt or "
                f".safetensors) found in models/{MODELS_FOLDER}, the multi-view checkpoints in models/{CHECKPOINTS} "
                f"(as {CHECKPOINT_PREFIX}<name>: stable_zero123.ckpt, the MVDream / ImageDream originals), plus the "
                f"hub ids, which are downloaded into models/{MODELS_FOLDER} on first use (needs internet; offline, "
                "the error says where to put the files). An original checkpoint takes its tokenizer from ComfyUI's "
                f"own files (comfy/sd1_tokenizer) and ImageDream's image encoder from models/{CLIP_VISION} "
                "(CLIP-ViT-H-14-laion2B-s32B-b79K.safetensors, the file IP-Adapter uses; else the hub): with "
                "those, nothing is downloaded. The console log names the files used. The kind of model is "
                "detected from the files."
            ),
            inputs=[
                io.Combo.Input(
                    "model",
                    options=model_choices(),
                    tooltip=(
                        f"A folder or checkpoint in models/{MODELS_FOLDER}, a multi-view checkpoint in "
                        f"models/{CHECKPOINTS} ({CHECKPOINT_PREFIX}<name>), or a hub id to download."
                    ),
                ),
                io.Combo.Input(
                    "dtype",
                    options=list(DTYPES),
                    default="auto",
                    tooltip="auto: fp16 on CUDA, fp32 on CPU. fp32 reproduces the authors' numerics exactly.",
                    **_compat.advanced(io.Combo),
                ),
                io.String.Input(
                    "hub_id",
                    default="",
                    optional=True,
                    tooltip=(
                        f"Another hub repo in the diffusers layout, as owner/name (no paths: local models go "
                        f"into models/{MODELS_FOLDER}); overrides 'model' when set. Only an MVDream, "
                        f"ImageDream or Stable Zero123 repo is downloaded, only the files it loads, at most "
                        f"{MAX_HUB_DOWNLOAD_BYTES // 10**9} GB."
                    ),
                    **_compat.advanced(io.String),
                ),
                io.Combo.Input(
                    "image_encoder",
                    options=[AUTO, *clip_vision_choices()],
                    default=AUTO,
                    optional=True,
                    tooltip=(
                        f"ImageDream's CLIP image encoder for an original checkpoint, from models/{CLIP_VISION}. "
                        "auto: a file as wide as the checkpoint expects (the OpenCLIP ViT-H/14, "
                        "CLIP-ViT-H-14-laion2B-s32B-b79K.safetensors; now: "
                        f"{getattr(_clip_vision_for(VIT_H_WIDTH), 'name', None) or 'none found, so the hub'}). "
                        "Diffusers folders and hub models bring their own."
                    ),
                    **_compat.advanced(io.Combo),
                ),
            ],
            outputs=[MDMultiViewModel.Output("mv_model", display_name="mv_model")],
        )

    @classmethod
    def validate_inputs(cls, hub_id=None):
        if hub_id is None or (isinstance(hub_id, str) and not hub_id.strip()):
            return True
        try:
            check_repo_id(hub_id.strip() if isinstance(hub_id, str) else hub_id)
        except InputError as e:
            return str(e)
        return True

    @classmethod
    def execute(cls, model: str, dtype: str, hub_id: str = "", image_encoder: str = AUTO) -> io.NodeOutput:
        download_dir = folder_paths.get_folder_paths(MODELS_FOLDER)[0]
        device, dt = _vram.placement(DTYPES[dtype])  # on the offload device: ComfyUI loads it when a node runs it
        repo = hub_id.strip() if isinstance(hub_id, str) else hub_id
        if not repo and model.startswith(HUB_PREFIX):
            repo = model[len(HUB_PREFIX) :]
        if repo:  # a hub repo id only, never a local path (checked before anything is looked at)
            model = load_from_hub(check_repo_id(repo), device=device, dtype=dt, download_dir=download_dir)
        else:
            path = _locate(model)
            sources = single_file_sources(path, image_encoder) if path.is_file() else {}
            if path.is_file():
                _log_sources(path, sources)
            model = load_model(path, device=device, dtype=dt, download_dir=download_dir, **sources)
        return io.NodeOutput(_vram.ManagedModel(model))


def _common_inputs() -> list:
    return [
        io.String.Input(
            "prompt",
            multiline=True,
            default="",
            tooltip="Text prompt (MVDream needs one; optional for ImageDream; ignored by Stable Zero123).",
        ),
        io.String.Input(
            "negative_prompt",
            multiline=True,
            default=DEFAULT_NEGATIVE,
            tooltip=(
                "Negative prompt for the unconditional branch; 'default' uses the usual 'ugly, bad anatomy, ...' list."
            ),
            **_compat.advanced(io.String),
        ),
        io.Image.Input(
            "image",
            optional=True,
            tooltip=(
                "Reference image for ImageDream / Stable Zero123 (first "
                "of the batch); it is re-centred to fill 80% of the frame."
            ),
        ),
        io.Mask.Input(
            "mask",
            optional=True,
            tooltip=(
                "Object coverage of the image (1 = object), as background-removal nodes give; "
                "without it the image's alpha is used. It must separate the object from a background."
            ),
        ),
        io.Boolean.Input(
            "invert_mask",
            default=False,
            optional=True,
            tooltip="Set for masks in ComfyUI's LoadImage convention (1 = transparent).",
        ),
        io.Float.Input(
            "reference_elevation",
            default=0.0,
            min=-89.0,
            max=89.0,
            step=1.0,
            optional=True,
            tooltip=(
                "Elevation of the reference image's camera in degrees (negative "
                "= above); Stable Zero123 conditions on cameras relative to it."
            ),
        ),
        io.Float.Input(
            "guidance_scale",
            default=0.0,
            min=0.0,
            max=50.0,
            step=0.1,
            tooltip="Classifier-free guidance; 0 uses the paper's value (MVDream 7.5, ImageDream 2.0, Zero123 3.0).",
        ),
        io.Float.Input(
            "eta",
            default=-1.0,
            min=-1.0,
            max=1.0,
            step=0.05,
            tooltip="DDIM eta; -1 uses the paper's value (MVDream 0, ImageDream 1, Zero123 0.5).",
            **_compat.advanced(io.Float),
        ),
        io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=True),
    ]


def _knobs(guidance_scale: float, eta: float) -> tuple[float | None, float | None]:
    """The widgets' "paper value" sentinels (0 / -1) as the core's None."""
    return (guidance_scale if guidance_scale > 0 else None, eta if eta >= 0 else None)


class MicroDreamerMultiViewSampler(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return _compat.schema(
            node_id="MicroDreamerMultiViewSampler",
            display_name="Multi-View Sampler",
            search_aliases=["multi-view diffusion", "mvdream sampler", "novel views"],
            category="MicroDreamer/diffusion",
            description=(
                "Samples consistent views of an object from pure noise (MicroDreamer's initialisation): all DDIM steps "
                "with classifier-free guidance. Without cameras it draws the model's paper preset (4 views at radius "
                "2.5 for MVDream/ImageDream, 6 at radius 2 for Stable Zero123) from the seed. Returns the views and "
                "the cameras used."
            ),
            inputs=[
                MDMultiViewModel.Input("mv_model"),
                *_common_inputs(),
                MDCameras.Input(
                    "cameras",
                    optional=True,
                    tooltip=(
                        "Views to generate; default: the model's paper preset around "
                        "reference_elevation (azimuth 0 = the input view, the front)."
                    ),
                ),
                io.Int.Input(
                    "steps",
                    default=20,
                    min=1,
                    max=200,
                    tooltip="DDIM steps (the paper: 20 for Zero123, 10 for ImageDream).",
                    **_compat.advanced(io.Int),
                ),
                io.Int.Input(
                    "image_size",
                    default=256,
                    min=64,
                    max=1024,
                    step=64,
                    tooltip="Size of the generated views; the models are trained at 256.",
                    **_compat.advanced(io.Int),
                ),
            ],
            outputs=[
                io.Image.Output("images", display_name="images"),
                MDCameras.Output("cameras_out", display_name="cameras"),
            ],
        )

    @classmethod
    def execute(
        cls,
        mv_model: _vram.ManagedModel,
        prompt: str,
        negative_prompt: str,
        guidance_scale: float,
        eta: float,
        seed: int,
        steps: int,
        image_size: int,
        image=None,
        mask=None,
        invert_mask: bool = False,
        reference_elevation: float = 0.0,
        cameras=None,
    ) -> io.NodeOutput:
        model = _vram.on_device(mv_model)
        if cameras is None:
            cameras = sample_orbit_cameras(
                CAMERA_PRESETS[model.kind],
                image_size,
                torch.Generator().manual_seed(int(seed) % 2**63),
                reference_elevation=float(reference_elevation),
            )
        cond = make_condition(
            None, prompt, negative_prompt, image, mask, bool(invert_mask), float(reference_elevation), image_size
        )
        gs, et = _knobs(guidance_scale, eta)
        result = sample(
            model,
            cond,
            cameras,
            steps=steps,
            guidance_scale=gs,
            eta=et,
            seed=int(seed) % 2**63,
            image_size=image_size,
            progress=progress_hook(),
            cancel=cancel_hook(),
        )
        return io.NodeOutput(result.images, cameras.with_resolution(image_size))


class MicroDreamerHybridForward(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return _compat.schema(
            node_id="MicroDreamerHybridForward",
            display_name="Hybrid Forward + Sampling (multi-view img2img)",
            search_aliases=["multi-view img2img", "ddim inversion"],
            category="MicroDreamer/diffusion",
            description=(
                "Refines a batch of views (e.g. renders of a 3D model) with SIR's hybrid forward process: encode, add "
                "noise to t1 = inv_ratio * t, DDIM-invert to t with the unconditional prediction, then DDIM-sample "
                "back with guidance. Lower t keeps more of the input. mode 'inversion' / 'noise' are the paper's "
                "ablations."
            ),
            inputs=[
                MDMultiViewModel.Input("mv_model"),
                io.Image.Input("images", tooltip="One view per camera (B, H, W, 3); resized to image_size."),
                MDCameras.Input("cameras", tooltip="The cameras the views were rendered from."),
                *_common_inputs(),
                io.Int.Input(
                    "t",
                    default=601,
                    min=1,
                    max=1000,
                    tooltip=(
                        "How far into the diffusion process to push the "
                        "views (snapped to the nearest DDIM grid timestep)."
                    ),
                ),
                io.Int.Input(
                    "steps",
                    default=20,
                    min=2,
                    max=200,
                    tooltip="DDIM grid size (20: timesteps 951, 901, ..., 1).",
                    **_compat.advanced(io.Int),
                ),
                io.Float.Input(
                    "inv_ratio",
                    default=0.6,
                    min=0.0,
                    max=1.0,
                    step=0.05,
                    tooltip="Where noise-adding stops and DDIM inversion starts, as a fraction of t (the paper: 0.6).",
                    **_compat.advanced(io.Float),
                ),
                io.Combo.Input(
                    "mode",
                    options=["hybrid", "inversion", "noise"],
                    default="hybrid",
                    tooltip="hybrid: the paper's choice; inversion: slow; noise: one-shot noise-adding (artefacts).",
                ),
                io.Int.Input("image_size", default=256, min=64, max=1024, step=64),
            ],
            outputs=[io.Image.Output("images_out", display_name="images")],
        )

    @classmethod
    def execute(
        cls,
        mv_model: _vram.ManagedModel,
        images,
        cameras,
        prompt: str,
        negative_prompt: str,
        guidance_scale: float,
        eta: float,
        seed: int,
        t: int,
        steps: int,
        inv_ratio: float,
        mode: str,
        image_size: int,
        image=None,
        mask=None,
        invert_mask: bool = False,
        reference_elevation: float = 0.0,
    ) -> io.NodeOutput:
        model = _vram.on_device(mv_model)
        t2 = DDIMSchedule(num_inference_steps=steps).nearest_timestep(t)
        cond = make_condition(
            None, prompt, negative_prompt, image, mask, bool(invert_mask), float(reference_elevation), image_size
        )
        gs, et = _knobs(guidance_scale, eta)
        result = refine_views(
            model,
            images,
            cameras,
            cond,
            t2,
            steps=steps,
            inv_ratio=inv_ratio,
            mode=mode,
            guidance_scale=gs,
            eta=et,
            seed=int(seed) % 2**63,
            image_size=image_size,
            progress=progress_hook(),
            cancel=cancel_hook(),
        )
        return io.NodeOutput(result.images)
