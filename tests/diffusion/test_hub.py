"""Hub model ids and downloads: only ``owner/name``, only what a known diffusers model loads.

There is no network here: ``huggingface_hub.HfApi`` and ``huggingface_hub.snapshot_download`` are
replaced by a fake hub (tests/fake_hub.py) that serves a real tiny model folder plus junk, and
records what was asked for, in which order.
"""

from __future__ import annotations

import json
from pathlib import Path

import huggingface_hub
import pytest
from fake_hub import FakeHub

from microdreamer_core.diffusion.folders import save_diffusers_folder
from microdreamer_core.diffusion.hub import (
    MAX_HUB_DOWNLOAD_BYTES,
    _config_files,
    _weight_files,
    check_repo_id,
    download_model,
    load_from_hub,
)
from microdreamer_core.diffusion.loading import load_model
from microdreamer_core.diffusion.random_models import build_random_model
from microdreamer_core.errors import InputError

GOOD_IDS = ["ashawkey/imagedream-ipmv-diffusers", "a/b", "Owner_1/name.v2", "_x/y_", "x" * 96 + "/" + "y" * 96]
BAD_IDS = [
    "/etc",
    "/etc/passwd",
    "../x",
    "./x",
    "x/..",
    "C:\\x",
    "C:/x",
    "\\\\server\\share",
    "owner\\name",
    "owner/name/extra",
    "~/x",
    "~",
    "",
    " ",
    "/name",
    "owner/",
    "/",
    "owner//name",
    "-owner/name",
    "owner/name-",
    "owner/.name",
    ".owner/name",
    "own..er/name",
    "own--er/name",
    "owner/name.git",
    "x" * 97 + "/y",
    "owner/na me",
    "owner/n\u00e4me",
    "owner/name\n",
    "name",
    "models/microdreamer/owner--name",
    "owner/name?x=1",
    "owner/name#x",
    "https://huggingface.co/a/b",
]


@pytest.mark.parametrize("repo_id", GOOD_IDS)
def test_repo_ids_of_the_hub_grammar_are_accepted(repo_id):
    assert check_repo_id(repo_id) == repo_id


@pytest.mark.parametrize("repo_id", BAD_IDS)
def test_anything_else_is_refused_in_one_line_without_echo(repo_id):
    with pytest.raises(InputError) as info:
        check_repo_id(repo_id)
    message = str(info.value)
    assert "\n" not in message and message.startswith("hub_id ") and "owner/name" in message, message
    # one of two fixed lines (a path, or not the hub's grammar): the value is never echoed
    assert message in (str(_error("/etc")), str(_error("a b"))), message


def test_local_paths_are_refused_alike_whether_they_exist_or_not(tmp_path):
    (tmp_path / "unet").mkdir()
    (tmp_path / "unet" / "config.json").write_text("{}")
    existing = str(tmp_path)
    missing = str(tmp_path / "nowhere")
    messages = {repr(e) for e in (_error(existing), _error(missing), _error("/etc"))}
    assert len(messages) == 1 and "not a path" in messages.pop()
    for value in (None, 5, ["a", "b"], Path("a/b")):
        with pytest.raises(InputError, match="hub_id must be a hub repo id"):
            check_repo_id(value)


def _error(value) -> InputError:
    with pytest.raises(InputError) as info:
        check_repo_id(value)
    return info.value


# --- the fake hub ---------------------------------------------------------------------------------
JUNK = {  # what real repos carry beside the diffusers components
    ".gitattributes": b"*.bin filter=lfs",
    "README.md": b"# model card",
    "sd-v2.1-base-4view-ipmv.pt": b"x" * 64,  # the original checkpoint (a pickle)
    "unet/diffusion_pytorch_model.fp16.safetensors": b"x" * 64,  # a variant
    "unet/diffusion_pytorch_model.bin": b"x" * 64,  # a .bin beside the safetensors
    "vae/diffusion_pytorch_model.bin": b"x" * 64,
    "samples/cat.png": b"x" * 64,
    "unet/nested/extra.safetensors": b"x" * 64,
    "other/config.json": b"{}",
}


