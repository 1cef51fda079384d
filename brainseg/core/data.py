"""Reading the LGG MRI Segmentation dataset in its original Kaggle layout.

    <root>/<case>/<case>_<n>.tif        256x256x3 uint8 slice (pre-contrast, FLAIR, post-contrast)
    <root>/<case>/<case>_<n>_mask.tif   256x256 uint8 mask, 0 or 255
    <root>/data.csv                     per-patient genomic and clinical fields (optional)

``<case>`` is ``TCGA_<institution>_<patient>_<date>``; the patient id used by ``data.csv`` and by the
split file is its first three parts, e.g. ``TCGA_CS_4942``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, UnidentifiedImageError

from brainseg.errors import DataError

SLICE_SHAPE = (256, 256, 3)
MASK_SHAPE = (256, 256)
IMAGE_SUFFIXES = (".tif", ".tiff")
_SLICE_NAME = re.compile(r"^(?P<case>TCGA_(?P<inst>[A-Z0-9]+)_[A-Z0-9]+_\d+)_(?P<n>\d+)$")

CLINICAL_TABLE = "data.csv"  # the optional per-patient table beside the case folders

MANIFEST_COLUMNS = [
    "patient_id",
    "case",
    "institution",
    "slice",
    "image_path",
    "mask_path",
    "has_tumor",
    "tumor_pixels",
]


def patient_id_of(case: str) -> str:
    """``TCGA_CS_4942_19970222`` -> ``TCGA_CS_4942``."""
    return "_".join(case.split("_")[:3])


def institution_of(patient_id: str) -> str:
    """``TCGA_CS_4942`` -> ``CS`` (the submitting TCGA site)."""
    parts = patient_id.split("_")
    return parts[1] if len(parts) > 1 else "?"


def read_image(path: str | Path) -> np.ndarray:
    """Read a dataset slice as (256, 256, 3) uint8, or raise DataError naming the file."""
    array = _read_array(path)
    if array.dtype != np.uint8 or array.shape != SLICE_SHAPE:
        raise DataError(f"{path}: expected a 256x256 RGB uint8 slice, got shape {array.shape} dtype {array.dtype}")
    return array


# A mask with more distinct values than this is a grey-level drawing (anti-aliased edges), not labels.
MAX_LABEL_VALUES = 8


def mask_pixels_to_bool(pixels: np.ndarray, name: str) -> tuple[np.ndarray, list[str]]:
    """The one rule turning a mask's pixels (H, W[, C]) into tumor / not tumor, for dataset and uploaded masks:
    an alpha channel is dropped and the others merged (tumor where any channel is); a binary or label mask
    ({0, 255}, {0, 1}, BraTS-style {0, 1, 2, 4}: at most ``MAX_LABEL_VALUES`` values, 0 among them) is tumor
    wherever it is not 0; any other mask (grey levels, a background that is not 0) is tumor above half its
    maximum. Returns notes on anything other than a plain binary mask; refusals name the file ``name``."""
    notes = []
    if pixels.ndim == 3 and pixels.shape[2] == 4:
        pixels = pixels[..., :3]  # an alpha channel is not a label
    if pixels.ndim == 3:
        if not all(np.array_equal(pixels[..., 0], pixels[..., k]) for k in range(1, pixels.shape[2])):
            notes.append("mask has different channels; a pixel is tumor where any channel is")
        pixels = pixels.max(axis=2)
    if pixels.dtype.kind == "f" and not np.isfinite(pixels).all():
        raise DataError(f"{name}: mask contains non-finite values (NaN or infinity)")
    if pixels.dtype.kind in "iuf" and (pixels < 0).any():
        raise DataError(f"{name}: mask contains negative values")
    values = np.unique(pixels)
    if len(values) <= MAX_LABEL_VALUES and values[0] == 0:  # labels on a 0 background
        if len(values[values != 0]) > 1:
            notes.append(f"mask holds labels {', '.join(f'{v:g}' for v in values[values != 0])}: every label taken "
                         "as tumor")
        return pixels != 0, notes
    notes.append(f"mask has {len(values)} distinct values; pixels above half of {float(values[-1]):g} taken as tumor")
    return pixels > values[-1] / 2, notes


def read_mask(path: str | Path) -> np.ndarray:
    """Read a dataset mask as (256, 256) bool (``mask_pixels_to_bool``), or raise DataError naming the file."""
    array = _read_array(path)
    if array.shape[:2] != MASK_SHAPE or array.ndim not in (2, 3):
        raise DataError(f"{path}: expected a 256x256 mask, got shape {array.shape}")
    return mask_pixels_to_bool(array, str(path))[0]


def _read_array(path: str | Path) -> np.ndarray:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: file is empty (0 bytes)")
    try:
        with Image.open(path) as image:
            image.load()
            return np.asarray(image)
    except UnidentifiedImageError as err:
        raise DataError(f"{path}: not a readable image file") from err
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise DataError(f"{path}: unreadable or truncated image ({err})") from err


def _check_header(path: Path, expected_size: tuple[int, int], modes: Iterable[str]) -> None:
    """Cheap check (header only) so a scan of thousands of slices stays fast."""
    try:
        with Image.open(path) as image:
            size, mode = image.size, image.mode
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise DataError(f"{path}: not a readable image file ({err})") from err
    if size != expected_size or mode not in modes:
        raise DataError(f"{path}: expected a {expected_size[0]}x{expected_size[1]} {'/'.join(modes)} image, "
                        f"got {size[0]}x{size[1]} {mode}")


def scan_dataset(root: str | Path, progress: bool = False) -> pd.DataFrame:
    """Scan a Kaggle-layout folder into a slice manifest (one row per slice, numeric slice order).

    Reads every mask (for the tumor pixel count) and every image header. Raises DataError for a
    missing folder, a slice without its mask (or the reverse), or an unreadable or wrong-shaped file.
    """
    iterator: Iterable[Path] = case_folders(root)
    if progress:
        from tqdm import tqdm

        iterator = tqdm(iterator, desc="scanning patients", unit="patient")
    return manifest_of_cases([scan_case(case_dir) for case_dir in iterator])


def case_folders(root: str | Path) -> list[Path]:
    """The patient folders (``TCGA_<site>_<id>_<date>/``) of a Kaggle-layout folder, sorted by name."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: dataset folder not found")
    case_dirs = sorted(p for p in root.iterdir() if p.is_dir() and _SLICE_NAME.match(p.name + "_0"))
    if not case_dirs:
        raise DataError(f"{root}: no patient folders (expected TCGA_<site>_<id>_<date>/ as in the Kaggle kaggle_3m)")
    return case_dirs


