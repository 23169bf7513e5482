"""A fake Hugging Face hub for the download tests: ``huggingface_hub.HfApi`` and
``huggingface_hub.snapshot_download`` (the network boundary only) over an in-memory repo, recording
what was asked for, in which order."""

from __future__ import annotations

import fnmatch
from pathlib import Path
from types import SimpleNamespace

import huggingface_hub


class FakeHub:
    """``HfApi().model_info`` and ``snapshot_download`` over an in-memory repo."""

    def __init__(self, files: dict[str, bytes], sizes: dict[str, int] | None = None, sha: str = "0123abcd"):
        self.files, self.sha, self.calls = files, sha, []
        self.sizes = {name: len(data) for name, data in files.items()} | (sizes or {})

    def install(self, monkeypatch) -> FakeHub:
        hub = self

        class FakeApi:
            def model_info(self, repo_id, files_metadata=False, **kwargs):
                hub.calls.append(("model_info", repo_id, files_metadata))
                siblings = [
                    SimpleNamespace(rfilename=n, size=hub.sizes[n] if files_metadata else None) for n in hub.files
                ]
                return SimpleNamespace(id=repo_id, sha=hub.sha, siblings=siblings)

        def snapshot_download(repo_id, *, revision=None, local_dir=None, allow_patterns=None, **kwargs):
            patterns = list(allow_patterns) if allow_patterns is not None else None
            hub.calls.append(("snapshot_download", repo_id, revision, patterns))
            for name, data in hub.files.items():
                if patterns is None or any(fnmatch.fnmatch(name, p) for p in patterns):
                    path = Path(local_dir) / name
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(data)
            return str(local_dir)

        monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
        monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
        return self

    def downloads(self) -> list[list[str]]:
        return [c[3] for c in self.calls if c[0] == "snapshot_download"]
