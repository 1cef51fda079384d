"""Dashboard timings and server memory on a whole cohort with a prediction store (recorded, never asserted).

    .venv/bin/python benchmarks/dashboard_cohort.py --data data/kaggle_3m --store runs/store \
        --out benchmarks/dashboard_cohort.json

Fills the store first (`brainseg score`, which skips stored patients), then in headless Chromium (the browser
tests' helpers and waits): a server's first Threshold & metrics page (the per-slice counts cleared first, so
they are computed from the stored outputs and kept in the store), a preset click, a slider move, the Error
browser, and the same steps from a second, fresh server that finds the counts stored. Each figure is one run:
a benchmark for the README and the issue, not a test; absolute seconds differ up to 3x between machines of
this kind.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the browser tests' server and wait helpers, not duplicated here

from browser_support import (  # noqa: E402
    CHROMIUM,
    CHROMIUM_ARGS,
    IDLE,
    SIDEBAR,
    SKELETON,
    configure_timeouts,
    peak_rss_mb,
    streamlit_server,
)

from brainseg.evaluation.stored_stats import TABLE  # noqa: E402
from brainseg.runtime import cpu_name  # noqa: E402


def _settle(page, locator) -> None:
    locator.first.wait_for()
    page.wait_for_selector(IDLE)
    page.locator(SKELETON).first.wait_for(state="detached")
    locator.first.wait_for()


def _timed(page, action, locator) -> float:
    start = time.perf_counter()
    action()
    _settle(page, locator)
    return round(time.perf_counter() - start, 2)


def _session(browser, url: str, record: dict, prefix: str) -> None:
    """One visitor: the Patients page (models load there), then the timed Threshold page steps."""
    context = browser.new_context(viewport={"width": 1500, "height": 1100})
    configure_timeouts(context)
    page = context.new_page()
    page.goto(url)
    _settle(page, page.get_by_text("Tumor burden across the patient"))
    record[f"{prefix}threshold_page_open_s"] = _timed(
        page, lambda: page.goto(f"{url}/threshold"), page.get_by_text("Expected calibration error"))
    thumb = page.locator(SIDEBAR).locator("[data-testid='stSliderThumbValue']")
    record[f"{prefix}preset_click_s"] = _timed(
        page, lambda: page.get_by_role("button", name="seed 0.05: 0.050").click(), thumb.filter(has_text="0.050"))
    slider = page.locator("[data-testid='stMain'] input[type='range']").first
    slider.focus()
    record[f"{prefix}slider_move_s"] = _timed(page, lambda: slider.press("ArrowRight"), thumb.filter(has_text="0.051"))
    record[f"{prefix}error_browser_open_s"] = _timed(
        page, lambda: page.goto(f"{url}/errors"), page.locator("[data-testid='stImage']"))
    context.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--store", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    data, store = args.data.resolve(), args.store.resolve()
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "brainseg.cli", "score", "--data", str(data), "--store", str(store)],
                   check=True)
    record: dict = {"cpu": cpu_name(), "data": str(args.data), "score_wall_s (0 when all stored)":
                    round(time.perf_counter() - started, 1)}
    for counts in store.rglob(f"*.{TABLE}.table"):  # the first server computes them, as after a fresh `score`
        counts.unlink()
    settings = {"BRAINSEG_DATA_DIR": str(data), "BRAINSEG_DATA_ROOTS": str(data), "BRAINSEG_STORE": str(store)}
    logs = args.out.with_suffix(".server.log")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        for server, prefix in (("first", "server 1 (counts computed): "), ("second", "server 2 (counts stored): ")):
            with streamlit_server(logs, settings) as (url, process):
                _session(browser, url, record, prefix)
                record[f"{prefix}peak_rss_mb"] = round(peak_rss_mb(process.pid))
            print(f"{server} server done", flush=True)
        browser.close()
    record["store_mb"] = round(sum(f.stat().st_size for f in store.rglob("*") if f.is_file()) / 2**20, 1)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
