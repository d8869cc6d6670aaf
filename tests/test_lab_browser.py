"""JupyterLab in a real browser, as a student uses it on a finished run.

The project's ``jupyter lab`` (this environment's, with its server extension) starts on a free port with a token and
throw-away settings, workspace, runtime and data folders; Debian's Chromium, driven through Playwright's Python API
(``executable_path``: no browser is downloaded), opens a notebook, runs all its cells from the Run menu and saves
it; then the server is shut down through its API.

What is opened: the source notebook ``notebooks/<name>.ipynb``, copied into the server's throw-away root folder with
its parameters cell pointing at the smoke run (``preset = "smoke"``, ``output_dir = <the run>``), which is what a
student does with a finished run. Its cells are the checkout's own, so a cell of the source that raises fails this
test; and nothing of the checkout is opened, run or saved, so ``git status`` stays as it was. (The executed copies
under the run already hold papermill's outputs: running them again would not tell fresh output from old.)
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import pytest

from hpa_utils.config.run_config import NOTEBOOKS_DIR, PROJ_ROOT
from hpa_utils.reporting.browser import find_chromium

pytestmark = pytest.mark.slow
#: Figures notebook 01 shows (tests/test_pipeline.py's EDA_FIGURES); notebook 06: its gallery and its confusions.
EXPECTED_IMAGES = {"01_eda": 7, "06_explore": 2}
#: Seconds to wait for all cells of a notebook to run (the smoke run's 01 takes about 20 s under papermill).
RUN_ALL_TIMEOUT = 300
#: JupyterLab's settings for the test: every cell in the page (no windowing), no news or update checks.
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false", "checkForUpdates": False},
}


def _chromium() -> str:
    executable = find_chromium()
    if executable is None:
        pytest.skip("Chromium is not installed (Debian: apt-get install chromium; .ci/run installs it)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.skip("Playwright's Python package is not installed (the test extra: pip install -e '.[test]')")
    return executable


@dataclass
class Lab:
    """A running ``jupyter lab``: its root folder, address and token."""

    root: Path
    port: int
    token: str
    process: subprocess.Popen
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def api(self, method: str, path: str, body: dict | None = None):
        request = urllib.request.Request(
            f"{self.url}{path}",
            data=None if body is None else json.dumps(body).encode(),
            method=method,
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            text = response.read()
            return json.loads(text) if text else {}


@dataclass
class LabRun:
    """What the browser saw of one notebook run in JupyterLab."""

    name: str
    dialogs: list[str]
    kernel_shown: str
    kernels: list[str]
    code_cells: int
    executed: int
    images: int
    errors: list[str]
    saved: nbformat.NotebookNode | None = None
    notes: list[str] = field(default_factory=list)

    def problems(self, expected_images: int) -> list[str]:
        """Everything that is not as a student expects; empty when the notebook ran cleanly."""
        found = [f"a dialog opened: {text!r}" for text in self.dialogs]
        if self.kernels != ["python3"]:
            found.append(f"the notebook's kernel is {self.kernels}, not python3")
        if "Python 3" not in self.kernel_shown:
            found.append(f"the toolbar names the kernel {self.kernel_shown!r}")
        if self.executed != self.code_cells:
            found.append(f"{self.code_cells - self.executed} of {self.code_cells} code cells were not executed")
        if self.images != expected_images:
            found.append(f"{self.images} figures rendered, {expected_images} expected")
        found += [f"error output: {error}" for error in self.errors]
        return found


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's Chromium and Playwright, or the test is skipped with the reason (first: before the smoke run)."""
    return _chromium()


@pytest.fixture(scope="module")
def lab(chromium, smoke_run, tmp_path_factory):
    """`jupyter lab` from this environment, on a throw-away root folder and settings (started once the smoke run
    is done, so that its kernels read the run's image cache, ``$HPA_CACHE_DIR``)."""
    base = tmp_path_factory.mktemp("lab")
    root = base / "root"
    root.mkdir()
    for relative, values in LAB_SETTINGS.items():
        path = base / "settings" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    # as a student's shell has it: not the test process's Agg backend or hpa run's private kernel folder
    env = {k: v for k, v in os.environ.items() if k not in ("JUPYTER_PATH", "MPLBACKEND")}
    env |= {f"JUPYTER_{kind}_DIR": str(base / kind.lower()) for kind in ("CONFIG", "DATA", "RUNTIME")}
    port, token = _free_port(), secrets.token_hex(16)
    command = [
        str(Path(sys.executable).with_name("jupyter")),
        "lab",
        "--no-browser",
        "--ServerApp.ip=127.0.0.1",
        f"--port={port}",
        "--ServerApp.port_retries=0",
        f"--ServerApp.root_dir={root}",
        f"--IdentityProvider.token={token}",
        f"--LabApp.user_settings_dir={base / 'settings'}",
        f"--LabApp.workspaces_dir={base / 'workspaces'}",
        *(["--allow-root"] if os.geteuid() == 0 else []),
    ]
    log = base / "jupyter.log"
    with open(log, "wb") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    server = Lab(root, port, token, process, log)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                server.api("GET", "/api/status")
                break
            except (urllib.error.URLError, ConnectionError):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"jupyter lab did not start:\n{log.read_text()[-3000:]}") from None
                time.sleep(0.5)
        yield server
    finally:
        try:
            server.api("POST", "/api/shutdown")
            process.wait(timeout=60)
        except Exception:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
    assert process.returncode is not None, "the server is down"


