"""Backend selection (render.backends) on any machine, and the CUDA backends against our torch reference.

The CUDA comparisons run where a GPU and the optional packages exist and are skipped with the reason
elsewhere; CI has no GPU. On a lent GPU:
``pip install gsplat diffrp-nvdiffrast && python -m pytest tests/render/test_backends.py -v``.
Documented tolerances: Gaussian rgb/alpha max abs difference <= 2e-3 (gsplat stops compositing a
pixel at T < 1e-4 and sums in another order), mesh coverage identical except edge pixels.
"""

import importlib
import importlib.util
import warnings

import pytest
import torch

import microdreamer_core.render.backends as backends
from microdreamer_core.render.backends import load_backend, resolve_gaussian_backend, resolve_mesh_backend
from microdreamer_core.render.gaussians import rasterize_gaussians, render_gaussians
from microdreamer_core.render.mesh import rasterize
from microdreamer_core.scene.cameras import orbit_cameras
from microdreamer_core.scene.gaussians import init_ball

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")


@pytest.fixture
def fresh_probe():
    """An empty probe cache before and after the test, so a test's fakes never leak."""
    backends._probe.cache_clear()
    yield
    backends._probe.cache_clear()


# ---------------------------------------------------------------------------- selection
def test_backend_selection_and_gsplat_needs_cuda():
    g = torch.Generator().manual_seed(6)
    scene = {
        "means": torch.rand(10, 3, generator=g) - 0.5,
        "quats": torch.randn(10, 4, generator=g),
        "scales": 0.02 + 0.08 * torch.rand(10, 3, generator=g),
        "opacities": 0.05 + 0.9 * torch.rand(10, generator=g),
        "colors": torch.rand(10, 3, generator=g),
    }
    cams = orbit_cameras([0.0], [0.0], 2.0, 8)
    kw = {"viewmats": cams.w2c_opencv(), "Ks": cams.intrinsics(), "width": 8, "height": 8}
    auto = rasterize_gaussians(**scene, backend="auto", **kw)
    torch_out = rasterize_gaussians(**scene, backend="torch", **kw)
    assert torch.equal(auto.rgb, torch_out.rgb)
    with pytest.raises(RuntimeError, match=r"(?s)gsplat.*CUDA.*backend='torch'"):
        rasterize_gaussians(**scene, backend="gsplat", **kw)
    with pytest.raises(ValueError):
        rasterize_gaussians(**scene, backend="cuda", **kw)


def test_unknown_or_unavailable_backends_fail_clearly():
    faces = torch.tensor([[0, 1, 2]])
    pos = torch.tensor([[[-0.5, -0.5, 0.0, 1.0], [0.5, -0.5, 0.0, 1.0], [0.0, 0.5, 0.0, 1.0]]])
    with pytest.raises(RuntimeError, match="backend='torch'"):
        rasterize(pos, faces, (8, 8), backend="nvdiffrast")
    with pytest.raises(ValueError, match="unknown rasteriser backend"):
        rasterize(pos, faces, (8, 8), backend="opengl")
    assert (rasterize(pos, faces, (8, 8), backend="auto") > 0).any()  # CPU tensors -> torch


@pytest.mark.parametrize(
    "resolve,cuda_name,others",
    [(resolve_gaussian_backend, "gsplat", ""), (resolve_mesh_backend, "nvdiffrast", ", 'warp'")],
)
def test_one_policy_for_both_families(resolve, cuda_name, others, fresh_probe, monkeypatch):
    monkeypatch.setitem(backends._PACKAGES, "warp", backends._CudaPackage("microdreamer_no_such_module", "pip x"))
    cpu = torch.zeros(3)
    assert resolve("torch", cpu) == "torch"
    assert resolve("auto", cpu) == "torch"  # (meshes: warp is made missing here; tests/render/test_mesh_warp.py)
    assert backends._probe.cache_info().currsize == (1 if others else 0)  # CPU tensors never import a CUDA package
    names = f"use 'auto', 'torch'{others} or '{cuda_name}'"
    with pytest.raises(ValueError, match=f"unknown rasteriser backend 'cuda'; {names}"):
        resolve("cuda", cpu)
    with pytest.raises(RuntimeError) as err:
        resolve(cuda_name, cpu)
    message = str(err.value)
    assert (
        "\n" not in message and f"backend='{cuda_name}' needs CUDA tensors" in message and "backend='torch'" in message
    )


