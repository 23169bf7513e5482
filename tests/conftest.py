"""Shared pytest configuration and fixtures."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    # Also declared in pyproject.toml; repeated here so the markers exist under any ini file.
    config.addinivalue_line("markers", "slow: end-to-end tests; run with -m 'slow or not slow'")
    config.addinivalue_line("markers", "comfyui: starts a real ComfyUI server (downloads ComfyUI 0.3.75 once)")


# ==== ComfyUI server (owned by the ComfyUI-integration tests; harness in tests/comfy_server.py) ====
@pytest.fixture(scope="session")
def comfyui_server(tmp_path_factory):
    """A running ComfyUI 0.3.75 (CPU) with this repository linked as custom_nodes/microdreamer."""
    from comfy_server import ComfyServer, provision_comfyui

    try:
        comfy_dir = provision_comfyui()
    except Exception as e:  # no network and no cache: say how to provide one
        pytest.fail(f"could not provision ComfyUI (set MICRODREAMER_TEST_CACHE to a cache holding it): {e}")
    server = ComfyServer(comfy_dir, tmp_path_factory.mktemp("comfyui-base"))
    try:
        server.start()
    except RuntimeError as e:
        pytest.fail(str(e))
    yield server
    server.stop()
# ==== end ComfyUI server ====