def repo_files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def imagedream_files(tmp_path_factory) -> dict[str, bytes]:
    folder = tmp_path_factory.mktemp("hub") / "imagedream"
    save_diffusers_folder(build_random_model("imagedream", "tiny", seed=1), folder)
    return repo_files(folder)


WEIGHTS = {
    "unet/diffusion_pytorch_model.safetensors",
    "vae/diffusion_pytorch_model.safetensors",
    "text_encoder/model.safetensors",
    "image_encoder/model.safetensors",
}


def test_configs_first_then_only_the_weights_the_kind_loads(imagedream_files, tmp_path, monkeypatch):
    hub = FakeHub(imagedream_files | JUNK).install(monkeypatch)
    model = load_from_hub("owner/imagedream", download_dir=tmp_path)
    assert model.kind == "imagedream"
    assert hub.calls[0] == ("model_info", "owner/imagedream", True)  # sizes asked for
    configs, weights = hub.downloads()  # exactly two downloads: configs, then weights
    assert all(c[2] == hub.sha for c in hub.calls[1:]), "both downloads pinned to the listed commit"
    assert (
        "model_index.json" in configs and "unet/config.json" in configs and "tokenizer/tokenizer_config.json" in configs
    )
    assert all(Path(p).suffix in (".json", ".txt", ".model") for p in configs), configs
    assert "other/config.json" not in configs
    assert set(weights) == WEIGHTS, weights  # safetensors over .bin, no variants, nothing else
    got = {
        p.relative_to(tmp_path / "owner--imagedream").as_posix()
        for p in (tmp_path / "owner--imagedream").rglob("*")
        if p.is_file()
    }
    assert got.isdisjoint(JUNK) and WEIGHTS <= got

    # A second load reads the folder without asking the hub.
    hub.calls.clear()
    assert load_from_hub("owner/imagedream", download_dir=tmp_path).kind == "imagedream" and hub.calls == []


def test_load_model_sends_repo_ids_through_the_same_download(imagedream_files, tmp_path, monkeypatch):
    hub = FakeHub(imagedream_files).install(monkeypatch)
    assert load_model("owner/imagedream", download_dir=tmp_path).kind == "imagedream"
    assert len(hub.downloads()) == 2
    with pytest.raises(InputError, match="not found"):
        load_model("owner/name/extra", download_dir=tmp_path)


def test_a_repo_without_a_unet_config_is_refused_before_any_download(tmp_path, monkeypatch):
    hub = FakeHub({"config.json": b"{}", "model.safetensors": b"x" * 64, "tokenizer.json": b"{}"}).install(monkeypatch)
    with pytest.raises(InputError, match="is not a diffusers model \\(no unet/config.json\\)"):
        download_model("owner/llm", tmp_path)
    assert hub.downloads() == [] and not (tmp_path / "owner--llm").exists()


def test_a_diffusers_repo_of_another_kind_is_refused_before_its_weights(tmp_path, monkeypatch):
    sd = {
        "model_index.json": b"{}",
        "unet/config.json": json.dumps({"_class_name": "UNet2DConditionModel", "in_channels": 4}).encode(),
        "unet/diffusion_pytorch_model.safetensors": b"x" * 64,
        "vae/config.json": b"{}",
        "vae/diffusion_pytorch_model.safetensors": b"x" * 64,
    }
    hub = FakeHub(sd).install(monkeypatch)
    with pytest.raises(InputError, match="plain Stable Diffusion model"):
        download_model("owner/sd", tmp_path)
    (configs,) = hub.downloads()  # the configs only
    assert not any(p.endswith(".safetensors") for p in configs)
    assert not (tmp_path / "owner--sd").exists(), "the refused repo's configs are removed"


