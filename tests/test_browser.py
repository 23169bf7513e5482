"""The example workflows in ComfyUI's own frontend, in headless Chromium: what a user meets.

A real ComfyUI 0.3.75 (tests/comfy_server.py) with this pack, the tiny models and the example
inputs serves its frontend (``comfyui-frontend-package``) to Debian's Chromium, driven by
Playwright (``executable_path``: Playwright downloads no browser). For every example workflow
the test opens the template browser, clicks the workflow's card, checks the canvas (no
missing-node dialog, every widget holding the value saved in the JSON, no console error), lowers
the cost knobs in the page, presses Run, waits for the run and checks that Preview 3D shows the
GLB. Screenshots of the loaded canvas and of the result go to ``$MICRODREAMER_TEST_OUTPUT/browser``
(else a pytest temporary folder); their paths are printed.

The server runs without ``--disable-api-nodes``, as users run it: with that flag ComfyUI sends a
Content-Security-Policy (``connect-src 'self'``) that stops the 3D viewer from reading a GLB's
embedded texture. The page reaches nothing but the server: requests to other hosts (the
frontend asks api.comfy.org for release notes and node registry entries) are aborted.

Skips when Chromium (or Playwright) is missing, except under CI (``CI`` set), where that fails:
``.ci/run`` installs both.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from comfy_server import REPO, ComfyServer, provision_comfyui, small_values, widget_slots, write_example_inputs

CHROMIUM = Path("/usr/bin/chromium")
_MISSING = (
    f"Chromium not found at {CHROMIUM}: install Debian's chromium (apt-get install chromium; .ci/run does it as root)"
    if not CHROMIUM.is_file()
    else "the playwright package is not installed (pip install -r tests/requirements.txt)"
    if importlib.util.find_spec("playwright") is None
    else None
)
if _MISSING and not os.environ.get("CI"):
    pytest.skip(_MISSING, allow_module_level=True)

pytestmark = [pytest.mark.comfyui, pytest.mark.slow, pytest.mark.timeout(600)]

WORKFLOWS = REPO / "example_workflows"
UI_WORKFLOWS = sorted(WORKFLOWS.glob("*.json"))
MISSING_ON_0_3_75 = {"image_to_3d_remove_background": ["LoadBackgroundRemovalModel", "RemoveBackground"]}
"""Workflows for current ComfyUI only: the core nodes 0.3.75 lacks, as its missing-node dialog lists them."""
FRONTEND_ONLY_INPUTS = {"Preview3D": {"image"}}
"""Widgets the frontend adds to a core node and sends with the prompt (0.3.75 ignores them):
Preview 3D's viewer capture."""
VIEWPORT = {"width": 1600, "height": 1000}
PACK = "microdreamer"  # the template browser's category (the custom node folder's name)

_LOAD_FAILED = "Failed to load resource: "
KNOWN_CONSOLE_ERRORS: list[tuple[str, re.Pattern, re.Pattern]] = [
    # (why, the message, the URL it names): each exact, and none of them about this pack.
    (
        "a fresh user folder has no user.css, saved workflows or subgraphs, nor template settings",
        re.compile(re.escape(_LOAD_FAILED + "the server responded with a status of 404 (Not Found)") + "$"),
        re.compile(
            r"http://127\.0\.0\.1:\d+/(user\.css|api/userdata/user\.css|api/userdata/comfy\.templates\.json"
            r"|api/userdata\?dir=(workflows|subgraphs%2F)&recurse=true&split=false&full_info=true)$"
        ),
    ),
    (
        "the page reaches only the server: the frontend's api.comfy.org requests are aborted",
        re.compile(re.escape(_LOAD_FAILED + "net::ERR_FAILED") + "$"),
        re.compile(r"https://api\.comfy\.org/"),
    ),
    (
        "frontend 1.32.9 at start-up (also without this pack): the render-mode setting is written "
        "before its definition is registered",
        re.compile(r"TypeError: Cannot read properties of undefined \(reading 'id'\)\n    at onChange \("),
        re.compile(r"http://127\.0\.0\.1:\d+/assets/lib/vue/dist/vue\.esm-browser\.prod\.js$"),
    ),
]

_NODES_JS = """() => app.graph._nodes.map(n => ({
    id: n.id, type: n.type,
    widgets: (n.widgets || []).map(w => [w.name, w.value]),
}))"""
_SET_KNOBS_JS = """knobs => { for (const n of app.graph._nodes) { const k = knobs[n.id]; if (!k) continue;
    for (const w of n.widgets || []) if (w.name in k) { w.value = k[w.name]; w.callback?.(w.value); } } }"""


