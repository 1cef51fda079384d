"""Patient-level train/validation/test split, stratified by institution and tumor burden.

Slices of one patient are strongly correlated, so a slice-level split leaks and inflates accuracy.
The split is made once, written to a versioned JSON file (``models/split.json``) and read back by
training and evaluation.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from brainseg.errors import DataError

SPLIT_VERSION = 1
PARTS = ("train", "val", "test")
# A final fit trains on these two parts together; nothing is left to choose on but the cross-validation's
# out-of-fold outputs, recorded under this name wherever a choice says what it was made on.
FINAL_FIT_PARTS = "train+val"
OUT_OF_FOLD = "cross-validation out-of-fold"


def check_fractions(fractions: tuple[float, ...]) -> None:
    """Raise DataError (a ValueError) unless there are three positive fractions summing to 1."""
    if len(fractions) != len(PARTS) or not np.isclose(sum(fractions), 1.0) or min(fractions) <= 0:
        raise DataError(f"fractions must be {len(PARTS)} positive numbers (train, val, test) summing to 1, "
                        f"got {tuple(fractions)}")


def make_split(
    patients: pd.DataFrame, fractions: tuple[float, float, float] = (0.7, 0.15, 0.15), seed: int = 42
) -> dict[str, list[str]]:
    """Assign each patient to train/val/test.

    Patients are ordered by institution, then by tumor burden (total tumor pixels); walking that order
    in blocks of ``round(1 / min(fractions))`` patients, each block's members are shuffled (seeded) and
    dealt out in proportion to ``fractions``. Every part thus sees every institution and the whole
    range of tumor sizes.
    """
    check_fractions(fractions)
    rng = np.random.default_rng(seed)
    ordered = patients.sort_values(["institution", "tumor_pixels", "patient_id"])["patient_id"].tolist()
    block = max(len(PARTS), round(1 / min(fractions)))
    counts = np.floor(np.asarray(fractions) * block).astype(int)
    counts[0] += block - counts.sum()
    pattern = np.repeat(np.arange(len(PARTS)), counts)
    assignment: dict[str, list[str]] = {part: [] for part in PARTS}
    for start in range(0, len(ordered), block):
        members = ordered[start : start + block]
        labels = rng.permutation(pattern)[: len(members)]
        for patient, label in zip(members, labels, strict=True):
            assignment[PARTS[label]].append(patient)
    return {part: sorted(ids) for part, ids in assignment.items()}


def check_disjoint(split: dict[str, list[str]]) -> None:
    """Raise DataError if any patient is listed in two parts (or twice in one)."""
    seen: dict[str, str] = {}
    for part in PARTS:
        for patient in split.get(part, []):
            if patient in seen:
                raise DataError(f"patient {patient} is in both '{seen[patient]}' and '{part}'")
            seen[patient] = part


def save_split(split: dict[str, list[str]], path: str | Path, seed: int, fractions: tuple[float, ...]) -> None:
    check_disjoint(split)
    document = {
        "version": SPLIT_VERSION,
        "unit": "patient",
        "method": "sorted by institution then tumor burden; seeded proportional deal within blocks",
        "seed": seed,
        "fractions": dict(zip(PARTS, fractions, strict=True)),
        **{part: split[part] for part in PARTS},
    }
    Path(path).write_text(json.dumps(document, indent=2) + "\n")


def load_split(path: str | Path) -> dict[str, list[str]]:
    """Read a split file; raises DataError if missing, malformed or overlapping."""
    path = Path(path)
    try:
        document = json.loads(path.read_text())
    except FileNotFoundError as err:
        raise DataError(f"{path}: split file not found") from err
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: split file is not valid JSON ({err})") from err
    if not all(isinstance(document.get(part), list) for part in PARTS):
        raise DataError(f"{path}: split file needs lists 'train', 'val' and 'test'")
    split = {part: [str(p) for p in document[part]] for part in PARTS}
    check_disjoint(split)
    return split


def select_part(manifest: pd.DataFrame, split: dict[str, list[str]] | None, part: str) -> pd.DataFrame:
    """Rows of ``manifest`` whose patient is in ``part`` ('all' keeps every row; 'train+val' joins parts)."""
    if part == "all":
        return manifest
    if split is None:
        raise DataError(f"split '{part}' asked for, but no split file was given")
    names = part.split("+")
    unknown = [name for name in names if name not in PARTS]
    if unknown:
        raise DataError(f"unknown split part '{unknown[0]}' (choose all, {', '.join(PARTS)}, or parts joined by +)")
    selected = manifest[manifest["patient_id"].isin([patient for name in names for patient in split[name]])]
    if selected.empty:
        raise DataError(f"no patient of the '{part}' split is in this folder")
    return selected.reset_index(drop=True)


def trained_on(train_config: dict) -> list[str]:
    """The split parts a model trained on, from its sidecar's ``train_config`` (older sidecars: train only)."""
    return str(train_config.get("fit_on", "train")).split("+")


def is_final_fit(train_config: dict) -> bool:
    """Whether a sidecar's ``train_config`` is a final fit on train + val."""
    return train_config.get("fit_on", "train") == FINAL_FIT_PARTS
