"""What a study prediction leaves behind: a NIfTI mask in the FLAIR grid, a DICOM SEG, a JSON summary.

File names are fixed (``mask.nii.gz``, ``seg.dcm``, ``summary.json``) and the summary carries no name, identifier
or UID of the patient or study, nor the input paths (which often hold a name). The DICOM SEG does carry the
patient and study modules of the series it references: that is what lets a PACS file it with the study.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np

import brainseg
from brainseg.inference.cascade import Cascade
from brainseg.studies.study import StudyPrediction

MASK_FILE = "mask.nii.gz"
SEG_FILE = "seg.dcm"
SUMMARY_FILE = "summary.json"
SEGMENT_LABEL = "FLAIR abnormality (brainseg)"


def nifti_mask_bytes(prediction: StudyPrediction, threshold: float | None = None, compressed: bool = True,
                     corrections: Mapping[int, np.ndarray] | None = None) -> bytes:
    """The mask as NIfTI-1 uint8 with the FLAIR input's shape and affine (and its qform/sform codes);
    ``corrections`` (slice index -> reviewer's mask) replace the AI's mask on their slices."""
    import nibabel as nib

    flair = prediction.study.flair
    image = nib.Nifti1Image(prediction.native_mask(threshold, corrections), flair.affine)
    image.set_qform(flair.affine, code=flair.nifti_codes[0] or flair.nifti_codes[1])
    image.set_sform(flair.affine, code=flair.nifti_codes[1] or flair.nifti_codes[0])
    image.header.set_xyzt_units("mm")
    raw = image.to_bytes()
    if not compressed:
        return raw
    import gzip

    return gzip.compress(raw, mtime=0)


def dicom_seg_bytes(prediction: StudyPrediction, threshold: float | None = None) -> bytes:
    """A binary DICOM SEG (highdicom) over the FLAIR series' own images; DICOM input only."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    flair = prediction.study.flair
    if flair.kind != "dicom":
        raise ValueError("a DICOM SEG needs a DICOM FLAIR series to reference")
    frames = prediction.native_mask(threshold).transpose(2, 1, 0)  # (i, j, k) -> (k, row, column) like the files
    algorithm = hd.AlgorithmIdentificationSequence(name="brainseg cascade", version=brainseg.__version__,
                                                   family=codes.cid7162.ArtificialIntelligence)
    segment = hd.seg.SegmentDescription(
        segment_number=1, segment_label=SEGMENT_LABEL,
        segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.Neoplasm, algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algorithm)
    seg = hd.seg.Segmentation(
        source_images=flair.datasets, pixel_array=frames, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[segment], series_instance_uid=hd.UID(), series_number=9901,
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer="brainseg",
        manufacturer_model_name="brainseg cascade (research use only)", software_versions=brainseg.__version__,
        device_serial_number="none", series_description="brainseg tumor mask (research use only)",
        omit_empty_frames=False)
    buffer = io.BytesIO()
    seg.save_as(buffer)
    return buffer.getvalue()


def summary(prediction: StudyPrediction, cascade: Cascade, threshold: float | None = None) -> dict:
    """The JSON summary: volume in mL, per-slice scores and decisions, models' hashes, threshold, geometry."""
    threshold = prediction.threshold if threshold is None else threshold
    study, flair = prediction.study, prediction.study.flair
    mask = prediction.native_mask(threshold)
    axis, _ = study.native_slice_indices()
    slices = prediction.slice_table(threshold)
    return {
        "brainseg_version": brainseg.__version__,
        "notice": "Research use only - not for diagnosis.",
        "threshold": float(threshold),
        "operating_point": {"mask_threshold": cascade.mask_threshold,
                            "min_component_pixels": cascade.min_component_pixels, "slice_score": cascade.slice_score,
                            "default_threshold": cascade.default_threshold},
        "models": {m.role: {"file": m.path.name, "sha256": m.sha256} for m in (cascade.classifier, cascade.segmenter)},
        "input": {"kind": flair.kind, "shape": list(flair.shape),
                  "voxel_spacing_mm": [round(float(s), 6) for s in flair.spacing],
                  "orientation": study.reorientation.native_axcodes(), "slice_axis": axis,
                  "model_grid": [study.grid.size, study.grid.size]},
        "sequences": study.sequences,
        "warnings": study.warnings,
        "voxel_volume_ml": flair.voxel_ml,
        "tumor_voxels": int(mask.sum()),
        "tumor_volume_ml": int(mask.sum()) * flair.voxel_ml,
        "slices_called_tumor": int(sum(s["tumor_called"] for s in slices)),
        "slices": slices,
        "outputs": {"mask_nifti": MASK_FILE, "dicom_seg": SEG_FILE if flair.kind == "dicom" else None},
    }


def write_outputs(prediction: StudyPrediction, cascade: Cascade, out_dir: str | Path) -> dict:
    """Write mask.nii.gz, seg.dcm (DICOM input) and summary.json into ``out_dir``; returns the summary."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / MASK_FILE).write_bytes(nifti_mask_bytes(prediction))
    if prediction.study.flair.kind == "dicom":
        (out_dir / SEG_FILE).write_bytes(dicom_seg_bytes(prediction))
    document = summary(prediction, cascade)
    (out_dir / SUMMARY_FILE).write_text(json.dumps(document, indent=2, default=_plain) + "\n")
    return document


def _plain(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def predict_study_files(cascade: Cascade, flair: str | Path, pre: str | Path | None, post: str | Path | None,
                        out_dir: str | Path, threshold: float | None = None, progress: bool = False) -> dict:
    """`brainseg predict --flair`: read the study, run the cascade (progress bar), write the outputs."""
    from brainseg.studies.study import load_study, predict_study

    study = load_study(flair, pre, post, progress=progress)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(study), desc="running the cascade", unit="slice")
    prediction = predict_study(cascade, study, threshold, progress=(lambda done, _: bar.update(done - bar.n))
                               if bar is not None else None)
    if bar is not None:
        bar.close()
    return write_outputs(prediction, cascade, out_dir)
