"""Real-browser test: Debian Chromium driven by Playwright against `streamlit run app.py` on 127.0.0.1.

Opens every page, moves the threshold, uploads a real slice and a bad file, and saves screenshots
to test-artifacts/screenshots/. Skipped (or, under CI, failed) when /usr/bin/chromium is missing.
"""

from __future__ import annotations

import json
import time

import pytest
from browser_support import CHROMIUM, CHROMIUM_ARGS, IDLE, require_chromium, streamlit_server
from conftest import DEMO_DIR, ROOT

SHOTS = ROOT / "test-artifacts" / "screenshots"
require_chromium()
playwright = pytest.importorskip("playwright.sync_api")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with streamlit_server(tmp_path_factory.mktemp("server") / "streamlit.log") as (url, _process):
        yield url


@pytest.fixture(scope="module")
def page(server):
    SHOTS.mkdir(parents=True, exist_ok=True)
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1500, "height": 1100})
        yield context.new_page()
        browser.close()


def _settle(page, timeout: float = 120_000) -> None:
    page.wait_for_selector(IDLE, timeout=timeout)
    page.wait_for_timeout(300)
    page.wait_for_selector(IDLE, timeout=timeout)


def _open(page, url: str) -> None:
    page.goto(url)
    page.wait_for_selector("[data-testid='stApp']", timeout=120_000)
    _settle(page)


def _no_exception(page) -> None:
    assert page.locator("[data-testid='stException']").count() == 0, page.inner_text("body")[:2000]


def test_every_page_threshold_and_uploads(server, page, tmp_path):
    # Timings are recorded for the README (test-artifacts/ui_timings.json), never asserted.
    timings = {}
    start = time.perf_counter()
    _open(page, server)
    page.get_by_text("Tumor burden across the patient").wait_for(timeout=120_000)
    timings["first_patient_view_s (server cold: includes model load)"] = time.perf_counter() - start
    _no_exception(page)
    page.screenshot(path=str(SHOTS / "patients.png"), full_page=True)
    # Clicking a slice's point on the tumor-burden strip jumps there.
    strip = page.locator("[data-testid='stPlotlyChart']").first
    strip.scroll_into_view_if_needed()
    box = strip.locator("g.trace.scatter path.point").nth(4).bounding_box()  # slice 5 of the first patient
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.get_by_text("Showing TCGA_CS_6669 slice 5 ").wait_for(timeout=60_000)
    _settle(page)
    start = time.perf_counter()
    page.get_by_role("button", name="▶").click()
    _settle(page)
    timings["next_slice_s"] = time.perf_counter() - start
    assert "Research use only" in page.inner_text("[data-testid='stSidebar']")

    # Move the shared threshold with the keyboard and see the decision label follow it.
    before = page.get_by_text("Decision at").first.inner_text()
    thumb = page.locator("[data-testid='stSidebar'] input[type='range']").first
    thumb.focus()
    start = time.perf_counter()
    thumb.press("Home")  # threshold 0: every slice passes the gate
    page.get_by_text("Decision at 0.000").first.wait_for(timeout=60_000)
    _settle(page)
    timings["threshold_change_s"] = time.perf_counter() - start
    start = time.perf_counter()
    page.locator("[data-testid='stSelectbox']").first.click()
    page.keyboard.type("TCGA_HT_7855")
    page.keyboard.press("Enter")
    page.get_by_text("Showing TCGA_HT_7855 slice").wait_for(timeout=120_000)
    _settle(page)
    timings["another_patient_first_view_s"] = time.perf_counter() - start
    assert before != page.get_by_text("Decision at").first.inner_text()
    _no_exception(page)

    # Review tools: uncertainty and Grad-CAM overlays, then the 3-D view.
    page.get_by_text("Uncertainty overlay (test-time augmentation)").click()
    _settle(page)
    page.get_by_text("Grad-CAM overlay (classifier saliency)").click()
    page.get_by_text("Grad-CAM of P(tumor)").wait_for(timeout=120_000)
    _settle(page)
    _no_exception(page)
    page.get_by_text("Review tools").scroll_into_view_if_needed()
    page.screenshot(path=str(SHOTS / "review_tools.png"), full_page=True)
    page.get_by_text("3-D view: ground truth and prediction").click()
    page.get_by_text("Build the 3-D view").click()
    _settle(page)
    volume = page.locator("[data-testid='stPlotlyChart']").last
    volume.locator(".gl-container canvas").first.wait_for(timeout=60_000)  # WebGL surfaces drawn
    volume.scroll_into_view_if_needed()
    page.wait_for_timeout(1000)
    volume.screenshot(path=str(SHOTS / "volume_3d.png"))
    _no_exception(page)

    for path, marker in (("errors", "Error browser"), ("threshold", "Operating point"),
                         ("dataset", "Patient-level split"), ("model_card", "Intended use")):
        _open(page, f"{server}/{path}")
        page.get_by_text(marker).first.wait_for(timeout=120_000)
        _no_exception(page)
        page.screenshot(path=str(SHOTS / f"{path}.png"), full_page=True)

    _open(page, f"{server}/upload")
    bad = tmp_path / "not_an_image.png"
    bad.write_text("<html><script>alert(1)</script></html>")
    slice_path = DEMO_DIR / "TCGA_FG_A4MU_20030903" / "TCGA_FG_A4MU_20030903_20.tif"
    mask_path = slice_path.with_name("TCGA_FG_A4MU_20030903_20_mask.tif")
    page.locator("input[type='file']").set_input_files([str(slice_path), str(mask_path), str(bad)])
    page.get_by_text("refused").first.wait_for(timeout=120_000)
    _settle(page)
    body = page.inner_text("body")
    assert "not_an_image.png" in body and "not a TIFF, PNG or JPEG" in body
    assert "Ground truth (red) and prediction (green)" in body  # the slice was paired with its mask
    assert "Slice score — decision at" in body
    assert page.get_by_text("Download probabilities (CSV)").count() == 1
    _no_exception(page)
    page.screenshot(path=str(SHOTS / "upload.png"), full_page=True)
    (SHOTS.parent / "ui_timings.json").write_text(json.dumps({k: round(v, 2) for k, v in timings.items()}, indent=2))


def test_screenshots_were_written():
    for name in ("patients", "review_tools", "volume_3d", "errors", "threshold", "dataset", "model_card", "upload"):
        assert (SHOTS / f"{name}.png").stat().st_size > 10_000, name
