"""Test-time augmentation (TTA) of the segmenter: a per-pixel uncertainty map and a per-slice score.

The segmenter sees each slice several times (as is, mirrored left-right, and shifted by a few pixels
up/down/left/right); each output is mapped back to the original frame. The per-pixel standard
deviation across those views is the uncertainty map. The per-slice score is its mean over the pixels
that any view calls tumor (0 when none does), so large, confident tumors are not penalised for size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from brainseg.core.preprocess import upsample_maps
from brainseg.inference.cascade import MASK_THRESHOLD, LoadedModel, ModelInputs

SHIFT_FRACTION = 1 / 64  # 4 px on a 256-pixel slice


@dataclass
class TTAResult:
    mean: np.ndarray  # (N, H, W) mean probability over the views
    std: np.ndarray  # (N, H, W) per-pixel standard deviation: the uncertainty map
    score: np.ndarray  # (N,) per-slice uncertainty score
    n_views: int


def _shift(batch: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """Translate (N, H, W, C) by (dy, dx) pixels, filling with zeros (background)."""
    out = np.zeros_like(batch)
    h, w = batch.shape[1:3]
    out[:, max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = batch[
        :, max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)]
    return out


def views(size: int) -> list[tuple[bool, int, int]]:
    """(mirror, dy, dx) of each view: identity, mirror, and four small shifts."""
    step = max(1, round(size * SHIFT_FRACTION))
    return [(False, 0, 0), (True, 0, 0), (False, step, 0), (False, -step, 0), (False, 0, step), (False, 0, -step)]


def tta_segment(segmenter: LoadedModel, images: np.ndarray, batch_size: int = 16,
                slice_numbers: np.ndarray | None = None) -> TTAResult:
    """TTA maps for (N, H, W, 3) uint8 slices at their own size (``slice_numbers``: see ``Cascade.predict_native``;
    a view moves a slice and its neighbours' channels together)."""
    n, height, width = images.shape[:3]
    resized = ModelInputs(segmenter.spec, images, slice_numbers).batch(0, n)
    outputs = []
    for mirror, dy, dx in views(segmenter.spec.size):
        view = _shift(resized[:, :, ::-1] if mirror else resized, dy, dx)
        maps = np.concatenate([segmenter.infer(np.ascontiguousarray(view[i : i + batch_size]))
                               for i in range(0, n, batch_size)])
        maps = _shift(maps, -dy, -dx)
        outputs.append(maps[:, :, ::-1] if mirror else maps)
    stack = np.stack([upsample_maps(m, height, width) for m in outputs])
    mean, std = stack.mean(axis=0), stack.std(axis=0)
    region = (stack >= MASK_THRESHOLD).any(axis=0)
    score = np.array([float(s[r].mean()) if r.any() else 0.0 for s, r in zip(std, region, strict=True)])
    return TTAResult(mean, std, score, len(outputs))
