"""Notebooks as a person meets them: JupyterLab in headless Chromium, interactive mode left on "auto".

The test starts its own JupyterLab (free port, random token, a temporary root folder holding copies of every
notebook with the small parameters of notebooks/params/ci.yaml), opens each notebook cold (a fresh kernel, the
notebook's first view) in the system's Chromium (Debian ``chromium``; `make test` installs it when missing) driven
by Playwright, runs all cells, then checks that

* the interactive mode switched itself on (a widget exists, although INTERACTIVE is "auto"),
* no cell failed and no widget failed to render ("Error displaying widget") or stayed loading,
* the first view of every interactive figure is not empty: each plotly figure has drawn points or bars, its title
  and, with several traces, a legend that lies inside the figure; each explorer shows a picture,
* moving one control of each explorer (02: the image slider; 03: the outlier slider; 04: the method picker;
  05: the OOD set; 06: the set picker; 07: the image slider) changes the explorer's output, and no copy of its
  numbers stays outside the widget.

Without Chromium the test is skipped, unless ``CLIPOS_REQUIRE_BROWSER=1`` (set by `make test`, so CI fails rather
than passes without it). Screenshots go to ``$CLIPOS_SCREENSHOTS`` when set (to look at what a student sees).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
NB_DIR = ROOT / "notebooks"
BROWSERS = ("chromium", "chromium-browser", "google-chrome")
NOTEBOOKS = sorted(p.stem for p in NB_DIR.glob("0*.ipynb"))

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _browser() -> str | None:
    return next((p for p in map(shutil.which, BROWSERS) if p), None)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A JupyterLab server on a temporary root with small copies of every notebook; yields (base url, token, root)."""
    if _browser() is None:
        message = "no Chromium on this machine: `make test` installs it (apt-get install -y chromium)"
        if os.environ.get("CLIPOS_REQUIRE_BROWSER", "") not in ("", "0"):
            pytest.fail(f"{message}; CLIPOS_REQUIRE_BROWSER is set, so the browser test may not be skipped")
        pytest.skip(message)
    if os.environ.get("CLIPOS_REQUIRE_BROWSER", "") not in ("", "0"):
        import playwright.sync_api  # noqa: F401  (required: an ImportError fails the test)
    pytest.importorskip("playwright.sync_api")
    root = tmp_path_factory.mktemp("lab")
    params = yaml.safe_load((NB_DIR / "params" / "ci.yaml").read_text())
    for name in ("INTERACTIVE", "PROGRESS"):  # keep the notebooks' own "auto": the test checks that it detects Lab
        params.pop(name, None)
    for stem in NOTEBOOKS:
        nb = nbformat.read(str(NB_DIR / f"{stem}.ipynb"), as_version=4)
        names = {line.split(":")[0] for c in nb.cells if "parameters" in c.metadata.get("tags", [])
                 for line in c.source.splitlines() if ":" in line}
        mine = {k: v for k, v in params.items() if k in names}
        mine["OUTPUT_DIR"] = str(root / "outputs" / stem)
        at = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
        injected = nbformat.v4.new_code_cell("\n".join(f"{k} = {v!r}" for k, v in mine.items()))
        injected.metadata["tags"] = ["injected-parameters"]  # what papermill would add: small sizes for a quick run
        nb.cells.insert(at + 1, injected)
        nbformat.write(nb, str(root / f"{stem}.ipynb"))
    settings = root / ".settings"  # every cell rendered (no windowing), so the test can read every prompt; no news
    for name, value in (("notebook-extension/tracker", {"windowingMode": "none"}),
                        ("apputils-extension/notification", {"fetchNews": "false", "checkForUpdates": False})):
        path = settings / "@jupyterlab" / f"{name}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(value))
    port, token = _free_port(), secrets.token_hex(16)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "HF_HUB_OFFLINE": "1", "JUPYTER_CONFIG_DIR": str(root / ".jupyter"),
           "JUPYTER_RUNTIME_DIR": str(root / ".runtime"),
           "JUPYTERLAB_SETTINGS_DIR": str(settings), "JUPYTERLAB_WORKSPACES_DIR": str(root / ".workspaces"),
           "CLIPOS_INTERACTIVE": ""}
    env.pop("MPLBACKEND", None)  # Lab kernels draw inline anyway; keep the environment a student would have
    log = open(root / "lab.log", "w")
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}", "--ServerApp.open_browser=False",
         "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
         *(["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else [])],  # CI containers run as root
        cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2)
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"JupyterLab did not start:\n{(root / 'lab.log').read_text()[-3000:]}")
                time.sleep(0.5)
        yield base, token, root
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


