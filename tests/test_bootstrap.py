"""Patient-level bootstrap intervals (brainseg.evaluation.bootstrap) on tiny hand-made tables."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from brainseg.evaluation.bootstrap import (
    METHOD,
    detection_intervals,
    mean_of_column,
    patient_bootstrap,
    roc_auc_statistic,
    sensitivity_statistic,
    specificity_statistic,
)

N = 200  # resamples: enough for the checks below, fast


def _slices() -> pd.DataFrame:
    """Four patients, 10 slices; sensitivity 3/5 = 0.6, specificity 4/5 = 0.8."""
    rows = [
        # patient, has_tumor, probability, called
        ("p1", True, 0.9, True), ("p1", True, 0.7, True), ("p1", False, 0.2, False),
        ("p2", True, 0.4, False), ("p2", False, 0.6, True), ("p2", False, 0.1, False),
        ("p3", True, 0.8, True), ("p3", False, 0.3, False),
        ("p4", True, 0.35, False), ("p4", False, 0.05, False),
    ]
    return pd.DataFrame(rows, columns=["patient_id", "has_tumor", "probability", "called"])


def _patients() -> pd.DataFrame:
    return pd.DataFrame({"patient_id": [f"p{i}" for i in range(8)],
                         "dice": [0.91, 0.85, 0.40, 0.77, 0.88, 0.95, 0.62, 0.80]})


def _fraction_tumor(table: pd.DataFrame) -> float:
    return float(table["has_tumor"].mean())


# --- statistics ---


def test_statistics_on_a_hand_made_table():
    t = _slices()
    assert sensitivity_statistic(t) == pytest.approx(0.6)
    assert specificity_statistic(t) == pytest.approx(0.8)
    assert roc_auc_statistic(t) == pytest.approx(roc_auc_score(t["has_tumor"], t["probability"]))
    assert mean_of_column("dice")(_patients()) == pytest.approx(np.mean(_patients()["dice"]))


def test_statistics_are_nan_when_undefined():
    tumor_only = _slices()[lambda d: d["has_tumor"]]
    free_only = _slices()[lambda d: ~d["has_tumor"]]
    assert math.isnan(roc_auc_statistic(tumor_only)) and math.isnan(roc_auc_statistic(free_only))
    assert math.isnan(sensitivity_statistic(free_only))
    assert math.isnan(specificity_statistic(tumor_only))


# --- the bootstrap ---


def test_result_keys_and_estimate_is_the_statistic_on_the_full_table():
    t = _slices()
    result = patient_bootstrap(t, sensitivity_statistic, n_resamples=N)
    assert set(result) == {"estimate", "low", "high", "n_resamples", "n_undefined", "confidence", "method",
                           "n_patients"}
    assert result["estimate"] == sensitivity_statistic(t) == pytest.approx(0.6)
    assert result["n_resamples"] == N and result["confidence"] == 0.95
    assert result["method"] == METHOD == "percentile bootstrap over patients"
    assert result["n_patients"] == 4


def test_identical_patients_collapse_the_interval_to_the_estimate():
    block = [(True, 0.9, True), (False, 0.1, False), (True, 0.4, False), (False, 0.6, True)]
    t = pd.DataFrame([(f"p{i}", *row) for i in range(5) for row in block],
                     columns=["patient_id", "has_tumor", "probability", "called"])
    for statistic, expected in ((sensitivity_statistic, 0.5), (specificity_statistic, 0.5),
                                (roc_auc_statistic, 0.75)):
        r = patient_bootstrap(t, statistic, n_resamples=50)
        assert r["estimate"] == pytest.approx(expected)
        assert r["low"] == pytest.approx(expected) and r["high"] == pytest.approx(expected)
        assert r["n_undefined"] == 0


def test_low_estimate_high_are_ordered():
    for table, statistic in ((_patients(), mean_of_column("dice")), (_slices(), sensitivity_statistic),
                             (_slices(), specificity_statistic), (_slices(), roc_auc_statistic)):
        r = patient_bootstrap(table, statistic, n_resamples=N)
        assert r["low"] <= r["estimate"] <= r["high"]
        assert r["low"] < r["high"]  # the patients differ, so the interval has some width


def test_reproducible_with_a_seed_and_different_with_another():
    p, stat = _patients(), mean_of_column("dice")
    a = patient_bootstrap(p, stat, n_resamples=N, seed=7)
    b = patient_bootstrap(p, stat, n_resamples=N, seed=7)
    c = patient_bootstrap(p, stat, n_resamples=N, seed=8)
    assert a == b
    assert (a["low"], a["high"]) != (c["low"], c["high"])
    assert a["estimate"] == c["estimate"]


def test_confidence_level_sets_the_percentiles_of_the_resampled_values():
    p, stat = _patients(), mean_of_column("dice")
    narrow = patient_bootstrap(p, stat, n_resamples=N, confidence=0.5)
    wide = patient_bootstrap(p, stat, n_resamples=N, confidence=0.99)
    assert wide["low"] <= narrow["low"] <= narrow["high"] <= wide["high"]
    assert wide["high"] - wide["low"] > narrow["high"] - narrow["low"]
    assert narrow["confidence"] == 0.5
    seen = []  # the resampled values, in draw order (the last call is the estimate on the whole table)
    recorded = patient_bootstrap(p, lambda table: seen.append(stat(table)) or seen[-1], n_resamples=N,
                                 confidence=0.5)
    resampled = np.array(seen[:N])
    assert recorded["low"] == pytest.approx(np.quantile(resampled, 0.25))
    assert recorded["high"] == pytest.approx(np.quantile(resampled, 0.75))


def _big_and_small() -> pd.DataFrame:
    """Patient "big": 100 tumor slices; patient "small": 1 tumor-free slice; rows interleaved on purpose."""
    t = pd.DataFrame({"patient_id": ["big"] * 100 + ["small"], "has_tumor": [True] * 100 + [False]})
    return t.sample(frac=1.0, random_state=0)


def test_resampling_draws_whole_patients():
    t = _big_and_small()
    seen: list[pd.DataFrame] = []

    def recording(table: pd.DataFrame) -> float:
        seen.append(table)
        return _fraction_tumor(table)

    r = patient_bootstrap(t, recording, n_resamples=N)
    resamples = [x for x in seen if x is not t]  # leave out the estimate's call on the full table
    assert len(resamples) == N
    sizes = {"big": 100, "small": 1}
    for resample in resamples:
        counts = resample["patient_id"].value_counts()
        # each patient present contributes all its rows, once per draw; 2 draws per resample
        assert all(counts[p] % sizes[p] == 0 for p in counts.index)
        assert sum(counts[p] // sizes[p] for p in counts.index) == 2
        assert len(resample) in {2, 101, 200}
    fractions = [_fraction_tumor(x) for x in resamples]
    # slice-level resampling would essentially never give a resample of the one tumor-free slice only;
    # patient-level draws give it with probability 1/4
    assert min(fractions) == 0.0 and max(fractions) == 1.0
    assert set(np.round(fractions, 9)) <= {0.0, round(100 / 101, 9), 1.0}
    assert r["estimate"] == pytest.approx(100 / 101)
    assert r["low"] == 0.0 and r["high"] == 1.0
    assert r["n_patients"] == 2


def test_undefined_resamples_are_dropped_and_counted():
    # p_pos only tumor slices, p_neg only tumor-free: the AUC is defined only when both are drawn
    t = pd.DataFrame({"patient_id": ["p_pos"] * 3 + ["p_neg"] * 2, "has_tumor": [True] * 3 + [False] * 2,
                      "probability": [0.9, 0.8, 0.7, 0.2, 0.1]})
    values: list[float] = []

    def recording(table: pd.DataFrame) -> float:
        values.append(roc_auc_statistic(table))
        return values[-1]

    r = patient_bootstrap(t, recording, n_resamples=N)
    n_nan = int(np.isnan(values).sum())
    assert r["n_undefined"] == n_nan  # the full-table call is defined, so every NaN is a resample
    assert 0 < r["n_undefined"] < N  # about half of the resamples draw one patient twice
    assert r["estimate"] == r["low"] == r["high"] == 1.0


def test_all_undefined_gives_nan_bounds():
    t = pd.DataFrame({"patient_id": ["a", "a", "b"], "has_tumor": [True, True, True], "probability": [0.1, 0.5, 0.9]})
    r = patient_bootstrap(t, roc_auc_statistic, n_resamples=20)
    assert r["n_undefined"] == 20
    assert math.isnan(r["estimate"]) and math.isnan(r["low"]) and math.isnan(r["high"])


def test_custom_patient_column_and_bad_arguments():
    t = _slices().rename(columns={"patient_id": "case"})
    assert patient_bootstrap(t, sensitivity_statistic, patient_column="case", n_resamples=10)["n_patients"] == 4
    with pytest.raises(KeyError):
        patient_bootstrap(t, sensitivity_statistic, n_resamples=10)
    with pytest.raises(ValueError):
        patient_bootstrap(_slices(), sensitivity_statistic, n_resamples=0)
    with pytest.raises(ValueError):
        patient_bootstrap(_slices(), sensitivity_statistic, confidence=1.0)
    with pytest.raises(ValueError):
        patient_bootstrap(_slices().iloc[:0], sensitivity_statistic)
    with pytest.raises(ValueError):
        patient_bootstrap(_slices().assign(patient_id=[None] + ["p"] * 9), sensitivity_statistic, n_resamples=10)


def test_detection_intervals_of_a_decision_column():
    s = _slices()
    ci = detection_intervals(s, "called", n_resamples=N, seed=3)
    assert set(ci) == {"sensitivity", "specificity"}
    assert ci["sensitivity"]["estimate"] == pytest.approx(0.6)
    assert ci["specificity"]["estimate"] == pytest.approx(0.8)
    for r in ci.values():
        assert r["method"] == METHOD and r["n_resamples"] == N and r["n_patients"] == 4
    assert ci == detection_intervals(s, "called", n_resamples=N, seed=3)
    # the column the cascade's evaluation writes
    renamed = detection_intervals(s.rename(columns={"called": "cascade_called"}), "cascade_called", n_resamples=N,
                                  seed=3)
    assert renamed == ci
    flipped = detection_intervals(s.assign(called=~s["called"]), "called", n_resamples=N, seed=3)
    assert flipped["sensitivity"]["estimate"] == pytest.approx(0.4)
