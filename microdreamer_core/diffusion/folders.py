"""Diffusers-layout model folders (``ashawkey/mvdream-sd2.1-diffusers``,
``ashawkey/imagedream-ipmv-diffusers``, ``ashawkey/stable-zero123-diffusers``): ``unet/``,
``vae/``, ``text_encoder/`` + ``tokenizer/`` or ``image_encoder/`` + ``feature_extractor/``,
``clip_camera_projection/``; the kind is read from the UNet config.

Components load straight into the target dtype on meta-initialised modules, the largest first, so
the file pages mapped while the last ones load are small. Any model saves back in the same layout
(:func:`save_diffusers_folder`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..errors import InputError
from .models import (
    CLIPCameraProjection,
    ImageDreamModel,
    MultiViewModel,
    MVDreamModel,
    Zero123Model,
)
from .unet import MultiViewUNetModel
from .weights import (
    default_dtype,
    empty_weights,
    load_component,
    load_strict,
    read_state_dict,
    transformers_kwargs,
)

__all__ = ["detect_folder_kind", "load_diffusers_folder", "save_diffusers_folder"]


def _component_weights(folder: Path) -> dict[str, Tensor]:
    for name in (
        "diffusion_pytorch_model.safetensors",
        "model.safetensors",
        "diffusion_pytorch_model.bin",
        "pytorch_model.bin",
    ):
        if (folder / name).is_file():
            return read_state_dict(folder / name)
    raise InputError(
        f"no weights file in {folder}: expected "
        "diffusion_pytorch_model.safetensors (or .bin); download the folder again"
    )


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"{path} is not valid JSON ({exc}); download the model folder again") from exc


def detect_folder_kind(folder: Path) -> str:
    """``mvdream`` / ``imagedream`` / ``zero123`` from a diffusers folder, or a clear error."""
    unet_cfg = folder / "unet" / "config.json"
    if not unet_cfg.is_file():
        raise InputError(
            f"{folder} is not a diffusers model folder (no unet/config.json): "
            "point to the folder that holds unet/, vae/, ..."
        )
    cfg = _read_json(unet_cfg)
    cls = cfg.get("_class_name", "")
    if cls == "MultiViewUNetModel" or "camera_dim" in cfg:
        return "imagedream" if int(cfg.get("ip_dim", 0) or 0) > 0 else "mvdream"
    if cls == "UNet2DConditionModel" and (folder / "clip_camera_projection").is_dir() and cfg.get("in_channels") == 8:
        return "zero123"
    if cls == "UNet2DConditionModel":
        raise InputError(
            f"{folder.name} is a plain Stable Diffusion model (UNet2DConditionModel, {cfg.get('in_channels')} input "
            "channels, no camera conditioning): MicroDreamer needs MVDream, ImageDream or Stable Zero123"
        )
    raise InputError(
        f"{folder.name}: unknown UNet class {cls!r}; expected MultiViewUNetModel (MVDream/ImageDream) or Stable Zero123"
    )


def load_diffusers_folder(
    folder: str | os.PathLike, device: torch.device | str = "cpu", dtype: torch.dtype | None = None
) -> MultiViewModel:
    """Load a diffusers-layout MVDream / ImageDream / Stable Zero123 folder."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import (
        CLIPImageProcessor,
        CLIPTextModel,
        CLIPTokenizer,
        CLIPVisionModel,
        CLIPVisionModelWithProjection,
    )

    folder = Path(folder)
    kind = detect_folder_kind(folder)
    dtype = dtype or default_dtype(device)
    # straight into the target dtype, on meta-initialised modules; largest component first
    hf = transformers_kwargs(dtype)
    if kind in ("mvdream", "imagedream"):
        unet = load_component("UNet", MultiViewUNetModel.from_pretrained, folder / "unet", torch_dtype=dtype)
        if kind == "imagedream":
            enc = load_component("image encoder", CLIPVisionModel.from_pretrained, folder / "image_encoder", **hf)
        text = load_component("text encoder", CLIPTextModel.from_pretrained, folder / "text_encoder", **hf)
        tokenizer = load_component("tokenizer", CLIPTokenizer.from_pretrained, folder / "tokenizer")
    else:
        unet = load_component("UNet", UNet2DConditionModel.from_pretrained, folder / "unet", torch_dtype=dtype)
        enc = load_component(
            "image encoder", CLIPVisionModelWithProjection.from_pretrained, folder / "image_encoder", **hf
        )
        pcfg = _read_json(folder / "clip_camera_projection" / "config.json")
        with empty_weights():
            proj = CLIPCameraProjection(pcfg.get("embedding_dim", 768), pcfg.get("additional_embeddings", 4))
        load_strict(proj, _component_weights(folder / "clip_camera_projection"), "camera projection", assign=True)
    vae = load_component("VAE", AutoencoderKL.from_pretrained, folder / "vae", torch_dtype=dtype)
    if kind == "mvdream":
        model: MultiViewModel = MVDreamModel(unet, vae, tokenizer, text)
    elif kind == "imagedream":
        proc = load_component("image processor", CLIPImageProcessor.from_pretrained, folder / "feature_extractor")
        model = ImageDreamModel(unet, vae, tokenizer, text, proc, enc)
    else:
        proc = load_component("image processor", CLIPImageProcessor.from_pretrained, folder / "feature_extractor")
        model = Zero123Model(unet, vae, proc, enc, proj)
    model.source = str(folder)
    return model.to(device=device, dtype=dtype).eval().requires_grad_(False)


