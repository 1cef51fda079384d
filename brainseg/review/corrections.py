"""Reviewers' mask corrections out of the review store, ready to train on or to open elsewhere.

Two layouts, both of the latest version of every corrected slice:
- **Kaggle** (``export_kaggle``): ``<out>/<case>/<case>_<n>.tif`` (a byte copy of the original slice) and
  ``<case>_<n>_mask.tif`` (0/255 uint8, the dataset's convention), plus ``corrections.json`` listing each
  slice's versions and reviewers. ``brainseg.core.data.load_dataset`` reads the folder like any cohort, and
  ``brainseg finetune --corrections`` trains on it.
- **NIfTI** (``export_nifti``): one ``<case>.nii.gz`` per case, a (column, row, corrected slice) uint8 volume
  with unit spacing and an identity affine (the Kaggle release has no pixel spacing), the slice numbers of
  its planes listed in ``corrections.json``.

The expert's ``_mask.tif`` files in the source folder are only ever read (to find the slice image).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from brainseg.errors import DataError
from brainseg.inference.uploads import encode_mask_tiff
from brainseg.review.review_log import ReviewLog

MANIFEST_NAME = "corrections.json"
# Corrections made on an uploaded study (Study page) are filed under this prefix + a digest of its FLAIR file:
# their slices are in no data folder, so the Kaggle and NIfTI exports leave them out; the Study page exports
# them as a NIfTI mask in the study's own grid.
STUDY_PREFIX = "study-"


def find_slice_image(case_name: str, slice_file: str, data_dirs: Iterable[str | Path]) -> Path:
    """The original slice ``<data_dir>/<case>/<slice_file>`` in the first data folder that has it."""
    searched = []
    for folder in data_dirs:
        candidate = Path(folder) / case_name / slice_file
        if candidate.is_file():
            return candidate
        searched.append(str(folder))
    raise DataError(f"{case_name}/{slice_file}: the corrected slice's image is in none of the data folders "
                    f"({', '.join(searched) or 'none given'}); pass the folder it came from with --data")


def _history(log: ReviewLog, patient_id: str, slice_number: int) -> list[dict]:
    versions = log.corrections(patient_id, slice_number=slice_number)
    return [{"version": int(r.version), "reviewer": r.reviewer, "created_utc": r.created_utc,
             "started_from": r.started_from, "threshold": float(r.threshold),
             "classifier_sha256": r.classifier_sha256, "segmenter_sha256": r.segmenter_sha256,
             "pixels_added": int(r.pixels_added), "pixels_removed": int(r.pixels_removed)}
            for r in versions.itertuples()]


def _slice_record(log: ReviewLog, row) -> dict:
    return {"patient_id": row.patient_id, "case": row.case_name, "slice": int(row.slice),
            "slice_file": row.slice_file, "latest_version": int(row.version), "latest_reviewer": row.reviewer,
            "reviewers": list(row.reviewers), "versions": _history(log, row.patient_id, int(row.slice))}


def cohort_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows of a corrections table that belong to the cohort's patients (uploaded studies' left out)."""
    return frame[~frame["patient_id"].str.startswith(STUDY_PREFIX)].reset_index(drop=True)


def latest(log: ReviewLog, patient_ids: Iterable[str] | None = None) -> pd.DataFrame:
    """The latest version of each corrected slice (with its mask) of the cohort's patients (studies' left out),
    optionally for some patients only."""
    frame = cohort_rows(log.latest_corrections())
    if patient_ids is not None:
        frame = frame[frame["patient_id"].isin(list(patient_ids))].reset_index(drop=True)
    return frame


def latest_masks(log: ReviewLog, patient_id: str) -> dict[int, np.ndarray]:
    """Slice number -> the latest corrected mask, for one patient or study."""
    frame = log.latest_corrections(patient_id)
    return {int(row.slice): row.mask for row in frame.itertuples()}


def export_kaggle(log: ReviewLog, out_dir: str | Path, data_dirs: Iterable[str | Path],
                  patient_ids: Iterable[str] | None = None, progress: bool = False) -> dict:
    """Write the latest corrections as a Kaggle-layout folder; returns the manifest written beside them.

    Raises DataError when there is nothing to export or a slice's original image cannot be found.
    """
    out_dir, data_dirs = Path(out_dir), list(data_dirs)
    rows = latest(log, patient_ids)
    if rows.empty:
        raise DataError(f"review store {log.location}: no corrections to export")
    iterator = rows.itertuples()
    if progress:
        from tqdm import tqdm

        iterator = tqdm(list(iterator), desc="exporting corrections", unit="slice")
    records = []
    for row in iterator:
        source = find_slice_image(row.case_name, row.slice_file, data_dirs)
        case_dir = out_dir / row.case_name
        case_dir.mkdir(parents=True, exist_ok=True)
        stem = f"{row.case_name}_{int(row.slice)}"
        shutil.copyfile(source, case_dir / f"{stem}.tif")
        (case_dir / f"{stem}_mask.tif").write_bytes(encode_mask_tiff(row.mask))
        records.append(_slice_record(log, row) | {"source_image": str(source)})
    manifest = {"layout": "kaggle_3m", "store": log.location, "slices": records}
    (out_dir / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def corrections_volume(rows: pd.DataFrame) -> np.ndarray:
    """(N, H, W) bool masks of one case's corrected slices, in slice order."""
    ordered = rows.sort_values("slice")
    return np.stack(list(ordered["mask"]))


def nifti_bytes(masks: np.ndarray, compressed: bool = True) -> bytes:
    """(N, H, W) bool -> a NIfTI-1 uint8 volume, axes (column, row, slice), unit spacing (gzip when ``compressed``)."""
    import gzip

    volume = np.ascontiguousarray(np.asarray(masks, bool).astype(np.uint8).transpose(2, 1, 0))
    image = nib.Nifti1Image(volume, affine=np.eye(4))
    image.header.set_xyzt_units("mm")
    raw = image.to_bytes()
    return gzip.compress(raw, mtime=0) if compressed else raw


def export_nifti(log: ReviewLog, out_dir: str | Path, patient_ids: Iterable[str] | None = None) -> dict:
    """One ``<case>.nii.gz`` per case of its corrected slices; returns the manifest (planes' slice numbers)."""
    out_dir = Path(out_dir)
    rows = latest(log, patient_ids)
    if rows.empty:
        raise DataError(f"review store {log.location}: no corrections to export")
    out_dir.mkdir(parents=True, exist_ok=True)
    cases = {}
    for case_name, case_rows in rows.groupby("case_name", sort=True):
        (out_dir / f"{case_name}.nii.gz").write_bytes(nifti_bytes(corrections_volume(case_rows)))
        cases[case_name] = {"file": f"{case_name}.nii.gz",
                            "planes_slice_numbers": [int(s) for s in sorted(case_rows["slice"])],
                            "slices": [_slice_record(log, r) for r in case_rows.sort_values("slice").itertuples()]}
    manifest = {"layout": "nifti", "store": log.location, "cases": cases}
    (out_dir / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def export_zip(log: ReviewLog, data_dirs: Iterable[str | Path], patient_ids: Iterable[str] | None = None) -> bytes:
    """Both layouts in one zip (``kaggle_3m/`` and ``nifti/``), for the dashboard's download button."""
    import io
    import tempfile
    import zipfile

    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        export_kaggle(log, root / "kaggle_3m", data_dirs, patient_ids)
        export_nifti(log, root / "nifti", patient_ids)
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in sorted(root.rglob("*")):
                if path.is_file():
                    archive.write(path, path.relative_to(root).as_posix())
        return buffer.getvalue()
