"""Original single-file Stable Zero123 checkpoints (``stable_zero123.ckpt``, what ComfyUI users have in
models/checkpoints): a tiny model written in that layout (tests/single_file_layout.py, with the EMA
copy and the other keys the real file carries) loads back exactly, on the light path, without a
download; incomplete or mismatched files are refused in one line. The layouts the checkpoint is
written in are checked against diffusers' UNet converter and against OpenAI CLIP's architecture."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
import torch
from diffusers import UNet2DConditionModel
from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint
from ldm_layout import clip_vision_to_openai, unet2d_to_ldm
from safetensors.torch import save_file
from single_file_layout import to_zero123_single_file
from tiny_diffusion import NOISE, SIZE, cameras, condition, library_logs
from torch import nn
from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

from microdreamer_core.diffusion.loading import load_model
from microdreamer_core.diffusion.models import Zero123Model
from microdreamer_core.diffusion.random_models import build_random_model
from microdreamer_core.diffusion.single_file_zero123 import (
    VISION_PREFIX,
    convert_openai_clip_vision,
    infer_zero123_unet_config,
)
from microdreamer_core.errors import InputError

COMPONENTS = ("unet", "vae", "image_encoder", "camera_projection")


@pytest.fixture(scope="module")
def zero123():
    return build_random_model("zero123", "tiny", seed=0)


def _plain(value):
    """Config values as JSON has them (tuples and lists alike)."""
    return list(value) if isinstance(value, tuple | list) else value


def _save(sd: dict[str, torch.Tensor], path) -> None:
    if path.suffix == ".safetensors":
        save_file(sd, str(path))
    else:  # the real file: a Lightning checkpoint with the weights under "state_dict"
        torch.save({"state_dict": sd, "global_step": 105000}, path)


@pytest.mark.parametrize("suffix", [".ckpt", ".safetensors"])
def test_stable_zero123_checkpoint_loads_exactly(suffix, zero123, tmp_path, built, monkeypatch):
    path = tmp_path / f"stable_zero123{suffix}"
    _save(to_zero123_single_file(zero123), path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # everything comes from the file
    built.clear()
    with library_logs() as logs:
        loaded = load_model(path, kind="zero123")
    assert type(loaded) is Zero123Model and loaded.source == str(path)
    assert not any(word in logs.getvalue() for word in NOISE), logs.getvalue()
    parts = {"UNet2DConditionModel", "AutoencoderKL", "CLIPVisionModelWithProjection", "CLIPCameraProjection"}
    assert parts <= {name for name, _ in built}
    assert all(on_meta for _, on_meta in built), built  # built without weights, filled from the file
    for part in COMPONENTS:
        want, got = getattr(zero123, part).state_dict(), getattr(loaded, part).state_dict()
        assert want.keys() == got.keys(), part
        for k, v in want.items():
            assert got[k].dtype == v.dtype and torch.equal(got[k], v), f"{part}.{k}"
    for key, value in zero123.unet.config.items():  # the configuration read from the shapes
        assert _plain(loaded.unet.config[key]) == _plain(value) or key == "_use_default_values", key
    assert loaded.image_encoder.config.to_dict() | {"transformers_version": None} == (
        zero123.image_encoder.config.to_dict() | {"transformers_version": None}
    )
    assert loaded.image_processor.to_dict() == zero123.image_processor.to_dict()

    cond, cams = condition(), cameras()
    a, b = zero123.prepare(cond, cams, SIZE), loaded.prepare(cond, cams, SIZE)
    for k in a.cond:
        assert torch.equal(a.cond[k], b.cond[k]) and torch.equal(a.uncond[k], b.uncond[k]), k
    x = torch.randn(len(cams), 4, SIZE // 2, SIZE // 2, generator=torch.Generator().manual_seed(1))
    assert torch.equal(zero123.predict_noise(x, 500, a, 3.0), loaded.predict_noise(x, 500, b, 3.0))


def test_lightning_training_checkpoint_loads(zero123, tmp_path, monkeypatch):
    """A .ckpt as PyTorch Lightning writes it pickles, beside the weights, the ModelCheckpoint
    callback's class and NumPy scalars from its state, which a weights-only load refuses unless
    allowed (ComfyUI allows the same few)."""
    names = ("pytorch_lightning", "pytorch_lightning.callbacks", "pytorch_lightning.callbacks.model_checkpoint")
    for name in names:  # the class pickles by reference to its module
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    lightning = sys.modules[names[-1]]
    lightning.ModelCheckpoint = type("ModelCheckpoint", (), {"__module__": lightning.__name__})
    state = {"best_model_score": np.float64(0.25), "monitor": "val/loss_simple_ema", "dtype": np.dtype("float64")}
    ckpt = {"state_dict": to_zero123_single_file(zero123, extras=False), "global_step": 105000}
    torch.save(ckpt | {"callbacks": {lightning.ModelCheckpoint: state}}, tmp_path / "stable_zero123.ckpt")
    for name in names:  # a user's machine has no Lightning
        monkeypatch.delitem(sys.modules, name)
    loaded = load_model(tmp_path / "stable_zero123.ckpt")
    assert all(torch.equal(v, loaded.unet.state_dict()[k]) for k, v in zero123.unet.state_dict().items())
    # still weights only: any other object in the pickle is refused
    torch.save(ckpt | {"hparams": types.SimpleNamespace(lr=1e-4)}, tmp_path / "other.ckpt")
    with pytest.raises(InputError, match="could not read other.ckpt"):
        load_model(tmp_path / "other.ckpt")


def test_incomplete_or_mismatched_zero123_files_are_refused(zero123, tmp_path):
    sd = to_zero123_single_file(zero123, extras=False)
    for dropped, named in (
        ("first_stage_model.", "no VAE"),
        (VISION_PREFIX, "no CLIP image encoder"),
        ("model.diffusion_model.", "no UNet"),
    ):
        path = tmp_path / "stable_zero123.safetensors"
        save_file({k: v for k, v in sd.items() if not k.startswith(dropped)}, str(path))
        with pytest.raises(InputError, match=named) as err:
            load_model(path)
        assert "\n" not in str(err.value) and "download stable_zero123.ckpt again" in str(err.value)
    wrong = dict(sd) | {"cc_projection.weight": torch.zeros(16, 20), "cc_projection.bias": torch.zeros(16)}
    save_file(wrong, str(tmp_path / "mixed.safetensors"))
    with pytest.raises(InputError, match="do not fit together"):
        load_model(tmp_path / "mixed.safetensors")
    torch.save({"state_dict": sd}, tmp_path / "stable_zero123.ckpt")
    with pytest.raises(InputError, match="is a Stable Zero123 model, but MVDream is needed"):
        load_model(tmp_path / "stable_zero123.ckpt", kind="mvdream")


# --- the layouts of tests/ldm_layout.py against diffusers' converter and OpenAI CLIP -----------------
def _unet(blocks: tuple[int, ...], attention: tuple[bool, ...], layers_per_block: int) -> UNet2DConditionModel:
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=8,
        out_channels=4,
        block_out_channels=blocks,
        down_block_types=["CrossAttnDownBlock2D" if a else "DownBlock2D" for a in attention],
        up_block_types=["CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attention)],
        layers_per_block=layers_per_block,
        cross_attention_dim=16,
        attention_head_dim=8,
        norm_num_groups=32,
    )
    with torch.no_grad():  # no zero-initialised weights: a swapped or dropped one always shows
        for p in unet.parameters():
            p.add_(torch.randn(p.shape) * 0.05)
    return unet.eval()


@pytest.mark.parametrize(
    ("blocks", "attention", "layers_per_block"),
    [((32, 64), (True, False), 1), ((32, 32, 64), (True, True, False), 2), ((32, 64, 64), (False, True, True), 1)],
)
def test_ldm_unet_layout_round_trips_through_diffusers(blocks, attention, layers_per_block):
    unet = _unet(blocks, attention, layers_per_block)
    ldm = unet2d_to_ldm(unet.state_dict(), layers_per_block)
    step = layers_per_block + 1
    for name in (  # where the LDM UNet keeps them (openaimodel.UNetModel)
        "input_blocks.0.0.weight",
        f"input_blocks.{step}.0.op.weight",
        "input_blocks.1.0.in_layers.0.weight",
        "middle_block.1.transformer_blocks.0.attn2.to_k.weight",
        "middle_block.2.out_layers.3.bias",
        f"output_blocks.{layers_per_block}.{2 if attention[-1] else 1}.conv.weight",
        "time_embed.2.weight",
        "out.2.weight",
    ):
        assert "model.diffusion_model." + name in ldm, name

    cfg = infer_zero123_unet_config({k.removeprefix("model.diffusion_model."): v for k, v in ldm.items()})
    assert all(_plain(unet.config[key]) == _plain(value) for key, value in cfg.items() if key != "sample_size"), cfg
    converted = convert_ldm_unet_checkpoint(ldm, unet.config)
    assert converted.keys() == unet.state_dict().keys()
    assert all(torch.equal(v, converted[k]) for k, v in unet.state_dict().items())


class _OpenAIVisionTransformer(nn.Module):
    """OpenAI CLIP's ``VisionTransformer`` (clip/model.py), written from its published architecture
    with the same parameter names: patch conv without bias, class token, learned positions, pre-LN
    residual blocks (``nn.MultiheadAttention``, QuickGELU MLP), ``ln_post`` on the class token, ``proj``."""

    def __init__(self, width: int, layers: int, heads: int, patch: int, grid: int, mlp: int, dim: int):
        super().__init__()
        self.heads = heads
        self.conv1 = nn.Conv2d(3, width, patch, stride=patch, bias=False)
        self.class_embedding = nn.Parameter(torch.empty(width))
        self.positional_embedding = nn.Parameter(torch.empty(grid * grid + 1, width))
        self.ln_pre, self.ln_post = nn.LayerNorm(width), nn.LayerNorm(width)
        self.transformer = nn.Module()
        self.transformer.resblocks = nn.ModuleList(
            nn.ModuleDict(
                {
                    "ln_1": nn.LayerNorm(width),
                    "attn": nn.MultiheadAttention(width, heads, batch_first=True),
                    "ln_2": nn.LayerNorm(width),
                    "mlp": nn.ModuleDict({"c_fc": nn.Linear(width, mlp), "c_proj": nn.Linear(mlp, width)}),
                }
            )
            for _ in range(layers)
        )
        self.proj = nn.Parameter(torch.empty(width, dim))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = self.conv1(pixels).flatten(2).transpose(1, 2)
        x = torch.cat([self.class_embedding.expand(x.shape[0], 1, -1), x], dim=1) + self.positional_embedding
        x = self.ln_pre(x)
        for block in self.transformer.resblocks:
            h = block["ln_1"](x)
            x = x + block["attn"](h, h, h, need_weights=False)[0]
            h = block["mlp"]["c_fc"](block["ln_2"](x))
            x = x + block["mlp"]["c_proj"](h * torch.sigmoid(1.702 * h))
        return self.ln_post(x[:, 0]) @ self.proj


def test_openai_clip_vision_layout_matches_the_architecture():
    cfg = CLIPVisionConfig(
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=1,  # OpenAI's 64-wide heads
        patch_size=8,
        image_size=32,
        projection_dim=24,
        hidden_act="quick_gelu",
    )
    torch.manual_seed(0)
    enc = CLIPVisionModelWithProjection(cfg).eval()
    with torch.no_grad():
        for p in enc.parameters():
            p.add_(torch.randn(p.shape) * 0.05)
    ckpt = clip_vision_to_openai(enc.state_dict())
    assert ckpt[VISION_PREFIX + "proj"].shape == (64, 24)
    assert ckpt[VISION_PREFIX + "transformer.resblocks.1.attn.in_proj_weight"].shape == (192, 64)

    reference = _OpenAIVisionTransformer(width=64, layers=2, heads=1, patch=8, grid=4, mlp=96, dim=24).eval()
    reference.load_state_dict({k.removeprefix(VISION_PREFIX): v for k, v in ckpt.items()}, strict=True)
    pixels = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        torch.testing.assert_close(reference(pixels), enc(pixels).image_embeds, rtol=1e-5, atol=1e-5)

    back = convert_openai_clip_vision(ckpt)
    assert back.keys() == enc.state_dict().keys()
    assert all(torch.equal(v, back[k]) for k, v in enc.state_dict().items())
