"""Confinement of user-given paths to one folder (microdreamer_core.io.paths) and the confined views
loader (``load_transforms(..., root=...)``): what the Load Posed Views node relies on."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from microdreamer_core.errors import InputError
from microdreamer_core.io.paths import confined, folders_holding, is_inside
from microdreamer_core.io.transforms import load_transforms, save_transforms
from microdreamer_core.scene.cameras import orbit_cameras
from microdreamer_core.scene.views import PosedViews


@pytest.fixture
def tree(tmp_path):
    """``root/`` (the input folder) with a views folder, and an ``outside/`` views folder beside it."""
    root, outside = tmp_path / "input", tmp_path / "outside"
    root.mkdir()
    cams = orbit_cameras([0.0, 10.0], [0.0, 90.0], 2.0, 8)
    views = PosedViews(torch.rand(2, 8, 8, 4, generator=torch.Generator().manual_seed(0)), cams)
    save_transforms(views, root / "views")
    save_transforms(views, outside)
    return root, outside


def _message(fn) -> str:
    with pytest.raises(InputError) as info:
        fn()
    return str(info.value)


ESCAPES = [
    "../outside",
    "../outside/transforms.json",
    "views/../../outside",
    "../nowhere",
    "/etc",
    "/etc/passwd",
    "/no/such/folder",
    "..",
    "views/../..",
    "a\0b",
]


@pytest.mark.parametrize("relative", ESCAPES)
def test_confined_refuses_every_way_out_with_one_message(tree, relative):
    root, outside = tree
    message = _message(lambda: confined(root, relative, "the views folder"))
    assert message == _message(lambda: confined(root, "../does-not-exist", "the views folder")), (
        "existence must not show"
    )
    assert "\n" not in message and "the views folder leads outside the input folder" in message
    assert "exist" not in message and str(outside) not in message and str(root) not in message
    assert "outside" not in message.replace("leads outside", "")
    if len(relative) > 3:
        assert relative not in message


def test_confined_resolves_symlinks_and_accepts_what_is_inside(tree):
    root, outside = tree
    assert confined(root, "views") == (root / "views").resolve()
    assert confined(root, "views/../views/transforms.json") == (root / "views" / "transforms.json").resolve()
    assert confined(root, root / "views") == (root / "views").resolve()  # absolute, but inside
    assert confined(root, ".") == root.resolve()
    (root / "link_out").symlink_to(outside, target_is_directory=True)
    (root / "link_in").symlink_to(root / "views", target_is_directory=True)
    (root / "views" / "img_out.png").symlink_to(outside / "images" / "r_0.png")
    assert confined(root, "link_in") == (root / "views").resolve()
    for escape in ("link_out", "link_out/transforms.json", "views/img_out.png"):
        with pytest.raises(InputError, match="leads outside"):
            confined(root, escape)
    # a root reached through a symlink is compared by its real path
    (root.parent / "root_link").symlink_to(root, target_is_directory=True)
    assert confined(root.parent / "root_link", "views") == (root / "views").resolve()
    assert not is_inside(root, "../outside") and is_inside(root, "views/images")


def test_folders_holding_lists_views_folders_inside_only(tree):
    root, outside = tree
    (root / "deeper" / "a" / "b").mkdir(parents=True)
    (root / "deeper" / "a" / "b" / "transforms.json").write_text("{}")
    (root / "too" / "deep" / "to" / "be" / "listed").mkdir(parents=True)
    (root / "too" / "deep" / "to" / "be" / "listed" / "transforms.json").write_text("{}")
    (root / ".hidden").mkdir()
    (root / ".hidden" / "transforms.json").write_text("{}")
    (root / "transforms.json").write_text("{}")  # the root itself is not offered
    (root / "link_out").symlink_to(outside, target_is_directory=True)
    (root / "json_out").mkdir()
    (root / "json_out" / "transforms.json").symlink_to(outside / "transforms.json")
    assert folders_holding(root, "transforms.json") == ["deeper/a/b", "views"]
    assert folders_holding(root / "missing", "transforms.json") == []


def _transforms(folder, file_paths):
    folder.mkdir(parents=True, exist_ok=True)
    frames = [
        {"file_path": p, "transform_matrix": orbit_cameras([0.0], [a], 2.0, 8).c2w[0].tolist()}
        for p, a in zip(file_paths, (0.0, 90.0, 180.0), strict=False)
    ]
    (folder / "transforms.json").write_text(json.dumps({"camera_angle_x": 0.8, "frames": frames}))
    return folder


@pytest.mark.parametrize(
    "make_path",
    [
        lambda outside: "../../outside/images/r_0.png",  # an image that exists, through ..
        lambda outside: str(outside / "images" / "r_0.png"),  # the same, absolute
        lambda outside: "../../outside/images/r_0",  # without the extension
        lambda outside: "../../../../../../etc/no_such_image.png",  # one that does not exist
        lambda outside: "/no/such/image.png",
    ],
)
def test_frames_are_confined_before_any_file_is_read(tree, make_path):
    root, outside = tree
    folder = _transforms(root / "uploaded", ["../views/images/r_0.png", make_path(outside)])
    message = _message(lambda: load_transforms("uploaded", root=root))
    assert (
        message == "frame 1's file_path in transforms.json leads outside the input folder: give a path inside it "
        "(no absolute path, no '..', no link that points out of it)"
    )
    assert str(outside) not in message and "exist" not in message
    # without a root (the CLI, a trusted local user) the same file loads what it names, or says what is missing
    if "no_such" not in make_path(outside) and "/no/" not in make_path(outside):
        assert load_transforms(folder).images.shape == (2, 8, 8, 4)


def test_frame_image_linked_out_of_the_root_is_refused(tree):
    root, outside = tree
    folder = _transforms(root / "linked", ["a"])
    (folder / "a.png").symlink_to(outside / "images" / "r_0.png")  # "a" is inside; the file it finds is not
    with pytest.raises(InputError, match="frame 0's image leads outside the input folder"):
        load_transforms("linked", root=root)


def test_views_folder_and_json_are_confined(tree):
    root, outside = tree
    assert load_transforms("views", root=root).images.shape == (2, 8, 8, 4)
    assert load_transforms(root / "views" / "transforms.json", root=root).images.shape == (2, 8, 8, 4)
    for path in ("../outside", str(outside), str(outside / "transforms.json")):
        with pytest.raises(InputError, match="the views folder leads outside the input folder"):
            load_transforms(path, root=root)
    (root / "json_link").mkdir()
    (root / "json_link" / "transforms.json").symlink_to(outside / "transforms.json")
    with pytest.raises(InputError, match="^transforms.json leads outside"):
        load_transforms("json_link", root=root)


def test_inside_images_load_as_before(tree):
    root, _ = tree
    (root / "nerf" / "train").mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8, 4), np.uint8)).save(root / "nerf" / "train" / "r_0.png")
    _transforms(root / "nerf", ["./train/r_0"])
    assert load_transforms("nerf", root=root).images.shape == (1, 8, 8, 4)
    os.remove(root / "nerf" / "train" / "r_0.png")
    with pytest.raises(InputError, match="transforms.json names the image"):  # inside: says what is missing
        load_transforms("nerf", root=root)
