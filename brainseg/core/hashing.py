"""File identity: the sha256 that names a weights file in sidecars, the model card and the review log; and the
digest of a model's weight values, which tells whether two trainings produced the same model."""

from __future__ import annotations

import hashlib
from pathlib import Path


def sha256_of(path: str | Path) -> str:
    """Hex sha256 of a file: the identity of a weights file in sidecars, the model card and the review log."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def weights_sha256(model) -> str:
    """Hex sha256 of a Keras model's weight values (names, shapes, dtypes and bytes, in order).

    Unlike the file's sha256, it does not change when the same weights are saved again (a ``.keras`` file
    records the time it was saved), so equal digests mean two trainings gave the same model bit for bit.
    """
    import numpy as np

    digest = hashlib.sha256()
    for variable in model.weights:
        values = np.ascontiguousarray(np.asarray(variable))
        digest.update(f"{variable.path}:{values.shape}:{values.dtype}".encode())
        digest.update(values.tobytes())
    return digest.hexdigest()
