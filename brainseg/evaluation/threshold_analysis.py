"""Threshold analysis for the dashboard: every metric at any threshold from small per-slice counts.

The cascade runs once per slice; what the metrics need afterwards is, per slice, the slice score
(what the gate thresholds) and three pixel counts (truth, segmenter mask, their overlap). Any threshold's slice-,
patient- and volume-level figures follow from those counts without touching images or models.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from brainseg.core import metrics
from brainseg.inference.cascade import CascadeResult
from brainseg.inference.counts import gated_counts


def slice_stats(patient_id: str, institution: str, slices, result: CascadeResult, truth: np.ndarray) -> pd.DataFrame:
    """Per-slice counts for one patient (truth: (N, H, W) bool at the maps' size)."""
    seg = result.segmenter_masks()
    return pd.DataFrame({
        "patient_id": patient_id,
        "institution": institution,
        "slice": np.asarray(slices),
        "probability": result.probabilities.astype(float),
        "truth_pixels": truth.sum(axis=(1, 2)),
        "segmenter_pixels": seg.sum(axis=(1, 2)),
        "overlap_pixels": (seg & truth).sum(axis=(1, 2)),
    })


def metrics_at_threshold(stats: pd.DataFrame, threshold: float) -> dict:
    """Slice-level and patient-level detection, Dice per volume, and the tumor lost to the gate.

    Decisions follow the cascade: a slice is called tumor when it passes the gate and its mask is
    non-empty. Dice per volume uses the same empty/empty = 1 convention as ``brainseg.core.metrics``.
    """
    counts = gated_counts(stats, threshold)
    passed, called = counts["passed_gate"].to_numpy(), counts["called"].to_numpy()
    predicted, overlap, truth = (counts[c].to_numpy() for c in ("predicted", "overlap", "truth"))
    has_tumor = truth > 0

    frame = pd.DataFrame({"patient_id": stats["patient_id"], "has_tumor": has_tumor, "called": called,
                          "predicted": predicted, "overlap": overlap, "truth": truth})
    per_patient = frame.groupby("patient_id", sort=False).agg(
        has_tumor=("has_tumor", "any"), called=("called", "any"), predicted=("predicted", "sum"),
        overlap=("overlap", "sum"), truth=("truth", "sum"))
    dice_per_volume = [float(d) for d in metrics.dice_from_counts(
        per_patient["overlap"], per_patient["predicted"], per_patient["truth"])]
    loss_parts = {patient: metrics.dice_loss_parts_from_counts(rows["overlap"], rows["predicted"], rows["truth"])
                  for patient, rows in frame.groupby("patient_id", sort=False)}
    gated_out_tumor = has_tumor & ~passed
    return {
        "threshold": float(threshold),
        "classifier": metrics.classification_at(has_tumor, passed),
        "cascade_slices": metrics.classification_at(has_tumor, called),
        "patients": metrics.classification_at(per_patient["has_tumor"].to_numpy(), per_patient["called"].to_numpy()),
        "dice_per_volume": metrics.summarize(dice_per_volume),
        "per_patient_dice": dict(zip(per_patient.index, dice_per_volume, strict=True)),
        "per_patient_dice_loss_parts": loss_parts,
        "gate_loss": {
            # tumor slices the gate discards, and the true tumor pixels the segmenter had found on them
            "tumor_slices_gated_out": int(gated_out_tumor.sum()),
            "truth_pixels_on_gated_out_slices": int(truth[gated_out_tumor].sum()),
            "segmented_tumor_pixels_lost": int(stats["overlap_pixels"].to_numpy()[gated_out_tumor].sum()),
            "share_of_segmented_tumor_pixels_lost": _share(
                stats["overlap_pixels"].to_numpy()[gated_out_tumor].sum(), stats["overlap_pixels"].sum()),
        },
    }


def _share(part: float, whole: float) -> float:
    return float(part / whole) if whole else 0.0


SENSITIVITY_PRESETS = (0.95, 0.97, 0.99)


def preset_thresholds(stats: pd.DataFrame) -> dict[str, float]:
    """The seed's two thresholds and the highest thresholds reaching each preset slice sensitivity."""
    presets = {"seed 0.5": 0.5, "seed 0.05": 0.05}
    labels = stats["truth_pixels"].to_numpy() > 0
    if labels.any():
        for target in SENSITIVITY_PRESETS:
            presets[f"sensitivity ≥ {target:.2f}"] = metrics.threshold_for_sensitivity(
                labels, stats["probability"].to_numpy(), target)
    return presets
