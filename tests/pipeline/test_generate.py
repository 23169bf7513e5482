"""generate() end to end with tiny random models: every preset, seeds, cancel, and the errors that name the fix."""

from __future__ import annotations

import pytest
import torch
from tiny_models import KINDS, condition_for  # tests/ is on sys.path

from microdreamer_core.errors import Cancelled, InputError
from microdreamer_core.io.export import glb_bytes
from microdreamer_core.pipeline.generate import generate
from microdreamer_core.pipeline.presets import tiny_preset


@pytest.mark.parametrize("kind", KINDS)
def test_generate_writes_a_textured_mesh_for_every_preset(kind, models, tmp_path):
    from gltf_validator import assert_valid

    events = []
    result = generate(
        models[kind], condition_for(kind), tiny_preset(kind), progress=lambda s, d, n: events.append((s, d, n))
    )
    mesh = result.mesh
    assert mesh is not None and mesh.has_texture and mesh.num_faces > 100
    assert result.gaussians.num > 0 and torch.isfinite(result.gaussians.means).all()
    assert set(result.timings) >= {"sir", "mesh", "texture", "total"} and result.timings["total"] > 0
    assert result.nfe["sir"] == tiny_preset(kind).sir.planned_nfes() and result.nfe["texture"] > 0
    assert result.nfe["total"] == result.nfe["sir"] + result.nfe["texture"]
    for stage in ("sir", "mesh", "texture"):  # each stage's progress reaches its total
        last = [e for e in events if e[0] == stage][-1]
        assert last[1] == last[2]
    path = tmp_path / f"{kind}.glb"
    path.write_bytes(glb_bytes(mesh))
    assert_valid(path)


def test_same_seed_same_glb_and_other_seed_differs(models):
    kind = "imagedream"
    runs = [generate(models[kind], condition_for(kind), tiny_preset(kind).with_overrides(seed=s)) for s in (5, 5, 6)]
    a, b, c = (glb_bytes(r.mesh) for r in runs)
    assert a == b
    assert a != c


def test_cancel_stops_between_steps(models):
    calls = {"n": 0}

    def cancel():
        calls["n"] += 1
        return calls["n"] > 12

    with pytest.raises(Cancelled):
        generate(models["mvdream"], condition_for("mvdream"), tiny_preset("mvdream"), cancel=cancel)
    assert calls["n"] == 13


def test_a_preset_for_another_kind_of_model_is_refused(models):
    with pytest.raises(InputError, match="preset 'zero123' is for zero123 models"):
        generate(models["mvdream"], condition_for("mvdream"), "zero123")
