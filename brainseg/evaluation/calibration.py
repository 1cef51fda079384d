"""Slice-score calibration: temperature scaling fitted on the validation split.

Temperature scaling divides the logit of the gate's slice score by one scalar T > 0 (T > 1 softens
over-confident probabilities). The slice score is the classifier's P(tumor) or, for a combined score, the
mean of that and segmenter evidence, which is not itself a probability: the record names the score it was
fitted on (``slice_score``), and its ECE figures are of that score. Scaling leaves the ranking, and so the
ROC curve and AUC, unchanged; the operating point's threshold moves with it, which is why it is optional and
stored apart from the weights.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from scipy.optimize import minimize_scalar

from brainseg.core.split import OUT_OF_FOLD

EPS = 1e-7


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, float), EPS, 1 - EPS)
    return np.log(p) - np.log1p(-p)


def apply_temperature(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """Probabilities with their logits divided by ``temperature``."""
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    return 1.0 / (1.0 + np.exp(-_logit(probabilities) / temperature))


def negative_log_likelihood(labels: np.ndarray, probabilities: np.ndarray) -> float:
    p = np.clip(np.asarray(probabilities, float), EPS, 1 - EPS)
    y = np.asarray(labels, float)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log1p(-p)))


def fit_temperature(labels: np.ndarray, probabilities: np.ndarray) -> float:
    """The temperature minimizing the negative log-likelihood (searched over log T in [-3, 3])."""
    labels = np.asarray(labels, bool)
    if labels.all() or not labels.any():
        raise ValueError("temperature scaling needs both tumor and tumor-free slices")
    result = minimize_scalar(lambda log_t: negative_log_likelihood(labels, apply_temperature(probabilities,
                                                                                              np.exp(log_t))),
                             bounds=(-3.0, 3.0), method="bounded")
    return float(np.exp(result.x))


def save_calibration(path: str | Path, temperature: float, fitted_on: dict) -> None:
    Path(path).write_text(json.dumps({"method": "temperature scaling", "temperature": temperature,
                                      "fitted_on": fitted_on}, indent=2) + "\n")


def fit_calibration(labels: np.ndarray, probabilities: np.ndarray, fitted_on: dict) -> dict:
    """The fitted temperature and what it was fitted on, with NLL and ECE before and after."""
    from brainseg.core.metrics import expected_calibration_error

    temperature = fit_temperature(labels, probabilities)
    scaled = apply_temperature(probabilities, temperature)
    return {"temperature": temperature, **fitted_on,
            "nll_before": negative_log_likelihood(labels, probabilities),
            "nll_after": negative_log_likelihood(labels, scaled),  # what the fit minimises
            "ece_before": expected_calibration_error(labels, probabilities),
            "ece_after": expected_calibration_error(labels, scaled)}


def calibrate(labels: np.ndarray, probabilities: np.ndarray, fitted_on: dict, models_dir: str | Path) -> dict:
    """Fit the temperature, record ECE before and after, and save ``calibration.json``; returns the record."""
    record = fit_calibration(labels, probabilities, fitted_on)
    save_calibration(Path(models_dir) / "calibration.json", record["temperature"],
                     {k: v for k, v in record.items() if k != "temperature"})
    return record


def load_calibration(models_dir: str | Path) -> dict | None:
    """The stored calibration record (``models/calibration.json``), or None when none was fitted."""
    path = Path(models_dir) / "calibration.json"
    if not path.is_file():
        return None
    return json.loads(path.read_text())


def load_temperature(models_dir: str | Path) -> float | None:
    """The stored temperature, or None when none was fitted."""
    record = load_calibration(models_dir)
    return None if record is None else float(record["temperature"])


def fitted_on_words(record: dict) -> str:
    """Where a temperature was fitted, for people: 'the val split', 'the cross-validation's ...'."""
    split = record.get("fitted_on", {}).get("split", "validation")
    if split == OUT_OF_FOLD:
        return "the cross-validation's out-of-fold outputs"
    return f"the {split} split"
