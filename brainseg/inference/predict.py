"""Predictions on user files: the Upload page and `brainseg predict` share this path.

``predict_uploads`` decodes (name, bytes) pairs, runs the cascade once on every usable slice and
returns the slices, the refusals and the one results table (``brainseg.inference.results``).
``predict_files`` does the same for paths on disk and writes masks and ``predictions.csv``.
Masks shown in the app stay on the models' 256x256 grid; every mask that leaves the program (downloads,
files written) is on its upload's own grid (``returned_masks``), so it lies over the image in the user's viewer.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from brainseg.errors import DataError
from brainseg.inference.cascade import Cascade, CascadeResult
from brainseg.inference.results import slice_results
from brainseg.inference.uploads import (
    ALLOWED_SUFFIXES,
    SliceInput,
    encode_mask_png,
    encode_mask_tiff,
    mask_on_upload_grid,
    pair_uploads,
)


@dataclass
class UploadPrediction:
    """Usable slices (in slice order), refused files with their messages, the cascade's outputs and table."""

    slices: list[SliceInput]
    refused: list[tuple[str, str]]
    result: CascadeResult | None
    threshold: float

    @property
    def masks(self) -> np.ndarray:
        return self.result.masks(self.threshold)

    def returned_masks(self) -> list[np.ndarray]:
        """Each slice's mask on its uploaded grid (upright, as viewers show the upload): what files hold."""
        return [mask_on_upload_grid(mask, item) for item, mask in zip(self.slices, self.masks, strict=True)]

    def table(self) -> pd.DataFrame:
        return slice_results([s.name for s in self.slices], self.result, self.threshold,
                             truths=[s.mask for s in self.slices], notes=["; ".join(s.notes) for s in self.slices],
                             out_of_distribution=[s.out_of_distribution for s in self.slices])

    def archive(self) -> bytes:
        """A zip of every predicted mask (PNG and TIFF, on its upload's grid) and the results table."""
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as bundle:
            for item, mask in zip(self.slices, self.returned_masks(), strict=True):
                stem = mask_stem(item.name)
                bundle.writestr(f"{stem}.png", encode_mask_png(mask))
                bundle.writestr(f"{stem}.tif", encode_mask_tiff(mask))
            bundle.writestr("predictions.csv", self.table().to_csv(index=False))
        return buffer.getvalue()


def mask_stem(name: str) -> str:
    """``case_12.tif`` -> ``case_12_pred_mask``: the predicted mask's file name without suffix."""
    return f"{Path(name).stem}_pred_mask"


def slice_order(name: str) -> tuple:
    """Numeric order for dataset names (<case>_<n>, n in ASCII digits), text order otherwise (number -1)."""
    case, _, tail = Path(name).stem.rpartition("_")
    numbered = bool(case) and tail.isascii() and tail.isdigit()  # '12.tif' has no case; int('²') would raise
    return (case, int(tail), "") if numbered else (Path(name).stem, -1, Path(name).stem)


def upload_slice_numbers(names: list[str], folders: list[str] | None = None, reach: int = 1) -> np.ndarray:
    """Slice numbers under which uploads named like the dataset (``<case>_<n>``) are read as volumes.

    The slices of one case (in one folder, when ``folders`` gives each file's) keep their numbers' differences,
    so each reads the case's other uploaded slices as its neighbours, as the dashboard reads a patient. Each case,
    and each slice named otherwise (or sharing its case's number with another, e.g. ``c_02`` and ``c_2``), is
    placed more than ``reach`` (the most slices a model or score reads on each side) apart from all others, so no
    slice reads another's volume.
    """
    folders = folders or [""] * len(names)
    groups: dict[object, list[tuple[int, int]]] = {}
    for i, (name, folder) in enumerate(zip(names, folders, strict=True)):
        case, number, _ = slice_order(name)
        groups.setdefault((folder, case) if number >= 0 else ("alone", i), []).append((i, number))
    numbers = np.zeros(len(names), int)
    start = 0
    for members in groups.values():
        ambiguous = len({n for _, n in members}) < len(members)
        for volume in ([member] for member in members) if ambiguous else [members]:
            lowest = min(max(n, 0) for _, n in volume)
            for i, n in volume:
                numbers[i] = start + max(n, 0) - lowest
            start = numbers[[i for i, _ in volume]].max() + max(reach, 1) + 1
    return numbers


