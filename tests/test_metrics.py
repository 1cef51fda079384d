import numpy as np
import pytest

from brainseg.core import metrics as m


def square(size=8, top=0, left=0, side=2):
    mask = np.zeros((size, size), bool)
    mask[top : top + side, left : left + side] = True
    return mask


def test_dice_and_iou_by_hand():
    truth = square(side=2)  # 4 px
    pred = square(side=2, left=1)  # 4 px, 2 shared
    assert m.dice(pred, truth) == pytest.approx(2 * 2 / 8)
    assert m.iou(pred, truth) == pytest.approx(2 / 6)


def test_empty_prediction_on_empty_truth_is_perfect():
    empty = np.zeros((8, 8), bool)
    assert m.dice(empty, empty) == 1.0
    assert m.iou(empty, empty) == 1.0


def test_any_error_against_empty_is_zero():
    empty = np.zeros((8, 8), bool)
    assert m.dice(square(), empty) == 0.0
    assert m.dice(empty, square()) == 0.0


def test_per_volume_pools_slices_unlike_per_slice_mean():
    truth = np.stack([square(side=4), np.zeros((8, 8), bool)])  # 16 px tumor, then an empty slice
    pred = np.stack([square(side=4), square(side=1)])  # exact, then a 1-px false positive
    per_slice = m.dice_per_slice(pred, truth)
    assert per_slice.tolist() == [1.0, 0.0]
    volume = m.per_volume(m.dice, pred, truth, np.array(["p1", "p1"]))
    assert volume == {"p1": pytest.approx(2 * 16 / 33)}


def test_shape_mismatch_is_refused():
    with pytest.raises(ValueError, match="shape"):
        m.dice(np.zeros((4, 4)), np.zeros((4, 5)))


def test_hd95_of_shifted_square_and_empty():
    truth = square(size=20, top=5, left=5, side=5)
    shifted = square(size=20, top=5, left=8, side=5)
    # Every boundary pixel is within 3 px of the other boundary; the far edges are exactly 3 apart.
    assert m.hd95(truth, truth) == 0.0
    assert m.hd95(shifted, truth) == pytest.approx(3.0)
    assert np.isnan(m.hd95(np.zeros_like(truth), truth))


def test_classification_at_counts_by_hand():
    labels = np.array([1, 1, 1, 0, 0, 0, 0], bool)
    called = np.array([1, 1, 0, 1, 0, 0, 0], bool)
    r = m.classification_at(labels, called)
    assert (r["tp"], r["fn"], r["fp"], r["tn"]) == (2, 1, 1, 3)
    assert r["sensitivity"] == pytest.approx(2 / 3)
    assert r["specificity"] == pytest.approx(3 / 4)
    assert r["precision"] == pytest.approx(2 / 3)
    assert r["f1"] == pytest.approx(4 / 6)


def test_precision_without_positive_calls_is_nan_not_zero():
    r = m.classification_at(np.array([1, 0], bool), np.array([0, 0], bool))
    assert np.isnan(r["precision"])
    assert r["specificity"] == 1.0


def test_roc_auc_by_hand_and_single_class():
    labels = np.array([0, 0, 1, 1])
    scores = np.array([0.1, 0.4, 0.35, 0.8])  # 3 of 4 positive-negative pairs ordered correctly
    assert m.roc_auc(labels, scores) == pytest.approx(0.75)
    assert np.isnan(m.roc_auc(np.array([1, 1]), np.array([0.2, 0.3])))


def test_threshold_for_sensitivity_is_the_highest_that_reaches_it():
    labels = np.array([1, 1, 1, 1, 0, 0])
    scores = np.array([0.9, 0.8, 0.3, 0.2, 0.5, 0.1])
    assert m.threshold_for_sensitivity(labels, scores, 1.0) == pytest.approx(0.2)
    assert m.threshold_for_sensitivity(labels, scores, 0.75) == pytest.approx(0.3)
    assert m.threshold_for_sensitivity(labels, scores, 0.5) == pytest.approx(0.8)
    t = m.threshold_for_sensitivity(labels, scores, 0.75)
    assert m.classification_at(labels, scores >= t)["sensitivity"] >= 0.75


@pytest.mark.parametrize("target", [0.0, -0.5, 1.01, 2.0, float("nan")])
def test_threshold_for_sensitivity_refuses_targets_outside_0_1(target):
    # 2.0 used to wrap to the lowest positive's neighbour, 0.0 to index past the 4 positives.
    labels, scores = np.array([1, 1, 1, 1, 0]), np.array([0.9, 0.8, 0.3, 0.2, 0.5])
    with pytest.raises(ValueError, match=r"target sensitivity must be in \(0, 1\]"):
        m.threshold_for_sensitivity(labels, scores, target)


