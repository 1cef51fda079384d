"""The segmenter's training losses by name, and what focal Tversky takes its index over.

Kept apart from ``brainseg.core.losses`` because that module imports Keras: the command line offers these as
choices, and checks configs by them, without paying for Keras at start-up.
"""

from __future__ import annotations

SEGMENTATION_LOSSES = ("focal_tversky", "dice_bce", "binary_crossentropy")
TVERSKY_OVER = ("batch", "slice")
