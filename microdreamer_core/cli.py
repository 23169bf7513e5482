"""The ``microdreamer`` command line: generate, reconstruct, mesh, render and the embedded demo.

Every user error ends in one line on stderr, ``error: <the problem>: <the fix>``, exit code 2, and
no new file: option values are checked against the ranges shown in ``--help`` as they are parsed,
outputs are checked before any slow work and written all-or-nothing
(:func:`~.io.outputs.atomic_outputs`), and OS errors while writing name the output and the problem.
Ctrl-C, SIGTERM and SIGHUP stop a run alike: the temporary files are removed, one line is printed
and the exit code is 128 + the signal number (130, 143, 129).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .errors import Cancelled, InputError, shown
from .io.outputs import atomic_outputs, check_output, open_outputs, refuse_overwriting, staged_path
from .io.ply import load_ply, save_ply
from .render.turntable import FRAMES as TURNTABLE_FRAMES
from .render.turntable import MAX_MEGAPIXELS, TurntableConfig
from .render.turntable import RESOLUTION as TURNTABLE_SIZE
from .runtime import DTYPES, CancelFn, ProgressFn, StageProgressFn, resolve_device

MESH_SUFFIXES = (".glb", ".gltf", ".obj")
PRESET_NAMES = (
    "zero123",
    "imagedream",
    "mvdream",
)  # microdreamer_core.pipeline.presets.PRESETS (kept import-free for --help)
UV_CHART_NAMES = ("quality", "fast")  # microdreamer_core.meshing.uv.UV_CHARTS (kept import-free for --help)
IMAGE_KINDS = ("zero123", "imagedream")

# The documented limits of the options (README, "Limits"); the same option means the same in every command.
IMAGE_SIZE = (8, 2048)  # --resolution of reconstruct / render / demo: square image size in pixels
GRID_SIZE = (16, 512)  # --resolution of mesh: density grid samples per axis
FACES = (0, 2_000_000)  # --faces (0 = keep all)
TEXTURE_SIZE = (64, 8192)  # --texture-size
STEPS = (1, 100_000)  # --steps
ITERATIONS = (0, 1000)  # --iterations
SEEDS = (0, 2**63 - 1)  # --seed, every command
ELEVATION = (-89.0, 89.0)  # --elevation, degrees
DEVICES = ("auto", "cpu", "cuda")  # --device, every command that has it
TURN_SECONDS = 3.0  # --turntable: one turn takes this long (the frame rate follows the frame count)


# ---------------------------------------------------------------------------------------------
# Option types: each refuses a bad value with the allowed range as the argument is parsed
# ---------------------------------------------------------------------------------------------
def _whole(lo: int, hi: int, hi_text: str | None = None):
    """An argparse type: a whole number in lo..hi."""
    allowed = f"at least {lo} and at most {hi_text or hi}"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{shown(text, 40)}' is not a whole number (must be {allowed})") from None
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"{shown(text, 40)} is out of range: must be {allowed}")
        return value

    return parse


def _degrees(text: str) -> float:
    """An argparse type: a finite angle within ELEVATION."""
    lo, hi = ELEVATION
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is None or not lo <= value <= hi:  # NaN and infinities fail the comparison
        raise argparse.ArgumentTypeError(f"'{shown(text, 40)}' is not an angle from {lo:g} to {hi:g} degrees")
    return value


def _text(text: str) -> str:
    """An argparse type: text that is valid UTF-8 (undecodable command-line bytes are refused)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise argparse.ArgumentTypeError("is not valid UTF-8 text: give the text UTF-8 encoded") from None
    return text


def _device(text: str) -> str:
    """An argparse type: one of DEVICES, CUDA only where PyTorch sees a GPU."""
    if text not in DEVICES:
        raise argparse.ArgumentTypeError(f"unknown device '{shown(text, 40)}': use {', '.join(DEVICES)}")
    try:
        resolve_device(text)
    except InputError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are one-line :class:`InputError`s (the usage is in ``--help``)."""

    def error(self, message: str):
        raise InputError(f"{message} (see {self.prog} --help)")


# ---------------------------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------------------------
def _progress_bar(total: int, desc: str) -> ProgressFn:
    from tqdm import tqdm

    bar = tqdm(total=total, desc=desc, unit="step", leave=False, dynamic_ncols=True, disable=None)

    def update(step: int, _total: int) -> None:
        bar.update(step - bar.n)
        if step >= _total:
            bar.close()

    return update


def _check_size(width: int, height: int, what: str) -> None:
    """Refuse working at an image's own size beyond IMAGE_SIZE: --resolution must be given then."""
    if max(width, height) > IMAGE_SIZE[1]:
        raise InputError(
            f"{what} are {width}x{height}, larger than the {IMAGE_SIZE[1]} px limit: give --resolution "
            f"(at most {IMAGE_SIZE[1]}) to work at a smaller size"
        )


