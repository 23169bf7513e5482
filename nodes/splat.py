"""Conversion between our Gaussians and ComfyUI's core SPLAT type, where the running ComfyUI has it.

ComfyUI 0.3.75 has no SPLAT; newer releases do (``io.Splat`` sockets carrying ``Types.SPLAT``),
with core nodes such as Create 3D File (from Splat), Save Splat and Render Splat. These two nodes
are registered only when both exist (``splat_available()``), so the pack loads on either.
"""

from __future__ import annotations

from comfy_api.latest import io

from microdreamer_core.scene.splat import gaussians_to_splat, splat_to_gaussians

from . import _compat
from .types import MDGaussians


def _splat_class():
    """ComfyUI's ``Types.SPLAT`` class, or None on releases without it."""
    try:
        from comfy_api.latest import Types
    except ImportError:
        return None
    return getattr(Types, "SPLAT", None)


def splat_available() -> bool:
    """True when the running ComfyUI has the core SPLAT socket and class."""
    return hasattr(io, "Splat") and _splat_class() is not None


class MicroDreamerGaussiansToSplat(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return _compat.schema(
            node_id="MicroDreamerGaussiansToSplat",
            display_name="To ComfyUI SPLAT",
            search_aliases=["gaussians to splat"],
            category="MicroDreamer/gaussians",
            description=(
                "Converts MicroDreamer Gaussians to ComfyUI's core SPLAT (a batch of one) for core "
                "splat nodes (Create 3D File (from Splat), Save Splat, Render Splat). Values are "
                "activated (linear scales, opacities in 0-1, unit wxyz rotations) and the model is "
                "turned into the 3DGS frame SPLAT uses (y down, z forward), spherical-harmonic bands "
                "included, so it looks the same in ComfyUI's splat viewer."
            ),
            inputs=[MDGaussians.Input("gaussians")],
            outputs=[io.Splat.Output(display_name="splat")],
        )

    @classmethod
    def execute(cls, gaussians) -> io.NodeOutput:
        return io.NodeOutput(_splat_class()(*gaussians_to_splat(gaussians).as_args()))


class MicroDreamerSplatToGaussians(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return _compat.schema(
            node_id="MicroDreamerSplatToGaussians",
            display_name="From ComfyUI SPLAT",
            search_aliases=["splat to gaussians"],
            category="MicroDreamer/gaussians",
            description=(
                "Converts one item of a ComfyUI core SPLAT batch (e.g. from Get Splat) to MicroDreamer "
                "Gaussians, turning it from the 3DGS frame back to MicroDreamer's y-up world, so core "
                "splats can go through Extract Mesh or SIR refinement."
            ),
            inputs=[
                io.Splat.Input("splat"),
                io.Int.Input(
                    "batch_index", default=0, min=0, max=4096, tooltip="Which item of the SPLAT batch to take."
                ),
            ],
            outputs=[MDGaussians.Output(display_name="gaussians")],
        )

    @classmethod
    def execute(cls, splat, batch_index: int = 0) -> io.NodeOutput:
        counts = getattr(splat, "counts", None)
        return io.NodeOutput(
            splat_to_gaussians(
                splat.positions,
                splat.scales,
                splat.rotations,
                splat.opacities,
                splat.sh,
                counts=counts,
                index=batch_index,
            )
        )


SPLAT_NODES = [MicroDreamerGaussiansToSplat, MicroDreamerSplatToGaussians]