def test_expected_calibration_error_by_hand():
    # Bin [0.2, 0.3): confidence 0.2, accuracy 0.5 -> |0.3| * 0.5 share; bin [0.9, 1]: 0.9 vs 1.0 -> 0.1 * 0.5
    labels = np.array([1, 0, 1, 1])
    probabilities = np.array([0.2, 0.2, 0.9, 0.9])
    assert m.expected_calibration_error(labels, probabilities) == pytest.approx(0.5 * 0.3 + 0.5 * 0.1)


def test_summarize_ignores_nan():
    s = m.summarize([1.0, np.nan, 3.0])
    assert (s["mean"], s["median"], s["n"]) == (2.0, 2.0, 2)


def test_dice_loss_parts_by_hand_add_up_to_one_minus_dice():
    truth = np.zeros((4, 2, 2), bool)
    pred = np.zeros((4, 2, 2), bool)
    pred[0, 0, 0] = True                                   # 1 extra pixel on a tumor-free slice
    truth[1, 0, :] = True
    pred[1, 0, :] = pred[1, 1, 0] = True                   # 2 found, 1 extra on a tumor slice
    truth[2, :, 0] = True                                  # 2 missed on a slice left empty
    truth[3, 0, :] = truth[3, 1, 0] = True
    pred[3, 0, 0] = True                                   # 1 found, 2 missed on a slice drawn on
    parts = m.dice_loss_parts(pred, truth)                 # TP 3, FP 2, FN 4: 2 TP + FP + FN = 12
    assert parts == pytest.approx({"extra_on_tumor_free_slices": 1 / 12, "extra_on_tumor_slices": 1 / 12,
                                   "missed_on_slices_left_empty": 2 / 12, "missed_on_slices_drawn_on": 2 / 12})
    assert sum(parts.values()) == pytest.approx(1 - m.dice(pred, truth)) and m.dice(pred, truth) == 0.5
    assert set(m.dice_loss_parts(np.zeros((2, 2, 2)), np.zeros((2, 2, 2))).values()) == {0.0}  # Dice 1
    with pytest.raises(ValueError, match="N, H, W"):
        m.dice_loss_parts(pred[0], truth[0])


def test_dice_loss_by_tumor_size_groups_patients_by_size_smallest_first():
    parts = dict.fromkeys(m.DICE_LOSS_PARTS, 0.0)
    rows = [{"tumor_pixels": px, "cascade_dice": dice, **parts, "missed_on_slices_drawn_on": 1 - dice}
            for px, dice in ((500, 0.9), (10, 0.4), (90, 0.6), (2000, 0.8), (40, 0.5))]
    small, large = m.dice_loss_by_tumor_size(rows, groups=2)
    assert (small["min_tumor_pixels"], small["max_tumor_pixels"], small["n_patients"]) == (10, 90, 3)
    assert (large["min_tumor_pixels"], large["max_tumor_pixels"], large["n_patients"]) == (500, 2000, 2)
    assert small["dice_mean"] == pytest.approx(0.5) and large["missed_on_slices_drawn_on"] == pytest.approx(0.15)


def test_dice_change_by_tumor_size_pairs_the_same_patients_per_size_group():
    rows = [{"patient_id": name, "tumor_pixels": px, "cascade_dice": dice}
            for name, px, dice in (("a", 500, 0.9), ("b", 10, 0.4), ("c", 90, 0.6), ("d", 2000, 0.8))]
    baseline = [{"patient_id": name, "cascade_dice": dice}
                for name, dice in (("d", 0.7), ("c", 0.7), ("b", 0.6), ("a", 0.9), ("extra", 0.0))]
    small, large = m.dice_change_by_tumor_size(rows, baseline, groups=2)
    # small: b (10 px) and c (90 px), 0.5 against 0.65; large: a and d, 0.85 against 0.8
    assert (small["min_tumor_pixels"], small["max_tumor_pixels"], small["n_patients"]) == (10, 90, 2)
    assert (small["dice_mean"], small["baseline_dice_mean"]) == (pytest.approx(0.5), pytest.approx(0.65))
    assert small["change"] == pytest.approx(-0.15) and large["change"] == pytest.approx(0.05)
    with pytest.raises(ValueError, match=r"^1 patients are not in the baseline, e\.g\. b$"):
        m.dice_change_by_tumor_size(rows, [row for row in baseline if row["patient_id"] != "b"])


def test_hd95_pools_both_directions_before_the_percentile():
    """MedPy's convention: a lone pixel 40 px away is 1 of 25 pooled boundary distances (the 4x4 square's 12 edge
    pixels each way, all at 0), past the 95th percentile, so HD95 is 0; the larger-of-two one-way percentile
    (MONAI) counts it among 13 and interpolates 0.4 x 40 = 16."""
    truth = np.zeros((64, 64), bool)
    truth[10:14, 10:14] = True
    pred = truth.copy()
    pred[53, 12] = True  # 40 rows below the square's lower edge (row 13)
    assert m.hd95(pred, truth) == 0.0
    assert m.hd95(truth, pred) == 0.0  # symmetric
