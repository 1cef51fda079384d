"""Process-level set-up: TensorFlow's quiet import must not swallow what other threads print meanwhile."""

from __future__ import annotations

import subprocess
import sys
import textwrap

# Two dashboard sessions start at once: the first imports TensorFlow quietly (standard error pointed at
# /dev/null), the second arrives as soon as the import has begun and then prints, as get_cascade does.
_TWO_SESSIONS = textwrap.dedent("""
    import sys, threading, time
    from brainseg.runtime import import_tensorflow_quietly

    first = threading.Thread(target=import_tensorflow_quietly)
    first.start()
    while "tensorflow" not in sys.modules:  # the first session's import has begun
        time.sleep(0.0005)
    import_tensorflow_quietly()
    print("second session: models loaded", file=sys.stderr, flush=True)
    first.join()
""")


def test_a_second_session_prints_only_once_standard_error_is_back():
    done = subprocess.run([sys.executable, "-c", _TWO_SESSIONS], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "second session: models loaded" in done.stderr
