"""Building NIfTI files and DICOM series in code, with known geometry, from the demo patients' Kaggle slices.

A Kaggle patient is a stack of axial slices in the training layout: voxel axes (column, row, slice) running
towards the patient's left, posterior and superior (orientation codes L P S). ``reorder`` stores it in any
other axis order and direction by hand (a plain transpose and flips, with the affine's columns moved to
match), so a test knows exactly where every voxel of the written file belongs.
"""

from __future__ import annotations

import random
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

PATIENT_NAME = "Doe^Jane"  # planted in every DICOM file: must never reach an output, a log or a summary
PATIENT_ID = "PID-0042-SECRET"


def kaggle_patient(case_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """A demo patient's slices (N, 256, 256, 3) uint8 and truth masks, inferior to superior."""
    from brainseg.core.data import load_slices, scan_dataset

    return load_slices(scan_dataset(case_dir.parent).query("case == @case_dir.name"))


def training_volume(images: np.ndarray, channel: int) -> np.ndarray:
    """One sequence of a Kaggle stack as voxel axes (column, row, slice)."""
    return np.ascontiguousarray(images[..., channel].transpose(2, 1, 0))


def training_affine(spacing: tuple[float, float, float] = (1.0, 1.0, 1.0),
                    origin: tuple[float, float, float] = (120.0, 110.0, -40.0)) -> np.ndarray:
    """RAS+ affine of the training layout: columns towards the left (-x), rows towards posterior (-y), slices up."""
    affine = np.diag([-spacing[0], -spacing[1], spacing[2], 1.0])
    affine[:3, 3] = origin
    return affine


def reorder(data: np.ndarray, affine: np.ndarray, axes: tuple[int, int, int],
            flips: tuple[bool, bool, bool]) -> tuple[np.ndarray, np.ndarray]:
    """Store ``data`` with its voxel axes in the order ``axes``, then reversed where ``flips``; the affine follows."""
    out = np.transpose(data, axes)
    new = np.eye(4)
    new[:3, 3] = affine[:3, 3]
    for a, source in enumerate(axes):
        new[:3, a] = affine[:3, source]
    for a, flip in enumerate(flips):
        if flip:
            new[:3, 3] += new[:3, a] * (out.shape[a] - 1)
            new[:3, a] = -new[:3, a]
            out = np.flip(out, axis=a)
    return np.ascontiguousarray(out), new


def write_nifti(path: Path, data: np.ndarray, affine: np.ndarray, dtype=np.uint8) -> Path:
    image = nib.Nifti1Image(np.asarray(data).astype(dtype), affine)
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    nib.save(image, path)
    return path


def write_dicom_series(folder: Path, data: np.ndarray, affine: np.ndarray, *, stored: np.ndarray | None = None,
                       bits_stored: int = 8, slope: float = 1.0, intercept: float = 0.0, seed: int = 0,
                       series_uid: str | None = None, study_uid: str | None = None) -> list[Path]:
    """One file per voxel slice along axis k, under random names, with scrambled InstanceNumbers.

    ``stored``: the raw pixel values to write (default ``data``); ``slope``/``intercept`` go in the header.
    """
    stored = data if stored is None else stored
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine
    row_dir = lps[:3, 0] / np.linalg.norm(lps[:3, 0])
    col_dir = lps[:3, 1] / np.linalg.norm(lps[:3, 1])
    series_uid, study_uid, frame_uid = series_uid or generate_uid(), study_uid or generate_uid(), generate_uid()
    numbers = list(range(1, data.shape[2] + 1))
    rng.shuffle(numbers)
    paths = []
    for k in range(data.shape[2]):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = MRImageStorage
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.SOPClassUID = MRImageStorage
        ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = PATIENT_NAME, PATIENT_ID, "19700101", "F"
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study_uid, series_uid, frame_uid
        ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber = "20200101", "120000", "1", "ACC-SECRET"
        ds.ReferringPhysicianName, ds.Manufacturer = "", "test"
        ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "MR", 3, numbers[k]
        ds.SeriesDescription = "AX FLAIR"
        ds.ImageOrientationPatient = [float(v) for v in (*row_dir, *col_dir)]
        ds.ImagePositionPatient = [float(v) for v in (lps @ np.array([0.0, 0.0, k, 1.0]))[:3]]
        ds.PixelSpacing = [float(np.linalg.norm(lps[:3, 1])), float(np.linalg.norm(lps[:3, 0]))]
        ds.SliceThickness = float(np.linalg.norm(lps[:3, 2]))
        ds.Rows, ds.Columns = data.shape[1], data.shape[0]
        ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PixelRepresentation = 1, "MONOCHROME2", 0
        bits = 8 if bits_stored <= 8 else 16
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = bits, bits_stored, bits_stored - 1
        if slope != 1.0 or intercept != 0.0:
            ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
        pixels = np.ascontiguousarray(stored[:, :, k].T).astype(np.uint8 if bits == 8 else np.uint16)
        ds.PixelData = pixels.tobytes()
        path = folder / f"{rng.getrandbits(40):010x}"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def read_any_dicom(path: Path) -> Dataset:
    return pydicom.dcmread(path)
