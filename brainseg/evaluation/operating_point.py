"""Choosing the cascade's operating point on the validation split, and the temperature, never on test.

The operating point is a score kind and three numbers, all chosen on validation patients and stored with how they were
chosen in ``models/operating_point.json``:
- ``threshold``: the slice gate, the highest cut on the slice score (``slice_score``: the classifier's
  P(tumor), or combined with the segmenter's peak) that reaches a target slice sensitivity, rounded
  *down* to 6 decimals so the stored value never passes the chosen one;
- ``mask_threshold``: the per-pixel cut on the segmenter's map;
- ``min_component_pixels``: 2-D components smaller than this are removed from each slice's mask.
The last two maximise the cascade's mean Dice per volume on validation at that gate.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from brainseg.core import metrics
from brainseg.core.split import OUT_OF_FOLD, PARTS, trained_on
from brainseg.errors import DataError
from brainseg.evaluation.counted_outputs import POSTPROCESSING_GRID, CountedOutputs
from brainseg.evaluation.evaluate import predict_patients
from brainseg.inference.cascade import Cascade, CascadeResult, passes_gate

FORBIDDEN_PARTS = ("test",)


def chosen_on_words(chosen: dict) -> str:
    """Where an operating point was chosen, from its ``chosen_on`` record, as the end of a sentence: 'on the val
    split (13 patients, 475 slices)'. The model card and the threshold page both say it this way."""
    counts = ", ".join(f"{chosen[key]:,} {label}" for key, label in (("n_patients", "patients"),
                                                                     ("n_slices", "slices")) if key in chosen)
    if chosen.get("split") == OUT_OF_FOLD:
        return (f"on the cross-validation's pooled out-of-fold outputs ({counts} of train + val, each scored by the "
                "fold models that never saw it), not on test patients")
    return f"on the {chosen.get('split', 'unrecorded')} split ({counts})"


def split_parts(split: str) -> set[str]:
    """The split parts a ``--split`` value names: 'all' is every part, 'a+b' is {a, b}."""
    return set(PARTS) if split == "all" else set(split.split("+"))


def refuse_test_split(split: str, what: str) -> None:
    """Choices made on test patients (alone, or inside 'all') would flatter every test figure: refuse them."""
    if split_parts(split) & set(FORBIDDEN_PARTS):
        raise DataError(f"{what} must be chosen on the validation split, never on '{split}' (it holds test "
                        "patients, which would make the test figures optimistic); use --split val")


def refuse_trained_on(models_dir: str | Path, split: str, what: str) -> None:
    """Models that trained on any part ``split`` names (a final fit trains on val) cannot have anything chosen on
    it."""
    for role in ("classifier", "segmenter"):
        sidecar = Path(models_dir) / f"{role}.json"
        # No sidecar: assume the usual fit on train, so train patients are never taken for unseen ones.
        config = json.loads(sidecar.read_text()).get("train_config", {}) if sidecar.is_file() else {}
        parts = trained_on(config)
        seen = [part for part in PARTS if part in split_parts(split) and part in parts]
        if seen:
            raise DataError(f"the {role} in {models_dir} was trained on the '{'+'.join(seen)}' patients "
                            f"({'+'.join(parts)}), so {what} chosen on '{split}' would be flattered; choose on "
                            "patients they never saw (--split val; a final fit takes it from the cross-validation, "
                            "brainseg final-fit)")


STORED_DECIMALS = 6  # operating_point.json stores its thresholds floored to this many decimals


def threshold_decimals(value: float) -> int:
    """The fewest decimals, 3 at least, that write a stored threshold (on the 1e-6 grid) exactly."""
    for decimals in range(3, STORED_DECIMALS):
        if abs(round(value, decimals) - value) < 10.0 ** -STORED_DECIMALS / 10:
            return decimals
    return STORED_DECIMALS


def threshold_text(value: float) -> str:
    """A threshold as the decisions use it: 0.300, 0.05 as 0.050, the shipped 0.020058 in full (never rounded)."""
    return f"{value:.{threshold_decimals(value)}f}"


def floor_decimals(value: float, decimals: int = STORED_DECIMALS) -> float:
    """``value`` rounded down: a stored threshold never ends up above the one chosen."""
    factor = 10**decimals
    # value * factor is itself rounded: just below 0.199975 it gives 199975.0, at 0.29 (x 100) 28.999999999999996.
    # Take the nearest step, then step down while it is above value: the highest step not above it.
    steps = round(value * factor)
    while steps / factor > value:
        steps -= 1
    return steps / factor


