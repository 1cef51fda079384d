"""The segmenter's training losses by name, and what focal Tversky takes its index over.

Kept apart from ``brainseg.core.losses`` because that module imports Keras: the command line offers these as
choices, and checks configs by them, without paying for Keras at start-up.
"""

from __future__ import annotations

from typing import Literal, get_args

# The type annotates the config field; the tuple, derived from it, gives the command line's choices and the
# checks, so each name is spelt once.
SegmentationLoss = Literal["focal_tversky", "dice_bce", "binary_crossentropy"]
TverskyOver = Literal["batch", "slice"]

SEGMENTATION_LOSSES: tuple[str, ...] = get_args(SegmentationLoss)
TVERSKY_OVER: tuple[str, ...] = get_args(TverskyOver)
