"""Segmentation losses: Tversky index, Tversky loss and focal Tversky (Abraham & Khan, ISBI 2019).

    TI  = (TP + s) / (TP + alpha * FN + (1 - alpha) * FP + s)
    FTL = (1 - TI) ** gamma

with soft counts TP = sum(y * p), FN = sum(y * (1 - p)), FP = sum((1 - y) * p) taken over the whole
batch, as in the seed (a per-batch index stays defined when a batch holds tumor-free slices).
alpha = 0.7 weighs misses above false alarms; gamma = 0.75 (= 1 / (4/3) in the paper's notation)
focuses training on the harder, less-overlapping examples.
"""

from __future__ import annotations

import keras
from keras import ops

ALPHA = 0.7
GAMMA = 0.75
SMOOTH = 1e-6


@keras.saving.register_keras_serializable(package="brainseg")
def tversky_index(y_true, y_pred, alpha: float = ALPHA, smooth: float = SMOOTH):
    y_true = ops.reshape(ops.cast(y_true, "float32"), [-1])
    y_pred = ops.reshape(ops.cast(y_pred, "float32"), [-1])
    true_pos = ops.sum(y_true * y_pred)
    false_neg = ops.sum(y_true * (1.0 - y_pred))
    false_pos = ops.sum((1.0 - y_true) * y_pred)
    return (true_pos + smooth) / (true_pos + alpha * false_neg + (1.0 - alpha) * false_pos + smooth)


@keras.saving.register_keras_serializable(package="brainseg")
def tversky_loss(y_true, y_pred):
    return 1.0 - tversky_index(y_true, y_pred)


@keras.saving.register_keras_serializable(package="brainseg")
def focal_tversky_loss(y_true, y_pred, gamma: float = GAMMA):
    return ops.power(1.0 - tversky_index(y_true, y_pred), gamma)


@keras.saving.register_keras_serializable(package="brainseg")
def soft_dice(y_true, y_pred, smooth: float = SMOOTH):
    """Batch soft Dice, a training-time progress metric (evaluation uses brainseg.metrics)."""
    return tversky_index(y_true, y_pred, alpha=0.5, smooth=smooth)
