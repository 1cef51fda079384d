"""Studies in (NIfTI volumes, DICOM series), masks back in the input's own grid, DICOM SEG, volume in mL.

Every study here is built in code from a demo patient's Kaggle slices with known geometry (tests/study_builders),
so each test knows exactly which voxel of the written file is which voxel of the training-layout stack.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import shutil
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from conftest import DEMO_DIR
from study_builders import (
    PATIENT_ID,
    PATIENT_NAME,
    kaggle_patient,
    reorder,
    training_affine,
    training_volume,
    write_dicom_series,
    write_nifti,
)

from brainseg.cli import main
from brainseg.inference.cascade import Cascade
from brainseg.studies import archive
from brainseg.studies.geometry import InPlaneGrid, StudyError
from brainseg.studies.outputs import dicom_seg_bytes, nifti_mask_bytes, write_outputs
from brainseg.studies.study import assemble_study, load_study, predict_study
from brainseg.studies.volumes import read_dicom_series, read_volume

CASE = DEMO_DIR / "TCGA_HT_7855_19951020"  # 21 slices, tumor on several
SPACING = (1.0, 1.0, 3.3)  # in-plane 1 mm x 256 like the training slices; thick axial slices

# (axis order, flips) applied to the training layout (codes L P S), and the codes nibabel must then read back
LAYOUTS = {
    "LPS as trained": ((0, 1, 2), (False, False, False), "LPS"),
    "RAS (neurological)": ((0, 1, 2), (True, True, False), "RAS"),
    "slices superior to inferior": ((0, 1, 2), (False, False, True), "LPI"),
    "sagittal-stored axis order": ((2, 0, 1), (False, True, True), "SRA"),
    "coronal-stored axis order": ((0, 2, 1), (True, False, True), "RSA"),
}


@pytest.fixture(scope="module")
def patient() -> tuple[np.ndarray, np.ndarray]:
    return kaggle_patient(CASE)


@pytest.fixture(scope="module")
def tiny_cascade(tiny_models_dir, tmp_path_factory, patient) -> Cascade:
    """The tiny random models, with an operating point set at their own medians on this patient.

    Untrained, the segmenter's probabilities all sit on one side of 0.5; cutting at their median and gating at
    the classifier's median makes masks with edges and slices on both sides of the gate, so that geometry and
    decision checks cannot pass on an all-empty or all-full mask.
    """
    folder = tmp_path_factory.mktemp("tiny_study_models")
    for path in tiny_models_dir.iterdir():
        shutil.copy(path, folder / path.name)
    result = Cascade.from_dir(folder).predict(patient[0])
    (folder / "operating_point.json").write_text(json.dumps({
        "threshold": float(np.median(result.classifier_probabilities)),
        "mask_threshold": float(np.median(result.maps))}))
    return Cascade.from_dir(folder)


def _layout_volumes(images, folder: Path, layout: str, roles=("pre", "flair", "post")) -> dict[str, Path]:
    axes, flips, _ = LAYOUTS[layout]
    paths = {}
    for channel, role in enumerate(("pre", "flair", "post")):
        if role in roles:
            data, affine = reorder(training_volume(images, channel), training_affine(SPACING), axes, flips)
            paths[role] = write_nifti(folder / f"{role}.nii.gz", data, affine)
    return paths


def _by_hand(stack: np.ndarray, layout: str) -> np.ndarray:
    """A (slice, row, column) training-layout stack stored the way ``layout`` stores its volume."""
    axes, flips, _ = LAYOUTS[layout]
    return reorder(stack.transpose(2, 1, 0), training_affine(SPACING), axes, flips)[0]


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_any_orthogonal_layout_gives_back_the_training_slices_exactly(patient, tmp_path, layout):
    images, _ = patient
    paths = _layout_volumes(images, tmp_path, layout)
    study = load_study(paths["flair"], paths["pre"], paths["post"])
    assert study.reorientation.native_axcodes() == LAYOUTS[layout][2]
    assert study.images.dtype == np.uint8
    np.testing.assert_array_equal(study.images, images)  # 8-bit input is taken as scaled; 256x256 1 mm passes
    assert study.sequences == {"pre": "given", "flair": "given", "post": "given"} and study.warnings == []

    # A mask drawn on the training-layout slices comes back onto the voxels the layout stored them in.
    rng = np.random.default_rng(0)
    drawn = rng.random((len(images), 256, 256)) > 0.7
    native = study.to_native(drawn)
    assert native.shape == nib.load(paths["flair"]).shape
    np.testing.assert_array_equal(native, _by_hand(drawn, layout).astype(np.uint8))


@pytest.mark.parametrize("layout", ["RAS (neurological)", "sagittal-stored axis order"])
def test_nifti_predictions_equal_the_slice_path_and_the_mask_lands_in_the_flair_grid(patient, tmp_path, tiny_cascade,
                                                                                      layout):
    images, _ = patient
    paths = _layout_volumes(images, tmp_path, layout)
    prediction = predict_study(tiny_cascade, load_study(paths["flair"], paths["pre"], paths["post"]))
    reference = tiny_cascade.predict(images)  # the slice path on the same patient's Kaggle slices
    threshold = tiny_cascade.default_threshold
    # Same uint8 slices in the same order and batches: the same numbers (exact equality; float32 both ways).
    np.testing.assert_array_equal(prediction.result.classifier_probabilities, reference.classifier_probabilities)
    np.testing.assert_array_equal(prediction.result.maps, reference.maps)
    expected = reference.masks(threshold)
    assert 0 < expected.sum() < expected.size / 2  # masks with edges, and empty slices below the gate
    assert 0 < reference.decisions(threshold).sum() < len(images)

    out = tmp_path / "out"
    summary = write_outputs(prediction, tiny_cascade, out)
    written = nib.load(out / "mask.nii.gz")
    flair = nib.load(paths["flair"])
    np.testing.assert_array_equal(written.get_fdata(), _by_hand(expected, layout))
    np.testing.assert_array_equal(written.affine, flair.affine)
    assert written.get_data_dtype() == np.uint8
    assert summary["tumor_voxels"] == int(expected.sum())
    assert summary["threshold"] == threshold and sorted(summary["models"]) == ["classifier", "segmenter"]
    assert summary["models"]["segmenter"]["sha256"] == tiny_cascade.segmenter.sha256
    called = [s["tumor_called"] for s in summary["slices"]]
    assert called == reference.decisions(threshold).tolist()
    assert [s["slice_score"] for s in summary["slices"]] == pytest.approx(reference.probabilities.tolist(), abs=1e-6)
    assert not (out / "seg.dcm").exists()  # NIfTI in: no DICOM SEG to reference anything


def test_tumor_volume_is_voxel_count_times_voxel_size(patient, tmp_path, tiny_cascade):
    images, _ = patient
    paths = _layout_volumes(images, tmp_path, "RAS (neurological)", roles=("flair",))
    prediction = predict_study(tiny_cascade, load_study(paths["flair"]), threshold=0.0)
    voxels = int(prediction.native_mask().sum())
    assert voxels > 0
    assert prediction.tumor_volume_ml() == pytest.approx(voxels * 1.0 * 1.0 * 3.3 / 1000.0)  # mm^3 -> mL by hand
    summary = write_outputs(prediction, tiny_cascade, tmp_path / "out")
    assert summary["tumor_volume_ml"] == pytest.approx(voxels * 3.3 / 1000.0, abs=1e-4)
    assert sum(s["tumor_voxels"] for s in summary["slices"]) == voxels
    # Another threshold only re-gates the stored outputs: as predicting at that threshold gives.
    result = prediction.result
    cut = float(np.median(result.probabilities[result.segmenter_masks().any(axis=(1, 2))]))
    regated = prediction.tumor_volume_ml(cut)
    assert regated == pytest.approx(predict_study(tiny_cascade, load_study(paths["flair"]),
                                                  threshold=cut).tumor_volume_ml())
    assert 0 < regated < prediction.tumor_volume_ml() and prediction.tumor_volume_ml(1.01) == 0.0


def test_missing_sequences_use_flair_and_say_so(patient, tmp_path, tiny_cascade):
    images, _ = patient
    paths = _layout_volumes(images, tmp_path, "LPS as trained", roles=("flair", "post"))
    study = load_study(paths["flair"], post=paths["post"])
    np.testing.assert_array_equal(study.images[..., 0], images[..., 1])  # pre-contrast channel = FLAIR
    np.testing.assert_array_equal(study.images[..., 1:], images[..., 1:])
    assert study.sequences["pre"].startswith("FLAIR copy") and study.sequences["post"] == "given"
    assert len(study.warnings) == 1 and "pre-contrast" in study.warnings[0] and "not been measured" in study.warnings[0]
    # What the cascade sees is exactly the slice path on the Kaggle slices with FLAIR copied into the channel.
    substituted = images.copy()
    substituted[..., 0] = images[..., 1]
    prediction = predict_study(tiny_cascade, study, threshold=0.0)
    np.testing.assert_array_equal(prediction.result.maps, tiny_cascade.predict(substituted).maps)


def test_sequences_on_another_grid_are_resampled_through_their_affines(patient, tmp_path):
    images, _ = patient
    flair = _layout_volumes(images, tmp_path, "LPS as trained", roles=("flair",))["flair"]
    # pre-contrast stored RAS and sagittally: another grid in voxels, the same voxels in the scanner.
    pre_data, pre_affine = reorder(training_volume(images, 0), training_affine(SPACING), (2, 0, 1), (True, True, False))
    pre = write_nifti(tmp_path / "pre_sag.nii.gz", pre_data, pre_affine)
    study = load_study(flair, pre=pre)
    np.testing.assert_array_equal(study.images[..., 0], images[..., 0])
    assert study.sequences["pre"] == "resampled onto the FLAIR grid"
    assert any("no registration" in w for w in study.warnings)
    # Shifted by half the field of view: resampled, the uncovered part black, and said.
    shifted = training_affine(SPACING, origin=(120.0 - 128.0, 110.0, -40.0))
    half = write_nifti(tmp_path / "pre_half.nii.gz", training_volume(images, 0), shifted)
    study = load_study(flair, pre=half)
    assert any("covers 50%" in w for w in study.warnings)
    assert (study.images[:, :, :127, 0] == 0).all()  # columns run right -> left: the shifted scan covers the left


def test_sequences_that_do_not_overlap_are_refused(patient, tmp_path):
    images, _ = patient
    flair = _layout_volumes(images, tmp_path, "LPS as trained", roles=("flair",))["flair"]
    far = write_nifti(tmp_path / "far.nii.gz", training_volume(images, 0), training_affine(SPACING, (500, 0, 0)))
    with pytest.raises(StudyError, match=r"far\.nii\.gz.*do not overlap"):
        load_study(flair, pre=far)


def _dicom_12bit(images, folder: Path, axes=(0, 1, 2), flips=(False, False, False), channel=1, **kwargs):
    """FLAIR as a 12-bit series: stored = 16 * value + 7, RescaleSlope 0.5, RescaleIntercept -20."""
    data, affine = reorder(training_volume(images, channel), training_affine(SPACING), axes, flips)
    stored = data.astype(np.uint16) * 16 + 7
    paths = write_dicom_series(folder, data, affine, stored=stored, bits_stored=12, slope=0.5, intercept=-20.0,
                               **kwargs)
    return paths, data, affine


def _hand_scaled(values: np.ndarray) -> np.ndarray:
    """Min-max into 0..255, computed by hand from the rescaled values 8 * v - 16.5."""
    real = 8.0 * values.astype(np.float64) - 16.5
    return np.rint((real - real.min()) * 255.0 / (real.max() - real.min())).astype(np.uint8)


@pytest.mark.parametrize("flips", [(False, False, False), (True, False, True)])
def test_shuffled_12bit_dicom_series_is_sorted_by_position_and_rescaled(patient, tmp_path, tiny_cascade, flips):
    images, _ = patient
    paths, data, affine = _dicom_12bit(images, tmp_path / "series", flips=flips, seed=3)
    numbers = [pydicom.dcmread(p, stop_before_pixels=True).InstanceNumber for p in sorted(paths)]
    assert numbers != sorted(numbers)  # neither file names nor InstanceNumbers follow the slice order
    volume = read_dicom_series(tmp_path / "series")
    np.testing.assert_allclose(volume.affine, affine, atol=1e-4)
    np.testing.assert_array_equal(volume.data, 8.0 * data - 16.5)
    study = assemble_study(volume)
    flair = _hand_scaled(images[..., 1])
    np.testing.assert_array_equal(study.images[..., 1], flair)
    prediction = predict_study(tiny_cascade, study, threshold=0.0)
    reference = tiny_cascade.predict(np.repeat(flair[..., None], 3, axis=-1))
    np.testing.assert_array_equal(prediction.result.maps, reference.maps)

    out = tmp_path / "out"
    assert main(["predict", "--flair", str(tmp_path / "series"), "--out", str(out), "--models-dir",
                 str(tiny_cascade.classifier.path.parent), "--threshold", "0.4"]) == 0
    written = nib.load(out / "mask.nii.gz")
    axes_flips = reorder(reference.masks(0.4).transpose(2, 1, 0), training_affine(SPACING), (0, 1, 2), flips)[0]
    np.testing.assert_array_equal(written.get_fdata(), axes_flips)
    np.testing.assert_allclose(written.affine, affine, atol=1e-4)

    seg = pydicom.dcmread(out / "seg.dcm")
    source = pydicom.dcmread(paths[0], stop_before_pixels=True)
    assert seg.Modality == "SEG"
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == source.SeriesInstanceUID
    assert seg.StudyInstanceUID == source.StudyInstanceUID
    import highdicom as hd

    # Each SEG frame points at its source image: the mask read back per source instance equals the file's slice.
    seg = hd.seg.segread(out / "seg.dcm")
    by_uid = {pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID: p for p in paths}
    for uid, path in list(by_uid.items())[:6]:
        position = np.asarray(pydicom.dcmread(path, stop_before_pixels=True).ImagePositionPatient, float)
        k = int(np.argmin([np.abs(affine_position(affine, kk) - position).sum() for kk in range(data.shape[2])]))
        frame = seg.get_pixels_by_source_instance(source_sop_instance_uids=[uid], segment_numbers=[1])[0, ..., 0]
        np.testing.assert_array_equal(frame, axes_flips[:, :, k].T)

    summary_text = (out / "summary.json").read_text()
    for secret in (PATIENT_NAME, "Doe", PATIENT_ID, "ACC-SECRET", source.StudyInstanceUID, source.SeriesInstanceUID):
        assert secret not in summary_text
        assert all(secret not in p.name for p in out.iterdir())
    assert json.loads(summary_text)["input"]["kind"] == "dicom"


def affine_position(affine: np.ndarray, k: int) -> np.ndarray:
    """The LPS position of voxel (0, 0, k): what a DICOM slice's ImagePositionPatient says."""
    return (np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine @ np.array([0.0, 0.0, k, 1.0]))[:3]


