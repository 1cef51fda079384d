import numpy as np
import pytest

from brainseg.core.losses import focal_tversky_loss, soft_dice, tversky_index, tversky_loss

# 1-D "images": truth has 2 tumor pixels; prediction soft values.
TRUTH = np.array([1, 1, 0, 0], np.float32)
PRED = np.array([1.0, 0.5, 0.5, 0.0], np.float32)
# TP = 1 + 0.5 = 1.5; FN = 0 + 0.5 = 0.5; FP = 0.5
# TI(alpha=0.7) = 1.5 / (1.5 + 0.35 + 0.15) = 0.75


def test_tversky_index_by_hand():
    assert float(tversky_index(TRUTH, PRED)) == pytest.approx(0.75, abs=1e-5)


def test_tversky_weighs_misses_more_than_false_alarms():
    miss = np.array([1, 0, 0, 0], np.float32)  # one FN
    false_alarm = np.array([1, 1, 1, 0], np.float32)  # one FP
    assert float(tversky_index(TRUTH, miss)) < float(tversky_index(TRUTH, false_alarm))


def test_tversky_loss_and_focal_tversky_by_hand():
    assert float(tversky_loss(TRUTH, PRED)) == pytest.approx(0.25, abs=1e-5)
    assert float(focal_tversky_loss(TRUTH, PRED)) == pytest.approx(0.25**0.75, abs=1e-5)


def test_perfect_prediction_has_zero_loss_and_soft_dice_is_dice():
    assert float(focal_tversky_loss(TRUTH, TRUTH)) == pytest.approx(0.0, abs=1e-6)
    # Dice = 2*1.5 / (2*1.5 + 0.5 + 0.5) = 0.75 for alpha = 0.5 too
    assert float(soft_dice(TRUTH, PRED)) == pytest.approx(3.0 / 4.0, abs=1e-5)


def test_losses_accept_image_batches():
    truth = np.zeros((2, 4, 4, 1), np.float32)
    truth[0, :2, :2] = 1
    assert float(focal_tversky_loss(truth, truth)) == pytest.approx(0.0, abs=1e-6)
    assert float(focal_tversky_loss(truth, 1 - truth)) == pytest.approx(1.0, abs=1e-4)


def test_focal_tversky_pushes_soft_targets_to_zero_or_one():
    """Why soft labels alone change little under the shipped loss (models/ablation_decision.md): with
    alpha + beta = 1, d(TI)/d(p_i) has the sign of (y_i - beta * TI), so gradient descent raises a pixel whose
    covered fraction exceeds beta * TI towards 1 and lowers the others towards 0, instead of learning y_i."""
    import tensorflow as tf

    from brainseg.core.losses import FocalTverskyLoss

    soft_truth = tf.constant([1.0, 1.0, 0.5, 0.25, 0.0])
    pred = tf.Variable([0.9, 0.9, 0.5, 0.25, 0.1])
    with tf.GradientTape() as tape:
        loss = FocalTverskyLoss(alpha=0.5)(soft_truth, pred)
    step = -tape.gradient(loss, pred).numpy()  # where gradient descent moves each pixel
    index = float(tversky_index(soft_truth, pred, alpha=0.5))
    assert 0.5 < index < 1  # so beta * TI lies between 0.25 and 0.5
    assert (step[:3] > 0).all()  # fully and half covered pixels: pushed up, the half one past its target 0.5
    assert (step[3:] < 0).all()  # a quarter covered pixel sitting at its target 0.25: pushed down


def test_deep_supervision_weights_halve_per_level_and_sum_to_one():
    from brainseg.core.losses import side_map_weights

    assert side_map_weights(0) == [1.0]
    assert side_map_weights(2) == pytest.approx([4 / 7, 2 / 7, 1 / 7])


def test_deep_supervision_loss_weighs_each_map_against_the_same_mask():
    import keras

    from brainseg.core.losses import DeepSupervisionLoss, FocalTverskyLoss

    truth = TRUTH.reshape(1, 4, 1)
    # Main map PRED (plain Tversky loss 0.25 at alpha 0.7, above), side map perfect (loss 0), weights 2/3, 1/3.
    maps = np.stack([PRED, TRUTH], axis=-1)[None]
    loss = DeepSupervisionLoss(FocalTverskyLoss(alpha=0.7, gamma=1.0), levels=1)
    assert float(loss(truth, maps)) == pytest.approx(2 / 3 * 0.25, abs=1e-5)
    swapped = maps[..., ::-1]  # the error now sits in the side map, which weighs half as much
    assert float(loss(truth, swapped)) == pytest.approx(1 / 3 * 0.25, abs=1e-5)
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert float(restored(truth, swapped)) == pytest.approx(1 / 3 * 0.25, abs=1e-5)


