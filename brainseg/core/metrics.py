"""Evaluation metrics on numpy arrays.

Overlap conventions (written down because they change the numbers):
- Dice = 2|P and T| / (|P| + |T|), IoU = |P and T| / |P or T|.
- **Empty prediction on empty truth counts as a perfect 1.0** (nothing to find, nothing drawn);
  a non-empty prediction on empty truth, or an empty prediction on a tumor, scores 0.0.
- *Per slice*: one value per 2-D slice. *Per volume* (Buda et al. 2019): all slices of a patient are
  pooled into one 3-D mask first, so large tumors weigh by their voxels and empty slices only count
  through their false positives.
- HD95: 95th percentile of the symmetric surface distances, in pixels of the 256x256 slice; it is
  undefined (NaN) when either mask is empty, and such slices are left out of its summaries.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from sklearn import metrics as skm


def _overlap(pred: np.ndarray, truth: np.ndarray) -> tuple[int, int, int]:
    pred, truth = np.asarray(pred, bool), np.asarray(truth, bool)
    if pred.shape != truth.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from truth shape {truth.shape}")
    inter = int(np.logical_and(pred, truth).sum())
    return inter, int(pred.sum()), int(truth.sum())


def dice_from_counts(overlap, predicted, truth):
    """Dice from pixel counts, 1.0 where both masks are empty; scalars or arrays (element-wise).

    The one home of the Dice formula and its empty/empty convention: mask-based and count-based
    figures (the dashboard's any-threshold analysis, the error queue) all come through here.
    """
    overlap, predicted, truth = (np.asarray(v, dtype=float) for v in (overlap, predicted, truth))
    denominator = predicted + truth
    values = np.where(denominator == 0, 1.0, 2.0 * overlap / np.maximum(denominator, 1.0))
    return float(values) if values.ndim == 0 else values


def dice(pred: np.ndarray, truth: np.ndarray) -> float:
    """Dice of two binary masks of any shape (1.0 when both are empty)."""
    return dice_from_counts(*_overlap(pred, truth))


# Where a volume's wrong pixels lie (see ``dice_loss_parts``), with the short label reports and figures use.
DICE_LOSS_PARTS = {
    "extra_on_tumor_free_slices": "false-positive blobs",
    "extra_on_tumor_slices": "over-segmentation",
    "missed_on_slices_left_empty": "slices left empty",
    "missed_on_slices_drawn_on": "under-segmentation",
}


def dice_loss_parts(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """What a volume's Dice per volume loses, and where: 1 - Dice = (FP + FN) / (2 TP + FP + FN), with FP and FN
    split by the slice they lie on. Extra pixels: on slices without tumor in truth (false-positive blobs) or on
    tumor slices (over-segmentation). Missed pixels: on tumor slices the prediction left empty (gated out or
    nothing drawn) or on ones it drew on (under-segmentation). The four parts add up to 1 - Dice; all are 0
    when both volumes are empty. ``pred`` and ``truth``: (N, H, W) masks of one patient."""
    pred, truth = np.asarray(pred, bool), np.asarray(truth, bool)
    if pred.shape != truth.shape or pred.ndim != 3:
        raise ValueError(f"expected two (N, H, W) masks of one shape, got {pred.shape} and {truth.shape}")
    return dice_loss_parts_from_counts((pred & truth).sum(axis=(1, 2)), pred.sum(axis=(1, 2)),
                                       truth.sum(axis=(1, 2)))


def dice_loss_parts_from_counts(overlap, predicted, truth) -> dict[str, float]:
    """``dice_loss_parts`` from one patient's per-slice pixel counts (arrays over its slices): the one home of
    the split, so stored counts at any threshold give what the masks would."""
    overlap, predicted, truth = (np.asarray(v, dtype=np.int64) for v in (overlap, predicted, truth))
    extra, missed = predicted - overlap, truth - overlap
    tumor_slice, drawn_on = truth > 0, predicted > 0
    denominator = int(2 * overlap.sum() + extra.sum() + missed.sum())
    counts = (extra[~tumor_slice].sum(), extra[tumor_slice].sum(), missed[~drawn_on].sum(), missed[drawn_on].sum())
    return {name: (float(count) / denominator if denominator else 0.0)
            for name, count in zip(DICE_LOSS_PARTS, counts, strict=True)}


def mean_dice_loss_parts(per_patient: list[dict]) -> dict[str, float]:
    """``dice_loss_parts`` averaged over patients: the parts of 1 - (mean Dice per volume)."""
    return {name: float(np.mean([row[name] for row in per_patient])) for name in DICE_LOSS_PARTS}


def _by_tumor_size(per_patient: list[dict], groups: int) -> list[list[dict]]:
    """Patients split into ``groups`` of (nearly) equal count by their tumor's size in truth (``tumor_pixels``),
    smallest first (empty groups dropped)."""
    ordered = sorted(per_patient, key=lambda row: row["tumor_pixels"])
    return [rows for rows in (list(chunk) for chunk in np.array_split(np.array(ordered, dtype=object), groups))
            if rows]


def _size_range(rows: list[dict]) -> dict:
    return {"min_tumor_pixels": int(rows[0]["tumor_pixels"]), "max_tumor_pixels": int(rows[-1]["tumor_pixels"]),
            "n_patients": len(rows)}


def dice_loss_by_tumor_size(per_patient: list[dict], groups: int = 3, dice_key: str = "cascade_dice") -> list[dict]:
    """Per group of patients by tumor size (``_by_tumor_size``): its size range, mean Dice per volume and mean
    ``dice_loss_parts``."""
    return [{**_size_range(rows), "dice_mean": float(np.mean([row[dice_key] for row in rows])),
             **mean_dice_loss_parts(rows)}
            for rows in _by_tumor_size(per_patient, groups)]


def dice_change_by_tumor_size(per_patient: list[dict], baseline_per_patient: list[dict], groups: int = 3,
                              dice_key: str = "cascade_dice") -> list[dict]:
    """Two models' Dice per volume on the same patients, per group by tumor size (``_by_tumor_size`` of
    ``per_patient``): each group's mean for both and the change (this one minus the baseline), so a recipe
    change can be seen to help small tumors and hurt large ones. Every patient must be in the baseline."""
    baseline = {row["patient_id"]: row[dice_key] for row in baseline_per_patient}
    missing = sorted({row["patient_id"] for row in per_patient} - set(baseline))
    if missing:
        raise ValueError(f"{len(missing)} patients are not in the baseline, e.g. {missing[0]}")
    changes = []
    for rows in _by_tumor_size(per_patient, groups):
        ours, theirs = (float(np.mean(values)) for values in
                        ([row[dice_key] for row in rows], [baseline[row["patient_id"]] for row in rows]))
        changes.append({**_size_range(rows), "dice_mean": ours, "baseline_dice_mean": theirs,
                        "change": ours - theirs})
    return changes


def iou(pred: np.ndarray, truth: np.ndarray) -> float:
    """Intersection over union of two binary masks (1.0 when both are empty)."""
    inter, n_pred, n_truth = _overlap(pred, truth)
    union = n_pred + n_truth - inter
    return 1.0 if union == 0 else inter / union


def dice_per_slice(preds: np.ndarray, truths: np.ndarray) -> np.ndarray:
    """(N, H, W) masks -> (N,) Dice values."""
    return np.array([dice(p, t) for p, t in zip(preds, truths, strict=True)])


def iou_per_slice(preds: np.ndarray, truths: np.ndarray) -> np.ndarray:
    return np.array([iou(p, t) for p, t in zip(preds, truths, strict=True)])


def per_volume(metric, preds: np.ndarray, truths: np.ndarray, groups: np.ndarray) -> dict[str, float]:
    """``metric`` on each group's stacked slices (a group = a patient), keyed by group id."""
    groups = np.asarray(groups)
    return {str(g): metric(preds[groups == g], truths[groups == g]) for g in dict.fromkeys(groups)}


