"""Loading the multi-view diffusion models from what users actually have on disk.

Three sources, one entry point, :func:`load_model`:

* a **diffusers-layout folder** (``ashawkey/mvdream-sd2.1-diffusers``,
  ``ashawkey/imagedream-ipmv-diffusers``, ``ashawkey/stable-zero123-diffusers``): ``unet/``,
  ``vae/``, ``text_encoder/`` + ``tokenizer/`` or ``image_encoder/`` + ``feature_extractor/``,
  ``clip_camera_projection/``; the kind is read from the UNet config;
* an **original single-file checkpoint** (``sd-v2.1-base-4view.pt``,
  ``sd-v2.1-base-4view-ipmv.pt``, or the same as ``.safetensors``): UNet under
  ``model.diffusion_model.``, LDM VAE under ``first_stage_model.`` (converted with diffusers'
  own converter), OpenCLIP text tower under ``cond_stage_model.model.`` when present; parts a
  checkpoint does not hold (tokenizer, ImageDream's CLIP image encoder) come from
  ``extra_sources`` or the hub;
* a **hub id** (``owner/name``), downloaded with ``huggingface_hub`` into ``download_dir``.

Every component is built without weights first (parameters on the ``meta`` device: diffusers'
``low_cpu_mem_usage`` path, which needs ``accelerate``, transformers' own, and
:func:`_empty_weights` for what this module builds itself) and then takes the file's tensors,
converted straight to the target dtype (folders) or as they are (single files, memory-mapped):
no full-size module is allocated or randomly initialised only to be overwritten. In a folder the
largest component loads first, so the file pages mapped while the last ones load are small.

Wrong input is refused with one line naming what was found and what was expected. The same
module builds randomly initialised models (:func:`build_random_model`), full size for timing and
tiny for tests, and saves any model back in the diffusers layout (:func:`save_diffusers_folder`).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import InputError
from .models import (
    MODEL_CLASSES,
    CLIPCameraProjection,
    ImageDreamModel,
    MultiViewModel,
    MVDreamModel,
    Zero123Model,
)
from .unet import MultiViewUNetModel

__all__ = [
    "load_model",
    "load_from_hub",
    "download_model",
    "check_repo_id",
    "MAX_HUB_DOWNLOAD_BYTES",
    "load_diffusers_folder",
    "load_single_file",
    "build_random_model",
    "save_diffusers_folder",
    "default_dtype",
    "HUB_IDS",
    "SINGLE_FILE_SUFFIXES",
]

HUB_IDS = {
    "mvdream": "ashawkey/mvdream-sd2.1-diffusers",
    "imagedream": "ashawkey/imagedream-ipmv-diffusers",
    "zero123": "ashawkey/stable-zero123-diffusers",
}
SD21_HUB_ID = "stabilityai/stable-diffusion-2-1-base"
CLIP_H_HUB_ID = "laion/CLIP-ViT-H-14-laion2B-s32B-b79K"
SINGLE_FILE_SUFFIXES = (".safetensors", ".pt", ".ckpt", ".pth", ".bin")
UNET_PREFIX, VAE_PREFIX, TEXT_PREFIX = "model.diffusion_model.", "first_stage_model.", "cond_stage_model.model."


def default_dtype(device: torch.device | str) -> torch.dtype:
    """fp16 on CUDA (bf16 where fp16 is unsupported is not a case on CUDA GPUs), fp32 elsewhere."""
    return torch.float16 if torch.device(device).type == "cuda" else torch.float32


# ----------------------------------------------------------------------------------------------
# reading files
# ----------------------------------------------------------------------------------------------
def read_state_dict(path: str | os.PathLike) -> dict[str, Tensor]:
    """A checkpoint's tensors (safetensors or a torch pickle, unwrapping ``state_dict``), with a
    clear error for a truncated or corrupt file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"model file {path} does not exist")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            sd = load_file(str(path))
        else:
            sd = _torch_load(path)
    except Exception as exc:  # noqa: BLE001 - any failure means the file is unusable
        raise InputError(
            f"could not read {path.name} ({type(exc).__name__}: {str(exc)[:160]}): the file is truncated, corrupt or not a "
            "model checkpoint; download it again"
        ) from exc
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict) or not all(isinstance(v, Tensor) for v in sd.values()):
        raise InputError(f"{path.name} does not hold a state dict of tensors: it is not a model checkpoint")
    return sd


def _torch_load(path: Path) -> Any:
    """A torch pickle memory-mapped (tensors are read when used: the parts of a checkpoint a
    model does not take, such as EMA copies, never reach memory), or read whole where the file
    predates the zip format that mapping needs."""
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError:
        return torch.load(str(path), map_location="cpu", weights_only=True)


def _has_accelerate() -> bool:
    return importlib.util.find_spec("accelerate") is not None


@contextlib.contextmanager
def _empty_weights() -> Iterator[None]:
    """Build modules with their parameters on the ``meta`` device: no memory, no random
    initialisation; buffers (position ids...) stay real. Load into them with
    ``_load_strict(..., assign=True)``. Without ``accelerate`` this is a plain build (slower, same
    result)."""
    if not _has_accelerate():
        yield
        return
    from accelerate import init_empty_weights

    with init_empty_weights(include_buffers=False):
        yield


