"""Feature detection for what differs between the ComfyUI releases the pack runs on.

Users run 0.3.75 and the 0.4x line side by side; the pack never checks a version number. Each
helper asks the running ComfyUI whether it has a type, a socket or a schema field, and the nodes
use the answer (one schema per release, built at registration).
"""

from __future__ import annotations

import dataclasses
import inspect
from functools import cache

from comfy_api.latest import io


def core_type(name: str):
    """``comfy_api.latest.Types.<name>`` (``MESH``, ``SPLAT``, ``File3D``...), or None where absent."""
    try:
        from comfy_api.latest import Types
    except ImportError:
        return None
    return getattr(Types, name, None)


def socket(*names: str):
    """The first of ``io.<name>`` socket classes the running ComfyUI has, or None."""
    for name in names:
        found = getattr(io, name, None)
        if found is not None:
            return found
    return None


@cache
def _schema_fields() -> frozenset[str]:
    return frozenset(f.name for f in dataclasses.fields(io.Schema))


def schema(**fields) -> io.Schema:
    """``io.Schema(**fields)`` without the fields this release does not know (newer ones such as
    ``search_aliases`` and ``essentials_category`` only help the node search)."""
    known = _schema_fields()
    return io.Schema(**{k: v for k, v in fields.items() if k in known})


@cache
def _accepts_advanced(input_class: type) -> bool:
    return "advanced" in inspect.signature(input_class.__init__).parameters


def advanced(socket_type) -> dict:
    """``{"advanced": True}`` where ``socket_type.Input`` takes it (newer releases fold such inputs
    into a collapsed "advanced" section), else nothing: ``io.Int.Input(..., **advanced(io.Int))``."""
    return {"advanced": True} if _accepts_advanced(socket_type.Input) else {}