def test_sagittal_dicom_series_is_resliced_to_axial(patient, tmp_path):
    images, _ = patient
    # Isotropic slices so a sagittal acquisition reslices to square axial pixels.
    data, affine = reorder(training_volume(images, 1), training_affine((1.0, 1.0, 1.0)), (2, 1, 0), (True, False, True))
    write_dicom_series(tmp_path / "sag", data, affine, seed=1)
    study = assemble_study(read_dicom_series(tmp_path / "sag"))
    assert study.reorientation.native_axcodes() == "IPL"  # DICOM slices run along the normal, whatever the file order
    np.testing.assert_array_equal(study.images[..., 1], images[..., 1])


@pytest.mark.parametrize("implicit", [False, True])
def test_dicom_slices_written_without_preamble_or_file_meta_are_kept(tmp_path, implicit):
    from pydicom.filewriter import dcmwrite

    data = np.random.default_rng(0).integers(0, 255, (16, 16, 10)).astype(np.uint8)
    paths = write_dicom_series(tmp_path / "series", data, training_affine())
    for path in paths[:4]:  # as older PACS and CD exports write them (these were skipped before: 6 slices read)
        dataset = pydicom.dcmread(path)
        del dataset.file_meta
        dataset.preamble = None
        dcmwrite(path, dataset, implicit_vr=implicit, little_endian=True)
    (tmp_path / "series" / "README.txt").write_text("not DICOM: still ignored")
    volume = read_dicom_series(tmp_path / "series")
    assert volume.data.shape == data.shape
    np.testing.assert_array_equal(volume.data, read_dicom_series_of(data, tmp_path / "plain").data)


