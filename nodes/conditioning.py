"""What to generate: the MicroDreamer Condition node (prompt and/or input image with its mask)."""

from __future__ import annotations

from comfy_api.latest import io

from microdreamer_core.pipeline.condition import DEFAULT_NEGATIVE, make_condition

from . import _compat
from .types import MDCondition


class MicroDreamerCondition(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return _compat.schema(
            node_id="MicroDreamerCondition",
            display_name="MicroDreamer Condition",
            search_aliases=["image to 3d", "text to 3d", "3d prompt"],
            category="MicroDreamer/generate",
            description=(
                "What to generate: a prompt (text-to-3D with MVDream; optional for ImageDream) and/or an input image "
                "with its object mask (image-to-3D with ImageDream or Stable Zero123). The object is cropped, "
                "re-centred and scaled to fill 80% of a 256x256 canvas on white, as the models were trained. The mask "
                "must separate the object from the background; background removal is not part of this pack (use any "
                "background-removal node, or load an RGBA PNG with LoadImage and connect its MASK with invert_mask on)."
            ),
            inputs=[
                io.String.Input(
                    "prompt",
                    multiline=True,
                    default="",
                    tooltip=(
                        "Text prompt. Needed for MVDream; optional for "
                        "ImageDream (empty works); ignored by Stable Zero123."
                    ),
                ),
                io.String.Input(
                    "negative_prompt",
                    multiline=True,
                    default=DEFAULT_NEGATIVE,
                    tooltip=(
                        "Negative prompt of the unconditional branch; "
                        "'default' = the paper's 'ugly, bad anatomy, ...' list."
                    ),
                    **_compat.advanced(io.String),
                ),
                io.Image.Input("image", optional=True, tooltip="Input photo (first of the batch) for image-to-3D."),
                io.Mask.Input(
                    "mask", optional=True, tooltip="Object mask of the image, 1 = object. Required with an image."
                ),
                io.Boolean.Input(
                    "invert_mask",
                    default=False,
                    tooltip="Use 1 - mask: turn on for LoadImage's MASK output (1 = transparent).",
                ),
                io.Float.Input(
                    "elevation",
                    default=0.0,
                    min=-89.0,
                    max=89.0,
                    step=1.0,
                    tooltip=(
                        "Elevation of the input photo's camera in degrees (negative = from above): "
                        "SIR draws its cameras around it, and Stable Zero123 is conditioned on it."
                    ),
                ),
            ],
            outputs=[MDCondition.Output("condition", display_name="condition")],
        )

    @classmethod
    def execute(
        cls, prompt: str, negative_prompt: str, invert_mask: bool, elevation: float, image=None, mask=None
    ) -> io.NodeOutput:
        return io.NodeOutput(
            make_condition(None, prompt, negative_prompt, image, mask, bool(invert_mask), float(elevation))
        )