@pytest.fixture(scope="module")
def browser(chromium, lab):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        yield launched
        launched.close()


def open_on_run(lab: Lab, name: str, run_dir: Path, broken: bool = False) -> str:
    """Copy source notebook ``name`` into the server's root, its parameters cell pointing at the run in
    ``run_dir``; ``broken``: its third code cell raises first. Returns the copy's file name."""
    nb = nbformat.read(NOTEBOOKS_DIR / f"{name}.ipynb", as_version=4)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    code[0].source = f'preset = "smoke"\noutput_dir = {str(run_dir)!r}\noverrides = {{}}'
    if broken:
        code[2].source = 'raise RuntimeError("a deliberately broken cell")\n' + code[2].source
    target = f"{name}{'-broken' if broken else ''}.ipynb"
    nbformat.write(nb, lab.root / target)
    return target


def _menu(page, menu: str, command: str) -> None:
    """Click a menu of the menu bar, then one of its entries (by JupyterLab's command id)."""
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(f"^{menu}$")).click()
    page.locator(f'.lm-Menu-item[data-command="{command}"]').click()


def _wait_kernel(page, timeout: float) -> tuple[list[str], str]:
    """Until the notebook has a kernel or a dialog asks for one: (the dialogs' texts, the kernel's name shown)."""
    deadline = time.monotonic() + timeout
    name = page.locator(".jp-NotebookPanel-toolbar .jp-Toolbar-kernelName")
    while True:
        dialogs = page.locator(".jp-Dialog").all_inner_texts()
        shown = name.inner_text().strip() if name.count() else ""
        if dialogs or shown not in ("", "No Kernel", "Kernel") or time.monotonic() > deadline:
            return dialogs, shown
        page.wait_for_timeout(250)


def _wait_idle(page, timeout: float) -> None:
    """Until the kernel is idle and no cell is queued or running ([*]), twice in a row."""
    deadline, calm = time.monotonic() + timeout, 0
    while calm < 2:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the notebook was still running after {timeout:.0f} s")
        busy = page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").count() == 0
        running = [t for t in page.locator(".jp-CodeCell .jp-InputPrompt").all_inner_texts() if "*" in t]
        calm = 0 if busy or running else calm + 1
        page.wait_for_timeout(500)


def _save(page, path: Path, timeout: float = 60) -> nbformat.NotebookNode:
    """File > Save, then the file as the server wrote it (it writes in place: read once the tab is clean and the
    file parses)."""
    before = path.stat().st_mtime_ns
    _menu(page, "File", "docmanager:save")
    deadline = time.monotonic() + timeout
    while True:
        page.wait_for_timeout(250)
        clean = page.locator(".lm-TabBar-tab.jp-mod-dirty").count() == 0
        if clean and path.stat().st_mtime_ns != before:
            try:
                return nbformat.read(path, as_version=4)
            except (nbformat.reader.NotJSONError, json.JSONDecodeError):
                pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path.name} was not saved within {timeout:.0f} s")


def run_in_lab(browser, lab: Lab, file: str, then=None) -> LabRun:
    """Open ``file`` in JupyterLab, run all its cells from the Run menu, call ``then(page)`` and save."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        page.goto(f"{lab.url}/lab/tree/{file}?token={lab.token}&reset", timeout=120_000)
        page.wait_for_selector(".jp-NotebookPanel .jp-Notebook .jp-Cell", timeout=120_000)
        dialogs, kernel_shown = _wait_kernel(page, 120)
        kernels, deadline = [], time.monotonic() + 60
        while not kernels and not dialogs and time.monotonic() < deadline:  # the server's record of it
            kernels = [s["kernel"]["name"] for s in lab.api("GET", "/api/sessions") if s["path"].endswith(file)]
            page.wait_for_timeout(250)
        if dialogs:  # what a student would have to answer: the check fails on it
            page.keyboard.press("Escape")
        _wait_idle(page, 120)
        _menu(page, "Run", "runmenu:run-all")
        page.wait_for_timeout(1000)
        _wait_idle(page, RUN_ALL_TIMEOUT)
        notes = then(page) if then else []
        prompts = page.locator(".jp-CodeCell .jp-InputPrompt").all_inner_texts()
        images = page.locator(".jp-OutputArea-output img").count()
        saved = _save(page, lab.root / file)
        errors = [
            f"{output.get('ename')}: {output.get('evalue')}"
            for cell in saved.cells
            if cell.cell_type == "code"
            for output in cell.get("outputs", [])
            if output.output_type == "error"
        ]
        return LabRun(
            name=file,
            dialogs=dialogs,
            kernel_shown=kernel_shown,
            kernels=kernels,
            code_cells=len(prompts),
            executed=sum(bool(re.search(r"\[\d+\]", text)) for text in prompts),
            images=images,
            errors=errors,
            saved=saved,
            notes=notes or [],
        )
    finally:
        page.close()


@pytest.fixture(scope="module")
def checkout_state():
    """The source notebooks' bytes and what ``git status`` says of them, before the browser tests."""

    def state():
        files = {p.name: p.read_bytes() for p in sorted(NOTEBOOKS_DIR.glob("*.ipynb"))}
        status = ""
        if (PROJ_ROOT / ".git").exists() and shutil.which("git"):
            status = subprocess.run(
                ["git", "status", "--porcelain", "--", "notebooks"], cwd=PROJ_ROOT, capture_output=True, text=True
            ).stdout
        return files, status

    before = state()
    yield before, state


