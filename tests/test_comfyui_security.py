"""A shared ComfyUI server: the pack's path inputs cannot reach outside ComfyUI's input folder.

Against the real ComfyUI 0.3.75 server of the session (``comfyui_server``): Load Posed Views
refuses an absolute path, ``..``, and an uploaded ``transforms.json`` whose frames point outside,
each with one clean node error that tells nothing about the outside path (not its name, not
whether it exists); the model loader's ``hub_id`` refuses a local path before anything runs.
"""

from __future__ import annotations

import json
import urllib.request
import uuid

import pytest
from comfy_server import ComfyServer, write_demo_views

pytestmark = [pytest.mark.comfyui, pytest.mark.slow, pytest.mark.timeout(300)]

OUTSIDE = "md_secret_views"  # a valid views folder beside ComfyUI's input folder, not inside it


@pytest.fixture(scope="module")
def server(comfyui_server: ComfyServer) -> ComfyServer:
    outside = comfyui_server.base / OUTSIDE
    if not (outside / "transforms.json").is_file():
        write_demo_views(outside, resolution=16, num_views=2)
    return comfyui_server


def views_prompt(path) -> dict:
    return {
        "1": {"class_type": "MicroDreamerLoadPosedViews", "inputs": {"path": path}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "security/x"}},
    }


def upload(server: ComfyServer, filename: str, data: bytes, subfolder: str) -> dict:
    """POST /upload/image (multipart), as the front end uploads, into ``input/<subfolder>``."""
    boundary = uuid.uuid4().hex
    fields = [("subfolder", subfolder.encode()), ("type", b"input"), ("overwrite", b"true")]
    body = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n'.encode() + v + b"\r\n" for k, v in fields
    )
    body += (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{filename}"\r\n'
            f"Content-Type: application/json\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    req = urllib.request.Request(
        server.url + "/upload/image",
        data=body,
        method="POST",
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        assert r.status == 200
        return json.loads(r.read())


def assert_reveals_nothing(text: str, server: ComfyServer) -> None:
    for secret in (str(server.base / OUTSIDE), OUTSIDE, "/etc", "passwd"):
        assert secret not in text, f"{secret!r} in {text}"


def test_views_path_outside_the_input_folder_is_refused_at_queue_time(server: ComfyServer):
    outside = server.base / OUTSIDE
    messages = set()
    for path in (
        str(outside),
        f"../{OUTSIDE}",
        str(outside / "transforms.json"),
        "../../../../etc",
        str(server.base / "no_such_folder"),
        f"../{OUTSIDE}_missing",
    ):
        status, body = server.post_prompt(views_prompt(path))
        assert status == 400 and list(body["node_errors"]) == ["1"], body
        (error,) = body["node_errors"]["1"]["errors"]
        assert error["type"] == "custom_validation_failed", error
        message = error["details"].removeprefix("path - ")
        assert message.startswith("the views folder leads outside ComfyUI's input folder"), message
        assert "\n" not in message and "exist" not in message
        text = json.dumps(body)
        assert_reveals_nothing(text.replace(json.dumps(path)[1:-1], ""), server)  # nothing but the value sent
        assert str(server.base / "input") not in text
        messages.add(message)
    assert len(messages) == 1, f"the message depends on the path: {messages}"

    # The list offers folders inside the input folder only.
    options = server.get_json("/object_info/MicroDreamerLoadPosedViews")["MicroDreamerLoadPosedViews"]["input"][
        "required"
    ]["path"]
    listed = options[0] if isinstance(options[0], list) else options[1]["options"]
    assert not any(OUTSIDE in name or name.startswith(("/", "..")) for name in listed), listed


def test_uploaded_transforms_pointing_outside_is_a_clean_node_error(server: ComfyServer):
    outside = server.base / OUTSIDE
    tag = uuid.uuid4().hex[:6]
    messages = set()
    for i, file_path in enumerate(
        (
            f"../../{OUTSIDE}/images/r_0.png",
            str(outside / "images" / "r_1.png"),
            "../../../../../../etc/passwd",
            f"../../{OUTSIDE}/images/missing.png",
        )
    ):
        folder = f"uploaded_{tag}_{i}"
        meta = {
            "camera_angle_x": 0.8,
            "frames": [
                {
                    "file_path": file_path,
                    "transform_matrix": json.loads((outside / "transforms.json").read_text())["frames"][0][
                        "transform_matrix"
                    ],
                }
            ],
        }
        assert upload(server, "transforms.json", json.dumps(meta).encode(), folder)["name"] == "transforms.json"
        assert (server.base / "input" / folder / "transforms.json").is_file()
        if i == 0:  # the uploaded folder is offered in the list
            info = server.get_json("/object_info/MicroDreamerLoadPosedViews")["MicroDreamerLoadPosedViews"]
            options = info["input"]["required"]["path"]
            assert folder in (options[0] if isinstance(options[0], list) else options[1]["options"])
        entry = server.wait_history(server.queue(views_prompt(folder)), timeout=60)
        assert entry["status"]["status_str"] == "error", entry["status"]
        (err,) = [m[1] for m in entry["status"]["messages"] if m[0] == "execution_error"]
        assert err["node_id"] == "1" and err["exception_type"].endswith("InputError"), err
        message = err["exception_message"]
        assert message.startswith("frame 0's file_path in transforms.json leads outside the input folder"), message
        assert "\n" not in message.strip() and "exist" not in message
        assert_reveals_nothing(json.dumps(err), server)
        messages.add(message)
    assert len(messages) == 1, f"the message depends on the path: {messages}"
    assert not list((server.base / "output").glob("security/x*")), "nothing was saved"


def test_hub_id_refuses_local_paths_at_queue_time(server: ComfyServer):
    models = server.base / "models" / "microdreamer"
    models.mkdir(parents=True, exist_ok=True)
    messages = set()
    for hub_id in (str(models), "../models/microdreamer", "~/models", "owner/name/extra", "C:\\models"):
        prompt = {
            "1": {
                "class_type": "MicroDreamerMultiViewModelLoader",
                "inputs": {"model": "hub: ashawkey/mvdream-sd2.1-diffusers", "dtype": "fp32", "hub_id": hub_id},
            },
            "2": {
                "class_type": "MicroDreamerMultiViewSampler",
                "inputs": {
                    "mv_model": ["1", 0],
                    "prompt": "a duck",
                    "negative_prompt": "default",
                    "guidance_scale": 0.0,
                    "eta": -1.0,
                    "seed": 0,
                    "steps": 1,
                    "image_size": 64,
                },
            },
            "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "security/hub"}},
        }
        status, body = server.post_prompt(prompt)
        assert status == 400 and list(body["node_errors"]) == ["1"], body
        (error,) = body["node_errors"]["1"]["errors"]
        message = error["details"].removeprefix("hub_id - ")
        assert error["type"] == "custom_validation_failed" and message.startswith(
            "hub_id takes a hub repo id 'owner/name', not a path"
        ), error
        assert str(models) not in json.dumps(body)
        messages.add(message)
    assert len(messages) == 1
