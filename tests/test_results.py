"""One home per rule: the slice decision, Dice from counts, and the one per-slice results table."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest

from brainseg.core import metrics
from brainseg.evaluation.patient_summary import decision_note, summarize_patient
from brainseg.evaluation.threshold_analysis import metrics_at_threshold, slice_stats
from brainseg.inference.cascade import CascadeResult, remove_small_components, tumor_called
from brainseg.inference.counts import gated_counts
from brainseg.inference.results import SLICE_RESULT_COLUMNS, slice_results


def _result() -> tuple[CascadeResult, np.ndarray]:
    """4 slices of 8x8: tumor drawn / below gate / through the gate but empty mask / false alarm."""
    maps = np.zeros((4, 8, 8), np.float32)
    maps[0, 2:5, 2:5] = 0.9  # 9 px
    maps[1, 0:2, 0:2] = 0.8  # 4 px, but the gate stops it
    maps[2, 4, 4] = 0.49  # under the pixel cut: empty mask
    maps[3, 6:8, 6:8] = 0.7  # 4 px on a tumor-free slice
    truth = np.zeros((4, 8, 8), bool)
    truth[0, 2:5, 2:6] = True  # 12 px, overlap 9
    truth[1, 0:2, 0:2] = True
    return CascadeResult(np.array([0.9, 0.2, 0.95, 0.6]), maps), truth


def test_decision_is_gate_and_non_empty_mask():
    result, _ = _result()
    assert result.gate(0.5).tolist() == [True, False, True, True]
    assert result.decisions(0.5).tolist() == [True, False, False, True]
    assert tumor_called(np.array([True, True, False]), np.array([3, 0, 5])).tolist() == [True, False, False]


def test_dice_from_counts_by_hand_and_like_masks():
    assert metrics.dice_from_counts(9, 9, 12) == pytest.approx(18 / 21)
    assert metrics.dice_from_counts(0, 0, 0) == 1.0  # empty on empty
    assert metrics.dice_from_counts(np.array([0, 1]), np.array([4, 1]), np.array([0, 1])).tolist() == [0.0, 1.0]
    result, truth = _result()
    masks = result.masks(0.5)
    assert metrics.dice(masks[0], truth[0]) == pytest.approx(18 / 21)


def test_count_based_figures_equal_mask_based_ones():
    result, truth = _result()
    stats = slice_stats("P", "XX", np.arange(1, 5), result, truth)
    for threshold in (0.1, 0.5, 0.92):
        counts = gated_counts(stats, threshold)
        assert counts["called"].tolist() == result.decisions(threshold).tolist()
        masks = result.masks(threshold)
        assert counts["dice"].tolist() == pytest.approx(metrics.dice_per_slice(masks, truth).tolist())
        report = metrics_at_threshold(stats, threshold)
        assert report["per_patient_dice"]["P"] == pytest.approx(metrics.dice(masks, truth))
        assert report["per_patient_dice_loss_parts"]["P"] == pytest.approx(metrics.dice_loss_parts(masks, truth))


def test_results_table_columns_and_values():
    result, truth = _result()
    table = slice_results([f"c_{k}.tif" for k in range(1, 5)], result, 0.5, truths=[truth[0], None, truth[2], truth[3]],
                          notes=["", "", "resized", ""], out_of_distribution=[None, "grayscale", None, None])
    assert tuple(table.columns) == SLICE_RESULT_COLUMNS
    assert table["tumor_called"].tolist() == [True, False, False, True]
    assert table["passed_gate"].tolist() == [True, False, True, True]
    assert table["predicted_tumor_pixels"].tolist() == [9, 0, 0, 4]
    assert table["true_tumor_pixels"].tolist() == [12, pd.NA, 0, 0]
    assert table["dice"].iloc[0] == pytest.approx(round(18 / 21, 5))
    assert pd.isna(table["dice"].iloc[1])
    assert table["dice"].iloc[2] == 1.0 and table["dice"].iloc[3] == 0.0
    assert table["out_of_distribution"].tolist() == ["", "grayscale", "", ""]


def test_results_table_says_when_its_pixel_figures_are_not_on_the_files_grid():
    from PIL import Image

    from brainseg.inference.results import GRID_NOTE
    from brainseg.inference.uploads import read_user_slice

    def png(height: int, width: int) -> bytes:
        buffer = io.BytesIO()
        Image.fromarray(np.full((height, width, 3), 90, np.uint8)).save(buffer, "PNG")
        return buffer.getvalue()

    # The notes the upload path writes: resized (counts differ from the downloaded mask's), padded only (they don't).
    notes = ["; ".join(read_user_slice(png(h, w), f"s{h}.png").notes) for h, w in [(300, 300), (256, 128), (256, 256)]]
    result, _ = _result()
    table = slice_results([f"c_{k}.tif" for k in range(1, 5)], result, 0.5, notes=[*notes, ""])
    assert "model grid (256x256)" in GRID_NOTE and "resized from 300x300" in notes[0]
    assert "padded from 128x256" in notes[1] and "resized" not in notes[1] + notes[2]
    assert table["notes"].tolist() == [f"{notes[0]}; {GRID_NOTE}", notes[1], notes[2], ""]


def test_small_components_removed_per_slice_never_largest_only():
    masks = np.zeros((1, 10, 10), bool)
    masks[0, 0:3, 0:3] = True  # 9 px
    masks[0, 6:8, 6:8] = True  # 4 px
    masks[0, 9, 0] = True  # 1 px
    kept = remove_small_components(masks, 4)
    assert kept.sum() == 13  # both components of >= 4 px stay: multifocal tumors survive
    assert remove_small_components(masks, 5).sum() == 9
    assert remove_small_components(masks, 0).sum() == 14
    result = CascadeResult(np.array([1.0]), masks.astype(np.float32), min_component_pixels=5)
    assert result.masks(0.5).sum() == 9


def test_pixel_cut_is_applied_to_float32_maps_exactly():
    maps = np.full((1, 4, 4), 0.4999, np.float32)  # float16 would round this up to 0.5
    assert not CascadeResult(np.array([1.0]), maps).masks(0.5).any()
    assert np.float16(0.4999) >= 0.5  # the rounding the dashboard's old float16 cache suffered


def test_patient_summary_uses_the_decision_rule():
    result, truth = _result()
    summary = summarize_patient(np.array([11, 12, 13, 14]), result, truth, 0.5)
    assert summary.tumor_slices == 2 and summary.detected_slices == 1
    assert summary.missed_slices == [12] and summary.false_positive_slices == [14]
    assert summary.dice_per_volume == pytest.approx(metrics.dice(result.masks(0.5), truth))
    assert decision_note(0.2, 0.5, False) == "below the gate"
    assert decision_note(0.95, 0.5, False) == "passed the gate, mask empty"
    assert decision_note(0.9, 0.5, True) == "passed the gate"