def hd95(pred: np.ndarray, truth: np.ndarray) -> float:
    """95th-percentile symmetric Hausdorff distance between two 2-D masks, in pixels (NaN if one is empty).

    The convention of MedPy's ``hd95``: the 95th percentile of both directions' boundary distances pooled
    together. MONAI and many BraTS tables take the larger of the two one-way 95th percentiles instead, which is
    never smaller; a small distant false-positive blob moves it more than this one."""
    pred, truth = np.asarray(pred, bool), np.asarray(truth, bool)
    if not pred.any() or not truth.any():
        return float("nan")
    pred_edge = pred & ~ndimage.binary_erosion(pred)
    truth_edge = truth & ~ndimage.binary_erosion(truth)
    to_truth = ndimage.distance_transform_edt(~truth_edge)[pred_edge]
    to_pred = ndimage.distance_transform_edt(~pred_edge)[truth_edge]
    return float(np.percentile(np.concatenate([to_truth, to_pred]), 95))


def summarize(values) -> dict[str, float]:
    """Mean, median, std, min, max and count of the finite values."""
    arr = np.asarray(list(values.values()) if isinstance(values, dict) else values, dtype=float)
    arr = arr[np.isfinite(arr)]
    if arr.size == 0:
        return {"mean": float("nan"), "median": float("nan"), "std": float("nan"),
                "min": float("nan"), "max": float("nan"), "n": 0}
    return {"mean": float(arr.mean()), "median": float(np.median(arr)), "std": float(arr.std()),
            "min": float(arr.min()), "max": float(arr.max()), "n": int(arr.size)}


