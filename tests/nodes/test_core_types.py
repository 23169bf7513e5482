"""The pack against ComfyUI's core 3D types and newer schema fields: on the real 0.3.75, and on
0.3.75 given the in-repo double of current releases' signatures (``tests/comfy_double.py``).

Both runs import the real ComfyUI modules in a subprocess, register the pack through its entry
point, serialise every node schema with ComfyUI's own V3 machinery and execute the savers and the
MESH conversions for real (files are written to a temporary output folder and read back).
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.comfyui

_SCRIPT = textwrap.dedent(
    """
    import asyncio, importlib.util, json, sys
    sys.argv = ["main.py", "--cpu"]
    comfy_dir, repo, mode, out_dir = sys.stdin.read().split("\\n")[:4]
    sys.path.insert(0, comfy_dir)
    sys.path.insert(0, repo + "/tests")
    import comfy.options
    comfy.options.enable_args_parsing()
    import torch
    import comfy_api.latest as latest
    import folder_paths
    folder_paths.set_output_directory(out_dir)
    if mode == "double":
        import comfy_double
        comfy_double.install(latest)

    spec = importlib.util.spec_from_file_location("md_pack", repo + "/__init__.py",
                                                  submodule_search_locations=[repo])
    pack = importlib.util.module_from_spec(spec)
    sys.modules["md_pack"] = pack
    spec.loader.exec_module(pack)
    nodes = asyncio.run(asyncio.run(pack.comfy_entrypoint()).get_node_list())
    out = {"info": {}}
    for node in nodes:
        info = node.GET_NODE_INFO_V1()
        out["info"][info["name"]] = {
            "required": {k: v[1] if len(v) > 1 else {} for k, v in info["input"]["required"].items()},
            "optional": {k: v[1] if len(v) > 1 else {} for k, v in info["input"].get("optional", {}).items()},
            "output": list(info["output"]),
            "output_name": list(info["output_name"]),
            "aliases": getattr(node.GET_SCHEMA(), "search_aliases", None),
        }

    from md_pack.nodes.core_mesh import MicroDreamerComfyMeshToMesh, MicroDreamerMeshToComfyMesh
    from md_pack.nodes.output import MicroDreamerSaveGaussians, MicroDreamerSaveGLB
    from microdreamer_core.scene.gaussians import init_ball
    from microdreamer_core.scene.mesh import Mesh

    g = torch.Generator().manual_seed(0)
    verts = torch.tensor([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=torch.float32)
    faces = torch.tensor([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]])
    mesh = Mesh(verts, faces, uvs=torch.rand(4, 2, generator=g), texture=torch.rand(8, 8, 3, generator=g),
                vertex_colors=torch.rand(4, 3, generator=g)).compute_vertex_normals()

    saved = MicroDreamerSaveGLB.execute(mesh, "microdreamer/mesh").result
    out["glb"] = {"model_file": saved[0], "count": len(saved)}
    if len(saved) > 1:
        f3d = saved[1]
        out["glb"].update(format=f3d.format, magic=f3d.get_bytes()[:4].decode(),
                          same=f3d.get_bytes() == open(out_dir + "/" + saved[0], "rb").read())
    saved = MicroDreamerSaveGaussians.execute(init_ball(50, generator=g), "microdreamer/splat").result
    out["ply"] = {"model_file": saved[0], "count": len(saved)}
    if len(saved) > 1:
        out["ply"].update(format=saved[1].format, magic=saved[1].get_bytes()[:3].decode())

    core = MicroDreamerMeshToComfyMesh.execute(mesh).result[0]
    out["core_fields"] = {k: list(v.shape) for k, v in vars(core).items() if isinstance(v, torch.Tensor)}
    if getattr(core, "uvs", None) is not None:
        out["uv_flipped"] = bool(torch.allclose(core.uvs[0, :, 1], 1 - mesh.uvs[:, 1]))
    back = MicroDreamerComfyMeshToMesh.execute(core, 0).result[0]
    def err(a, b):
        return None if a is None or b is None else float((a - b).abs().max())
    out["round_trip"] = {k: err(getattr(back, k), getattr(mesh, k))
                         for k in ("vertices", "uvs", "texture", "vertex_colors", "normals")}
    out["round_trip"]["faces_equal"] = bool(torch.equal(back.faces, mesh.faces))

    from md_pack.nodes.preview import MicroDreamerTurntable
    spin = MicroDreamerTurntable.execute(3, -15.0, 16, "#000000", mesh=mesh).result[0]
    out["turntable"] = {"shape": list(spin.shape), "dtype": str(spin.dtype), "corner": spin[:, 0, 0].tolist(),
                        "spins": float((spin[1] - spin[0]).abs().mean())}
    for kwargs in ({}, {"mesh": mesh, "gaussians": init_ball(10)}):
        try:
            MicroDreamerTurntable.execute(3, -15.0, 16, "#000000", **kwargs)
        except Exception as e:
            out["turntable"].setdefault("refused", []).append(f"{type(e).__name__}: {e}")

    if mode == "double":  # a zero-padded batch of two items, as core's batch helpers make
        small = Mesh(verts[:3], faces[:1], uvs=torch.rand(3, 2, generator=g))
        pad_v = torch.zeros(2, 4, 3); pad_v[0] = verts; pad_v[1, :3] = small.vertices
        pad_f = torch.zeros(2, 4, 3, dtype=torch.int64); pad_f[0] = faces; pad_f[1, :1] = small.faces
        pad_uv = torch.zeros(2, 4, 2); pad_uv[1, :3, 0] = small.uvs[:, 0]; pad_uv[1, :3, 1] = 1 - small.uvs[:, 1]
        batch = latest.Types.MESH(pad_v, pad_f, uvs=pad_uv, texture=torch.rand(2, 4, 4, 3, generator=g),
                                  vertex_counts=torch.tensor([4, 3]), face_counts=torch.tensor([4, 1]))
        item = MicroDreamerComfyMeshToMesh.execute(batch, 1).result[0]
        out["padded_item"] = {"V": item.num_vertices, "F": item.num_faces,
                              "uv_err": float((item.uvs - small.uvs).abs().max()),
                              "texture_is_item_1": bool(torch.equal(item.texture, batch.texture[1]))}
        try:
            MicroDreamerComfyMeshToMesh.execute(batch, 5)
        except Exception as e:
            out["bad_index"] = f"{type(e).__name__}: {e}"
    print("RESULT" + json.dumps(out))
    """
)


def _run(mode: str, tmp_path: Path) -> dict:
    from comfy_server import run_with_comfyui

    return run_with_comfyui(_SCRIPT, mode, str(tmp_path))[0]


@pytest.fixture(scope="module")
def real(tmp_path_factory) -> dict:
    return _run("real", tmp_path_factory.mktemp("out-real"))


@pytest.fixture(scope="module")
def double(tmp_path_factory) -> dict:
    return _run("double", tmp_path_factory.mktemp("out-double"))


def test_on_0_3_75_savers_output_the_path_core_preview3d_takes(real):
    for node in ("MicroDreamerSaveGLB", "MicroDreamerSaveGaussians"):
        assert real["info"][node]["output"] == ["STRING"]
        assert real["info"][node]["output_name"] == ["model_file"]
    assert real["glb"] == {"model_file": "microdreamer/mesh_00001_.glb", "count": 1}
    assert real["ply"] == {"model_file": "microdreamer/splat_00001_.ply", "count": 1}


def test_turntable_node_makes_an_image_batch(real, double):
    for run in (real, double):
        info = run["info"]["MicroDreamerTurntable"]
        assert info["output"] == ["IMAGE"]
        assert list(info["required"]) == ["frames", "elevation", "resolution", "background"]
        assert set(info["optional"]) == {"gaussians", "mesh", "fill"}
        spin = run["turntable"]
        assert spin["shape"] == [3, 16, 16, 3] and spin["dtype"] == "torch.float32"
        assert spin["corner"] == [[0.0, 0.0, 0.0]] * 3 and spin["spins"] > 0.01
        refused = "InputError: connect either gaussians or mesh to Turntable (one of them, not both)"
        assert spin["refused"] == [refused] * 2
    assert double["info"]["MicroDreamerTurntable"]["optional"]["fill"].get("advanced") is True


def test_on_0_3_75_mesh_conversion_carries_geometry_only(real):
    assert real["core_fields"] == {"vertices": [1, 4, 3], "faces": [1, 4, 3]}
    assert real["round_trip"]["vertices"] == 0.0 and real["round_trip"]["faces_equal"]
    assert real["round_trip"]["uvs"] is None and real["round_trip"]["texture"] is None
    assert real["info"]["MicroDreamerComfyMeshToMesh"]["required"]["mesh"] == {}
    assert all(v["aliases"] is None for v in real["info"].values())  # 0.3.75's Schema has no such field


def test_on_current_releases_savers_also_output_core_file3d(double):
    glb, ply = double["info"]["MicroDreamerSaveGLB"], double["info"]["MicroDreamerSaveGaussians"]
    assert glb["output"] == ["STRING", "FILE_3D_GLB"] and glb["output_name"] == ["model_file", "model_3d"]
    assert ply["output"] == ["STRING", "FILE_3D_SPLAT_ANY"]
    assert double["glb"] == {
        "model_file": "microdreamer/mesh_00001_.glb",
        "count": 2,
        "format": "glb",
        "magic": "glTF",
        "same": True,
    }
    assert double["ply"]["format"] == "ply" and double["ply"]["magic"] == "ply"


def test_on_current_releases_mesh_conversion_carries_uvs_texture_colours_normals(double):
    assert double["core_fields"] == {
        "vertices": [1, 4, 3],
        "faces": [1, 4, 3],
        "uvs": [1, 4, 2],
        "vertex_colors": [1, 4, 3],
        "texture": [1, 8, 8, 3],
        "normals": [1, 4, 3],
    }
    assert double["uv_flipped"]  # core MESH uvs follow glTF (v down)
    rt = double["round_trip"]
    assert rt["faces_equal"] and all(rt[k] < 1e-6 for k in ("vertices", "uvs", "texture", "vertex_colors", "normals"))
    assert double["padded_item"] == {"V": 3, "F": 1, "uv_err": pytest.approx(0.0, abs=1e-6), "texture_is_item_1": True}
    assert "batch_index 5 is outside the MESH batch of 2" in double["bad_index"]


def test_on_current_releases_newer_schema_fields_are_used(double):
    info = double["info"]
    assert all(node["aliases"] for node in info.values()), [k for k, v in info.items() if not v["aliases"]]
    assert info["MicroDreamerComfyMeshToMesh"]["required"]["batch_index"].get("advanced") is True
    assert info["MicroDreamerSIRReconstruct3DGS"]["required"]["steps"].get("advanced") is True
    assert info["MicroDreamerMultiViewModelLoader"]["required"]["dtype"].get("advanced") is True
    assert "advanced" not in info["MicroDreamerSIRReconstruct3DGS"]["required"]["preset"]  # main inputs stay
