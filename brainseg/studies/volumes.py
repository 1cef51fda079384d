"""Reading one MRI sequence: a NIfTI file (nibabel) or a folder holding one DICOM series (pydicom).

Either way the result is a ``Volume``: voxel values in real-world units (DICOM RescaleSlope/Intercept and
NIfTI scaling applied) on voxel axes (i, j, k) and a voxel-to-RAS+ affine in millimetres, as nibabel uses.
Everything that cannot be read faithfully is refused with a message naming the file: patient names and other
identifiers never appear in messages.
"""

from __future__ import annotations

import math
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from brainseg.studies.geometry import StudyError, check_orthogonal

NIFTI_SUFFIXES = (".nii", ".nii.gz")
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
# One MRI series: 1024 x 1024 x 256 voxels at most (4 GiB as float32; brain MRI series are far smaller).
MAX_VOXELS = 1024 * 1024 * 256
# SOP classes whose every file holds pixel data (MR, enhanced MR, CT, enhanced CT, secondary capture).
_IMAGE_STORAGE = {"1.2.840.10008.5.1.4.1.1.4", "1.2.840.10008.5.1.4.1.1.4.1", "1.2.840.10008.5.1.4.1.1.2",
                  "1.2.840.10008.5.1.4.1.1.2.1", "1.2.840.10008.5.1.4.1.1.7", "1.2.840.10008.5.1.4.1.1.7.1",
                  "1.2.840.10008.5.1.4.1.1.7.2", "1.2.840.10008.5.1.4.1.1.7.3", "1.2.840.10008.5.1.4.1.1.7.4"}
POSITION_TOLERANCE_MM = 0.01  # absolute slack on slice positions, on top of 1% of the slice step


@dataclass
class Volume:
    """One sequence: ``data`` (float32, voxel axes i, j, k), ``affine`` (voxel -> RAS+ mm) and where it came from.

    ``eight_bit``: stored as 8-bit without rescaling, i.e. already in the 0..255 range of the training slices.
    ``datasets``: for DICOM, the series' datasets in the order of axis k (what a DICOM SEG references).
    """

    data: np.ndarray
    affine: np.ndarray
    path: Path
    kind: str
    eight_bit: bool = False
    datasets: list = field(default_factory=list, repr=False)
    nifti_codes: tuple[int, int] = (1, 1)  # qform, sform codes written back with the mask

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.data.shape)

    @property
    def spacing(self) -> np.ndarray:
        """Voxel size along i, j, k in mm."""
        return np.linalg.norm(self.affine[:3, :3], axis=0)

    @property
    def voxel_ml(self) -> float:
        """One voxel's volume in millilitres (mm^3 / 1000), from the affine (spacing and any tilt)."""
        return float(abs(np.linalg.det(self.affine[:3, :3]))) / 1000.0


def read_volume(path: str | Path, progress: bool = False) -> Volume:
    """A NIfTI file (``.nii``/``.nii.gz``) or a folder holding one DICOM series."""
    path = Path(path)
    if path.is_dir():
        return read_dicom_series(path, progress=progress)
    if not path.is_file():
        raise StudyError(f"{path}: no such file or folder")
    if path.name.lower().endswith(NIFTI_SUFFIXES):
        return read_nifti(path)
    raise StudyError(f"{path}: not a NIfTI file (.nii, .nii.gz); for DICOM give the folder holding the series")