# ---------------------------------------------------------------------------------------------
# --turntable: the command's final result on an orbit, as .webp / .gif / .mp4
# ---------------------------------------------------------------------------------------------
def _check_turntable(args: argparse.Namespace, inputs: list[Path], made_folder: Path | None = None) -> Path | None:
    """The checked --turntable path (before any slow work), or None when it is not given;
    ``made_folder``: the command's own output folder, which may not exist yet."""
    if args.turntable is None:
        return None
    from .io.animation import check_animation_output

    TurntableConfig(frames=args.turntable_frames, resolution=args.turntable_resolution)  # the size bound, now
    path = check_animation_output(args.turntable, "--turntable", made_folder)
    refuse_overwriting([path], inputs)
    return path


def _turntable_frames(model, args: argparse.Namespace):
    """The turntable of ``model`` (Gaussians or a mesh) with --turntable-frames / --turntable-resolution."""
    from .render.turntable import render_turntable

    config = TurntableConfig(frames=args.turntable_frames, resolution=args.turntable_resolution)
    return render_turntable(model, config, progress=_progress_bar(config.frames, "turntable"), cancel=args.stop)


def _turntable_fps(frames: int) -> float:
    """One turn in TURN_SECONDS, within the frame rates every format plays."""
    from .io.animation import FPS

    return min(max(frames / TURN_SECONDS, FPS[0]), FPS[1])


def _save_turntable(frames, path: Path | None) -> None:
    if path is not None:
        from .io.animation import save_animation

        save_animation(frames, path, fps=_turntable_fps(len(frames)))


def _turntable_summary(frames: int, px: int) -> str:
    return f"turntable: {frames} frames of {px}x{px} px, {_turntable_fps(frames):.3g} fps"


def _print_turntable(path: Path | None, args: argparse.Namespace) -> None:
    if path is not None:
        print(f"wrote {path} ({_turntable_summary(args.turntable_frames, args.turntable_resolution)})")


def cmd_reconstruct(args: argparse.Namespace) -> None:
    from .fit.fitter import FitRuntime
    from .fit.reconstruct import ReconstructConfig, reconstruct
    from .io.transforms import load_transforms

    out = Path(args.out)
    if out.suffix.lower() != ".ply":
        raise InputError(f"--out must end in .ply (got '{shown(out.name)}'): reconstruction writes a 3D Gaussian PLY")
    check_output(out, "--out")  # before the optimisation, not after
    turntable = _check_turntable(args, [Path(args.views_dir)])
    views = load_transforms(args.views_dir)
    if args.resolution is None:
        _check_size(views.cameras.width, views.cameras.height, "the views")
    cfg = ReconstructConfig(
        steps=args.steps, resolution=args.resolution, runtime=FitRuntime(seed=args.seed, device=args.device)
    )
    print(
        f"reconstructing from {len(views)} views ({views.cameras.width}x{views.cameras.height}"
        f"{f' -> {args.resolution}' if args.resolution else ''}), {args.steps} steps",
        file=sys.stderr,
    )
    result = reconstruct(views, cfg, progress=_progress_bar(args.steps, "reconstruct"), cancel=args.stop)
    frames = _turntable_frames(result.gaussians, args) if turntable else None
    with atomic_outputs():  # the PLY and the turntable, or neither
        save_ply(result.gaussians, out)
        _save_turntable(frames, turntable)
    print(f"wrote {out} ({result.gaussians.num} Gaussians, {result.seconds:.1f} s)")
    _print_turntable(turntable, args)


def load_asset(path: Path):
    """The 3D asset ``render`` draws: a Gaussian PLY or a mesh file, chosen by extension."""

    suffix = path.suffix.lower()
    if not path.is_file():
        raise InputError(f"model file {shown(path)} does not exist: check the path")
    if suffix == ".ply":
        return load_ply(path)
    if suffix in MESH_SUFFIXES:
        from .io.mesh_files import load_mesh

        return load_mesh(path)
    raise InputError(
        f"unknown model type '{shown(suffix or path.name)}': give "
        f"a .ply (3D Gaussians) or {'/'.join(MESH_SUFFIXES)} mesh"
    )


def cmd_render(args: argparse.Namespace) -> None:
    from .eval.protocol import render_rgba
    from .io.transforms import load_cameras, save_transforms, transforms_files, transforms_inputs
    from .scene.views import PosedViews

    out, model_path = Path(args.out), Path(args.model)
    check_output(out, "--out", folder=True)
    cameras = load_cameras(args.cameras, args.resolution)
    if args.resolution is None:
        _check_size(cameras.width, cameras.height, "the camera file's images")
    refuse_overwriting(
        [out / name for name in transforms_files(len(cameras))], [model_path, *transforms_inputs(args.cameras)]
    )
    model = load_asset(model_path)
    images = render_rgba(model, cameras)
    json_path = save_transforms(PosedViews(images, cameras), out)
    print(f"wrote {len(cameras)} RGBA views to {out} ({json_path.name} + images/)")


