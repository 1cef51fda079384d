"""Segmentation losses: Tversky index, Tversky loss and focal Tversky (Abraham & Khan, ISBI 2019).

    TI  = (TP + s) / (TP + alpha * FN + (1 - alpha) * FP + s)
    FTL = (1 - TI) ** gamma

with soft counts TP = sum(y * p), FN = sum(y * (1 - p)), FP = sum((1 - y) * p) taken over the whole
batch, as in the seed (a per-batch index stays defined when a batch holds tumor-free slices). Taken
``over="slice"`` instead, each slice has its own index and the loss is their mean, so a small tumor weighs
as much as a large one (over the batch, each pixel weighs the same and large tumors dominate).
alpha = 0.7 weighs misses above false alarms; gamma = 0.75 (= 1 / (4/3) in the paper's notation)
focuses training on the harder, less-overlapping examples.
"""

from __future__ import annotations

import keras
from keras import ops

from brainseg.core.loss_names import SEGMENTATION_LOSSES, TVERSKY_OVER

ALPHA = 0.7
GAMMA = 0.75
SMOOTH = 1e-6
# Per-slice indices smooth by one pixel: a tumor-free slice's index is then 1 / (beta * FP + 1), whose gradient
# stays alive; with SMOOTH any false alarm would pin it near 0, the loss at 1 and its gradient at 0.
SLICE_SMOOTH = 1.0


def _tversky_of_rows(y_true, y_pred, alpha: float, smooth: float):
    """The index of each row of two (rows, pixels) arrays, from that row's soft counts."""
    y_true, y_pred = ops.cast(y_true, "float32"), ops.cast(y_pred, "float32")
    true_pos = ops.sum(y_true * y_pred, axis=1)
    false_neg = ops.sum(y_true * (1.0 - y_pred), axis=1)
    false_pos = ops.sum((1.0 - y_true) * y_pred, axis=1)
    return (true_pos + smooth) / (true_pos + alpha * false_neg + (1.0 - alpha) * false_pos + smooth)


@keras.saving.register_keras_serializable(package="brainseg")
def tversky_index(y_true, y_pred, alpha: float = ALPHA, smooth: float = SMOOTH):
    """One Tversky index over the whole batch (all its pixels as one row)."""
    rows = _tversky_of_rows(ops.reshape(y_true, [1, -1]), ops.reshape(y_pred, [1, -1]), alpha, smooth)
    return rows[0]


def tversky_index_per_slice(y_true, y_pred, alpha: float = ALPHA, smooth: float = SLICE_SMOOTH):
    """One Tversky index per slice (the first axis), from that slice's own soft counts."""
    batch = ops.shape(y_pred)[0]
    return _tversky_of_rows(ops.reshape(y_true, [batch, -1]), ops.reshape(y_pred, [batch, -1]), alpha, smooth)


@keras.saving.register_keras_serializable(package="brainseg")
def tversky_loss(y_true, y_pred):
    return 1.0 - tversky_index(y_true, y_pred)


@keras.saving.register_keras_serializable(package="brainseg")
def focal_tversky_loss(y_true, y_pred, gamma: float = GAMMA):
    return ops.power(1.0 - tversky_index(y_true, y_pred), gamma)


@keras.saving.register_keras_serializable(package="brainseg")
def soft_dice(y_true, y_pred, smooth: float = SMOOTH):
    """Batch soft Dice, a training-time progress metric (evaluation uses brainseg.core.metrics)."""
    return tversky_index(y_true, y_pred, alpha=0.5, smooth=smooth)