def read_dicom_series_of(data: np.ndarray, folder: Path):
    write_dicom_series(folder, data, training_affine())
    return read_dicom_series(folder)


def test_vendor_dicom_file_shipped_with_pydicom_is_read_with_its_geometry(tmp_path):
    from pydicom.data import get_testdata_file

    source = Path(get_testdata_file("MR_small.dcm"))  # a real scanner's MR slice, shipped as pydicom test data
    shutil.copy(source, tmp_path / "IM0001")
    volume = read_volume(tmp_path)
    ds = pydicom.dcmread(source)
    assert volume.shape == (ds.Columns, ds.Rows, 1)
    np.testing.assert_array_equal(volume.data[:, :, 0], ds.pixel_array.T.astype(np.float32))
    row_spacing, col_spacing = (float(v) for v in ds.PixelSpacing)
    expected = np.diag([-1.0, -1.0, 1.0]) @ np.column_stack([
        np.asarray(ds.ImageOrientationPatient[:3], float) * col_spacing,
        np.asarray(ds.ImageOrientationPatient[3:], float) * row_spacing])
    np.testing.assert_allclose(volume.affine[:3, :2], expected)
    np.testing.assert_allclose(volume.affine[:3, 3], [83.9063, 91.2, 6.6406])  # LPS (-83.9, -91.2, 6.6) in RAS
    study = assemble_study(volume)  # 64x64 at 0.3125 mm: resampled up to the models' grid, and said
    assert study.images.shape == (1, 256, 256, 3) and 200 < study.images.max() <= 255
    assert any("resampled to 256x256" in w for w in study.warnings)