def cmd_mesh(args: argparse.Namespace) -> None:
    from .io.export import SAVE_EXTENSIONS, mesh_files, save_mesh
    from .meshing.stage import MeshConfig, gaussians_to_mesh

    model, out = Path(args.model), Path(args.out)
    if model.suffix.lower() != ".ply":
        raise InputError(
            f"mesh needs a 3D Gaussian .ply (got '{shown(model.name)}'): run `microdreamer reconstruct` first"
        )
    if not model.is_file():
        raise InputError(f"model file {shown(model)} does not exist: check the path")
    if out.suffix.lower() not in SAVE_EXTENSIONS:
        raise InputError(f"--out must end in {' or '.join(SAVE_EXTENSIONS)} (got '{shown(out.name)}')")
    for path in mesh_files(out):  # fail before minutes of work, not after
        check_output(path, "--out")
    refuse_overwriting(mesh_files(out), [model])
    turntable = _check_turntable(args, [model])
    gaussians = load_ply(model)
    bake = not args.no_texture
    print(
        f"extracting a mesh from {gaussians.num} Gaussians (grid {args.resolution}, <= {args.faces} faces"
        f"{f', {args.texture_size} px texture' if bake else ', vertex colours'})",
        file=sys.stderr,
    )
    timings: dict = {}
    config = MeshConfig(
        resolution=args.resolution, target_faces=args.faces, texture_size=args.texture_size, uv_charts=args.uv_charts
    )
    mesh = gaussians_to_mesh(gaussians, config, bake=bake, timings=timings, cancel=args.stop)
    frames = _turntable_frames(mesh, args) if turntable else None
    with atomic_outputs():  # the mesh files and the turntable, or none
        path = save_mesh(mesh, out)
        _save_turntable(frames, turntable)
    stages = ", ".join(f"{k} {v:.1f} s" for k, v in timings.items())
    print(
        f"wrote {path} ({mesh.num_vertices} vertices, {mesh.num_faces} triangles"
        f"{f', {mesh.texture.shape[1]}x{mesh.texture.shape[0]} texture' if mesh.has_texture else ''}; {stages})"
    )
    _print_turntable(turntable, args)


def cmd_demo(args: argparse.Namespace) -> None:
    from .eval.demo import run_demo

    check_output(Path(args.out), "--out", folder=True)
    turntable = _check_turntable(args, [], made_folder=Path(args.out))  # e.g. demo_out/spin.webp
    with atomic_outputs():  # the demo's folder and the turntable, or neither
        demo = run_demo(
            Path(args.out),
            steps=args.steps,
            resolution=args.resolution,
            seed=args.seed,
            device=args.device,
            progress=_progress_bar(args.steps, "reconstruct"),
            cancel=args.stop,
        )
        if turntable:  # inside the demo's folder: written into it before the folder moves into place
            _save_turntable(_turntable_frames(demo.mesh, args), staged_path(turntable))
    for line in demo.written:
        print(line)
    _print_turntable(turntable, args)


# ---------------------------------------------------------------------------------------------
# generate: prompt / image -> 3D Gaussians -> textured mesh (the whole MicroDreamer pipeline)
# ---------------------------------------------------------------------------------------------
def _stage_progress() -> tuple[StageProgressFn, Callable[[], None]]:
    """``progress(stage, done, total)`` for :func:`~.pipeline.generate`: one tqdm bar per stage
    (silent when stderr is not a terminal), and ``close()`` for the bars left open."""
    from tqdm import tqdm

    bars: dict = {}

    def update(stage: str, done: int, total: int) -> None:
        bar = bars.get(stage)
        if bar is None:
            bar = bars[stage] = tqdm(
                total=total, desc=stage, unit="step", leave=False, dynamic_ncols=True, disable=None
            )
        if bar.total != total:
            bar.total = total
        bar.update(done - bar.n)
        if done >= total:
            bar.close()

    def close() -> None:
        for bar in bars.values():
            bar.close()

    return update, close


@contextlib.contextmanager
def _quiet_model_loading():
    """Silence diffusers' / transformers' warnings and per-file loading bars while a model loads
    (errors still show); their previous settings are restored afterwards."""
    import importlib

    modules = []
    for name in ("diffusers.utils.logging", "transformers.utils.logging"):
        try:
            modules.append(importlib.import_module(name))
        except ImportError:  # not installed: the loader says so itself
            pass
    saved = [(m, m.get_verbosity(), m.is_progress_bar_enabled()) for m in modules]
    for m in modules:
        m.set_verbosity_error()
        m.disable_progress_bar()
    try:
        yield
    finally:
        for m, verbosity, bars in saved:
            m.set_verbosity(verbosity)
            if bars:
                m.enable_progress_bar()


