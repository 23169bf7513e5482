"""ComfyUI's model management for the multi-view diffusion models (the one place that talks to it).

ComfyUI keeps its own models in a ``comfy.model_patcher.ModelPatcher``: resting on an offload
device (RAM), moved to the GPU by ``comfy.model_management.load_models_gpu`` when a node needs one
(which first unloads other models to make room), moved back when the next model needs the room,
on "Unload models" or on ``POST /free``. Ours join in: the loader wraps the core model in a
:class:`ManagedModel` (that is what an ``MD_MV_MODEL`` link carries), and each node that runs it
starts with ``model = _vram.on_device(mv_model)``.

Our networks are plain PyTorch, not ``comfy.ops`` layers that cast weights on the fly, so none of
them can run with its weights left in RAM: the model is always loaded whole. How ComfyUI's VRAM
modes treat it (read in ``comfy/model_management.py`` and ``comfy/model_patcher.py``, 0.3.75 and
current):

- normal and ``--lowvram``: ``load_models_gpu(..., force_full_load=True)``; other models are
  unloaded (wholly or partly) to make room for all of ours;
- ``--novram``: ComfyUI grants every model 0.1 bytes of VRAM, so the patcher leaves all our
  modules in RAM; :func:`on_device` then loads it whole (room was made for its full size already);
- ``--highvram`` / ``--gpu-only``: the offload device is the GPU, so the model loads there and stays;
- ``--cpu``: load and offload device are the CPU; the model is still registered, and "Unload
  models" drops it from the list (nothing moves).

After a node the model stays loaded until another model needs the room (ComfyUI may then move
part of it back to RAM; the next :func:`on_device` loads it whole again) or "Unload models".
"""

from __future__ import annotations

import inspect

import comfy.model_management
import comfy.model_patcher
import torch

from microdreamer_core.diffusion.models import MultiViewModel
from microdreamer_core.diffusion.weights import default_dtype

_WHOLE = 1e32
"""The VRAM budget ``ModelPatcher.partially_load`` reads as "everything" (what ComfyUI itself passes)."""


def _full_load_kwargs() -> dict:
    """``force_full_load=True`` where ``load_models_gpu`` has it (0.3.75 and current do); without
    it :func:`on_device`'s check loads what the patcher left in RAM."""
    params = inspect.signature(comfy.model_management.load_models_gpu).parameters
    return {"force_full_load": True} if "force_full_load" in params else {}


_FULL_LOAD = _full_load_kwargs()


class MultiViewDiffusion(torch.nn.Module):
    """What the ModelPatcher moves: the core model as its one child, plus the plain ``device``
    attribute the patcher keeps up to date (the core model's ``device`` is a read-only property).
    ComfyUI's log names it: "Requested to load MultiViewDiffusion"."""

    def __init__(self, model: MultiViewModel):
        super().__init__()
        self.diffusion = model
        self.device = model.device


class ManagedModel:
    """A multi-view diffusion model registered with ComfyUI's model management.

    ``patcher`` is the ``ModelPatcher`` (named as on core's CLIP and VAE objects, where current
    ComfyUI looks for it on node outputs); :func:`on_device` gives the core :class:`MultiViewModel`
    on ComfyUI's device.
    """

    def __init__(self, model: MultiViewModel):
        mm = comfy.model_management
        weights = MultiViewDiffusion(model)
        self.patcher = comfy.model_patcher.ModelPatcher(
            weights,
            load_device=mm.get_torch_device(),
            offload_device=mm.unet_offload_device(),
            size=mm.module_size(weights),
        )

    @property
    def model(self) -> MultiViewModel:
        """The core model, wherever it is now (use :func:`on_device` to run it)."""
        return self.patcher.model.diffusion

    def __repr__(self) -> str:
        return f"ManagedModel({self.model.display_name} from {self.model.source or '?'}, on {self.model.device})"


def placement(dtype: torch.dtype | None) -> tuple[torch.device, torch.dtype]:
    """Where the loader builds a model and in which precision: on the offload device (RAM unless
    ``--highvram``), in ``dtype``, or for "auto" the precision of the device it will run on."""
    mm = comfy.model_management
    return mm.unet_offload_device(), dtype or default_dtype(mm.get_torch_device())


def on_device(mv_model: ManagedModel | None) -> MultiViewModel | None:
    """Have ComfyUI load the model whole onto its device, unloading other models to make room,
    and return the core model (None stays None: the optional model input of SIR)."""
    if mv_model is None:
        return None
    patcher = mv_model.patcher
    comfy.model_management.load_models_gpu([patcher], **_FULL_LOAD)
    if patcher.loaded_size() < patcher.model_size():  # --novram: ComfyUI left it all in RAM
        patcher.partially_load(patcher.load_device, _WHOLE)
    return mv_model.model
