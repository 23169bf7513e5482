"""Make the template browser's thumbnails: one ``<workflow>.jpg`` beside each UI workflow of example_workflows/.

ComfyUI's template browser shows ``example_workflows/<name>.jpg`` on the card of ``<name>.json``,
cropped to a square (comfyui-frontend-package 1.32.9; core templates ship 350-400 px squares), so
each thumbnail is a 400 x 400 JPEG.

Every picture is a real render of what this pack makes, from the embedded demo
(``microdreamer demo``: the demo object rendered from 8 views, reconstructed as 3D Gaussians, then
meshed and textured by the same mesh stage every workflow ends in). The generation workflows
(MVDream, ImageDream, Zero123, Remove Background) show that textured mesh too, each from another
side: the tiny random
diffusion models this repository tests with cannot make a meaningful text- or image-to-3D result,
and the real models are not downloaded here. ``reconstruct_posed_views`` shows the reconstructed
Gaussians, ``own_views_to_glb`` four of the demo's input views above the textured mesh. The mesh
is lit by one soft directional light (as a 3D viewer shows it); the Gaussians are shown as they
are. Each render is made at twice the size and downsampled, over a dark backdrop like ComfyUI's.

    python tools/make_thumbnails.py                  # runs the demo once, cached in the temp folder
    python tools/make_thumbnails.py --demo DEMO_DIR  # reuse a `microdreamer demo --out DEMO_DIR` folder

The demo (seed 0) and the renders (the pure-torch rasterisers, on the CPU) are deterministic: two
runs from scratch gave byte-identical files.
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from microdreamer_core.eval.demo import TRAIN_AZIMUTHS, run_demo  # noqa: E402
from microdreamer_core.io.mesh_files import load_mesh  # noqa: E402
from microdreamer_core.io.ply import load_ply  # noqa: E402
from microdreamer_core.io.transforms import load_transforms  # noqa: E402
from microdreamer_core.render.gaussians import render_gaussians  # noqa: E402
from microdreamer_core.render.mesh import render_mesh  # noqa: E402
from microdreamer_core.scene.cameras import orbit_cameras  # noqa: E402
from microdreamer_core.scene.gaussians import Gaussians  # noqa: E402
from microdreamer_core.scene.mesh import Mesh  # noqa: E402

WORKFLOWS = REPO / "example_workflows"
SIZE = 400
SUPERSAMPLE = 2
QUALITY = 85
ELEVATION, RADIUS = -20.0, 1.3
"""The 3/4 views look from 20 degrees above (negative elevation), 1.3 units from the centre: the
object (radius 0.55) fills about three quarters of the picture."""
BACKDROP = ((0.22, 0.23, 0.26), (0.09, 0.095, 0.11))
"""Top and bottom colour of the vertical gradient behind the object."""
LIGHT = (0.5, 0.8, 0.6)
"""Direction towards the light (world, y up)."""
AMBIENT = 0.6
"""Share of the colour that the light does not shade."""
STRIP_AZIMUTHS = (0.0, 90.0, 180.0, 270.0)
"""The demo's input views shown above the mesh on own_views_to_glb (the workflow's orbit)."""
STRIP_CROP = 0.6
"""Share of each input view's width kept round its centre (the demo object fills about half of it)."""


def demo_folder(given: Path | None) -> Path:
    """The ``microdreamer demo`` folder: ``given``, else the cached run (made on the first call)."""
    if given is not None:
        return given
    cache = Path(tempfile.gettempdir()) / "microdreamer_thumbnails_demo"
    if not (cache / "report.json").is_file():
        print(f"running the demo into {cache} (a few minutes on a CPU; cached for the next run)")
        run_demo(cache, seed=0, device="cpu")
    return cache


def _backdrop(height: int, width: int) -> torch.Tensor:
    t = torch.linspace(0.0, 1.0, height).view(height, 1, 1)
    top, bottom = torch.tensor(BACKDROP[0]), torch.tensor(BACKDROP[1])
    return (top * (1 - t) + bottom * t).expand(height, width, 3)


