"""The ``microdreamer`` command line: generate, reconstruct, mesh, render and the embedded demo.

Every user error ends in one line on stderr that names the problem and the fix, a non-zero exit
code, and no partial output file (outputs are written atomically).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import tempfile
from pathlib import Path

from .errors import Cancelled, InputError

MESH_SUFFIXES = (".glb", ".gltf", ".obj")
PRESET_NAMES = ("zero123", "imagedream", "mvdream")  # microdreamer_core.presets.PRESETS (kept import-free for --help)
IMAGE_KINDS = ("zero123", "imagedream")


def _progress_bar(total: int, desc: str):
    from tqdm import tqdm

    bar = tqdm(total=total, desc=desc, unit="step", leave=False, dynamic_ncols=True, disable=None)

    def update(step: int, _total: int) -> None:
        bar.update(step - bar.n)
        if step >= _total:
            bar.close()

    return update


def cmd_reconstruct(args: argparse.Namespace) -> None:
    from .reconstruct import ReconstructConfig, reconstruct
    from .views import load_transforms

    out = Path(args.out)
    if out.suffix.lower() != ".ply":
        raise InputError(f"--out must end in .ply (got '{out.name}'): reconstruction writes a 3D Gaussian PLY")
    views = load_transforms(args.views_dir)
    cfg = ReconstructConfig(steps=args.steps, resolution=args.resolution, seed=args.seed, device=args.device)
    print(f"reconstructing from {len(views)} views ({views.cameras.width}x{views.cameras.height}"
          f"{f' -> {args.resolution}' if args.resolution else ''}), {args.steps} steps", file=sys.stderr)
    result = reconstruct(views, cfg, progress=_progress_bar(args.steps, "reconstruct"))
    result.gaussians.save_ply(out)
    print(f"wrote {out} ({result.gaussians.num} Gaussians, {result.seconds:.1f} s)")


def load_model(path: Path):
    """A Gaussian PLY or a mesh file, chosen by extension."""
    from .gaussians import Gaussians

    suffix = path.suffix.lower()
    if not path.is_file():
        raise InputError(f"model file {path} does not exist: check the path")
    if suffix == ".ply":
        return Gaussians.load_ply(path)
    if suffix in MESH_SUFFIXES:
        from .mesh import load_mesh

        return load_mesh(path)
    raise InputError(f"unknown model type '{suffix or path.name}': give a .ply (3D Gaussians) or {'/'.join(MESH_SUFFIXES)} mesh")


def cmd_render(args: argparse.Namespace) -> None:
    from .evaluation import render_rgba
    from .views import PosedViews, load_cameras, save_transforms

    model = load_model(Path(args.model))
    cameras = load_cameras(args.cameras, args.resolution)
    images = render_rgba(model, cameras)
    json_path = save_transforms(PosedViews(images, cameras), args.out)
    print(f"wrote {len(cameras)} RGBA views to {Path(args.out)} ({json_path.name} + images/)")


def cmd_mesh(args: argparse.Namespace) -> None:
    from .export import SAVE_EXTENSIONS, save_mesh
    from .gaussians import Gaussians
    from .texture import gaussians_to_mesh

    model, out = Path(args.model), Path(args.out)
    if model.suffix.lower() != ".ply":
        raise InputError(f"mesh needs a 3D Gaussian .ply (got '{model.name}'): run `microdreamer reconstruct` first")
    if not model.is_file():
        raise InputError(f"model file {model} does not exist: check the path")
    if out.suffix.lower() not in SAVE_EXTENSIONS:
        raise InputError(f"--out must end in {' or '.join(SAVE_EXTENSIONS)} (got '{out.name}')")
    if not out.parent.is_dir():  # fail before minutes of work, not after
        raise InputError(f"output folder {out.parent} does not exist: create it or choose another --out")
    gaussians = Gaussians.load_ply(model)
    bake = not args.no_texture
    print(f"extracting a mesh from {gaussians.num} Gaussians (grid {args.resolution}, <= {args.faces} faces"
          f"{f', {args.texture_size} px texture' if bake else ', vertex colours'})", file=sys.stderr)
    timings: dict = {}
    mesh = gaussians_to_mesh(gaussians, resolution=args.resolution, target_faces=args.faces,
                             texture_size=args.texture_size, bake=bake, timings=timings)
    path = save_mesh(mesh, out)
    stages = ", ".join(f"{k} {v:.1f} s" for k, v in timings.items())
    print(f"wrote {path} ({mesh.num_vertices} vertices, {mesh.num_faces} triangles"
          f"{f', {mesh.texture.shape[1]}x{mesh.texture.shape[0]} texture' if mesh.has_texture else ''}; {stages})")


def cmd_demo(args: argparse.Namespace) -> None:
    from .demo import run_demo

    run_demo(Path(args.out), steps=args.steps, resolution=args.resolution, seed=args.seed,
             progress=_progress_bar(args.steps, "reconstruct"))


# ---------------------------------------------------------------------------------------------
# generate: prompt / image -> 3D Gaussians -> textured mesh (the whole MicroDreamer pipeline)
# ---------------------------------------------------------------------------------------------
def _stage_progress():
    """``progress(stage, done, total)`` for :func:`~.pipeline.generate`: one tqdm bar per stage
    (silent when stderr is not a terminal), and ``close()`` for the bars left open."""
    from tqdm import tqdm

    bars: dict = {}

    def update(stage: str, done: int, total: int) -> None:
        bar = bars.get(stage)
        if bar is None:
            bar = bars[stage] = tqdm(total=total, desc=stage, unit="step", leave=False, dynamic_ncols=True, disable=None)
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


def _check_output_folder(path: Path, option: str) -> None:
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():  # fail before minutes of work, not after
        raise InputError(f"output folder {folder} of {option} does not exist: create it or choose another {option}")


def _read_rgba(path: Path):
    """The --image as (H, W, 4) float in [0, 1]; its alpha must separate the object from the background."""
    from PIL import Image

    from .views import load_rgba

    if not path.is_file():
        raise InputError(f"input image {path} does not exist: check --image")
    try:
        with Image.open(path) as im:
            mode, transparency = im.mode, "transparency" in im.info
    except (OSError, SyntaxError) as e:
        raise InputError(f"cannot read --image {path} ({e}): give a PNG/WebP with an alpha channel") from None
    if mode not in ("RGBA", "LA", "PA") and not (mode == "P" and transparency):
        raise InputError(f"{path.name} has no alpha channel (mode {mode}): image-to-3D needs the object's mask; remove the "
                         "background first and save an RGBA PNG with a transparent background")
    image = load_rgba(path)
    alpha = image[..., 3]
    if float(alpha.max()) <= 0.5:
        raise InputError(f"{path.name} is transparent everywhere (empty alpha): the object must be opaque in the alpha channel")
    if float(alpha.min()) > 0.5:
        raise InputError(f"{path.name} has no transparent background (alpha is opaque everywhere): remove the background "
                         "first and save an RGBA PNG")
    return image


def _peek_kind(source: str) -> str | None:
    """The model kind of a local diffusers folder, read from its unet/config.json (cheap), else None."""
    from .mv_loading import detect_folder_kind

    path = Path(source)
    return detect_folder_kind(path) if path.is_dir() else None


def _generate_inputs(args: argparse.Namespace, kind: str, device: str):
    """The preset (with the command-line overrides) and the condition for a ``kind`` model."""
    import dataclasses

    from .mv_models import MODEL_CLASSES
    from .pipeline import make_condition, tiny_preset
    from .presets import get_preset

    name = args.preset or kind
    preset = tiny_preset(name) if args.tiny else get_preset(name)
    model_name = MODEL_CLASSES[kind].display_name
    if preset.model_kind != kind:
        raise InputError(f"--preset {name} is made for {MODEL_CLASSES[preset.model_kind].display_name} models, but "
                         f"{args.model} is a {model_name} model: leave --preset out (it defaults to the model's) or use --preset {kind}")
    preset = preset.with_overrides(seed=args.seed, iterations=args.iterations, device=device)
    preset = dataclasses.replace(preset, texture=dataclasses.replace(preset.texture, device=device))
    if args.no_refine:
        preset = dataclasses.replace(preset, refine_texture=False)
    if args.uv_charts:
        preset = dataclasses.replace(preset, mesh=dataclasses.replace(preset.mesh, uv_charts=args.uv_charts))

    prompt = args.prompt or ""
    image = None
    if kind in IMAGE_KINDS:
        if args.image is None:
            raise InputError(f"{model_name} is an image-to-3D model: give --image PATH (an RGBA PNG of the object on a "
                             "transparent background)")
        image = _read_rgba(Path(args.image))
        if kind == "zero123" and prompt.strip():
            print("note: Stable Zero123 takes no text; --prompt is ignored", file=sys.stderr)
    else:
        if not prompt.strip():
            raise InputError(f"{model_name} is a text-to-3D model: give --prompt TEXT describing the object")
        if args.image is not None:
            print(f"note: {model_name} is text-to-3D; --image is ignored", file=sys.stderr)
    condition = make_condition(kind, prompt, args.negative_prompt, image, elevation=args.elevation, size=preset.sir.image_size)
    return preset, condition


def _save_views(result, folder: Path) -> int:
    """Write the initial views (init_XX.png) and the last SIR targets (target_XX.png) into
    ``folder``: first into a temporary folder beside it, then moved in, so no file is half-written."""
    import numpy as np
    from PIL import Image

    sets = [("init", result.sir.init_views), ("target", result.sir.last_targets)]
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it owner-only; the folder should look like any other
        names = []
        for prefix, images in sets:
            if images is None:
                continue
            arr = (images.detach().float().clamp(0, 1).cpu().numpy() * 255.0 + 0.5).astype(np.uint8)
            for i, view in enumerate(arr):
                names.append(f"{prefix}_{i:02d}.png")
                Image.fromarray(view).save(tmp / names[-1], format="PNG")
        if not folder.exists():
            os.replace(tmp, folder)
        else:
            for name in names:
                os.replace(tmp / name, folder / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return len(names)


def cmd_generate(args: argparse.Namespace) -> None:
    # Everything that can be checked without the model is checked first: loading takes a while.
    if args.image is None and args.prompt is None:
        raise InputError("nothing to generate from: give --image PATH (image-to-3D) and/or --prompt TEXT (text-to-3D)")
    from .export import SAVE_EXTENSIONS, save_mesh

    out = Path(args.out)
    if out.suffix.lower() not in SAVE_EXTENSIONS:
        raise InputError(f"--out must end in {' or '.join(SAVE_EXTENSIONS)} (got '{out.name}')")
    _check_output_folder(out, "--out")
    ply = Path(args.save_ply) if args.save_ply else None
    if ply is not None:
        if ply.suffix.lower() != ".ply":
            raise InputError(f"--save-ply must end in .ply (got '{ply.name}'): it writes the 3D Gaussians as a 3DGS PLY")
        _check_output_folder(ply, "--save-ply")
    views_dir = Path(args.save_views) if args.save_views else None
    if views_dir is not None:
        if views_dir.exists() and not views_dir.is_dir():
            raise InputError(f"--save-views {views_dir} is a file, not a folder: choose a folder")
        _check_output_folder(views_dir, "--save-views")
    if args.iterations is not None and args.iterations < 0:
        raise InputError(f"--iterations must be 0 or more (got {args.iterations})")
    if args.seed is not None and not 0 <= args.seed < 2**63:
        raise InputError(f"--seed must be between 0 and 2^63 - 1 (got {args.seed})")
    if args.preset is not None and args.preset not in PRESET_NAMES:
        raise InputError(f"unknown --preset {args.preset!r}: use one of {', '.join(PRESET_NAMES)}")

    import torch

    from .mv_loading import load_model
    from .pipeline import STAGES, generate

    if args.device == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda, but PyTorch sees no CUDA GPU: use --device cpu (slow) or install a CUDA build of PyTorch")
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    dtype = {"auto": None, "fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[args.dtype]

    # With a local diffusers folder the kind is known before loading: inputs are checked first.
    kind = _peek_kind(args.model)
    inputs = _generate_inputs(args, kind, device) if kind else None
    if kind is None and args.image is not None:  # a hub id or a checkpoint: check the image before the download / load
        _read_rgba(Path(args.image))
    if sys.stderr.isatty():  # like the progress bars: feedback for a person waiting, nothing in logs / pipes
        print(f"loading {args.model} ...", file=sys.stderr)
    with _quiet_model_loading():
        model = load_model(args.model, device=device, dtype=dtype, download_dir=args.download_dir)
    preset, condition = inputs if inputs and kind == model.kind else _generate_inputs(args, model.kind, device)
    print(f"generating with {model.display_name} ({model.kind}): preset {preset.name}{' (tiny)' if args.tiny else ''}, "
          f"{preset.sir.iterations} iteration{'' if preset.sir.iterations == 1 else 's'}, seed {preset.sir.seed}, "
          f"{'with' if preset.refine_texture else 'without'} texture refinement, on {device} ({str(model.dtype).removeprefix('torch.')})",
          file=sys.stderr)

    progress, close_bars = _stage_progress()
    try:
        result = generate(model, condition, preset, mesh=True, progress=progress)
    finally:
        close_bars()
    mesh, gaussians = result.mesh, result.gaussians
    # Refuse what could not be written before writing anything.
    if mesh is None or mesh.num_faces == 0:
        raise InputError("the generated mesh is empty (the Gaussians left no surface): try another --seed or more --iterations")
    gaussians.check_finite("the generated Gaussians")

    written = []
    if ply is not None:
        gaussians.save_ply(ply)
        written.append(f"{ply} ({gaussians.num} Gaussians)")
    if views_dir is not None:
        n = _save_views(result, views_dir)
        written.append(f"{views_dir}/ ({n} PNGs: init_XX = initial views, target_XX = last SIR targets)")
    path = save_mesh(mesh, out)  # the main output last: once it exists, the run is complete
    written.append(f"{path}")

    stage_times = ", ".join(f"{s} {result.timings[s]:.1f} s" for s in STAGES if s in result.timings)
    print(f"done in {result.timings['total']:.1f} s ({stage_times})")
    print(f"NFEs: {result.nfe['total']} (sir {result.nfe['sir']}, texture {result.nfe['texture']})")
    print(f"Gaussians: {gaussians.num}")
    texture = f", {mesh.texture.shape[1]}x{mesh.texture.shape[0]} texture" if mesh.has_texture else ""
    print(f"mesh: {mesh.num_vertices} vertices, {mesh.num_faces} triangles{texture}")
    for line in written:
        print(f"wrote {line}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="microdreamer", description="MicroDreamer: fast 3D Gaussian reconstruction and generation.")
    sub = p.add_subparsers(dest="command", required=True)

    g = sub.add_parser(
        "generate", help="the whole MicroDreamer pipeline: an image and/or a prompt -> 3D Gaussians -> textured mesh (.glb/.obj)",
        description="Generate a textured 3D mesh with MicroDreamer: SIR on 3D Gaussians (stage 'sir'), mesh extraction and "
                    "texture baking ('mesh'), then diffusion-guided texture refinement ('texture'). Image-to-3D with "
                    "Stable Zero123 or ImageDream (--image, plus an optional --prompt for ImageDream), text-to-3D with "
                    "MVDream (--prompt). Progress bars go to stderr (when it is a terminal), the summary to stdout.")
    g.add_argument("--image", metavar="PATH", help="input image for image-to-3D: an RGBA PNG of the object on a transparent "
                   "background (the alpha is the mask); re-centred to fill 80%% of the frame")
    g.add_argument("--prompt", metavar="TEXT", help="text prompt: required by MVDream, optional for ImageDream (may be "
                   "empty), ignored by Stable Zero123. Give --image, --prompt or both")
    g.add_argument("--negative-prompt", metavar="TEXT", default=None,
                   help="negative prompt (default: the paper's 'ugly, bad anatomy, ...' for MVDream/ImageDream, none for Stable Zero123)")
    g.add_argument("--model", required=True, metavar="PATH_OR_HUB_ID",
                   help="a diffusers folder, a single-file MVDream/ImageDream checkpoint (.safetensors/.pt/.ckpt/.pth/.bin) or a hub id "
                        "(ashawkey/mvdream-sd2.1-diffusers, ashawkey/imagedream-ipmv-diffusers, ashawkey/stable-zero123-diffusers); "
                        "the kind of model is detected from its files")
    g.add_argument("--preset", metavar="NAME", default=None,
                   help=f"{', '.join(PRESET_NAMES)} (default: the preset of the loaded model's kind)")
    g.add_argument("--out", required=True, help="output mesh: .glb (texture embedded) or .obj (+ .mtl + .png)")
    g.add_argument("--seed", type=int, default=None, help="random seed of every stage (default: the preset's, 0)")
    g.add_argument("--iterations", type=int, default=None, metavar="K", help="SIR iterations K (default: the preset's: 20 zero123, 30 imagedream/mvdream; 2 with --tiny)")
    g.add_argument("--save-ply", metavar="PATH", default=None, help="also write the 3D Gaussians as a standard 3DGS .ply")
    g.add_argument("--save-views", metavar="DIR", default=None,
                   help="also write the initial multi-view samples (init_XX.png) and the last SIR targets (target_XX.png) into DIR (created if missing)")
    g.add_argument("--elevation", type=float, default=0.0, metavar="DEG",
                   help="camera elevation of the input image in degrees, negative = from above (default 0): the SIR cameras "
                        "are drawn around it and Stable Zero123 is conditioned on it")
    g.add_argument("--uv-charts", choices=("quality", "fast"), default=None,
                   help="uv unwrapping settings: quality (xatlas' defaults, the preset's) or fast (no chart refinement, "
                        "charts <= 1%% of the surface: 20-80x faster unwrap, same texture use within a few %% in our measurements)")
    g.add_argument("--no-refine", action="store_true", help="skip the texture refinement (stage 2): the mesh keeps its baked texture")
    g.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="auto (CUDA if available), cpu or cuda (default auto)")
    g.add_argument("--dtype", choices=("auto", "fp32", "fp16", "bf16"), default="auto",
                   help="model weights' precision (default auto: fp16 on CUDA, fp32 on CPU)")
    g.add_argument("--download-dir", metavar="DIR", default=None,
                   help="where hub ids are downloaded, as DIR/owner--name, and looked up first (offline: put the files there); "
                        "default: the Hugging Face cache (~/.cache/huggingface, or $HF_HOME)")
    g.add_argument("--tiny", action="store_true",
                   help="test/smoke mode: shrink the preset to tiny sizes (32 px diffusion, 64 px renders, 2 iterations, "
                        "small mesh and texture) for tiny random models")
    g.set_defaults(func=cmd_generate)

    r = sub.add_parser("reconstruct", help="fit 3D Gaussians to posed RGBA views (transforms.json)")
    r.add_argument("views_dir", help="folder with transforms.json and RGBA PNGs (NeRF-synthetic layout, OpenGL c2w)")
    r.add_argument("--out", required=True, help="output .ply (standard 3DGS layout)")
    r.add_argument("--steps", type=int, default=500, help="optimiser steps (default 500)")
    r.add_argument("--resolution", type=int, default=None, help="square working resolution (default: the images' own)")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--device", default="auto", help="auto (CUDA if available), cpu or cuda")
    r.set_defaults(func=cmd_reconstruct)

    x = sub.add_parser("mesh", help="extract a textured mesh (.glb/.obj) from 3D Gaussians (.ply)")
    x.add_argument("model", help="3D Gaussian .ply (standard 3DGS layout, e.g. from `reconstruct`)")
    x.add_argument("--out", required=True, help="output .glb (texture embedded) or .obj (+ .mtl + .png)")
    x.add_argument("--resolution", type=int, default=128, help="density grid samples per axis for marching cubes (default 128)")
    x.add_argument("--faces", type=int, default=50_000, help="decimate to at most this many triangles, 0 = keep all (default 50000)")
    x.add_argument("--texture-size", type=int, default=1024, help="square texture size in pixels (default 1024)")
    x.add_argument("--no-texture", action="store_true", help="skip uv unwrapping and baking: vertex colours only (much faster)")
    x.set_defaults(func=cmd_mesh)

    d = sub.add_parser("render", help="render a .ply or .glb/.obj model from the cameras of a transforms.json")
    d.add_argument("model", help=".ply (3D Gaussians) or .glb/.gltf/.obj (mesh)")
    d.add_argument("--cameras", required=True, help="transforms.json (or its folder) giving the cameras")
    d.add_argument("--out", required=True, help="output folder: transforms.json + images/r_<i>.png (RGBA)")
    d.add_argument("--resolution", type=int, default=None, help="square image size (default: that of the camera file's images)")
    d.set_defaults(func=cmd_render)

    m = sub.add_parser("demo", help="the embedded default: build a textured object in code, render it, reconstruct it, export a textured GLB")
    m.add_argument("--out", default="microdreamer_demo", help="output folder (default ./microdreamer_demo)")
    m.add_argument("--steps", type=int, default=300, help="optimiser steps (default 300)")
    m.add_argument("--resolution", type=int, default=128, help="view size (default 128)")
    m.add_argument("--seed", type=int, default=0)
    m.set_defaults(func=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, Cancelled):
        print("interrupted: no output was written for the unfinished step", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