def save_diffusers_folder(model: MultiViewModel, folder: str | os.PathLike) -> Path:
    """Write ``model`` in the diffusers layout its hub port uses (safetensors weights)."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    index: dict[str, Any] = {"_class_name": type(model).__name__, "_microdreamer_kind": model.kind}
    model.vae.save_pretrained(folder / "vae")
    model.unet.save_pretrained(folder / "unet")
    parts = {
        "vae": ["diffusers", "AutoencoderKL"],
        "unet": ["mv_unet", "MultiViewUNetModel"],
        "scheduler": ["diffusers", "DDIMScheduler"],
    }
    if isinstance(model, MVDreamModel | ImageDreamModel):
        model.text_encoder.save_pretrained(folder / "text_encoder")
        model.tokenizer.save_pretrained(folder / "tokenizer")
        parts |= {"text_encoder": ["transformers", "CLIPTextModel"], "tokenizer": ["transformers", "CLIPTokenizer"]}
    if isinstance(model, ImageDreamModel | Zero123Model):
        model.image_encoder.save_pretrained(folder / "image_encoder")
        model.image_processor.save_pretrained(folder / "feature_extractor")
        parts |= {
            "image_encoder": ["transformers", type(model.image_encoder).__name__],
            "feature_extractor": ["transformers", "CLIPImageProcessor"],
        }
    if isinstance(model, Zero123Model):
        parts["unet"] = ["diffusers", "UNet2DConditionModel"]
        parts["clip_camera_projection"] = ["pipeline_zero1to3", "CLIPCameraProjection"]
        proj = folder / "clip_camera_projection"
        proj.mkdir(exist_ok=True)
        (proj / "config.json").write_text(
            json.dumps(
                {
                    "_class_name": "CLIPCameraProjection",
                    "embedding_dim": model.camera_projection.embedding_dim,
                    "additional_embeddings": model.camera_projection.additional_embeddings,
                }
            )
        )
        save_file(
            {k: v.contiguous() for k, v in model.camera_projection.state_dict().items()},
            str(proj / "diffusion_pytorch_model.safetensors"),
        )
    (folder / "scheduler").mkdir(exist_ok=True)
    (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps(_SCHEDULER_CONFIG, indent=2))
    (folder / "model_index.json").write_text(json.dumps(index | parts, indent=2))
    return folder


_SCHEDULER_CONFIG = {
    "_class_name": "DDIMScheduler",
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "clip_sample": False,
    "set_alpha_to_one": False,
    "steps_offset": 1,
    "prediction_type": "epsilon",
}
