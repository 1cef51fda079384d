"""Real-browser test: Debian Chromium driven by Playwright against `streamlit run app.py` on 127.0.0.1.

Opens every page, moves the threshold, uploads a real slice with its mask, a grayscale slice and a bad
file, and saves screenshots to test-artifacts/screenshots/ (cleared first, so they are this run's).
Skipped (or, under CI, failed) when /usr/bin/chromium is missing.

Synchronization: after every action the test waits for an element only that action's rerun can draw,
then for the script run to be over (`IDLE`), then again for each element it reads: never for a fixed time.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import time

import numpy as np
import pytest
from browser_support import (
    CHROMIUM,
    CHROMIUM_ARGS,
    FAILURES,
    IDLE,
    MAIN,
    SIDEBAR,
    SKELETON,
    configure_timeouts,
    require_chromium,
    saved_on_failure,
    streamlit_server,
)
from conftest import DEMO_DIR, ROOT

ARTIFACTS = ROOT / "test-artifacts"
SHOTS = ARTIFACTS / "screenshots"
TIMINGS = ARTIFACTS / "ui_timings.json"
SCREENSHOTS = ("patients", "review_tools", "volume_3d", "errors", "threshold", "dataset", "model_card", "upload")
RESULT_COLUMNS = ["file", "classifier_probability", "slice_score", "threshold", "passed_gate", "tumor_called",
                  "predicted_tumor_pixels", "true_tumor_pixels", "dice", "iou", "notes", "out_of_distribution"]
require_chromium()
playwright = pytest.importorskip("playwright.sync_api")


@pytest.fixture(scope="module", autouse=True)
def run_started() -> float:
    """Delete the screenshots and timings this module writes, so that what the last test finds was written now."""
    started = time.time()
    for old in SHOTS.glob("*.png"):
        old.unlink()
    TIMINGS.unlink(missing_ok=True)
    for old in FAILURES.glob("test_every_page_threshold_and_uploads.*"):
        old.unlink()
    SHOTS.mkdir(parents=True, exist_ok=True)
    return started


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with streamlit_server(tmp_path_factory.mktemp("server") / "streamlit.log") as (url, _process):
        yield url


@pytest.fixture(scope="module")
def browser():
    """One Playwright and one Chromium for the module: a second sync Playwright cannot start while one runs."""
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@contextlib.contextmanager
def _visitor(browser, **context_options):
    """A page in a new browser context (a new visitor: its own Streamlit session), closed afterwards."""
    context = browser.new_context(viewport={"width": 1500, "height": 1100}, **context_options)
    configure_timeouts(context)
    page = context.new_page()
    configure_timeouts(page)
    try:
        yield page
    finally:
        context.close()


@pytest.fixture(scope="module")
def page(server, browser):
    with _visitor(browser, accept_downloads=True) as page:
        yield page


def _after(page, *expected) -> None:
    """Wait out the rerun an action started; ``expected``: locators only that rerun draws.

    The first wait proves the action's own run has begun drawing (IDLE alone can still show the run
    before it); IDLE then says it finished; the last wait makes sure the elements are still in place.
    """
    for locator in expected:
        locator.first.wait_for()
    page.wait_for_selector(IDLE)
    page.locator(SKELETON).first.wait_for(state="detached")  # every element's component has loaded
    for locator in expected:
        locator.first.wait_for()


def _drawn(page) -> None:
    """Wait until the finished run's images have loaded and its Plotly charts are drawn (for screenshots)."""
    page.wait_for_selector(IDLE)
    page.wait_for_function("[...document.images].every(img => img.complete && img.naturalWidth > 0)")
    page.wait_for_function("""[...document.querySelectorAll("[data-testid='stPlotlyChart']")]
                              .every(chart => chart.querySelector('.main-svg'))""")
    # Two animation frames: whatever the charts scheduled on load has been painted.
    page.evaluate("new Promise(done => requestAnimationFrame(() => requestAnimationFrame(done)))")


def _open(page, url: str, marker: str, *more) -> None:
    """Load ``url`` (a new session); ``marker``: a text of that page, ``more``: locators read next."""
    page.goto(url)
    _after(page, page.get_by_text(marker), *more)
    _drawn(page)


def _no_exception(page) -> None:
    assert page.locator("[data-testid='stException']").count() == 0, page.inner_text("body")[:2000]