def _read_rgba(path: Path):
    """The --image as (H, W, 4) float in [0, 1]; its alpha must separate the object from the background."""
    from .io.images import read_rgba
    from .pipeline.condition import object_alpha

    image = read_rgba(
        path,
        "--image",
        need_alpha="image-to-3D needs the object's mask; remove the background first and "
        "save an RGBA PNG with a transparent background",
    )
    object_alpha(image, what=shown(path.name))
    return image


def _peek_kind(source: str) -> str | None:
    """The model kind of a local diffusers folder, read from its unet/config.json (cheap), else None."""
    from .diffusion.folders import detect_folder_kind

    path = Path(source)
    return detect_folder_kind(path) if path.is_dir() else None


def _generate_inputs(args: argparse.Namespace, kind: str, device: str):
    """The preset and the condition for a ``kind`` model, from the command line."""
    preset = _generate_preset(args, kind, device)
    return preset, _generate_condition(args, kind, preset.sir.image_size)


def _generate_preset(args: argparse.Namespace, kind: str, device: str):
    """--preset (default: the model kind's; shrunk with --tiny) with the command-line overrides."""
    import dataclasses

    from .pipeline.presets import check_preset_kind, get_preset, tiny_preset

    name = args.preset or kind
    preset = tiny_preset(name) if args.tiny else get_preset(name)
    check_preset_kind(
        preset, kind, fix=f"leave --preset {name} out (the default is the model's preset) or use --preset {kind}"
    )
    preset = preset.with_overrides(seed=args.seed, iterations=args.iterations, device=device)
    if args.no_refine:
        preset = dataclasses.replace(preset, refine_texture=False)
    if args.uv_charts:
        preset = dataclasses.replace(preset, mesh=dataclasses.replace(preset.mesh, uv_charts=args.uv_charts))
    return preset


def _generate_condition(args: argparse.Namespace, kind: str, size: int):
    """The condition from --prompt, --negative-prompt, --image and --elevation for a ``kind``
    model, naming the option that is missing; inputs the model ignores get a note."""
    from .diffusion.models import MODEL_CLASSES
    from .pipeline.condition import make_condition

    model_name = MODEL_CLASSES[kind].display_name
    prompt = args.prompt or ""
    image = None
    if kind in IMAGE_KINDS:
        if args.image is None:
            raise InputError(
                f"{model_name} is an image-to-3D model: give --image PATH (an RGBA PNG of the object on a "
                "transparent background)"
            )
        image = _read_rgba(Path(args.image))
        if kind == "zero123" and prompt.strip():
            print("note: Stable Zero123 takes no text; --prompt is ignored", file=sys.stderr)
    else:
        if not prompt.strip():
            raise InputError(f"{model_name} is a text-to-3D model: give --prompt TEXT describing the object")
        if args.image is not None:
            print(f"note: {model_name} is text-to-3D; --image is ignored", file=sys.stderr)
    return make_condition(kind, prompt, args.negative_prompt, image, elevation=args.elevation, size=size)


def _view_names(count: int) -> list[str]:
    """The files --save-views writes for ``count`` views: initial views, then the last SIR targets."""
    return [f"{prefix}_{i:02d}.png" for prefix in ("init", "target") for i in range(count)]


def _save_views(result, folder: Path) -> int:
    """Write the initial views (init_XX.png) and the last SIR targets (target_XX.png) into
    ``folder`` (created if missing), all-or-nothing."""
    import numpy as np
    from PIL import Image

    n = 0
    with atomic_outputs() as out:
        tmp = out.folder(folder, "--save-views")
        for prefix, images in (("init", result.sir.init_views), ("target", result.sir.last_targets)):
            if images is not None:
                arr = (images.detach().float().clamp(0, 1).cpu().numpy() * 255.0 + 0.5).astype(np.uint8)
                for i, view in enumerate(arr):
                    Image.fromarray(view).save(tmp / f"{prefix}_{i:02d}.png", format="PNG")
                    n += 1
    return n


