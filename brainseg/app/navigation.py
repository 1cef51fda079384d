"""Navigation state: a patient's slice index, and widget values that outlive a page switch.

``SliceNavigator`` is pure logic, tested directly; the Patients page binds widgets to it. ``remember`` keeps a
widget's value in the session when the user visits another page (Streamlit drops the values of widgets a run
does not draw); it takes the session state as an argument so it can be tested with a plain dict.
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from typing import Any

import numpy as np

KEPT_PREFIX = "_kept_"  # session key of a remembered widget's value: never a widget key, so never dropped


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


def remember(key: str, default: Any, fit: Callable[[Any], Any] | None = None,
             state: MutableMapping[str, Any] | None = None) -> dict[str, Any]:
    """``key`` and ``on_change`` for a widget whose value must survive a visit to another page.

    Streamlit forgets a widget's value when a run does not draw the widget (the user is on another page), and
    when its identity changes (e.g. a new ``max_value``). The value is kept under a key of our own
    (``KEPT_PREFIX + key``), written by ``on_change``, and the widget is seeded from it before it is drawn.
    ``fit`` adapts a kept value to what the widget offers now (a page number clamped to the new page count,
    choices no longer offered dropped). Call it on every run, right before drawing the widget, and give the
    widget no default of its own: ``st.radio("View", options, **remember("view", options[0]))``.
    """
    if state is None:
        import streamlit as st

        state = st.session_state
    kept = KEPT_PREFIX + key
    value = state.get(kept, default)
    if fit is not None:
        value = fit(value)
    state[kept] = state[key] = value

    def keep() -> None:
        state[kept] = state[key]

    return {"key": key, "on_change": keep}