def read_nifti(path: str | Path) -> Volume:
    """A 3-D NIfTI volume (a 4-D file with one volume is taken as 3-D; more volumes are refused)."""
    import nibabel as nib
    from nibabel.filebasedimages import ImageFileError
    from nibabel.spatialimages import HeaderDataError

    path = Path(path)
    try:
        image = nib.load(path)
        if not isinstance(image, nib.Nifti1Image | nib.Nifti2Image):
            raise StudyError(f"{path}: not a NIfTI image ({type(image).__name__})")
        shape = image.shape
        if len(shape) == 4 and shape[3] == 1:
            shape = shape[:3]
        if len(shape) != 3:
            raise StudyError(f"{path}: a {len(shape)}-D image of shape {tuple(image.shape)}; expected one 3-D "
                             "volume (split a 4-D series and give the volume to use)")
        # Refused from the header, before reading: a small .nii.gz can declare billions of voxels.
        if math.prod(shape) > MAX_VOXELS:
            raise StudyError(f"{path}: declares {' x '.join(map(str, shape))} voxels, over the {MAX_VOXELS:,}-voxel "
                             "limit for one MRI series")
        kind = image.get_data_dtype()
        if kind.kind not in "biuf":
            raise StudyError(f"{path}: voxels stored as {kind} (complex or structured, e.g. RGB); expected one "
                             "real intensity per voxel")
        data = np.asarray(image.dataobj, dtype=np.float32).reshape(shape)
    except StudyError:
        raise
    except (ImageFileError, HeaderDataError, OSError, EOFError, ValueError, TypeError, OverflowError,
            zlib.error) as err:
        raise StudyError(f"{path}: not a readable NIfTI file ({err})") from err
    qform_code, sform_code = int(image.header["qform_code"]), int(image.header["sform_code"])
    if qform_code == 0 and sform_code == 0:
        raise StudyError(f"{path}: the header holds no orientation (qform and sform codes are 0), so left and "
                         "right cannot be told apart; write it with its scanner orientation")
    if not np.all(np.isfinite(data)):
        raise StudyError(f"{path}: voxel values include NaN or infinity")
    affine = image.affine.astype(float)
    check_orthogonal(affine, str(path))
    slope, inter = image.header.get_slope_inter()
    eight_bit = image.get_data_dtype() == np.uint8 and slope in (None, 1.0) and inter in (None, 0.0)
    return Volume(data, affine, path, "nifti", bool(eight_bit), nifti_codes=(qform_code, sform_code))


def _headerless_slice(path: Path):
    """A DICOM image slice written without the 128-byte preamble and file meta header (older PACS and CD
    exports do this), or None for any other file. Such a file can only hold uncompressed pixels, in the
    encoding its elements were read in, which becomes its transfer syntax."""
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    try:
        with warnings.catch_warnings():  # a forced read warns about whatever it guesses; the checks below decide
            warnings.simplefilter("ignore")
            dataset = pydicom.dcmread(path, force=True)
        if not all(key in dataset for key in ("PixelData", "Rows", "ImagePositionPatient")):
            return None
        implicit, little = dataset.original_encoding
    except Exception:  # whatever a forced read makes of a file that is not DICOM
        return None
    dataset.file_meta = FileMetaDataset()
    dataset.file_meta.TransferSyntaxUID = (ImplicitVRLittleEndian if implicit else
                                           ExplicitVRLittleEndian if little else ExplicitVRBigEndian)
    return dataset


