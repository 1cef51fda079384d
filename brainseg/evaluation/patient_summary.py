"""One patient at one threshold: the figures the Patients page and the case report show."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from brainseg.core import metrics
from brainseg.inference.cascade import CascadeResult


@dataclass(frozen=True)
class PatientSummary:
    dice_per_volume: float
    tumor_slices: int
    detected_slices: int
    missed_slices: list[int]  # slice numbers with tumor the cascade did not call
    false_positive_slices: list[int]  # slice numbers called tumor without any in the truth

    @property
    def missed(self) -> int:
        return len(self.missed_slices)

    @property
    def false_positives(self) -> int:
        return len(self.false_positive_slices)


def summarize_patient(slices: np.ndarray, result: CascadeResult, truth: np.ndarray, threshold: float) -> PatientSummary:
    """Dice per volume and slice-level detection, with the cascade's own decision rule."""
    slices = np.asarray(slices)
    has_tumor = truth.any(axis=(1, 2))
    called = result.decisions(threshold)
    return PatientSummary(
        dice_per_volume=metrics.dice(result.masks(threshold), truth),
        tumor_slices=int(has_tumor.sum()),
        detected_slices=int((has_tumor & called).sum()),
        missed_slices=[int(s) for s in slices[has_tumor & ~called]],
        false_positive_slices=[int(s) for s in slices[~has_tumor & called]],
    )


def decision_note(probability: float, threshold: float, called: bool) -> str:
    """Why a slice got its decision, in words."""
    if probability < threshold:
        return "below the gate"
    return "passed the gate" if called else "passed the gate, mask empty"