@dataclass
class ValidationOutputs:
    """Every validation patient's truth and cascade outputs, kept to try settings without re-running models."""

    patient_ids: list[str]
    truths: list[np.ndarray]
    results: list[CascadeResult]

    @property
    def labels(self) -> np.ndarray:
        return np.concatenate([t.any(axis=(1, 2)) for t in self.truths])

    def scores(self, slice_score: str = "classifier") -> np.ndarray:
        return np.concatenate([r.probabilities for r in self.with_postprocessing(0.5, 0, slice_score)])

    def with_postprocessing(self, mask_threshold: float, min_component_pixels: int,
                            slice_score: str = "classifier") -> list[CascadeResult]:
        return [CascadeResult(r.classifier_probabilities, r.maps, mask_threshold, min_component_pixels, slice_score,
                              r.slice_numbers) for r in self.results]


def collect_outputs(cascade: Cascade, manifest: pd.DataFrame, progress: bool = False) -> ValidationOutputs:
    ids, truths, results = [], [], []
    for patient in predict_patients(cascade, manifest, progress="running the cascade" if progress else None):
        ids.append(patient.patient_id)
        truths.append(patient.truth)
        results.append(patient.result)
    return ValidationOutputs(ids, truths, results)


def counted(outputs: ValidationOutputs | CountedOutputs, slice_score: str,
            grid: Sequence[tuple[float, int]] = POSTPROCESSING_GRID) -> CountedOutputs:
    """``outputs`` as the counts the rule reads (``CountedOutputs``), over ``grid``; counts are taken as they are."""
    if not isinstance(outputs, CountedOutputs):
        return CountedOutputs.from_outputs(outputs, slice_score, grid)
    if outputs.slice_score != slice_score:
        raise DataError(f"these outputs were counted with the '{outputs.slice_score}' slice score, not "
                        f"'{slice_score}'")
    return outputs


def choose_postprocessing(counts: CountedOutputs, threshold: float) -> tuple[float, int, list[dict]]:
    """The (mask cut, min component size) of ``counts``' grid with the best mean Dice per volume at the gate
    ``threshold``, and the whole grid.

    Ties go to the seed's cut (0.5) and then to less post-processing: change only what measurably helps.
    """
    grid = [{"mask_threshold": cut, "min_component_pixels": min_pixels,
             "dice_per_volume_mean": float(np.mean(counts.dice_per_volume(cut, min_pixels, threshold)))}
            for cut, min_pixels in counts.grid]
    best = max(grid, key=lambda g: (round(g["dice_per_volume_mean"], 6), g["mask_threshold"] == 0.5,
                                    -g["min_component_pixels"]))
    return best["mask_threshold"], best["min_component_pixels"], grid


def choose_operating_point(outputs: ValidationOutputs | CountedOutputs, target_sensitivity: float, chosen_on: dict,
                           tune_postprocessing: bool = True, slice_score: str = "classifier") -> dict:
    """The operating point record (see the module docstring), with its figures on the split it was chosen on.

    ``outputs``: the models' outputs, or their counts (``CountedOutputs``: the same choice and figures)."""
    counts = counted(outputs, slice_score, POSTPROCESSING_GRID if tune_postprocessing else [(0.5, 0)])
    labels, scores = counts.labels, counts.scores
    threshold = floor_decimals(metrics.threshold_for_sensitivity(labels, scores, target_sensitivity))
    mask_threshold, min_pixels, grid = 0.5, 0, []
    if tune_postprocessing:
        mask_threshold, min_pixels, grid = choose_postprocessing(counts, threshold)
    decisions = counts.decisions(mask_threshold, min_pixels, threshold)
    return {
        "threshold": threshold,
        "mask_threshold": mask_threshold,
        "min_component_pixels": min_pixels,
        "slice_score": slice_score,
        "rule": f"gate on the '{slice_score}' slice score: highest threshold reaching slice sensitivity >= "
                f"{target_sensitivity} on the '{chosen_on['split']}' split (rounded down); mask cut and "
                "small-component removal: best mean cascade Dice per volume there at that gate",
        "target_sensitivity": target_sensitivity,
        "chosen_on": chosen_on,
        "at_threshold_on_that_split": metrics.classification_at(labels, passes_gate(scores, threshold)),
        "cascade_on_that_split": {
            "slice_decisions": metrics.classification_at(labels, decisions),
            "dice_per_volume_mean": float(np.mean(counts.dice_per_volume(mask_threshold, min_pixels, threshold))),
        },
        "postprocessing_grid": grid,
    }


def save_operating_point(point: dict, models_dir: str | Path) -> Path:
    path = Path(models_dir) / "operating_point.json"
    path.write_text(json.dumps(point, indent=2, default=float) + "\n")
    return path
