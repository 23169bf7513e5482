"""Shared pytest configuration and fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

DUCK = Path(__file__).resolve().parents[2] / "shared" / "assets" / "Duck.glb"


def pytest_configure(config: pytest.Config) -> None:
    # Also declared in pyproject.toml; repeated here so the markers exist under any ini file.
    config.addinivalue_line("markers", "slow: end-to-end tests; run with -m 'slow or not slow'")
    config.addinivalue_line("markers", "comfyui: starts a real ComfyUI server (downloads ComfyUI 0.3.75 once)")


# ==== Tiny random-weight multi-view models (shared by the pipeline and SDS tests) ====
@pytest.fixture(scope="module")
def models():
    """One tiny random-weight model per kind (inputs for them: tests/tiny_models.py)."""
    from tiny_models import KINDS

    from microdreamer_core.diffusion.random_models import build_random_model

    return {k: build_random_model(k, "tiny", seed=0) for k in KINDS}


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


# ==== The real Duck and its reconstruction, shared by the slow acceptance tests ====
@pytest.fixture(scope="session")
def duck_mesh():
    """Duck.glb normalised to radius DUCK_RADIUS (skips when ../shared is absent)."""
    if not DUCK.is_file():
        pytest.skip(f"real test data not found at {DUCK}: put the shared/ folder beside the repo")
    from microdreamer_core.eval.protocol import DUCK_RADIUS
    from microdreamer_core.io.mesh_files import load_mesh
    from microdreamer_core.scene.mesh import normalize_to_unit_sphere

    return normalize_to_unit_sphere(load_mesh(DUCK), DUCK_RADIUS)


@pytest.fixture(scope="session")
def duck_evaluation(duck_mesh):
    """The Duck reconstructed from one draw of the Zero123 preset's 6 views at 128x128 (500 steps),
    scored on the 8 novel views; computed once per session."""
    import os

    from microdreamer_core.eval.protocol import (
        evaluate_reconstruction,
        novel_eval_cameras,
        zero123_train_cameras,
    )
    from microdreamer_core.fit.fitter import FitRuntime
    from microdreamer_core.fit.reconstruct import ReconstructConfig

    steps = int(os.environ.get("MICRODREAMER_DUCK_STEPS", "500"))
    return evaluate_reconstruction(
        duck_mesh,
        zero123_train_cameras(128, seed=0),
        novel_eval_cameras(128),
        ReconstructConfig(steps=steps, runtime=FitRuntime(seed=0)),
    )
