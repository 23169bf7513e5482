"""Loading the multi-view diffusion models from what users actually have on disk.

Three sources, one entry point, :func:`load_model`:

* a **diffusers-layout folder** (:mod:`.folders`);
* an **original single-file checkpoint** (:mod:`.single_file`); parts a checkpoint does not hold
  (tokenizer, ImageDream's CLIP image encoder) come from ``single_file_sources`` (a tokenizer
  folder, a clip_vision file), open_clip_torch's CLIP vocabulary, or the hub;
* a **hub id** (``owner/name``), downloaded with ``huggingface_hub`` into ``download_dir``
  (:mod:`.hub`).

Every component is built without weights and then takes the file's tensors (:mod:`.weights`).
Wrong input is refused with one line naming what was found and what was expected.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ..errors import InputError
from .folders import load_diffusers_folder
from .hub import HUB_IDS, is_repo_id, load_from_hub
from .models import MODEL_CLASSES, MultiViewModel
from .single_file import SINGLE_FILE_SUFFIXES, load_single_file

__all__ = ["load_model"]


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
            raise InputError(
                f"{src.name}: unknown model file type {src.suffix!r}; expected one of {', '.join(SINGLE_FILE_SUFFIXES)}"
            )
        model = load_single_file(src, device, dtype, download_dir=download_dir, **single_file_sources)
    elif is_repo_id(str(source)):
        model = load_from_hub(str(source), device, dtype, download_dir)
    else:
        raise InputError(
            f"model {source} not found: give a diffusers folder, a "
            f".safetensors/.pt checkpoint or a hub id like {HUB_IDS['imagedream']}"
        )
    if kind is not None and model.kind != kind:
        raise InputError(
            f"{Path(str(source)).name} is a {model.display_name} model, "
            f"but {MODEL_CLASSES[kind].display_name} is needed here"
        )
    return model