def cmd_generate(args: argparse.Namespace) -> None:
    # Everything that can be checked without the model is checked first: loading takes a while.
    if args.image is None and args.prompt is None:
        raise InputError("nothing to generate from: give --image PATH (image-to-3D) and/or --prompt TEXT (text-to-3D)")
    outputs = _generate_outputs(args)
    if args.preset is not None and args.preset not in PRESET_NAMES:
        raise InputError(f"unknown --preset '{shown(args.preset, 40)}': use one of {', '.join(PRESET_NAMES)}")
    device = str(resolve_device(args.device))
    model, preset, condition = _load_generate_model(args, device)
    if outputs.views is not None:
        refuse_overwriting([outputs.views / name for name in _view_names(preset.sir.cameras.num_views)], outputs.inputs)
    print(
        f"generating with {model.display_name} ({model.kind}): preset {preset.name}{' (tiny)' if args.tiny else ''}, "
        f"{preset.sir.iterations} iteration{'' if preset.sir.iterations == 1 else 's'}, seed "
        f"{preset.sir.runtime.seed}, {'with' if preset.refine_texture else 'without'} texture refinement, on {device} "
        f"({str(model.dtype).removeprefix('torch.')})",
        file=sys.stderr,
    )
    result = _run_generate(model, condition, preset, args.stop)
    frames = _turntable_frames(result.mesh, args) if outputs.turntable else None
    written = _write_generated(result, outputs, frames)
    _print_generated(result, written)


@dataclass
class _GenerateOutputs:
    """Where ``generate`` writes (the mesh; optionally the Gaussians and the views), and the input
    files no output may overwrite."""

    mesh: Path
    ply: Path | None
    views: Path | None
    turntable: Path | None
    inputs: list[Path]


def _generate_outputs(args: argparse.Namespace) -> _GenerateOutputs:
    """The checked output paths of ``generate``: right suffixes, writable, not overwriting an input."""
    from .io.export import SAVE_EXTENSIONS, mesh_files

    out = Path(args.out)
    if out.suffix.lower() not in SAVE_EXTENSIONS:
        raise InputError(f"--out must end in {' or '.join(SAVE_EXTENSIONS)} (got '{shown(out.name)}')")
    for path in mesh_files(out):
        check_output(path, "--out")
    ply = Path(args.save_ply) if args.save_ply else None
    if ply is not None:
        if ply.suffix.lower() != ".ply":
            raise InputError(
                f"--save-ply must end in .ply (got '{shown(ply.name)}'): it writes the 3D Gaussians as a 3DGS PLY"
            )
        check_output(ply, "--save-ply")
    views = Path(args.save_views) if args.save_views else None
    if views is not None:
        check_output(views, "--save-views", folder=True)
    inputs = [Path(args.image)] if args.image else []
    refuse_overwriting([*mesh_files(out), *([ply] if ply else [])], inputs)
    return _GenerateOutputs(out, ply, views, _check_turntable(args, inputs), inputs)


def _load_generate_model(args: argparse.Namespace, device: str):
    """The model, its preset and the condition. With a local diffusers folder the kind is known
    before loading, so the inputs are checked first; otherwise at least the image is."""
    from .diffusion.loading import load_model

    kind = _peek_kind(args.model)
    peeked = _generate_inputs(args, kind, device) if kind else None
    if kind is None and args.image is not None:  # a hub id or a checkpoint: check the image before the download / load
        _read_rgba(Path(args.image))
    if sys.stderr.isatty():  # like the progress bars: feedback for a person waiting, nothing in logs / pipes
        print(f"loading {args.model} ...", file=sys.stderr)
    with _quiet_model_loading():
        model = load_model(args.model, device=device, dtype=DTYPES[args.dtype], download_dir=args.download_dir)
    preset, condition = peeked if peeked and kind == model.kind else _generate_inputs(args, model.kind, device)
    return model, preset, condition


def _run_generate(model, condition, preset, stop: CancelFn):
    """Every stage of the pipeline with one progress bar each; refuses a result that cannot be written."""
    from .pipeline.generate import generate

    progress, close_bars = _stage_progress()
    try:
        result = generate(model, condition, preset, mesh=True, progress=progress, cancel=stop)
    finally:
        close_bars()
    if result.mesh is None or result.mesh.num_faces == 0:
        raise InputError(
            "the generated mesh is empty (the Gaussians left no surface): try another --seed or more --iterations"
        )
    result.gaussians.check_finite("the generated Gaussians")
    return result


def _write_generated(result, outputs: _GenerateOutputs, turntable_frames=None) -> list[str]:
    """Write every output, all or none; returns what was written, the mesh last."""
    from .io.export import save_mesh

    written = []
    with atomic_outputs():  # all outputs or none; the main one is asked for first, so it is moved in last
        path = save_mesh(result.mesh, outputs.mesh)
        if outputs.ply is not None:
            save_ply(result.gaussians, outputs.ply)
            written.append(f"{outputs.ply} ({result.gaussians.num} Gaussians)")
        if outputs.views is not None:
            n = _save_views(result, outputs.views)
            written.append(f"{outputs.views}/ ({n} PNGs: init_XX = initial views, target_XX = last SIR targets)")
        if outputs.turntable is not None:
            _save_turntable(turntable_frames, outputs.turntable)
            n, px = turntable_frames.shape[:2]
            written.append(f"{outputs.turntable} ({_turntable_summary(n, px)})")
    written.append(f"{path}")
    return written


