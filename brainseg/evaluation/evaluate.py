"""Evaluation of the cascade on a Kaggle-layout folder: detection, segmentation, calibration, latency.

Runs the cascade once per patient and keeps only what the metrics need, so memory stays flat
whatever the folder's size. See ``brainseg.core.metrics`` for the metric definitions and conventions.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from brainseg.core import metrics as m
from brainseg.core.data import load_slices, read_mask
from brainseg.inference.cascade import Cascade, CascadeResult, passes_gate
from brainseg.inference.store import PredictionStore

SEED_THRESHOLDS = {"at_0.5": 0.5, "at_0.05": 0.05}


@dataclass
class PatientPrediction:
    """One patient's ground truth and cascade outputs (bool masks at full size)."""

    patient_id: str
    institution: str
    slices: np.ndarray
    truth: np.ndarray
    result: CascadeResult
    seconds: float  # cascade time on the decoded slices


def predict_patients(cascade: Cascade, manifest: pd.DataFrame, progress: str | None = None,
                     store: PredictionStore | None = None):
    """Yield a PatientPrediction per patient of ``manifest`` (in patient order).

    ``progress``: the description of a progress bar over the patients (None: no bar). ``store``: read the
    outputs from this prediction store instead of running the cascade (only the masks are decoded); a patient
    missing from it (or stale) is scored into it first. ``seconds`` is then the read (or scoring) time.
    """
    patients = list(dict.fromkeys(manifest["patient_id"]))
    if progress is not None:
        from tqdm import tqdm

        patients = tqdm(patients, desc=progress, unit="patient")
    for patient in patients:
        rows = manifest[manifest["patient_id"] == patient]
        if store is not None:
            start = time.perf_counter()
            result = store.result_or_score(cascade, rows)
            seconds = time.perf_counter() - start
            truth = np.stack([read_mask(path) for path in rows["mask_path"]])
            yield PatientPrediction(patient, str(rows["institution"].iloc[0]), rows["slice"].to_numpy(), truth,
                                    result, seconds)
            continue
        images, truth = load_slices(rows)
        start = time.perf_counter()
        result = cascade.predict(images, rows["slice"].to_numpy())
        seconds = time.perf_counter() - start
        yield PatientPrediction(patient, str(rows["institution"].iloc[0]), rows["slice"].to_numpy(), truth, result,
                                seconds)


