"""The paper's presets (microdreamer_core.pipeline.presets): schedules, NFE totals, reference terms,
and overrides that reach every stage."""

from __future__ import annotations

import pytest

from microdreamer_core.errors import InputError
from microdreamer_core.pipeline.presets import PRESETS, get_preset, tiny_preset


def test_presets_hold_the_papers_schedules():
    assert PRESETS["zero123"].sir.t2_schedule() == [
        901,
        851,
        801,
        751,
        751,
        701,
        651,
        651,
        601,
        551,
        501,
        501,
        451,
        401,
        401,
        351,
        301,
        301,
        251,
        201,
    ]
    seq = PRESETS["imagedream"].sir.t2_schedule()
    assert seq == [801] + [701] * 7 + [601] * 8 + [501] * 7 + [401] * 7
    assert PRESETS["mvdream"].sir.t2_schedule() == seq
    assert (PRESETS["zero123"].sir.planned_nfes(), PRESETS["imagedream"].sir.planned_nfes()) == (352, 285)
    z = PRESETS["zero123"].sir
    assert (
        z.cameras.num_views,
        z.cameras.radius,
        z.steps_per_iteration,
        z.reference.rgb_weight,
        z.reference.mask_weight,
    ) == (6, 2.0, 15, 0.3, 0.01)
    assert PRESETS["imagedream"].sir.reference.rgb_weight == 0 and PRESETS["imagedream"].sir.cameras.num_views == 4
    assert (
        PRESETS["zero123"].texture.t == 181
        and PRESETS["zero123"].texture.steps == 30
        and PRESETS["zero123"].texture.views == 8
    )
    p = get_preset("zero123").with_overrides(seed=7, iterations=3)
    assert (p.sir.iterations, p.sir.runtime.seed, p.texture.seed) == (3, 7, 7) and PRESETS[
        "zero123"
    ].sir.iterations == 20
    with pytest.raises(InputError, match="unknown preset"):
        get_preset("fastest")


def test_overrides_reach_every_stage():
    """The seed and the device apply to SIR and to texture refinement alike; the rest stays."""
    p = get_preset("imagedream").with_overrides(seed=11, device="cpu", eta=0.5)
    assert (p.sir.runtime.seed, p.sir.runtime.device, p.texture.seed, p.texture.device) == (11, "cpu", 11, "cpu")
    assert p.sir.eta == 0.5 and p.sir.iterations == PRESETS["imagedream"].sir.iterations
    assert p.sir.reference == PRESETS["imagedream"].sir.reference and p.sir.runtime.background == (1.0, 1.0, 1.0)
    same = get_preset("imagedream").with_overrides()
    assert same == get_preset("imagedream")
    assert (
        PRESETS["imagedream"].sir.runtime.seed == 0 and PRESETS["imagedream"].texture.device == "auto"
    )  # originals untouched


def test_reference_radius_is_the_presets_camera_radius():
    assert PRESETS["zero123"].sir.reference.radius == PRESETS["zero123"].sir.cameras.radius == 2.0
    assert PRESETS["imagedream"].sir.reference.radius == PRESETS["imagedream"].texture.reference_radius == 2.5
    assert tiny_preset("zero123").sir.init.num == 1000 and PRESETS["zero123"].sir.init.num == 5000


def test_a_preset_for_another_model_kind_is_refused_in_one_wording():
    from microdreamer_core.pipeline.presets import check_preset_kind

    check_preset_kind(get_preset("mvdream"), "mvdream")
    with pytest.raises(
        InputError,
        match=r"^preset 'zero123' is for zero123 models, but the model is MVDream \(mvdream\): "
        r"use the 'mvdream' preset or load a zero123 model$",
    ):
        check_preset_kind(get_preset("zero123"), "mvdream")
    with pytest.raises(
        InputError, match=r"^preset 'imagedream' is for imagedream models, .*: choose 'auto' or 'zero123'$"
    ):
        check_preset_kind(get_preset("imagedream"), "zero123", fix="choose 'auto' or 'zero123'")