@dataclass
class PageLog:
    """Console errors and page errors of one page, and its responses from the server."""

    errors: list[str] = field(default_factory=list)
    known: list[str] = field(default_factory=list)
    responses: list[tuple[str, int]] = field(default_factory=list)

    def console(self, msg) -> None:
        if msg.type != "error":
            return
        url = msg.location.get("url", "")
        for why, text, where in KNOWN_CONSOLE_ERRORS:
            if text.match(msg.text) and where.match(url):
                self.known.append(f"{why}: {url}")
                return
        self.errors.append(f"console error: {msg.text}\n    at {url}")

    def page_error(self, error) -> None:
        self.errors.append(f"page error: {error}")


def _known_counts(log: PageLog) -> str:
    whys = [why for why, _, _ in KNOWN_CONSOLE_ERRORS]
    return "; ".join(f"{n} x {why}" for why in whys if (n := sum(k.startswith(why + ":") for k in log.known)))


@pytest.fixture(scope="module")
def output_dir(tmp_path_factory) -> Path:
    root = os.environ.get("MICRODREAMER_TEST_OUTPUT")
    folder = Path(root) / "browser" if root else tmp_path_factory.mktemp("browser")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    try:
        comfy_dir = provision_comfyui()
    except Exception as e:  # no network and no cache: say how to provide one
        pytest.fail(f"could not provision ComfyUI (set MICRODREAMER_TEST_CACHE to a cache holding it): {e}")
    base = tmp_path_factory.mktemp("comfyui-browser")
    write_example_inputs(base)
    srv = ComfyServer(comfy_dir, base, api_nodes=True)
    try:
        srv.start()
    except RuntimeError as e:
        pytest.fail(str(e))
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def object_info(server: ComfyServer) -> dict:
    return server.get_json("/object_info")


@pytest.fixture(scope="module")
def browser():
    if _MISSING:  # under CI, which installs both
        pytest.fail(f"CI runs the browser test, but {_MISSING}", pytrace=False)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        # SwiftShader: WebGL (the canvas, the 3D viewer) on the CPU.
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=["--use-gl=swiftshader"])
        yield chromium
        chromium.close()


def open_frontend(browser, server: ComfyServer):
    """A fresh page on the server's frontend, started; returns (page, log)."""
    log = PageLog()
    page = browser.new_page(viewport=VIEWPORT)
    page.on("console", log.console)
    page.on("pageerror", log.page_error)
    page.on("response", lambda r: log.responses.append((r.url, r.status)) if r.url.startswith(server.url) else None)
    page.route(lambda url: not url.startswith(server.url), lambda route: route.abort())
    page.goto(server.url)
    page.wait_for_function(
        "() => window.app?.graph && window.app.extensionManager"
        " && window.LiteGraph?.registered_node_types.MicroDreamerSaveGLB",
        timeout=120_000,
    )
    return page, log


def load_template(page, name: str) -> None:
    """What a user does: Templates -> the pack's category -> the workflow's card."""
    page.evaluate("app.extensionManager.command.execute('Comfy.BrowseTemplates')")
    page.get_by_role("button", name=PACK, exact=True).click()
    page.get_by_test_id(f"template-workflow-{name}").click()
    page.wait_for_function(
        "name => app.extensionManager.workflow.activeWorkflow?.filename === name && app.graph._nodes.length > 0",
        arg=name,
        timeout=30_000,
    )
    page.wait_for_timeout(1500)  # the missing-node dialog, if any, opens after the graph is configured


def missing_nodes(page) -> list[str]:
    """The node types the missing-node dialog lists (empty when there is no such dialog)."""
    return page.locator(".comfy-missing-nodes > div").all_inner_texts()


def close_dialogs(page) -> None:
    for button in page.locator(".p-dialog .p-dialog-close-button").all():
        button.click()


