"""The three multi-view diffusion models of MicroDreamer behind one small interface.

Each model owns its networks (UNet, VAE, encoders) and knows three things the sampling code must
not: how to turn a prompt / image into conditioning tensors, how to batch a classifier-free
guidance (CFG) call, and how to scale latents. The sampling code (:mod:`.sampling`) only sees

* :meth:`MultiViewModel.encode_images` / :meth:`~MultiViewModel.decode_latents`;
* :meth:`MultiViewModel.prepare`: a :class:`Condition` and the cameras -> a prepared condition;
* :meth:`MultiViewModel.predict_noise`: one UNet call (one NFE) with or without CFG.

Facts per model (METHOD.md, "The multi-view diffusion models"):

==============  =========================  ==================  ======  =====  ===============
model           condition                  frames per call     CFG     eta    CFG batch order
==============  =========================  ==================  ======  =====  ===============
MVDream         text + camera              4 views             7.5     0.0    [uncond, cond]
ImageDream      image + text + camera      4 views + 1 ref.    2.0     1.0    [uncond, cond]
Stable Zero123  image + relative camera    1 view each         3.0     0.5    [cond, uncond]
==============  =========================  ==================  ======  =====  ===============

The unconditional branch uses the negative prompt (MVDream / ImageDream), zero image tokens and a
zero reference latent (ImageDream), and zero projected embedding and zero concat latent (Zero123),
as the authors' code does.

``prepare`` is split in two: :meth:`MultiViewModel.encode_condition` runs the encoders on what does
not depend on the cameras (prompt / negative prompt through the text encoder, the reference image
through the image encoder and the VAE) and caches the result on the model; the camera-dependent
assembly runs on every call. SIR calls ``prepare`` once per iteration with new cameras and the same
condition, so the encoders run once per run. The cache is exact (see ``encode_condition``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import torch
from einops import rearrange
from torch import Tensor, nn

from ..errors import InputError
from ..scene.cameras import Cameras
from ..scene.images import composite, resize_bchw

__all__ = [
    "Condition",
    "ModelDefaults",
    "MultiViewModel",
    "MVDreamModel",
    "ImageDreamModel",
    "Zero123Model",
    "CLIPCameraProjection",
    "DEFAULT_NEGATIVE_PROMPT",
]

DEFAULT_NEGATIVE_PROMPT = (
    "ugly, bad anatomy, blurry, pixelated obscure, unnatural colors, poor lighting, "
    "dull, and unclear, cropped, lowres, low quality, artifacts, duplicate, morbid, "
    "mutilated, poorly drawn face, deformed, dehydrated, bad proportions"
)


@dataclass(frozen=True)
class ModelDefaults:
    """The paper's sampling settings for one model."""

    guidance_scale: float
    eta: float
    num_views: int
    image_size: int = 256


@dataclass
class Condition:
    """What the user conditions on.

    ``image``: (H, W, 3) or (H, W, 4) float in [0, 1]; RGBA is composited on white. Image models
    expect the object centred on a white background (METHOD.md, "Input preprocessing").
    ``reference_elevation``: elevation (degrees, orbit convention) of the input image's camera;
    Stable Zero123 conditions on cameras relative to it.
    """

    prompt: str = ""
    negative_prompt: str = ""
    image: Tensor | None = None
    reference_elevation: float = 0.0


@dataclass
class Prepared:
    """Conditioning tensors for one set of views, on the model's device and dtype."""

    cond: dict[str, Tensor]
    uncond: dict[str, Tensor]
    num_views: int
    extras: dict[str, Tensor] = field(default_factory=dict)


def _checked_image(image: Tensor) -> Tensor:
    """The checks on a condition image (shape, finite values); returns it as (H, W, 3|4)."""
    if image.ndim == 4 and image.shape[0] == 1:
        image = image[0]
    if image.ndim != 3 or image.shape[-1] not in (3, 4):
        raise InputError(f"condition image has shape {tuple(image.shape)}; expected (H, W, 3) RGB or (H, W, 4) RGBA")
    if not torch.isfinite(image).all():
        raise InputError("condition image contains NaN or infinite values: check the node that produced it")
    return image


