"""The resolution ceiling on tiny masks with hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from brainseg.evaluation.resolution import resolution_ceiling, round_trip


def _block() -> np.ndarray:
    """One 4x4 slice with a 2x2 tumor in its top-left corner: shrunk to 2x2, it is exactly pixel (0, 0)."""
    truth = np.zeros((1, 4, 4), bool)
    truth[0, :2, :2] = True
    return truth


def test_round_trip_at_the_slice_size_is_the_mask_itself():
    truth = np.random.default_rng(0).random((3, 8, 8)) > 0.6
    assert np.array_equal(round_trip(truth, 8, 0.5), truth)


def test_round_trip_by_hand():
    # Back to 4x4, bilinear with half-pixel centres, pixel (0, 0) = 1 becomes the outer product of
    # [1, .75, .25, 0] with itself: cut at 0.5 the 2x2 block returns exactly; at 0.7 its corner (0.5625) drops.
    assert np.array_equal(round_trip(_block(), 2, 0.5), _block())
    at_07 = round_trip(_block(), 2, 0.7)
    assert at_07.sum() == 3 and not at_07[0, 1, 1]
    lone_pixel = np.zeros((1, 4, 4), bool)
    lone_pixel[0, 0, 0] = True  # a quarter of one shrunk pixel: not over half covered, lost
    assert not round_trip(lone_pixel, 2, 0.5).any()
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        round_trip(np.zeros((4, 4), bool), 2, 0.5)


def test_hard_labels_move_a_half_covered_edge_outward_and_soft_labels_do_not():
    column = np.zeros((1, 4, 4), bool)
    column[0, :, 0] = True  # shrunk to 2x2, the left pixels are exactly half covered
    hard = round_trip(column, 2, 0.5)  # kept as tumor: back at 4x4 the column is [1, .75, .25, 0] wide
    assert np.array_equal(hard[0].any(axis=0), [True, True, False, False])
    soft = round_trip(column, 2, 0.5, soft=True)  # [.5, .375, .125, 0]: only the expert's column reaches 0.5
    assert np.array_equal(soft, column)


def test_ceiling_per_size_with_and_without_component_removal():
    patients = [("P1", _block()), ("P0", np.zeros((1, 4, 4), bool))]
    report = resolution_ceiling(patients, sizes=[2, 4], mask_threshold=0.7, min_component_pixels=4)
    assert (report["n_patients"], report["n_patients_without_tumor"]) == (1, 1)
    ceilings = report["ceilings"]
    assert ceilings["4"]["dice_per_volume_mean"] == 1.0
    assert ceilings["2"]["dice_per_volume_mean"] == pytest.approx(6 / 7)  # 3 of 4 pixels: 2*3 / (3 + 4)
    assert ceilings["2"]["dice_loss_parts"]["missed_on_slices_drawn_on"] == pytest.approx(1 / 7)
    # The 3 pixels left at size 2 form one component under 4 pixels: removal empties the slice.
    assert ceilings["2+removal"]["dice_per_volume_mean"] == 0.0
    assert ceilings["2+removal"]["dice_loss_parts"]["missed_on_slices_left_empty"] == 1.0
    assert ceilings["4+removal"]["dice_per_volume_mean"] == 1.0  # the 4-pixel tumor itself is kept
    assert ceilings["2"]["per_patient"] == {"P1": pytest.approx(6 / 7)}
    assert ceilings["2 soft"]["dice_per_volume_mean"] == pytest.approx(6 / 7)  # whole shrunk pixels: as hard


def test_ceiling_needs_a_tumor():
    with pytest.raises(ValueError, match="no patient with tumor"):
        resolution_ceiling([("P0", np.zeros((1, 4, 4), bool))], sizes=[2], mask_threshold=0.5,
                           min_component_pixels=0)
