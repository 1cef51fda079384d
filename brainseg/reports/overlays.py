"""Compositing MRI slices with masks for review: channel views, filled or contour overlays, difference maps."""

from __future__ import annotations

import numpy as np
from skimage.segmentation import find_boundaries

CHANNEL_VIEWS = {"FLAIR": 1, "pre-contrast": 0, "post-contrast": 2, "RGB composite": None}

# Ground truth red and prediction green (the convention reviewers expect); the difference view uses a
# palette whose three classes stay distinct for the common colour-vision deficiencies.
TRUTH_COLOR = (230, 40, 40)
PREDICTION_COLOR = (40, 200, 70)
# A reviewer's own (corrected) mask: neither the AI's green nor the truth's red, nor a difference-view colour,
# so that each colour means one thing on a page that shows several of these views.
CORRECTION_COLOR = (0, 230, 255)  # cyan
DIFFERENCE_COLORS = {
    "true positive": (255, 215, 0),  # found tumor: yellow
    "false positive": (0, 150, 255),  # drawn where there is none: blue
    "false negative": (255, 0, 200),  # missed tumor: magenta
}


def channel_view(image: np.ndarray, view: str) -> np.ndarray:
    """An (H, W, 3) uint8 slice shown as one sequence in gray, or the three as an RGB composite."""
    if view not in CHANNEL_VIEWS:
        raise ValueError(f"unknown view {view!r}; choose one of {list(CHANNEL_VIEWS)}")
    channel = CHANNEL_VIEWS[view]
    if channel is None:
        return image.copy()
    return np.repeat(image[..., channel : channel + 1], 3, axis=2)


def _region(mask: np.ndarray, style: str) -> np.ndarray:
    if style == "filled":
        return mask.astype(bool)
    if style == "contour":
        return find_boundaries(mask.astype(bool), mode="inner")
    raise ValueError(f"unknown style {style!r}; choose 'filled' or 'contour'")


def paint(base: np.ndarray, mask: np.ndarray, color: tuple[int, int, int], opacity: float,
          style: str = "filled") -> np.ndarray:
    """Blend ``color`` into ``base`` (H, W, 3) uint8 where ``mask``; contours are drawn fully opaque."""
    region = _region(mask, style)
    alpha = 1.0 if style == "contour" else float(np.clip(opacity, 0.0, 1.0))
    out = base.astype(np.float32)
    out[region] = (1 - alpha) * out[region] + alpha * np.asarray(color, np.float32)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def overlay(base: np.ndarray, truth: np.ndarray | None, prediction: np.ndarray | None, opacity: float = 0.4,
            style: str = "filled") -> np.ndarray:
    """Ground truth (red) and/or prediction (green) superimposed on one image."""
    out = base
    if truth is not None:
        out = paint(out, truth, TRUTH_COLOR, opacity, style)
    if prediction is not None:
        out = paint(out, prediction, PREDICTION_COLOR, opacity, style)
    return out


def difference_classes(prediction: np.ndarray, truth: np.ndarray) -> dict[str, np.ndarray]:
    prediction, truth = prediction.astype(bool), truth.astype(bool)
    return {
        "true positive": prediction & truth,
        "false positive": prediction & ~truth,
        "false negative": ~prediction & truth,
    }


def difference_view(base: np.ndarray, prediction: np.ndarray, truth: np.ndarray, opacity: float = 0.6,
                    style: str = "filled") -> np.ndarray:
    """True-positive, false-positive and false-negative pixels each in their own colour."""
    out = base
    for name, region in difference_classes(prediction, truth).items():
        out = paint(out, region, DIFFERENCE_COLORS[name], opacity, style)
    return out


def legend_html(entries: dict[str, tuple[int, int, int]]) -> str:
    """A one-line HTML legend of coloured squares."""
    items = [
        f'<span style="display:inline-block;width:0.9em;height:0.9em;background:rgb{color};'
        f'margin:0 0.3em 0 0.9em;vertical-align:middle;border:1px solid #444"></span>{name}'
        for name, color in entries.items()
    ]
    return "".join(items)


def heatmap_overlay(base: np.ndarray, heat: np.ndarray, opacity: float = 0.5, colormap: str = "inferno",
                    scale: float | None = None) -> np.ndarray:
    """Blend a [0, 1] (or [0, ``scale``]) heat map over ``base``; pixels at zero heat stay untouched."""
    from matplotlib import colormaps

    values = np.clip(heat / (scale if scale else max(float(heat.max()), 1e-6)), 0.0, 1.0)
    colors = colormaps[colormap](values)[..., :3] * 255.0
    alpha = (opacity * values)[..., None]
    return np.clip(base * (1 - alpha) + colors * alpha + 0.5, 0, 255).astype(np.uint8)
