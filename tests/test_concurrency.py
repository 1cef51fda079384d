"""8 simultaneous browser sessions browse patients, move thresholds and upload for a bounded time.

Each session checks what it is shown against the library's own numbers; the server log must stay
free of errors and must record exactly one model load (brainseg.app.dashboard.get_cascade prints one
line per load): the models are shared by the sessions, not copied per session.
Writes test-artifacts/concurrency.json with the server's peak memory (a measurement, not asserted)
and the response times.

Synchronization: after every action a session waits for an element only that action's rerun can draw,
then for the script run to be over (`IDLE`), then again for the elements it reads: never for a fixed time.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
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
    model_loads,
    peak_rss_mb,
    require_chromium,
    save_failure_async,
    streamlit_server,
)
from conftest import DEMO_DIR, MODELS_DIR, ROOT

from brainseg.app.dashboard import format_threshold

require_chromium()
async_api = pytest.importorskip("playwright.async_api")

SESSIONS = 8
SECONDS = 60  # of actions, counted once all 8 sessions have their first page
UPLOAD = DEMO_DIR / "TCGA_HT_7855_19951020" / "TCGA_HT_7855_19951020_9.tif"
TUMOR_BURDEN = "Tumor burden across the patient"


@pytest.fixture(scope="module")
def expected_probabilities() -> dict[tuple[str, int] | str, float]:
    """The slice score (what the pages show and the threshold gates) of every demo slice, from the library: each
    patient's slices scored as one volume (a score may be lifted by its neighbours), and under the key "upload"
    the uploaded slice scored alone, as the upload page scores it."""
    from brainseg.core.data import load_slices, scan_dataset
    from brainseg.inference.cascade import Cascade

    manifest = scan_dataset(DEMO_DIR)
    images, _ = load_slices(manifest)
    models = os.environ.get("BRAINSEG_MODELS_DIR", str(MODELS_DIR))  # the same models the server loads
    cascade = Cascade.from_dir(models)
    expected: dict[tuple[str, int] | str, float] = {}
    for patient, rows in manifest.groupby("patient_id").indices.items():
        numbers = manifest["slice"].to_numpy()[rows]
        scores = cascade.predict(images[rows], slice_numbers=numbers).probabilities
        expected.update({(patient, int(n)): float(p) for n, p in zip(numbers, scores, strict=True)})
    upload = np.flatnonzero((manifest["patient_id"] == "TCGA_HT_7855") & (manifest["slice"] == 9))
    expected["upload"] = float(cascade.predict(images[upload]).probabilities[0])
    return expected


def _metric(page, label: str):
    return page.locator("[data-testid='stMetric']", has=page.locator("[data-testid='stMetricLabel']",
                                                                       has_text=label))


async def _metric_value(page, label: str) -> str:
    return (await _metric(page, label).locator("[data-testid='stMetricValue']").inner_text()).strip()


async def _showing(page) -> tuple[str, int]:
    text = await page.locator("[data-testid='stCaptionContainer']", has_text="Showing").first.inner_text()
    found = re.search(r"Showing (TCGA_[A-Z0-9]+_[A-Z0-9]+) slice (\d+)", text)
    return found.group(1), int(found.group(2))


async def _after(page, *expected) -> None:
    """Wait out the rerun an action started; ``expected``: locators only that rerun draws (see test_browser)."""
    for locator in expected:
        await locator.first.wait_for()
    await page.wait_for_selector(IDLE)
    await page.locator(SKELETON).first.wait_for(state="detached")  # every element's component has loaded
    for locator in expected:
        await locator.first.wait_for()


async def _open_patients(page, url: str) -> None:
    await page.goto(url)
    await _after(page, page.get_by_text(TUMOR_BURDEN), page.get_by_text("Showing TCGA_"))


async def _session(browser, url: str, k: int, expected: dict, clock: dict, log: list) -> None:
    context = await browser.new_context(viewport={"width": 1400, "height": 1000})
    configure_timeouts(context)
    page = await context.new_page()
    configure_timeouts(page)
    try:
        await _browse(page, url, k, expected, clock, log)
    except BaseException:
        await save_failure_async(page, f"concurrency_session_{k}")
        raise
    await context.close()


async def _browse(page, url: str, k: int, expected: dict, clock: dict, log: list) -> None:
    start = time.perf_counter()
    await _open_patients(page, url)
    clock["first_page_seconds"][k] = time.perf_counter() - start
    # The clock starts when every session has its page: the 60 s of actions really are 8 sessions at once.
    await clock["all_open"].wait()  # an asyncio.Barrier for the 8 sessions
    deadline = clock.setdefault("deadline", time.perf_counter() + SECONDS)

    patients = sorted({key[0] for key in expected if key != "upload"})
    slices = {p: sorted(key[1] for key in expected if key != "upload" and key[0] == p) for p in patients}
    rng = np.random.default_rng(k)
    sidebar_slider = page.locator(SIDEBAR).locator("input[type='range']").first
    done = 0
    while done == 0 or time.perf_counter() < deadline:  # at least one action, however slow the machine
        action = ["patient", "slice", "threshold", "upload"][int(rng.integers(4))]
        start = time.perf_counter()
        if action == "patient":
            patient = patients[int(rng.integers(len(patients)))]
            if (await _showing(page))[0] == patient:  # re-choosing it would draw nothing new: take the next one
                patient = patients[(patients.index(patient) + 1) % len(patients)]
            await page.locator(MAIN).get_by_role("combobox", name="Patient (type to search)", exact=True).click()
            await page.keyboard.type(patient)  # the list filters as one types; pick the option it leaves
            await page.get_by_role("option").filter(has_text=patient).click()
            await _after(page, page.get_by_text(f"Showing {patient} slice"))
        elif action == "slice":
            patient, number = await _showing(page)
            step = 1 if rng.random() < 0.5 else -1
            button = page.get_by_role("button", name="▶" if step == 1 else "◀")
            if await button.is_disabled():
                continue
            numbers = slices[patient]
            target = numbers[numbers.index(number) + step]
            await button.click()
            await _after(page, page.get_by_text(f"Showing {patient} slice {target} "))
        elif action == "threshold":
            await sidebar_slider.focus()
            # The slider writes its value with as many decimals as it has (0.020058, then 0.000 once redrawn):
            # expect the label of the value applied, as the dashboard writes it.
            shown = float(await sidebar_slider.get_attribute("aria-valuetext"))
            key, target = ("Home", 0.0) if shown != 0 else ("End", 1.0)
            await sidebar_slider.press(key)
            await _after(page, _metric(page, f"Decision at {format_threshold(target)}"))
        else:
            await page.goto(f"{url}/upload")
            await _after(page, page.get_by_text("No files yet."))
            await page.locator("input[type='file']").set_input_files(str(UPLOAD))
            await _after(page, _metric(page, "Slice score — decision at"))
        log.append({"session": k, "action": action, "seconds": time.perf_counter() - start})
        done += 1

        if action == "upload":
            shown = float(await _metric_value(page, "Slice score — decision at"))
            want = expected["upload"]
            assert abs(shown - want) < 1.5e-3, (k, shown, want)
            await _open_patients(page, url)
            continue
        # What this session sees must be this session's own state, computed right.
        patient, slice_number = await _showing(page)
        shown = float(await _metric_value(page, "Slice score"))
        assert abs(shown - expected[(patient, slice_number)]) < 1.5e-3, (k, patient, slice_number, shown)
        threshold = await sidebar_slider.get_attribute("aria-valuetext")
        assert await _metric(page, f"Decision at {threshold}").count() == 1, (k, threshold)


async def _run_all(url: str, expected: dict) -> tuple[list, dict]:
    log: list = []
    clock: dict = {"first_page_seconds": {}, "all_open": asyncio.Barrier(SESSIONS)}
    async with async_api.async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        await asyncio.gather(*(_session(browser, url, k, expected, clock, log) for k in range(SESSIONS)))
        await browser.close()
    return log, clock["first_page_seconds"]


def test_eight_sessions_at_once(tmp_path, expected_probabilities):
    for old in FAILURES.glob("concurrency_session_*"):
        old.unlink()
    server_log = tmp_path / "streamlit.log"
    with streamlit_server(server_log) as (url, process):
        log, first_pages = asyncio.run(_run_all(url, expected_probabilities))
        peak = peak_rss_mb(process.pid)
        server_pid = process.pid
    sessions = {entry["session"] for entry in log}
    loads = model_loads(server_log.read_text())
    report = {"sessions": SESSIONS, "seconds": SECONDS, "actions": len(log),
              "actions_by_kind": {a: sum(e["action"] == a for e in log) for a in ("patient", "slice", "threshold",
                                                                                  "upload")},
              "first_page_seconds": {"median": round(float(np.median(list(first_pages.values()))), 2),
                                     "slowest": round(max(first_pages.values()), 2)},
              "slowest_response_seconds": round(max(entry["seconds"] for entry in log), 2),
              "median_response_seconds": round(float(np.median([e["seconds"] for e in log])), 2),
              "server_peak_rss_mb": round(peak),  # recorded, not asserted: weights are small next to TensorFlow
              "model_loads": len(loads)}
    (ROOT / "test-artifacts").mkdir(exist_ok=True)
    (ROOT / "test-artifacts" / "concurrency.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report))
    assert sessions == set(range(SESSIONS)), report

    # Sharing, checked directly: one model load, in the one server process, for all 8 sessions.
    assert len(loads) == 1, loads
    assert loads[0][0] == server_pid, (loads, server_pid)
