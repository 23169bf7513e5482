"""The SD-2.1 tokenizer from files on this machine. Three sources: the tokenizer files ComfyUI
ships (comfy/sd1_tokenizer, from the provisioned ComfyUI 0.3.75), the CLIP vocabulary of the
open_clip_torch package, and the hub's stabilityai/stable-diffusion-2-1-base as published (its
tokenizer/ folder, served by a fake hub); all give the same ids, token for token."""

from __future__ import annotations

import gzip
import json

import pytest
from fake_hub import FakeHub
from transformers import CLIPTokenizer

from microdreamer_core.diffusion.single_file import SD21_HUB_ID, _resolve_source
from microdreamer_core.diffusion.tokenizer import clip_bpe_to_folder, open_clip_vocab, sd21_tokenizer
from microdreamer_core.errors import InputError

PROMPTS = [
    "a yellow rubber duck",
    "A DSLR photo of a Corgi wearing a top hat, 8k, highly detailed!!",
    "! !! !!! a?!",  # "!" is SD-2.1's pad token
    "héllo wörld: 東京 🦆 — naïve café's",
    "  spaces\tand\nnewlines  ",
    "",
    "very long " * 60,  # truncated to 77
]
# what stabilityai/stable-diffusion-2-1-base publishes in tokenizer/ besides vocab.json and merges.txt
SD21_SPECIAL_TOKENS = {
    "bos_token": "<|startoftext|>",
    "eos_token": "<|endoftext|>",
    "unk_token": "<|endoftext|>",
    "pad_token": "!",
}
SD21_CONFIG = SD21_SPECIAL_TOKENS | {
    "do_lower_case": True,
    "errors": "replace",
    "model_max_length": 77,
    "tokenizer_class": "CLIPTokenizer",
}


@pytest.fixture(scope="module")
def comfy_tokenizer_files():
    """ComfyUI 0.3.75's comfy/sd1_tokenizer (the ComfyUI download of tests/comfy_server.py, cached)."""
    from comfy_server import provision_comfyui

    try:
        folder = provision_comfyui() / "comfy" / "sd1_tokenizer"
    except Exception as e:  # noqa: BLE001 - no network and no cache
        pytest.fail(f"could not provision ComfyUI (set MICRODREAMER_TEST_CACHE to a cache holding it): {e}")
    assert (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file()
    return folder


@pytest.fixture(scope="module")
def open_clip_bpe():
    bpe = open_clip_vocab()
    assert bpe is not None, "open_clip_torch is not installed: pip install -r tests/requirements.txt"
    return bpe


def ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, padding="max_length", max_length=tokenizer.model_max_length, truncation=True).input_ids


@pytest.mark.comfyui
def test_open_clip_vocabulary_is_comfyuis_tokenizer_files(comfy_tokenizer_files, open_clip_bpe, tmp_path):
    folder = clip_bpe_to_folder(open_clip_bpe, tmp_path)
    ours = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
    theirs = json.loads((comfy_tokenizer_files / "vocab.json").read_text(encoding="utf-8"))
    assert len(ours) == 49408 and ours == theirs
    merges = (folder / "merges.txt").read_text(encoding="utf-8")
    assert merges == (comfy_tokenizer_files / "merges.txt").read_text(encoding="utf-8")


@pytest.mark.comfyui
def test_the_three_sources_agree_token_for_token(comfy_tokenizer_files, open_clip_bpe, tmp_path, monkeypatch):
    published = {
        "tokenizer/vocab.json": (comfy_tokenizer_files / "vocab.json").read_bytes(),
        "tokenizer/merges.txt": (comfy_tokenizer_files / "merges.txt").read_bytes(),
        "tokenizer/special_tokens_map.json": json.dumps(SD21_SPECIAL_TOKENS).encode(),
        "tokenizer/tokenizer_config.json": json.dumps(SD21_CONFIG).encode(),
        "unet/diffusion_pytorch_model.safetensors": b"x" * 64,
    }
    FakeHub(published).install(monkeypatch)
    hub_folder = _resolve_source(None, SD21_HUB_ID, "tokenizer", tmp_path, "the tokenizer")
    sources = {
        "comfyui": sd21_tokenizer(comfy_tokenizer_files),
        "open_clip_torch": sd21_tokenizer(open_clip_bpe),
        "hub": sd21_tokenizer(hub_folder),
        "hub, its own settings": CLIPTokenizer.from_pretrained(hub_folder),
    }
    for name, tok in sources.items():
        assert (len(tok), tok.pad_token_id, tok.model_max_length) == (49408, 0, 77), name
        assert (tok.bos_token_id, tok.eos_token_id) == (49406, 49407), name
    vocab = json.loads((comfy_tokenizer_files / "vocab.json").read_text(encoding="utf-8"))
    duck = [49406, *(vocab[w + "</w>"] for w in ("a", "yellow", "rubber", "duck")), 49407]
    assert ids(sources["comfyui"], PROMPTS[0]) == duck + [0] * (77 - len(duck))
    for text in PROMPTS:
        expected = ids(sources["hub, its own settings"], text)
        assert len(expected) == 77 and expected[0] == 49406
        for name, tok in sources.items():
            assert ids(tok, text) == expected, (name, text)


@pytest.mark.comfyui
def test_comfyuis_sd1_settings_give_way_to_sd21s(comfy_tokenizer_files):
    """ComfyUI's files are SD-1's tokenizer (pad with the end token, 8192 tokens): the SD-2.1
    settings replace them, or the padding would differ from what MVDream was trained with."""
    raw = CLIPTokenizer.from_pretrained(comfy_tokenizer_files)
    assert (raw.pad_token_id, raw.model_max_length) == (49407, 8192)
    tok = sd21_tokenizer(comfy_tokenizer_files)
    assert (tok.pad_token_id, tok.model_max_length) == (0, 77)
    assert ids(tok, "a duck")[-1] == 0


def test_what_is_not_a_vocabulary_is_refused(tmp_path):
    bad = tmp_path / "bpe_simple_vocab_16e6.txt.gz"
    with gzip.open(bad, "wt", encoding="utf-8") as f:
        f.write("#version: 0.2\na b\n")
    with pytest.raises(InputError, match="not CLIP's BPE vocabulary"):
        sd21_tokenizer(bad)
    bad.write_bytes(b"not gzip")
    with pytest.raises(InputError, match="could not read the CLIP vocabulary"):
        sd21_tokenizer(bad)
    with pytest.raises(InputError, match="not a tokenizer folder"):
        sd21_tokenizer(tmp_path)