NEIGHBOURS_READ = "read with the neighbouring uploaded slice(s) {}"
SCORED_ALONE = ("no neighbouring slice uploaded: scored alone, while the threshold was chosen on slices scored with "
                "their neighbours (upload the slices around it to read it as the patient pages do)")


def _neighbour_notes(names: list[str], numbers: np.ndarray) -> list[str]:
    present = set(numbers.tolist())
    notes = []
    for name, number in zip(names, numbers.tolist(), strict=True):
        around = [str(slice_order(name)[1] + step) for step in (-1, 1) if number + step in present]
        notes.append(NEIGHBOURS_READ.format(", ".join(around)) if around else SCORED_ALONE)
    return notes


def predict_uploads(cascade: Cascade, files: list[tuple[str, bytes]], threshold: float,
                    folder_of: dict[str, str] | None = None) -> UploadPrediction:
    """Decode, pair with masks, and run the cascade once on every usable slice, the uploaded slices of one case
    (and one folder, by ``folder_of`` file name) read together as a volume (``upload_slice_numbers``); where the
    cascade reads neighbours, each slice's notes say whether it had any."""
    slices, refused = pair_uploads(files)
    slices.sort(key=lambda s: slice_order(s.name))
    if not slices:
        return UploadPrediction(slices, refused, None, threshold)
    names = [s.name for s in slices]
    folders = [folder_of.get(name, "") for name in names] if folder_of else None
    numbers = upload_slice_numbers(names, folders, cascade.neighbour_reach)
    result = cascade.predict(np.stack([s.image for s in slices]), numbers)
    if cascade.neighbour_reach:
        for item, note in zip(slices, _neighbour_notes(names, numbers), strict=True):
            item.notes.append(note)
    return UploadPrediction(slices, refused, result, threshold)


def input_files(paths: list[Path]) -> list[Path]:
    """Each image file given, or inside each folder given (masks included), in that order."""
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
    return files


def predict_files(cascade: Cascade, paths: list[Path], out_dir: Path,
                  threshold: float) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    """Write ``<name>_pred_mask.png`` / ``.tif`` per slice (on the input's own grid, upright), ``predictions.csv``
    (and ``refused.csv``).

    Returns the predictions table and the refused files as (name, reason)."""
    found = input_files(paths)
    folder_of: dict[str, str] = {}
    for path in found:  # a folder is a patient boundary on disk: two folders' slices are never one volume
        folder_of.setdefault(path.name, str(path.parent))  # the first of a name is the one kept (pair_uploads)
    prediction = predict_uploads(cascade, [(p.name, p.read_bytes()) for p in found], threshold, folder_of)
    if not prediction.slices:
        reasons = "; ".join(f"{n}: {m}" for n, m in prediction.refused[:3])
        raise DataError(f"no usable slice among the inputs ({reasons})")
    out_dir.mkdir(parents=True, exist_ok=True)
    for item, mask in zip(prediction.slices, prediction.returned_masks(), strict=True):
        (out_dir / f"{mask_stem(item.name)}.png").write_bytes(encode_mask_png(mask))
        (out_dir / f"{mask_stem(item.name)}.tif").write_bytes(encode_mask_tiff(mask))
    table = prediction.table()
    table.to_csv(out_dir / "predictions.csv", index=False)
    if prediction.refused:
        pd.DataFrame(prediction.refused, columns=["file", "error"]).to_csv(out_dir / "refused.csv", index=False)
    else:  # a previous run's list in the same folder would be taken for this run's
        (out_dir / "refused.csv").unlink(missing_ok=True)
    return table, prediction.refused