def _transformers_kwargs(dtype: torch.dtype) -> dict[str, Any]:
    """``from_pretrained`` arguments that load a transformers model straight into ``dtype`` on
    meta-initialised modules (transformers 5 always does; 4.x needs ``low_cpu_mem_usage`` and
    accelerate, and calls the dtype argument ``torch_dtype`` before 4.56)."""
    import transformers

    version = tuple(int(p) for p in transformers.__version__.split(".")[:2] if p.isdigit())
    kwargs: dict[str, Any] = {"dtype" if version >= (4, 56) else "torch_dtype": dtype}
    if version < (5,) and _has_accelerate():
        kwargs["low_cpu_mem_usage"] = True
    return kwargs


def _component_weights(folder: Path) -> dict[str, Tensor]:
    for name in ("diffusion_pytorch_model.safetensors", "model.safetensors", "diffusion_pytorch_model.bin", "pytorch_model.bin"):
        if (folder / name).is_file():
            return read_state_dict(folder / name)
    raise InputError(f"no weights file in {folder}: expected diffusion_pytorch_model.safetensors (or .bin); download the folder again")


def _load_component(name: str, fn, *args, **kwargs):
    """Run a ``from_pretrained`` and turn its failure into one user-facing line."""
    try:
        return fn(*args, **kwargs)
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"could not load the {name} ({type(exc).__name__}: {str(exc)[:200]}): the folder is incomplete or corrupt; download it again") from exc


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"{path} is not valid JSON ({exc}); download the model folder again") from exc


# ----------------------------------------------------------------------------------------------
# diffusers-layout folders
# ----------------------------------------------------------------------------------------------
def detect_folder_kind(folder: Path) -> str:
    """``mvdream`` / ``imagedream`` / ``zero123`` from a diffusers folder, or a clear error."""
    unet_cfg = folder / "unet" / "config.json"
    if not unet_cfg.is_file():
        raise InputError(f"{folder} is not a diffusers model folder (no unet/config.json): point to the folder that holds unet/, vae/, ...")
    cfg = _read_json(unet_cfg)
    cls = cfg.get("_class_name", "")
    if cls == "MultiViewUNetModel" or "camera_dim" in cfg:
        return "imagedream" if int(cfg.get("ip_dim", 0) or 0) > 0 else "mvdream"
    if cls == "UNet2DConditionModel" and (folder / "clip_camera_projection").is_dir() and cfg.get("in_channels") == 8:
        return "zero123"
    if cls == "UNet2DConditionModel":
        raise InputError(
            f"{folder.name} is a plain Stable Diffusion model (UNet2DConditionModel, {cfg.get('in_channels')} input channels, no camera "
            "conditioning): MicroDreamer needs MVDream, ImageDream or Stable Zero123"
        )
    raise InputError(f"{folder.name}: unknown UNet class {cls!r}; expected MultiViewUNetModel (MVDream/ImageDream) or Stable Zero123")


def load_diffusers_folder(folder: str | os.PathLike, device: torch.device | str = "cpu", dtype: torch.dtype | None = None) -> MultiViewModel:
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
    hf = _transformers_kwargs(dtype)
    if kind in ("mvdream", "imagedream"):
        unet = _load_component("UNet", MultiViewUNetModel.from_pretrained, folder / "unet", torch_dtype=dtype)
        if kind == "imagedream":
            enc = _load_component("image encoder", CLIPVisionModel.from_pretrained, folder / "image_encoder", **hf)
        text = _load_component("text encoder", CLIPTextModel.from_pretrained, folder / "text_encoder", **hf)
        tokenizer = _load_component("tokenizer", CLIPTokenizer.from_pretrained, folder / "tokenizer")
    else:
        unet = _load_component("UNet", UNet2DConditionModel.from_pretrained, folder / "unet", torch_dtype=dtype)
        enc = _load_component("image encoder", CLIPVisionModelWithProjection.from_pretrained, folder / "image_encoder", **hf)
        pcfg = _read_json(folder / "clip_camera_projection" / "config.json")
        with _empty_weights():
            proj = CLIPCameraProjection(pcfg.get("embedding_dim", 768), pcfg.get("additional_embeddings", 4))
        _load_strict(proj, _component_weights(folder / "clip_camera_projection"), "camera projection", assign=True)
    vae = _load_component("VAE", AutoencoderKL.from_pretrained, folder / "vae", torch_dtype=dtype)
    if kind == "mvdream":
        model: MultiViewModel = MVDreamModel(unet, vae, tokenizer, text)
    elif kind == "imagedream":
        proc = _load_component("image processor", CLIPImageProcessor.from_pretrained, folder / "feature_extractor")
        model = ImageDreamModel(unet, vae, tokenizer, text, proc, enc)
    else:
        proc = _load_component("image processor", CLIPImageProcessor.from_pretrained, folder / "feature_extractor")
        model = Zero123Model(unet, vae, proc, enc, proj)
    model.source = str(folder)
    return model.to(device=device, dtype=dtype).eval().requires_grad_(False)