def _print_generated(result, written: list[str]) -> None:
    """The summary on stdout: time per stage, NFEs, sizes and the files written."""
    from .pipeline.generate import STAGES

    mesh = result.mesh
    stage_times = ", ".join(f"{s} {result.timings[s]:.1f} s" for s in STAGES if s in result.timings)
    print(f"done in {result.timings['total']:.1f} s ({stage_times})")
    print(f"NFEs: {result.nfe['total']} (sir {result.nfe['sir']}, texture {result.nfe['texture']})")
    print(f"Gaussians: {result.gaussians.num}")
    texture = f", {mesh.texture.shape[1]}x{mesh.texture.shape[0]} texture" if mesh.has_texture else ""
    print(f"mesh: {mesh.num_vertices} vertices, {mesh.num_faces} triangles{texture}")
    for line in written:
        print(f"wrote {line}")


def _seed_option(parser: argparse.ArgumentParser, default: int | None, default_text: str) -> None:
    parser.add_argument(
        "--seed",
        type=_whole(*SEEDS, "2^63-1"),
        default=default,
        help=f"random seed of every stage, 0..2^63-1 (default {default_text})",
    )


def _device_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--device",
        type=_device,
        default="auto",
        metavar="{auto,cpu,cuda}",
        help="auto (CUDA if available), cpu or cuda; cuda is refused where PyTorch sees no GPU (default auto)",
    )


def _image_size_option(parser: argparse.ArgumentParser, default: int | None, what: str) -> None:
    lo, hi = IMAGE_SIZE
    default_text = default or f"the images' own size, which must then be at most {hi}"
    parser.add_argument(
        "--resolution",
        type=_whole(lo, hi),
        default=default,
        metavar="PX",
        help=f"{what}, {lo}..{hi} pixels (default {default_text})",
    )


def _turntable_options(parser: argparse.ArgumentParser, what: str) -> None:
    d = TurntableConfig()
    parser.add_argument(
        "--turntable",
        metavar="PATH",
        default=None,
        help=f"also write a turntable of {what}: .webp or .gif (looping) or .mp4 (H.264); frames evenly "
        f"spaced around it from the front, {abs(d.elevation):g} degrees from above, one turn in {TURN_SECONDS:g} s",
    )
    lo, hi = TURNTABLE_FRAMES
    parser.add_argument(
        "--turntable-frames",
        type=_whole(lo, hi),
        default=d.frames,
        metavar="N",
        help=f"frames of the turntable, {lo}..{hi} (default {d.frames})",
    )
    lo, hi = TURNTABLE_SIZE
    parser.add_argument(
        "--turntable-resolution",
        type=_whole(lo, hi),
        default=d.resolution,
        metavar="PX",
        help=f"square turntable frame size, {lo}..{hi} pixels (default {d.resolution}); frames x size^2 at most "
        f"{MAX_MEGAPIXELS} megapixels",
    )


