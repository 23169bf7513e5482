"""Manual browser check: in the real ComfyUI 0.3.75 frontend, core Preview 3D shows our GLB.

Starts ComfyUI 0.3.75 (tests/comfy_server.py provisions it) with this pack, loads
example_workflows/reconstruct_posed_views.json in headless Chromium, lowers its cost knobs, queues it
from the page (so the websocket results reach this page) and saves screenshots once the viewer on
the Preview 3D node has loaded the model. docs/preview3d_comfyui_0.3.75.jpg came from this script.

Needs Debian's chromium (/usr/bin/chromium) and the playwright Python package:
    python docs/screenshot_preview3d.py OUT_DIR

The server runs without --disable-api-nodes, as users run it: with that flag ComfyUI 0.3.75 sends
a Content-Security-Policy with connect-src 'self', which stops three.js from reading a GLB's
embedded texture (a blob: URL), so the viewer shows the mesh untextured.

tests/test_browser.py does the same for every example workflow in CI (template browser, no
missing nodes, no console errors, the result in Preview 3D) and saves screenshots of each.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from comfy_server import ComfyServer, provision_comfyui, write_demo_views  # noqa: E402

KNOBS = {
    "MicroDreamerSIRReconstruct3DGS": {"steps": 150, "resolution": 64},
    "MicroDreamerExtractMesh": {"resolution": 64, "target_faces": 3000, "texture_size": 256},
}
_CLOSE_DIALOGS = "() => document.querySelectorAll('.p-dialog-mask, .p-dialog').forEach(e => e.remove())"


def main(out: Path) -> None:
    from playwright.sync_api import sync_playwright

    base = out / "base"
    (base / "input").mkdir(parents=True, exist_ok=True)
    write_demo_views(base / "input" / "microdreamer_demo_views", resolution=64, num_views=6)
    server = ComfyServer(provision_comfyui(), base, api_nodes=True).start()
    workflow = json.loads((REPO / "example_workflows" / "reconstruct_posed_views.json").read_text())
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--use-gl=swiftshader"])
            page = browser.new_page(viewport={"width": 1800, "height": 1000})
            page.goto(server.url)
            page.wait_for_function("window.app && window.app.graph", timeout=120_000)
            time.sleep(3)
            page.evaluate("wf => window.app.loadGraphData(wf)", workflow)
            time.sleep(2)
            page.evaluate(
                """knobs => { for (const n of window.app.graph._nodes) { const k = knobs[n.type]; if (!k) continue;
                   for (const w of n.widgets || []) if (w.name in k) w.value = k[w.name]; } }""",
                KNOBS,
            )
            page.evaluate("window.app.queuePrompt(0)")
            deadline = time.time() + 600
            while time.time() < deadline:
                history = server.get_json("/history")
                statuses = [v["status"] for v in history.values()]
                if statuses and all(s.get("completed") or s["status_str"] == "error" for s in statuses):
                    break
                time.sleep(3)
            time.sleep(8)  # the viewer fetches the GLB after the executed message
            page.evaluate(_CLOSE_DIALOGS)
            page.screenshot(path=str(out / "preview3d.png"))
            node = page.evaluate(
                "() => window.app.graph._nodes.find(n => n.type === 'Preview3D').properties['Last Time Model File']"
            )
            print(json.dumps({"history": history, "preview3d_model_file": node}, indent=1, default=str))
            browser.close()
    finally:
        server.stop()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