def _switch_on(page, label: str) -> None:
    """Turn an ``st.toggle`` on. Under load a click can land while the app is still redrawing and be lost,
    so the switch's own state is read back and the click repeated until it shows on."""
    switch = page.get_by_label(label)  # the hidden checkbox input; its label takes the clicks
    for _attempt in range(4):
        if switch.is_checked():
            return
        page.get_by_text(label).click()
        try:
            playwright.expect(switch).to_be_checked(timeout=15_000)
            return
        except AssertionError:
            page.wait_for_selector(IDLE)
    raise AssertionError(f"the {label!r} switch did not turn on after four clicks")


def _metric(page, label: str):
    return page.locator("[data-testid='stMetric']", has=page.locator("[data-testid='stMetricLabel']",
                                                                       has_text=label))


def test_every_page_threshold_and_uploads(server, page, tmp_path):
    with saved_on_failure(page, "test_every_page_threshold_and_uploads"):
        _every_page_threshold_and_uploads(server, page, tmp_path)


def _every_page_threshold_and_uploads(server, page, tmp_path) -> None:
    # Timings are recorded for the README (test-artifacts/ui_timings.json), never asserted.
    timings = {}
    start = time.perf_counter()
    sidebar = page.locator(SIDEBAR)
    folder = sidebar.get_by_role("combobox", name="Data folder (Kaggle kaggle_3m layout)", exact=True)
    _open(page, server, "Tumor burden across the patient", _metric(page, "Slice score"), folder,
          sidebar.get_by_text("Research use only"))
    timings["first_patient_view_s (server cold: includes model load)"] = time.perf_counter() - start
    _no_exception(page)
    assert folder.input_value() == "demo cases (shipped)"  # a selectbox now, not a free text input
    assert _metric(page, "Slice score").count() == 1
    assert _metric(page, "P(tumor)").count() == 0  # the old label
    page.screenshot(path=str(SHOTS / "patients.png"), full_page=True)

    # Clicking a slice's point on the tumor-burden strip jumps there.
    strip = page.locator(MAIN).locator("[data-testid='stPlotlyChart']").first
    strip.scroll_into_view_if_needed()
    point = strip.locator("g.trace.scatter path.point").nth(4)  # slice 5 of the first patient
    point.wait_for()
    box = point.bounding_box()
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    _after(page, page.get_by_text("Showing TCGA_CS_6669 slice 5 "))
    start = time.perf_counter()
    page.get_by_role("button", name="▶").click()
    _after(page, page.get_by_text("Showing TCGA_CS_6669 slice 6 "))
    timings["next_slice_s"] = time.perf_counter() - start

    # Move the shared threshold with the keyboard and see the decision label follow it.
    before = _metric(page, "Decision at").locator("[data-testid='stMetricLabel']").inner_text()
    assert "0.000" not in before, before
    thumb = sidebar.locator("input[type='range']").first
    thumb.focus()
    start = time.perf_counter()
    thumb.press("Home")  # threshold 0: every slice passes the gate
    _after(page, _metric(page, "Decision at 0.000"))
    timings["threshold_change_s"] = time.perf_counter() - start
    start = time.perf_counter()
    page.locator(MAIN).get_by_role("combobox", name="Patient (type to search)", exact=True).click()
    page.keyboard.type("TCGA_HT_7855")  # the list filters as one types; pick the option it leaves
    page.get_by_role("option").filter(has_text="TCGA_HT_7855").click()
    _after(page, page.get_by_text("Showing TCGA_HT_7855 slice"))
    timings["another_patient_first_view_s"] = time.perf_counter() - start
    _metric(page, "Decision at 0.000").wait_for()  # the threshold is the session's, kept across patients
    _no_exception(page)

    # Review tools: uncertainty and Grad-CAM overlays, then the 3-D view.
    page.get_by_text("Uncertainty overlay (test-time augmentation)").click()
    _after(page, page.get_by_text("Uncertainty (std over"))
    page.get_by_text("Grad-CAM overlay (classifier saliency)").click()
    _after(page, page.get_by_text("Grad-CAM of P(tumor)"), page.get_by_text("Uncertainty (std over"))
    _no_exception(page)
    _drawn(page)
    page.get_by_text("Review tools").scroll_into_view_if_needed()
    page.screenshot(path=str(SHOTS / "review_tools.png"), full_page=True)
    page.get_by_text("3-D view: ground truth and prediction").click()  # an expander: opens in the browser only
    _switch_on(page, "Build the 3-D view")
    volume = page.locator("[data-testid='stExpander']", has_text="3-D view").locator("[data-testid='stPlotlyChart']")
    _after(page, page.get_by_text("Surfaces from the stacked masks"), volume.locator(".gl-container canvas"))
    _drawn(page)
    volume.scroll_into_view_if_needed()
    volume.screenshot(path=str(SHOTS / "volume_3d.png"))
    _no_exception(page)

    for path, marker in (("errors", "Open in Patients"), ("threshold", "Expected calibration error"),
                         ("dataset", "Patient-level split"), ("model_card", "Intended use")):
        _open(page, f"{server}/{path}", marker)
        _no_exception(page)
        page.screenshot(path=str(SHOTS / f"{path}.png"), full_page=True)

    _open(page, f"{server}/upload", "No files yet.")
    bad = tmp_path / "not_an_image.png"
    bad.write_text("<html><script>alert(1)</script></html>")
    slice_path = DEMO_DIR / "TCGA_FG_A4MU_20030903" / "TCGA_FG_A4MU_20030903_20.tif"
    mask_path = slice_path.with_name("TCGA_FG_A4MU_20030903_20_mask.tif")
    gray = tmp_path / "zz_grayscale.png"  # sorts after the TCGA slice, which the page therefore shows first
    _write_grayscale_png(slice_path, gray)
    start = time.perf_counter()
    page.locator("input[type='file']").set_input_files([str(slice_path), str(mask_path), str(bad), str(gray)])
    refusal = page.locator("[data-testid='stAlert']", has_text="not_an_image.png")
    outside = page.locator("[data-testid='stAlert']", has_text="outside the training distribution")
    paired = page.get_by_text("Ground truth (red) and prediction (green)")  # the slice was paired with its mask
    score = _metric(page, "Slice score — decision at")
    _after(page, refusal, outside, paired, score)
    timings["upload_two_slices_s"] = time.perf_counter() - start
    assert "refused" in refusal.inner_text() and "not a TIFF, PNG or JPEG" in refusal.inner_text()
    assert "1 slice(s) are outside the training distribution" in outside.first.inner_text()
    grid = page.locator(MAIN).locator("[data-testid='stDataFrame'] table[role='grid']")  # the results table
    assert grid.get_attribute("aria-colcount") == str(len(RESULT_COLUMNS))
    headers = grid.locator("th[role='columnheader']").all_inner_texts()  # those scrolled into view
    assert headers and headers == RESULT_COLUMNS[: len(headers)], headers
    shown = float(score.locator("[data-testid='stMetricValue']").inner_text())
    _no_exception(page)
    _drawn(page)
    page.screenshot(path=str(SHOTS / "upload.png"), full_page=True)

    # The grayscale slice: no mask, and a warning of its own.
    page.locator(MAIN).get_by_role("combobox", name="Slice", exact=True).click()
    page.get_by_role("option", name=gray.name).click()
    gray_warning = page.locator("[data-testid='stAlert']", has_text=f"{gray.name}: outside the training distribution")
    _after(page, gray_warning, page.get_by_text("Prediction (green)", exact=True))
    assert "outside training distribution" in score.inner_text()
    _no_exception(page)

    # The results table as downloaded: the documented columns, one row per usable slice. Last, because the
    # download button's rerun draws nothing new to wait for.
    with page.expect_download() as download:
        page.get_by_role("button", name="Download the results table (CSV)").click()
    rows = list(csv.DictReader(io.StringIO(download.value.path().read_text())))
    assert list(rows[0]) == RESULT_COLUMNS
    assert [r["file"] for r in rows] == [slice_path.name, gray.name]
    real, grayscale = rows
    assert real["out_of_distribution"] == "" and "grayscale" in grayscale["out_of_distribution"]
    assert real["true_tumor_pixels"] != "" and grayscale["true_tumor_pixels"] == ""
    assert abs(shown - float(real["slice_score"])) < 1.5e-3, (shown, real)  # the page shows the table's score
    _after(page, gray_warning)
    _no_exception(page)
    TIMINGS.write_text(json.dumps({k: round(v, 2) for k, v in timings.items()}, indent=2) + "\n")


