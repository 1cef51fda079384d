"""Writing files: ones that readers may open at any moment (prediction store, ONNX graph cache, a run's wall clock),
and reports as JSON text."""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def write_atomically(path: str | Path, write: Callable[[BinaryIO], object]) -> None:
    """Write ``path`` with ``write(handle)`` into a temporary file beside it, flushed to disk, then renamed over it.

    A reader sees the old file or the whole new one, never a part, and a failure (a full disk, a crash in
    ``write``) leaves no temporary file behind. Errors are raised as they came (OSError for the disk's).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, 0o644)  # mkstemp makes it 0600; other users (app servers) read these files too
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


_SCALAR = r"(?:-?[0-9][0-9.eE+-]*|true|false|null|NaN|-?Infinity)"
_SCALAR_ARRAY = re.compile(rf"\[\s*\n\s*({_SCALAR}(?:,\s*\n\s*{_SCALAR})*)\s*\n\s*\]")


def json_text(document) -> str:
    """``document`` as indented JSON, with each array of numbers (or booleans) on one line: a report's per-slice
    records and counts take a line per column or row instead of one per number (under half the size)."""
    text = json.dumps(document, indent=2, default=float)
    return _SCALAR_ARRAY.sub(lambda m: "[" + re.sub(r",\s*\n\s*", ", ", m.group(1)) + "]", text) + "\n"
