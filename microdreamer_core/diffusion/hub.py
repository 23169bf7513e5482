"""Hub model ids and downloads: only ``owner/name`` ids, and of a repo only what a known diffusers
model loads (configs first, then that kind's weights, pinned to one commit, within a size bound)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch

from ..errors import InputError
from .folders import detect_folder_kind, load_diffusers_folder
from .models import MODEL_CLASSES, MultiViewModel

__all__ = [
    "HUB_IDS",
    "MAX_HUB_DOWNLOAD_BYTES",
    "check_repo_id",
    "is_repo_id",
    "download",
    "download_model",
    "load_from_hub",
]

HUB_IDS = {
    "mvdream": "ashawkey/mvdream-sd2.1-diffusers",
    "imagedream": "ashawkey/imagedream-ipmv-diffusers",
    "zero123": "ashawkey/stable-zero123-diffusers",
}
"""The diffusers ports of the supported models on the hub, by kind."""
MAX_REPO_PART = 96
"""Longest owner or name in a hub repo id (the hub's own limit)."""
MAX_HUB_DOWNLOAD_BYTES = 12 * 10**9
"""Largest total size (12 GB) of the files a hub model download may fetch, where the hub lists
sizes; the three supported models take 2.5-6 GB."""
COMPONENTS = {
    "mvdream": ("unet", "vae", "text_encoder", "tokenizer"),
    "imagedream": ("unet", "vae", "text_encoder", "tokenizer", "image_encoder", "feature_extractor"),
    "zero123": ("unet", "vae", "image_encoder", "feature_extractor", "clip_camera_projection"),
}
"""The diffusers sub-folders each model kind loads (``scheduler/`` holds only a config)."""
MODEL_FOLDERS = (
    "unet",
    "vae",
    "text_encoder",
    "tokenizer",
    "image_encoder",
    "feature_extractor",
    "clip_camera_projection",
    "scheduler",
)
CONFIG_SUFFIXES = (".json", ".txt", ".model")  # configs, tokenizer vocab / merges / sentencepiece
WEIGHT_SUFFIXES = (".safetensors", ".bin")
_REPO_PART = re.compile(rf"[A-Za-z0-9_](?:[A-Za-z0-9_.-]{{0,{MAX_REPO_PART - 2}}}[A-Za-z0-9_])?")


def check_repo_id(value: object) -> str:
    """``value`` if it is a hub repo id ``owner/name`` (each part letters, digits, ``-``, ``_``,
    ``.``, starting and ending with a letter, digit or ``_``, at most 96 characters, no ``--`` or
    ``..``), else one :class:`InputError`. Paths (absolute, ``~``, ``..``, drive letters,
    backslashes, more parts) are refused whether or not they exist; the value is not echoed."""
    text = value if isinstance(value, str) else ""
    parts = text.split("/")
    if (
        len(parts) == 2
        and all(_REPO_PART.fullmatch(p) for p in parts)
        and "--" not in text
        and ".." not in text
        and not text.endswith(".git")
    ):
        return text
    if text.startswith(("/", "~", ".", "\\")) or "\\" in text or ":" in text or text.count("/") > 1:
        raise InputError(
            "hub_id takes a hub repo id 'owner/name', not a path: put a model that is on this machine "
            "into models/microdreamer and pick it in 'model'"
        )
    raise InputError(
        f"hub_id must be a hub repo id 'owner/name' (letters, digits, '-', '_' and '.', at most {MAX_REPO_PART} "
        "characters each, no '--' or '..'), e.g. ashawkey/imagedream-ipmv-diffusers"
    )


def is_repo_id(value: object) -> bool:
    try:
        check_repo_id(value)
    except InputError:
        return False
    return True


def _offline_error(repo_id: str, download_dir, what: str, exc: BaseException) -> InputError:
    where = f"{download_dir}/{repo_id.replace('/', '--')}" if download_dir else "a local folder"
    return InputError(
        f"could not download {what} '{repo_id}' ({type(exc).__name__}); if this machine is offline, download "
        f"https://huggingface.co/{repo_id} elsewhere and put the files in {where}, then select that folder"
    )


def download(
    repo_id: str,
    download_dir: str | os.PathLike | None,
    allow_patterns: list[str] | None = None,
    what: str = "the model",
) -> Path:
    """Download a hub repo (or the parts matching ``allow_patterns``) and return its folder."""
    from huggingface_hub import snapshot_download

    target = Path(download_dir) / repo_id.replace("/", "--") if download_dir else None
    try:
        return Path(snapshot_download(repo_id, local_dir=target, allow_patterns=allow_patterns))
    except Exception as exc:  # noqa: BLE001 - offline, unknown repo, auth...
        raise _offline_error(repo_id, download_dir, what, exc) from exc


def _top_folder(name: str) -> str | None:
    parts = name.split("/")
    return parts[0] if len(parts) == 2 and parts[0] in MODEL_FOLDERS else None


def _config_files(names: list[str]) -> list[str]:
    """``model_index.json`` and the configs / tokenizer files of the known sub-folders."""
    return sorted(n for n in names if n == "model_index.json" or (_top_folder(n) and n.endswith(CONFIG_SUFFIXES)))


def _weight_files(names: list[str], folders: tuple[str, ...]) -> list[str]:
    """The weights each of ``folders`` loads: safetensors when there are any, else .bin; plain
    names (``diffusion_pytorch_model.safetensors`` or its shards) over variants (``.fp16.``)."""
    chosen: list[str] = []
    for folder in folders:
        inside = [n for n in names if _top_folder(n) == folder]
        for suffix in WEIGHT_SUFFIXES:
            files = [n for n in inside if n.endswith(suffix)]
            plain = [n for n in files if "." not in n.split("/")[1][: -len(suffix)]]
            if files:
                chosen += sorted(plain or files)
                break
    return chosen


def download_model(
    repo_id: str, download_dir: str | os.PathLike | None, max_bytes: int = MAX_HUB_DOWNLOAD_BYTES
) -> Path:
    """Download a diffusers MVDream / ImageDream / Stable Zero123 repo, only what it loads.

    1. the repo's file list (``HfApi().model_info``): a repo without ``unet/config.json`` is refused;
    2. only the configs (``model_index.json``, ``<component>/*.json``, tokenizer files);
    3. the UNet config must be of a known kind (:func:`~.folders.detect_folder_kind`), else refused and
       removed, before any weight is fetched;
    4. the weights of that kind's components only (safetensors over .bin), refused when the
       listed sizes add up to more than ``max_bytes`` (:data:`MAX_HUB_DOWNLOAD_BYTES`).
    Every download is pinned to the commit the file list came from. Returns the folder.
    """
    import shutil

    from huggingface_hub import HfApi, snapshot_download

    repo_id = check_repo_id(repo_id)
    target = Path(download_dir) / repo_id.replace("/", "--") if download_dir else None
    existed = target is not None and target.exists()
    try:
        info = HfApi().model_info(repo_id, files_metadata=True)
    except Exception as exc:  # noqa: BLE001 - offline, unknown or private repo...
        raise _offline_error(repo_id, download_dir, "the model", exc) from exc
    sizes = {s.rfilename: getattr(s, "size", None) for s in (info.siblings or [])}
    revision = getattr(info, "sha", None)
    if "unet/config.json" not in sizes:
        raise InputError(
            f"hub repo '{repo_id}' is not a diffusers model (no unet/config.json): MicroDreamer loads MVDream, "
            "ImageDream or Stable Zero123 in the diffusers layout, e.g. " + ", ".join(HUB_IDS.values())
        )

    def fetch(files: list[str], what: str) -> Path:
        try:
            return Path(snapshot_download(repo_id, revision=revision, local_dir=target, allow_patterns=files))
        except Exception as exc:  # noqa: BLE001
            raise _offline_error(repo_id, download_dir, what, exc) from exc

    try:
        folder = fetch(_config_files(list(sizes)), "the model's configs")
        kind = detect_folder_kind(folder)
        weights = _weight_files(list(sizes), COMPONENTS[kind])
        missing = [
            c
            for c in COMPONENTS[kind]
            if c not in ("tokenizer", "feature_extractor") and not any(w.startswith(c + "/") for w in weights)
        ]
        if missing:
            raise InputError(
                f"hub repo '{repo_id}' has no weights for {', '.join(missing)}: it is not a complete "
                f"{MODEL_CLASSES[kind].display_name} model in the diffusers layout"
            )
        total = sum(sizes[w] or 0 for w in weights)
        if total > max_bytes:
            raise InputError(
                f"hub repo '{repo_id}' would download {total / 1e9:.1f} GB of weights, more than the "
                f"{max_bytes / 1e9:.0f} GB allowed: that is not one of the supported models"
            )
        return fetch(weights, "the model's weights")
    except BaseException:
        if target is not None and not existed:  # leave nothing half-downloaded behind
            shutil.rmtree(target, ignore_errors=True)
        raise


def load_from_hub(
    repo_id: str,
    device: torch.device | str = "cpu",
    dtype: torch.dtype | None = None,
    download_dir: str | os.PathLike | None = None,
) -> MultiViewModel:
    """Load the diffusers model of hub repo ``owner/name``: from ``download_dir/owner--name`` when
    it is there, else downloaded there by :func:`download_model`. Never reads any other local path."""
    repo_id = check_repo_id(repo_id)
    local = Path(download_dir) / repo_id.replace("/", "--") if download_dir else None
    folder = (
        local
        if local is not None and (local / "unet" / "config.json").is_file()
        else download_model(repo_id, download_dir)
    )
    return load_diffusers_folder(folder, device, dtype)
