"""Starting `streamlit run app.py` on 127.0.0.1 for the browser tests, and Chromium's launch options."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import DEMO_DIR, ROOT

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
IDLE = "[data-testid='stApp'][data-test-script-state='notRunning']"  # the last script run has finished
# Streamlit draws most elements with code-split React components: until a component's chunk has loaded,
# the element is a placeholder skeleton, even after the script run is over (IDLE). A fresh browser context
# on a warm server shows skeletons for seconds: wait until none is left before reading widgets or metrics.
SKELETON = "[data-testid='stSkeleton']"
MAIN = "[data-testid='stMain']"
SIDEBAR = "[data-testid='stSidebar']"

# Timeouts sized for a machine about 3x slower than the development box (2 loaded cores), with 8 sessions
# at once: a page load there (static bundle, websocket, first script run with the model load) can take
# minutes. Set them on every context and page: Playwright's 30 s default is far too short for that.
PAGE_LOAD_MS = 180_000  # page.goto and the first complete script run after it
ACTION_MS = 180_000  # one rerun after a click, key press or upload (cascade inference on CPU included)

# One line per model load, printed by brainseg.app.dashboard.get_cascade to the server's stderr.
MODEL_LOAD_LINE = re.compile(r"^brainseg: models loaded in process (\d+) as object (\d+) from (.+)$", re.MULTILINE)


def require_chromium() -> None:
    if Path(CHROMIUM).exists():
        return
    if os.environ.get("CI"):
        pytest.fail(f"{CHROMIUM} is missing: .ci/run should have installed Debian's chromium", pytrace=False)
    pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium)", allow_module_level=True)


def configure_timeouts(target) -> None:
    """Default timeouts for a Playwright context or page (sync or async API: both setters are plain calls)."""
    target.set_default_timeout(ACTION_MS)
    target.set_default_navigation_timeout(PAGE_LOAD_MS)


FAILURES = ROOT / "test-artifacts" / "failures"


@contextmanager
def saved_on_failure(page, name: str):
    """On an exception, keep what the (sync API) page showed: test-artifacts/failures/<name>.png and .html."""
    try:
        yield
    except BaseException:
        FAILURES.mkdir(parents=True, exist_ok=True)
        try:
            page.screenshot(path=str(FAILURES / f"{name}.png"), full_page=True)
            (FAILURES / f"{name}.html").write_text(page.content())
        except Exception as err:  # the page may be gone; the original error matters more
            print(f"could not save the failing page: {err}", file=sys.stderr)
        raise


async def save_failure_async(page, name: str) -> None:
    """The async API's version of ``saved_on_failure``: call it from an ``except`` block."""
    FAILURES.mkdir(parents=True, exist_ok=True)
    try:
        await page.screenshot(path=str(FAILURES / f"{name}.png"), full_page=True)
        (FAILURES / f"{name}.html").write_text(await page.content())
    except Exception as err:
        print(f"could not save the failing page: {err}", file=sys.stderr)


def model_loads(server_log: str) -> list[tuple[int, int, str]]:
    """(pid, object id, models path) of every ``brainseg: models loaded`` line in a server log."""
    return [(int(pid), int(obj), path.strip()) for pid, obj, path in MODEL_LOAD_LINE.findall(server_log)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def streamlit_server(log_path: Path, settings: dict[str, str] | None = None):
    """Yield (url, process); on exit stop it and fail if its log holds a traceback.

    ``settings``: environment variables for the server (default: the demo cases as the data folder).
    """
    port = _free_port()
    env = {**os.environ, "BRAINSEG_DATA_DIR": str(DEMO_DIR), "TF_CPP_MIN_LOG_LEVEL": "2", **(settings or {})}
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.port", str(port),
             "--server.address", "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + PAGE_LOAD_MS / 1000
    while True:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).status == 200:
                break
        except OSError:
            if time.time() > deadline or process.poll() is not None:
                process.kill()
                pytest.fail(f"streamlit did not start:\n{log_path.read_text()[-2000:]}")
            time.sleep(0.5)
    try:
        yield url, process
    finally:
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    server_log = log_path.read_text()
    streamlit_error = re.compile(r"^\d{4}-\d\d-\d\d [\d:.]+ (ERROR|CRITICAL)|Traceback|Exception")
    problems = [i for i, line in enumerate(server_log.splitlines()) if streamlit_error.search(line)]
    assert not problems, "\n".join(server_log.splitlines()[problems[0] : problems[0] + 40])


def peak_rss_mb(pid: int) -> float:
    """Peak resident memory (VmHWM) of a live process, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")