def test_threshold_page_on_a_prediction_store(browser, tmp_path, monkeypatch):
    """A server reading a filled prediction store ($BRAINSEG_STORE): the Threshold page opens without running the
    cascade; a preset click and a slider move rerun only the threshold fragment, and the sidebar's slider follows.
    Timings are added to test-artifacts/ui_timings.json for the README (recorded, never asserted)."""
    import subprocess
    import sys

    store = tmp_path / "store"
    subprocess.run([sys.executable, "-m", "brainseg.cli", "score", "--data", str(DEMO_DIR), "--store", str(store)],
                   cwd=ROOT, check=True, capture_output=True)
    monkeypatch.setenv("BRAINSEG_STORE", str(store))
    timings = {}
    with (streamlit_server(tmp_path / "streamlit.log") as (url, _process), _visitor(browser) as page,
          saved_on_failure(page, "test_threshold_page_on_a_prediction_store")):
        _open(page, url, "Tumor burden across the patient")  # the models load here, not in the timing below
        start = time.perf_counter()
        _open(page, f"{url}/threshold", "Expected calibration error")
        timings["threshold_page_open_with_store_s (models loaded, counts not cached)"] = time.perf_counter() - start
        _no_exception(page)

        def thumb_values(value: str):
            return page.locator("[data-testid='stSliderThumbValue']", has_text=value)

        start = time.perf_counter()
        page.get_by_role("button", name="seed 0.05: 0.050").click()
        _after(page, page.locator(SIDEBAR).locator("[data-testid='stSliderThumbValue']", has_text="0.050"))
        timings["threshold_preset_click_s (store)"] = time.perf_counter() - start
        assert thumb_values("0.050").count() == 2  # the page's slider and the sidebar's, drawn by the fragment
        thumb = page.locator(MAIN).locator("input[type='range']").first
        thumb.focus()
        start = time.perf_counter()
        thumb.press("ArrowRight")
        # The sidebar's slider shows it only once the fragment's rerun has drawn it (the page's moves at once).
        _after(page, page.locator(SIDEBAR).locator("[data-testid='stSliderThumbValue']", has_text="0.051"))
        timings["threshold_slider_move_s (store)"] = time.perf_counter() - start
        assert thumb_values("0.051").count() == 2
        _no_exception(page)
    assert not list(store.rglob("*.tmp"))
    recorded = json.loads(TIMINGS.read_text()) if TIMINGS.is_file() else {}
    TIMINGS.write_text(json.dumps({**recorded, **{k: round(v, 2) for k, v in timings.items()}}, indent=2) + "\n")