def test_main_map_metric_reads_the_first_channel_under_its_own_name():
    from brainseg.core.losses import on_main_map

    metric = on_main_map(tversky_index)
    maps = np.stack([PRED, 1 - TRUTH], axis=-1)[None]
    assert metric.__name__ == "tversky_index"
    assert float(metric(TRUTH.reshape(1, 4, 1), maps)) == pytest.approx(0.75, abs=1e-5)


# Two 1-D slices, one index each (SLICE_SMOOTH = 1 pixel), alpha 0.7:
#   slice A = (TRUTH, PRED): TP 1.5, FN 0.5, FP 0.5 -> TI = 2.5 / (1.5 + 0.35 + 0.15 + 1) = 5/6
#   slice B, tumor-free, one pixel at 0.5: TP 0, FN 0, FP 0.5 -> TI = 1 / (0.3 * 0.5 + 1) = 1 / 1.15
#   over the batch instead (SMOOTH ~ 0): TP 1.5, FN 0.5, FP 1.0 -> TI = 1.5 / (1.5 + 0.35 + 0.3) = 1.5 / 2.15
TWO_TRUTHS = np.stack([TRUTH, np.zeros(4, np.float32)])
TWO_PREDS = np.stack([PRED, np.array([0.5, 0, 0, 0], np.float32)])


def test_tversky_per_slice_by_hand():
    from brainseg.core.losses import FocalTverskyLoss, tversky_index_per_slice

    np.testing.assert_allclose(tversky_index_per_slice(TWO_TRUTHS, TWO_PREDS), [5 / 6, 1 / 1.15], atol=1e-6)
    per_slice = FocalTverskyLoss(alpha=0.7, gamma=1.0, over="slice")
    assert float(per_slice(TWO_TRUTHS, TWO_PREDS)) == pytest.approx(((1 - 5 / 6) + (1 - 1 / 1.15)) / 2, abs=1e-6)
    over_batch = FocalTverskyLoss(alpha=0.7, gamma=1.0)
    assert float(over_batch(TWO_TRUTHS, TWO_PREDS)) == pytest.approx(1 - 1.5 / 2.15, abs=1e-6)
    assert float(FocalTverskyLoss(over="slice")(TWO_TRUTHS, TWO_TRUTHS)) == pytest.approx(0.0, abs=1e-4)


def test_per_slice_tversky_weighs_a_small_tumor_as_much_as_a_large_one():
    """Over the batch every pixel weighs the same, so a missed pixel of a one-pixel tumor is pushed as hard as
    one of an eight-pixel tumor; per slice the small tumor's miss costs its whole slice, and is pushed harder."""
    import tensorflow as tf

    from brainseg.core.losses import FocalTverskyLoss

    truth = np.zeros((2, 8), np.float32)
    truth[0, :] = 1  # large tumor: 8 pixels
    truth[1, 0] = 1  # small tumor: 1 pixel
    pred = np.where(truth > 0, 0.9, 0.0).astype(np.float32)
    pred[:, 0] = 0.5  # the first pixel of each tumor half missed

    def push_on_missed_pixels(over: str) -> np.ndarray:
        variable = tf.Variable(pred)
        with tf.GradientTape() as tape:
            loss = FocalTverskyLoss(alpha=0.5, gamma=1.0, over=over)(truth, variable)
        return -tape.gradient(loss, variable).numpy()[:, 0]  # how hard descent raises each missed pixel

    large, small = push_on_missed_pixels("batch")
    assert small == pytest.approx(large, rel=1e-5)
    large, small = push_on_missed_pixels("slice")
    assert small > 3 * large > 0


def test_focal_tversky_over_is_checked_and_serialized():
    import keras

    from brainseg.core.losses import FocalTverskyLoss, segmentation_loss

    with pytest.raises(ValueError, match="taken over one of"):
        FocalTverskyLoss(over="pixel")
    loss = segmentation_loss("focal_tversky", 0.7, 1.0, "slice")
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert restored.over == "slice"
    assert float(restored(TWO_TRUTHS, TWO_PREDS)) == pytest.approx(float(loss(TWO_TRUTHS, TWO_PREDS)), abs=1e-7)
    # An older saved config (no 'over') is the seed's index over the batch.
    config = {k: v for k, v in FocalTverskyLoss(alpha=0.7, gamma=1.0).get_config().items() if k != "over"}
    assert FocalTverskyLoss.from_config(config).over == "batch"
