"""The multi-view UNet: its attention couples the views of a sample; the published unet/config.json
switches load quietly, and a value describing another architecture is refused with one line."""

from __future__ import annotations

import pytest
import torch
from tiny_diffusion import NOISE, PUBLISHED_SWITCHES, SIZE, cameras, condition, library_logs, published_layout

from microdreamer_core.diffusion.folders import save_diffusers_folder
from microdreamer_core.diffusion.loading import load_model
from microdreamer_core.diffusion.sampling import sample
from microdreamer_core.diffusion.unet import MultiViewUNetModel
from microdreamer_core.errors import InputError


def test_multiview_attention_couples_views_but_zero123_does_not(models):
    x = torch.randn(4, 4, SIZE // 2, SIZE // 2, generator=torch.Generator().manual_seed(0))
    x2 = x.clone()
    x2[2] += 1.0
    for kind, coupled in (("mvdream", True), ("imagedream", True), ("zero123", False)):
        m = models[kind]
        p = m.prepare(condition(), cameras(), SIZE)
        a, b = m.predict_noise(x, 301, p, 2.0), m.predict_noise(x2, 301, p, 2.0)
        assert (not torch.allclose(a[0], b[0])) == coupled, kind


@pytest.mark.parametrize("kind", ["mvdream", "imagedream"])
def test_published_unet_config_loads_quietly_and_works(kind, models, tmp_path, capfd):
    model = models[kind]
    folder = published_layout(save_diffusers_folder(model, tmp_path / kind))
    capfd.readouterr()
    with library_logs() as logs:
        loaded = load_model(folder, kind=kind)
    out, err = capfd.readouterr()
    said = logs.getvalue() + out + err
    assert not any(word in said for word in NOISE), said
    for key, value in PUBLISHED_SWITCHES.items():
        assert loaded.unet.config[key] == value
    a = sample(model, condition(), cameras(), steps=2, seed=1, image_size=SIZE)
    b = sample(loaded, condition(), cameras(), steps=2, seed=1, image_size=SIZE)
    assert torch.equal(a.images, b.images)


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"use_linear_in_transformer": False}, "use_linear_in_transformer"),
        ({"use_spatial_transformer": False}, "use_spatial_transformer"),
        # legacy LDM heads are ch // (ch // 24) = 32 wide at the 64-channel level, not 24
        ({"legacy": True, "num_head_channels": 24}, "legacy"),
        ({"use_scale_shift_norm": True}, "use_scale_shift_norm"),
    ],
)
def test_unsupported_unet_layouts_are_refused_naming_the_key(overrides, key, models, tmp_path):
    folder = published_layout(save_diffusers_folder(models["imagedream"], tmp_path / "m"), **overrides)
    with pytest.raises(InputError, match=key) as info:
        load_model(folder)
    message = str(info.value)
    assert "\n" not in message and "not supported" in message and "download it again" not in message


def test_legacy_is_accepted_where_it_changes_nothing(models, tmp_path):
    # num_head_channels=16 divides every attention width (64) of the tiny UNet: legacy heads are 16 wide too
    model = models["mvdream"]
    folder = published_layout(save_diffusers_folder(model, tmp_path / "m"), legacy=True)
    loaded = load_model(folder)
    for k, v in model.unet.state_dict().items():
        assert torch.equal(loaded.unet.state_dict()[k], v), k
    # and the full-size SD-2.1 layout (widths 320..1280, 64-wide heads) is the same under legacy
    with torch.device("meta"):
        MultiViewUNetModel(legacy=True, use_checkpoint=True)