def test_an_oversize_repo_is_refused_before_its_weights(imagedream_files, tmp_path, monkeypatch):
    big = {
        "unet/diffusion_pytorch_model.safetensors": MAX_HUB_DOWNLOAD_BYTES // 2,
        "image_encoder/model.safetensors": MAX_HUB_DOWNLOAD_BYTES // 2 + 1,
    }
    hub = FakeHub(imagedream_files, sizes=big).install(monkeypatch)
    with pytest.raises(InputError, match="more than the 12 GB allowed"):
        load_from_hub("owner/huge", download_dir=tmp_path)
    assert len(hub.downloads()) == 1 and not (tmp_path / "owner--huge").exists()
    # unrelated big files (a .bin twin, the original checkpoint) do not count: they are never fetched
    hub = FakeHub(
        imagedream_files | {"unet/diffusion_pytorch_model.bin": b"x"},
        sizes={"unet/diffusion_pytorch_model.bin": 10**12},
    ).install(monkeypatch)
    assert load_from_hub("owner/fine", download_dir=tmp_path).kind == "imagedream"
    with pytest.raises(InputError, match="more than the 0 GB allowed"):
        download_model("owner/other", tmp_path, max_bytes=10)


def test_a_repo_missing_weights_of_a_component_is_refused(imagedream_files, tmp_path, monkeypatch):
    files = {k: v for k, v in imagedream_files.items() if k != "image_encoder/model.safetensors"}
    hub = FakeHub(files).install(monkeypatch)
    with pytest.raises(InputError, match="no weights for image_encoder"):
        download_model("owner/partial", tmp_path)
    assert len(hub.downloads()) == 1 and not (tmp_path / "owner--partial").exists()


def test_an_existing_folder_is_kept_when_a_download_fails(tmp_path, monkeypatch):
    FakeHub({"config.json": b"{}"}).install(monkeypatch)
    (tmp_path / "owner--mine").mkdir()
    (tmp_path / "owner--mine" / "notes.txt").write_text("mine")
    with pytest.raises(InputError):
        download_model("owner/mine", tmp_path)
    assert (tmp_path / "owner--mine" / "notes.txt").read_text() == "mine"


def test_weights_choice_prefers_safetensors_then_plain_names():
    names = [
        "unet/diffusion_pytorch_model.fp16.safetensors",
        "unet/diffusion_pytorch_model-00001-of-00002.safetensors",
        "unet/diffusion_pytorch_model-00002-of-00002.safetensors",
        "unet/diffusion_pytorch_model.bin",
        "vae/diffusion_pytorch_model.bin",
        "vae/diffusion_pytorch_model.fp16.bin",
        "text_encoder/model.fp16.safetensors",
        "scheduler/scheduler_config.json",
        "tokenizer/vocab.json",
    ]
    assert _weight_files(names, ("unet", "vae", "text_encoder", "tokenizer")) == [
        "unet/diffusion_pytorch_model-00001-of-00002.safetensors",
        "unet/diffusion_pytorch_model-00002-of-00002.safetensors",
        "vae/diffusion_pytorch_model.bin",
        "text_encoder/model.fp16.safetensors",
    ]
    assert _config_files(names) == ["scheduler/scheduler_config.json", "tokenizer/vocab.json"]


def test_offline_hub_says_where_to_put_the_files(tmp_path, monkeypatch):
    class OfflineApi:
        def model_info(self, *a, **k):
            raise OSError("offline")

    monkeypatch.setattr(huggingface_hub, "HfApi", OfflineApi)
    with pytest.raises(InputError, match=r"put the files in .*owner--name, then select that folder"):
        load_from_hub("owner/name", download_dir=tmp_path)
    assert not (tmp_path / "owner--name").exists()


def test_hub_id_offline_says_where_to_put_the_files(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(InputError, match=r"put the files in .*ashawkey--imagedream-ipmv-diffusers"):
        load_model("ashawkey/imagedream-ipmv-diffusers", download_dir=tmp_path)
