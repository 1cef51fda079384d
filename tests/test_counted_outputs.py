"""Counted outputs (scores and pixel counts over the post-processing grid) decide exactly what the masks decide."""

from __future__ import annotations

import json

import numpy as np
import pytest

from brainseg.core import metrics
from brainseg.errors import DataError
from brainseg.evaluation.counted_outputs import POSTPROCESSING_GRID, RECORD_KEY, CountedOutputs
from brainseg.evaluation.operating_point import ValidationOutputs, choose_operating_point
from brainseg.inference.cascade import CascadeResult


def _block(shape, rows, cols, value=True, dtype=bool):
    array = np.zeros(shape, dtype)
    array[rows, cols] = value
    return array


def _outputs() -> ValidationOutputs:
    """Two patients on 32x32 slices, built so the rule's choice can be worked out by hand.

    A: slice 0, a 36-pixel tumor drawn exactly (map 0.8); slice 1, tumor-free, a 9-pixel blob (map 0.9); slice 2,
    a 25-pixel tumor drawn 30 pixels wide (map 0.55). B: slice 0, a 16-pixel tumor drawn exactly; slice 1 empty.
    """
    shape = (32, 32)
    truth_a = np.stack([_block(shape, slice(4, 10), slice(4, 10)), np.zeros(shape, bool),
                        _block(shape, slice(10, 15), slice(10, 15))])
    maps_a = np.stack([_block(shape, slice(4, 10), slice(4, 10), 0.8, np.float32),
                       _block(shape, slice(20, 23), slice(20, 23), 0.9, np.float32),
                       _block(shape, slice(10, 15), slice(10, 16), 0.55, np.float32)])
    truth_b = np.stack([_block(shape, slice(0, 4), slice(0, 4)), np.zeros(shape, bool)])
    maps_b = np.stack([_block(shape, slice(0, 4), slice(0, 4), 0.8, np.float32), np.zeros(shape, np.float32)])
    results = [CascadeResult(np.array([0.9, 0.7, 0.3], np.float32), maps_a, slice_numbers=np.array([1, 2, 3])),
               CascadeResult(np.array([0.8, 0.1], np.float32), maps_b, slice_numbers=np.array([5, 6]))]
    return ValidationOutputs(["A", "B"], [truth_a, truth_b], results)


def test_counts_hold_each_slices_pixels_at_each_grid_point():
    counts = CountedOutputs.from_outputs(_outputs(), "classifier")
    assert counts.patients == ["A", "B"] and counts.slice_numbers.tolist() == [1, 2, 3, 5, 6]
    assert counts.truth_pixels.tolist() == [36, 0, 25, 16, 0]
    assert counts.labels.tolist() == [True, False, True, True, False]
    column = counts.grid.index((0.5, 0))
    assert counts.predicted_pixels[:, column].tolist() == [36, 9, 30, 16, 0]
    assert counts.overlap_pixels[:, column].tolist() == [36, 0, 25, 16, 0]
    assert counts.predicted_pixels[:, counts.grid.index((0.6, 0))].tolist() == [36, 9, 0, 16, 0]  # 0.55 < 0.6
    assert counts.predicted_pixels[:, counts.grid.index((0.5, 10))].tolist() == [36, 0, 30, 16, 0]  # blob of 9 gone
    assert counts.predicted_pixels[:, counts.grid.index((0.5, 50))].tolist() == [0, 0, 0, 0, 0]


def test_dice_per_volume_and_decisions_from_counts_by_hand():
    counts = CountedOutputs.from_outputs(_outputs(), "classifier")
    # Gate 0.3: A's three slices and B's first pass. A: overlap 36 + 25, drawn 36 + 9 + 30, truth 61.
    assert counts.dice_per_volume(0.5, 0, 0.3) == pytest.approx([2 * 61 / (75 + 61), 1.0])
    assert counts.dice_per_volume(0.5, 10, 0.3) == pytest.approx([2 * 61 / (66 + 61), 1.0])
    # Gate 0.5: A's third slice (score 0.3) is gated out, its 25 tumor pixels missed.
    assert counts.dice_per_volume(0.5, 10, 0.5) == pytest.approx([2 * 36 / (36 + 61), 1.0])
    assert counts.decisions(0.5, 0, 0.5).tolist() == [True, True, False, True, False]
    assert counts.decisions(0.5, 10, 0.5).tolist() == [True, False, False, True, False]  # gated in, mask empty


@pytest.mark.parametrize("slice_score", ["classifier", "classifier+segmenter+neighbours"])
def test_counts_give_the_masks_figures_at_every_grid_point_and_threshold(slice_score):
    outputs = _outputs()
    counts = CountedOutputs.from_outputs(outputs, slice_score)
    assert counts.scores.tolist() == outputs.scores(slice_score).astype(float).tolist()
    for cut, min_pixels in POSTPROCESSING_GRID:
        results = outputs.with_postprocessing(cut, min_pixels, slice_score)
        for threshold in (0.0, 0.3, 0.45, 0.7, 0.8, 0.85, 1.0):
            by_masks = [metrics.dice(r.masks(threshold), t) for r, t in zip(results, outputs.truths, strict=True)]
            assert counts.dice_per_volume(cut, min_pixels, threshold).tolist() == by_masks
            decisions = np.concatenate([r.decisions(threshold) for r in results])
            assert counts.decisions(cut, min_pixels, threshold).tolist() == decisions.tolist()


