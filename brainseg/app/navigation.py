"""Slice navigation for a patient: one index, moved by buttons, a slider over slice numbers, or a click.

Pure logic (no Streamlit), so it is tested directly; the Patients page binds widgets to it.
"""

from __future__ import annotations

import numpy as np


class SliceNavigator:
    """Positions 0..n-1 over a patient's slice numbers (sorted, possibly not contiguous)."""

    def __init__(self, slice_numbers: np.ndarray) -> None:
        self.slices = np.asarray(slice_numbers)
        if self.slices.size == 0:
            raise ValueError("a patient without slices cannot be browsed")

    def __len__(self) -> int:
        return len(self.slices)

    def start(self, has_tumor: np.ndarray) -> int:
        """Where a patient opens: the middle tumor slice, or the first slice when there is no tumor."""
        tumor = np.flatnonzero(has_tumor)
        return int(tumor[len(tumor) // 2]) if len(tumor) else 0

    def clamp(self, index: int) -> int:
        return int(np.clip(index, 0, len(self) - 1))

    def step(self, index: int, delta: int) -> int:
        return self.clamp(index + delta)

    def index_of(self, slice_number: float) -> int:
        """The position of the slice numbered ``slice_number`` (the nearest one at or after it)."""
        return self.clamp(int(np.searchsorted(self.slices, round(slice_number))))
