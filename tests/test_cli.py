"""The command line: real runs on small data, and one clear line for every kind of bad input."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from microdreamer_core.cli import main
from microdreamer_core.io.ply import load_ply, save_ply
from microdreamer_core.io.transforms import load_transforms, save_transforms
from microdreamer_core.render.gaussians import render_gaussians
from microdreamer_core.scene.cameras import orbit_cameras
from microdreamer_core.scene.gaussians import init_ball
from microdreamer_core.scene.views import PosedViews


@pytest.fixture
def views_dir(tmp_path):
    """Six 32px views of a small red ball of Gaussians."""
    g = init_ball(300, radius=0.3, generator=torch.Generator().manual_seed(0))
    g.opacities[:] = 3.0
    g.sh0[:] = torch.tensor([1.5, -1.0, -1.0])
    cams = orbit_cameras([-20.0, 10.0] * 3, [0, 60, 120, 180, 240, 300], 2.0, 32)
    with torch.no_grad():
        out = render_gaussians(g, cams, (0.0, 0.0, 0.0))
    rgb = out.rgb / out.alpha.clamp(min=1e-4)
    save_transforms(PosedViews(torch.cat([rgb.clamp(0, 1), out.alpha], -1), cams), tmp_path / "views")
    return tmp_path / "views"


def _error_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def test_reconstruct_and_render_roundtrip(views_dir, tmp_path, capsys):
    out = tmp_path / "model.ply"
    assert main(["reconstruct", str(views_dir), "--out", str(out), "--steps", "40", "--seed", "1"]) == 0
    assert "wrote" in capsys.readouterr().out
    g = load_ply(out)
    assert g.num > 0
    assert (
        main(["render", str(out), "--cameras", str(views_dir / "transforms.json"), "--out", str(tmp_path / "r")]) == 0
    )
    rendered = load_transforms(tmp_path / "r")
    original = load_transforms(views_dir)
    assert rendered.images.shape == original.images.shape
    # 40 steps already put the silhouette in the right place
    inter = ((rendered.masks > 0.5) & (original.masks > 0.5)).sum()
    union = ((rendered.masks > 0.5) | (original.masks > 0.5)).sum()
    assert inter / union > 0.5
    with Image.open(tmp_path / "r" / "images" / "r_0.png") as im:
        assert im.mode == "RGBA"


def test_render_with_resolution_override(views_dir, tmp_path):
    g = init_ball(50, generator=torch.Generator().manual_seed(0))
    save_ply(g, tmp_path / "g.ply")
    assert (
        main(
            [
                "render",
                str(tmp_path / "g.ply"),
                "--cameras",
                str(views_dir),
                "--out",
                str(tmp_path / "r"),
                "--resolution",
                "24",
            ]
        )
        == 0
    )
    assert load_transforms(tmp_path / "r").images.shape == (6, 24, 24, 4)


def test_bad_inputs_give_one_line_and_no_output(views_dir, tmp_path, capsys):
    out = tmp_path / "model.ply"
    assert main(["reconstruct", str(tmp_path / "nowhere"), "--out", str(out)]) == 2
    assert "no transforms.json" in _error_line(capsys)

    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "transforms.json").write_text("{oops")
    assert main(["reconstruct", str(tmp_path / "bad"), "--out", str(out)]) == 2
    assert "not valid JSON" in _error_line(capsys)

    assert main(["reconstruct", str(views_dir), "--out", str(tmp_path / "model.glb")]) == 2
    assert ".ply" in _error_line(capsys)

    (tmp_path / "model.xyz").write_text("1 2 3")
    assert main(["render", str(tmp_path / "model.xyz"), "--cameras", str(views_dir), "--out", str(tmp_path / "r")]) == 2
    assert "unknown model type" in _error_line(capsys)

    g = init_ball(10, generator=torch.Generator().manual_seed(0))
    save_ply(g, tmp_path / "nan.ply")
    from plyfile import PlyData

    ply = PlyData.read(str(tmp_path / "nan.ply"), mmap=False)
    ply["vertex"]["x"][0] = np.nan
    ply.write(str(tmp_path / "nan.ply"))
    assert main(["render", str(tmp_path / "nan.ply"), "--cameras", str(views_dir), "--out", str(tmp_path / "r")]) == 2
    assert "NaN" in _error_line(capsys)
    assert not (tmp_path / "r").exists()

    mixed = tmp_path / "mixed"
    mixed.mkdir()
    Image.fromarray(np.zeros((8, 8, 4), np.uint8)).save(mixed / "a.png")
    Image.fromarray(np.zeros((9, 9, 4), np.uint8)).save(mixed / "b.png")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(mixed / "c.png")
    frames = [{"file_path": n, "transform_matrix": np.eye(4).tolist()} for n in ("a.png", "b.png")]
    (mixed / "transforms.json").write_text(json.dumps({"camera_angle_x": 0.8, "frames": frames}))
    assert main(["reconstruct", str(mixed), "--out", str(out)]) == 2
    assert "mixed sizes" in _error_line(capsys)
    (mixed / "transforms.json").write_text(
        json.dumps({"camera_angle_x": 0.8, "frames": [{"file_path": "c.png", "transform_matrix": np.eye(4).tolist()}]})
    )
    assert main(["reconstruct", str(mixed), "--out", str(out)]) == 2
    assert "no alpha" in _error_line(capsys)
    assert not out.exists() and not list(tmp_path.glob(".model.ply.*"))


def test_interrupt_leaves_no_partial_file(views_dir, tmp_path, monkeypatch, capsys):
    import microdreamer_core.fit.reconstruct as rec

    calls = {"n": 0}
    real_step = rec.GaussianFitter.step

    def step(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real_step(self, *a, **k)

    monkeypatch.setattr(rec.GaussianFitter, "step", step)
    out = tmp_path / "model.ply"
    assert main(["reconstruct", str(views_dir), "--out", str(out), "--steps", "10"]) == 130
    assert "interrupted" in capsys.readouterr().err
    assert not out.exists() and not list(tmp_path.glob(".model.ply.*"))


def test_console_entry_point_help():
    r = subprocess.run(
        [sys.executable, "-m", "microdreamer_core.cli", "--help"], capture_output=True, text=True, check=False
    )
    assert r.returncode == 0
    for cmd in ("reconstruct", "render", "demo"):
        assert cmd in r.stdout


def test_render_a_glb_mesh(views_dir, tmp_path):
    import trimesh

    box = trimesh.creation.box(extents=(0.6, 0.6, 0.6))
    box.visual.vertex_colors = np.tile(np.array([[30, 200, 40, 255]], np.uint8), (len(box.vertices), 1))
    box.export(tmp_path / "box.glb")
    assert main(["render", str(tmp_path / "box.glb"), "--cameras", str(views_dir), "--out", str(tmp_path / "r")]) == 0
    v = load_transforms(tmp_path / "r")
    covered = v.masks > 0.5
    assert 0.05 < covered.float().mean() < 0.6  # a box in the middle of each view
    green = v.images[..., :3][covered].mean(0)
    assert green[1] > 0.6 and green[0] < 0.3 and green[2] < 0.3, green


def test_mesh_passes_uv_charts_to_the_mesh_stage(tmp_path, monkeypatch, capsys):
    from microdreamer_core.cli import UV_CHART_NAMES
    from microdreamer_core.meshing import stage
    from microdreamer_core.meshing.uv import UV_CHARTS

    assert UV_CHART_NAMES == tuple(UV_CHARTS)
    g = init_ball(300, radius=0.3, generator=torch.Generator().manual_seed(0))
    g.opacities[:] = 3.0
    save_ply(g, tmp_path / "g.ply")
    seen, real = [], stage.gaussians_to_mesh

    def spy(gaussians, config, **kwargs):
        seen.append(config.uv_charts)
        return real(gaussians, config, **kwargs)

    monkeypatch.setattr(stage, "gaussians_to_mesh", spy)
    small = ["--resolution", "16", "--no-texture"]
    assert main(["mesh", str(tmp_path / "g.ply"), "--out", str(tmp_path / "a.glb"), *small]) == 0
    assert (
        main(["mesh", str(tmp_path / "g.ply"), "--out", str(tmp_path / "b.glb"), "--uv-charts", "quality", *small]) == 0
    )
    assert seen == ["fast", "quality"]
    capsys.readouterr()
    assert main(["mesh", str(tmp_path / "g.ply"), "--out", str(tmp_path / "c.glb"), "--uv-charts", "best"]) == 2
    assert "invalid choice: 'best'" in _error_line(capsys) and not (tmp_path / "c.glb").exists()


def test_turntables_of_reconstruct_and_mesh(views_dir, tmp_path, capsys):
    import av

    ply, spin = tmp_path / "m.ply", tmp_path / "spin.webp"
    small = ["--turntable-frames", "4", "--turntable-resolution", "24"]
    args = ["reconstruct", str(views_dir), "--out", str(ply), "--steps", "20", "--turntable", str(spin)]
    assert main([*args, *small]) == 0
    assert f"wrote {spin} (turntable: 4 frames of 24x24 px, 1.33 fps)" in capsys.readouterr().out
    with Image.open(spin) as im:
        assert im.n_frames == 4 and im.size == (24, 24)
        red = np.asarray(im.convert("RGB"), np.float32)[12, 12] / 255  # the views' red ball, in the middle
    assert red[0] > 0.5 > red[2], red

    g = init_ball(300, radius=0.3, generator=torch.Generator().manual_seed(0))
    g.opacities[:] = 3.0
    save_ply(g, tmp_path / "g.ply")
    mp4 = tmp_path / "spin.mp4"
    mesh_args = ["mesh", str(tmp_path / "g.ply"), "--out", str(tmp_path / "m.glb"), "--resolution", "16"]
    assert main([*mesh_args, "--no-texture", "--turntable", str(mp4), *small[:2], "--turntable-resolution", "20"]) == 0
    with av.open(str(mp4)) as container:
        frames = list(container.decode(container.streams.video[0]))
    assert len(frames) == 4 and (frames[0].width, frames[0].height) == (20, 20)


def test_turntable_bad_options_fail_fast_and_an_interrupt_leaves_no_file(views_dir, tmp_path, monkeypatch, capsys):
    from microdreamer_core.render import turntable

    ply, out = tmp_path / "m.ply", ["reconstruct", str(views_dir), "--out", str(tmp_path / "m.ply")]
    assert main([*out, "--turntable", str(tmp_path / "spin.avi")]) == 2
    assert "--turntable 'spin.avi' is no animation file type" in _error_line(capsys)
    assert main([*out, "--turntable", str(tmp_path / "no" / "spin.gif")]) == 2
    assert "does not exist" in _error_line(capsys)
    big = ["--turntable-frames", "360", "--turntable-resolution", "1024"]
    assert main([*out, "--turntable", str(tmp_path / "spin.gif"), *big]) == 2
    assert "megapixels" in _error_line(capsys)

    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(turntable, "_render_frame", interrupted)
    assert main([*out, "--steps", "5", "--turntable", str(tmp_path / "spin.gif")]) == 130
    assert [p.name for p in tmp_path.iterdir()] == ["views"]  # neither the PLY nor the turntable, no temporary file
    assert not ply.exists()


# ==== microdreamer generate: the whole pipeline with tiny random models saved as diffusers folders ====
GEN_KINDS = ("zero123", "imagedream", "mvdream")
PROMPTS = {"zero123": None, "imagedream": "", "mvdream": "a yellow rubber duck"}  # ImageDream with an EMPTY prompt


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    """``tiny_model_dir(kind)``: a tiny random model of ``kind`` saved as a diffusers folder, built
    once per module (on first use, so a run that needs one kind builds only that one)."""
    from microdreamer_core.diffusion.folders import save_diffusers_folder
    from microdreamer_core.diffusion.random_models import build_random_model

    built = {}

    def get(kind: str):
        if kind not in built:
            folder = tmp_path_factory.mktemp(f"tiny_{kind}")
            save_diffusers_folder(build_random_model(kind, "tiny", seed=0), folder)
            built[kind] = folder
        return built[kind]

    return get


@pytest.fixture
def blob_png(tmp_path):
    """A 64x64 RGBA PNG: an opaque orange box, off-centre, on a transparent background."""
    arr = np.zeros((64, 64, 4), np.uint8)
    arr[10:40, 20:50] = (230, 128, 25, 255)
    path = tmp_path / "inputs" / "blob.png"
    path.parent.mkdir()
    Image.fromarray(arr).save(path)
    return path


def _gen_args(kind, model_dir, out, image=None, *extra):
    args = ["generate", "--model", str(model_dir), "--out", str(out), "--tiny", "--device", "cpu"]
    if PROMPTS[kind] is not None:
        args += ["--prompt", PROMPTS[kind]]
    if image is not None and kind != "mvdream":
        args += ["--image", str(image)]
    return args + [str(e) for e in extra]


@pytest.mark.parametrize(
    "kind",
    [pytest.param("zero123", marks=pytest.mark.slow), "imagedream", pytest.param("mvdream", marks=pytest.mark.slow)],
)
def test_generate_writes_a_valid_glb_ply_and_views(kind, tiny_model_dir, blob_png, tmp_path, capsys):
    from gltf_validator import assert_valid

    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out, ply, views = out_dir / "model.glb", out_dir / "gaussians.ply", out_dir / "views"
    spin = out_dir / "spin.gif"
    extra = ["--save-ply", ply, "--save-views", views, "--seed", 3, "--turntable", spin, "--turntable-frames", 3]
    assert main(_gen_args(kind, tiny_model_dir(kind), out, blob_png, *extra, "--turntable-resolution", 24)) == 0
    cap = capsys.readouterr()
    start = [line for line in cap.err.splitlines() if line.startswith("generating with")]
    assert (
        len(start) == 1
        and f"({kind})" in start[0]
        and "(tiny)" in start[0]
        and "seed 3" in start[0]
        and "on cpu" in start[0]
    ), cap.err
    assert_valid(out)
    g = load_ply(ply)
    assert g.num > 0 and torch.isfinite(g.means).all()
    assert (
        f"Gaussians: {g.num}" in cap.out
        and "NFEs: " in cap.out
        and "triangles" in cap.out
        and f"wrote {out}" in cap.out
    )
    n_views = 6 if kind == "zero123" else 4
    assert sorted(p.name for p in views.iterdir()) == sorted(
        [f"init_{i:02d}.png" for i in range(n_views)] + [f"target_{i:02d}.png" for i in range(n_views)]
    )
    with Image.open(views / "init_00.png") as im:
        assert im.mode == "RGB" and im.size == (64, 64)  # the tiny preset's render resolution
    with Image.open(spin) as im:
        assert im.size == (24, 24) and 1 <= im.n_frames <= 3  # GIF merges equal frames (a symmetric blob)
    assert f"wrote {spin} (turntable: 3 frames of 24x24 px" in cap.out
    assert sorted(p.name for p in out_dir.iterdir()) == ["gaussians.ply", "model.glb", "spin.gif", "views"]


@pytest.mark.slow
def test_generate_same_seed_gives_byte_identical_files(tiny_model_dir, blob_png, tmp_path):
    outs = []
    for run in ("a", "b"):
        out = tmp_path / f"{run}.glb"
        assert (
            main(
                _gen_args(
                    "imagedream",
                    tiny_model_dir("imagedream"),
                    out,
                    blob_png,
                    "--seed",
                    5,
                    "--save-ply",
                    tmp_path / f"{run}.ply",
                )
            )
            == 0
        )
        outs.append(out)
    assert outs[0].read_bytes() == outs[1].read_bytes()
    assert (tmp_path / "a.ply").read_bytes() == (tmp_path / "b.ply").read_bytes()


def test_generate_bad_inputs_fail_fast_with_one_line(tiny_model_dir, blob_png, tmp_path, capsys, monkeypatch):
    from microdreamer_core.diffusion import loading as mv_loading

    zero123, mvdream, imagedream = (tiny_model_dir(k) for k in ("zero123", "mvdream", "imagedream"))
    capsys.readouterr()  # what building the models printed
    rgb = tmp_path / "inputs" / "rgb.png"
    Image.open(blob_png).convert("RGB").save(rgb)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "model.glb"

    def run(args):
        code = main(["generate", *map(str, args)])
        line = _error_line(capsys)
        assert code == 2 and not list(out_dir.iterdir()), (code, line)
        return line

    # A nonexistent --model path: the loader's own one-line message.
    assert "not found" in run(["--model", tmp_path / "no_such_model", "--prompt", "a duck", "--out", out])

    # Everything else is refused before any model is loaded.
    loaded = []
    monkeypatch.setattr(mv_loading, "load_model", lambda *a, **k: loaded.append(a) or pytest.fail("model loaded"))
    line = run(["--model", zero123, "--prompt", "a duck", "--out", out])  # image model without --image
    assert "image-to-3D" in line and "--image PATH" in line
    line = run(["--model", imagedream, "--image", rgb, "--out", out])  # RGB image: no mask
    assert "no alpha channel" in line and "rgb.png" in line
    line = run(["--model", mvdream, "--image", blob_png, "--out", out])  # text model without --prompt
    assert "text-to-3D" in line and "--prompt TEXT" in line
    assert "--prompt" in run(["--model", mvdream, "--prompt", "  ", "--out", out])
    assert "give --image PATH" in run(["--model", mvdream, "--out", out])  # neither input
    assert "--out must end in .glb or .obj" in run(
        ["--model", mvdream, "--prompt", "a duck", "--out", out_dir / "model.ply"]
    )
    assert "--out must end in" in run(
        ["--model", tmp_path / "no_such_model", "--prompt", "a duck", "--out", out_dir / "model.gltf"]
    )
    assert "does not exist" in run(["--model", mvdream, "--prompt", "a duck", "--out", tmp_path / "nowhere" / "m.glb"])
    assert "--save-ply must end in .ply" in run(
        ["--model", mvdream, "--prompt", "a duck", "--out", out, "--save-ply", out_dir / "g.glb"]
    )
    assert "--preset zero123" in run(["--model", mvdream, "--prompt", "a duck", "--out", out, "--preset", "zero123"])
    assert "unknown --preset" in run(["--model", mvdream, "--prompt", "a duck", "--out", out, "--preset", "fastest"])
    assert "--iterations" in run(["--model", mvdream, "--prompt", "a duck", "--out", out, "--iterations", "-1"])
    assert not loaded


def test_generate_help_matches_the_code(capsys):
    from microdreamer_core.cli import PRESET_NAMES
    from microdreamer_core.pipeline.presets import PRESETS

    assert PRESET_NAMES == tuple(PRESETS)
    with pytest.raises(SystemExit) as exc:
        main(["generate", "--help"])
    assert exc.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for option in (
        "--image PATH",
        "--prompt TEXT",
        "--negative-prompt TEXT",
        "--model PATH_OR_HUB_ID",
        "--preset NAME",
        "--out OUT",
        "--seed SEED",
        "--iterations K",
        "--save-ply PATH",
        "--save-views DIR",
        "--elevation DEG",
        "--no-refine",
        "--device {auto,cpu,cuda}",
        "--dtype {auto,fp32,fp16,bf16}",
        "--download-dir DIR",
        "--tiny",
        "test/smoke mode",
    ):
        assert option in text, option
    assert ", ".join(PRESETS) in text


@pytest.mark.slow
def test_generate_ctrl_c_exits_130_and_leaves_no_file(tiny_model_dir, blob_png, tmp_path):
    """A real SIGINT to the command while SIR runs: exit 130 within seconds, no output, no temp files."""
    import os
    import queue
    import signal
    import threading
    import time

    model = tiny_model_dir("imagedream")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out, ply = out_dir / "model.glb", out_dir / "gaussians.ply"
    cmd = [
        sys.executable,
        "-m",
        "microdreamer_core.cli",
        *_gen_args("imagedream", model, out, blob_png, "--iterations", 200, "--save-ply", ply),
    ]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    lines: queue.Queue = queue.Queue()
    err: list[str] = []

    def drain():  # read stderr as it comes (and keep the pipe from filling)
        for line in proc.stderr:
            err.append(line)
            lines.put(line)
        lines.put(None)

    threading.Thread(target=drain, daemon=True).start()
    try:
        deadline = time.monotonic() + 120
        while True:  # wait for the start line: the model is loaded and SIR is about to run
            line = lines.get(timeout=max(deadline - time.monotonic(), 0.1))
            assert line is not None, f"the command ended before starting: {''.join(err)}"
            if line.startswith("generating with"):
                break
        time.sleep(1.5)  # well inside SIR: 200 tiny iterations take minutes
        assert proc.poll() is None, "".join(err)
        proc.send_signal(signal.SIGINT)
        sent = time.monotonic()
        code = proc.wait(timeout=10)
        elapsed = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert code == 130, "".join(err)
    assert elapsed <= 10
    assert "interrupted" in "".join(err)
    assert not list(out_dir.iterdir())  # neither the outputs nor any temporary file

    # The folder is as good as new: a normal run right after works.
    assert main(_gen_args("imagedream", model, out, blob_png, "--save-ply", ply)) == 0
    assert out.is_file() and ply.is_file()


@pytest.mark.slow
def test_demo_writes_its_turntable_inside_the_folder_it_creates(tmp_path, capsys):
    from PIL import Image

    out = tmp_path / "demo_out"  # does not exist yet: the demo creates it, the turntable goes inside
    args = ["demo", "--out", str(out), "--steps", "3", "--resolution", "32"]
    assert (
        main([*args, "--turntable", str(out / "spin.gif"), "--turntable-frames", "4", "--turntable-resolution", "32"])
        == 0
    )
    with Image.open(out / "spin.gif") as gif:
        assert gif.size == (32, 32) and gif.n_frames >= 2
    assert (out / "model.glb").is_file()
    assert main([*args[:2], str(tmp_path / "x"), *args[3:], "--turntable", str(tmp_path / "no" / "spin.gif")]) == 2
    assert "does not exist" in capsys.readouterr().err and not (tmp_path / "x").exists()
