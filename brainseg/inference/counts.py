"""The cascade's rules on per-slice pixel counts: any threshold's decisions and Dice without the masks.

Per slice, the stored counts (classifier score, truth pixels, segmenter-mask pixels, their overlap) are
enough to apply a threshold exactly as ``CascadeResult`` applies it to masks; the threshold analysis and
the error queue use this so that a threshold change never touches an image or a model.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from brainseg.core import metrics
from brainseg.inference.cascade import passes_gate, tumor_called


def gated_counts(stats: pd.DataFrame, threshold: float) -> pd.DataFrame:
    """Per slice at ``threshold``: passed_gate, called, predicted and overlap pixels after the gate, slice Dice.

    The count-based twin of ``CascadeResult.masks``/``decisions``: the same gate and decision rule.
    """
    passed = passes_gate(stats["probability"].to_numpy(), threshold)
    predicted = np.where(passed, stats["segmenter_pixels"].to_numpy(), 0)
    overlap = np.where(passed, stats["overlap_pixels"].to_numpy(), 0)
    truth = stats["truth_pixels"].to_numpy()
    return pd.DataFrame({"passed_gate": passed, "called": tumor_called(passed, predicted), "predicted": predicted,
                         "overlap": overlap, "truth": truth,
                         "dice": metrics.dice_from_counts(overlap, predicted, truth)}, index=stats.index)