def misfit(value, spec: list) -> str | None:
    """Why ``value`` does not fit the /object_info input ``spec`` (a combo option, a number in
    range, a bool, a string), or None."""
    typ, opts = spec[0], (spec[1] if len(spec) > 1 else {})
    if isinstance(typ, list) or typ == "COMBO":
        options = typ if isinstance(typ, list) else opts.get("options", [])
        return None if value in options else f"not one of its options {options}"
    if typ in ("INT", "FLOAT"):
        if isinstance(value, bool) or not isinstance(value, int | float) or (typ == "INT" and value != int(value)):
            return f"not a {typ}"
        if value < opts.get("min", value) or value > opts.get("max", value):
            return f"outside [{opts.get('min')}, {opts.get('max')}]"
        return None
    expected = {"BOOLEAN": bool, "STRING": str}[typ]
    return None if isinstance(value, expected) else f"not a {typ}"


def assert_widgets_as_saved(page_nodes: list[dict], workflow: dict, object_info: dict) -> None:
    """No widget shift: each widget shows the value the JSON saves for that input (by name), and
    that value fits the input (a value saved for another input would not)."""
    on_page = {n["id"]: n for n in page_nodes}
    assert sorted(on_page) == sorted(n["id"] for n in workflow["nodes"]), "not every node of the workflow loaded"
    for node in workflow["nodes"]:
        shown = dict(on_page[node["id"]]["widgets"])
        assert on_page[node["id"]]["type"] == node["type"]
        if node["type"] == "Note":
            assert list(shown.values()) == node["widgets_values"], node["id"]
            continue
        if node["type"] not in object_info:  # a missing node (the dialog lists it): no widgets
            continue
        info = object_info[node["type"]]["input"]
        spec = {**info.get("required", {}), **info.get("optional", {})}
        for name, slot in widget_slots(node["type"], object_info).items():
            saved = node["widgets_values"][slot]
            problem = misfit(saved, spec[name])
            assert problem is None, f"node {node['id']} ({node['type']}).{name} holds {saved!r}: {problem}"
            assert name in shown, f"node {node['id']} ({node['type']}) has no widget {name!r}: {sorted(shown)}"
            assert shown[name] == (pytest.approx(saved) if isinstance(saved, float) else saved), (
                f"node {node['id']} ({node['type']}).{name} shows {shown[name]!r}, the workflow saves {saved!r}"
            )


def cost_knobs(workflow: dict) -> dict[int, dict]:
    """Per node id, the tiny-model values of its cost knobs (tests/comfy_server.small_values)."""
    knobs = {}
    for node in workflow["nodes"]:
        linked = {i["name"] for i in node.get("inputs", []) if i.get("link") is not None}
        if values := small_values(node["type"], linked):
            knobs[node["id"]] = values
    return knobs


def expected_prompt(name: str, knobs: dict[int, dict]) -> dict:
    """The API twin with the knobs lowered: what the page must queue."""
    api = json.loads((WORKFLOWS / "api" / f"{name}.api.json").read_text())
    for node_id, node in api.items():
        node["inputs"].update(knobs.get(int(node_id), {}))
    return {k: {"class_type": v["class_type"], "inputs": v["inputs"]} for k, v in api.items()}


def backend_inputs(prompt: dict, object_info: dict) -> dict:
    """``prompt`` without its meta data and the frontend-only inputs (:data:`FRONTEND_ONLY_INPUTS`)."""
    kept = {}
    for node_id, node in prompt.items():
        info = object_info[node["class_type"]]["input"]
        extra = set(node["inputs"]) - set(info.get("required", {})) - set(info.get("optional", {}))
        assert extra <= FRONTEND_ONLY_INPUTS.get(node["class_type"], set()), (node_id, node["class_type"], extra)
        inputs = {k: v for k, v in node["inputs"].items() if k not in extra}
        kept[node_id] = {"class_type": node["class_type"], "inputs": inputs}
    return kept


def wait_new_prompt(server: ComfyServer, before: set[str], timeout: float = 30.0) -> str:
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        queue = server.get_json("/queue")
        ids = {item[1] for item in queue["queue_running"] + queue["queue_pending"]} | set(server.get_json("/history"))
        if new := ids - before:
            (prompt_id,) = new
            return prompt_id
        time.sleep(0.25)
    raise AssertionError(f"pressing Run queued nothing within {timeout:.0f} s\n{server.log_tail()}")


