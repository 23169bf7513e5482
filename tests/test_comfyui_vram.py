"""The multi-view model in ComfyUI's model management, on a real ComfyUI 0.3.75 server (CPU).

ComfyUI runs with ``--verbose DEBUG`` so its model management says what it does in the log:
"Requested to load MultiViewDiffusion" when a node asks for a model that is not loaded,
"loaded completely; ... N MB loaded" with the size it registered, and "Unloading
MultiViewDiffusion" when ``POST /free`` unloads it. The runs: a Loader -> Multi-View Sampler ->
SaveImage workflow; the same with another seed (the model stays loaded); ``/free``; the first
workflow again, which loads the model again and must give the same PNG files, byte for byte.
"""

from __future__ import annotations

import json
import time

import pytest
from comfy_server import ComfyServer, provision_comfyui

pytestmark = [pytest.mark.comfyui, pytest.mark.slow, pytest.mark.timeout(400)]

MODEL = "vram_tiny_mvdream"  # folder under models/microdreamer
LOADED = "Requested to load MultiViewDiffusion"
UNLOADED = "Unloading MultiViewDiffusion"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from microdreamer_core.diffusion.folders import save_diffusers_folder
    from microdreamer_core.diffusion.random_models import build_random_model

    base = tmp_path_factory.mktemp("comfyui-vram")
    server = ComfyServer(provision_comfyui(), base, extra_args=("--verbose", "DEBUG"))
    model = build_random_model("mvdream", "tiny", seed=3)
    save_diffusers_folder(model, server.base / "models" / "microdreamer" / MODEL)
    server.model_bytes = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    try:
        server.start()
    except RuntimeError as e:
        pytest.fail(str(e))
    yield server
    server.stop()


def sampler_prompt(seed: int, prefix: str) -> dict:
    return {
        "1": {"class_type": "MicroDreamerMultiViewModelLoader", "inputs": {"model": MODEL, "dtype": "fp32"}},
        "2": {
            "class_type": "MicroDreamerMultiViewSampler",
            "inputs": {
                "mv_model": ["1", 0],
                "prompt": "a yellow duck",
                "negative_prompt": "default",
                "guidance_scale": 0.0,
                "eta": -1.0,
                "seed": seed,
                "steps": 3,
                "image_size": 64,
            },
        },
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": prefix}},
    }


def run(server: ComfyServer, prompt: dict) -> tuple[list[bytes], str]:
    """Queue ``prompt``, wait for it and return its PNG files and what it added to the log."""
    start = len(server.log())
    entry = server.wait_history(server.queue(prompt), timeout=240)
    assert entry["status"]["status_str"] == "success", json.dumps(entry["status"], indent=1) + server.log_tail()
    files = [server.base / "output" / i["subfolder"] / i["filename"] for i in entry["outputs"]["3"]["images"]]
    return [f.read_bytes() for f in files], server.log()[start:]


def wait_for_log(server: ComfyServer, text: str, start: int, timeout: float = 30.0) -> None:
    deadline = time.perf_counter() + timeout
    while text not in server.log()[start:]:
        assert time.perf_counter() < deadline, f"no {text!r} in the log within {timeout:.0f} s\n{server.log_tail()}"
        time.sleep(0.25)


def test_free_unloads_the_model_and_the_next_run_reloads_it_with_the_same_images(server: ComfyServer):
    first, log = run(server, sampler_prompt(5, "vram"))
    assert len(first) == 4 and log.count(LOADED) == 1, log[-3000:]
    assert f"{server.model_bytes / 2**20:.2f} MB loaded" in log, log[-3000:]  # the whole model, as ComfyUI counts it

    other, log = run(server, sampler_prompt(6, "vram"))  # the sampler runs again, the loader is cached
    assert other != first and LOADED not in log, log[-3000:]  # still loaded: nothing to do

    start = len(server.log())
    status, _ = server.request("POST", "/free", {"unload_models": True})
    assert status == 200
    wait_for_log(server, UNLOADED, start)

    again, log = run(server, sampler_prompt(5, "vram"))
    assert log.count(LOADED) == 1, log[-3000:]  # the same (cached) loader output, loaded again
    assert again == first  # PNG files, metadata included, identical
