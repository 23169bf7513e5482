"""The one entry point, ``load_model``: a model of another kind, or a file or folder that is not a
model, is refused with one line naming what was found."""

from __future__ import annotations

import pytest

from microdreamer_core.diffusion.folders import save_diffusers_folder
from microdreamer_core.diffusion.loading import load_model
from microdreamer_core.errors import InputError


def test_loader_refuses_wrong_files(models, tmp_path):
    from diffusers import UNet2DConditionModel

    # a model of another kind for this node
    folder = save_diffusers_folder(models["imagedream"], tmp_path / "imagedream")
    with pytest.raises(InputError, match="is a ImageDream model, but MVDream is needed"):
        load_model(folder, kind="mvdream")
    # a plain Stable Diffusion folder
    plain = tmp_path / "sd"
    UNet2DConditionModel(
        block_out_channels=(32, 64),
        cross_attention_dim=32,
        norm_num_groups=32,
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
    ).save_pretrained(plain / "unet")
    with pytest.raises(InputError, match="plain Stable Diffusion model"):
        load_model(plain)
    # a truncated safetensors file inside a folder
    weights = folder / "vae" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(InputError, match="could not load the VAE"):
        load_model(folder)
    # a truncated single file, a file of the wrong type, a missing path
    trunc = tmp_path / "model.safetensors"
    trunc.write_bytes(b'\x10\x00\x00\x00\x00\x00\x00\x00{"a":')
    with pytest.raises(InputError, match="truncated, corrupt"):
        load_model(trunc)
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(InputError, match="unknown model file type"):
        load_model(tmp_path / "notes.txt")
    with pytest.raises(InputError, match="not found"):
        load_model(tmp_path / "nowhere")