def test_inplane_resampling_round_trips_for_other_grids():
    rng = np.random.default_rng(1)
    native = np.zeros((3, 180, 200), bool)
    native[:, 40:120, 60:150] = rng.random((3, 80, 90)) > 0.01
    for row_mm, col_mm in ((1.2, 0.8), (0.5, 0.5), (1.0, 1.0)):
        grid = InPlaneGrid(180, 200, row_mm, col_mm)
        model = grid.to_model(native.astype(np.float32))
        assert model.shape == (3, 256, 256)
        back = grid.mask_to_native(model >= 0.5)
        overlap = (back & native).sum() / (back | native).sum()
        assert overlap > 0.95, (row_mm, col_mm, overlap)
    # A field of view padded to a square keeps its aspect: a square pad of 100 mm each way becomes a square.
    grid = InPlaneGrid(100, 50, 1.0, 2.0)
    assert grid.padded == (100, 50) and grid.offsets == (0, 0)


# ---- refusals: each names the file --------------------------------------------------------------------------


def test_dicom_folder_with_two_series_or_none_is_refused(patient, tmp_path):
    images, _ = patient
    _dicom_12bit(images[:4], tmp_path / "mixed", seed=1)
    _dicom_12bit(images[:4], tmp_path / "mixed", seed=2)
    with pytest.raises(StudyError, match=r"mixed: holds 2 DICOM series"):
        read_volume(tmp_path / "mixed")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "README.txt").write_text("not dicom")
    with pytest.raises(StudyError, match=r"empty: no DICOM image series"):
        read_volume(tmp_path / "empty")


