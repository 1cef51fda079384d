"""8 simultaneous browser sessions browse patients, move thresholds and upload for a bounded time.

Each session checks what it is shown against the library's own numbers; the server log must stay
free of errors and the server's memory bounded (the models are shared, not copied per session).
Writes test-artifacts/concurrency.json with the peak memory and the slowest response.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time

import numpy as np
import pytest
from browser_support import CHROMIUM, CHROMIUM_ARGS, IDLE, peak_rss_mb, require_chromium, streamlit_server
from conftest import DEMO_DIR, MODELS_DIR, ROOT

require_chromium()
async_api = pytest.importorskip("playwright.async_api")

SESSIONS = 8
SECONDS = 60
PEAK_MB_LIMIT = 3500  # one server with TensorFlow and both models; 8 copies of the models would exceed it
UPLOAD = DEMO_DIR / "TCGA_HT_7855_19951020" / "TCGA_HT_7855_19951020_9.tif"


@pytest.fixture(scope="module")
def expected_probabilities() -> dict[tuple[str, int], float]:
    """P(tumor) of every demo slice, straight from the library."""
    from brainseg.core.data import load_slices, scan_dataset
    from brainseg.inference.cascade import Cascade

    manifest = scan_dataset(DEMO_DIR)
    images, _ = load_slices(manifest)
    models = os.environ.get("BRAINSEG_MODELS_DIR", str(MODELS_DIR))  # the same models the server loads
    probabilities = Cascade.from_dir(models).predict(images).probabilities
    return {(r.patient_id, r.slice): float(p) for r, p in zip(manifest.itertuples(), probabilities, strict=True)}


async def _metric_value(page, label: str) -> str:
    metric = page.locator("[data-testid='stMetric']", has_text=label).first
    return (await metric.locator("[data-testid='stMetricValue']").inner_text()).strip()


async def _showing(page) -> tuple[str, int]:
    text = await page.locator("[data-testid='stCaptionContainer']", has_text="Showing").first.inner_text()
    found = re.search(r"Showing (TCGA_[A-Z0-9]+_[A-Z0-9]+) slice (\d+)", text)
    return found.group(1), int(found.group(2))


async def _session(browser, url: str, k: int, expected: dict, deadline: float, log: list) -> None:
    page = await (await browser.new_context(viewport={"width": 1400, "height": 1000})).new_page()
    await page.goto(url)
    await page.get_by_text("Tumor burden across the patient").wait_for(timeout=180_000)
    await page.wait_for_selector(IDLE, timeout=120_000)
    patients = sorted({p for p, _ in expected})
    rng = np.random.default_rng(k)
    sidebar_slider = page.locator("[data-testid='stSidebar'] input[type='range']").first
    while time.perf_counter() < deadline:
        action = ["patient", "slice", "threshold", "upload"][int(rng.integers(4))]
        start = time.perf_counter()
        if action == "patient":
            patient = patients[int(rng.integers(len(patients)))]
            await page.locator("[data-testid='stSelectbox']").first.click()
            await page.keyboard.type(patient)
            await page.keyboard.press("Enter")
            await page.get_by_text(f"Showing {patient} slice").wait_for(timeout=120_000)
        elif action == "slice":
            before = await _showing(page)
            button = page.get_by_role("button", name="▶" if rng.random() < 0.5 else "◀")
            if await button.is_disabled():
                continue
            await button.click()
            while await _showing(page) == before:
                await page.wait_for_timeout(50)
        elif action == "threshold":
            await sidebar_slider.focus()
            await sidebar_slider.press("Home" if await sidebar_slider.get_attribute("aria-valuetext") != "0.000"
                                       else "End")
            value = await sidebar_slider.get_attribute("aria-valuetext")
            await page.get_by_text(f"Decision at {value}").wait_for(timeout=120_000)
        else:
            await page.goto(f"{url}/upload")
            await page.wait_for_selector(IDLE, timeout=120_000)
            await page.locator("input[type='file']").set_input_files(str(UPLOAD))
            await page.get_by_text("Slice score — decision at").wait_for(timeout=120_000)
        await page.wait_for_selector(IDLE, timeout=120_000)
        log.append({"session": k, "action": action, "seconds": time.perf_counter() - start})

        if action == "upload":
            shown = float(await _metric_value(page, "Slice score — decision at"))
            want = expected[("TCGA_HT_7855", 9)]
            assert abs(shown - want) < 1.5e-3, (k, shown, want)
            await page.goto(url)
            await page.get_by_text("Tumor burden across the patient").wait_for(timeout=120_000)
            await page.wait_for_selector(IDLE, timeout=120_000)
            continue
        # What this session sees must be this session's own state, computed right.
        patient, slice_number = await _showing(page)
        shown = float(await _metric_value(page, "Slice score"))
        assert abs(shown - expected[(patient, slice_number)]) < 1.5e-3, (k, patient, slice_number, shown)
        threshold = await sidebar_slider.get_attribute("aria-valuetext")
        assert await page.get_by_text(f"Decision at {threshold}").count() == 1, (k, threshold)
    await page.context.close()


async def _run_all(url: str, expected: dict) -> list:
    log: list = []
    async with async_api.async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        deadline = time.perf_counter() + SECONDS
        await asyncio.gather(*(_session(browser, url, k, expected, deadline, log) for k in range(SESSIONS)))
        await browser.close()
    return log


def test_eight_sessions_at_once(tmp_path, expected_probabilities):
    with streamlit_server(tmp_path / "streamlit.log") as (url, process):
        log = asyncio.run(_run_all(url, expected_probabilities))
        peak = peak_rss_mb(process.pid)
    sessions = {entry["session"] for entry in log}
    assert sessions == set(range(SESSIONS))
    slowest = max(entry["seconds"] for entry in log)
    report = {"sessions": SESSIONS, "seconds": SECONDS, "actions": len(log),
              "actions_by_kind": {a: sum(e["action"] == a for e in log) for a in ("patient", "slice", "threshold",
                                                                                  "upload")},
              "slowest_response_seconds": round(slowest, 2),
              "median_response_seconds": round(float(np.median([e["seconds"] for e in log])), 2),
              "server_peak_rss_mb": round(peak)}
    (ROOT / "test-artifacts").mkdir(exist_ok=True)
    (ROOT / "test-artifacts" / "concurrency.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report))
    assert peak < PEAK_MB_LIMIT, report