def scan_case(case_dir: str | Path) -> pd.DataFrame:
    """One patient folder's manifest rows (``scan_dataset`` for a single case; same checks, same columns)."""
    return pd.DataFrame(_scan_case(Path(case_dir)), columns=MANIFEST_COLUMNS)


def manifest_of_cases(case_manifests: Iterable[pd.DataFrame]) -> pd.DataFrame:
    """The manifest of a folder from its cases' ``scan_case`` rows, in ``scan_dataset``'s order."""
    frames = list(case_manifests)
    if not frames:
        return pd.DataFrame(columns=MANIFEST_COLUMNS)
    manifest = pd.concat(frames, ignore_index=True)
    return manifest.sort_values(["patient_id", "slice"], kind="stable").reset_index(drop=True)


def _scan_case(case_dir: Path) -> list[dict]:
    images: dict[int, Path] = {}
    masks: dict[int, Path] = {}
    for path in case_dir.iterdir():
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        stem = path.stem
        is_mask = stem.endswith("_mask")
        match = _SLICE_NAME.match(stem[: -len("_mask")] if is_mask else stem)
        if match is None or match["case"] != case_dir.name:
            raise DataError(f"{path}: file name does not follow {case_dir.name}_<n>.tif / _<n>_mask.tif")
        (masks if is_mask else images)[int(match["n"])] = path
    if not images:
        raise DataError(f"{case_dir}: patient folder holds no slices")
    for n in sorted(set(images) - set(masks)):
        raise DataError(f"{images[n]}: slice has no mask (expected {images[n].stem}_mask{images[n].suffix})")
    for n in sorted(set(masks) - set(images)):
        raise DataError(f"{masks[n]}: mask has no slice")
    patient = patient_id_of(case_dir.name)
    rows = []
    for n in sorted(images):
        _check_header(images[n], SLICE_SHAPE[1::-1], ("RGB",))
        tumor_pixels = int(read_mask(masks[n]).sum())
        rows.append(
            {
                "patient_id": patient,
                "case": case_dir.name,
                "institution": institution_of(patient),
                "slice": n,
                "image_path": str(images[n]),
                "mask_path": str(masks[n]),
                "has_tumor": tumor_pixels > 0,
                "tumor_pixels": tumor_pixels,
            }
        )
    return rows


def read_clinical_table(path: str | Path) -> pd.DataFrame:
    """Read ``data.csv`` (one row per patient, column ``Patient``), raising DataError if malformed."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        table = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: not a readable CSV table ({err})") from err
    if "Patient" not in table.columns:
        raise DataError(f"{path}: no 'Patient' column (columns: {', '.join(map(str, table.columns[:6]))})")
    if table["Patient"].duplicated().any():
        dupes = ", ".join(table.loc[table["Patient"].duplicated(), "Patient"].astype(str)[:3])
        raise DataError(f"{path}: patient listed twice ({dupes})")
    return table.rename(columns={"Patient": "patient_id"})


def patient_table(manifest: pd.DataFrame, clinical_csv: str | Path | None = None) -> pd.DataFrame:
    """One row per patient: slice and tumor counts, joined with data.csv's fields when given."""
    grouped = manifest.groupby("patient_id", sort=True)
    table = pd.DataFrame(
        {
            "case": grouped["case"].first(),
            "institution": grouped["institution"].first(),
            "n_slices": grouped.size(),
            "n_tumor_slices": grouped["has_tumor"].sum().astype(int),
            "tumor_pixels": grouped["tumor_pixels"].sum().astype(int),
        }
    ).reset_index()
    if clinical_csv is not None:
        table = table.merge(read_clinical_table(clinical_csv), on="patient_id", how="left")
    return table


def load_dataset(root: str | Path, progress: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Manifest and patient table for a folder; data.csv is joined when present (optional)."""
    manifest = scan_dataset(root, progress=progress)
    csv = Path(root) / CLINICAL_TABLE
    return manifest, patient_table(manifest, csv if csv.exists() else None)


def load_slices(manifest: pd.DataFrame, progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Decode the manifest's slices and masks: (N, 256, 256, 3) uint8 and (N, 256, 256) bool."""
    paths: Iterable = manifest[["image_path", "mask_path"]].itertuples(index=False)
    if progress:
        from tqdm import tqdm

        paths = tqdm(list(paths), desc="reading slices", unit="slice")
    images = np.empty((len(manifest), *SLICE_SHAPE), np.uint8)
    masks = np.empty((len(manifest), *MASK_SHAPE), bool)
    for i, (image_path, mask_path) in enumerate(paths):
        images[i] = read_image(image_path)
        masks[i] = read_mask(mask_path)
    return images, masks
