"""The SD-2.1 CLIP tokenizer MVDream and ImageDream condition on, from files already on this machine.

Three sources carry the same vocabulary (OpenAI CLIP's byte-level BPE, 49408 tokens, which
OpenCLIP and so SD-2.x reuse):

* a tokenizer folder (``vocab.json`` + ``merges.txt``, or ``tokenizer.json``): ComfyUI ships one in
  ``comfy/sd1_tokenizer``, a diffusers model has ``tokenizer/``;
* the BPE file the ``open_clip_torch`` package ships (``open_clip/bpe_simple_vocab_16e6.txt.gz``),
  found without importing the package;
* the hub's ``stabilityai/stable-diffusion-2-1-base`` (:mod:`.single_file` downloads it last).

SD-2.x differs from SD-1.x only in two settings, :data:`SD21_SETTINGS`: it pads with ``!``
(token 0, what OpenCLIP's tokenizer pads with) to 77 tokens. ComfyUI's folder carries SD-1's
(pad ``<|endoftext|>``, 8192), so the settings are applied to every source: all give the same ids,
token for token.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import os
import tempfile
from pathlib import Path

from ..errors import InputError
from .weights import load_component

__all__ = ["SD21_SETTINGS", "byte_alphabet", "clip_bpe_to_folder", "open_clip_vocab", "sd21_tokenizer"]

SD21_SETTINGS = {"pad_token": "!", "model_max_length": 77}
"""What stabilityai/stable-diffusion-2-1-base's tokenizer config sets (SD-1.x pads with the end token)."""
OPEN_CLIP_BPE = "bpe_simple_vocab_16e6.txt.gz"
CLIP_MERGES = 49408 - 2 * 256 - 2
"""Merges CLIP uses from the BPE file: the vocabulary is 256 bytes, the same 256 ending a word, one
token per merge and the two special tokens."""
SPECIAL_TOKENS = ("<|startoftext|>", "<|endoftext|>")


def byte_alphabet() -> list[str]:
    """The 256 printable stand-ins byte-level BPE uses for bytes, in byte order: printable Latin-1
    bytes stand for themselves, the others for code points from 256 up."""
    keep = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("\u00a1"), ord("\u00ac") + 1),
        *range(ord("\u00ae"), ord("\u00ff") + 1),
    ]
    extra = iter(range(256, 512))
    return [chr(b) if b in keep else chr(next(extra)) for b in range(256)]


def open_clip_vocab() -> Path | None:
    """The CLIP BPE file of an installed ``open_clip_torch`` (found without importing the package,
    which would import torchvision and timm), or None."""
    try:
        spec = importlib.util.find_spec("open_clip")
    except (ImportError, ValueError):
        return None
    for folder in (spec.submodule_search_locations or []) if spec else []:
        if (Path(folder) / OPEN_CLIP_BPE).is_file():
            return Path(folder) / OPEN_CLIP_BPE
    return None


def clip_bpe_to_folder(bpe: str | os.PathLike, folder: str | os.PathLike) -> Path:
    """Write CLIP's gzipped BPE merges file as a tokenizer folder (``vocab.json`` + ``merges.txt``).

    The file is a version line and then merges, most frequent first; CLIP takes the first
    :data:`CLIP_MERGES`. Token ids: the byte stand-ins (in code-point order), the same ending a
    word (``</w>``), one per merge, then the two special tokens.
    """
    try:
        with gzip.open(bpe) as f:
            lines = f.read().decode("utf-8").split("\n")
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise InputError(
            f"could not read the CLIP vocabulary {Path(bpe).name} ({exc}): reinstall open_clip_torch"
        ) from exc
    merges = lines[1 : CLIP_MERGES + 1]
    if len(merges) != CLIP_MERGES or any(len(m.split()) != 2 for m in merges):
        raise InputError(f"{Path(bpe).name} is not CLIP's BPE vocabulary (expected {CLIP_MERGES} merges)")
    chars = sorted(byte_alphabet())
    tokens = chars + [c + "</w>" for c in chars] + ["".join(m.split()) for m in merges] + list(SPECIAL_TOKENS)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    return folder


def sd21_tokenizer(source: str | os.PathLike):
    """SD-2.1's tokenizer from a tokenizer folder or CLIP's BPE file (``.txt.gz``), with
    :data:`SD21_SETTINGS` whatever the source's own config says."""
    from transformers import CLIPTokenizer

    source = Path(source)
    if source.is_file():
        with tempfile.TemporaryDirectory(prefix="clip-bpe-") as tmp:
            return sd21_tokenizer(clip_bpe_to_folder(source, tmp))
    if not any((source / name).is_file() for name in ("vocab.json", "tokenizer.json")):
        raise InputError(f"{source.name} is not a tokenizer folder (no vocab.json + merges.txt or tokenizer.json)")
    return load_component("tokenizer", CLIPTokenizer.from_pretrained, source, **SD21_SETTINGS)
