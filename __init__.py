"""MicroDreamer for ComfyUI: the custom-node entry point (V3 API, ``comfy_entrypoint``).

ComfyUI imports this file from ``custom_nodes/<pack>/``. The pure library ``microdreamer_core``
lives beside it and is made importable without ``pip install`` by putting the pack folder on
``sys.path``. Registration goes only through ``comfy_entrypoint`` (no NODE_CLASS_MAPPINGS: the
loader would take those and ignore the entry point).

Outside ComfyUI (no ``comfy_api``) this file defines nothing: pytest imports it because the
repository root is a package, and that must not fail.
"""

from __future__ import annotations

import importlib.util
import os
import sys

if importlib.util.find_spec("comfy_api") is not None:
    _PACK_DIR = os.path.dirname(os.path.abspath(__file__))
    if _PACK_DIR not in sys.path:
        # Appended, not prepended: the pack folder also holds `nodes/` and `tests/`, which must
        # not shadow ComfyUI's own top-level `nodes` module.
        sys.path.append(_PACK_DIR)

    from comfy_api.latest import ComfyExtension, io

    from .nodes import NODES

    class MicroDreamerExtension(ComfyExtension):
        async def get_node_list(self) -> list[type[io.ComfyNode]]:
            return list(NODES)

    async def comfy_entrypoint() -> MicroDreamerExtension:
        return MicroDreamerExtension()