def test_gap_and_duplicate_slices_are_refused(patient, tmp_path):
    images, _ = patient
    paths, _, _ = _dicom_12bit(images, tmp_path / "gap", seed=4)
    positions = {p: pydicom.dcmread(p, stop_before_pixels=True).ImagePositionPatient[2] for p in paths}
    middle = sorted(paths, key=positions.get)[10]
    middle.unlink()
    with pytest.raises(StudyError, match=r"gap in slice positions.*a slice is missing"):
        read_volume(tmp_path / "gap")
    paths, _, _ = _dicom_12bit(images[:5], tmp_path / "dup", seed=5)
    shutil.copy(paths[0], tmp_path / "dup" / "copy_of_first")
    with pytest.raises(StudyError, match="same slice position"):
        read_volume(tmp_path / "dup")


def test_undecodable_and_truncated_pixel_data_are_refused(tmp_path):
    from pydicom.data import get_testdata_file
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEGLosslessSV1

    ds = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    ds.file_meta.TransferSyntaxUID = JPEGLosslessSV1  # JPEG lossless: no decoder plugin installed for it here
    ds.PixelData = encapsulate([b"\xff\xd8\xff\xc3" + bytes(64) + b"\xff\xd9"])
    ds["PixelData"].VR = "OB"
    (tmp_path / "jpeg").mkdir()
    ds.save_as(tmp_path / "jpeg" / "slice.dcm", enforce_file_format=True)
    with pytest.raises(StudyError, match=r"slice\.dcm: pixel data cannot be decoded \(JPEG Lossless"):
        read_volume(tmp_path / "jpeg")
    (tmp_path / "truncated").mkdir()
    shutil.copy(get_testdata_file("MR_truncated.dcm"), tmp_path / "truncated" / "x.dcm")
    with pytest.raises(StudyError, match=r"x\.dcm: pixel data cannot be decoded"):
        read_volume(tmp_path / "truncated")


def test_bad_nifti_files_are_refused(tmp_path):
    affine = training_affine()
    four_d = write_nifti(tmp_path / "four_d.nii.gz", np.zeros((8, 8, 4, 3)), affine)
    with pytest.raises(StudyError, match=r"four_d\.nii\.gz: a 4-D image") as refused:
        read_volume(four_d)
    assert "not a readable" not in str(refused.value)  # said once, not re-wrapped as unreadable
    huge = nib.Nifti1Image(np.zeros((8, 8, 4), np.uint8), affine)
    huge.header.set_data_shape((2048, 2048, 2048))  # a header alone declaring 8.6 billion voxels
    (tmp_path / "huge.nii").write_bytes(huge.header.binaryblock + b"\0" * 4)
    with pytest.raises(StudyError, match=r"huge\.nii: declares 2048 x 2048 x 2048 voxels, over the"):
        read_volume(tmp_path / "huge.nii")
    complex_volume = write_nifti(tmp_path / "complex.nii.gz", np.ones((8, 8, 4)) + 1j, affine, dtype=np.complex64)
    with pytest.raises(StudyError, match=r"complex\.nii\.gz: voxels stored as complex"):
        read_volume(complex_volume)
    single = write_nifti(tmp_path / "one_volume.nii", np.arange(8 * 8 * 4).reshape(8, 8, 4, 1), affine)
    assert read_volume(single).shape == (8, 8, 4)  # a 4-D file holding one volume is that volume
    oblique = affine.copy()
    angle = np.radians(45)
    oblique[:3, :3] = oblique[:3, :3] @ np.array([[1, 0, 0], [0, np.cos(angle), -np.sin(angle)],
                                                   [0, np.sin(angle), np.cos(angle)]])
    with pytest.raises(StudyError, match=r"oblique\.nii\.gz: acquisition is oblique by 45 degrees"):
        read_volume(write_nifti(tmp_path / "oblique.nii.gz", np.ones((8, 8, 4)), oblique))
    tilted = affine.copy()
    tilted[:3, :3] = tilted[:3, :3] @ np.array([[1, 0, 0], [0, np.cos(0.2), -np.sin(0.2)], [0, np.sin(0.2),
                                                                                             np.cos(0.2)]])
    assert read_volume(write_nifti(tmp_path / "tilted.nii.gz", np.ones((8, 8, 4)), tilted)).shape == (8, 8, 4)
    no_orientation = nib.Nifti1Image(np.ones((8, 8, 4), np.uint8), None)
    nib.save(no_orientation, tmp_path / "bare.nii")
    with pytest.raises(StudyError, match=r"bare\.nii: the header holds no orientation"):
        read_volume(tmp_path / "bare.nii")
    (tmp_path / "broken.nii.gz").write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(StudyError, match=r"broken\.nii\.gz: not a readable NIfTI"):
        read_volume(tmp_path / "broken.nii.gz")
    (tmp_path / "slices.tif").write_bytes(b"II*\x00")
    with pytest.raises(StudyError, match=r"slices\.tif: not a NIfTI file"):
        read_volume(tmp_path / "slices.tif")
    constant = write_nifti(tmp_path / "constant.nii.gz", np.full((8, 8, 4), 7.5), affine, dtype=np.float32)
    with pytest.raises(StudyError, match=r"constant\.nii\.gz: every voxel has the same value"):
        load_study(constant)


