"""The MVDream / ImageDream multi-view UNet (Stable Diffusion 2.1 class), written for SDPA.

Architecture and parameter names follow the authors' checkpoints, so state dicts load unchanged:
``sd-v2.1-base-4view(-ipmv).pt`` after stripping ``model.diffusion_model.``, and the ``unet/``
folder of the diffusers-layout ports (``ashawkey/mvdream-sd2.1-diffusers``,
``ashawkey/imagedream-ipmv-diffusers``), whose ``config.json`` holds the same constructor
arguments as the original YAML.

What makes it multi-view (METHOD.md, "The multi-view diffusion models"):

* the self-attention of every transformer block runs over the tokens of *all* ``num_frames``
  views of a sample at once, so the views agree with each other;
* a 16-number camera vector per view goes through an MLP and is added to the timestep embedding;
* ImageDream (``ip_dim > 0``): the last frame of each group is the reference frame, its latent is
  replaced by the clean input-image latent; OpenCLIP image tokens go through a perceiver resampler
  to ``ip_dim`` tokens appended after the text tokens, and every cross-attention attends to them
  with its own key/value projections (decoupled, IP-Adapter style), weighted by ``ip_weight``.

GroupNorms run in float32 like the original ``GroupNorm32``, so fp16 numerics match the authors'.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from einops import rearrange
from torch import Tensor, nn

from ..errors import InputError

__all__ = ["MultiViewUNetModel", "timestep_embedding"]


def timestep_embedding(timesteps: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Sinusoidal timestep features as in the LDM UNet: ``[cos, sin]`` halves, float32."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=timesteps.device) / half)
    args = timesteps.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    return F.pad(emb, (0, 1)) if dim % 2 else emb


class GroupNorm32(nn.GroupNorm):
    """GroupNorm computed in float32 and cast back (the LDM ``normalization``)."""

    def forward(self, x: Tensor) -> Tensor:
        weight = None if self.weight is None else self.weight.float()
        bias = None if self.bias is None else self.bias.float()
        return F.group_norm(x.float(), self.num_groups, weight, bias, self.eps).type(x.dtype)


def _norm(channels: int, eps: float = 1e-5) -> GroupNorm32:
    return GroupNorm32(32, channels, eps=eps)


class TimestepSequential(nn.Sequential):
    """A UNet stage: passes the embedding to ResBlocks and the context to transformers."""

    def forward(self, x: Tensor, emb: Tensor, context: Tensor, num_frames: int) -> Tensor:  # type: ignore[override]
        for layer in self:
            if isinstance(layer, ResBlock):
                x = layer(x, emb)
            elif isinstance(layer, SpatialTransformer3D):
                x = layer(x, context, num_frames)
            else:
                x = layer(x)
        return x


class ResBlock(nn.Module):
    """Residual block with the timestep(+camera) embedding added after the first conv."""

    def __init__(self, channels: int, emb_channels: int, out_channels: int | None = None):
        super().__init__()
        out_channels = out_channels or channels
        self.in_layers = nn.Sequential(_norm(channels), nn.SiLU(), nn.Conv2d(channels, out_channels, 3, padding=1))
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_channels, out_channels))
        self.out_layers = nn.Sequential(
            _norm(out_channels), nn.SiLU(), nn.Dropout(0.0), nn.Conv2d(out_channels, out_channels, 3, padding=1)
        )
        self.skip_connection = nn.Identity() if out_channels == channels else nn.Conv2d(channels, out_channels, 1)

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.in_layers(x)
        h = h + self.emb_layers(emb).type(h.dtype)[:, :, None, None]
        return self.skip_connection(x) + self.out_layers(h)


class Downsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.op = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.op(x)


class Upsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


def _heads(x: Tensor, heads: int) -> Tensor:
    """(B, L, H*D) -> (B, H, L, D)."""
    b, n, _ = x.shape
    return x.view(b, n, heads, -1).transpose(1, 2)


class Attention(nn.Module):
    """Multi-head attention; with ``ip_dim > 0`` the last ``ip_dim`` context tokens are image
    tokens attended to separately (``to_k_ip``/``to_v_ip``) and added with weight ``ip_weight``."""

    def __init__(
        self,
        query_dim: int,
        context_dim: int | None,
        heads: int,
        dim_head: int,
        ip_dim: int = 0,
        ip_weight: float = 1.0,
    ):
        super().__init__()
        inner = heads * dim_head
        context_dim = context_dim or query_dim
        self.heads, self.ip_dim, self.ip_weight = heads, ip_dim, ip_weight
        self.to_q = nn.Linear(query_dim, inner, bias=False)
        self.to_k = nn.Linear(context_dim, inner, bias=False)
        self.to_v = nn.Linear(context_dim, inner, bias=False)
        if ip_dim > 0:
            self.to_k_ip = nn.Linear(context_dim, inner, bias=False)
            self.to_v_ip = nn.Linear(context_dim, inner, bias=False)
        self.to_out = nn.Sequential(nn.Linear(inner, query_dim), nn.Dropout(0.0))

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        context = x if context is None else context
        q = _heads(self.to_q(x), self.heads)
        text = context[:, : context.shape[1] - self.ip_dim] if self.ip_dim > 0 else context
        out = F.scaled_dot_product_attention(
            q, _heads(self.to_k(text), self.heads), _heads(self.to_v(text), self.heads)
        )
        if self.ip_dim > 0:
            image = context[:, -self.ip_dim :]
            k_ip, v_ip = _heads(self.to_k_ip(image), self.heads), _heads(self.to_v_ip(image), self.heads)
            out = out + self.ip_weight * F.scaled_dot_product_attention(q, k_ip, v_ip)
        b, _, n, _ = out.shape
        return self.to_out(out.transpose(1, 2).reshape(b, n, -1))


class GEGLU(nn.Module):
    def __init__(self, dim_in: int, dim_out: int):
        super().__init__()
        self.proj = nn.Linear(dim_in, dim_out * 2)

    def forward(self, x: Tensor) -> Tensor:
        x, gate = self.proj(x).chunk(2, dim=-1)
        return x * F.gelu(gate)


class FeedForward(nn.Module):
    def __init__(self, dim: int, mult: int = 4):
        super().__init__()
        self.net = nn.Sequential(GEGLU(dim, dim * mult), nn.Dropout(0.0), nn.Linear(dim * mult, dim))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class TransformerBlock3D(nn.Module):
    """Self-attention across all views of a sample, then per-view cross-attention and MLP."""

    def __init__(self, dim: int, heads: int, dim_head: int, context_dim: int, ip_dim: int, ip_weight: float):
        super().__init__()
        self.attn1 = Attention(dim, None, heads, dim_head)
        self.ff = FeedForward(dim)
        self.attn2 = Attention(dim, context_dim, heads, dim_head, ip_dim, ip_weight)
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)

    def forward(self, x: Tensor, context: Tensor, num_frames: int) -> Tensor:
        joint = rearrange(x, "(b f) l c -> b (f l) c", f=num_frames)  # one token sequence per sample
        x = rearrange(self.attn1(self.norm1(joint)) + joint, "b (f l) c -> (b f) l c", f=num_frames)
        x = self.attn2(self.norm2(x), context) + x
        return self.ff(self.norm3(x)) + x


class SpatialTransformer3D(nn.Module):
    def __init__(
        self, channels: int, heads: int, dim_head: int, context_dim: int, depth: int, ip_dim: int, ip_weight: float
    ):
        super().__init__()
        inner = heads * dim_head
        self.norm = _norm(channels, eps=1e-6)
        self.proj_in = nn.Linear(channels, inner)
        self.transformer_blocks = nn.ModuleList(
            TransformerBlock3D(inner, heads, dim_head, context_dim, ip_dim, ip_weight) for _ in range(depth)
        )
        self.proj_out = nn.Linear(inner, channels)

    def forward(self, x: Tensor, context: Tensor, num_frames: int) -> Tensor:
        y = self.proj_in(rearrange(self.norm(x), "b c h w -> b (h w) c"))
        for block in self.transformer_blocks:
            y = block(y, context, num_frames)
        return rearrange(self.proj_out(y), "b (h w) c -> b c h w", h=x.shape[2]) + x


class PerceiverAttention(nn.Module):
    def __init__(self, dim: int, dim_head: int, heads: int):
        super().__init__()
        inner = dim_head * heads
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim, inner * 2, bias=False)
        self.to_out = nn.Linear(inner, dim, bias=False)

    def forward(self, x: Tensor, latents: Tensor) -> Tensor:
        x, latents = self.norm1(x), self.norm2(latents)
        q = _heads(self.to_q(latents), self.heads)
        k, v = self.to_kv(torch.cat([x, latents], dim=1)).chunk(2, dim=-1)
        out = F.scaled_dot_product_attention(q, _heads(k, self.heads), _heads(v, self.heads))
        b, _, n, _ = out.shape
        return self.to_out(out.transpose(1, 2).reshape(b, n, -1))


class Resampler(nn.Module):
    """Perceiver resampler: image tokens (B, 257, E) -> ``num_queries`` context tokens."""

    def __init__(
        self,
        dim: int,
        depth: int,
        dim_head: int,
        heads: int,
        num_queries: int,
        embedding_dim: int,
        output_dim: int,
        ff_mult: int = 4,
    ):
        super().__init__()
        self.latents = nn.Parameter(torch.randn(1, num_queries, dim) / dim**0.5)
        self.proj_in = nn.Linear(embedding_dim, dim)
        self.proj_out = nn.Linear(dim, output_dim)
        self.norm_out = nn.LayerNorm(output_dim)
        self.layers = nn.ModuleList(
            nn.ModuleList(
                [
                    PerceiverAttention(dim, dim_head, heads),
                    nn.Sequential(
                        nn.LayerNorm(dim),
                        nn.Linear(dim, dim * ff_mult, bias=False),
                        nn.GELU(),
                        nn.Linear(dim * ff_mult, dim, bias=False),
                    ),
                ]
            )
            for _ in range(depth)
        )

    def forward(self, x: Tensor) -> Tensor:
        latents = self.latents.expand(x.shape[0], -1, -1)
        x = self.proj_in(x)
        for attn, ff in self.layers:  # type: ignore[misc]
            latents = attn(x, latents) + latents
            latents = ff(latents) + latents
        return self.norm_out(self.proj_out(latents))


def _check_supported(
    model_channels: int,
    channel_mult: Sequence[int],
    attention_resolutions: Sequence[int],
    num_head_channels: int,
    **switches: bool,
) -> None:
    """Refuse LDM ``unet_config`` switches whose value describes an architecture other than the
    one :class:`MultiViewUNetModel` builds, with one line naming the key."""
    where = "MultiViewUNetModel (unet/config.json or the checkpoint's YAML)"
    for key in ("use_scale_shift_norm", "resblock_updown"):
        if switches[key]:
            raise InputError(
                f"{where}: {key}=true is not supported: MVDream/ImageDream checkpoints are built without it (false)"
            )
    if not switches["use_spatial_transformer"]:
        raise InputError(
            f"{where}: use_spatial_transformer=false (plain self-attention blocks, no text conditioning) is not "
            "supported: MVDream/ImageDream use spatial transformers (true)"
        )
    if not switches["use_linear_in_transformer"]:
        raise InputError(
            f"{where}: use_linear_in_transformer=false (1x1-convolution transformer projections, the SD-1.x layout) is "
            "not supported: this UNet is the SD-2.1 one with linear projections (use_linear_in_transformer: true)"
        )
    if switches["legacy"] and num_head_channels > 0:
        # LDM legacy mode: heads = ch // num_head_channels, then dim_head = ch // heads; the same
        # as the non-legacy dim_head = num_head_channels exactly where ch is a multiple of it
        widths = {model_channels * m for level, m in enumerate(channel_mult) if 2**level in attention_resolutions}
        widths.add(model_channels * channel_mult[-1])  # the middle block always has attention
        bad = sorted(w for w in widths if w % num_head_channels)
        if bad:
            w = bad[0]
            raise InputError(
                f"{where}: legacy=true with num_head_channels={num_head_channels} makes the {w}-channel attention use "
                f"{w // max(1, w // num_head_channels)}-wide heads, which is not supported (the published "
                "MVDream/ImageDream configs say legacy: false)"
            )


class MultiViewUNetModel(ModelMixin, ConfigMixin):
    """The MVDream (``ip_dim = 0``) / ImageDream (``ip_dim > 0``) UNet.

    Constructor arguments are the original ``unet_config.params`` (and the diffusers port's
    ``unet/config.json``); SD-2.1 choices the checkpoints never change (linear transformer
    projections, no scale-shift norm, conv resampling) are fixed. ``ip_embedding_dim``,
    ``ip_heads``, ``ip_dim_head`` and ``ip_depth`` describe the resampler (1280, 12, 64, 4 in the
    real model) and exist so tests can build tiny versions.

    The LDM switches the published configs carry are named arguments, so loading them is quiet,
    and a value describing an architecture this module does not build is refused (one
    :class:`InputError` line naming the key) instead of loading a wrong model:

    * ``use_linear_in_transformer`` must be true (false: 1x1-conv ``proj_in``/``proj_out``, the
      SD-1.x layout); ``use_spatial_transformer`` must be true (false: the old ``AttentionBlock``);
    * ``legacy`` (the LDM default is true) only changes the head width, to ``ch // (ch //
      num_head_channels)``, and only where an attention width ``ch`` is not a multiple of
      ``num_head_channels``: accepted where it changes nothing, refused otherwise (the published
      MVDream/ImageDream configs say false);
    * ``use_checkpoint`` is gradient checkpointing, which does not change the maths: ignored.
    """

    _supports_gradient_checkpointing = False

    @register_to_config
    def __init__(
        self,
        image_size: int = 32,
        in_channels: int = 4,
        model_channels: int = 320,
        out_channels: int = 4,
        num_res_blocks: int = 2,
        attention_resolutions: Sequence[int] = (4, 2, 1),
        channel_mult: Sequence[int] = (1, 2, 4, 4),
        num_head_channels: int = 64,
        num_heads: int = -1,
        transformer_depth: int = 1,
        context_dim: int = 1024,
        camera_dim: int | None = 16,
        ip_dim: int = 0,
        ip_weight: float = 1.0,
        ip_embedding_dim: int = 1280,
        ip_heads: int = 12,
        ip_dim_head: int = 64,
        ip_depth: int = 4,
        use_scale_shift_norm: bool = False,
        resblock_updown: bool = False,
        use_spatial_transformer: bool = True,
        use_linear_in_transformer: bool = True,
        legacy: bool = False,
        use_checkpoint: bool = False,
        **kwargs,
    ):
        super().__init__()
        _check_supported(
            model_channels,
            channel_mult,
            attention_resolutions,
            num_head_channels,
            use_scale_shift_norm=use_scale_shift_norm,
            resblock_updown=resblock_updown,
            use_spatial_transformer=use_spatial_transformer,
            use_linear_in_transformer=use_linear_in_transformer,
            legacy=legacy,
        )
        self.model_channels, self.ip_dim = model_channels, ip_dim
        emb_dim = model_channels * 4
        self.time_embed = nn.Sequential(nn.Linear(model_channels, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        if camera_dim is not None:
            self.camera_embed = nn.Sequential(nn.Linear(camera_dim, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        if ip_dim > 0:
            self.image_embed = Resampler(
                context_dim, ip_depth, ip_dim_head, ip_heads, ip_dim, ip_embedding_dim, context_dim
            )

        def transformer(ch: int) -> SpatialTransformer3D:
            heads, dim_head = (
                (ch // num_head_channels, num_head_channels) if num_head_channels > 0 else (num_heads, ch // num_heads)
            )
            return SpatialTransformer3D(ch, heads, dim_head, context_dim, transformer_depth, ip_dim, ip_weight)

        self.input_blocks = nn.ModuleList([TimestepSequential(nn.Conv2d(in_channels, model_channels, 3, padding=1))])
        skips, ch, ds = [model_channels], model_channels, 1
        for level, mult in enumerate(channel_mult):
            for _ in range(num_res_blocks):
                layers: list[nn.Module] = [ResBlock(ch, emb_dim, mult * model_channels)]
                ch = mult * model_channels
                if ds in attention_resolutions:
                    layers.append(transformer(ch))
                self.input_blocks.append(TimestepSequential(*layers))
                skips.append(ch)
            if level != len(channel_mult) - 1:
                self.input_blocks.append(TimestepSequential(Downsample(ch)))
                skips.append(ch)
                ds *= 2
        self.middle_block = TimestepSequential(ResBlock(ch, emb_dim), transformer(ch), ResBlock(ch, emb_dim))
        self.output_blocks = nn.ModuleList()
        for level, mult in reversed(list(enumerate(channel_mult))):
            for i in range(num_res_blocks + 1):
                layers = [ResBlock(ch + skips.pop(), emb_dim, model_channels * mult)]
                ch = model_channels * mult
                if ds in attention_resolutions:
                    layers.append(transformer(ch))
                if level and i == num_res_blocks:
                    layers.append(Upsample(ch))
                    ds //= 2
                self.output_blocks.append(TimestepSequential(*layers))
        self.out = nn.Sequential(_norm(ch), nn.SiLU(), nn.Conv2d(model_channels, out_channels, 3, padding=1))

    def forward(
        self,
        x: Tensor,
        timesteps: Tensor,
        context: Tensor,
        camera: Tensor | None = None,
        num_frames: int = 1,
        ip: Tensor | None = None,
        ip_img: Tensor | None = None,
    ) -> Tensor:
        """Noise prediction for ``x`` of shape ((B*F), C, h, w), F = ``num_frames`` views per sample.

        ``context`` (B*F, 77, D) text tokens; ``camera`` (B*F, 16); ImageDream also takes ``ip``
        (B*F, 257, E) image tokens and ``ip_img`` (B, C, h, w) reference latents, which replace the
        last frame of every group.
        """
        if x.shape[0] % num_frames:
            raise ValueError(f"batch of {x.shape[0]} latents is not a multiple of num_frames={num_frames}")
        emb = self.time_embed(timestep_embedding(timesteps, self.model_channels).to(x.dtype))
        if camera is not None:
            emb = emb + self.camera_embed(camera.to(x.dtype))
        if self.ip_dim > 0:
            if ip is None or ip_img is None:
                raise ValueError("ImageDream UNet needs the image tokens `ip` and the reference latents `ip_img`")
            frames = rearrange(x, "(b f) c h w -> b f c h w", f=num_frames)
            x = rearrange(torch.cat([frames[:, :-1], ip_img.to(x.dtype)[:, None]], dim=1), "b f c h w -> (b f) c h w")
            context = torch.cat([context, self.image_embed(ip.to(x.dtype))], dim=1)
        hs, h = [], x
        for block in self.input_blocks:
            h = block(h, emb, context, num_frames)
            hs.append(h)
        h = self.middle_block(h, emb, context, num_frames)
        for block in self.output_blocks:
            h = block(torch.cat([h, hs.pop()], dim=1), emb, context, num_frames)
        return self.out(h)
