"""Static checks of the example workflows in example_workflows/ (no ComfyUI needed).

tests/test_comfyui_server.py checks them against a real server: link types against
/object_info, each UI workflow converted (ours and comfy-cli's converter) equal to its API twin,
and every generation workflow run headless over HTTP and through comfy-cli.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from PIL import Image

from microdreamer_core.diffusion.hub import HUB_IDS
from microdreamer_core.meshing.stage import MeshConfig
from microdreamer_core.pipeline.presets import PRESETS
from microdreamer_core.pipeline.texture_refine import TextureRefineConfig

WORKFLOWS = Path(__file__).resolve().parent.parent / "example_workflows"
sys.path.insert(0, str(WORKFLOWS.parent / "tools"))  # fit_workflow_views: the measured window layout
UI_WORKFLOWS = sorted(WORKFLOWS.glob("*.json"))
KINDS = {"text_to_3d_mvdream": "mvdream", "image_to_3d_imagedream": "imagedream", "image_to_3d_zero123": "zero123"}
EXAMPLE_IMAGE = "microdreamer_example_rgba.png"


def api(name: str) -> dict:
    return json.loads((WORKFLOWS / "api" / f"{name}.api.json").read_text())


def nodes_of(prompt: dict, class_type: str) -> list[dict]:
    return [n["inputs"] for n in prompt.values() if n["class_type"] == class_type]


def one(prompt: dict, class_type: str) -> dict:
    (found,) = nodes_of(prompt, class_type)
    return found


def test_the_examples_exist_each_with_an_api_twin():
    assert {p.stem for p in UI_WORKFLOWS} == {
        *KINDS,
        "own_views_to_glb",
        "reconstruct_posed_views",
        "image_to_3d_remove_background",
    }
    assert {p.name for p in (WORKFLOWS / "api").glob("*.json")} == {f"{p.stem}.api.json" for p in UI_WORKFLOWS}


@pytest.mark.parametrize("path", UI_WORKFLOWS, ids=lambda p: p.stem)
def test_ui_workflow_is_consistent_and_matches_its_twin(path: Path):
    ui = json.loads(path.read_text())
    assert ui["version"] == 0.4 and {
        "last_node_id",
        "last_link_id",
        "nodes",
        "links",
        "groups",
        "config",
        "extra",
    } <= set(ui)
    nodes = {n["id"]: n for n in ui["nodes"]}
    assert len(nodes) == len(ui["nodes"]) and ui["last_node_id"] == max(nodes)
    assert ui["last_link_id"] == max(link[0] for link in ui["links"])
    for link_id, src, src_slot, dst, dst_slot, typ in ui["links"]:
        out = nodes[src]["outputs"][src_slot]
        assert out["type"] == typ and link_id in out["links"], (path.name, link_id)
        socket = nodes[dst]["inputs"][dst_slot]
        assert socket["type"] == typ and socket["link"] == link_id, (path.name, link_id)
    twin = api(path.stem)
    backend = {str(i): n["type"] for i, n in nodes.items() if n["type"] not in ("Note", "MarkdownNote")}
    assert {k: v["class_type"] for k, v in twin.items()} == backend
    for node_id, node in twin.items():  # links in the twin are the UI's links
        for name, value in node["inputs"].items():
            if isinstance(value, list):
                socket = next(s for s in nodes[int(node_id)]["inputs"] if s["name"] == name)
                link = next(link for link in ui["links"] if link[0] == socket["link"])
                assert [str(link[1]), link[2]] == value, (path.name, node_id, name)
    assert any(n["type"] == "Note" for n in ui["nodes"]), "each example explains itself in a Note"


@pytest.mark.parametrize("name,kind", KINDS.items())
def test_generation_workflows_use_the_papers_values(name: str, kind: str):
    prompt = api(name)
    # The loader's hub entry: models/microdreamer/<owner>--<name> when present, else downloaded there.
    assert one(prompt, "MicroDreamerMultiViewModelLoader")["model"] == f"hub: {HUB_IDS[kind]}"
    sir = one(prompt, "MicroDreamerSIRReconstruct3DGS")
    assert sir["preset"] == kind and PRESETS[kind].model_kind == kind
    assert (sir["iterations"], sir["resolution"], sir["image_size"]) == (-1, 0, 256)  # -1 / 0 = the preset's
    mesh, paper = one(prompt, "MicroDreamerExtractMesh"), MeshConfig()
    assert (mesh["resolution"], mesh["target_faces"], mesh["texture_size"], mesh["bake_texture"]) == (
        paper.resolution,
        paper.target_faces,
        paper.texture_size,
        True,
    )
    refine, paper = one(prompt, "MicroDreamerRefineTexture"), TextureRefineConfig()
    assert (refine["steps"], refine["views"], refine["t"], refine["guidance_scale"]) == (30, 8, 181, 2.0)
    assert (
        refine["steps"],
        refine["views"],
        refine["t"],
        refine["guidance_scale"],
        refine["render_resolution"],
        refine["image_size"],
    ) == (paper.steps, paper.views, paper.t, paper.guidance_scale, paper.render_resolution, paper.image_size)
    cond = one(prompt, "MicroDreamerCondition")
    if kind == "mvdream":
        assert cond["prompt"].strip() and "image" not in cond and not nodes_of(prompt, "LoadImage")
    else:  # LoadImage's IMAGE + MASK (1 = transparent, hence invert_mask)
        assert one(prompt, "LoadImage")["image"] == EXAMPLE_IMAGE
        assert (
            cond["invert_mask"] is True
            and cond["image"][1] == 0
            and cond["mask"][1] == 1
            and cond["mask"][0] == cond["image"][0]
        )
    assert one(prompt, "MicroDreamerSaveGLB")["filename_prefix"] == f"microdreamer/{name}"


def test_own_views_workflow_has_one_camera_per_view_and_no_model():
    prompt = api("own_views_to_glb")
    views = [n["image"] for n in nodes_of(prompt, "LoadImage")]
    cams = one(prompt, "MicroDreamerOrbitCameras")
    assert len([a for a in cams["azimuths"].split(",") if a.strip()]) == len(views) == 4
    sir = one(prompt, "MicroDreamerSIRReconstruct3DGS")
    assert "mv_model" not in sir and "condition" not in sir and "masks" not in sir and sir["steps"] == 500
    assert not nodes_of(prompt, "MicroDreamerMultiViewModelLoader")


def test_readme_documents_every_workflow_and_file_it_needs():
    readme = (WORKFLOWS / "README.md").read_text()
    for path in UI_WORKFLOWS:
        assert f"`{path.name}`" in readme, path.name
    names = {
        n["image"]
        for p in UI_WORKFLOWS
        for n in api(p.stem).values()
        if n["class_type"] == "LoadImage"
        for n in [n["inputs"]]
    }
    for name in names | {"models/microdreamer", "ComfyUI/input", "/prompt", "/history", "/view", "comfy run"}:
        assert name in readme, name
    for hub in HUB_IDS.values():
        assert hub.replace("/", "--") in readme, hub


def test_the_remove_background_workflow_wires_core_remove_background_into_the_condition():
    prompt = api("image_to_3d_remove_background")
    load = next(k for k, n in prompt.items() if n["class_type"] == "LoadImage")
    removal = next(k for k, n in prompt.items() if n["class_type"] == "RemoveBackground")
    assert one(prompt, "RemoveBackground")["image"] == [load, 0]
    cond = one(prompt, "MicroDreamerCondition")  # the mask is 1 on the object: no inversion
    assert cond["image"] == [load, 0] and cond["mask"] == [removal, 0] and cond["invert_mask"] is False
    sir = one(prompt, "MicroDreamerSIRReconstruct3DGS")
    assert sir["preset"] == "imagedream" and (sir["iterations"], sir["resolution"]) == (-1, 0)


@pytest.mark.parametrize("path", UI_WORKFLOWS, ids=lambda p: p.stem)
def test_every_workflow_shows_its_glb_in_core_preview3d(path: Path):
    prompt = api(path.stem)
    saver = next(k for k, n in prompt.items() if n["class_type"] == "MicroDreamerSaveGLB")
    assert one(prompt, "Preview3D") == {"model_file": [saver, 0]}  # the saved file's path in output/


def test_every_workflow_has_its_thumbnail_and_the_folder_nothing_else():
    """The template browser shows ``<name>.jpg`` on the card of ``<name>.json`` (a square crop):
    tools/make_thumbnails.py renders them."""
    expected = {"README.md", "api"} | {f"{p.stem}{ext}" for p in UI_WORKFLOWS for ext in (".json", ".jpg")}
    assert {p.name for p in WORKFLOWS.iterdir()} == expected
    for path in UI_WORKFLOWS:
        jpg = path.with_suffix(".jpg")
        with Image.open(jpg) as image:
            assert (image.format, image.size, image.mode) == ("JPEG", (400, 400), "RGB"), jpg.name
        assert jpg.stat().st_size < 60_000, jpg.name


@pytest.mark.parametrize("path", UI_WORKFLOWS, ids=lambda p: p.stem)
def test_the_saved_view_shows_every_node_in_a_1600x1000_window(path: Path):
    """LiteGraph draws canvas point p at (p + offset) * scale; a node's title bar sits above its pos.
    The free part of the window (not under the top bars, the side bar or the minimap) was measured
    in the 0.3.75 frontend: see tools/fit_workflow_views.py, which computes these views."""
    from fit_workflow_views import FREE, MINIMAP, TITLE_HEIGHT

    workflow = json.loads(path.read_text())
    (ox, oy), scale = workflow["extra"]["ds"]["offset"], workflow["extra"]["ds"]["scale"]
    for node in workflow["nodes"]:
        (x, y), (w, h) = node["pos"], node["size"]
        x0, y0 = (x + ox) * scale, (y - TITLE_HEIGHT + oy) * scale
        x1, y1 = (x + w + ox) * scale, (y + h + oy) * scale
        where = f"{path.name}: node {node['id']} {node['type']} at ({x0:.0f}, {y0:.0f})-({x1:.0f}, {y1:.0f}) px"
        fix = "; run python tools/fit_workflow_views.py"
        assert FREE[0] <= x0 and FREE[1] <= y0 and x1 <= FREE[2] and y1 <= FREE[3], where + " is off-screen" + fix
        assert x1 <= MINIMAP[0] or y1 <= MINIMAP[1], where + " is under the minimap" + fix


@pytest.mark.comfyui
def test_core_nodes_and_inputs_the_workflows_use_exist_in_current_comfyui():
    """Every core node id and input name of the examples, against the current core's documentation
    (comfyui-embedded-docs 0.5.15): a core node renamed upstream fails here, not in a user's ComfyUI."""
    from comfy_double import CORE_NODES
    from core_node_docs import documented_inputs, documented_nodes, documented_outputs

    known = documented_nodes()
    assert len(known) > 500 and {"Preview3D", "SaveGLB", "LoadImage"} <= known
    used: dict[str, set[str]] = {}
    for path in UI_WORKFLOWS:
        for node in api(path.stem).values():
            if not node["class_type"].startswith("MicroDreamer"):
                used.setdefault(node["class_type"], set()).update(node["inputs"])
    assert {"LoadImage", "ImageBatch", "Preview3D", "RemoveBackground", "LoadBackgroundRemovalModel"} <= set(used)
    for class_type, inputs in used.items():
        assert class_type in known, f"core node {class_type} is not in current ComfyUI"
        assert inputs <= set(documented_inputs(class_type)), (class_type, inputs, documented_inputs(class_type))
    for class_type, info in CORE_NODES.items():  # our double of their schemas agrees with the docs
        assert set(info["input"]["required"]) <= set(documented_inputs(class_type)), class_type
        assert info["output_name"] == list(documented_outputs(class_type)), class_type
    assert CORE_NODES["LoadBackgroundRemovalModel"]["output"] == list(
        documented_outputs("LoadBackgroundRemovalModel").values()
    )
    assert "STRING" in CORE_NODES["Preview3D"]["input"]["required"]["model_file"][0].split(",")
    assert {"model_3d"} <= set(documented_inputs("PreviewGaussianSplat"))  # takes Save Gaussians' model_3d
