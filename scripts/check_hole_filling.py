"""Would filling holes in (or closing) the cascade's masks raise the out-of-fold Dice? A check, not a variant.

Runs each CPU cross-validation fold's models (runs/crossval-cpu/fold-F/models, at the fold's own operating
point) on its held-out patients and prints the mean cascade Dice per volume as shipped, with each slice's mask
holes filled, and closed with a 5 x 5 square (models/ablation_decision.md, thirteenth session).

    .venv/bin/python scripts/check_hole_filling.py [--data data/kaggle_3m] [--folds runs/crossval-cpu]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage
from tqdm import tqdm

from brainseg.core.data import load_dataset, load_slices
from brainseg.core.metrics import dice
from brainseg.inference.cascade import Cascade


def per_patient_dice(data: Path, folds_dir: Path) -> pd.DataFrame:
    manifest, _ = load_dataset(data)
    square = np.ones((5, 5), bool)
    rows = []
    for fold_dir in sorted(folds_dir.glob("fold-*")):
        cascade = Cascade.from_dir(fold_dir / "models")
        held_out = json.loads((fold_dir / "split.json").read_text())["test"]
        for patient in tqdm(held_out, desc=fold_dir.name, unit="patient"):
            slices = manifest[manifest.patient_id == patient].sort_values("slice")
            images, truth = load_slices(slices)
            masks = cascade.predict(images, slices["slice"].to_numpy()).masks(cascade.default_threshold)
            filled = np.stack([ndimage.binary_fill_holes(m) for m in masks])
            closed = np.stack([ndimage.binary_closing(m, structure=square) | m for m in masks])
            rows.append({"fold": fold_dir.name, "patient": patient, "as shipped": dice(masks, truth),
                         "holes filled": dice(filled, truth), "closed 5x5": dice(closed, truth)})
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("data/kaggle_3m"))
    parser.add_argument("--folds", type=Path, default=Path("runs/crossval-cpu"))
    args = parser.parse_args()
    table = per_patient_dice(args.data, args.folds)
    print(f"{len(table)} patients out of fold; cascade Dice per volume, mean:")
    print(table[["as shipped", "holes filled", "closed 5x5"]].mean().round(4).to_string())
    change = table["holes filled"] - table["as shipped"]
    print(f"holes filled minus as shipped: median {change.median():+.4f}, min {change.min():+.4f}, "
          f"max {change.max():+.4f}")


if __name__ == "__main__":
    main()
