"""How much Dice the models' input size costs before any model is involved: the resolution ceiling.

The segmenter learns from masks shrunk to its input size (``resize_masks``, as training does) and its map is
brought back to the slice's size and cut (``upsample_maps``, as inference does). A perfect segmenter at that
size reproduces the shrunk mask exactly, so the expert mask's round trip through the two steps is the best
mask it could ever return, and its Dice per volume against the expert mask is the ceiling the input size sets.
With the shipped small-component removal applied as well, the ceiling also shows what that post-processing
costs a perfect segmenter (it deletes real tumor fragments under its size). Trained on soft labels (each shrunk
pixel's covered fraction instead of "at least half covered"), a perfect segmenter's map brought back and cut at
0.5 redraws the expert's edges instead of moving them outward: the ceiling measures that candidate too.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from brainseg.core.metrics import dice, dice_loss_by_tumor_size, dice_loss_parts, mean_dice_loss_parts
from brainseg.core.preprocess import resize_masks, upsample_maps
from brainseg.inference.cascade import remove_small_components


def round_trip(truth: np.ndarray, size: int, mask_threshold: float, min_component_pixels: int = 0,
               soft: bool = False) -> np.ndarray:
    """(N, H, W) expert masks -> what a perfect segmenter at ``size`` returns at (H, W): shrunk as training
    does (``soft``: trained on covered fractions instead), brought back and cut as inference does, then small
    components removed as the cascade does."""
    truth = np.asarray(truth, bool)
    if truth.ndim != 3:
        raise ValueError(f"expected (N, H, W) masks, got shape {truth.shape}")
    maps = upsample_maps(resize_masks(truth, size, soft=soft), *truth.shape[1:])
    return remove_small_components(maps >= mask_threshold, min_component_pixels)


def resolution_ceiling(patients: Iterable[tuple[str, np.ndarray]], sizes: Iterable[int], mask_threshold: float,
                       min_component_pixels: int) -> dict:
    """The ceiling per input size, over patients given as (patient id, (N, H, W) expert masks).

    Patients without tumor are counted and left out (their round trip is empty on empty: Dice 1 by convention,
    which says nothing about resolution). For each size, two ceilings: the round trip alone, and with the
    small-component removal of ``min_component_pixels``; and both again for a segmenter trained on the covered
    fraction of each shrunk pixel (soft labels: a candidate, not what training does now). Each with its mean
    Dice per volume, its minimum, the parts of its loss (``dice_loss_parts``) and the same by thirds of tumor
    size. Keys: "128", "128+removal", "128 soft", "128 soft+removal", ...
    """
    sizes = sorted(set(int(s) for s in sizes))
    if not sizes or min(sizes) < 1:
        raise ValueError(f"input sizes must be positive, got {sizes}")
    variants = {"": (0, False), "+removal": (min_component_pixels, False),
                " soft": (0, True), " soft+removal": (min_component_pixels, True)}
    rows: dict[str, list[dict]] = {f"{s}{tag}": [] for s in sizes for tag in variants}
    without_tumor = 0
    for patient_id, truth in patients:
        truth = np.asarray(truth, bool)
        if not truth.any():
            without_tumor += 1
            continue
        for size in sizes:
            for tag, (min_pixels, soft) in variants.items():
                pred = round_trip(truth, size, mask_threshold, min_pixels, soft)
                rows[f"{size}{tag}"].append({"patient_id": patient_id, "tumor_pixels": int(truth.sum()),
                                             "dice": dice(pred, truth), **dice_loss_parts(pred, truth)})
    if not rows[f"{sizes[0]}"]:
        raise ValueError("no patient with tumor in truth: the ceiling is undefined")

    def summary(per_patient: list[dict]) -> dict:
        values = np.array([row["dice"] for row in per_patient])
        worst = per_patient[int(values.argmin())]
        return {"dice_per_volume_mean": float(values.mean()), "dice_per_volume_min": float(values.min()),
                "worst_patient": worst["patient_id"],
                "dice_loss_parts": mean_dice_loss_parts(per_patient),
                "by_tumor_size": dice_loss_by_tumor_size(per_patient, dice_key="dice"),
                "per_patient": {row["patient_id"]: row["dice"] for row in per_patient}}

    return {"definition": "Dice per volume of the expert mask against its round trip: shrunk to the input size "
                          "as training does (area interpolation, a pixel kept if at least half covered), brought back "
                          "bilinearly and cut at the shipped mask cut as inference does; '+removal' also removes "
                          "2-D components under the shipped size; 'soft': shrunk to the covered fraction instead "
                          "(soft labels). Patients without tumor are left out.",
            "mask_threshold": float(mask_threshold), "min_component_pixels": int(min_component_pixels),
            "n_patients": len(rows[f"{sizes[0]}"]), "n_patients_without_tumor": without_tumor,
            "ceilings": {key: summary(per_patient) for key, per_patient in rows.items()}}