def _steps_option(parser: argparse.ArgumentParser, default: int) -> None:
    parser.add_argument(
        "--steps",
        type=_whole(*STEPS),
        default=default,
        help=f"optimiser steps, {STEPS[0]}..{STEPS[1]} (default {default})",
    )


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="microdreamer",
        description="MicroDreamer: fast 3D Gaussian reconstruction and generation. Every bad "
        "input ends in one 'error:' line and exit code 2 with no file written; Ctrl-C, SIGTERM and SIGHUP remove "
        "the unfinished outputs and exit with 128 + the signal number.",
    )
    sub = p.add_subparsers(dest="command", required=True)

    g = sub.add_parser(
        "generate",
        help="the whole MicroDreamer pipeline: an image and/or a prompt -> 3D Gaussians -> textured mesh (.glb/.obj)",
        description="Generate a textured 3D mesh with MicroDreamer: SIR on 3D Gaussians (stage 'sir'), mesh extraction "
        "and texture baking ('mesh'), then diffusion-guided texture refinement ('texture'). Image-to-3D with Stable "
        "Zero123 or ImageDream (--image, plus an optional --prompt for ImageDream), text-to-3D with MVDream "
        "(--prompt). Progress bars go to stderr (when it is a terminal), the summary to stdout.",
    )
    g.add_argument(
        "--image",
        metavar="PATH",
        help="input image for image-to-3D: an RGBA PNG of the object on a transparent "
        "background (the alpha is the mask); re-centred to fill 80%% of the frame",
    )
    g.add_argument(
        "--prompt",
        metavar="TEXT",
        type=_text,
        help="text prompt: required by MVDream, optional for ImageDream (may be "
        "empty), ignored by Stable Zero123. Give --image, --prompt or both",
    )
    g.add_argument(
        "--negative-prompt",
        metavar="TEXT",
        type=_text,
        default=None,
        help=(
            "negative prompt (default: the paper's 'ugly, bad anatomy, "
            "...' for MVDream/ImageDream, none for Stable Zero123)"
        ),
    )
    g.add_argument(
        "--model",
        required=True,
        metavar="PATH_OR_HUB_ID",
        help="a diffusers folder, a single-file MVDream/ImageDream checkpoint (.safetensors/.pt/.ckpt/.pth/.bin) or a "
        "hub id (ashawkey/mvdream-sd2.1-diffusers, ashawkey/imagedream-ipmv-diffusers, "
        "ashawkey/stable-zero123-diffusers); the kind of model is detected from its files",
    )
    g.add_argument(
        "--preset",
        metavar="NAME",
        default=None,
        help=f"{', '.join(PRESET_NAMES)} (default: the preset of the loaded model's kind)",
    )
    g.add_argument("--out", required=True, help="output mesh: .glb (texture embedded) or .obj (+ .mtl + .png)")
    _seed_option(g, None, "the preset's, 0")
    g.add_argument(
        "--iterations",
        type=_whole(*ITERATIONS),
        default=None,
        metavar="K",
        help=(
            f"SIR iterations K, {ITERATIONS[0]}..{ITERATIONS[1]} (default: "
            "the preset's: 20 zero123, 30 imagedream/mvdream; 2 with --tiny)"
        ),
    )
    g.add_argument(
        "--save-ply", metavar="PATH", default=None, help="also write the 3D Gaussians as a standard 3DGS .ply"
    )
    g.add_argument(
        "--save-views",
        metavar="DIR",
        default=None,
        help=(
            "also write the initial multi-view samples (init_XX.png) and the "
            "last SIR targets (target_XX.png) into DIR (created if missing)"
        ),
    )
    g.add_argument(
        "--elevation",
        type=_degrees,
        default=0.0,
        metavar="DEG",
        help=f"camera elevation of the input image in degrees, {ELEVATION[0]:g}..{ELEVATION[1]:g}, negative = from "
        "above (default 0): the SIR cameras are drawn around it and Stable Zero123 is conditioned on it",
    )
    g.add_argument(
        "--uv-charts",
        choices=UV_CHART_NAMES,
        default=None,
        help="uv unwrapping settings: fast (the presets' default: no chart refinement, charts <= 1%% of the "
        "surface) or quality (xatlas' defaults: 6-80x slower unwrap, the same textured PSNR in our measurements)",
    )
    g.add_argument(
        "--no-refine",
        action="store_true",
        help="skip the texture refinement (stage 2): the mesh keeps its baked texture",
    )
    _turntable_options(g, "the textured mesh")
    _device_option(g)
    g.add_argument(
        "--dtype",
        choices=tuple(DTYPES),
        default="auto",
        help="model weights' precision (default auto: fp16 on CUDA, fp32 on CPU)",
    )
    g.add_argument(
        "--download-dir",
        metavar="DIR",
        default=None,
        help="where hub ids are downloaded, as DIR/owner--name, and looked up first (offline: put the files there); "
        "default: the Hugging Face cache (~/.cache/huggingface, or $HF_HOME)",
    )
    g.add_argument(
        "--tiny",
        action="store_true",
        help="test/smoke mode: shrink the preset to tiny sizes (32 px diffusion, 64 px renders, 2 iterations, "
        "small mesh and texture) for tiny random models",
    )
    g.set_defaults(func=cmd_generate)

    r = sub.add_parser("reconstruct", help="fit 3D Gaussians to posed RGBA views (transforms.json)")
    r.add_argument("views_dir", help="folder with transforms.json and RGBA PNGs (NeRF-synthetic layout, OpenGL c2w)")
    r.add_argument("--out", required=True, help="output .ply (standard 3DGS layout)")
    _steps_option(r, 500)
    _image_size_option(r, None, "square working resolution")
    _seed_option(r, 0, "0")
    _device_option(r)
    _turntable_options(r, "the 3D Gaussians")
    r.set_defaults(func=cmd_reconstruct)

    x = sub.add_parser("mesh", help="extract a textured mesh (.glb/.obj) from 3D Gaussians (.ply)")
    x.add_argument("model", help="3D Gaussian .ply (standard 3DGS layout, e.g. from `reconstruct`)")
    x.add_argument("--out", required=True, help="output .glb (texture embedded) or .obj (+ .mtl + .png)")
    x.add_argument(
        "--resolution",
        type=_whole(*GRID_SIZE),
        default=128,
        metavar="N",
        help=f"density grid samples per axis for marching cubes, {GRID_SIZE[0]}..{GRID_SIZE[1]} (default 128)",
    )
    x.add_argument(
        "--faces",
        type=_whole(*FACES),
        default=50_000,
        help=f"decimate to at most this many triangles, {FACES[0]}..{FACES[1]}, 0 = keep all (default 50000)",
    )
    x.add_argument(
        "--texture-size",
        type=_whole(*TEXTURE_SIZE),
        default=1024,
        metavar="PX",
        help=f"square texture size, {TEXTURE_SIZE[0]}..{TEXTURE_SIZE[1]} pixels (default 1024)",
    )
    x.add_argument(
        "--uv-charts",
        choices=UV_CHART_NAMES,
        default="fast",
        help="uv unwrapping settings: fast (the default: no chart refinement, charts <= 1%% of the surface) or "
        "quality (xatlas' defaults: 6-80x slower, the same textured PSNR and texture use within a few %% in our "
        "measurements)",
    )
    x.add_argument(
        "--no-texture", action="store_true", help="skip uv unwrapping and baking: vertex colours only (much faster)"
    )
    _turntable_options(x, "the mesh")
    x.set_defaults(func=cmd_mesh)

    d = sub.add_parser("render", help="render a .ply or .glb/.obj model from the cameras of a transforms.json")
    d.add_argument("model", help=".ply (3D Gaussians) or .glb/.gltf/.obj (mesh)")
    d.add_argument("--cameras", required=True, help="transforms.json (or its folder) giving the cameras")
    d.add_argument(
        "--out",
        required=True,
        help="output folder: transforms.json + images/r_<i>.png (RGBA); refused where it "
        "would overwrite the model or the camera file's own files",
    )
    _image_size_option(d, None, "square image size")
    d.set_defaults(func=cmd_render)

    m = sub.add_parser(
        "demo",
        help="the embedded default: build a textured object in code, render it, reconstruct it, export a textured GLB",
    )
    m.add_argument(
        "--out",
        default="microdreamer_demo",
        help="output folder, created in an existing folder (default ./microdreamer_demo)",
    )
    _steps_option(m, 300)
    _image_size_option(m, 128, "square view size")
    _seed_option(m, 0, "0")
    _device_option(m)
    _turntable_options(m, "the demo's textured mesh (model.glb)")
    m.set_defaults(func=cmd_demo)
    return p