def test_eda_runs_in_jupyterlab_in_chromium_on_a_smoke_run(chromium, smoke_run, lab, browser, checkout_state):
    """01 in the browser: python3 with no dialog, every code cell executed, its 7 figures, no error; the checkout
    as it was."""
    result = run_in_lab(browser, lab, open_on_run(lab, "01_eda", smoke_run[0]))
    assert result.problems(EXPECTED_IMAGES["01_eda"]) == []
    before, state = checkout_state
    assert state() == before, "opening and running a notebook changes nothing in the checkout"


def test_a_cell_that_raises_fails_the_browser_check(chromium, smoke_run, lab, browser):
    """The same check on a copy of 01 whose third code cell raises: it names the error and the cells not run."""
    result = run_in_lab(browser, lab, open_on_run(lab, "01_eda", smoke_run[0], broken=True))
    problems = result.problems(EXPECTED_IMAGES["01_eda"])
    assert "error output: RuntimeError: a deliberately broken cell" in problems
    assert any("code cells were not executed" in problem for problem in problems)


def _move_global_slider(page) -> list[str]:
    """Drag the explorer's slider for every class to its right end; returns the macro F1 line before and after
    (after: once the kernel has answered)."""
    macro = page.locator(".widget-html", has_text="macro F1 on validation").first
    before = macro.inner_text()
    slider = page.locator(".widget-slider", has_text="every class").first
    slider.scroll_into_view_if_needed()
    handle = slider.locator(".noUi-handle").first
    track = slider.locator(".noUi-target").first.bounding_box()
    start = handle.bounding_box()
    page.mouse.move(start["x"] + start["width"] / 2, start["y"] + start["height"] / 2)
    page.mouse.down()
    page.mouse.move(track["x"] + track["width"] + 20, start["y"] + start["height"] / 2, steps=12)
    page.mouse.up()
    deadline = time.monotonic() + 60
    while macro.inner_text() == before and time.monotonic() < deadline:
        page.wait_for_timeout(250)
    readout = slider.locator(".widget-readout").first.inner_text()
    return [before, macro.inner_text(), readout]


def test_the_explorer_runs_in_jupyterlab_and_follows_a_slider(chromium, smoke_run, lab, browser, checkout_state):
    """06 in the browser: runs cleanly with its two views' images; dragging the slider for every class to its end
    changes the macro F1 the kernel computes, and the slider reads 0.99."""
    result = run_in_lab(browser, lab, open_on_run(lab, "06_explore", smoke_run[0]), then=_move_global_slider)
    assert result.problems(EXPECTED_IMAGES["06_explore"]) == []
    before, after, readout = result.notes
    assert readout.strip() == "0.99"
    assert before != after and "macro F1 on validation" in after
    was, now = checkout_state
    assert now() == was


# ----------------------------------------------------------------------------- make lab


def test_make_lab_prints_the_url_with_its_token_and_the_way_in_from_another_machine():
    from hpa_utils.run.lab_start import instructions, lab_command

    text = instructions(9999, "abc123")
    assert "http://localhost:9999/lab?token=abc123" in text
    assert 'make lab ARGS="--no-browser --port 9999"' in text and "ssh -N -L 9999:localhost:9999" in text
    assert "runs/<preset>/notebooks/" in text and "06_explore" in text
    command = lab_command(["--no-browser", "--port", "9999"], PROJ_ROOT, 9999, "abc123")
    assert command[1:3] == ["lab", f"--ServerApp.root_dir={PROJ_ROOT}"]
    assert {"--port=9999", "--ServerApp.port_retries=0", "--IdentityProvider.token=abc123", "--no-browser"} <= set(
        command
    )
    assert "--port" not in command and "9999" not in command, "the port is given once"


def test_make_lab_refuses_a_port_in_use(capsys):
    from hpa_utils.run.lab_start import main

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["--no-browser", "--port", str(port)]) == 1
    assert f"port {port} is in use" in capsys.readouterr().err