def _over_backdrop(premultiplied: torch.Tensor, alpha: torch.Tensor) -> Image.Image:
    """(H, W, 3) colour premultiplied by (H, W, 1) alpha, over the backdrop, downsampled to the thumbnail."""
    rgb = premultiplied + (1 - alpha) * _backdrop(*premultiplied.shape[:2])
    pixels = (rgb.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    image = Image.fromarray(pixels)
    return image.resize((image.width // SUPERSAMPLE, image.height // SUPERSAMPLE), Image.Resampling.LANCZOS)


def _camera(azimuth: float, width: int, height: int):
    return orbit_cameras([ELEVATION], [azimuth], RADIUS, (width * SUPERSAMPLE, height * SUPERSAMPLE))


def render_textured_mesh(mesh: Mesh, azimuth: float, width: int = SIZE, height: int = SIZE) -> Image.Image:
    """The textured mesh from the 3/4 view at ``azimuth``, lit by one directional light."""
    out = render_mesh(mesh, _camera(azimuth, width, height), background=(0.0, 0.0, 0.0), backend="torch")
    light = torch.nn.functional.normalize(torch.tensor(LIGHT), dim=0)
    shade = AMBIENT + (1 - AMBIENT) * (out.normal[0] @ light).clamp(min=0)[..., None]
    return _over_backdrop(out.rgb[0] * shade, out.alpha[0])


def render_gaussians_view(gaussians: Gaussians, azimuth: float) -> Image.Image:
    """The 3D Gaussians from the 3/4 view at ``azimuth``."""
    out = render_gaussians(gaussians, _camera(azimuth, SIZE, SIZE), background=(0.0, 0.0, 0.0), backend="torch")
    return _over_backdrop(out.rgb[0], out.alpha[0])


def input_views_strip(demo: Path, width: int) -> Image.Image:
    """Four of the demo's input views side by side, on white (what own_views_to_glb takes)."""
    views = load_transforms(demo / "views")
    tiles = []
    for azimuth in STRIP_AZIMUTHS:
        rgba = views.images[TRAIN_AZIMUTHS.index(azimuth)]
        side = rgba.shape[1]
        lo = round(side * (1 - STRIP_CROP) / 2)
        rgba = rgba[lo : side - lo, lo : side - lo]
        rgb = rgba[..., :3] * rgba[..., 3:] + (1 - rgba[..., 3:])
        tiles.append((rgb * 255).round().to(torch.uint8).numpy())
    strip = Image.fromarray(np.concatenate(tiles, axis=1))
    return strip.resize((width, round(width * strip.height / strip.width)), Image.Resampling.LANCZOS)


def own_views_picture(demo: Path, mesh: Mesh, azimuth: float) -> Image.Image:
    """The input views in a row on top, the textured mesh made from them below."""
    strip = input_views_strip(demo, SIZE)
    picture = Image.new("RGB", (SIZE, SIZE))
    picture.paste(strip, (0, 0))
    picture.paste(render_textured_mesh(mesh, azimuth, SIZE, SIZE - strip.height), (0, strip.height))
    return picture


def thumbnails(demo: Path) -> dict[str, Callable[[], Image.Image]]:
    """What each workflow's thumbnail shows, by workflow name. The views go round the object (azimuth
    0 is its front, 90 its right side) so that cards showing the same mesh still differ."""
    mesh = load_mesh(demo / "model.glb")
    gaussians = load_ply(demo / "model.ply")
    return {
        "text_to_3d_mvdream": lambda: render_textured_mesh(mesh, 40.0),
        "image_to_3d_imagedream": lambda: render_textured_mesh(mesh, -40.0),
        "image_to_3d_zero123": lambda: render_textured_mesh(mesh, 140.0),
        "image_to_3d_remove_background": lambda: render_textured_mesh(mesh, -140.0),
        "own_views_to_glb": lambda: own_views_picture(demo, mesh, 40.0),
        "reconstruct_posed_views": lambda: render_gaussians_view(gaussians, 40.0),
    }


def jpeg_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=QUALITY, optimize=True)
    return buffer.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo", type=Path, help="a `microdreamer demo` output folder (default: run it once, cached)")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    demo = demo_folder(args.demo)
    makers = thumbnails(demo)
    workflows = sorted(p.stem for p in WORKFLOWS.glob("*.json"))
    if sorted(makers) != workflows:
        raise SystemExit(f"thumbnails are defined for {sorted(makers)} but the workflows are {workflows}")
    for name in workflows:
        data = jpeg_bytes(makers[name]())
        (WORKFLOWS / f"{name}.jpg").write_bytes(data)
        print(f"wrote example_workflows/{name}.jpg ({len(data) // 1024} KB)")
    print(f"done in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