def test_thick_sagittal_slices_cannot_be_resliced_to_axial(tmp_path):
    # Sagittal 1 x 1 mm images, 5 mm apart: resliced axially the pixels would be 5 x 1 mm.
    data, affine = reorder(np.ones((40, 64, 64)), training_affine((5.0, 1.0, 1.0)), (0, 1, 2), (False,) * 3)
    path = write_nifti(tmp_path / "sagittal_thick.nii.gz", np.random.default_rng(0).random(data.shape), affine,
                       dtype=np.float32)
    with pytest.raises(StudyError, match=r"sagittal_thick\.nii\.gz: .*cannot be resliced"):
        load_study(path)


def test_cli_study_errors_are_one_line_with_exit_2(tmp_path, tiny_models_dir, capsys):
    out = str(tmp_path / "out")
    assert main(["predict", "--pre", str(tmp_path), "--out", out, "--models-dir", str(tiny_models_dir)]) == 2
    assert "either slice files/folders or --flair" in capsys.readouterr().err
    assert main(["predict", "--out", out, "--models-dir", str(tiny_models_dir)]) == 2
    capsys.readouterr()
    (tmp_path / "empty").mkdir()
    assert main(["predict", "--flair", str(tmp_path / "empty"), "--out", out, "--models-dir",
                 str(tiny_models_dir)]) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error" in line]  # the rest is the (empty) progress bar
    assert len(errors) == 1 and "no DICOM image series" in errors[0] and "Traceback" not in err


def test_nifti_and_seg_bytes_match_the_written_files(patient, tmp_path, tiny_cascade):
    images, _ = patient
    _dicom_12bit(images[:6], tmp_path / "series", seed=8)
    prediction = predict_study(tiny_cascade, load_study(tmp_path / "series"), threshold=0.0)
    image = nib.Nifti1Image.from_bytes(nifti_mask_bytes(prediction, compressed=False))
    np.testing.assert_array_equal(np.asarray(image.dataobj), prediction.native_mask())
    seg = pydicom.dcmread(io.BytesIO(dicom_seg_bytes(prediction)))
    assert seg.SegmentSequence[0].SegmentLabel.startswith("FLAIR abnormality")
    assert int(seg.NumberOfFrames) == 6


# ---- uploaded zips ------------------------------------------------------------------------------------------


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as bundle:
        for name, data in members.items():
            bundle.writestr(name, data)
    return buffer.getvalue()


def test_dicom_zip_is_unpacked_inside_the_target_only(patient, tmp_path):
    images, _ = patient
    paths, _, _ = _dicom_12bit(images[:3], tmp_path / "series", seed=9)
    members = {f"../../escape_{k}": p.read_bytes() for k, p in enumerate(paths)}
    members["/abs/notes.txt"] = b"not dicom"
    target = archive.extract_dicom_zip(_zip(members), tmp_path / "unzipped")
    assert sorted(p.name for p in target.iterdir()) == ["00000_escape_0", "00001_escape_1", "00002_escape_2",
                                                        "00003_notes.txt"]
    assert not list(tmp_path.parent.glob("escape_*")) and not (tmp_path / "escape_0").exists()
    assert read_volume(target).shape == (256, 256, 3)
    assert archive.member_file_name(7, "..\\..\\evil dir\\.hidden name") == "00007_hidden_name"
    assert archive.member_file_name(8, "../") == "00008"
    # A damaged member is named by its own file name, which the user can find in the zip.
    members = {f"series/IM{k:04d}": p.read_bytes() for k, p in enumerate(paths)}
    members["series/IM0001"] = members["series/IM0001"][:-1000]  # its pixel data cut short
    target = archive.extract_dicom_zip(_zip(members), tmp_path / "damaged")
    with pytest.raises(StudyError, match=r"00001_IM0001"):
        read_volume(target)
    members["series/IM0001"] = members["series/IM0001"][:400]  # cut before its pixel data: refused, not skipped
    target = archive.extract_dicom_zip(_zip(members), tmp_path / "headless")
    with pytest.raises(StudyError, match=r"00001_IM0001: an image slice without its pixel data"):
        read_volume(target)


def test_zip_bombs_and_oversized_zips_are_refused(tmp_path, monkeypatch):
    with pytest.raises(StudyError, match="possible zip bomb"):
        archive.extract_dicom_zip(_zip({"a.dcm": bytes(50 << 20)}), tmp_path / "bomb", "bomb.zip")
    assert not (tmp_path / "bomb").exists()  # refused before writing anything
    monkeypatch.setattr(archive, "MAX_MEMBERS", 3)
    with pytest.raises(StudyError, match=r"many\.zip: 4 files in the archive"):
        archive.extract_dicom_zip(_zip({f"{k}.dcm": b"x" for k in range(4)}), tmp_path / "many", "many.zip")
    monkeypatch.setattr(archive, "MAX_TOTAL_BYTES", 1000)
    with pytest.raises(StudyError, match="unpacks to"):
        archive.extract_dicom_zip(_zip({"a.dcm": bytes(2000)}), tmp_path / "big", "big.zip")
    with pytest.raises(StudyError, match=r"junk\.zip: not a zip archive"):
        archive.extract_dicom_zip(b"PK not a zip", tmp_path / "junk", "junk.zip")


