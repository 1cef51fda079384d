"""Writing files that readers may open at any moment (prediction store, ONNX graph cache, a run's wall clock)."""

from __future__ import annotations

import os
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
