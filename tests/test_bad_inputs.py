"""The bad-input battery: every CLI command and the library's node-level entry points.

Each CLI case runs ``microdreamer_core.cli.main`` in-process and asserts exit code 2, exactly one
``error:`` line (the last one) naming the problem, no traceback and no new or changed file: the
case's output folder stays empty and the shared input folder stays as it was. Library cases
assert one-line :class:`InputError`s. Disk-full and read-only cases use small tmpfs mounts (root
only; skipped with the reason otherwise); signal cases run the CLI as a subprocess (SIGTERM /
SIGHUP while it works) and in-process (a signal while the outputs are being written).
"""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import time
import zlib
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from microdreamer_core.cli import main
from microdreamer_core.errors import InputError, shown
from microdreamer_core.io.outputs import atomic_outputs
from microdreamer_core.io.ply import save_ply
from microdreamer_core.io.transforms import save_transforms
from microdreamer_core.render.gaussians import render_gaussians
from microdreamer_core.scene.cameras import Cameras, orbit_cameras
from microdreamer_core.scene.gaussians import init_ball
from microdreamer_core.scene.mesh import Mesh
from microdreamer_core.scene.views import PosedViews

EYE = np.eye(4).tolist()
NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a CUDA GPU")


# ---------------------------------------------------------------------------------------------
# Inputs: good ones, and one file or folder per bad input
# ---------------------------------------------------------------------------------------------
def _png_header(width: int, height: int) -> bytes:
    """A PNG that claims ``width`` x ``height`` (a decompression bomb's header; the data is short)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 4096)) + chunk(b"IEND", b"")
    )


def _rgba(h: int, w: int, alpha: int = 255, seed: int = 0) -> np.ndarray:
    arr = np.random.default_rng(seed).integers(0, 256, (h, w, 4), dtype=np.uint8)
    arr[..., 3] = 0
    arr[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4, 3] = alpha
    return arr


def _transforms(folder: Path, meta, images: dict[str, np.ndarray] | None = None) -> Path:
    folder.mkdir(parents=True)
    text = meta if isinstance(meta, (str, bytes)) else json.dumps(meta)
    (folder / "transforms.json").write_bytes(text.encode() if isinstance(text, str) else text)
    for name, arr in (images or {}).items():
        Image.fromarray(arr).save(folder / name)
    return folder


def _frames(matrix=EYE, file_path="a.png", n=1, fovx=0.8) -> dict:
    return {"camera_angle_x": fovx, "frames": [{"file_path": file_path, "transform_matrix": matrix}] * n}


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict[str, str]:
    """Paths by name: the good inputs (views, ply, glb, image) and every bad input file."""
    root = tmp_path_factory.mktemp("inputs")
    p: dict[str, Path] = {"root": root}

    # Good inputs: six 16 px views of a red ball of Gaussians, the ball as a PLY, a box GLB, an RGBA PNG.
    g = init_ball(300, radius=0.3, generator=torch.Generator().manual_seed(0))
    g.opacities[:] = 3.0
    g.sh0[:] = torch.tensor([1.5, -1.0, -1.0])
    cams = orbit_cameras([-20.0, 10.0] * 3, [0, 60, 120, 180, 240, 300], 2.0, 16)
    with torch.no_grad():
        out = render_gaussians(g, cams, (0.0, 0.0, 0.0))
    p["views"] = root / "views"
    save_transforms(
        PosedViews(torch.cat([(out.rgb / out.alpha.clamp(min=1e-4)).clamp(0, 1), out.alpha], -1), cams), p["views"]
    )
    p["ply"] = save_ply(g, root / "ball.ply")
    import trimesh

    trimesh.creation.box(extents=(0.6, 0.6, 0.6)).export(root / "box.glb")
    p["glb"] = root / "box.glb"
    p["image"] = root / "image.png"
    Image.fromarray(_rgba(32, 32)).save(p["image"])
    p["file"] = root / "afile"
    p["file"].write_text("a file where a folder is expected")
    for name in ("folder.ply", "folder.glb", "folder.obj", "sib"):
        (root / name).mkdir()
    (root / "sib" / "m.png").mkdir()  # a folder where the OBJ's texture would go
    p["folder_ply"], p["folder_glb"], p["folder_obj"], p["sib"] = (
        root / n for n in ("folder.ply", "folder.glb", "folder.obj", "sib")
    )

    # Image files
    good = _rgba(8, 8)
    buf = root / "noise.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 64, 4), dtype=np.uint8)).save(buf)
    images = {
        "rgb_png": lambda f: Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(f),
        "opaque_png": lambda f: Image.fromarray(np.full((8, 8, 4), 255, np.uint8)).save(f),
        "clear_png": lambda f: Image.fromarray(np.zeros((8, 8, 4), np.uint8)).save(f),
        "truncated_png": lambda f: f.write_bytes(buf.read_bytes()[: buf.stat().st_size // 2]),
        "random_png": lambda f: f.write_bytes(np.random.default_rng(2).bytes(500)),
        "empty_png": lambda f: f.write_bytes(b""),
        "bomb_png": lambda f: f.write_bytes(_png_header(12000, 12000)),
        "hugebomb_png": lambda f: f.write_bytes(_png_header(20000, 20000)),
        "zero_png": lambda f: f.write_bytes(_png_header(0, 0)),
    }
    for name, make in images.items():
        make(root / f"{name}.png")
        p[name] = root / f"{name}.png"
    (root / "folder.png").mkdir()
    p["folder_png"] = root / "folder.png"

    # transforms.json folders, each with a good 8 px image a.png unless the case is about images
    deep = "[" * 200_000 + "]" * 200_000
    nested = {**_frames(), "extra": json.loads("[" * 100 + "]" * 100)}
    bad_views = {
        "tj_not_json": "{not json",
        "tj_deep": deep,
        "tj_nested": nested,
        "tj_list": [1, 2, 3],
        "tj_no_frames": {"camera_angle_x": 0.8},
        "tj_empty_frames": {"camera_angle_x": 0.8, "frames": []},
        "tj_frames_dict": {"camera_angle_x": 0.8, "frames": {"a": 1}},
        "tj_fov_text": _frames(fovx="wide"),
        "tj_fov_degrees": _frames(fovx=80),
        "tj_fov_huge": '{"camera_angle_x": 1'
        + "0" * 400
        + ', "frames": [{"file_path": "a.png", "transform_matrix": '
        + json.dumps(EYE)
        + "}]}",
        "tj_fov_nan": '{"camera_angle_x": NaN, "frames": [{"file_path": "a.png", "transform_matrix": '
        + json.dumps(EYE)
        + "}]}",
        "tj_no_matrix": {"camera_angle_x": 0.8, "frames": [{"file_path": "a.png"}]},
        "tj_matrix_3x3": _frames(np.eye(3).tolist()),
        "tj_matrix_zero": _frames(np.zeros((4, 4)).tolist()),
        "tj_matrix_rank2": _frames([[1, 1, 0, 0], [0, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]),
        "tj_matrix_row": _frames([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 2], [0, 0, 0, 0]]),
        "tj_matrix_nan": '{"camera_angle_x": 0.8, "frames": [{"file_path": "a.png", "transform_matrix": '
        "[[NaN, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]}]}",
        "tj_matrix_huge": '{"camera_angle_x": 0.8, "frames": [{"file_path": "a.png", "transform_matrix": '
        "[[1" + "0" * 400 + ", 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]}]}",
        "tj_matrix_text": _frames([["a"] * 4] * 4),
        "tj_missing_image": _frames(file_path="nope.png"),
        "tj_escape_name": _frames(file_path="evil\n\x1b[31mred\x1b[0m\r.png"),
        "tj_long_name": _frames(file_path="x" * 10_000),
        "tj_nul_name": _frames(file_path="a\x00.png"),
        "tj_folder_name": _frames(file_path="."),
        "tj_not_utf8": b'{"camera_angle_x": 0.8, "frames": [{"file_path": "\xff\xfe.png", "transform_matrix": []}]}',
        "tj_bad_frame": {"camera_angle_x": 0.8, "frames": [7]},
    }
    for name, meta in bad_views.items():
        p[name] = _transforms(root / name, meta, {"a.png": good})
    image_views = {
        "iv_rgb": "rgb_png",
        "iv_truncated": "truncated_png",
        "iv_random": "random_png",
        "iv_empty": "empty_png",
        "iv_bomb": "bomb_png",
        "iv_hugebomb": "hugebomb_png",
        "iv_zero": "zero_png",
        "iv_clear": "clear_png",
    }
    for name, image in image_views.items():
        p[name] = _transforms(root / name, _frames(file_path="a.png", n=2))
        (p[name] / "a.png").write_bytes(p[image].read_bytes())
    p["iv_mixed"] = _transforms(
        root / "iv_mixed",
        {"camera_angle_x": 0.8, "frames": [{"file_path": n, "transform_matrix": EYE} for n in ("a.png", "b.png")]},
        {"a.png": good, "b.png": _rgba(9, 9)},
    )
    p["iv_wide"] = _transforms(root / "iv_wide", _frames(), {"a.png": _rgba(4, 2056)})
    p["iv_nonsquare"] = _transforms(root / "iv_nonsquare", _frames(), {"a.png": _rgba(8, 12)})
    p["tj_huge_file"] = root / "tj_huge_file"
    p["tj_huge_file"].mkdir()
    with open(p["tj_huge_file"] / "transforms.json", "wb") as fh:  # sparse: 100 MiB claimed, nothing stored
        fh.truncate(100 * 2**20)
    (root / "tj_json_folder" / "transforms.json").mkdir(parents=True)
    p["tj_json_folder"] = root / "tj_json_folder"
    # A camera file in a folder whose frames are images/r_<i>.png: render --out there would overwrite them.
    p["cams_named"] = root / "cams_named"
    save_transforms(PosedViews(torch.rand(1, 8, 8, 4), orbit_cameras([0.0], [0.0], 2.0, 8)), p["cams_named"])
    (p["cams_named"] / "transforms.json").rename(p["cams_named"] / "cams.json")

    # Mesh files
    box = p["glb"].read_bytes()
    meshes = {
        "empty.glb": b"",
        "random.glb": np.random.default_rng(3).bytes(2000),
        "truncated.glb": box[: len(box) // 2],
        "header.glb": b"glTF" + struct.pack("<II", 2, 10_000),
        "noface.obj": b"v 0 0 0\nv 1 0 0\n",
        "badindex.obj": b"v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 9\n",
        "nan.obj": b"v nan 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n",
        "empty.obj": b"",
        "garbage.gltf": b"{not json",
        "missingbin.gltf": json.dumps(
            {
                "asset": {"version": "2.0"},
                "buffers": [{"uri": "missing.bin", "byteLength": 36}],
                "bufferViews": [{"buffer": 0, "byteLength": 36}],
                "accessors": [{"bufferView": 0, "componentType": 5126, "count": 3, "type": "VEC3"}],
                "meshes": [{"primitives": [{"attributes": {"POSITION": 0}}]}],
                "nodes": [{"mesh": 0}],
                "scenes": [{"nodes": [0]}],
                "scene": 0,
            }
        ).encode(),
        "random.ply": np.random.default_rng(4).bytes(800),
        "empty.ply": b"",
        "points.ply": (
            b"ply\nformat ascii 1.0\nelement vertex 1\n"
            b"property float x\nproperty float y\nproperty float z\nend_header\n0 0 0\n"
        ),
        "model.xyz": b"1 2 3\n",
    }
    for name, data in meshes.items():
        (root / name).write_bytes(data)
        p[name.replace(".", "_")] = root / name
    nan_ply = root / "nan.ply"
    g2 = init_ball(10, generator=torch.Generator().manual_seed(0))
    save_ply(g2, nan_ply)
    from plyfile import PlyData

    ply = PlyData.read(str(nan_ply), mmap=False)
    ply["vertex"]["x"][0] = np.nan
    ply.write(str(nan_ply))
    p["nan_ply"] = nan_ply
    # A GLB whose embedded texture claims 12000 x 12000 pixels.
    from microdreamer_core.io import export

    textured = Mesh(torch.rand(3, 3), torch.tensor([[0, 1, 2]]), uvs=torch.rand(3, 2), texture=torch.rand(4, 4, 3))
    real, export._texture_png = export._texture_png, lambda _t: _png_header(12000, 12000)
    try:
        (root / "bombtex.glb").write_bytes(export.glb_bytes(textured))
    finally:
        export._texture_png = real
    p["bombtex_glb"] = root / "bombtex.glb"

    # generate: a folder that looks like an ImageDream model (its kind is read before loading, so
    # the inputs are checked first); loading it would fail, and no case gets that far.
    fake = root / "fake_imagedream" / "unet"
    fake.mkdir(parents=True)
    (fake / "config.json").write_text(
        json.dumps({"_class_name": "MultiViewUNetModel", "camera_dim": 16, "ip_dim": 1024})
    )
    p["model"] = root / "fake_imagedream"
    p["long_name"] = root / ("n" * 200 + "\n\x1b[2J.png")
    return {k: str(v) for k, v in p.items()}


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return (
        {
            str(f.relative_to(folder)): (f.stat().st_size, f.stat().st_mtime_ns) if f.is_file() else (-1, 0)
            for f in sorted(folder.rglob("*"))
        }
        if folder.exists()
        else {}
    )


def _error_line(err: str) -> str:
    """The one ``error:`` line of ``err``: the last line, no other error line, no traceback."""
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert "Traceback" not in err and len(errors) == 1 and lines[-1] == errors[0], err
    assert "\x1b" not in err and "\r" not in err, repr(err)
    return errors[0]


@pytest.fixture
def run_bad(env, tmp_path, capsys):
    """``run_bad(argv)``: run the CLI, assert the contract, return the error line. ``{name}`` in
    an argument is an ``env`` path, ``{out}`` an empty output folder that must stay empty."""
    out = tmp_path / "out"
    out.mkdir()
    paths = {**env, "out": str(out)}

    def run(argv: list[str], code: int = 2) -> str:
        before = _snapshot(Path(env["root"]))
        result = main([a.format(**paths) for a in argv])
        line = _error_line(capsys.readouterr().err)
        assert result == code, line
        assert not list(out.iterdir()), list(out.iterdir())
        assert _snapshot(Path(env["root"])) == before, "an input file changed"
        return line

    return run


# ---------------------------------------------------------------------------------------------
# The CLI: option values, input files, output paths (in-process, fast)
# ---------------------------------------------------------------------------------------------
R = ["reconstruct", "{views}", "--out", "{out}/m.ply"]
REN = ["render", "{ply}", "--cameras", "{views}", "--out", "{out}/r"]
MESH = ["mesh", "{ply}", "--out", "{out}/m.glb"]
DEMO = ["demo", "--out", "{out}/demo"]
GEN = ["generate", "--model", "{model}", "--image", "{image}", "--out", "{out}/m.glb"]
BIG = str(10**21)

OPTION_CASES = [
    # reconstruct
    ("r-steps-negative", R + ["--steps", "-1"], "--steps"),
    ("r-steps-zero", R + ["--steps", "0"], "at least 1"),
    ("r-steps-float", R + ["--steps", "1e3"], "not a whole number"),
    ("r-steps-huge", R + ["--steps", BIG], "at most 100000"),
    ("r-resolution-zero", R + ["--resolution", "0"], "at least 8"),
    ("r-resolution-negative", R + ["--resolution", "-5"], "--resolution"),
    ("r-resolution-huge", R + ["--resolution", "100000"], "at most 2048"),
    ("r-resolution-text", R + ["--resolution", "abc"], "whole number"),
    ("r-seed-negative", R + ["--seed", "-1"], "at least 0"),
    ("r-seed-1e21", R + ["--seed", BIG], "2^63-1"),
    ("r-seed-2^63", R + ["--seed", str(2**63)], "2^63-1"),
    ("r-seed-float", R + ["--seed", "1.5"], "whole number"),
    ("r-device-unknown", R + ["--device", "tpu"], "unknown device"),
    ("r-device-empty", R + ["--device", ""], "unknown device"),
    ("r-device-index", R + ["--device", "cuda:0"], "unknown device"),
    ("r-no-out", ["reconstruct", "{views}"], "--out"),
    ("r-unknown-option", R + ["--fast"], "unrecognized arguments"),
    # render
    ("render-resolution-zero", REN + ["--resolution", "0"], "at least 8"),
    ("render-resolution-negative", REN + ["--resolution", "-1"], "at least 8"),
    ("render-resolution-huge", REN + ["--resolution", "99999"], "at most 2048"),
    ("render-resolution-nan", REN + ["--resolution", "nan"], "whole number"),
    ("render-no-cameras", ["render", "{ply}", "--out", "{out}/r"], "--cameras"),
    # mesh
    ("mesh-grid-small", MESH + ["--resolution", "4"], "at least 16"),
    ("mesh-grid-huge", MESH + ["--resolution", "100000"], "at most 512"),
    ("mesh-faces-negative", MESH + ["--faces", "-1"], "--faces"),
    ("mesh-faces-huge", MESH + ["--faces", str(10**9)], "at most 2000000"),
    ("mesh-texture-100000", MESH + ["--texture-size", "100000"], "at most 8192"),
    ("mesh-texture-zero", MESH + ["--texture-size", "0"], "at least 64"),
    ("mesh-texture-small", MESH + ["--texture-size", "16"], "at least 64"),
    ("mesh-texture-float", MESH + ["--texture-size", "1e4"], "whole number"),
    # demo
    ("demo-steps-negative", DEMO + ["--steps", "-5"], "--steps"),
    ("demo-steps-text", DEMO + ["--steps", "many"], "whole number"),
    ("demo-resolution-zero", DEMO + ["--resolution", "0"], "at least 8"),
    ("demo-resolution-huge", DEMO + ["--resolution", "5000"], "at most 2048"),
    ("demo-seed-negative", DEMO + ["--seed", "-1"], "at least 0"),
    ("demo-device-unknown", DEMO + ["--device", "gpu"], "unknown device"),
    # generate
    ("gen-seed-negative", GEN + ["--seed", "-1"], "at least 0"),
    ("gen-seed-1e21", GEN + ["--seed", BIG], "2^63-1"),
    ("gen-iterations-negative", GEN + ["--iterations", "-1"], "--iterations"),
    ("gen-iterations-huge", GEN + ["--iterations", "100000"], "at most 1000"),
    ("gen-elevation-nan", GEN + ["--elevation", "nan"], "--elevation"),
    ("gen-elevation-inf", GEN + ["--elevation", "inf"], "-89 to 89"),
    ("gen-elevation-90", GEN + ["--elevation", "90"], "-89 to 89"),
    ("gen-elevation-huge", GEN + ["--elevation", "-1000"], "-89 to 89"),
    ("gen-elevation-text", GEN + ["--elevation", "up"], "-89 to 89"),
    ("gen-device-unknown", GEN + ["--device", "tpu"], "unknown device"),
    ("gen-prompt-not-utf8", GEN + ["--prompt", "a duck \udcff\udcfe"], "UTF-8"),
    ("gen-negative-not-utf8", GEN + ["--negative-prompt", "\udc80"], "UTF-8"),
    ("gen-dtype-unknown", GEN + ["--dtype", "fp8"], "invalid choice"),
    ("gen-uv-charts-unknown", GEN + ["--uv-charts", "best"], "invalid choice"),
    ("gen-preset-unknown", GEN + ["--preset", "fastest"], "unknown --preset"),
    ("gen-no-model", ["generate", "--out", "{out}/m.glb"], "--model"),
    # --turntable (reconstruct, mesh, demo, generate)
    ("r-turntable-frames-zero", R + ["--turntable", "{out}/t.gif", "--turntable-frames", "0"], "at least 1"),
    ("mesh-turntable-resolution-huge", MESH + ["--turntable-resolution", "4096"], "at most 2048"),
    (
        "demo-turntable-megapixels",
        DEMO + ["--turntable", "{out}/t.webp", "--turntable-frames", "360", "--turntable-resolution", "1024"],
        "megapixels",
    ),
    # the program itself
    ("no-command", [], "command"),
    ("unknown-command", ["explode"], "invalid choice"),
]

INPUT_CASES = [
    # transforms.json, through reconstruct and render
    ("views-missing", ["reconstruct", "{root}/nowhere", "--out", "{out}/m.ply"], "no transforms.json"),
    ("views-json-is-folder", ["reconstruct", "{tj_json_folder}", "--out", "{out}/m.ply"], "no transforms.json"),
    ("tj-not-json", ["reconstruct", "{tj_not_json}", "--out", "{out}/m.ply"], "not valid JSON"),
    ("tj-200000-deep", ["reconstruct", "{tj_deep}", "--out", "{out}/m.ply"], "nests deeper than 32"),
    ("tj-100-deep", ["reconstruct", "{tj_nested}", "--out", "{out}/m.ply"], "nests deeper than 32"),
    ("tj-huge-file", ["reconstruct", "{tj_huge_file}", "--out", "{out}/m.ply"], "larger than 64 MiB"),
    ("tj-not-utf8", ["reconstruct", "{tj_not_utf8}", "--out", "{out}/m.ply"], "not valid JSON"),
    ("tj-list", ["reconstruct", "{tj_list}", "--out", "{out}/m.ply"], "camera_angle_x"),
    ("tj-no-frames", ["reconstruct", "{tj_no_frames}", "--out", "{out}/m.ply"], "'frames'"),
    ("tj-empty-frames", ["reconstruct", "{tj_empty_frames}", "--out", "{out}/m.ply"], "no frames"),
    ("tj-frames-dict", ["reconstruct", "{tj_frames_dict}", "--out", "{out}/m.ply"], "no frames"),
    ("tj-bad-frame", ["reconstruct", "{tj_bad_frame}", "--out", "{out}/m.ply"], "frame 0 needs"),
    ("tj-fov-text", ["reconstruct", "{tj_fov_text}", "--out", "{out}/m.ply"], "camera_angle_x must be a number"),
    ("tj-fov-degrees", ["reconstruct", "{tj_fov_degrees}", "--out", "{out}/m.ply"], "radians"),
    ("tj-fov-huge-int", ["reconstruct", "{tj_fov_huge}", "--out", "{out}/m.ply"], "camera_angle_x must be a number"),
    ("tj-fov-nan", ["render", "{ply}", "--cameras", "{tj_fov_nan}", "--out", "{out}/r"], "radians"),
    ("tj-no-matrix", ["reconstruct", "{tj_no_matrix}", "--out", "{out}/m.ply"], "transform_matrix"),
    ("tj-matrix-3x3", ["reconstruct", "{tj_matrix_3x3}", "--out", "{out}/m.ply"], "4x4"),
    ("tj-matrix-all-zero", ["reconstruct", "{tj_matrix_zero}", "--out", "{out}/m.ply"], "singular"),
    ("tj-matrix-rank-2", ["render", "{ply}", "--cameras", "{tj_matrix_rank2}", "--out", "{out}/r"], "singular"),
    ("tj-matrix-last-row", ["render", "{ply}", "--cameras", "{tj_matrix_row}", "--out", "{out}/r"], "last row"),
    ("tj-matrix-nan", ["reconstruct", "{tj_matrix_nan}", "--out", "{out}/m.ply"], "finite 4x4"),
    ("tj-matrix-huge-int", ["reconstruct", "{tj_matrix_huge}", "--out", "{out}/m.ply"], "finite 4x4"),
    ("tj-matrix-text", ["reconstruct", "{tj_matrix_text}", "--out", "{out}/m.ply"], "finite 4x4"),
    ("tj-missing-image", ["reconstruct", "{tj_missing_image}", "--out", "{out}/m.ply"], "does not exist"),
    ("tj-escape-codes-in-name", ["reconstruct", "{tj_escape_name}", "--out", "{out}/m.ply"], "evil\\x0a\\x1b[31mred"),
    ("tj-10000-char-name", ["reconstruct", "{tj_long_name}", "--out", "{out}/m.ply"], "xxx...xxx"),
    ("tj-nul-in-name", ["reconstruct", "{tj_nul_name}", "--out", "{out}/m.ply"], "a\\x00.png"),
    ("tj-name-is-folder", ["reconstruct", "{tj_folder_name}", "--out", "{out}/m.ply"], "does not exist"),
    (
        "tj-cameras-missing",
        ["render", "{ply}", "--cameras", "{root}/nowhere.json", "--out", "{out}/r"],
        "no transforms.json",
    ),
    ("tj-cameras-all-zero", ["render", "{glb}", "--cameras", "{tj_matrix_zero}", "--out", "{out}/r"], "singular"),
    # images named by transforms.json
    ("image-no-alpha", ["reconstruct", "{iv_rgb}", "--out", "{out}/m.ply"], "no alpha channel"),
    ("image-truncated", ["reconstruct", "{iv_truncated}", "--out", "{out}/m.ply"], "cannot read image"),
    ("image-random-bytes", ["reconstruct", "{iv_random}", "--out", "{out}/m.ply"], "cannot read image"),
    ("image-empty-file", ["reconstruct", "{iv_empty}", "--out", "{out}/m.ply"], "cannot read image"),
    (
        "image-bomb-12000",
        ["reconstruct", "{iv_bomb}", "--out", "{out}/m.ply"],
        "12000x12000 pixels, more than the 64 megapixel limit",
    ),
    ("image-bomb-20000", ["reconstruct", "{iv_hugebomb}", "--out", "{out}/m.ply"], "64 megapixel limit"),
    (
        "image-bomb-header-render",
        ["render", "{ply}", "--cameras", "{iv_bomb}", "--out", "{out}/r"],
        "64 megapixel limit",
    ),
    ("image-0x0", ["reconstruct", "{iv_zero}", "--out", "{out}/m.ply"], "a.png"),
    ("image-mixed-sizes", ["reconstruct", "{iv_mixed}", "--out", "{out}/m.ply"], "mixed sizes"),
    (
        "image-all-transparent",
        ["reconstruct", "{iv_clear}", "--out", "{out}/m.ply", "--steps", "1"],
        "fully transparent",
    ),
    ("image-too-wide-native", ["reconstruct", "{iv_wide}", "--out", "{out}/m.ply"], "give --resolution"),
    ("image-too-wide-render", ["render", "{ply}", "--cameras", "{iv_wide}", "--out", "{out}/r"], "give --resolution"),
    (
        "image-not-square-resized",
        ["reconstruct", "{iv_nonsquare}", "--out", "{out}/m.ply", "--resolution", "8"],
        "square",
    ),
    # models given to render and mesh
    ("glb-empty", ["render", "{empty_glb}", "--cameras", "{views}", "--out", "{out}/r"], "could not read mesh file"),
    ("glb-random", ["render", "{random_glb}", "--cameras", "{views}", "--out", "{out}/r"], "could not read mesh file"),
    (
        "glb-truncated",
        ["render", "{truncated_glb}", "--cameras", "{views}", "--out", "{out}/r"],
        "could not read mesh file",
    ),
    (
        "glb-header-only",
        ["render", "{header_glb}", "--cameras", "{views}", "--out", "{out}/r"],
        "could not read mesh file",
    ),
    ("glb-texture-bomb", ["render", "{bombtex_glb}", "--cameras", "{views}", "--out", "{out}/r"], "64 megapixel limit"),
    (
        "gltf-garbage",
        ["render", "{garbage_gltf}", "--cameras", "{views}", "--out", "{out}/r"],
        "could not read mesh file",
    ),
    (
        "gltf-missing-bin",
        ["render", "{missingbin_gltf}", "--cameras", "{views}", "--out", "{out}/r"],
        "missingbin.gltf",
    ),
    ("obj-no-faces", ["render", "{noface_obj}", "--cameras", "{views}", "--out", "{out}/r"], "no triangles"),
    (
        "obj-index-out-of-range",
        ["render", "{badindex_obj}", "--cameras", "{views}", "--out", "{out}/r"],
        "badindex.obj",
    ),
    ("obj-nan", ["render", "{nan_obj}", "--cameras", "{views}", "--out", "{out}/r"], "nan.obj"),
    ("obj-empty", ["render", "{empty_obj}", "--cameras", "{views}", "--out", "{out}/r"], "no triangles"),
    ("ply-random", ["render", "{random_ply}", "--cameras", "{views}", "--out", "{out}/r"], "not a readable PLY"),
    ("ply-empty", ["render", "{empty_ply}", "--cameras", "{views}", "--out", "{out}/r"], "not a readable PLY"),
    (
        "ply-points-only",
        ["render", "{points_ply}", "--cameras", "{views}", "--out", "{out}/r"],
        "not a 3D Gaussian splatting PLY",
    ),
    ("ply-nan", ["render", "{nan_ply}", "--cameras", "{views}", "--out", "{out}/r"], "NaN"),
    ("model-unknown-type", ["render", "{model_xyz}", "--cameras", "{views}", "--out", "{out}/r"], "unknown model type"),
    ("model-missing", ["render", "{root}/nope.glb", "--cameras", "{views}", "--out", "{out}/r"], "does not exist"),
    ("model-is-folder", ["render", "{folder_ply}", "--cameras", "{views}", "--out", "{out}/r"], "does not exist"),
    ("mesh-model-glb", ["mesh", "{glb}", "--out", "{out}/m.glb"], "3D Gaussian .ply"),
    ("mesh-model-missing", ["mesh", "{root}/nope.ply", "--out", "{out}/m.glb"], "does not exist"),
    ("mesh-model-random", ["mesh", "{random_ply}", "--out", "{out}/m.glb"], "not a readable PLY"),
    # generate's image (checked before the model is loaded)
    ("gen-image-missing", GEN[:4] + ["{root}/nope.png", "--out", "{out}/m.glb"], "does not exist"),
    ("gen-image-no-alpha", GEN[:4] + ["{rgb_png}", "--out", "{out}/m.glb"], "no alpha channel"),
    ("gen-image-opaque", GEN[:4] + ["{opaque_png}", "--out", "{out}/m.glb"], "no transparent background"),
    ("gen-image-transparent", GEN[:4] + ["{clear_png}", "--out", "{out}/m.glb"], "transparent everywhere"),
    ("gen-image-truncated", GEN[:4] + ["{truncated_png}", "--out", "{out}/m.glb"], "cannot read --image"),
    ("gen-image-random", GEN[:4] + ["{random_png}", "--out", "{out}/m.glb"], "cannot read --image"),
    ("gen-image-bomb", GEN[:4] + ["{bomb_png}", "--out", "{out}/m.glb"], "64 megapixel limit"),
    ("gen-image-huge-bomb", GEN[:4] + ["{hugebomb_png}", "--out", "{out}/m.glb"], "64 megapixel limit"),
    ("gen-image-folder", GEN[:4] + ["{folder_png}", "--out", "{out}/m.glb"], "does not exist"),
    ("gen-image-escape-name", GEN[:4] + ["{long_name}", "--out", "{out}/m.glb"], "\\x0a\\x1b[2J.png"),
    (
        "gen-image-bomb-hub-id",
        ["generate", "--model", "owner/name", "--image", "{bomb_png}", "--out", "{out}/m.glb"],
        "64 megapixel limit",
    ),
]

OUTPUT_CASES = [
    ("r-out-suffix", ["reconstruct", "{views}", "--out", "{out}/m.glb"], "must end in .ply"),
    ("r-out-folder-missing", ["reconstruct", "{views}", "--out", "{out}/no/m.ply"], "does not exist"),
    ("r-out-is-folder", ["reconstruct", "{views}", "--out", "{folder_ply}"], "it is a folder"),
    ("r-out-parent-is-file", ["reconstruct", "{views}", "--out", "{file}/m.ply"], "is a file, not a folder"),
    ("render-out-is-file", ["render", "{ply}", "--cameras", "{views}", "--out", "{file}"], "is a file, not a folder"),
    ("render-out-folder-missing", ["render", "{ply}", "--cameras", "{views}", "--out", "{out}/a/b"], "does not exist"),
    (
        "render-out-is-views",
        ["render", "{ply}", "--cameras", "{views}", "--out", "{views}"],
        "would overwrite the input",
    ),
    (
        "render-out-over-frames",
        ["render", "{glb}", "--cameras", "{cams_named}/cams.json", "--out", "{cams_named}"],
        "would overwrite the input",
    ),
    ("mesh-out-suffix", ["mesh", "{ply}", "--out", "{out}/m.stl"], "must end in .glb or .obj"),
    ("mesh-out-obj-is-folder", ["mesh", "{ply}", "--out", "{folder_obj}"], "it is a folder"),
    ("mesh-out-png-is-folder", ["mesh", "{ply}", "--out", "{sib}/m.obj"], "m.png (--out): it is a folder"),
    ("mesh-out-folder-missing", ["mesh", "{ply}", "--out", "{out}/no/m.glb"], "does not exist"),
    ("mesh-out-parent-is-file", ["mesh", "{ply}", "--out", "{file}/m.glb"], "is a file, not a folder"),
    ("demo-out-is-file", ["demo", "--out", "{file}"], "is a file, not a folder"),
    ("demo-out-folder-missing", ["demo", "--out", "{out}/a/b"], "does not exist"),
    ("gen-out-suffix", GEN[:6] + ["{out}/m.ply"], "must end in .glb or .obj"),
    ("gen-out-is-folder", GEN[:6] + ["{folder_glb}"], "it is a folder"),
    ("gen-out-folder-missing", GEN[:6] + ["{out}/no/m.glb"], "does not exist"),
    ("gen-save-ply-suffix", GEN + ["--save-ply", "{out}/g.glb"], "--save-ply must end in .ply"),
    ("gen-save-ply-folder-missing", GEN + ["--save-ply", "{out}/no/g.ply"], "does not exist"),
    ("gen-save-views-is-file", GEN + ["--save-views", "{file}"], "is a file, not a folder"),
    ("r-turntable-suffix", R + ["--turntable", "{out}/t.avi"], "--turntable 't.avi' is no animation file type"),
    ("mesh-turntable-folder-missing", MESH + ["--turntable", "{out}/no/t.mp4"], "does not exist"),
    ("gen-turntable-suffix", GEN + ["--turntable", "{out}/t.png"], "no animation file type"),
    (
        "gen-out-png-overwrites-image",
        ["generate", "--model", "{model}", "--image", "{root}/image.png", "--out", "{root}/image.obj"],
        "would overwrite the input",
    ),
]


@pytest.mark.parametrize(
    "argv, message", [pytest.param(a, m, id=i) for i, a, m in OPTION_CASES + INPUT_CASES + OUTPUT_CASES]
)
def test_cli_bad_input(run_bad, argv, message):
    assert message in run_bad(argv)


@NO_CUDA
@pytest.mark.parametrize("argv", [R, DEMO, GEN], ids=["reconstruct", "demo", "generate"])
def test_cli_cuda_without_gpu(run_bad, argv):
    assert "no CUDA GPU" in run_bad(argv + ["--device", "cuda"])


def test_the_battery_is_large_enough():
    assert len(OPTION_CASES + INPUT_CASES + OUTPUT_CASES) >= 100
    assert len({c[0] for c in OPTION_CASES + INPUT_CASES + OUTPUT_CASES}) == len(
        OPTION_CASES + INPUT_CASES + OUTPUT_CASES
    )


def test_help_shows_the_ranges(capsys):
    texts = {}
    for command in ("reconstruct", "render", "mesh", "demo", "generate"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        texts[command] = " ".join(capsys.readouterr().out.split())
    for command in ("reconstruct", "render", "demo"):
        assert "--resolution PX" in texts[command] and "8..2048 pixels" in texts[command]
    for command in ("reconstruct", "demo", "generate"):
        assert "0..2^63-1" in texts[command] and "--device {auto,cpu,cuda}" in texts[command]
    assert "64..8192 pixels" in texts["mesh"] and "16..512" in texts["mesh"] and "0..2000000" in texts["mesh"]
    assert "-89..89" in texts["generate"] and "0..1000" in texts["generate"]


# ---------------------------------------------------------------------------------------------
# Full disks and read-only folders (small tmpfs mounts)
# ---------------------------------------------------------------------------------------------
@contextmanager
def _tmpfs(folder: Path, options: str):
    folder.mkdir()
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True, text=True, check=False
    )
    if r.returncode != 0:
        pytest.skip(
            f"cannot mount a tmpfs here (root with mount permission needed): {r.stderr.strip() or r.returncode}"
        )
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


@pytest.fixture
def full_disk(tmp_path):
    """A 64 KiB tmpfs filled to the last byte."""
    with _tmpfs(tmp_path / "full", "size=64k") as folder:
        fd = os.open(folder / "filler", os.O_WRONLY | os.O_CREAT)
        try:
            while os.write(fd, b"\0" * 4096):
                pass
        except OSError:
            pass
        finally:
            os.close(fd)
        yield folder


@pytest.fixture
def read_only(tmp_path):
    with _tmpfs(tmp_path / "ro", "size=64k,ro") as folder:
        yield folder


def _full_disk_case(env, folder: Path, argv: list[str], capsys) -> str:
    before = _snapshot(folder)
    code = main([a.format(**env, disk=str(folder)) for a in argv])
    line = _error_line(capsys.readouterr().err)
    assert code == 2 and _snapshot(folder) == before, (code, line, _snapshot(folder))
    return line


@pytest.mark.parametrize(
    "argv, output",
    [
        (["reconstruct", "{views}", "--out", "{disk}/m.ply", "--steps", "1"], "m.ply"),
        (["render", "{ply}", "--cameras", "{views}", "--out", "{disk}/r"], "r"),
        (["render", "{ply}", "--cameras", "{views}", "--out", "{disk}/r/"], "r"),
        (
            ["mesh", "{ply}", "--out", "{disk}/m.obj", "--resolution", "16", "--faces", "200", "--texture-size", "64"],
            "m.",
        ),
    ],
    ids=["reconstruct", "render", "render-slash", "mesh-obj"],
)
def test_disk_full_gives_one_line_and_no_file(env, full_disk, capsys, argv, output):
    line = _full_disk_case(env, full_disk, argv, capsys)
    assert (
        f"cannot write {full_disk}/{output}" in line
        and "No space left on device" in line
        and "free some disk space" in line
    )


@pytest.mark.parametrize(
    "argv",
    [
        ["reconstruct", "{views}", "--out", "{disk}/m.ply"],
        ["render", "{ply}", "--cameras", "{views}", "--out", "{disk}/r"],
        ["mesh", "{ply}", "--out", "{disk}/m.glb"],
        ["demo", "--out", "{disk}/demo"],
        GEN[:6] + ["{disk}/m.glb"],
    ],
    ids=["reconstruct", "render", "mesh", "demo", "generate"],
)
def test_read_only_folder_is_refused_before_work(env, read_only, capsys, argv):
    assert "(--out): the folder" in (line := _full_disk_case(env, read_only, argv, capsys)) and "read-only disk" in line


@pytest.mark.slow
def test_demo_on_a_full_disk(env, full_disk, capsys):
    line = _full_disk_case(
        env, full_disk, ["demo", "--out", "{disk}/demo", "--steps", "1", "--resolution", "16"], capsys
    )
    assert f"cannot write {full_disk}/demo" in line and "No space left on device" in line


@pytest.mark.slow
def test_generate_on_a_full_disk_writes_neither_ply_nor_mesh(env, full_disk, tmp_path_factory, capsys):
    from microdreamer_core.diffusion.folders import save_diffusers_folder
    from microdreamer_core.diffusion.random_models import build_random_model

    model = tmp_path_factory.mktemp("tiny_imagedream")
    save_diffusers_folder(build_random_model("imagedream", "tiny", seed=0), model)
    capsys.readouterr()
    argv = [
        "generate",
        "--model",
        str(model),
        "--image",
        "{image}",
        "--out",
        "{disk}/m.glb",
        "--save-ply",
        "{disk}/g.ply",
        "--save-views",
        "{disk}/views",
        "--tiny",
        "--device",
        "cpu",
        "--no-refine",
    ]
    assert "No space left on device" in _full_disk_case(env, full_disk, argv, capsys)


# ---------------------------------------------------------------------------------------------
# Signals: SIGTERM / SIGHUP like Ctrl-C
# ---------------------------------------------------------------------------------------------
def _signal_mid_write(monkeypatch, target, name: str, signum: int) -> None:
    """Make ``target.name`` write part of its file, then deliver ``signum`` to this process."""
    real = getattr(target, name)

    def write(*args, **kwargs):
        real(*args, **kwargs)
        os.kill(os.getpid(), signum)
        time.sleep(1)  # the handler raises in here

    monkeypatch.setattr(target, name, write)


@pytest.mark.parametrize(
    "argv, patch, signum",
    [
        (["reconstruct", "{views}", "--out", "{out}/m.ply", "--steps", "2"], "ply", signal.SIGTERM),
        (["render", "{ply}", "--cameras", "{views}", "--out", "{out}/r"], "png", signal.SIGHUP),
        (
            ["mesh", "{ply}", "--out", "{out}/m.obj", "--resolution", "16", "--faces", "200", "--texture-size", "64"],
            "png",
            signal.SIGTERM,
        ),
    ],
    ids=["reconstruct-sigterm", "render-sighup", "mesh-obj-sigterm"],
)
def test_signal_while_writing_removes_everything(env, tmp_path, monkeypatch, capsys, argv, patch, signum):
    from plyfile import PlyData

    if patch == "ply":
        _signal_mid_write(monkeypatch, PlyData, "write", signum)
    else:
        _signal_mid_write(monkeypatch, Image.Image, "save", signum)
    out = tmp_path / "out"
    out.mkdir()
    before = _snapshot(Path(env["root"]))
    code = main([a.format(**env, out=str(out)) for a in argv])
    line = _error_line(capsys.readouterr().err)
    assert code == 128 + signum and signal.Signals(signum).name in line and "interrupted" in line
    assert not list(out.iterdir()) and _snapshot(Path(env["root"])) == before
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handlers are restored


def _caught_signals(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return int(line.split()[1], 16)
    return 0


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc to see when the handlers are installed")
@pytest.mark.parametrize(
    "command, started, signum",
    [
        (
            ["reconstruct", "{views}", "--out", "{out}/m.ply", "--steps", "100000"],
            "reconstructing from",
            signal.SIGTERM,
        ),
        (["reconstruct", "{views}", "--out", "{out}/m.ply", "--steps", "100000"], "reconstructing from", signal.SIGHUP),
        (["demo", "--out", "{out}/demo", "--steps", "100000", "--resolution", "16"], 6.0, signal.SIGTERM),
        (["demo", "--out", "{out}/demo", "--steps", "100000", "--resolution", "16"], 6.0, signal.SIGHUP),
    ],
    ids=["reconstruct-sigterm", "reconstruct-sighup", "demo-sigterm", "demo-sighup"],
)
def test_stop_signals_end_a_run_cleanly(env, tmp_path, command, started, signum):
    """A real signal to a running command: ``started`` is the stderr line that says the work has
    begun, or the seconds to wait after the handlers are installed (the demo prints nothing)."""
    import threading

    out = tmp_path / "out"
    out.mkdir()
    cmd = [sys.executable, "-m", "microdreamer_core.cli", *(a.format(**env, out=str(out)) for a in command)]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    err: list[str] = []
    reader = threading.Thread(target=lambda: err.extend(proc.stderr), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 60
        while not _caught_signals(proc.pid) >> (signum - 1) & 1:  # the handlers are installed
            assert proc.poll() is None and time.monotonic() < deadline, "".join(err)
            time.sleep(0.05)
        if isinstance(started, str):
            while not any(started in line for line in err):
                assert proc.poll() is None and time.monotonic() < deadline, "".join(err)
                time.sleep(0.05)
            time.sleep(0.5)
        else:
            time.sleep(started)
        assert proc.poll() is None, "".join(err)
        proc.send_signal(signum)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running 30 s after {signal.Signals(signum).name}; stderr: {''.join(err)}")
        reader.join(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = "".join(err)
    assert proc.returncode == 128 + signum, text
    assert signal.Signals(signum).name in _error_line(text)
    assert not list(out.iterdir()) and not list(Path(env["root"]).glob(".*.tmp"))


# ---------------------------------------------------------------------------------------------
# The library's node-level entry points given empty or degenerate inputs
# ---------------------------------------------------------------------------------------------
def _library_cases():
    from microdreamer_core.diffusion.sampling import to_bchw
    from microdreamer_core.diffusion.schedules import DDIMSchedule
    from microdreamer_core.fit.fitter import FitRuntime
    from microdreamer_core.fit.reconstruct import ReconstructConfig, reconstruct
    from microdreamer_core.io.images import read_rgba
    from microdreamer_core.io.transforms import load_cameras
    from microdreamer_core.pipeline.condition import make_condition, recenter_rgba
    from microdreamer_core.render.mesh import render_mesh

    cams = orbit_cameras([0.0], [0.0], 2.0, 8)
    views = PosedViews(torch.rand(1, 8, 8, 4), cams)
    box = Mesh(torch.rand(4, 3), torch.tensor([[0, 1, 2], [0, 2, 3]]))
    image, mask = torch.rand(1, 8, 8, 3), (torch.rand(1, 8, 8) > 0.5).float()
    mask[0, 2:6, 2:6], mask[0, 0, 0] = 1.0, 0.0
    nan_image = image.clone()
    nan_image[0, 0, 0, 0] = float("nan")
    bottom = torch.eye(4)[None].clone()
    bottom[0, 3, 3] = 0.0
    return [
        ("cameras-zero", lambda: Cameras(torch.zeros(0, 4, 4), 0.8, 8, 8), "no cameras"),
        ("cameras-width-zero", lambda: Cameras(torch.eye(4), 0.8, 0, 8), "at least 1x1"),
        ("cameras-all-zero-matrix", lambda: Cameras(torch.zeros(1, 4, 4), 0.8, 8, 8), "singular"),
        ("cameras-last-row-zero", lambda: Cameras(bottom, 0.8, 8, 8), "last row"),
        ("cameras-fov-zero", lambda: Cameras(torch.eye(4), 0.0, 8, 8), "field of view"),
        ("cameras-fov-nan", lambda: Cameras(torch.eye(4), float("nan"), 8, 8), "field of view"),
        ("cameras-shape", lambda: Cameras(torch.zeros(1, 3, 4), 0.8, 8, 8), "(N, 4, 4)"),
        ("cameras-resize-zero", lambda: cams.with_resolution(0, 8), "at least 1x1"),
        ("posed-views-empty-batch", lambda: PosedViews(torch.zeros(0, 8, 8, 4), cams), "empty batch"),
        ("posed-views-0x0", lambda: PosedViews(torch.zeros(1, 0, 0, 4), cams), "0x0 pixels"),
        ("posed-views-nan", lambda: PosedViews(torch.full((1, 8, 8, 4), float("nan")), cams), "NaN"),
        ("posed-views-resize-zero", lambda: views.resized(0), "at least 1"),
        (
            "from-images-empty",
            lambda: PosedViews.from_images_and_masks(torch.zeros(0, 8, 8, 3), torch.zeros(0, 8, 8), cams),
            "empty batch",
        ),
        (
            "from-images-empty-masks",
            lambda: PosedViews.from_images_and_masks(image, torch.zeros(0, 8, 8), cams),
            "empty batch",
        ),
        (
            "from-images-0x0",
            lambda: PosedViews.from_images_and_masks(torch.zeros(1, 0, 0, 3), torch.zeros(1, 0, 0), cams),
            "0x0",
        ),
        (
            "condition-empty-batch",
            lambda: make_condition("zero123", image=torch.zeros(0, 8, 8, 3), mask=mask),
            "empty batch",
        ),
        (
            "condition-0x0-image",
            lambda: make_condition("zero123", image=torch.zeros(1, 0, 0, 3), mask=torch.zeros(1, 0, 0)),
            "0x0",
        ),
        (
            "condition-empty-mask-batch",
            lambda: make_condition("zero123", image=image, mask=torch.zeros(0, 8, 8)),
            "empty batch",
        ),
        (
            "condition-mask-size",
            lambda: make_condition("zero123", image=image, mask=torch.ones(1, 4, 5)),
            "the mask is 5x4",
        ),
        ("condition-nan-image", lambda: make_condition("zero123", image=nan_image, mask=mask), "NaN"),
        (
            "condition-elevation-nan",
            lambda: make_condition("zero123", image=image, mask=mask, elevation=float("nan")),
            "elevation",
        ),
        ("condition-elevation-90", lambda: make_condition("mvdream", "a duck", elevation=90.0), "elevation"),
        ("recenter-0x0", lambda: recenter_rgba(torch.zeros(0, 0, 3)), "0x0"),
        ("recenter-size-zero", lambda: recenter_rgba(torch.ones(8, 8, 3), size=0), "canvas size"),
        # the nodes' form: the model kind decided later
        ("reference-empty-batch", lambda: make_condition(None, image=torch.zeros(0, 8, 8, 3)), "empty batch"),
        (
            "reference-empty-mask-batch",
            lambda: make_condition(None, image=image, mask=torch.zeros(0, 8, 8)),
            "empty batch",
        ),
        (
            "reconstruct-resolution-negative",
            lambda: reconstruct(views, ReconstructConfig(steps=1, resolution=-3)),
            "resolution",
        ),
        (
            "reconstruct-device-unknown",
            lambda: reconstruct(views, ReconstructConfig(steps=1, runtime=FitRuntime(device="tpu"))),
            "unknown device",
        ),
        ("reconstruct-not-views", lambda: reconstruct(torch.rand(1, 8, 8, 4)), "PosedViews"),
        (
            "gaussians-render-width-zero",
            lambda: render_gaussians(init_ball(10), cams.with_resolution(0, 8)),
            "at least 1x1",
        ),
        ("render-mesh-singular", lambda: render_mesh(box, Cameras(torch.zeros(1, 4, 4), 0.8, 8, 8)), "singular"),
        ("sampling-empty-views", lambda: to_bchw(torch.zeros(0, 8, 8, 3)), "empty batch"),
        ("sampling-0x0-views", lambda: to_bchw(torch.zeros(2, 0, 0, 3)), "0x0"),
        ("sampling-zero-steps", lambda: DDIMSchedule(num_inference_steps=0), "1 to 1000 steps"),
        ("read-image-bomb", lambda: read_rgba(_bomb_file()), "64 megapixel limit"),
        ("load-cameras-resolution-zero", lambda: load_cameras(_views_file(), resolution=0), "at least 1"),
    ]


def _bomb_file() -> Path:
    path = Path(os.environ.get("PYTEST_TMP", "/tmp")) / f"bomb_{os.getpid()}.png"
    path.write_bytes(_png_header(12000, 12000))
    return path


def _views_file() -> Path:
    folder = Path(os.environ.get("PYTEST_TMP", "/tmp")) / f"views_{os.getpid()}"
    if not (folder / "transforms.json").is_file():
        save_transforms(PosedViews(torch.rand(1, 8, 8, 4), orbit_cameras([0.0], [0.0], 2.0, 8)), folder)
    return folder


LIBRARY_IDS = [c[0] for c in _library_cases()]


@pytest.mark.parametrize("index", range(len(LIBRARY_IDS)), ids=LIBRARY_IDS)
def test_library_refuses_degenerate_input(index, tmp_path, monkeypatch):
    monkeypatch.setenv("PYTEST_TMP", str(tmp_path))
    _, call, message = _library_cases()[index]
    with pytest.raises(InputError) as info:
        call()
    text = str(info.value)
    assert message in text and "\n" not in text, text


# ---------------------------------------------------------------------------------------------
# The mechanisms themselves
# ---------------------------------------------------------------------------------------------
def test_shown_makes_any_text_one_safe_bounded_line():
    assert shown("a\nb\x1b[31m\r\t\u202e\udcff") == "a\\x0ab\\x1b[31m\\x0d\\x09\\u202e\\udcff"
    long = shown("/" + "d" * 1000 + "/name.png", 60)
    assert len(long) <= 60 and long.endswith("name.png") and "..." in long
    assert shown(Path("plain/path.ply")) == "plain/path.ply"


def test_atomic_outputs_are_all_or_nothing(tmp_path):
    (tmp_path / "old.txt").write_text("old")
    with pytest.raises(RuntimeError), atomic_outputs() as out:
        out.file(tmp_path / "old.txt").write_text("new")
        (out.folder(tmp_path / "views") / "a.png").write_text("x")
        raise RuntimeError("boom")
    assert sorted(os.listdir(tmp_path)) == ["old.txt"] and (tmp_path / "old.txt").read_text() == "old"

    # A failure while moving into place (a folder appeared where a file goes) undoes the moves made.
    with pytest.raises(InputError, match=r"cannot write .*b\.txt: Is a directory"), atomic_outputs() as out:
        out.file(tmp_path / "b.txt").write_text("b")  # asked for first: moved last
        out.file(tmp_path / "old.txt").write_text("new")
        (out.folder(tmp_path / "views") / "a.png").write_text("x")
        (tmp_path / "b.txt").mkdir()
    assert sorted(os.listdir(tmp_path)) == ["b.txt", "old.txt"] and (tmp_path / "old.txt").read_text() == "old"

    # Nested blocks join the outermost: nothing is in place until it ends.
    with atomic_outputs() as out:
        tmp = out.folder(tmp_path / "result")
        save_transforms(PosedViews(torch.rand(1, 4, 4, 4), orbit_cameras([0.0], [0.0], 2.0, 4)), tmp / "views")
        with atomic_outputs() as inner:
            inner.file(tmp_path / "old.txt").write_text("new")
        assert (tmp_path / "old.txt").read_text() == "old" and not (tmp_path / "result").exists()
    assert (tmp_path / "old.txt").read_text() == "new"
    assert sorted(p.name for p in (tmp_path / "result" / "views").rglob("*")) == [
        "images",
        "r_0.png",
        "transforms.json",
    ]
    assert not [p for p in tmp_path.rglob(".*")]  # no temporary or backup file left


_SWALLOWING_RUN = """
import sys, time
from pathlib import Path
from microdreamer_core.cli import _StopSignals
from microdreamer_core.io.outputs import atomic_outputs

with _StopSignals(grace=1.0):
    with atomic_outputs() as out:
        out.file(Path(sys.argv[1]) / "m.ply").write_bytes(b"half-written")
        # Code that swallows every exception, the stop included, and never checks cancel. "ready"
        # is printed inside it and the loops are nested, so the stop is swallowed wherever it lands.
        ready = False
        while True:
            try:
                while True:
                    try:
                        if not ready:
                            ready = True
                            print("ready", flush=True)
                        time.sleep(0.05)
                    except BaseException:
                        pass
            except BaseException:
                pass
"""


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["sigterm", "sighup"])
def test_a_swallowed_stop_still_ends_the_process_cleanly(tmp_path, signum):
    """The last resort: when the run cannot unwind, the watchdog removes the temporary outputs,
    prints the one line and exits with 128 + the signal number."""
    out = tmp_path / "out"
    out.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-c", _SWALLOWING_RUN, str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "ready"
        assert [p.name for p in out.iterdir()][0].startswith(".m.ply.")  # the temporary output exists
        start = time.monotonic()
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 128 + signum and time.monotonic() - start < 15
    assert signal.Signals(signum).name in _error_line(err) and "Traceback" not in err
    assert not list(out.iterdir())