def evaluate(
    cascade: Cascade,
    manifest: pd.DataFrame,
    threshold: float | None = None,
    progress: bool = False,
    temperature: float | None = None,
    n_resamples: int = 2000,
    seed: int = 0,
    store: PredictionStore | None = None,
) -> dict:
    """All figures for one folder (or split) at the cascade's default threshold and the seed's two,
    with 95% bootstrap confidence intervals over patients (``n_resamples`` draws; 0 skips them).

    ``store``: take the cascade's outputs from this prediction store (see ``predict_patients``).
    """
    threshold = cascade.default_threshold if threshold is None else threshold
    per_slice: list[pd.DataFrame] = []
    volumes: dict[str, dict[str, dict[str, float]]] = {"cascade": {}, "segmenter": {}}
    hd95_values: dict[str, list[float]] = {"cascade": [], "segmenter": []}
    seconds = 0.0

    for patient in predict_patients(cascade, manifest, progress="evaluating" if progress else None, store=store):
        truth, result = patient.truth, patient.result
        seconds += patient.seconds
        # The segmenter alone is the cascade with every slice through the gate.
        outputs = {"cascade": (result.masks(threshold), result.decisions(threshold)),
                   "segmenter": (result.segmenter_masks(), result.decisions(-np.inf))}
        table = pd.DataFrame({
            "patient_id": patient.patient_id,
            "institution": patient.institution,
            "slice": patient.slices,
            "has_tumor": truth.any(axis=(1, 2)),
            "probability": result.probabilities,
            "classifier_probability": result.classifier_probabilities,
        })
        for name, (masks, called) in outputs.items():
            table[f"{name}_dice"] = m.dice_per_slice(masks, truth)
            table[f"{name}_called"] = called
            volumes[name][patient.patient_id] = {"dice": m.dice(masks, truth), "iou": m.iou(masks, truth),
                                                 **m.dice_loss_parts(masks, truth)}
            hd95_values[name] += [m.hd95(p, t) for p, t in zip(masks, truth, strict=True) if t.any()]
        per_slice.append(table)

    slices = pd.concat(per_slice, ignore_index=True)
    labels, scores = slices["has_tumor"].to_numpy(), slices["probability"].to_numpy()
    classifier = {"roc_auc": m.roc_auc(labels, scores),
                  "expected_calibration_error": m.expected_calibration_error(labels, scores)}
    if temperature is not None:
        from brainseg.evaluation.calibration import apply_temperature

        classifier["temperature"] = temperature
        classifier["expected_calibration_error_temperature_scaled"] = m.expected_calibration_error(
            labels, apply_temperature(scores, temperature))
    for name, t in {**SEED_THRESHOLDS, "at_default": threshold}.items():
        classifier[name] = {"threshold": t, **m.classification_at(labels, passes_gate(scores, t))}

    report: dict = {
        "default_threshold": threshold,
        "slice_score": cascade.slice_score,
        "n_patients": int(slices["patient_id"].nunique()),
        "n_slices": len(slices),
        "n_tumor_slices": int(labels.sum()),
        "classifier": classifier,
        "cascade_slice_decisions": m.classification_at(labels, slices["cascade_called"].to_numpy()),
        "patient_detection": _patient_detection(slices),
    }
    combined_score = cascade.slice_score != "classifier"
    if combined_score:  # "classifier" above holds the gate's score's figures: the classifier's own AUC too
        report["classifier_alone"] = {
            "roc_auc": m.roc_auc(labels, slices["classifier_probability"].to_numpy()),
            "about": "the classifier's P(tumor) alone, before it is combined into the gate's slice score "
                     f"({cascade.slice_score})"}
    for name in ("cascade", "segmenter"):
        tumor = slices[slices["has_tumor"]]
        report[name] = {
            "dice_per_volume": m.summarize({p: v["dice"] for p, v in volumes[name].items()}),
            "iou_per_volume": m.summarize({p: v["iou"] for p, v in volumes[name].items()}),
            "dice_per_tumor_slice": m.summarize(tumor[f"{name}_dice"].to_numpy()),
            "dice_per_slice_all": m.summarize(slices[f"{name}_dice"].to_numpy()),
            # HD95 is undefined on a tumor slice with an empty prediction: say how many it leaves out.
            "hd95_pixels_per_tumor_slice": {
                **m.summarize(hd95_values[name]),
                "tumor_slices_left_out": int(np.sum(~np.isfinite(np.asarray(hd95_values[name], float))))},
            "false_positive_slices": int((slices[f"{name}_called"] & ~slices["has_tumor"]).sum()),
            "dice_loss_parts": m.mean_dice_loss_parts(list(volumes[name].values())),
            "per_patient_dice": {p: v["dice"] for p, v in volumes[name].items()},
        }
    report["latency"] = {
        "ms_per_slice": 1000.0 * seconds / max(1, len(slices)),
        "note": "both models on every slice, batch 16, decoded slices in memory; see `brainseg bench`" if store is None
        else "outputs read from the prediction store (patients missing from it scored first): not model latency",
    }
    report["confidence_intervals"] = _confidence_intervals(slices, volumes, threshold, n_resamples, seed,
                                                           combined_score)
    report["by_institution"] = {
        inst: {"n_patients": int(group["patient_id"].nunique()),
               "cascade_dice_per_volume_mean": float(np.mean(
                   [volumes["cascade"][p]["dice"] for p in group["patient_id"].unique()]))}
        for inst, group in slices.groupby("institution")
    }
    return report


