"""The SPLAT conversion nodes, inside ComfyUI's own node API.

ComfyUI 0.3.75 (the release that runs here) has no SPLAT type, so the real check there is that
the pack loads and leaves the two nodes out. Newer releases define ``io.Splat`` and
``Types.SPLAT(positions, scales, rotations, opacities, sh, counts=None)``; no such release can
be installed here (PyPI carries none), so the second test gives 0.3.75 the in-repo double of current
releases (``tests/comfy_double.py``: that socket and class, with the constructor signature of
ComfyUI's published source) and then runs the pack's registration, the V3 schema machinery and
both nodes for real.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.comfyui

_SCRIPT = textwrap.dedent(
    """
    import importlib.util, json, sys
    sys.argv = ["main.py", "--cpu"]
    comfy_dir, repo, stand_in = sys.stdin.read().split("\\n")[:3]
    sys.path.insert(0, comfy_dir)
    import comfy.options
    comfy.options.enable_args_parsing()  # what main.py does, so --cpu is honoured
    import torch
    import comfy_api.latest as latest

    if stand_in == "1":  # current releases' types and sockets: the in-repo double (tests/comfy_double.py)
        sys.path.insert(0, repo + "/tests")
        import comfy_double
        comfy_double.install(latest)

    spec = importlib.util.spec_from_file_location("md_pack", repo + "/__init__.py",
                                                  submodule_search_locations=[repo])
    pack = importlib.util.module_from_spec(spec)
    sys.modules["md_pack"] = pack
    spec.loader.exec_module(pack)
    import asyncio
    ext = asyncio.run(pack.comfy_entrypoint())
    ids = [n.define_schema().node_id for n in asyncio.run(ext.get_node_list())]
    out = {"ids": ids}
    if stand_in == "1":
        from md_pack.nodes.splat import MicroDreamerGaussiansToSplat as To, MicroDreamerSplatToGaussians as From
        from microdreamer_core.scene.gaussians import init_ball
        for node in (To, From):  # the V3 machinery validates and serialises the schema
            info = node.GET_NODE_INFO_V1()
            out[node.__name__] = {"input": list(info["input"]["required"]), "output": list(info["output"])}
        g = init_ball(300, generator=torch.Generator().manual_seed(0))
        g.sh0 = torch.randn_like(g.sh0)
        splat = To.execute(g).result[0]
        back = From.execute(splat, 0).result[0]
        out["splat_type"] = type(splat).__name__
        fields = (splat.positions, splat.scales, splat.rotations, splat.opacities, splat.sh)
        out["shapes"] = [list(t.shape) for t in fields]
        names = ("means", "scales", "opacities", "sh0")
        out["max_err"] = max(float((getattr(back, k) - getattr(g, k)).abs().max()) for k in names)
        out["y_flipped"] = bool(torch.allclose(splat.positions[0, :, 1], -g.means[:, 1]))
    print("RESULT" + json.dumps(out))
    """
)


def _run(stand_in: bool) -> dict:
    from comfy_server import run_with_comfyui

    return run_with_comfyui(_SCRIPT, str(int(stand_in)))[0]


def test_comfyui_without_splat_loads_the_pack_without_the_splat_nodes():
    ids = _run(stand_in=False)["ids"]
    assert "MicroDreamerSIRReconstruct3DGS" in ids
    assert "MicroDreamerGaussiansToSplat" not in ids and "MicroDreamerSplatToGaussians" not in ids


def test_comfyui_with_splat_registers_and_runs_both_conversions():
    out = _run(stand_in=True)
    assert {"MicroDreamerGaussiansToSplat", "MicroDreamerSplatToGaussians"} <= set(out["ids"])
    assert out["MicroDreamerGaussiansToSplat"] == {"input": ["gaussians"], "output": ["SPLAT"]}
    assert out["MicroDreamerSplatToGaussians"] == {"input": ["splat", "batch_index"], "output": ["MD_GAUSSIANS"]}
    assert out["splat_type"] == "SPLAT"
    assert out["shapes"] == [[1, 300, 3], [1, 300, 3], [1, 300, 4], [1, 300, 1], [1, 300, 1, 3]]
    assert out["y_flipped"] and out["max_err"] < 1e-5
