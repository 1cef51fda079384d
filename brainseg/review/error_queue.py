"""The error browser's queue: the slices most worth a reviewer's time, worst first.

Order: false-negative slices first (tumor missed by the gate, then tumor the segmenter did not draw),
then false-positive slices (most confident first), then tumor slices found but drawn badly (lowest
Dice first). Built from the per-slice counts of ``brainseg.evaluation.threshold_analysis.slice_stats``,
through the same gate and decision rule as every other figure (``brainseg.inference.counts``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from brainseg.inference.counts import gated_counts

KINDS = ("missed by gate", "missed by segmenter", "false positive", "low Dice")
LOW_DICE = 0.7  # a tumor slice called but drawn with a Dice below this is a "low Dice" error


def error_queue(stats: pd.DataFrame, threshold: float, max_dice: float = LOW_DICE) -> pd.DataFrame:
    """Rows of ``stats`` that are errors at ``threshold``, with ``kind``, ``dice`` and a rank order."""
    counts = gated_counts(stats, threshold)
    passed, called, dice = counts["passed_gate"], counts["called"], counts["dice"]
    truth = stats["truth_pixels"]
    table = stats.assign(predicted_pixels=counts["predicted"], dice=dice)
    kind = pd.Series(pd.NA, index=stats.index, dtype="object")
    kind[(truth > 0) & ~passed] = KINDS[0]
    kind[(truth > 0) & passed & ~called] = KINDS[1]
    kind[(truth == 0) & called] = KINDS[2]
    kind[(truth > 0) & called & (dice < max_dice)] = KINDS[3]
    table = table.assign(kind=kind).dropna(subset=["kind"])
    # Within a kind: bigger missed tumors, more confident false alarms, and worse Dice come first.
    priority = np.select(
        [table["kind"] == KINDS[0], table["kind"] == KINDS[1], table["kind"] == KINDS[2]],
        [-table["truth_pixels"], -table["truth_pixels"], -table["probability"]],
        default=table["dice"],
    )
    table = table.assign(_kind=table["kind"].map({k: i for i, k in enumerate(KINDS)}), _priority=priority)
    return table.sort_values(["_kind", "_priority"]).drop(columns=["_kind", "_priority"]).reset_index(drop=True)


def filter_queue(queue: pd.DataFrame, patients=None, institutions=None, min_tumor_pixels: int = 0,
                 kinds=None) -> pd.DataFrame:
    """The queue restricted to some patients, institutions, kinds, and tumors of at least a size."""
    keep = np.ones(len(queue), bool)
    if patients:
        keep &= queue["patient_id"].isin(patients).to_numpy()
    if institutions:
        keep &= queue["institution"].isin(institutions).to_numpy()
    if kinds:
        keep &= queue["kind"].isin(kinds).to_numpy()
    if min_tumor_pixels:
        keep &= ((queue["truth_pixels"] >= min_tumor_pixels) | (queue["truth_pixels"] == 0)).to_numpy()
    return queue[keep].reset_index(drop=True)