def test_probe_is_cached_and_a_missing_package_names_the_fix(monkeypatch, fresh_probe):
    calls = []
    real_import = importlib.import_module

    def counting_import(name, *args):
        calls.append(name)
        return real_import(name, *args)

    monkeypatch.setattr(backends.importlib, "import_module", counting_import)
    monkeypatch.setitem(
        backends._PACKAGES, "gsplat", backends._CudaPackage("microdreamer_no_such_module", "pip install gsplat")
    )
    for _ in range(3):
        with pytest.raises(RuntimeError) as err:
            load_backend("gsplat")
    assert calls == ["microdreamer_no_such_module"]  # probed once, the failure is cached
    message = str(err.value)
    assert "\n" not in message and "ModuleNotFoundError" in message
    assert "install it with `pip install gsplat`" in message and "backend='torch'" in message

    monkeypatch.setitem(
        backends._PACKAGES, "nvdiffrast", backends._CudaPackage("math", "pip install diffrp-nvdiffrast")
    )
    assert load_backend("nvdiffrast") is load_backend("nvdiffrast") is real_import("math")
    assert calls == ["microdreamer_no_such_module", "math"]


def test_installed_but_broken_package_warns_once(monkeypatch, fresh_probe):
    def broken(module):
        raise OSError("plugin build failed\nlong compiler log")

    monkeypatch.setitem(
        backends._PACKAGES, "nvdiffrast", backends._CudaPackage("math", "pip install diffrp-nvdiffrast", broken)
    )
    with pytest.warns(RuntimeWarning, match=r"nvdiffrast is installed but unusable \(OSError: plugin build failed\)"):
        backends._probe("nvdiffrast")
    with warnings.catch_warnings(record=True) as again:
        warnings.simplefilter("always")
        with pytest.raises(
            RuntimeError,
            match=r"^backend='nvdiffrast' requested but math could not be loaded \(OSError: plugin build failed\)",
        ):
            load_backend("nvdiffrast")
    assert again == []  # the failure is cached: reported once per process


def test_nvdiffrast_finds_its_plugin_by_name_after_torch_loads_it_from_a_path(monkeypatch):
    """nvdiffrast imports its plugin by name after torch loaded it from a file; a pybind11 3 module loaded so is
    not in sys.modules (the H100's ModuleNotFoundError), so the probe registers it while building."""
    import sys
    import types

    import torch.utils.cpp_extension as cpp_extension

    plugin = types.ModuleType("microdreamer_fake_nvdiffrast_plugin")
    from_path = lambda name, path, is_python_module: plugin  # noqa: E731  (loads, registers nothing)
    monkeypatch.setattr(cpp_extension, "_import_module_from_library", from_path)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)

    class FakeNvdiffrast:  # nvdiffrast.torch's sequence in _get_plugin
        @staticmethod
        def RasterizeCudaContext(device):
            cpp_extension._import_module_from_library(plugin.__name__, "/build/dir", True)
            return importlib.import_module(plugin.__name__)

    try:
        assert backends._build_nvdiffrast_plugin(FakeNvdiffrast) is plugin
    finally:
        sys.modules.pop(plugin.__name__, None)
    assert cpp_extension._import_module_from_library is from_path  # restored after the build


# ---------------------------------------------------------------------------- CUDA backends
def _scene():
    g = init_ball(5000, generator=torch.Generator().manual_seed(0))
    g.opacities[:] = torch.linspace(-2.0, 3.0, 5000)
    g.sh0[:] = torch.randn(5000, 1, 3, generator=torch.Generator().manual_seed(1))
    return g, orbit_cameras([-20.0, 10.0] * 3, [0, 60, 120, 180, 240, 300], 2.0, 128)


@needs_cuda
@pytest.mark.skipif(importlib.util.find_spec("gsplat") is None, reason="gsplat is not installed (pip install gsplat)")
def test_gsplat_matches_torch_backend():
    g, cams = _scene()
    g, cams = g.to("cuda"), cams.to("cuda")
    ref = render_gaussians(g, cams, backend="torch")
    out = render_gaussians(g, cams, backend="gsplat")
    assert (out.rgb - ref.rgb).abs().max() < 2e-3
    assert (out.alpha - ref.alpha).abs().max() < 2e-3
    visible = ref.alpha[..., 0] > 0.5
    assert ((out.depth - ref.depth).abs()[..., 0][visible] / ref.depth[..., 0][visible]).max() < 1e-2


@needs_cuda
@pytest.mark.skipif(
    importlib.util.find_spec("nvdiffrast") is None, reason="nvdiffrast is not installed (pip install diffrp-nvdiffrast)"
)
def test_nvdiffrast_matches_torch_backend():
    from microdreamer_core.eval.demo_object import make_demo_mesh
    from microdreamer_core.render.mesh import render_mesh

    mesh = make_demo_mesh(texture_size=128).to("cuda")
    cams = orbit_cameras([-30.0, 0.0, 20.0], [0.0, 120.0, 240.0], 2.0, 256).to("cuda")
    ref = render_mesh(mesh, cams, backend="torch")
    out = render_mesh(mesh, cams, backend="nvdiffrast")
    differ = (out.alpha != ref.alpha).float().mean()
    assert differ < 0.005  # edge pixels only
    both = (out.alpha[..., 0] > 0) & (ref.alpha[..., 0] > 0)
    assert (out.rgb - ref.rgb).abs()[both].mean() < 0.01