def _load_strict(module: nn.Module, sd: dict[str, Tensor], what: str, assign: bool = False) -> None:
    """Load ``sd`` into ``module``, refusing missing/unexpected keys and non-finite values.
    ``assign``: the tensors become the parameters (for modules built under :func:`_empty_weights`,
    whose parameters are on ``meta``; they keep the file's dtype until the model is moved)."""
    if assign:
        sd = {k: v if v.is_contiguous() else v.contiguous() for k, v in sd.items()}
    missing, unexpected = module.load_state_dict(sd, strict=False, assign=assign)
    if missing or unexpected:
        raise InputError(
            f"the {what} weights do not match the architecture (missing {len(missing)} e.g. {missing[:2]}, unexpected "
            f"{len(unexpected)} e.g. {unexpected[:2]}): the file is of another model kind"
        )
    for k, v in sd.items():
        if not _all_finite(v):
            raise InputError(f"the {what} weight {k} contains NaN or infinite values: the file is corrupt; download it again")


def _all_finite(v: Tensor) -> bool:
    """Whether ``v`` has no NaN/inf. A NaN or inf anywhere makes the sum NaN or inf, so a finite
    sum settles it in one pass without temporaries (``isfinite`` builds several full-size ones:
    seconds per GB); a non-finite sum (or an overflowing one) gets the element-wise check."""
    if not v.is_floating_point():
        return True
    return bool(torch.isfinite(v.sum())) or bool(torch.isfinite(v).all())