def read_dicom_series(folder: str | Path, progress: bool = False) -> Volume:
    """The one image series in ``folder`` (searched recursively), slices sorted by position along the normal.

    Never sorted by file name or InstanceNumber: ImagePositionPatient projected on the slice normal (the cross
    product of ImageOrientationPatient's row and column directions) is the only order the geometry guarantees.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    folder = Path(folder)
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    if progress:
        from tqdm import tqdm

        files = tqdm(files, desc="reading DICOM", unit="file")  # no folder name: it may be a patient's
    series: dict[str, list[tuple[Path, object]]] = {}
    for path in files:
        try:
            dataset = pydicom.dcmread(path)
        except InvalidDicomError:
            dataset = _headerless_slice(path)
            if dataset is None:
                continue  # not DICOM (a README, .DS_Store): ignored
        except Exception as err:  # pydicom raises many types for damaged files
            raise StudyError(f"{path}: unreadable DICOM file ({type(err).__name__}: {err})") from err
        if "PixelData" not in dataset:
            sop_class = str(dataset.get("SOPClassUID", "") or dataset.get("file_meta", {}).get(
                "MediaStorageSOPClassUID", ""))
            if sop_class in _IMAGE_STORAGE:  # a slice cut short: skipping it would drop it from the volume
                raise StudyError(f"{path}: an image slice without its pixel data (the file is cut short?)")
            continue  # DICOMDIR, structured reports, presentation states
        series.setdefault(str(dataset.get("SeriesInstanceUID", "")), []).append((path, dataset))
    if not series:
        raise StudyError(f"{folder}: no DICOM image series in this folder")
    if len(series) > 1:
        counts = ", ".join(f"series {entries[0][1].get('SeriesNumber', '?')}: {len(entries)} files"
                           for entries in series.values())
        raise StudyError(f"{folder}: holds {len(series)} DICOM series ({counts}); give a folder with one series")
    return _series_volume(folder, next(iter(series.values())))


def _series_volume(folder: Path, entries: list[tuple[Path, object]]) -> Volume:
    for path, dataset in entries:
        if int(dataset.get("NumberOfFrames", 1) or 1) > 1:
            raise StudyError(f"{path}: multi-frame (enhanced) DICOM is not supported; export the series as one "
                             "file per slice")
        if int(dataset.get("SamplesPerPixel", 1)) != 1:
            raise StudyError(f"{path}: a colour image ({dataset.get('PhotometricInterpretation')}); expected a "
                             "grayscale MR series")
        for keyword in ("ImageOrientationPatient", "ImagePositionPatient", "PixelSpacing", "Rows", "Columns"):
            if keyword not in dataset:
                raise StudyError(f"{path}: no {keyword}: the slice's position in the patient is unknown")
    first_path, first = entries[0]
    orientation = np.asarray(first.ImageOrientationPatient, float)
    for path, dataset in entries[1:]:
        if not np.allclose(np.asarray(dataset.ImageOrientationPatient, float), orientation, atol=1e-4):
            raise StudyError(f"{path}: slice orientation differs from {first_path.name}'s within one series")
        if (dataset.Rows, dataset.Columns) != (first.Rows, first.Columns) or not np.allclose(
                np.asarray(dataset.PixelSpacing, float), np.asarray(first.PixelSpacing, float), atol=1e-4):
            raise StudyError(f"{path}: image size or pixel spacing differs from {first_path.name}'s within one series")
    row_dir, col_dir = orientation[:3], orientation[3:]
    normal = np.cross(row_dir, col_dir)
    positions = np.array([np.asarray(d.ImagePositionPatient, float) for _, d in entries])
    order = np.argsort(positions @ normal, kind="stable")
    entries = [entries[k] for k in order]
    positions = positions[order]
    along = positions @ normal
    steps = np.diff(along)
    if len(steps):
        step = float(np.median(steps))
        for k, gap in enumerate(steps):
            if gap < POSITION_TOLERANCE_MM:
                raise StudyError(f"{entries[k + 1][0]}: same slice position as {entries[k][0].name} (duplicate slice "
                                 "or two series mixed)")
            if abs(gap - step) > 0.01 * step + POSITION_TOLERANCE_MM:
                raise StudyError(f"{entries[k + 1][0]}: gap in slice positions ({gap:.2f} mm after "
                                 f"{entries[k][0].name}, the series' step is {step:.2f} mm): a slice is missing")
        drift = positions[-1] - positions[0] - normal * (along[-1] - along[0])
        if np.linalg.norm(drift) > 0.005 * (along[-1] - along[0]) + POSITION_TOLERANCE_MM:
            raise StudyError(f"{folder}: slice positions do not advance along the slice normal (gantry tilt or "
                             "sheared series); reslice it first")
        slice_vector = (positions[-1] - positions[0]) / (len(entries) - 1)
    else:
        thickness = float(first.get("SpacingBetweenSlices", first.get("SliceThickness", 1.0)) or 1.0)
        slice_vector = normal * thickness
    pixel_spacing = np.asarray(first.PixelSpacing, float)  # (between rows, between columns)
    lps = np.eye(4)
    lps[:3, 0] = row_dir * pixel_spacing[1]  # voxel axis i: along a row (the column index)
    lps[:3, 1] = col_dir * pixel_spacing[0]  # voxel axis j: down the columns (the row index)
    lps[:3, 2] = slice_vector
    lps[:3, 3] = positions[0]
    affine = LPS_TO_RAS @ lps
    check_orthogonal(affine, str(folder))

    slices, eight_bit = [], True
    for path, dataset in entries:
        try:
            pixels = dataset.pixel_array
        except Exception as err:  # no decoder plugin, truncated data, ...
            syntax = dataset.file_meta.get("TransferSyntaxUID")
            name = getattr(syntax, "name", syntax)
            raise StudyError(f"{path}: pixel data cannot be decoded ({name}; {type(err).__name__}: "
                             f"{str(err).splitlines()[0]})") from err
        slope = float(dataset.get("RescaleSlope", 1.0) or 1.0)
        intercept = float(dataset.get("RescaleIntercept", 0.0) or 0.0)
        values = pixels.astype(np.float64) * slope + intercept
        if dataset.get("PhotometricInterpretation") == "MONOCHROME1":  # bright means low signal: turn it round
            values = -values
            eight_bit = False
        eight_bit &= int(dataset.get("BitsAllocated", 16)) == 8 and slope == 1.0 and intercept == 0.0
        slices.append(values.astype(np.float32))
    data = np.stack(slices).transpose(2, 1, 0)  # (k, row, column) -> (i=column, j=row, k)
    return Volume(np.ascontiguousarray(data), affine, folder, "dicom", eight_bit, [d for _, d in entries])
