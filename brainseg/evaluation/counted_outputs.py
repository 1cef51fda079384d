"""The cascade's outputs reduced to what the operating-point rule reads: scores and pixel counts over a grid.

The rule (``brainseg.evaluation.operating_point``) sets the gate threshold from slice scores and picks the mask cut
and minimum component size by mean Dice per volume. Per slice, the score, the truth's pixel count and, for each
(cut, component size) of the grid, the mask's pixel count and its overlap with truth decide every figure the rule
uses exactly: Dice per volume is a ratio of summed counts, a slice decision is the gate and a non-empty mask
(``brainseg.inference.counts``). About fifty integers a slice instead of a 256x256 map: a fold's outputs kept this
way fit in its committed report, so the choices a final fit needs can be made from fold reports scored in
different sessions (``brainseg.experiments.crossval.combine_reports``), long after the fold models are gone.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from brainseg.core import metrics
from brainseg.errors import DataError
from brainseg.inference.counts import gated_counts

MASK_THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7)
MIN_COMPONENT_PIXELS = (0, 10, 25, 50, 100)
POSTPROCESSING_GRID = tuple(itertools.product(MASK_THRESHOLDS, MIN_COMPONENT_PIXELS))
# A report's key for the counts, row for row with its per_slice records.
RECORD_KEY = "per_slice_pixel_counts"


@dataclass
class CountedOutputs:
    """Per slice (N rows, each patient's slices together): patient, slice number, truth label, the slice score
    (``slice_score``), truth pixels; per slice and grid point (G columns, ``grid`` gives each one's cut and
    minimum component size): the segmenter mask's pixels and their overlap with truth, before the gate."""

    patient_ids: np.ndarray
    slice_numbers: np.ndarray
    labels: np.ndarray
    scores: np.ndarray
    slice_score: str
    truth_pixels: np.ndarray
    grid: tuple[tuple[float, int], ...]
    predicted_pixels: np.ndarray
    overlap_pixels: np.ndarray

    def __post_init__(self) -> None:
        self.scores = np.asarray(self.scores, np.float64)  # one dtype whichever way they came: same figures
        self.labels = np.asarray(self.labels, bool)
        self.grid = tuple((float(cut), int(pixels)) for cut, pixels in self.grid)
        n = len(self.patient_ids)
        shapes = [len(v) for v in (self.slice_numbers, self.labels, self.scores, self.truth_pixels)]
        if any(s != n for s in shapes) or np.shape(self.predicted_pixels) != (n, len(self.grid)) or np.shape(
                self.overlap_pixels) != (n, len(self.grid)):
            raise DataError(f"counted outputs of {n} slices and {len(self.grid)} grid points do not line up")
        runs = int(np.count_nonzero(self.patient_ids[1:] != self.patient_ids[:-1])) + 1 if n else 0
        if runs != len(set(self.patient_ids.tolist())):  # Dice per volume sums a patient's rows: keep them together
            raise DataError("a patient's counted slices are split among other patients' or appear twice")
        if not np.array_equal(self.labels, self.truth_pixels > 0):
            raise DataError("the counted truth pixels disagree with the slices' tumor labels: not the same slices")

    def __len__(self) -> int:
        return len(self.patient_ids)

    @property
    def patients(self) -> list[str]:
        """The patients, in their order in the rows."""
        return list(dict.fromkeys(self.patient_ids.tolist()))

    @classmethod
    def from_outputs(cls, outputs, slice_score: str,
                     grid: Sequence[tuple[float, int]] = POSTPROCESSING_GRID) -> CountedOutputs:
        """Count ``outputs`` (``operating_point.ValidationOutputs``: truths and cascade results) over ``grid``."""
        truths = [np.asarray(truth, bool) for truth in outputs.truths]
        sizes = [len(result) for result in outputs.results]
        predicted = np.zeros((sum(sizes), len(grid)), np.int64)
        overlap = np.zeros_like(predicted)
        starts = np.cumsum([0, *sizes])
        for column, (cut, pixels) in enumerate(grid):  # one grid point's masks in memory at a time
            results = outputs.with_postprocessing(cut, pixels, slice_score)
            for start, truth, result in zip(starts[:-1], truths, results, strict=True):
                masks = result.segmenter_masks()
                predicted[start:start + len(result), column] = masks.sum(axis=(1, 2))
                overlap[start:start + len(result), column] = (masks & truth).sum(axis=(1, 2))
        numbers = [r.slice_numbers if r.slice_numbers is not None else np.arange(len(r)) for r in outputs.results]
        ids = [patient for patient, size in zip(outputs.patient_ids, sizes, strict=True) for _ in range(size)]
        return cls(np.asarray(ids, dtype=object), _joined(numbers, int), outputs.labels, outputs.scores(slice_score),
                   slice_score, _joined([t.sum(axis=(1, 2)) for t in truths], np.int64), tuple(grid),
                   predicted, overlap)

    def _column(self, mask_threshold: float, min_component_pixels: int) -> int:
        key = (float(mask_threshold), int(min_component_pixels))
        if key not in self.grid:
            raise DataError(f"mask cut {mask_threshold} with components of {min_component_pixels} pixels is not "
                            "on the counted grid")
        return self.grid.index(key)

    def slice_stats(self, mask_threshold: float, min_component_pixels: int) -> pd.DataFrame:
        """One grid point's per-slice counts, in the columns ``brainseg.inference.counts.gated_counts`` reads."""
        column = self._column(mask_threshold, min_component_pixels)
        return pd.DataFrame({"patient_id": self.patient_ids, "probability": self.scores,
                             "truth_pixels": self.truth_pixels, "segmenter_pixels": self.predicted_pixels[:, column],
                             "overlap_pixels": self.overlap_pixels[:, column]})

    def decisions(self, mask_threshold: float, min_component_pixels: int, threshold: float) -> np.ndarray:
        """(N,) the cascade's slice decisions at that post-processing and gate threshold."""
        return gated_counts(self.slice_stats(mask_threshold, min_component_pixels), threshold)["called"].to_numpy()

    def dice_per_volume(self, mask_threshold: float, min_component_pixels: int, threshold: float) -> np.ndarray:
        """Each patient's cascade Dice per volume (``patients`` order) at that post-processing and gate threshold."""
        counts = gated_counts(self.slice_stats(mask_threshold, min_component_pixels), threshold)
        summed = counts.groupby(self.patient_ids, sort=False)[["overlap", "predicted", "truth"]].sum()
        return np.atleast_1d(metrics.dice_from_counts(summed["overlap"], summed["predicted"], summed["truth"]))

    @classmethod
    def concatenate(cls, parts: Sequence[CountedOutputs]) -> CountedOutputs:
        """Several sets of patients' counts (e.g. each fold's held-out patients) as one."""
        if not parts:
            raise DataError("nothing to concatenate")
        first = parts[0]
        if any(p.grid != first.grid or p.slice_score != first.slice_score for p in parts):
            raise DataError("counted outputs over different grids or slice scores cannot be pooled")
        patients = [patient for p in parts for patient in p.patients]
        if len(patients) != len(set(patients)):
            raise DataError("a patient's counted outputs appear in more than one of the parts pooled")
        return cls(*(np.concatenate([getattr(p, name) for p in parts]) for name in (
            "patient_ids", "slice_numbers", "labels", "scores")), first.slice_score,
            np.concatenate([p.truth_pixels for p in parts]), first.grid,
            np.concatenate([p.predicted_pixels for p in parts]), np.concatenate([p.overlap_pixels for p in parts]))

    def to_record(self) -> dict:
        """The counts for a report, as lists (its ``per_slice`` holds patient, slice, label and score)."""
        return {"about": "per slice, row for row with per_slice: truth pixels; for each (mask cut, minimum "
                         "component pixels) of grid, the segmenter mask's pixels and their overlap with truth, "
                         "before the gate (brainseg.evaluation.counted_outputs)",
                "grid": [list(point) for point in self.grid],
                "truth_pixels": self.truth_pixels.astype(int).tolist(),
                "predicted_pixels": self.predicted_pixels.astype(int).tolist(),
                "overlap_pixels": self.overlap_pixels.astype(int).tolist()}

    @classmethod
    def from_report(cls, report: dict) -> CountedOutputs:
        """A report's counts with its ``per_slice`` records (``to_record``'s inverse)."""
        if RECORD_KEY not in report:
            raise DataError(f"the report has no {RECORD_KEY}: made before brainseg kept them; score its folds "
                            "again with --stage evaluate")
        slices, record = report["per_slice"], report[RECORD_KEY]
        try:
            grid = tuple(map(tuple, record["grid"]))
            predicted, overlap = (np.asarray(record[key], np.int64).reshape(-1, len(grid))
                                  for key in ("predicted_pixels", "overlap_pixels"))
        except (KeyError, TypeError, ValueError) as err:
            raise DataError(f"the report's {RECORD_KEY} cannot be read: {err}") from err
        return cls(np.asarray(slices["patient_id"], dtype=object), np.asarray(slices["slice"], int),
                   np.asarray(slices["has_tumor"], bool), np.asarray(slices["probability"], np.float64),
                   report["slice_score"], np.asarray(record["truth_pixels"], np.int64), grid, predicted, overlap)


def _joined(arrays: list[np.ndarray], dtype) -> np.ndarray:
    return np.concatenate(arrays).astype(dtype) if arrays else np.zeros(0, dtype)
