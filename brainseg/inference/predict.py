"""`brainseg predict`: masks and probabilities for a folder of slices, a patient folder, or files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from brainseg.core import metrics as metrics
from brainseg.errors import DataError
from brainseg.inference.cascade import Cascade
from brainseg.inference.uploads import ALLOWED_SUFFIXES, encode_mask_png, encode_mask_tiff, pair_uploads


def collect_inputs(paths: list[Path]) -> list[tuple[str, bytes]]:
    """(name, bytes) for each image file given, or inside each folder given (masks included)."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in ALLOWED_SUFFIXES)
            if not found:
                raise DataError(f"{path}: no .tif/.tiff/.png/.jpg files in this folder")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise DataError(f"{path}: no such file or folder")
    return [(p.name, p.read_bytes()) for p in files]


def _slice_order(name: str) -> tuple:
    """Numeric order for dataset names (<case>_<n>), text order otherwise."""
    stem = Path(name).stem
    tail = stem.rsplit("_", 1)[-1]
    return (stem.rsplit("_", 1)[0], int(tail), "") if tail.isdigit() else (stem, -1, stem)


def predict_files(cascade: Cascade, paths: list[Path], out_dir: Path, threshold: float) -> pd.DataFrame:
    """Write ``<name>_pred_mask.png`` / ``.tif`` per slice and ``predictions.csv``; returns the table."""
    slices, errors = pair_uploads(collect_inputs(paths))
    if not slices:
        reasons = "; ".join(f"{n}: {m}" for n, m in errors[:3])
        raise DataError(f"no usable slice among the inputs ({reasons})")
    slices.sort(key=lambda s: _slice_order(s.name))
    result = cascade.predict(np.stack([s.image for s in slices]))
    masks = result.masks(threshold)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for item, probability, mask in zip(slices, result.probabilities, masks, strict=True):
        stem = Path(item.name).stem
        (out_dir / f"{stem}_pred_mask.png").write_bytes(encode_mask_png(mask))
        (out_dir / f"{stem}_pred_mask.tif").write_bytes(encode_mask_tiff(mask))
        rows.append({
            "file": item.name,
            "tumor_probability": float(probability),
            "threshold": threshold,
            "tumor_called": bool(mask.any()),
            "predicted_tumor_pixels": int(mask.sum()),
            "true_tumor_pixels": None if item.mask is None else int(item.mask.sum()),
            "dice": None if item.mask is None else metrics.dice(mask, item.mask),
            "notes": "; ".join(item.notes),
        })
    table = pd.DataFrame(rows)
    table.to_csv(out_dir / "predictions.csv", index=False)
    if errors:
        pd.DataFrame(errors, columns=["file", "error"]).to_csv(out_dir / "refused.csv", index=False)
    return table
