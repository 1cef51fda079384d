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
IDLE = "[data-testid='stApp'][data-test-script-state='notRunning']"


def require_chromium() -> None:
    if Path(CHROMIUM).exists():
        return
    if os.environ.get("CI"):
        pytest.fail(f"{CHROMIUM} is missing: .ci/run should have installed Debian's chromium", pytrace=False)
    pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium)", allow_module_level=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def streamlit_server(log_path: Path):
    """Yield (url, process); on exit stop it and fail if its log holds a traceback."""
    port = _free_port()
    env = {**os.environ, "BRAINSEG_DATA_DIR": str(DEMO_DIR), "TF_CPP_MIN_LOG_LEVEL": "2"}
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.port", str(port),
             "--server.address", "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
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
        process.wait(timeout=30)
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
