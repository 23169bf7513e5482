"""The ``microdreamer`` command line: reconstruct, mesh, render and the embedded demo.

Every user error ends in one line on stderr that names the problem and the fix, a non-zero exit
code, and no partial output file (outputs are written atomically).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


from .errors import Cancelled, InputError

MESH_SUFFIXES = (".glb", ".gltf", ".obj")


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
    from .texture import gaussians_to_mesh
    from .gaussians import Gaussians

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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="microdreamer", description="MicroDreamer: fast 3D Gaussian reconstruction and generation.")
    sub = p.add_subparsers(dest="command", required=True)

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