@keras.saving.register_keras_serializable(package="brainseg")
class FocalTverskyLoss(keras.losses.Loss):
    """Focal Tversky with a chosen ``alpha`` (weight of misses) and ``gamma``; alpha 0.5 is a focal soft Dice.

    ``over``: 'batch' (the seed's) takes one index over the whole batch; 'slice' one per slice, returned per
    slice for Keras to average.
    """

    def __init__(self, alpha: float = ALPHA, gamma: float = GAMMA, over: str = "batch", name: str = "focal_tversky",
                 **kwargs):
        super().__init__(name=name, **kwargs)
        if over not in TVERSKY_OVER:
            raise ValueError(f"focal Tversky is taken over one of {TVERSKY_OVER}, not {over!r}")
        self.alpha, self.gamma, self.over = float(alpha), float(gamma), over

    def call(self, y_true, y_pred):
        if self.over == "batch":
            return ops.power(1.0 - tversky_index(y_true, y_pred, alpha=self.alpha), self.gamma)
        # The floor keeps the gradient of x ** gamma (gamma < 1: infinite at 0) finite on a perfect slice.
        misfit = ops.maximum(1.0 - tversky_index_per_slice(y_true, y_pred, alpha=self.alpha), 1e-6)
        return ops.power(misfit, self.gamma)

    def get_config(self) -> dict:
        return {**super().get_config(), "alpha": self.alpha, "gamma": self.gamma, "over": self.over}


@keras.saving.register_keras_serializable(package="brainseg")
class DiceBCELoss(keras.losses.Loss):
    """Batch soft-Dice loss + pixel binary cross-entropy, equally weighted (the nnU-Net default's 2-D analogue).

    Cross-entropy scores every pixel on its own, so extra pixels cost as much as missed ones; the Dice
    term keeps small tumors from being drowned by the background.
    """

    def __init__(self, name: str = "dice_bce", **kwargs):
        super().__init__(name=name, **kwargs)

    def call(self, y_true, y_pred):
        y_true = ops.cast(y_true, "float32")
        y_pred = ops.clip(ops.cast(y_pred, "float32"), 1e-7, 1.0 - 1e-7)
        cross_entropy = -ops.mean(y_true * ops.log(y_pred) + (1.0 - y_true) * ops.log(1.0 - y_pred))
        return cross_entropy + 1.0 - tversky_index(y_true, y_pred, alpha=0.5)


def side_map_weights(levels: int) -> list[float]:
    """Deep supervision's weights, finest map first: halved per coarser level and summing to 1 (nnU-Net's)."""
    raw = [0.5**level for level in range(levels + 1)]
    return [w / sum(raw) for w in raw]


@keras.saving.register_keras_serializable(package="brainseg")
class DeepSupervisionLoss(keras.losses.Loss):
    """``base`` applied to each channel of a stack of maps (``networks.with_side_maps``), weighted by
    ``side_map_weights``: the main map and the coarser decoder stages' maps all answer to the same mask."""

    def __init__(self, base: keras.losses.Loss, levels: int, name: str = "deep_supervision", **kwargs):
        super().__init__(name=name, **kwargs)
        self.base, self.levels = base, int(levels)

    def call(self, y_true, y_pred):
        return sum(weight * self.base(y_true, y_pred[..., level:level + 1])
                   for level, weight in enumerate(side_map_weights(self.levels)))

    def get_config(self) -> dict:
        return {**super().get_config(), "base": keras.saving.serialize_keras_object(self.base),
                "levels": self.levels}

    @classmethod
    def from_config(cls, config: dict) -> DeepSupervisionLoss:
        return cls(**{**config, "base": keras.saving.deserialize_keras_object(config["base"])})


def on_main_map(metric):
    """``metric`` read on the first channel only (the main map of a deep-supervised stack), under its own name, so
    the training history's columns stay the ones a single-map run writes."""

    def main_map_metric(y_true, y_pred):
        return metric(y_true, y_pred[..., :1])

    main_map_metric.__name__ = metric.__name__
    return main_map_metric


def segmentation_loss(name: str, tversky_alpha: float = ALPHA, tversky_gamma: float = GAMMA,
                      tversky_over: str = "batch"):
    """The segmenter's training loss by config name, one of ``SEGMENTATION_LOSSES``."""
    if name == "focal_tversky":
        return FocalTverskyLoss(tversky_alpha, tversky_gamma, tversky_over)
    if name == "dice_bce":
        return DiceBCELoss()
    if name == "binary_crossentropy":
        return "binary_crossentropy"
    raise ValueError(f"unknown segmentation loss {name!r}: one of {SEGMENTATION_LOSSES}")
