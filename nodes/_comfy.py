"""The little ComfyUI glue every node shares: progress/interrupt hooks, devices and paths.

Only this package imports ComfyUI; ``microdreamer_core`` never does.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

import comfy.model_management
import comfy.utils
import folder_paths

from microdreamer_core.errors import InputError
from microdreamer_core.io.paths import confined
from microdreamer_core.runtime import CancelFn, ProgressFn


def progress_hook() -> ProgressFn:
    """A ``progress(done, total)`` hook that drives ComfyUI's progress bar for the running node
    (the core reports the total with every call)."""
    bar = comfy.utils.ProgressBar(1)

    def progress(done: int, total: int) -> None:
        bar.update_absolute(done, total)

    return progress


def cancel_hook() -> CancelFn:
    """A ``cancel()`` callback that raises ComfyUI's interrupt exception once the user pressed Cancel."""
    return comfy.model_management.throw_exception_if_processing_interrupted


def torch_device() -> str:
    """The device ComfyUI runs on (honours ``--cpu``), as a string for the core configs."""
    return str(comfy.model_management.get_torch_device())


INPUT_FOLDER = "ComfyUI's input folder"
"""How messages name the folder inputs are confined to (never its absolute path)."""


def input_root() -> Path:
    """ComfyUI's input directory: everything a node reads by name is confined to it."""
    return Path(folder_paths.get_input_directory())


def input_path(name: str, what: str = "the path") -> Path:
    """``name`` resolved inside ComfyUI's input directory (symlinks included), or the one
    :class:`InputError` of :func:`microdreamer_core.io.paths.confined` when it leads outside."""
    return confined(input_root(), name, what, INPUT_FOLDER)


def model_file(folder: str, name: str, offered: Collection[str]) -> Path:
    """The file ``name`` of ComfyUI's model folder ``folder`` (``models/<folder>`` and what
    extra_model_paths.yaml adds), only when ``name`` is one of ``offered``: the names the node
    listed from that folder. Anything else (a path, ``..``, a file that was not listed) is refused
    with one message that does not repeat it. Files linked into the folder are followed, as
    ComfyUI's own loaders do (users link large model files there)."""
    path = folder_paths.get_full_path(folder, name) if name in offered else None
    if path is None:
        raise InputError(f"that file is not in models/{folder}: refresh the node list (R) and pick one it lists")
    return Path(path)


def comfy_tokenizer_folder() -> Path | None:
    """The CLIP tokenizer files ComfyUI ships (``comfy/sd1_tokenizer``: the CLIP BPE vocabulary,
    which SD-2.x uses too), or None where a ComfyUI version has moved them."""
    folder = Path(comfy.utils.__file__).parent / "sd1_tokenizer"
    return folder if (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file() else None


def output_file(filename_prefix: str, extension: str) -> tuple[Path, dict]:
    """Next free ``<prefix>_00001_.<ext>`` in ComfyUI's output directory and its UI entry.

    ``filename_prefix`` may contain subfolders (``3d/model``) and ComfyUI's ``%date%``-style
    variables; ComfyUI refuses prefixes that would leave the output directory.
    """
    folder, filename, counter, subfolder, _ = folder_paths.get_save_image_path(
        filename_prefix, folder_paths.get_output_directory()
    )
    name = f"{filename}_{counter:05}_.{extension}"
    return Path(folder) / name, {"filename": name, "subfolder": subfolder, "type": "output"}


def workflow_metadata(hidden) -> dict | None:
    """The prompt and workflow of the running job as JSON strings (what core savers embed),
    or None when ComfyUI runs with ``--disable-metadata``."""
    from comfy.cli_args import args

    if args.disable_metadata or hidden is None:
        return None
    import json

    metadata = {}
    if getattr(hidden, "prompt", None) is not None:
        metadata["prompt"] = json.dumps(hidden.prompt)
    for key, value in (getattr(hidden, "extra_pnginfo", None) or {}).items():
        metadata[key] = json.dumps(value)
    return metadata or None
