"""The README's dashboard timings, written from the browser tests' artifacts (never typed by hand).

``tests/test_browser.py`` records ``test-artifacts/ui_timings.json`` and ``tests/test_concurrency.py``
records ``test-artifacts/concurrency.json``; ``brainseg ui-report`` renders both between the README's
``ui:start`` / ``ui:end`` markers, with the machine they were measured on.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from brainseg.errors import DataError
from brainseg.runtime import cpu_name

UI_START, UI_END = "<!-- ui:start (written by brainseg ui-report) -->", "<!-- ui:end -->"


def _step_name(key: str) -> str:
    """``next_slice_s`` -> ``next slice``; ``first_view_s (note)`` -> ``first view (note)``."""
    head, _, note = key.partition(" ")
    return (head.removesuffix("_s").replace("_", " ") + (" " + note if note else "")).strip()


def ui_markdown(timings: dict, concurrency: dict | None, machine: str) -> str:
    lines = [
        f"Recorded by the browser tests on {machine} with the shipped models and demo cases (headless Chromium on "
        "the same machine; recorded, never asserted), rendered by `brainseg ui-report`:",
        "",
        "| browser test step | seconds |",
        "|---|---|",
        *[f"| {_step_name(name)} | {value:.2f} |" for name, value in timings.items()
          if isinstance(value, int | float)],
        "",
    ]
    if concurrency:
        lines += [
            f"Concurrency (`tests/test_concurrency.py`): {concurrency.get('sessions')} browser sessions for "
            f"{concurrency.get('seconds')} s, {concurrency.get('actions')} actions; median response "
            f"{concurrency.get('median_response_seconds')} s, slowest {concurrency.get('slowest_response_seconds')} s;"
            f" server peak memory {concurrency.get('server_peak_rss_mb')} MB"
            + (f"; model loads in the server process: {concurrency['model_loads']}" if "model_loads" in concurrency
               else "") + ".",
            "",
        ]
    return "\n".join(lines)


def update_readme_ui(readme: str | Path, artifacts: str | Path) -> str:
    """Rewrite the README's ui section from the artifacts folder; returns the new section."""
    readme, artifacts = Path(readme), Path(artifacts)
    timings_path, concurrency_path = artifacts / "ui_timings.json", artifacts / "concurrency.json"
    if not timings_path.is_file():
        raise DataError(f"{timings_path}: not found; run `pytest tests/test_browser.py` first")
    text = readme.read_text()
    if UI_START not in text or UI_END not in text:
        raise DataError(f"{readme}: no '{UI_START}' ... '{UI_END}' section to rewrite")
    timings = json.loads(timings_path.read_text())
    concurrency = json.loads(concurrency_path.read_text()) if concurrency_path.is_file() else None
    section = ui_markdown(timings, concurrency, f"{cpu_name()} ({os.cpu_count()} cores)")
    head, rest = text.split(UI_START, 1)
    _, tail = rest.split(UI_END, 1)
    readme.write_text(head + UI_START + "\n" + section + UI_END + tail)
    return section
