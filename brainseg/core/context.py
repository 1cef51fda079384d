"""Neighbouring slices as extra input channels ("2.5-D" input).

A model with ``context_slices = k`` reads each slice together with the k slices above and below it in its
volume: ``3 * (2k + 1)`` channels, groups of (pre-contrast, FLAIR, post-contrast) in slice order, the slice
itself in the middle group. A neighbour missing from the volume (its first and last slices, a gap in the
numbering) is replaced by the nearest slice towards the centre, so a slice with no volume around it, such as a
lone uploaded slice, is read as its own neighbours. ``k = 0`` is the plain 3-channel input, unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def context_rows(slice_numbers: Sequence[int], k: int, volumes: Sequence | None = None) -> np.ndarray:
    """(N, 2k + 1) int: for each slice, the positions (into the given slices) of slices n-k .. n+k of its volume.

    ``slice_numbers``: each slice's number in its volume; ``volumes``: each slice's volume (e.g. its case), or
    None when all belong to one. A missing neighbour is replaced by the nearest present one towards the slice.
    """
    numbers = np.asarray(slice_numbers, int)
    if k < 0:
        raise ValueError(f"context_slices must be 0 or more, got {k}")
    keys = list(zip([None] * len(numbers) if volumes is None else list(volumes), numbers.tolist(), strict=True))
    position = {key: i for i, key in enumerate(keys)}
    if len(position) != len(keys):
        raise ValueError("two slices share a volume and slice number: neighbours would be ambiguous")
    rows = np.empty((len(keys), 2 * k + 1), int)
    for i, (volume, number) in enumerate(keys):
        for column, offset in enumerate(range(-k, k + 1)):
            # Walk back towards the slice itself until a present neighbour is found (the slice always is).
            step = -int(np.sign(offset))
            while (volume, number + offset) not in position:
                offset += step
            rows[i, column] = position[(volume, number + offset)]
    return rows


def lone_rows(n: int, k: int) -> np.ndarray:
    """(n, 2k + 1): every slice its own neighbours (slices that share no volume, e.g. separate uploads)."""
    return np.repeat(np.arange(n)[:, None], 2 * k + 1, axis=1)


def stack_context(images: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """(M, s, s, 3) slices and (N, 2k + 1) positions into them -> (N, s, s, 3 * (2k + 1)) model inputs."""
    images, rows = np.asarray(images), np.asarray(rows, int)
    if rows.shape[1] == 1:
        return images[rows[:, 0]]
    gathered = images[rows]  # (N, 2k+1, s, s, 3)
    n, groups, height, width, channels = gathered.shape
    return np.ascontiguousarray(gathered.transpose(0, 2, 3, 1, 4)).reshape(n, height, width, groups * channels)