def _confidence_intervals(slices: pd.DataFrame, volumes: dict, threshold: float, n_resamples: int,
                          seed: int, combined_score: bool) -> dict:
    """95% percentile-bootstrap intervals over patients for the headline figures (see ``bootstrap``)."""
    if n_resamples <= 0:
        return {}
    from functools import partial

    from brainseg.evaluation import bootstrap as b

    table = slices.assign(passed_gate=passes_gate(slices["probability"], threshold))
    common = {"n_resamples": n_resamples, "seed": seed}
    gate = b.detection_intervals(table, "passed_gate", **common)
    cascade = b.detection_intervals(table, "cascade_called", **common)
    intervals = {
        "roc_auc": b.patient_bootstrap(table, b.roc_auc_statistic, **common),
        "sensitivity_at_default": gate["sensitivity"],
        "specificity_at_default": gate["specificity"],
        "cascade_slice_sensitivity": cascade["sensitivity"],
        "cascade_slice_specificity": cascade["specificity"],
    }
    if combined_score:
        intervals["classifier_alone_roc_auc"] = b.patient_bootstrap(
            table, partial(b.roc_auc_statistic, score_column="classifier_probability"), **common)
    for name in ("cascade", "segmenter"):
        per_patient = pd.DataFrame({"patient_id": list(volumes[name]),
                                    "dice": [v["dice"] for v in volumes[name].values()]})
        intervals[f"{name}_dice_per_volume_mean"] = b.patient_bootstrap(per_patient, b.mean_of_column("dice"),
                                                                         **common)
    return intervals


def _patient_detection(slices: pd.DataFrame) -> dict:
    """A patient is 'detected' when at least one of its slices is called tumor by the cascade."""
    grouped = slices.groupby("patient_id")
    has_tumor = grouped["has_tumor"].any().to_numpy()
    called = grouped["cascade_called"].any().to_numpy()
    return m.classification_at(has_tumor, called)


def format_report(report: dict) -> str:
    """A plain-text summary of an evaluation report (the JSON holds everything)."""
    c, t = report["classifier"], report["default_threshold"]
    lines = [
        f"patients {report['n_patients']}, slices {report['n_slices']} ({report['n_tumor_slices']} with tumor)",
        f"slice score ({report.get('slice_score', 'classifier')}) ROC AUC {c['roc_auc']:.4f}, "
        f"ECE {c['expected_calibration_error']:.4f}",
    ]
    if "classifier_alone" in report:
        lines.append(f"  the classifier's P alone: ROC AUC {report['classifier_alone']['roc_auc']:.4f}")
    for key in ("at_default", "at_0.5", "at_0.05"):
        r = c[key]
        lines.append(
            f"  threshold {r['threshold']:.3f}: sensitivity {r['sensitivity']:.3f}  specificity {r['specificity']:.3f}"
            f"  precision {r['precision']:.3f}  F1 {r['f1']:.3f}  (tp {r['tp']} fp {r['fp']} tn {r['tn']} fn {r['fn']})"
        )
    p = report["patient_detection"]
    lines.append(f"patient detection at {t:.3f}: {p['tp']}/{p['tp'] + p['fn']} patients with tumor found")
    for name in ("cascade", "segmenter"):
        r = report[name]
        lines.append(
            f"{name:9s} Dice/volume mean {r['dice_per_volume']['mean']:.4f} median {r['dice_per_volume']['median']:.4f}"
            f" | IoU/volume mean {r['iou_per_volume']['mean']:.4f} | Dice/tumor slice mean"
            f" {r['dice_per_tumor_slice']['mean']:.4f} | HD95 median {r['hd95_pixels_per_tumor_slice']['median']:.2f}"
            f" px ({r['hd95_pixels_per_tumor_slice']['tumor_slices_left_out']} tumor slices left out: empty prediction)"
            f" | false-positive slices {r['false_positive_slices']}"
        )
    for name, ci in report.get("confidence_intervals", {}).items():
        lines.append(f"95% CI (bootstrap over {ci['n_patients']} patients) {name}: {ci['estimate']:.4f} "
                     f"[{ci['low']:.4f}, {ci['high']:.4f}]")
    lines.append(f"latency {report['latency']['ms_per_slice']:.1f} ms/slice")
    return "\n".join(lines)
