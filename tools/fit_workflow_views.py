"""Save each example workflow with a view that shows its whole graph in a 1600x1000 browser window.

ComfyUI's frontend restores a workflow's saved view, ``extra.ds`` = ``{"scale", "offset"}``, when it
loads the file (the template browser does too). LiteGraph draws canvas point ``p`` at screen pixel
``(p + offset) * scale``. A node's ``pos`` is the top left of its body; its title bar (30 units,
LiteGraph's ``NODE_TITLE_HEIGHT``) sits above it.

The free part of the window was measured in ComfyUI 0.3.75's frontend (comfyui-frontend-package
1.32.9) in headless Chromium at 1600x1000 with a fresh user folder: the canvas fills the window, but
the announcement banner, the workflow tabs and the breadcrumb + Run bar cover the top 130 pixels, the
side bar the left 63, and the minimap with the zoom controls the bottom-right corner from (1343, 742).
The view chosen is the largest scale (at most 1, in steps of 0.01) at which every node's box fits
that free part with a margin, placed as near the middle of it as the minimap allows.

    python tools/fit_workflow_views.py          # rewrite extra.ds of every example workflow
    python tools/fit_workflow_views.py --check  # exit 1 when a saved view would change

Only ``extra.ds`` changes; the files keep ``json.dumps(indent=2)`` formatting and a final newline.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

WORKFLOWS = Path(__file__).resolve().parent.parent / "example_workflows"

WINDOW = (1600, 1000)
FREE = (63, 130, 1596, 996)
"""(left, top, right, bottom) screen pixels of the graph panel not under the top bars or the side bar."""
MINIMAP = (1343, 742, 1600, 1000)
"""Screen pixels of the minimap and the zoom controls below it (shown by default)."""
TITLE_HEIGHT = 30
MARGIN = 16
"""Screen pixels kept clear around the graph: the frontend draws some nodes a little larger than
their saved size (a widget's minimum height, a wider title) and outlines a selected node."""
MAX_SCALE = 1.0
READABLE_SCALE = 0.58
"""Below this zoom the frontend draws nodes without their text (its low-quality rendering: 14 px
text under 8 px; measured: text at 0.58, none at 0.57). A graph that fits only below it should be
laid out more compactly."""

Box = tuple[float, float, float, float]


def node_boxes(workflow: dict) -> dict[str, Box]:
    """Canvas box (x0, y0, x1, y1) of each node, title bar included, by ``"<id> <type>"``."""
    boxes = {}
    for node in workflow["nodes"]:
        (x, y), (w, h) = node["pos"], node["size"]
        boxes[f"{node['id']} {node['type']}"] = (x, y - TITLE_HEIGHT, x + w, y + h)
    return boxes


def on_screen(box: Box, ds: dict) -> Box:
    """Where the canvas ``box`` lands on the screen under the view ``ds``."""
    (ox, oy), s = ds["offset"], ds["scale"]
    return ((box[0] + ox) * s, (box[1] + oy) * s, (box[2] + ox) * s, (box[3] + oy) * s)


def hidden_nodes(workflow: dict, ds: dict, margin: float = 0.0) -> list[str]:
    """Nodes that the view ``ds`` leaves (partly) off the free part of the window or under the minimap."""
    hidden = []
    for name, box in node_boxes(workflow).items():
        x0, y0, x1, y1 = on_screen(box, ds)
        inside = x0 >= FREE[0] + margin and y0 >= FREE[1] + margin and x1 <= FREE[2] - margin and y1 <= FREE[3] - margin
        under_minimap = x1 > MINIMAP[0] - margin and y1 > MINIMAP[1] - margin
        if not inside or under_minimap:
            hidden.append(name)
    return hidden


def fit_view(workflow: dict) -> dict:
    """The largest view (scale in steps of 0.01, integer offset) showing every node, nearest the middle."""
    boxes = list(node_boxes(workflow).values())
    bx0, by0 = min(b[0] for b in boxes), min(b[1] for b in boxes)
    width, height = max(b[2] for b in boxes) - bx0, max(b[3] for b in boxes) - by0
    left, top = FREE[0] + MARGIN, FREE[1] + MARGIN
    room_w, room_h = FREE[2] - MARGIN - left, FREE[3] - MARGIN - top
    steps = int(min(MAX_SCALE, room_w / width, room_h / height) * 100)
    for scale in (s / 100 for s in range(steps, 0, -1)):
        slack_x, slack_y = room_w - width * scale, room_h - height * scale
        # Top-left corners of the graph on screen, a 21 x 21 grid over the slack, nearest the middle first.
        corners = [(left + slack_x * i / 20, top + slack_y * j / 20) for i in range(21) for j in range(21)]
        corners.sort(key=lambda c: abs(c[0] - left - slack_x / 2) + abs(c[1] - top - slack_y / 2))
        for gx, gy in corners:
            ds = {"scale": scale, "offset": [round(gx / scale - bx0), round(gy / scale - by0)]}
            if not hidden_nodes(workflow, ds, margin=MARGIN - 1):  # 1 px for the rounded offset
                return ds
    raise ValueError(f"no view shows the whole graph ({width} x {height} canvas units)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="change nothing; exit 1 when a saved view is not the fitted one"
    )
    args = parser.parse_args(argv)
    stale = []
    for path in sorted(WORKFLOWS.glob("*.json")):
        workflow = json.loads(path.read_text())
        ds = fit_view(workflow)
        if ds["scale"] < READABLE_SCALE:
            print(f"{path.name}: the whole graph fits only at scale {ds['scale']}, where nodes show no text")
        if workflow["extra"].get("ds") == ds:
            continue
        stale.append(path.name)
        if not args.check:
            workflow["extra"]["ds"] = ds
            path.write_text(json.dumps(workflow, indent=2) + "\n")
        print(f"{path.name}: scale {ds['scale']}, offset {ds['offset']}" + (" (not saved)" if args.check else ""))
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