def save_diffusers_folder(model: MultiViewModel, folder: str | os.PathLike) -> Path:
    """Write ``model`` in the diffusers layout its hub port uses (safetensors weights)."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    index: dict[str, Any] = {"_class_name": type(model).__name__, "_microdreamer_kind": model.kind}
    model.vae.save_pretrained(folder / "vae")
    model.unet.save_pretrained(folder / "unet")
    parts = {"vae": ["diffusers", "AutoencoderKL"], "unet": ["mv_unet", "MultiViewUNetModel"], "scheduler": ["diffusers", "DDIMScheduler"]}
    if isinstance(model, MVDreamModel | ImageDreamModel):
        model.text_encoder.save_pretrained(folder / "text_encoder")
        model.tokenizer.save_pretrained(folder / "tokenizer")
        parts |= {"text_encoder": ["transformers", "CLIPTextModel"], "tokenizer": ["transformers", "CLIPTokenizer"]}
    if isinstance(model, ImageDreamModel | Zero123Model):
        model.image_encoder.save_pretrained(folder / "image_encoder")
        model.image_processor.save_pretrained(folder / "feature_extractor")
        parts |= {"image_encoder": ["transformers", type(model.image_encoder).__name__], "feature_extractor": ["transformers", "CLIPImageProcessor"]}
    if isinstance(model, Zero123Model):
        parts["unet"] = ["diffusers", "UNet2DConditionModel"]
        parts["clip_camera_projection"] = ["pipeline_zero1to3", "CLIPCameraProjection"]
        proj = folder / "clip_camera_projection"
        proj.mkdir(exist_ok=True)
        (proj / "config.json").write_text(
            json.dumps({"_class_name": "CLIPCameraProjection", "embedding_dim": model.camera_projection.embedding_dim, "additional_embeddings": model.camera_projection.additional_embeddings})
        )
        save_file({k: v.contiguous() for k, v in model.camera_projection.state_dict().items()}, str(proj / "diffusion_pytorch_model.safetensors"))
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


# ----------------------------------------------------------------------------------------------
# original single-file checkpoints
# ----------------------------------------------------------------------------------------------
def detect_checkpoint_kind(sd: dict[str, Tensor], name: str) -> str:
    if UNET_PREFIX + "camera_embed.0.weight" in sd:
        return "imagedream" if UNET_PREFIX + "image_embed.latents" in sd else "mvdream"
    if "cc_projection.weight" in sd:
        raise InputError(
            f"{name} is an original Stable Zero123 checkpoint: load the diffusers folder {HUB_IDS['zero123']} instead "
            "(single-file Zero123 is not supported)"
        )
    if UNET_PREFIX + "input_blocks.0.0.weight" in sd:
        raise InputError(f"{name} is a plain Stable Diffusion checkpoint (no camera embedding): MicroDreamer needs MVDream or ImageDream weights")
    if any(k.startswith(("down_blocks.", "encoder.down", "text_model.", "vision_model.")) for k in sd):
        raise InputError(f"{name} holds a single component (UNet, VAE or CLIP), not a whole MVDream/ImageDream checkpoint")
    raise InputError(f"{name} is not a diffusion model checkpoint this loader knows (expected MVDream or ImageDream)")


def infer_unet_config(unet_sd: dict[str, Tensor], num_head_channels: int = 64) -> dict[str, Any]:
    """MultiViewUNetModel arguments from the weights' shapes. The head size is not stored in a
    checkpoint; SD-2.1 uses 64 (override with the checkpoint's YAML)."""
    conv_in = unet_sd["input_blocks.0.0.weight"]
    mc = conv_in.shape[0]
    blocks = sorted({int(k.split(".")[1]) for k in unet_sd if k.startswith("input_blocks.")})
    downs = [i for i in blocks if f"input_blocks.{i}.0.op.weight" in unet_sd]
    per_level = (downs[0] - 1) if downs else len(blocks) - 1
    mults, attn = [], []
    for level in range(len(downs) + 1):
        first = 1 + level * (per_level + 1)
        mults.append(unet_sd[f"input_blocks.{first}.0.out_layers.3.weight"].shape[0] // mc)
        if f"input_blocks.{first}.1.norm.weight" in unet_sd:
            attn.append(2**level)
    depth = len({k.split(".")[3] for k in unet_sd if k.startswith("middle_block.1.transformer_blocks.")})
    cfg: dict[str, Any] = {
        "in_channels": conv_in.shape[1],
        "model_channels": mc,
        "out_channels": unet_sd["out.2.weight"].shape[0],
        "num_res_blocks": per_level,
        "channel_mult": mults,
        "attention_resolutions": attn,
        "num_head_channels": num_head_channels,
        "transformer_depth": depth,
        "context_dim": unet_sd["middle_block.1.transformer_blocks.0.attn2.to_k.weight"].shape[1],
        "camera_dim": unet_sd["camera_embed.0.weight"].shape[1],
    }
    if "image_embed.latents" in unet_sd:
        cfg |= {
            "ip_dim": unet_sd["image_embed.latents"].shape[1],
            "ip_embedding_dim": unet_sd["image_embed.proj_in.weight"].shape[1],
            "ip_depth": len({k.split(".")[2] for k in unet_sd if k.startswith("image_embed.layers.")}),
            # the resampler's heads are 64 wide (12 x 64 in ImageDream); only their product is stored
            "ip_dim_head": 64,
            "ip_heads": max(1, unet_sd["image_embed.layers.0.0.to_q.weight"].shape[0] // 64),
        }
    return cfg


_YAML_SWITCHES = ("use_spatial_transformer", "use_linear_in_transformer", "legacy", "use_checkpoint", "use_scale_shift_norm", "resblock_updown")


def _yaml_unet_params(path: Path) -> dict[str, Any]:
    """``model.params.unet_config.params`` of the YAML the authors ship beside a checkpoint."""
    import yaml

    for cand in (path.with_suffix(".yaml"), path.with_suffix(".yml")):
        if cand.is_file():
            data = yaml.safe_load(cand.read_text())
            try:
                return dict(data["model"]["params"]["unet_config"]["params"])
            except (KeyError, TypeError) as exc:
                raise InputError(f"{cand.name} has no model.params.unet_config.params: it is not the checkpoint's config") from exc
    return {}


def _vae_config(sd: dict[str, Tensor]) -> dict[str, Any]:
    ch = sd[VAE_PREFIX + "encoder.conv_in.weight"].shape[0]
    levels = sorted({int(k.split(".")[3]) for k in sd if k.startswith(VAE_PREFIX + "encoder.down.")})
    outs = [sd[f"{VAE_PREFIX}encoder.down.{i}.block.0.conv2.weight"].shape[0] for i in levels]
    layers = len({k.split(".")[5] for k in sd if k.startswith(VAE_PREFIX + "encoder.down.0.block.")})
    return {
        "in_channels": sd[VAE_PREFIX + "encoder.conv_in.weight"].shape[1],
        "out_channels": sd[VAE_PREFIX + "decoder.conv_out.weight"].shape[0],
        "down_block_types": ["DownEncoderBlock2D"] * len(outs),
        "up_block_types": ["UpDecoderBlock2D"] * len(outs),
        "block_out_channels": outs,
        "latent_channels": sd[VAE_PREFIX + "quant_conv.weight"].shape[0] // 2,
        "layers_per_block": layers,
        "norm_num_groups": 32 if ch % 32 == 0 else ch,
        "sample_size": 256,
        "scaling_factor": 0.18215,
    }


def _text_encoder_from_checkpoint(sd: dict[str, Tensor]):
    """The OpenCLIP text tower inside an SD-2 checkpoint as a transformers CLIPTextModel that
    stops at the penultimate layer (what SD 2.x conditions on)."""
    from diffusers.loaders.single_file_utils import convert_open_clip_checkpoint
    from transformers import CLIPTextConfig, CLIPTextModel

    tok = sd[TEXT_PREFIX + "token_embedding.weight"]
    layers = len({k.split(".")[4] for k in sd if k.startswith(TEXT_PREFIX + "transformer.resblocks.")})
    width = tok.shape[1]
    cfg = CLIPTextConfig(
        vocab_size=tok.shape[0],
        hidden_size=width,
        intermediate_size=sd[TEXT_PREFIX + "transformer.resblocks.0.mlp.c_fc.weight"].shape[0],
        num_hidden_layers=layers - 1,
        num_attention_heads=max(1, width // 64),  # OpenCLIP text towers use 64-wide heads
        max_position_embeddings=sd[TEXT_PREFIX + "positional_embedding"].shape[0],
        hidden_act="gelu",
        projection_dim=sd[TEXT_PREFIX + "text_projection"].shape[1] if TEXT_PREFIX + "text_projection" in sd else width,
        bos_token_id=49406 if tok.shape[0] > 49406 else 0,
        eos_token_id=49407 if tok.shape[0] > 49407 else 1,
    )
    with _empty_weights():
        model = CLIPTextModel(cfg)
    converted = convert_open_clip_checkpoint(model, sd)
    converted = {k: v for k, v in converted.items() if not k.startswith(f"text_model.encoder.layers.{layers - 1}.")}
    converted.pop("text_projection.weight", None)
    expected = model.state_dict()
    if not any(k.startswith("text_model.") for k in expected):  # transformers >= 5 names have no prefix
        converted = {k.removeprefix("text_model."): v for k, v in converted.items()}
    for buffer in ("position_ids", "embeddings.position_ids", "text_model.embeddings.position_ids"):
        if buffer in expected and buffer not in converted:
            converted[buffer] = expected[buffer]
    _load_strict(model, converted, "text encoder", assign=True)
    return model


# What a single-file checkpoint takes from the hub, per component: the files it loads and no more
# (those repos also hold .bin, fp16 and OpenCLIP copies of the same weights, several GB each).
SINGLE_FILE_HUB_FILES: dict[str | None, list[str]] = {
    "tokenizer": ["tokenizer/*.json", "tokenizer/*.txt"],
    "text_encoder": ["text_encoder/config.json", "text_encoder/model.safetensors"],
    None: ["config.json", "preprocessor_config.json", "model.safetensors"],  # the OpenCLIP ViT-H/14 image encoder
}


def _resolve_source(value: str | os.PathLike | None, hub_id: str, subfolder: str | None, download_dir: str | os.PathLike | None, what: str) -> Path:
    """A local folder for a component: the given path, or the hub download of ``hub_id`` limited to
    the files the component loads (:data:`SINGLE_FILE_HUB_FILES`)."""
    if value is not None and Path(value).exists():
        path = Path(value)
        return path / subfolder if subfolder and (path / subfolder).is_dir() else path
    repo = check_repo_id(str(value)) if value is not None else hub_id
    folder = download(repo, download_dir, allow_patterns=SINGLE_FILE_HUB_FILES[subfolder], what=what)
    return folder / subfolder if subfolder else folder


def load_single_file(
    path: str | os.PathLike,
    device: torch.device | str = "cpu",
    dtype: torch.dtype | None = None,
    tokenizer: str | os.PathLike | None = None,
    text_encoder: str | os.PathLike | None = None,
    image_encoder: str | os.PathLike | None = None,
    download_dir: str | os.PathLike | None = None,
) -> MultiViewModel:
    """Load an original MVDream / ImageDream checkpoint (.pt/.ckpt or .safetensors).

    The UNet and VAE always come from the file; the text encoder too when the checkpoint holds
    ``cond_stage_model``. The rest comes from ``tokenizer`` / ``text_encoder`` /
    ``image_encoder`` (a local folder or a hub id), by default the SD-2.1 tokenizer and the
    OpenCLIP ViT-H/14 of the hub. A YAML with the checkpoint's name beside it (as the authors
    ship) supplies the UNet head size; otherwise SD-2.1's 64 is used.
    """
    from diffusers import AutoencoderKL
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint
    from transformers import (
        CLIPImageProcessor,
        CLIPTextModel,
        CLIPTokenizer,
        CLIPVisionModel,
    )

    path = Path(path)
    sd = read_state_dict(path)
    kind = detect_checkpoint_kind(sd, path.name)
    dtype = dtype or default_dtype(device)

    unet_sd = {k[len(UNET_PREFIX) :]: v for k, v in sd.items() if k.startswith(UNET_PREFIX)}
    yaml_params = _yaml_unet_params(path)
    cfg = infer_unet_config(unet_sd, int(yaml_params.get("num_head_channels", 64) or 64))
    # the YAML's architecture switches are checked by the constructor (a layout it does not build is refused)
    cfg |= {k: yaml_params[k] for k in _YAML_SWITCHES if k in yaml_params}
    with _empty_weights():
        unet = MultiViewUNetModel(**cfg)
    _load_strict(unet, unet_sd, "UNet", assign=True)

    if VAE_PREFIX + "encoder.conv_in.weight" not in sd:
        raise InputError(f"{path.name} has no VAE (first_stage_model): it is not a complete MVDream/ImageDream checkpoint")
    vae_cfg = _vae_config(sd)
    with _empty_weights():
        vae = AutoencoderKL(**vae_cfg)
    _load_strict(vae, convert_ldm_vae_checkpoint(sd, vae.config), "VAE", assign=True)

    tok_dir = _resolve_source(tokenizer, SD21_HUB_ID, "tokenizer", download_dir, "the SD-2.1 tokenizer")
    tok = _load_component("tokenizer", CLIPTokenizer.from_pretrained, tok_dir)
    if TEXT_PREFIX + "token_embedding.weight" in sd and text_encoder is None:
        text = _text_encoder_from_checkpoint(sd)
    else:
        te_dir = _resolve_source(text_encoder, SD21_HUB_ID, "text_encoder", download_dir, "the SD-2.1 text encoder")
        text = _load_component("text encoder", CLIPTextModel.from_pretrained, te_dir, **_transformers_kwargs(dtype))
    if kind == "mvdream":
        model: MultiViewModel = MVDreamModel(unet, vae, tok, text)
    else:
        enc_dir = _resolve_source(image_encoder, CLIP_H_HUB_ID, None, download_dir, "the OpenCLIP ViT-H/14 image encoder")
        enc = _load_component("image encoder", CLIPVisionModel.from_pretrained, enc_dir, **_transformers_kwargs(dtype))
        if (enc_dir / "preprocessor_config.json").is_file():
            proc = CLIPImageProcessor.from_pretrained(enc_dir)
        else:  # CLIP's standard preprocessing at the encoder's input size (224 for ViT-H/14)
            px = enc.config.image_size
            proc = CLIPImageProcessor(size={"shortest_edge": px}, crop_size={"height": px, "width": px})
        model = ImageDreamModel(unet, vae, tok, text, proc, enc)
    model.source = str(path)
    return model.to(device=device, dtype=dtype).eval().requires_grad_(False)


# ----------------------------------------------------------------------------------------------
# hub ids and the single entry point
# ----------------------------------------------------------------------------------------------
MAX_REPO_PART = 96
"""Longest owner or name in a hub repo id (the hub's own limit)."""
MAX_HUB_DOWNLOAD_BYTES = 12 * 10**9
"""Largest total size (12 GB) of the files a hub model download may fetch, where the hub lists
sizes; the three supported models take 2.5-6 GB."""
COMPONENTS = {
    "mvdream": ("unet", "vae", "text_encoder", "tokenizer"),
    "imagedream": ("unet", "vae", "text_encoder", "tokenizer", "image_encoder", "feature_extractor"),
    "zero123": ("unet", "vae", "image_encoder", "feature_extractor", "clip_camera_projection"),
}
"""The diffusers sub-folders each model kind loads (``scheduler/`` holds only a config)."""
MODEL_FOLDERS = ("unet", "vae", "text_encoder", "tokenizer", "image_encoder", "feature_extractor", "clip_camera_projection", "scheduler")
CONFIG_SUFFIXES = (".json", ".txt", ".model")  # configs, tokenizer vocab / merges / sentencepiece
WEIGHT_SUFFIXES = (".safetensors", ".bin")
_REPO_PART = re.compile(rf"[A-Za-z0-9_](?:[A-Za-z0-9_.-]{{0,{MAX_REPO_PART - 2}}}[A-Za-z0-9_])?")


def check_repo_id(value: object) -> str:
    """``value`` if it is a hub repo id ``owner/name`` (each part letters, digits, ``-``, ``_``,
    ``.``, starting and ending with a letter, digit or ``_``, at most 96 characters, no ``--`` or
    ``..``), else one :class:`InputError`. Paths (absolute, ``~``, ``..``, drive letters,
    backslashes, more parts) are refused whether or not they exist; the value is not echoed."""
    text = value if isinstance(value, str) else ""
    parts = text.split("/")
    if (len(parts) == 2 and all(_REPO_PART.fullmatch(p) for p in parts)
            and "--" not in text and ".." not in text and not text.endswith(".git")):
        return text
    if text.startswith(("/", "~", ".", "\\")) or "\\" in text or ":" in text or text.count("/") > 1:
        raise InputError("hub_id takes a hub repo id 'owner/name', not a path: put a model that is on this machine "
                         "into models/microdreamer and pick it in 'model'")
    raise InputError(f"hub_id must be a hub repo id 'owner/name' (letters, digits, '-', '_' and '.', at most {MAX_REPO_PART} "
                     "characters each, no '--' or '..'), e.g. ashawkey/imagedream-ipmv-diffusers")


def is_repo_id(value: object) -> bool:
    try:
        check_repo_id(value)
    except InputError:
        return False
    return True


def _offline_error(repo_id: str, download_dir, what: str, exc: BaseException) -> InputError:
    where = f"{download_dir}/{repo_id.replace('/', '--')}" if download_dir else "a local folder"
    return InputError(
        f"could not download {what} '{repo_id}' ({type(exc).__name__}); if this machine is offline, download "
        f"https://huggingface.co/{repo_id} elsewhere and put the files in {where}, then select that folder"
    )


def download(repo_id: str, download_dir: str | os.PathLike | None, allow_patterns: list[str] | None = None, what: str = "the model") -> Path:
    """Download a hub repo (or the parts matching ``allow_patterns``) and return its folder."""
    from huggingface_hub import snapshot_download

    target = Path(download_dir) / repo_id.replace("/", "--") if download_dir else None
    try:
        return Path(snapshot_download(repo_id, local_dir=target, allow_patterns=allow_patterns))
    except Exception as exc:  # noqa: BLE001 - offline, unknown repo, auth...
        raise _offline_error(repo_id, download_dir, what, exc) from exc


def _top_folder(name: str) -> str | None:
    parts = name.split("/")
    return parts[0] if len(parts) == 2 and parts[0] in MODEL_FOLDERS else None


def _config_files(names: list[str]) -> list[str]:
    """``model_index.json`` and the configs / tokenizer files of the known sub-folders."""
    return sorted(n for n in names if n == "model_index.json" or (_top_folder(n) and n.endswith(CONFIG_SUFFIXES)))


def _weight_files(names: list[str], folders: tuple[str, ...]) -> list[str]:
    """The weights each of ``folders`` loads: safetensors when there are any, else .bin; plain
    names (``diffusion_pytorch_model.safetensors`` or its shards) over variants (``.fp16.``)."""
    chosen: list[str] = []
    for folder in folders:
        inside = [n for n in names if _top_folder(n) == folder]
        for suffix in WEIGHT_SUFFIXES:
            files = [n for n in inside if n.endswith(suffix)]
            plain = [n for n in files if "." not in n.split("/")[1][: -len(suffix)]]
            if files:
                chosen += sorted(plain or files)
                break
    return chosen


def download_model(repo_id: str, download_dir: str | os.PathLike | None, max_bytes: int = MAX_HUB_DOWNLOAD_BYTES) -> Path:
    """Download a diffusers MVDream / ImageDream / Stable Zero123 repo, only what it loads.

    1. the repo's file list (``HfApi().model_info``): a repo without ``unet/config.json`` is refused;
    2. only the configs (``model_index.json``, ``<component>/*.json``, tokenizer files);
    3. the UNet config must be of a known kind (:func:`detect_folder_kind`), else refused and
       removed, before any weight is fetched;
    4. the weights of that kind's components only (safetensors over .bin), refused when the
       listed sizes add up to more than ``max_bytes`` (:data:`MAX_HUB_DOWNLOAD_BYTES`).
    Every download is pinned to the commit the file list came from. Returns the folder.
    """
    import shutil

    from huggingface_hub import HfApi, snapshot_download

    repo_id = check_repo_id(repo_id)
    target = Path(download_dir) / repo_id.replace("/", "--") if download_dir else None
    existed = target is not None and target.exists()
    try:
        info = HfApi().model_info(repo_id, files_metadata=True)
    except Exception as exc:  # noqa: BLE001 - offline, unknown or private repo...
        raise _offline_error(repo_id, download_dir, "the model", exc) from exc
    sizes = {s.rfilename: getattr(s, "size", None) for s in (info.siblings or [])}
    revision = getattr(info, "sha", None)
    if "unet/config.json" not in sizes:
        raise InputError(f"hub repo '{repo_id}' is not a diffusers model (no unet/config.json): MicroDreamer loads MVDream, "
                         "ImageDream or Stable Zero123 in the diffusers layout, e.g. " + ", ".join(HUB_IDS.values()))

    def fetch(files: list[str], what: str) -> Path:
        try:
            return Path(snapshot_download(repo_id, revision=revision, local_dir=target, allow_patterns=files))
        except Exception as exc:  # noqa: BLE001
            raise _offline_error(repo_id, download_dir, what, exc) from exc

    try:
        folder = fetch(_config_files(list(sizes)), "the model's configs")
        kind = detect_folder_kind(folder)
        weights = _weight_files(list(sizes), COMPONENTS[kind])
        missing = [c for c in COMPONENTS[kind] if c not in ("tokenizer", "feature_extractor")
                   and not any(w.startswith(c + "/") for w in weights)]
        if missing:
            raise InputError(f"hub repo '{repo_id}' has no weights for {', '.join(missing)}: it is not a complete "
                             f"{MODEL_CLASSES[kind].display_name} model in the diffusers layout")
        total = sum(sizes[w] or 0 for w in weights)
        if total > max_bytes:
            raise InputError(f"hub repo '{repo_id}' would download {total / 1e9:.1f} GB of weights, more than the "
                             f"{max_bytes / 1e9:.0f} GB allowed: that is not one of the supported models")
        return fetch(weights, "the model's weights")
    except BaseException:
        if target is not None and not existed:  # leave nothing half-downloaded behind
            shutil.rmtree(target, ignore_errors=True)
        raise


def load_from_hub(repo_id: str, device: torch.device | str = "cpu", dtype: torch.dtype | None = None,
                  download_dir: str | os.PathLike | None = None) -> MultiViewModel:
    """Load the diffusers model of hub repo ``owner/name``: from ``download_dir/owner--name`` when
    it is there, else downloaded there by :func:`download_model`. Never reads any other local path."""
    repo_id = check_repo_id(repo_id)
    local = Path(download_dir) / repo_id.replace("/", "--") if download_dir else None
    folder = local if local is not None and (local / "unet" / "config.json").is_file() else download_model(repo_id, download_dir)
    return load_diffusers_folder(folder, device, dtype)


def load_model(
    source: str | os.PathLike,
    device: torch.device | str = "cpu",
    dtype: torch.dtype | None = None,
    kind: str | None = None,
    download_dir: str | os.PathLike | None = None,
    **single_file_sources,
) -> MultiViewModel:
    """Load a multi-view diffusion model from a diffusers folder, a single file or a hub id.

    ``kind`` (``mvdream``/``imagedream``/``zero123``), when given, is checked against what was
    found: a node built for one model refuses the others with a clear message.
    ``dtype`` defaults to fp16 on CUDA and fp32 on CPU.
    """
    src = Path(source)
    if src.is_dir():
        model = load_diffusers_folder(src, device, dtype)
    elif src.is_file():
        if src.suffix.lower() not in SINGLE_FILE_SUFFIXES:
            raise InputError(f"{src.name}: unknown model file type {src.suffix!r}; expected one of {', '.join(SINGLE_FILE_SUFFIXES)}")
        model = load_single_file(src, device, dtype, download_dir=download_dir, **single_file_sources)
    elif is_repo_id(str(source)):
        model = load_from_hub(str(source), device, dtype, download_dir)
    else:
        raise InputError(f"model {source} not found: give a diffusers folder, a .safetensors/.pt checkpoint or a hub id like {HUB_IDS['imagedream']}")
    if kind is not None and model.kind != kind:
        raise InputError(f"{Path(str(source)).name} is a {model.display_name} model, but {MODEL_CLASSES[kind].display_name} is needed here")
    return model


# ----------------------------------------------------------------------------------------------
# random models: full size for timing, tiny for tests
# ----------------------------------------------------------------------------------------------
def _byte_alphabet() -> list[str]:
    """The 256 printable stand-ins byte-level BPE uses for bytes (printable Latin-1 bytes map to
    themselves, the others to code points from 256 up)."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("\u00a1"), ord("\u00ac") + 1), *range(ord("\u00ae"), ord("\u00ff") + 1)]
    extra = iter(range(256, 512))
    return [chr(b) if b in keep else chr(next(extra)) for b in range(256)]


def _byte_tokenizer(max_length: int = 77):
    """A CLIP tokenizer over a byte-level vocabulary without merges (for random models only:
    the real vocabulary comes with the weights)."""
    from transformers import CLIPTokenizer

    chars = _byte_alphabet()
    vocab = {c: i for i, c in enumerate(chars)} | {c + "</w>": i + len(chars) for i, c in enumerate(chars)}
    vocab |= {"<|startoftext|>": len(vocab), "<|endoftext|>": len(vocab) + 1}
    return CLIPTokenizer(vocab=vocab, merges=[], pad_token="!", model_max_length=max_length)


def _sizes(size: str) -> dict[str, Any]:
    if size == "full":
        return dict(
            unet=dict(model_channels=320, channel_mult=(1, 2, 4, 4), attention_resolutions=(4, 2, 1), num_res_blocks=2, num_head_channels=64, context_dim=1024),
            vae=dict(block_out_channels=(128, 256, 512, 512), layers_per_block=2, norm_num_groups=32),
            text=dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=23, num_attention_heads=16),
            vision_h=dict(hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=16, patch_size=14, image_size=224, projection_dim=1024),
            vision_l=dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16, patch_size=14, image_size=224, projection_dim=768),
            ip=dict(ip_embedding_dim=1280, ip_heads=12, ip_dim_head=64, ip_depth=4, ip_dim=16),
            zero123_unet=dict(block_out_channels=(320, 640, 1280, 1280), cross_attention_dim=768, attention_head_dim=8, layers_per_block=2),
            crop=224,
        )
    if size == "tiny":
        return dict(
            unet=dict(model_channels=32, channel_mult=(1, 2), attention_resolutions=(2,), num_res_blocks=1, num_head_channels=16, context_dim=64),
            vae=dict(block_out_channels=(32, 32), layers_per_block=1, norm_num_groups=32),
            text=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=1),  # OpenCLIP: 64-wide heads
            vision_h=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, patch_size=8, image_size=32, projection_dim=32),
            vision_l=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, patch_size=8, image_size=32, projection_dim=32),
            ip=dict(ip_embedding_dim=32, ip_heads=1, ip_dim_head=64, ip_depth=1, ip_dim=4),
            zero123_unet=dict(block_out_channels=(32, 64), cross_attention_dim=32, attention_head_dim=8, layers_per_block=1),
            crop=32,
        )
    raise InputError(f"unknown model size {size!r}: use 'full' or 'tiny'")


def build_random_model(kind: str, size: str = "tiny", seed: int = 0, device: torch.device | str = "cpu", dtype: torch.dtype | None = None) -> MultiViewModel:
    """A randomly initialised model of the real architecture: ``full`` size for timing without a
    download (speed does not depend on weight values), ``tiny`` for tests. Same classes, same
    layouts, so a tiny model saved with :func:`save_diffusers_folder` loads like a real one."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import (
        CLIPImageProcessor,
        CLIPTextConfig,
        CLIPTextModel,
        CLIPVisionConfig,
        CLIPVisionModel,
        CLIPVisionModelWithProjection,
    )

    if kind not in MODEL_CLASSES:
        raise InputError(f"unknown model kind {kind!r}: use one of {', '.join(MODEL_CLASSES)}")
    s = _sizes(size)
    torch.manual_seed(seed)
    vae = AutoencoderKL(
        down_block_types=["DownEncoderBlock2D"] * len(s["vae"]["block_out_channels"]),
        up_block_types=["UpDecoderBlock2D"] * len(s["vae"]["block_out_channels"]),
        latent_channels=4,
        sample_size=256,
        scaling_factor=0.18215,
        **s["vae"],
    )
    proc = CLIPImageProcessor(size={"shortest_edge": s["crop"]}, crop_size={"height": s["crop"], "width": s["crop"]})
    if kind in ("mvdream", "imagedream"):
        ip = s["ip"] if kind == "imagedream" else {}
        unet = MultiViewUNetModel(camera_dim=16, **s["unet"], **ip)
        tok = _byte_tokenizer()
        text = CLIPTextModel(CLIPTextConfig(vocab_size=max(len(tok), 49408 if size == "full" else 0), max_position_embeddings=77, hidden_act="gelu", bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, **s["text"]))
        if kind == "mvdream":
            model: MultiViewModel = MVDreamModel(unet, vae, tok, text)
        else:
            enc = CLIPVisionModel(CLIPVisionConfig(hidden_act="gelu", **s["vision_h"]))
            model = ImageDreamModel(unet, vae, tok, text, proc, enc)
    else:
        z = s["zero123_unet"]
        unet = UNet2DConditionModel(
            sample_size=32,
            in_channels=8,
            out_channels=4,
            down_block_types=["CrossAttnDownBlock2D"] * (len(z["block_out_channels"]) - 1) + ["DownBlock2D"],
            up_block_types=["UpBlock2D"] + ["CrossAttnUpBlock2D"] * (len(z["block_out_channels"]) - 1),
            norm_num_groups=32,
            **z,
        )
        enc = CLIPVisionModelWithProjection(CLIPVisionConfig(hidden_act="quick_gelu", **s["vision_l"]))
        proj = CLIPCameraProjection(s["vision_l"]["projection_dim"], 4)
        model = Zero123Model(unet, vae, proc, enc, proj)
    model.source = f"random {size} {kind} (seed {seed})"
    return model.to(device=device, dtype=dtype or default_dtype(device)).eval().requires_grad_(False)