@pytest.mark.parametrize("workflow_path", UI_WORKFLOWS, ids=lambda p: p.stem)
def test_example_workflow_in_the_browser(
    browser, server: ComfyServer, object_info: dict, output_dir: Path, workflow_path: Path, capsys
):
    name = workflow_path.stem
    workflow = json.loads(workflow_path.read_text())
    t0 = time.perf_counter()
    page, log = open_frontend(browser, server)
    started = time.perf_counter() - t0
    shots = []
    try:
        load_template(page, name)
        shots.append(output_dir / f"{name}_loaded.png")
        page.screenshot(path=str(shots[-1]))
        if name in MISSING_ON_0_3_75:  # not queued: 0.3.75 cannot run it
            page.locator(".comfy-missing-nodes").wait_for(timeout=10_000)
            assert missing_nodes(page) == MISSING_ON_0_3_75[name], f"the dialog lists {missing_nodes(page)}"
            close_dialogs(page)
        else:
            assert not missing_nodes(page), f"{name}: the missing-node dialog lists {missing_nodes(page)}"
        assert_widgets_as_saved(page.evaluate(_NODES_JS), workflow, object_info)
        assert not log.errors, "\n".join(log.errors)
        loaded = time.perf_counter() - t0
        if name in MISSING_ON_0_3_75:
            report(capsys, name, shots, f"frontend started in {started:.1f} s, loaded in {loaded:.1f} s", log)
            return

        knobs = cost_knobs(workflow)
        page.evaluate(_SET_KNOBS_JS, {str(k): v for k, v in knobs.items()})
        before = set(server.get_json("/history"))
        page.locator('[data-testid="queue-button"] button[aria-label="Run"]').click()
        prompt_id = wait_new_prompt(server, before)
        entry = server.wait_history(prompt_id, timeout=300)
        ran = time.perf_counter() - t0
        assert entry["status"]["status_str"] == "success", json.dumps(entry["status"], indent=1) + server.log_tail()
        queued = backend_inputs(entry["prompt"][2], object_info)
        assert queued == expected_prompt(name, knobs), "the page queued another prompt than the API twin"

        # The result in the page: Preview 3D holds the GLB's path and its viewer fetched the file.
        (preview_id,) = [n["id"] for n in workflow["nodes"] if n["type"] == "Preview3D"]
        glb_path = entry["outputs"][str(preview_id)]["result"][0]
        assert glb_path.endswith(".glb") and (server.base / "output" / glb_path).is_file(), glb_path
        page.wait_for_function(
            "([id, path]) => app.graph.getNodeById(id)?.properties['Last Time Model File'] === path",
            arg=[preview_id, glb_path],
            timeout=30_000,
        )
        folder, _, filename = glb_path.rpartition("/")
        view = re.compile(
            re.escape(f"{server.url}/api/view?")
            + f"(?=.*filename={re.escape(filename)})(?=.*subfolder={re.escape(folder)}(&|$))(?=.*type=output)"
        )
        deadline = time.perf_counter() + 30
        while not any(view.match(url) and status == 200 for url, status in log.responses):
            assert time.perf_counter() < deadline, f"the 3D viewer never fetched {glb_path}"
            page.wait_for_timeout(250)
        page.wait_for_timeout(3000)  # the viewer draws the model
        shown = dict(next(n for n in page.evaluate(_NODES_JS) if n["id"] == preview_id)["widgets"])
        assert shown["model_file"] == glb_path, shown
        shots.append(output_dir / f"{name}_result.png")
        page.screenshot(path=str(shots[-1]))
        page.evaluate("app.extensionManager.command.execute('Comfy.Canvas.FitView')")  # the "." key
        page.wait_for_timeout(1500)
        shots.append(output_dir / f"{name}_result_fit.png")
        page.screenshot(path=str(shots[-1]))
        assert not log.errors, "\n".join(log.errors)
        report(
            capsys,
            name,
            shots,
            f"frontend started in {started:.1f} s, run done at {ran:.1f} s, shown at {time.perf_counter() - t0:.1f} s",
            log,
        )
    except Exception:
        failed = output_dir / f"{name}_failed.png"
        try:
            page.screenshot(path=str(failed))
            print(f"screenshot at the failure: {failed}")
        except Exception as e:  # keep the test's own error
            print(f"no screenshot at the failure: {e}")
        raise
    finally:
        page.close()


def report(capsys, name: str, shots: list[Path], timing: str, log: PageLog) -> None:
    """Print the screenshots' paths past pytest's capture, so CI's log lists them."""
    with capsys.disabled():
        print(f"\n[browser] {name}: {timing}; screenshots: {', '.join(map(str, shots))}")
        print(f"[browser] known console errors (filtered): {_known_counts(log)}")
