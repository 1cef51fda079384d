"""Process-level set-up shared by the command line and the dashboard."""

from __future__ import annotations

import os
import sys
import threading

_import_lock = threading.Lock()
_tensorflow_ready = False


def import_tensorflow_quietly() -> None:
    """Import TensorFlow with C++ start-up logging (CUDA probes, CPU features) kept off the console.

    TensorFlow's native logger writes those lines before any setting can silence them, so standard
    error is pointed at /dev/null for the import only; Python errors still surface afterwards.

    Thread-safe: the dashboard runs this at the top of every session's script, and the redirect is
    process-wide. A second session must wait until standard error is back, not return as soon as
    TensorFlow appears in ``sys.modules`` (it does when the import starts): whatever it printed in
    the meantime, a model-load line or a traceback, would be lost.
    """
    global _tensorflow_ready
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if _tensorflow_ready:
        return
    with _import_lock:
        if _tensorflow_ready:
            return
        if "tensorflow" not in sys.modules:  # imported by other code already: its start-up noise is past
            sys.stderr.flush()
            saved = os.dup(2)
            try:
                with open(os.devnull, "w") as devnull:
                    os.dup2(devnull.fileno(), 2)
                    import tensorflow

                    tensorflow.config.list_physical_devices()  # the CUDA probe logs here, once
            finally:
                os.dup2(saved, 2)
                os.close(saved)
        _tensorflow_ready = True


def cpu_name() -> str:
    """The CPU's model name (Linux ``/proc/cpuinfo``; the platform's processor string elsewhere)."""
    import platform
    from pathlib import Path

    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"