def confusion_counts(labels: np.ndarray, predicted: np.ndarray) -> dict[str, int]:
    """tp, fp, tn, fn of binary labels against binary decisions."""
    labels, predicted = np.asarray(labels, bool), np.asarray(predicted, bool)
    return {
        "tp": int(np.sum(labels & predicted)),
        "fp": int(np.sum(~labels & predicted)),
        "tn": int(np.sum(~labels & ~predicted)),
        "fn": int(np.sum(labels & ~predicted)),
    }


def _ratio(num: int, den: int) -> float:
    return float(num / den) if den else float("nan")


def classification_at(labels: np.ndarray, predicted: np.ndarray) -> dict[str, float | int]:
    """Sensitivity (recall), specificity, precision, F1, accuracy and the confusion counts.

    A ratio with an empty denominator (e.g. precision with no positive call) is NaN, not 0.
    """
    c = confusion_counts(labels, predicted)
    sensitivity = _ratio(c["tp"], c["tp"] + c["fn"])
    precision = _ratio(c["tp"], c["tp"] + c["fp"])
    f1 = _ratio(2 * c["tp"], 2 * c["tp"] + c["fp"] + c["fn"])
    return {
        "sensitivity": sensitivity,
        "specificity": _ratio(c["tn"], c["tn"] + c["fp"]),
        "precision": precision,
        "f1": f1,
        "accuracy": _ratio(c["tp"] + c["tn"], sum(c.values())),
        **c,
    }


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (NaN when only one class is present)."""
    labels = np.asarray(labels, bool)
    if labels.all() or not labels.any():
        return float("nan")
    return float(skm.roc_auc_score(labels, scores))


def roc_curve(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """False-positive rate, true-positive rate, thresholds."""
    return skm.roc_curve(np.asarray(labels, bool), scores)


def precision_recall_curve(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision, recall, thresholds; without the points a plotted curve cannot show (as ``roc_curve`` does),
    so a cohort's curve sends hundreds of points to the browser instead of one per slice."""
    return skm.precision_recall_curve(np.asarray(labels, bool), scores, drop_intermediate=True)


def threshold_for_sensitivity(labels: np.ndarray, scores: np.ndarray, target: float) -> float:
    """Highest threshold t such that calling ``scores >= t`` positive reaches ``target`` sensitivity."""
    # Outside (0, 1] the index below would wrap (target > 1) or run past the end (target <= 0).
    if not 0 < target <= 1:
        raise ValueError(f"target sensitivity must be in (0, 1], got {target}")
    positives = np.sort(np.asarray(scores, float)[np.asarray(labels, bool)])
    if positives.size == 0:
        raise ValueError("no positive examples: sensitivity is undefined")
    # At threshold positives[k] the k lowest-scoring positives are missed.
    allowed_misses = int(np.floor((1.0 - target) * positives.size + 1e-9))
    return float(positives[allowed_misses])


def expected_calibration_error(labels: np.ndarray, probabilities: np.ndarray, n_bins: int = 10) -> float:
    """ECE: sum over equal-width probability bins of |bin accuracy - bin confidence| weighted by bin share."""
    labels = np.asarray(labels, float)
    probabilities = np.asarray(probabilities, float)
    if labels.size == 0:
        return float("nan")
    bins = np.minimum((probabilities * n_bins).astype(int), n_bins - 1)
    error = 0.0
    for b in range(n_bins):
        in_bin = bins == b
        if in_bin.any():
            error += in_bin.mean() * abs(labels[in_bin].mean() - probabilities[in_bin].mean())
    return float(error)