# ---- dashboard ----------------------------------------------------------------------------------------------


def _study_page(monkeypatch, models_dir: Path):
    from conftest import open_app

    monkeypatch.delenv("BRAINSEG_DATA_DIR", raising=False)
    monkeypatch.setenv("BRAINSEG_MODELS_DIR", str(models_dir))
    return open_app("study")


def _volume_metric(at) -> tuple[float, float]:
    metric = next(m for m in at.metric if m.label.startswith("Tumor volume at "))
    return float(metric.label.removeprefix("Tumor volume at ")), float(metric.value.removesuffix(" mL"))


def test_study_page_opens_an_uploaded_nifti_study(patient, tmp_path, tiny_cascade, monkeypatch):
    images, _ = patient
    paths = _layout_volumes(images, tmp_path, "sagittal-stored axis order", roles=("pre", "flair"))
    at = _study_page(monkeypatch, tiny_cascade.classifier.path.parent)
    assert any("Upload at least the FLAIR" in i.value for i in at.info)
    at.file_uploader(key="study_flair").set_value(("Doe_Jane_FLAIR.nii.gz", paths["flair"].read_bytes(),
                                                   "application/gzip"))
    at.file_uploader(key="study_pre").set_value(("Doe_Jane_T1.nii.gz", paths["pre"].read_bytes(), "application/gzip"))
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    assert any("post-contrast" in w.value and "FLAIR is used" in w.value for w in at.warning)

    expected = predict_study(tiny_cascade, load_study(paths["flair"], pre=paths["pre"]))
    threshold, shown = _volume_metric(at)
    assert shown == pytest.approx(round(expected.tumor_volume_ml(threshold), 2))
    assert expected.tumor_volume_ml(threshold) > 0
    assert at.slider(key="_study_slider").max == len(images)
    before = at.session_state["study_slice_index"]  # opens on the middle slice with a mask
    assert 0 < before < len(images) - 1
    at.button(key="study_next").click().run()  # the viewer moves like the Patients page's
    assert at.session_state["study_slice_index"] == before + 1
    at.slider(key="_study_slider").set_value(3).run()
    assert at.session_state["study_slice_index"] == 2

    at.sidebar.slider(key="_threshold_sidebar").set_value(0.999).run()  # the shared threshold re-gates the study
    threshold, shown = _volume_metric(at)
    at_slider = predict_study(tiny_cascade, load_study(paths["flair"], pre=paths["pre"]), threshold=0.999)
    assert threshold == 0.999 and shown == pytest.approx(round(at_slider.tumor_volume_ml(), 2))

    buttons = {b.label: b for b in at.get("download_button")}
    assert "Mask, NIfTI (FLAIR grid)" in buttons and "Mask, DICOM SEG" not in buttons
    assert "Doe" not in " ".join(str(b.proto) for b in buttons.values())

    held = at.session_state["_held_study"]
    at.switch_page("pages/model_card.py").run()  # leaving the page empties its upload boxes...
    at.switch_page("pages/study.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("uploaded earlier in this session" in i.value for i in at.info)  # ...but the study is kept,
    assert at.session_state["_held_study"] is held  # not read or run again,
    assert _volume_metric(at) == (threshold, shown) and at.session_state["study_slice_index"] == 2  # where it was
    at.button(key="forget_study").click().run()
    assert any("Upload at least the FLAIR" in i.value for i in at.info)


def test_study_view_settings_survive_a_visit_to_another_page(patient, tmp_path, tiny_cascade, monkeypatch):
    images, _ = patient
    paths = _layout_volumes(images, tmp_path, "LPS as trained", roles=("flair",))
    at = _study_page(monkeypatch, tiny_cascade.classifier.path.parent)
    at.file_uploader(key="study_flair").set_value(("flair.nii.gz", paths["flair"].read_bytes(), "application/gzip"))
    at.run()
    at.selectbox(key="study_view").set_value("RGB composite").run()
    at.radio(key="study_style").set_value("contour").run()
    at.slider(key="study_opacity").set_value(0.8).run()
    at.toggle(key="study_correction_mode").set_value(True).run()
    at.switch_page("pages/model_card.py").run()
    at.switch_page("pages/study.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.toggle(key="study_correction_mode").value is True
    assert at.selectbox(key="study_view").value == "RGB composite"
    assert at.radio(key="study_style").value == "contour"
    assert at.slider(key="study_opacity").value == pytest.approx(0.8)


def test_study_page_takes_a_zipped_dicom_series_and_offers_the_seg(patient, tmp_path, tiny_cascade, monkeypatch):
    images, _ = patient
    paths, _, _ = _dicom_12bit(images[:8], tmp_path / "series", seed=11)
    bundle = _zip({f"DOE_JANE/series/{p.name}": p.read_bytes() for p in paths})
    at = _study_page(monkeypatch, tiny_cascade.classifier.path.parent)
    at.file_uploader(key="study_flair").set_value(("Doe_Jane_study.zip", bundle, "application/zip")).run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    labels = [b.label for b in at.get("download_button")]
    assert "Mask, DICOM SEG" in labels and "Mask, NIfTI (FLAIR grid)" in labels
    at.file_uploader(key="study_flair").set_value(("junk.zip", b"not a zip", "application/zip")).run()
    assert any("junk.zip: not a zip archive" in e.value for e in at.error)


# ---- corrections on a study ---------------------------------------------------------------------------------


def test_corrections_replace_the_ai_mask_on_their_slices_only(patient, tmp_path, tiny_cascade):
    images, _ = patient
    layout = "RAS (neurological)"
    paths = _layout_volumes(images, tmp_path, layout, roles=("flair",))
    prediction = predict_study(tiny_cascade, load_study(paths["flair"]))
    threshold = tiny_cascade.default_threshold
    ai = prediction.result.masks(threshold)
    k = int(np.argmax(ai.sum(axis=(1, 2))))  # the AI's largest slice: the correction removes most of it
    drawn = np.zeros((256, 256), bool)
    drawn[100:120, 60:90] = True
    expected = ai.copy()
    expected[k] = drawn
    native = prediction.native_mask(threshold, {k: drawn})
    np.testing.assert_array_equal(native, _by_hand(expected, layout).astype(np.uint8))
    assert prediction.tumor_volume_ml(threshold, {k: drawn}) == pytest.approx(expected.sum() * 1.0 * 1.0 * 3.3 / 1000)
    assert prediction.tumor_volume_ml(threshold, {k: drawn}) != prediction.tumor_volume_ml(threshold)
    written = nib.Nifti1Image.from_bytes(gzip.decompress(nifti_mask_bytes(prediction, threshold,
                                                                          corrections={k: drawn})))
    np.testing.assert_array_equal(written.get_fdata(), native)


def test_a_study_correction_is_saved_under_the_study_digest_and_left_out_of_kaggle_exports(
        patient, tmp_path, tiny_cascade, monkeypatch):
    from brainseg.app.correction import BRUSH
    from brainseg.errors import DataError
    from brainseg.review.corrections import STUDY_PREFIX, export_kaggle
    from brainseg.review.review_log import ReviewLog

    images, _ = patient
    paths = _layout_volumes(images, tmp_path, "LPS as trained", roles=("flair",))
    store = tmp_path / "review.sqlite"
    monkeypatch.setenv("BRAINSEG_REVIEW_DB", str(store))
    at = _study_page(monkeypatch, tiny_cascade.classifier.path.parent)
    flair_bytes = paths["flair"].read_bytes()
    at.file_uploader(key="study_flair").set_value(("Doe_Jane_FLAIR.nii.gz", flair_bytes, "application/gzip"))
    at.run()
    at.sidebar.text_input(key="reviewer_name").set_value("Dr Ann").run()
    at.toggle(key="study_correction_mode").set_value(True).run()
    assert not at.exception, [e.value for e in at.exception]
    index = int(at.session_state["study_slice_index"])
    editor = at.session_state["correction_state"]["editor"]
    start = editor.mask.copy()
    row, column = np.argwhere(~start)[len(np.argwhere(~start)) // 2]  # a pixel the AI left out (random tiny models)
    editor.stamp([(float(column), float(row))], 8, BRUSH)  # what a click on the chart does
    at.button(key="correction_save").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("Saved version 1" in s.value for s in at.success)

    saved = ReviewLog(str(store)).corrections()
    key = STUDY_PREFIX + hashlib.sha256(flair_bytes).hexdigest()[:16]
    assert saved[["patient_id", "slice", "version", "reviewer"]].values.tolist() == [[key, index + 1, 1, "Dr Ann"]]
    assert "Doe" not in key and saved["slice_file"].iloc[0] == f"slice_{index + 1:03d}"
    mask = ReviewLog(str(store)).correction_mask(int(saved["id"].iloc[0]))
    assert mask.sum() > start.sum() and not (start & ~mask).any()
    assert "study_download_corrected" in {b.key for b in at.get("download_button")}
    at.toggle(key="study_correction_mode").set_value(False).run()  # the saved correction still counts when off
    assert "study_download_corrected" in {b.key for b in at.get("download_button")}
    volume = next(m for m in at.metric if m.label == "Tumor volume with corrections")
    assert float(volume.value.removesuffix(" mL")) > _volume_metric(at)[1]  # the brush only added pixels
    # The study's slices are in no data folder: the Kaggle export leaves them out instead of failing on them.
    with pytest.raises(DataError, match="no corrections to export"):
        export_kaggle(ReviewLog(str(store)), tmp_path / "export", [DEMO_DIR])
