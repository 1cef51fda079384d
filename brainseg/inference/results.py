"""The one per-slice results table: what the Upload page shows, `brainseg predict` writes and exports hold.

Columns (``SLICE_RESULT_COLUMNS``), whatever the caller:
``file`` (the slice's file name), ``classifier_probability``, ``slice_score`` (what the gate thresholds:
the classifier's probability, or combined with the segmenter's evidence), ``threshold``, ``passed_gate``,
``tumor_called`` (the cascade's decision: gate and non-empty mask), ``predicted_tumor_pixels``,
``true_tumor_pixels``, ``dice`` and ``iou`` (empty where no mask was given; 1.0 when both masks are empty),
``notes`` (conversions applied to the input) and ``out_of_distribution`` (why the input is unlike the
training data, empty when it is like it).

The pixel counts, Dice and IoU are on the models' grid (256x256), where the masks are compared; downloaded masks
are on each upload's own grid. The columns keep their names (``brainseg predict`` files are read by scripts):
a slice resized to that grid says so in its ``notes`` (``GRID_NOTE``), where its counts differ from the file's.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from brainseg.core import metrics
from brainseg.inference.cascade import CascadeResult
from brainseg.inference.uploads import RESIZED

SLICE_RESULT_COLUMNS = ("file", "classifier_probability", "slice_score", "threshold", "passed_gate", "tumor_called",
                        "predicted_tumor_pixels", "true_tumor_pixels", "dice", "iou", "notes",
                        "out_of_distribution")
GRID_NOTE = "pixel counts, Dice and IoU on the model grid (256x256), not this image's own"


def with_grid_note(note: str) -> str:
    """A row's notes, plus ``GRID_NOTE`` when the slice was resized (padding alone keeps every count)."""
    return f"{note}; {GRID_NOTE}" if RESIZED in note else note


def slice_results(
    files: Sequence[str],
    result: CascadeResult,
    threshold: float,
    truths: Sequence[np.ndarray | None] | np.ndarray | None = None,
    notes: Sequence[str] | None = None,
    out_of_distribution: Sequence[str | None] | None = None,
) -> pd.DataFrame:
    """The results table for N slices; ``truths`` may hold None for slices without a mask."""
    n = len(result)
    if len(files) != n:
        raise ValueError(f"{len(files)} file names for {n} slices")
    masks = result.masks(threshold)
    truths = [None] * n if truths is None else list(truths)
    dice = [None if t is None else round(metrics.dice(m, t), 5) for m, t in zip(masks, truths, strict=True)]
    iou = [None if t is None else round(metrics.iou(m, t), 5) for m, t in zip(masks, truths, strict=True)]
    table = pd.DataFrame({
        "file": list(files),
        "classifier_probability": np.round(result.classifier_probabilities.astype(float), 5),
        "slice_score": np.round(result.probabilities.astype(float), 5),
        "threshold": float(threshold),
        "passed_gate": result.gate(threshold),
        "tumor_called": result.decisions(threshold),
        "predicted_tumor_pixels": masks.sum(axis=(1, 2)).astype(int),
        "true_tumor_pixels": pd.array([None if t is None else int(np.sum(t)) for t in truths], dtype="Int64"),
        "dice": pd.array(dice, dtype="Float64"),
        "iou": pd.array(iou, dtype="Float64"),
        "notes": [with_grid_note(note) for note in notes] if notes is not None else [""] * n,
        "out_of_distribution": [r or "" for r in out_of_distribution] if out_of_distribution is not None
        else [""] * n,
    })
    return table[list(SLICE_RESULT_COLUMNS)]
