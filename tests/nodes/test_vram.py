"""The multi-view model inside ComfyUI 0.3.75's own model management (nodes/_vram.py), in process.

A subprocess imports the real ``comfy.model_management`` / ``comfy.model_patcher`` (``--cpu``,
the only device here) and the pack, wraps a tiny random ImageDream as the loader does and checks
ComfyUI's bookkeeping: registered by :func:`on_device`, dropped by ``unload_all_models`` (what
"Unload models" and ``POST /free`` call), loaded again, and freed with the link's object (no
reference cycle keeps it). The ``--novram`` case needs a GPU; the last check runs ComfyUI's real
``load_models_gpu`` in its NO_VRAM state with the CPU declared a GPU, the one stand-in here.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.comfyui

_SCRIPT = textwrap.dedent(
    """
    import gc, importlib.util, json, logging, sys, weakref
    logging.basicConfig(level=logging.INFO)  # ComfyUI's "Requested to load ..." lines
    sys.argv = ["main.py", "--cpu"]
    comfy_dir, repo = sys.stdin.read().split("\\n")[:2]
    sys.path.insert(0, comfy_dir)
    import comfy.options
    comfy.options.enable_args_parsing()
    import torch
    import comfy.model_management as mm

    spec = importlib.util.spec_from_file_location("md_pack", repo + "/__init__.py",
                                                  submodule_search_locations=[repo])
    pack = importlib.util.module_from_spec(spec)
    sys.modules["md_pack"] = pack
    spec.loader.exec_module(pack)
    from md_pack.nodes import _vram
    from microdreamer_core.diffusion.random_models import build_random_model

    def registered(managed):
        return any(m is managed.patcher for m in mm.loaded_models())

    out = {"placement": [str(x) for x in _vram.placement(None)]}
    model = build_random_model("imagedream", "tiny", seed=0)
    managed = _vram.ManagedModel(model)
    patcher = managed.patcher
    out["size"] = patcher.model_size()
    out["param_bytes"] = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    out["before"] = [registered(managed), patcher.loaded_size()]
    got = _vram.on_device(managed)
    out["same_model"] = got is model
    out["loaded"] = [registered(managed), patcher.loaded_size(), len(mm.current_loaded_models)]
    _vram.on_device(managed)
    out["again"] = len(mm.current_loaded_models)
    mm.unload_all_models()
    out["unloaded"] = [registered(managed), patcher.loaded_size()]
    _vram.on_device(managed)
    out["reloaded"] = [registered(managed), patcher.loaded_size()]
    out["core_model_untouched"] = not hasattr(model, "model_loaded_weight_memory")

    # The link's object is all that holds the model: dropping it frees it and its entry, no gc needed.
    gc.disable()
    ref = weakref.ref(model)
    del model, got, managed, patcher
    out["freed"] = [ref() is None, len(mm.current_loaded_models)]
    gc.enable()

    # --novram on a GPU: load_models_gpu grants 0.1 bytes, so ComfyUI itself leaves every module
    # of ours in RAM; on_device then loads it whole.
    mm.vram_state = mm.VRAMState.NO_VRAM
    mm.is_device_cpu = lambda device: False
    managed = _vram.ManagedModel(build_random_model("imagedream", "tiny", seed=0))
    mm.load_models_gpu([managed.patcher], force_full_load=True)
    out["novram_comfy_alone"] = managed.patcher.loaded_size()
    mm.unload_all_models()
    _vram.on_device(managed)
    out["novram_on_device"] = [managed.patcher.loaded_size(), managed.patcher.model_size()]
    print("RESULT" + json.dumps(out))
    """
)


def test_on_device_registers_the_model_and_unload_all_models_releases_it():
    from comfy_server import run_with_comfyui

    out, log = run_with_comfyui(_SCRIPT)

    size = out["size"]
    assert out["placement"] == ["cpu", "torch.float32"]  # --cpu: offload device and "auto" precision
    assert size == out["param_bytes"] > 0
    assert out["before"] == [False, 0]
    assert out["same_model"] and out["loaded"] == [True, size, 1]
    assert out["again"] == 1  # loading a loaded model adds no second entry
    assert out["unloaded"] == [False, 0]
    assert out["reloaded"] == [True, size]
    assert out["core_model_untouched"]  # the patcher's bookkeeping lives on the wrapper module
    assert out["freed"] == [True, 0]
    assert log.count("Requested to load MultiViewDiffusion") == 4  # first load, reload, the two NO_VRAM loads
    assert out["novram_comfy_alone"] == 0
    assert out["novram_on_device"] == [size, size]