def test_the_rule_chooses_by_hand_and_the_same_from_outputs_or_their_counts():
    outputs = _outputs()
    chosen_on = {"split": "val", "n_patients": 2, "n_slices": 5}
    from_outputs = choose_operating_point(outputs, 1.0, chosen_on, slice_score="classifier")
    counts = CountedOutputs.from_outputs(outputs, "classifier")
    assert choose_operating_point(counts, 1.0, chosen_on, slice_score="classifier") == from_outputs
    # Sensitivity 1.0: the lowest tumor score, 0.3. Removing components under 10 pixels drops the false blob and
    # keeps every tumor; 25 ties with it and every cut from 0.3 to 0.5 ties too: the least change wins.
    assert (from_outputs["threshold"], from_outputs["mask_threshold"], from_outputs["min_component_pixels"]) == (
        0.3, 0.5, 10)
    assert from_outputs["cascade_on_that_split"]["dice_per_volume_mean"] == pytest.approx((2 * 61 / 127 + 1) / 2)
    with pytest.raises(DataError, match="counted with the 'classifier' slice score"):
        choose_operating_point(counts, 1.0, chosen_on, slice_score="classifier+segmenter")


def test_counts_survive_a_report_as_json_and_pool_in_order():
    outputs = _outputs()
    counts = CountedOutputs.from_outputs(outputs, "classifier")
    report = {"slice_score": "classifier", RECORD_KEY: counts.to_record(),
              "per_slice": {"patient_id": counts.patient_ids.tolist(), "slice": counts.slice_numbers.tolist(),
                            "has_tumor": counts.labels.tolist(), "probability": counts.scores.tolist()}}
    back = CountedOutputs.from_report(json.loads(json.dumps(report)))
    for name in ("patient_ids", "slice_numbers", "labels", "scores", "truth_pixels", "predicted_pixels",
                 "overlap_pixels"):
        assert np.array_equal(getattr(back, name), getattr(counts, name)), name
    assert back.grid == counts.grid and back.slice_score == "classifier"

    renamed = CountedOutputs.from_outputs(ValidationOutputs(["C", "D"], outputs.truths, outputs.results), "classifier")
    pooled = CountedOutputs.concatenate([renamed, counts])
    assert pooled.patients == ["C", "D", "A", "B"] and len(pooled) == 10
    assert pooled.dice_per_volume(0.5, 0, 0.3).tolist() == 2 * counts.dice_per_volume(0.5, 0, 0.3).tolist()
    with pytest.raises(DataError, match="more than one of the parts"):
        CountedOutputs.concatenate([back, counts])
    with pytest.raises(DataError, match="different grids or slice scores"):
        CountedOutputs.concatenate([counts, CountedOutputs.from_outputs(_outputs(), "classifier", [(0.5, 0)])])
    with pytest.raises(DataError, match="no per_slice_pixel_counts"):
        CountedOutputs.from_report({"per_slice": report["per_slice"], "slice_score": "classifier"})
    with pytest.raises(DataError, match="not on the counted grid"):
        counts.dice_per_volume(0.45, 0, 0.3)
    with pytest.raises(DataError, match="do not line up"):
        CountedOutputs.from_report({**report, "per_slice": {k: v[:-1] for k, v in report["per_slice"].items()}})


def test_counts_that_cannot_be_one_patients_slices_or_their_labels_are_refused():
    outputs = _outputs()
    counts = CountedOutputs.from_outputs(outputs, "classifier")
    split = counts.patient_ids.copy()
    split[1] = "B"  # A, B, A, B, B: A's slices no longer together
    with pytest.raises(DataError, match="split among other patients"):
        CountedOutputs(split, counts.slice_numbers, counts.labels, counts.scores, "classifier", counts.truth_pixels,
                       counts.grid, counts.predicted_pixels, counts.overlap_pixels)
    with pytest.raises(DataError, match="disagree with the slices' tumor labels"):
        CountedOutputs(counts.patient_ids, counts.slice_numbers, ~counts.labels, counts.scores, "classifier",
                       counts.truth_pixels, counts.grid, counts.predicted_pixels, counts.overlap_pixels)
    # Truth masks given as 0/255 count their pixels, not 255 per pixel.
    as_bytes = ValidationOutputs(outputs.patient_ids, [t.astype(np.uint8) * 255 for t in outputs.truths],
                                 outputs.results)
    assert CountedOutputs.from_outputs(as_bytes, "classifier").truth_pixels.tolist() == [36, 0, 25, 16, 0]