def _interrupted_line(signum: int) -> str:
    return f"error: interrupted by {signal.Signals(signum).name}: no output was written for the unfinished step"


class _Stopped(KeyboardInterrupt):
    """A stop signal (SIGINT, SIGTERM, SIGHUP) handled like Ctrl-C."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class _StopSignals:
    """While active, SIGINT, SIGTERM and SIGHUP raise :class:`_Stopped` in the main thread, so the
    outputs being written are removed as on Ctrl-C; later signals are ignored while the run
    unwinds. Calling the object is the ``cancel`` hook of the long computations: true once a
    signal came, so a run stops at its next step even where library code swallowed the
    exception. Signals the caller ignores (``nohup``) stay ignored; the previous handlers are
    restored at the end.

    Last resort: if the run has not unwound ``grace`` seconds after the signal (the exception
    landed where it was swallowed between steps, or where a lock stays held), a watchdog thread
    removes the temporary outputs of the open all-or-nothing blocks, prints the same line and
    ends the process with the same exit code."""

    def __init__(self, grace: float = 20.0) -> None:
        self.signum: int | None = None
        self.grace = grace
        self._previous: dict = {}
        self._unwound = threading.Event()

    def __call__(self) -> bool:
        return self.signum is not None

    def _stop(self, signum, _frame) -> None:
        if self.signum is None:
            self.signum = signum
            threading.Thread(target=self._last_resort, args=(open_outputs(),), daemon=True).start()
        for s in self._previous:
            signal.signal(s, signal.SIG_IGN)
        raise _Stopped(signum)

    def _last_resort(self, outputs) -> None:
        if self._unwound.wait(self.grace):
            return
        for out in reversed(outputs):
            out.discard()
        print(_interrupted_line(self.signum), file=sys.stderr, flush=True)
        os._exit(128 + self.signum)

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for name in ("SIGINT", "SIGTERM", "SIGHUP"):
                s = getattr(signal, name, None)
                if s is not None and signal.getsignal(s) is not signal.SIG_IGN:
                    self._previous[s] = signal.getsignal(s)
                    signal.signal(s, self._stop)
        return self

    def __exit__(self, *exc) -> None:
        self._unwound.set()
        for s, handler in self._previous.items():
            signal.signal(s, handler if handler is not None else signal.SIG_DFL)


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns the exit code (0, 2 for bad input, 128 + N after signal N)."""
    stop = _StopSignals()
    try:
        with stop:
            args = build_parser().parse_args(argv)
            args.stop = stop
            args.func(args)
    except InputError as e:
        print(f"error: {shown(e, 1000)}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, Cancelled) as e:
        signum = getattr(e, "signum", None) or stop.signum or signal.SIGINT
        print(_interrupted_line(signum), file=sys.stderr)
        return 128 + signum
    return 0


if __name__ == "__main__":
    sys.exit(main())