@pytest.fixture(scope="module")
def page(lab):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=_browser(), headless=True,
                                    args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        pg = context.new_page()
        pg.set_default_timeout(60_000)
        yield pg
        browser.close()


def _shot(pg, name: str):
    folder = os.environ.get("CLIPOS_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        pg.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=False)


def _panel(pg):
    """The notebook in the active tab (other tabs stay in the page, hidden)."""
    return pg.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")


def _kernel_idle(pg, timeout_s: float = 180):
    """Wait until the status bar reports the notebook's kernel idle (accepting a kernel dialog if one shows)."""
    deadline = time.monotonic() + timeout_s
    status = pg.locator("#jp-main-statusbar").filter(has_text=re.compile(r"\|\s*Idle"))
    while time.monotonic() < deadline:
        dialog = pg.locator(".jp-Dialog .jp-mod-accept")
        if dialog.count():
            dialog.first.click()
        if status.count():
            return
        time.sleep(0.5)
    raise AssertionError("the notebook's kernel never became idle")


def _run_all(pg, lab, stem: str, timeout_s: float = 600):
    base, token, root = lab
    pg.goto(f"{base}/lab/tree/{stem}.ipynb?reset&token={token}")  # reset: only this notebook open
    _panel(pg).locator(".jp-Notebook .jp-Cell").first.wait_for()
    _kernel_idle(pg)
    prompts = _panel(pg).locator(".jp-CodeCell .jp-InputArea-prompt")
    for attempt in range(3):  # a click that lands while Lab is still settling can be lost: check that cells start
        pg.get_by_role("menuitem", name="Run", exact=True).click()
        pg.get_by_role("menuitem", name=re.compile(r"^Run All Cells")).click()
        started = time.monotonic() + 30
        while time.monotonic() < started and not any(re.search(r"\[(\*|\d+)\]", t)
                                                      for t in prompts.all_inner_texts()):
            time.sleep(0.5)
        if any(re.search(r"\[(\*|\d+)\]", t) for t in prompts.all_inner_texts()):
            break
    n_cells = len(nbformat.read(str(root / f"{stem}.ipynb"), as_version=4).cells)
    deadline = time.monotonic() + timeout_s
    while True:
        texts = prompts.all_inner_texts()
        done = [t for t in texts if re.search(r"\[\d+\]", t)]
        if texts and len(done) == len(texts) and not any("*" in t for t in texts):
            break
        if _panel(pg).locator(".jp-RenderedText[data-mime-type='application/vnd.jupyter.error']").count():
            break
        if time.monotonic() > deadline:
            _shot(pg, f"{stem}-timeout")
            raise AssertionError(f"{stem}: cells still running after {timeout_s:.0f} s ({len(done)}/{len(texts)} "
                                 f"code cells done, {n_cells} cells)")
        time.sleep(1)
    time.sleep(3)  # widget views render after the kernel goes idle


def _check_clean(pg, stem: str):
    errors = _panel(pg).locator(".jp-RenderedText[data-mime-type='application/vnd.jupyter.error']")
    assert errors.count() == 0, f"{stem}: a cell failed:\n{errors.first.inner_text()[:3000]}"
    body = _panel(pg).locator(".jp-Notebook").inner_text()
    assert "Error displaying widget" not in body, f"{stem}: a widget failed to render"
    assert "Loading widget" not in body, f"{stem}: a widget never rendered"
    assert "clipos_lab notebook: interactive" in body, f"{stem}: INTERACTIVE='auto' did not switch widgets on in Lab"


def _explorer_output(pg):
    return _panel(pg).locator(".jp-OutputArea-output .widget-output").last


def _wait_changed(locator, before: str, timeout_s: float = 60) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        now = locator.inner_text()
        if now.strip() and now != before:
            return now
        time.sleep(0.5)
    raise AssertionError(f"the explorer's output did not change:\n{before[:500]}")


def _check_first_views(pg, stem: str, min_figures: int = 1) -> int:
    """Every plotly figure of the notebook drew its data, title and (several traces) an in-figure legend; every
    picture in a widget output has pixels. Returns the number of plotly figures."""
    plots = _panel(pg).locator(".js-plotly-plot")
    n = plots.count()
    assert n >= min_figures, f"{stem}: {n} plotly figures, expected at least {min_figures}"
    for k in range(n):
        plot = plots.nth(k)
        plot.scroll_into_view_if_needed()
        marks = plot.locator(".scatterlayer .point, .barlayer .point, .barlayer path").count()
        traces = plot.locator(".scatterlayer .trace, .barlayer .trace").count()
        title = plot.locator(".gtitle").all_text_contents()
        assert marks > 0, f"{stem}: plotly figure {k + 1} of {n} is empty (no points or bars drawn)"
        assert any(t.strip() for t in title), f"{stem}: plotly figure {k + 1} of {n} has no title"
        if traces > 1:
            legend = plot.locator(".legend")
            assert legend.count() and legend.locator(".traces").count(), f"{stem}: figure {k + 1} has no legend"
            box, frame = legend.first.bounding_box(), plot.locator(".main-svg").first.bounding_box()
            assert box and frame and box["x"] >= frame["x"] - 1 and box["y"] >= frame["y"] - 1 and (
                box["x"] + box["width"] <= frame["x"] + frame["width"] + 1) and (
                box["y"] + box["height"] <= frame["y"] + frame["height"] + 1), \
                f"{stem}: the legend of figure {k + 1} sticks out of its figure: {box} vs {frame}"
    images = _panel(pg).locator(".widget-output img")
    for k in range(images.count()):
        width = images.nth(k).evaluate("img => img.complete ? img.naturalWidth : -1")
        assert width != 0, f"{stem}: a picture in an explorer is empty"
    return n


def _explorer_image(out, timeout_s: float = 60) -> None:
    """The explorer's output holds a picture (its text comes first, the figure a moment later)."""
    deadline = time.monotonic() + timeout_s
    while out.locator("img").count() == 0 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert out.locator("img").count() >= 1, f"the explorer shows no picture:\n{out.inner_text()[:300]}"


def _wait_redrawn(out, before_html: str, what: str, timeout_s: float = 60) -> None:
    """The output's content (its picture included) differs from ``before_html``."""
    deadline = time.monotonic() + timeout_s
    while out.inner_html() == before_html and time.monotonic() < deadline:
        time.sleep(0.5)
    assert out.inner_html() != before_html, f"{what} did not redraw"


def _type_into(page, readout, value) -> None:
    """Set a slider by typing into its readout, as a person does."""
    readout.click()
    page.keyboard.press("Control+A")
    page.keyboard.type(str(value))
    page.keyboard.press("Enter")


def _pick_another(picker) -> None:
    """Choose a dropdown option other than the current one."""
    options = picker.locator("option").all_inner_texts()
    current = picker.input_value()
    picker.select_option(next(o for o in options if o != current))


def test_relevance_maps_in_jupyterlab(lab, page):
    _run_all(page, lab, "02_relevance_maps")
    _check_clean(page, "02")
    out = _explorer_output(page)
    out.scroll_into_view_if_needed()
    before = out.inner_text()
    assert "rho=" in before and "patches ID-relevant" in " ".join(before.split())  # wrapped lines: 196 patches on v2
    _explorer_image(out)
    _shot(page, "02-explorer-before")
    readout = _panel(page).locator(".widget-slider .widget-readout").last  # the explorer's image slider
    old = readout.inner_text().strip()
    _type_into(page, readout, str((int(old) + 1) % 4))
    after = _wait_changed(out, before)
    assert "rho=" in after
    time.sleep(2)
    _shot(page, "02-explorer-after")
    _check_clean(page, "02")
    cells = " ".join(_panel(page).locator(".jp-Notebook").inner_text().split())
    assert cells.count("patches ID-relevant") == 1, "the explorer's numbers are printed outside the widget too"


def test_prompt_learning_in_jupyterlab(lab, page):
    _run_all(page, lab, "04_prompt_learning_and_scores")
    _check_clean(page, "04")
    _check_first_views(page, "04", min_figures=1)
    out = _explorer_output(page)
    out.scroll_into_view_if_needed()
    before = out.inner_text()
    assert "TPR" in before and "FPR" in before
    _shot(page, "04-explorer-before")
    picker = _panel(page).locator(".widget-dropdown select").first  # method
    _pick_another(picker)
    after = _wait_changed(out, before)
    assert "TPR" in after
    time.sleep(2)
    _shot(page, "04-explorer-after")
    _check_clean(page, "04")


def test_quickstart_in_jupyterlab(lab, page):
    _run_all(page, lab, "01_quickstart")
    _check_clean(page, "01")
    _check_first_views(page, "01", min_figures=1)


def test_outlier_map_first_view_in_jupyterlab(lab, page):
    """Item 1 of issue 23: 03's map came up empty (axes only) on a cold first run."""
    _run_all(page, lab, "03_synthetic_outliers_umap")
    _check_clean(page, "03")
    _check_first_views(page, "03", min_figures=1)
    plot = _panel(page).locator(".js-plotly-plot").first
    legend = " ".join(plot.locator(".legend .traces").all_text_contents())
    assert "outliers alpha=" in legend and "ID: " in legend and "OOD: " in legend, legend
    assert plot.locator(".scatterlayer .point").count() >= 20  # every outlier and image, not a stub
    _shot(page, "03-map")
    out = _explorer_output(page)
    out.scroll_into_view_if_needed()
    before = out.inner_text()
    assert "outlier #" in before or "lam" in before, before
    _explorer_image(out)
    drawn = out.inner_html()
    readout = _panel(page).locator(".widget-slider .widget-readout").last  # the outlier slider
    _type_into(page, readout, "3")
    _wait_redrawn(out, drawn, "03's parents")
    _explorer_image(out)
    _check_first_views(page, "03", min_figures=1)
    _shot(page, "03-parents-after")


def test_benchmark_explorer_in_jupyterlab(lab, page):
    _run_all(page, lab, "05_benchmark")
    _check_clean(page, "05")
    out = _explorer_output(page)
    out.scroll_into_view_if_needed()
    before = out.inner_text()
    assert "AUROC" in before and "FPR95" in before
    _explorer_image(out)
    picker = _panel(page).locator(".widget-dropdown select").last  # the OOD set
    _pick_another(picker)
    after = _wait_changed(out, before)
    assert "OOD set" in after
    _explorer_image(out)
    _shot(page, "05-explorer-after")
    _check_clean(page, "05")


def test_saying_no_in_jupyterlab(lab, page):
    """Item 2 of issue 23: the interactive histograms are the whole grid (ATD, CTW, MCM x OOD sets)."""
    _run_all(page, lab, "06_saying_no")
    _check_clean(page, "06")
    _check_first_views(page, "06", min_figures=1)
    grid = _panel(page).locator(".js-plotly-plot").last
    titles = grid.locator(".annotation-text").all_text_contents()
    for score in ("ATD", "CTW", "MCM"):
        assert sum(t.startswith(f"{score} |") for t in titles) >= 2, titles
    _shot(page, "06-grid")
    out = _panel(page).locator(".jp-OutputArea-output .widget-output").first  # the yes / no explorer
    out.scroll_into_view_if_needed()
    _explorer_image(out)
    before = out.inner_html()
    picker = _panel(page).locator(".widget-dropdown select").first  # the set
    _pick_another(picker)
    _wait_redrawn(out, before, "06's explorer")
    _explorer_image(out)
    _check_clean(page, "06")


def test_anomaly_explorer_in_jupyterlab(lab, page):
    """Item 3 of issue 23: no stale line of the explorer's numbers above its widget after a control moves."""
    _run_all(page, lab, "07_anomaly_maps")
    _check_clean(page, "07")
    out = _explorer_output(page)
    out.scroll_into_view_if_needed()
    before = out.inner_text()
    assert "image score" in before
    _explorer_image(out)
    readout = _panel(page).locator(".widget-slider .widget-readout").first  # the image slider
    old = int(readout.inner_text().strip())
    _type_into(page, readout, str(old + 1))
    after = _wait_changed(out, before)
    first_line = after.strip().splitlines()[0]
    cells = _panel(page).locator(".jp-Notebook").inner_text()
    lines = re.findall(r"\S+: [\w-]+ image score [-\d.]+", cells)  # "stain/050001: mutual image score 0.120"
    assert len(lines) == 1, f"07: the explorer's line is printed outside its widget too: {lines}"
    assert first_line in cells
    _explorer_image(out)
    _shot(page, "07-explorer-after")
    _check_clean(page, "07")
