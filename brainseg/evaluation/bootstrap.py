"""Bootstrap confidence intervals over patients for an evaluation of the cascade.

Method: a nonparametric *percentile* bootstrap in which the **patient** is the unit of resampling.
Slices of one patient are strongly correlated (same scanner, same tumor, neighbouring anatomy), so
resampling slices independently would understate the uncertainty. Each resample draws as many
patients as the table holds, uniformly and with replacement; a patient drawn k times contributes all
of its rows k times. The statistic is computed on the concatenated rows of each resample, and the
interval at confidence ``c`` is the ``(1 - c) / 2`` and ``(1 + c) / 2`` quantiles of the resampled
statistics (linear interpolation, numpy's default). The point estimate is the statistic on the full
table, not the bootstrap mean.

Resamples on which the statistic is undefined (NaN: a ROC AUC on a resample holding one class only,
a sensitivity on a resample without tumor slices) are dropped from the quantiles and counted in
``"n_undefined"``. Many undefined resamples mean the interval is conditional on the defined ones and
should be read with care. A percentile interval is not forced to contain the estimate; for the usual
statistics (means, proportions, AUC) on more than a handful of patients it does.

The same ``seed`` gives the same draws, so intervals are reproducible.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

METHOD = "percentile bootstrap over patients"

Statistic = Callable[[pd.DataFrame], float]


def _patient_row_indices(table: pd.DataFrame, patient_column: str) -> list[np.ndarray]:
    """Positional row indices of each patient, in order of first appearance (computed once)."""
    if patient_column not in table.columns:
        raise KeyError(f"column {patient_column!r} not in the table (columns: {list(table.columns)})")
    codes, _ = pd.factorize(table[patient_column], sort=False)
    if (codes < 0).any():
        raise ValueError(f"column {patient_column!r} has missing patient ids")
    order = np.argsort(codes, kind="stable")
    counts = np.bincount(codes)
    return np.split(order, np.cumsum(counts)[:-1])


def patient_bootstrap(
    table: pd.DataFrame,
    statistic: Statistic,
    patient_column: str = "patient_id",
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict:
    """Percentile bootstrap confidence interval of ``statistic(table)``, resampling whole patients.

    Returns ``{"estimate", "low", "high", "n_resamples", "n_undefined", "confidence", "method",
    "n_patients"}``. ``low``/``high`` are NaN when every resample's statistic is NaN.
    """
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be at least 1, got {n_resamples}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence}")
    if len(table) == 0:
        raise ValueError("cannot bootstrap an empty table")

    groups = _patient_row_indices(table, patient_column)
    n_patients = len(groups)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_patients, size=(n_resamples, n_patients))

    values = np.empty(n_resamples, dtype=float)
    for r, drawn in enumerate(draws):
        rows = np.concatenate([groups[p] for p in drawn])
        values[r] = float(statistic(table.iloc[rows]))

    defined = values[~np.isnan(values)]
    alpha = 1.0 - confidence
    if defined.size:
        low, high = (float(q) for q in np.quantile(defined, [alpha / 2, 1 - alpha / 2]))
    else:
        low = high = math.nan
    return {
        "estimate": float(statistic(table)),
        "low": low,
        "high": high,
        "n_resamples": int(n_resamples),
        "n_undefined": int(n_resamples - defined.size),
        "confidence": float(confidence),
        "method": METHOD,
        "n_patients": int(n_patients),
    }


# --- statistics on a per-slice table: patient_id, has_tumor (bool), probability (float), called (bool) ---


def roc_auc_statistic(table: pd.DataFrame, label_column: str = "has_tumor", score_column: str = "probability") -> float:
    """Slice-level ROC AUC of ``probability`` against ``has_tumor``; NaN when only one class is present."""
    labels = table[label_column].to_numpy(dtype=bool)
    if labels.all() or not labels.any():
        return math.nan
    return float(roc_auc_score(labels, table[score_column].to_numpy(dtype=float)))


def sensitivity_statistic(table: pd.DataFrame, called_column: str = "called") -> float:
    """Fraction of tumor slices that are called tumor; NaN when there is no tumor slice."""
    labels = table["has_tumor"].to_numpy(dtype=bool)
    called = table[called_column].to_numpy(dtype=bool)
    positives = int(labels.sum())
    return math.nan if positives == 0 else float((called & labels).sum() / positives)


def specificity_statistic(table: pd.DataFrame, called_column: str = "called") -> float:
    """Fraction of tumor-free slices that are not called tumor; NaN when there is no tumor-free slice."""
    labels = table["has_tumor"].to_numpy(dtype=bool)
    called = table[called_column].to_numpy(dtype=bool)
    negatives = int((~labels).sum())
    return math.nan if negatives == 0 else float((~called & ~labels).sum() / negatives)


def mean_of_column(column: str) -> Statistic:
    """A statistic averaging ``column`` of a per-patient table (one row per patient), e.g. Dice per volume.

    A NaN value in the column makes the mean NaN (the resample is then dropped as undefined).
    """

    def statistic(table: pd.DataFrame) -> float:
        values = table[column].to_numpy(dtype=float)
        return math.nan if values.size == 0 else float(np.mean(values))

    statistic.__name__ = f"mean_of_{column}"
    return statistic


def detection_intervals(slices: pd.DataFrame, called_column: str, **options) -> dict[str, dict]:
    """Patient-bootstrap intervals for the sensitivity and specificity of the slice decisions in ``called_column``
    (``options``: ``patient_bootstrap``'s). One home for the pair that evaluate and crossval both report."""
    return {name: patient_bootstrap(slices, partial(statistic, called_column=called_column), **options)
            for name, statistic in (("sensitivity", sensitivity_statistic), ("specificity", specificity_statistic))}