def _write_grayscale_png(slice_path, target) -> None:
    """The FLAIR channel of a demo slice as an 8-bit grayscale PNG."""
    from PIL import Image

    flair = np.asarray(Image.open(slice_path))[..., 1]
    Image.fromarray(flair.astype(np.uint8), mode="L").save(target)


def test_a_page_address_opened_first_on_a_fresh_server_goes_through_the_router(browser, tmp_path):
    """Streamlit runs a pages/ file by itself (no app.py: no page configuration, a navigation of file names) when
    a fresh server's first session opens that page's address, until some script has called st.navigation."""
    with (streamlit_server(tmp_path / "streamlit.log") as (url, _process), _visitor(browser) as page,
          saved_on_failure(page, "test_a_page_address_opened_first_on_a_fresh_server")):
        page.goto(f"{url}/model_card")  # the first request this server has
        navigation = page.locator("[data-testid='stSidebarNav']")
        # The router's titles, not file names; on the old code the page drew itself under "model card".
        _after(page, navigation.get_by_text("Threshold & metrics", exact=True),
               page.locator(MAIN).get_by_text("Intended use: research and education"))
        assert page.url == f"{url}/model_card"
        titles = navigation.locator("[data-testid='stSidebarNavLink']").all_inner_texts()
        assert [title.split("\n")[-1].strip() for title in titles] == [
            "Patients", "Upload", "Study (NIfTI / DICOM)", "Error browser", "Threshold & metrics", "Dataset",
            "Model card"]
        assert page.title().startswith("brainseg")  # app.py's page configuration
        _no_exception(page)


def test_screenshots_were_written(run_started):
    for name in SCREENSHOTS:
        shot = SHOTS / f"{name}.png"
        assert shot.is_file(), f"{name}.png was not written by this run"
        assert shot.stat().st_mtime >= run_started, name
        assert shot.stat().st_size > 10_000, name
    assert TIMINGS.is_file() and TIMINGS.stat().st_mtime >= run_started