def _white_rgb(image: Tensor) -> Tensor:
    """(H, W, 3|4) in [0, 1] -> (1, 3, H, W) RGB on white."""
    image = _checked_image(image).float().clamp(0, 1)
    if image.shape[-1] == 4:
        image = composite(image)
    return image.permute(2, 0, 1)[None]


CONDITION_CACHE_SIZE = 4  # encoded conditions kept per model (least recently used dropped)
_INT_OF_SIZE = {1: torch.int8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def _same_contents(a: Tensor | None, b: Tensor | None) -> bool:
    """Exact equality: same shape, dtype, device and the same bits (so -0.0 != 0.0)."""
    if a is None or b is None:
        return a is b
    if a.shape != b.shape or a.dtype != b.dtype or a.device != b.device:
        return False
    a, b = a.detach(), b.detach()
    if a.is_floating_point() and a.element_size() in _INT_OF_SIZE:
        a, b = a.view(_INT_OF_SIZE[a.element_size()]), b.view(_INT_OF_SIZE[b.element_size()])
    return torch.equal(a, b)


def _numerics_state(device: torch.device) -> tuple:
    """Global settings that change what the encoders compute: part of the condition cache key."""
    try:
        autocast = (torch.is_autocast_enabled(device.type), torch.get_autocast_dtype(device.type))
    except (RuntimeError, TypeError):  # a device type autocast does not know
        autocast = (torch.is_autocast_enabled(), None)
    return (
        torch.is_inference_mode_enabled(),
        autocast,
        torch.get_float32_matmul_precision(),
        torch.backends.cudnn.allow_tf32,
    )


class CLIPCameraProjection(nn.Module):
    """Stable Zero123's Linear(768 + 4 -> 768) over [CLIP image embedding, relative camera]."""

    def __init__(self, embedding_dim: int = 768, additional_embeddings: int = 4):
        super().__init__()
        self.embedding_dim, self.additional_embeddings = embedding_dim, additional_embeddings
        self.proj = nn.Linear(embedding_dim + additional_embeddings, embedding_dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x)


class MultiViewModel(nn.Module):
    """Common part: the VAE, the NFE counter, the CFG combination and the condition cache."""

    kind: ClassVar[str]
    display_name: ClassVar[str]
    defaults: ClassVar[ModelDefaults]
    cond_first: ClassVar[bool] = False  # CFG batch order [cond, uncond] instead of [uncond, cond]
    condition_modules: ClassVar[tuple[str, ...]] = ()  # the submodules encode_condition runs
    uses_image: ClassVar[bool] = False  # whether the encodings depend on Condition.image

    def __init__(self, unet: nn.Module, vae: nn.Module):
        super().__init__()
        self.unet, self.vae = unet, vae
        self.nfe = 0
        self.source = ""  # where it was loaded from, for messages
        self.unet_runner: Callable[..., Tensor] | None = None  # diffusion.accelerate's call; None = eager
        self.clear_condition_cache()

    # -- device / dtype -------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.unet.parameters()).dtype

    @property
    def latent_scale(self) -> float:
        return float(self.vae.config.scaling_factor)

    @property
    def vae_factor(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    def parameter_count(self) -> dict[str, int]:
        return {name: sum(p.numel() for p in m.parameters()) for name, m in self.named_children()}

    # -- VAE --------------------------------------------------------------------------------
    def encode_images(self, images: Tensor, generator: torch.Generator | None = None, scaled: bool = True) -> Tensor:
        """(B, 3, H, W) in [0, 1] -> latents: a posterior *sample* (as the authors' code), times
        the scaling factor unless ``scaled=False`` (Zero123's concat latent)."""
        x = images.to(self.device, self.dtype) * 2 - 1
        dist = self.vae.encode(x).latent_dist
        noise = torch.randn(dist.mean.shape, generator=generator, dtype=torch.float32).to(self.device, dist.mean.dtype)
        latents = dist.mean + dist.std * noise
        return latents * self.latent_scale if scaled else latents

    def decode_latents(self, latents: Tensor) -> Tensor:
        """Scaled latents -> (B, 3, H, W) float32 images in [0, 1]."""
        images = self.vae.decode(latents.to(self.device, self.dtype) / self.latent_scale).sample
        return (images.float() / 2 + 0.5).clamp(0, 1)

    # -- conditioning and UNet --------------------------------------------------------------
    def prepare(self, condition: Condition, cameras: Cameras, image_size: int = 256) -> Prepared:
        """Encode the condition for these cameras; image models encode the reference at
        ``image_size`` (the size the views are sampled at, 256 for the real models). The
        camera-independent encodings come from :meth:`encode_condition` (cached)."""
        raise NotImplementedError

    @torch.no_grad()
    def encode_condition(self, condition: Condition, image_size: int = 256) -> dict[str, Tensor]:
        """The camera-independent conditioning tensors (batch 1, in the model's dtype): the text
        encoder's prompt / negative prompt, the image encoder's embedding and the VAE latent of
        the reference image (a posterior sample, seeded 0), as each model uses them.

        ``condition`` is checked on every call. The result is cached on the model: a later call
        reuses it only if everything it depends on is the same -- the prompt / negative prompt
        where the model reads them, the image *bit for bit* (compared with a copy taken when the
        entry was stored, so an image changed in place is encoded again), ``image_size``, the
        device / dtype / train mode of the networks and the inference-mode, autocast and TF32
        settings. Moving or casting the model (``.to()``, ``.half()``, ...) and
        ``load_state_dict`` empty the cache; after changing weights in place by hand call
        :meth:`clear_condition_cache`. The tensors returned are fresh copies, never the cached
        ones, so the result is the same as encoding again.
        """
        self._check_condition(condition)
        modules = [getattr(self, name) for name in self.condition_modules]
        if any(m.training for m in modules):  # dropout: not reproducible, so not cached
            return self._encode_condition(condition, image_size)
        image = condition.image if self.uses_image else None
        firsts = [next(m.parameters(), None) for m in modules]
        key = (
            self._condition_fields(condition, image_size),
            self.device,
            self.dtype,
            tuple(None if p is None else (p.device, p.dtype) for p in firsts),
            _numerics_state(self.device),
        )
        cache = self._condition_cache
        for i, (k, stored_image, cached) in enumerate(cache):
            if k == key and _same_contents(stored_image, image):
                enc = cached
                cache.append(cache.pop(i))  # most recently used last
                break
        else:
            enc = self._encode_condition(condition, image_size)
            cache.append((key, None if image is None else image.detach().clone(), enc))
            del cache[:-CONDITION_CACHE_SIZE]
        return {name: t.clone() for name, t in enc.items()}

    def clear_condition_cache(self) -> None:
        """Forget the encoded conditions kept by :meth:`encode_condition`."""
        self._condition_cache: list[tuple[tuple, Tensor | None, dict[str, Tensor]]] = []

    def _apply(self, *args, **kwargs):  # every .to() / .cuda() / .half() / .float() goes through here
        self.clear_condition_cache()
        self.unet_runner = None  # compiled / captured for the old weights' memory: back to eager
        return super()._apply(*args, **kwargs)

    def load_state_dict(self, *args, **kwargs):
        self.clear_condition_cache()
        return super().load_state_dict(*args, **kwargs)

    def _check_condition(self, condition: Condition) -> None:
        """Raise :class:`InputError` when this model cannot use ``condition``."""
        raise NotImplementedError

    def _condition_fields(self, condition: Condition, image_size: int) -> tuple:
        """What of ``condition`` besides the image (and ``image_size``) the encodings depend on."""
        raise NotImplementedError

    def _encode_condition(self, condition: Condition, image_size: int) -> dict[str, Tensor]:
        """:meth:`encode_condition` without the cache (``condition`` already checked)."""
        raise NotImplementedError

    def _unet(self, latents: Tensor, t: int | Tensor, inputs: dict[str, Tensor], num_views: int) -> Tensor:
        """One UNet call on an already batched input; ``t`` an int or a 0-dim tensor on the device."""
        raise NotImplementedError

    @staticmethod
    def _cat(a: dict[str, Tensor], b: dict[str, Tensor]) -> dict[str, Tensor]:
        return {k: torch.cat([a[k], b[k]]) for k in a}

    @torch.no_grad()
    def predict_noise(self, latents: Tensor, t: int, prepared: Prepared, guidance_scale: float | None = None) -> Tensor:
        """Epsilon for ``latents`` (V, 4, h, w) at timestep ``t``: one UNet call, one NFE.

        With ``guidance_scale`` the batch is CFG-doubled and combined as
        ``uncond + s * (cond - uncond)``; ``None`` runs the unconditional branch only (DDIM
        inversion in the hybrid forward process).
        """
        self.nfe += 1
        x = latents.to(self.device, self.dtype)
        v = prepared.num_views
        unet = self._unet if self.unet_runner is None else self.unet_runner
        if guidance_scale is None:
            return unet(x, t, prepared.uncond, v).float()
        first, second = (prepared.cond, prepared.uncond) if self.cond_first else (prepared.uncond, prepared.cond)
        eps = unet(torch.cat([x, x]), t, self._cat(first, second), v).float()
        eps_first, eps_second = eps.chunk(2)
        eps_cond, eps_uncond = (eps_first, eps_second) if self.cond_first else (eps_second, eps_first)
        return eps_uncond + guidance_scale * (eps_cond - eps_uncond)

    def _check_views(self, cameras: Cameras) -> None:
        if len(cameras) < 1:
            raise InputError("no cameras given: pass at least one view")

    def _check_image(self, condition: Condition) -> None:
        """The image models' checks on the condition image."""
        if condition.image is None:
            raise InputError(f"{self.display_name} is an image-to-3D model: connect an input image")
        _checked_image(condition.image)

    def _reference_image(self, condition: Condition, image_size: int) -> Tensor:
        """The image models' reference (``condition`` passed :meth:`_check_image`): (1, 3, S, S)
        on white at the sampling size."""
        return resize_bchw(_white_rgb(condition.image), image_size, antialias=False)  # as the authors


class _TextMixin:
    """Prompt encoding with an SD-2.1 CLIP text encoder (penultimate OpenCLIP layer + final LN)."""

    tokenizer: object
    text_encoder: nn.Module

    def encode_text(self, prompt: str) -> Tensor:
        ids = self.tokenizer(  # type: ignore[operator]
            [prompt],
            padding="max_length",
            max_length=self.tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",  # type: ignore[attr-defined]
        ).input_ids
        device = next(self.text_encoder.parameters()).device
        return self.text_encoder(ids.to(device))[0]


class MVDreamModel(_TextMixin, MultiViewModel):
    """MVDream: text + camera -> 4 consistent views."""

    kind = "mvdream"
    display_name = "MVDream"
    defaults = ModelDefaults(guidance_scale=7.5, eta=0.0, num_views=4)
    condition_modules = ("text_encoder",)

    def __init__(self, unet: nn.Module, vae: nn.Module, tokenizer, text_encoder: nn.Module):
        super().__init__(unet, vae)
        self.tokenizer, self.text_encoder = tokenizer, text_encoder

    def _check_condition(self, condition: Condition) -> None:
        if not condition.prompt.strip():
            raise InputError("MVDream is a text-to-3D model and needs a non-empty prompt")

    def _condition_fields(self, condition: Condition, image_size: int) -> tuple:
        return (condition.prompt, condition.negative_prompt)

    def _encode_condition(self, condition: Condition, image_size: int) -> dict[str, Tensor]:
        """``context`` / ``uncond_context``: (1, 77, D) prompt / negative prompt encodings."""
        return {
            "context": self.encode_text(condition.prompt).to(self.dtype),
            "uncond_context": self.encode_text(condition.negative_prompt).to(self.dtype),
        }

    @torch.no_grad()
    def prepare(self, condition: Condition, cameras: Cameras, image_size: int = 256) -> Prepared:
        self._check_views(cameras)
        enc = self.encode_condition(condition, image_size)
        v = len(cameras)
        cam = cameras.mvdream_embedding().to(self.device, self.dtype)
        cond = enc["context"].expand(v, -1, -1)
        uncond = enc["uncond_context"].expand(v, -1, -1)
        return Prepared({"context": cond, "camera": cam}, {"context": uncond, "camera": cam}, v)

    def _unet(self, x: Tensor, t: int | Tensor, inputs: dict[str, Tensor], num_views: int) -> Tensor:
        ts = _timesteps(t, x.shape[0], self.device)
        return self.unet(x, ts, inputs["context"], camera=inputs["camera"], num_frames=num_views)


class ImageDreamModel(_TextMixin, MultiViewModel):
    """ImageDream: image (+ optional text) + camera -> 4 views; a 5th reference frame carries the
    clean image latent, and OpenCLIP image tokens enter every cross-attention."""

    kind = "imagedream"
    display_name = "ImageDream"
    defaults = ModelDefaults(guidance_scale=2.0, eta=1.0, num_views=4)
    condition_modules = ("text_encoder", "image_encoder", "vae")
    uses_image = True

    def __init__(
        self,
        unet: nn.Module,
        vae: nn.Module,
        tokenizer,
        text_encoder: nn.Module,
        image_processor,
        image_encoder: nn.Module,
    ):
        super().__init__(unet, vae)
        self.tokenizer, self.text_encoder = tokenizer, text_encoder
        self.image_processor, self.image_encoder = image_processor, image_encoder

    def encode_image_tokens(self, rgb: Tensor) -> Tensor:
        """(1, 3, H, W) on white -> (1, 257, 1280) penultimate-layer OpenCLIP tokens."""
        pixels = _clip_pixels(self.image_processor, rgb).to(self.device, next(self.image_encoder.parameters()).dtype)
        return self.image_encoder(pixels, output_hidden_states=True).hidden_states[-2]

    def _check_condition(self, condition: Condition) -> None:
        self._check_image(condition)

    def _condition_fields(self, condition: Condition, image_size: int) -> tuple:
        return (condition.prompt, condition.negative_prompt, image_size)

    def _encode_condition(self, condition: Condition, image_size: int) -> dict[str, Tensor]:
        """``ip``: (1, 257, 1280) image tokens; ``ip_img``: (1, 4, h, w) scaled reference latent;
        ``context`` / ``uncond_context``: (1, 77, D) prompt / negative prompt encodings."""
        rgb = self._reference_image(condition, image_size)
        tokens = self.encode_image_tokens(rgb).to(self.dtype)
        # The reference latent is a posterior sample; seeded so a run is reproducible.
        ref = self.encode_images(rgb, generator=torch.Generator().manual_seed(0))
        text = self.encode_text(condition.prompt).to(self.dtype)
        neg = self.encode_text(condition.negative_prompt).to(self.dtype)
        return {"context": text, "uncond_context": neg, "ip": tokens, "ip_img": ref}

    @torch.no_grad()
    def prepare(self, condition: Condition, cameras: Cameras, image_size: int = 256) -> Prepared:
        self._check_views(cameras)
        enc = self.encode_condition(condition, image_size)
        v = len(cameras)
        tokens = enc["ip"].expand(v + 1, -1, -1)
        ref = enc["ip_img"]
        cam = torch.cat(
            [
                cameras.mvdream_embedding().to(self.device, self.dtype),
                torch.zeros(1, 16, device=self.device, dtype=self.dtype),
            ]
        )
        text = enc["context"].expand(v + 1, -1, -1)
        neg = enc["uncond_context"].expand(v + 1, -1, -1)
        cond = {"context": text, "camera": cam, "ip": tokens, "ip_img": ref}
        uncond = {"context": neg, "camera": cam, "ip": torch.zeros_like(tokens), "ip_img": torch.zeros_like(ref)}
        return Prepared(cond, uncond, v)

    def _unet(self, x: Tensor, t: int | Tensor, inputs: dict[str, Tensor], num_views: int) -> Tensor:
        frames = rearrange(x, "(b f) c h w -> b f c h w", f=num_views)
        x5 = rearrange(torch.cat([frames, torch.zeros_like(frames[:, :1])], dim=1), "b f c h w -> (b f) c h w")
        ts = _timesteps(t, x5.shape[0], self.device)
        eps = self.unet(
            x5,
            ts,
            inputs["context"],
            camera=inputs["camera"],
            num_frames=num_views + 1,
            ip=inputs["ip"],
            ip_img=inputs["ip_img"],
        )
        views = rearrange(eps, "(b f) c h w -> b f c h w", f=num_views + 1)[:, :-1]  # the reference frames dropped
        return rearrange(views, "b f c h w -> (b f) c h w")


class Zero123Model(MultiViewModel):
    """Stable Zero123: each view is denoised on its own from the input image and the camera
    relative to it; the input latent (unscaled) is concatenated on channels."""

    kind = "zero123"
    display_name = "Stable Zero123"
    defaults = ModelDefaults(guidance_scale=3.0, eta=0.5, num_views=6)
    cond_first = True
    condition_modules = ("image_encoder", "vae")
    uses_image = True

    def __init__(
        self,
        unet: nn.Module,
        vae: nn.Module,
        image_processor,
        image_encoder: nn.Module,
        camera_projection: CLIPCameraProjection,
    ):
        super().__init__(unet, vae)
        self.image_processor, self.image_encoder, self.camera_projection = (
            image_processor,
            image_encoder,
            camera_projection,
        )

    @staticmethod
    def relative_camera(cameras: Cameras, reference_elevation: float) -> Tensor:
        """(V, 4) [d_elevation (rad), sin d_azimuth, cos d_azimuth, rad(90 + reference elevation)]
        with the input image at azimuth 0 (orbit convention: negative elevation = above)."""
        el, az, _ = cameras.spherical()
        d_el = torch.deg2rad(el - reference_elevation)
        d_az = torch.deg2rad(az)
        polar = torch.full_like(d_el, math.radians(90.0 + reference_elevation))
        return torch.stack([d_el, torch.sin(d_az), torch.cos(d_az), polar], dim=-1)

    def _check_condition(self, condition: Condition) -> None:
        self._check_image(condition)

    def _condition_fields(self, condition: Condition, image_size: int) -> tuple:
        return (image_size,)  # the reference elevation only enters the (per-camera) projection

    def _encode_condition(self, condition: Condition, image_size: int) -> dict[str, Tensor]:
        """``clip``: (1, 1, 768) CLIP image embedding; ``concat``: (1, 4, h, w) unscaled latent."""
        rgb = self._reference_image(condition, image_size)
        pixels = _clip_pixels(self.image_processor, rgb).to(self.device, self.dtype)
        clip = self.image_encoder(pixels).image_embeds[:, None]  # (1, 1, 768)
        concat = self.encode_images(rgb, generator=torch.Generator().manual_seed(0), scaled=False)
        return {"clip": clip, "concat": concat}

    @torch.no_grad()
    def prepare(self, condition: Condition, cameras: Cameras, image_size: int = 256) -> Prepared:
        self._check_views(cameras)
        enc = self.encode_condition(condition, image_size)
        v = len(cameras)
        rel = self.relative_camera(cameras, condition.reference_elevation).to(self.device, self.dtype)[:, None]
        emb = self.camera_projection(torch.cat([enc["clip"].expand(v, -1, -1), rel], dim=-1))
        concat = enc["concat"].expand(v, -1, -1, -1)
        cond = {"context": emb, "concat": concat}
        uncond = {"context": torch.zeros_like(emb), "concat": torch.zeros_like(concat)}
        return Prepared(cond, uncond, v)

    def _unet(self, x: Tensor, t: int | Tensor, inputs: dict[str, Tensor], num_views: int) -> Tensor:
        ts = _timesteps(t, x.shape[0], self.device)
        return self.unet(torch.cat([x, inputs["concat"]], dim=1), ts, encoder_hidden_states=inputs["context"]).sample


def _timesteps(t: int | Tensor, n: int, device: torch.device) -> Tensor:
    """(n,) int64 timesteps; ``t`` may be a 0-dim tensor (what diffusion.accelerate passes, so one
    compiled or captured call serves every timestep)."""
    return t.to(device).expand(n) if isinstance(t, Tensor) else torch.full((n,), t, device=device)


def _clip_pixels(processor, rgb: Tensor) -> Tensor:
    """Run a transformers ``CLIPImageProcessor`` on (1, 3, H, W) [0, 1] as the authors do (uint8)."""
    arr = (rgb[0].permute(1, 2, 0).float().cpu().numpy() * 255).round().astype(np.uint8)
    return processor(images=arr, return_tensors="pt").pixel_values


MODEL_CLASSES: dict[str, type[MultiViewModel]] = {
    cls.kind: cls for cls in (MVDreamModel, ImageDreamModel, Zero123Model)
}
