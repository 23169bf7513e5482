"""The mesh stage runner: its steps, hooks and checks, and ``microdreamer mesh`` on top of it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from gltf_validator import assert_valid

from microdreamer_core.errors import Cancelled, InputError
from microdreamer_core.eval.demo_object import make_demo_mesh
from microdreamer_core.io.mesh_files import load_mesh
from microdreamer_core.io.ply import save_ply
from microdreamer_core.meshing.extract import gaussians_on_surface
from microdreamer_core.meshing.stage import MeshConfig, gaussians_to_mesh
from microdreamer_core.scene.gaussians import Gaussians

SMALL = MeshConfig(resolution=32, target_faces=500, texture_size=32, bake_resolution=64, uv_charts="fast")


@pytest.fixture(scope="module")
def surface_gaussians() -> Gaussians:
    """Gaussians laid on the demo object's surface, coloured from its texture."""
    return gaussians_on_surface(make_demo_mesh(texture_size=64), num=4000)


@pytest.fixture(scope="module")
def gaussian_ply(tmp_path_factory, surface_gaussians) -> Path:
    path = tmp_path_factory.mktemp("ply") / "model.ply"
    save_ply(surface_gaussians, path)
    return path


def test_stage_runs_its_steps_with_progress_and_timings(surface_gaussians):
    calls, timings = [], {}
    mesh = gaussians_to_mesh(
        surface_gaussians, SMALL, timings=timings, progress=lambda done, total: calls.append((done, total))
    )
    assert calls == [(1, 3), (2, 3), (3, 3)] and list(timings) == ["extract", "unwrap", "bake"]
    assert mesh.has_texture and mesh.texture.shape == (32, 32, 3) and 0 < mesh.num_faces <= 500

    calls.clear()
    plain = gaussians_to_mesh(
        surface_gaussians, SMALL, bake=False, progress=lambda done, total: calls.append((done, total))
    )
    assert calls == [(1, 1)] and not plain.has_texture and plain.vertex_colors is not None


def test_stage_refuses_bad_settings_first_and_stops_between_steps(surface_gaussians):
    bad = [
        (MeshConfig(resolution=8), "at least 16 grid samples"),
        (MeshConfig(target_faces=-1), r"0 \(no decimation\)"),
        (MeshConfig(uv_charts="turbo"), "use one of quality, fast"),
        (MeshConfig(texture_size=8), "at least 16 pixels"),
    ]
    for config, message in bad:
        with pytest.raises(InputError, match=message):
            gaussians_to_mesh(surface_gaussians, config)
    # the texture size only matters when baking
    gaussians_to_mesh(surface_gaussians, MeshConfig(resolution=32, target_faces=500, texture_size=8), bake=False)

    calls, answers = [], iter([False, True])
    with pytest.raises(Cancelled, match="between stages"):
        gaussians_to_mesh(
            surface_gaussians, SMALL, progress=lambda done, total: calls.append(done), cancel=lambda: next(answers)
        )
    assert calls == [1]


def test_cli_mesh_writes_a_valid_textured_glb_and_obj(gaussian_ply, tmp_path, capsys):
    from microdreamer_core.cli import main

    out = tmp_path / "model.glb"
    assert (
        main(
            [
                "mesh",
                str(gaussian_ply),
                "--out",
                str(out),
                "--resolution",
                "48",
                "--faces",
                "2000",
                "--texture-size",
                "128",
            ]
        )
        == 0
    )
    assert f"wrote {out}" in capsys.readouterr().out
    assert_valid(out)
    mesh = load_mesh(out)
    assert mesh.has_texture and mesh.texture.shape == (128, 128, 3) and 0 < mesh.num_faces <= 2000
    # The baked colours are the demo object's (not the grey fallback): several distinct hues.
    assert float(mesh.texture.reshape(-1, 3).std(0).mean()) > 0.1

    obj = tmp_path / "plain.obj"
    assert (
        main(["mesh", str(gaussian_ply), "--out", str(obj), "--resolution", "32", "--faces", "500", "--no-texture"])
        == 0
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.glb", "plain.obj"]
    assert load_mesh(obj).vertex_colors is not None


def test_cli_mesh_refuses_bad_arguments(gaussian_ply, tmp_path, capsys):
    from microdreamer_core.cli import main

    cases = [
        (["mesh", str(gaussian_ply), "--out", str(tmp_path / "m.stl")], "--out must end in .glb or .obj"),
        (["mesh", str(tmp_path / "none.ply"), "--out", str(tmp_path / "m.glb")], "does not exist"),
        (["mesh", str(gaussian_ply), "--out", str(tmp_path / "m.glb"), "--resolution", "4"], "at least 16"),
        (["mesh", str(gaussian_ply), "--out", str(tmp_path / "missing" / "m.glb")], "does not exist"),
    ]
    for argv, message in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert err.startswith("error: ") and message in err, err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (run by the prepared GPU check)")
def test_the_stage_runs_from_gaussians_on_cuda():
    """Gaussians on CUDA: the density grid and the bake run there and the result matches the CPU run's."""
    g = gaussians_on_surface(make_demo_mesh(64), 6000, normal_scale=0.01)
    config = MeshConfig(resolution=48, target_faces=3000, texture_size=128, bake_resolution=96)
    on_cpu = gaussians_to_mesh(g, config)
    on_gpu = gaussians_to_mesh(g.to("cuda"), config)
    assert on_gpu.vertices.device.type == "cpu"
    assert abs(on_gpu.num_faces - on_cpu.num_faces) <= 0.02 * on_cpu.num_faces
    assert float((on_gpu.texture.mean(dim=(0, 1)) - on_cpu.texture.mean(dim=(0, 1))).abs().max()) < 0.02
