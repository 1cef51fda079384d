from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import DEMO_COUNTS
from PIL import Image

from brainseg.core.data import load_dataset, load_slices, patient_id_of, read_clinical_table, read_image, scan_dataset
from brainseg.errors import DataError


def test_manifest_counts_on_real_demo_slices(demo_dir):
    manifest, patients = load_dataset(demo_dir)
    assert len(patients) == DEMO_COUNTS["patients"]
    assert len(manifest) == DEMO_COUNTS["slices"]
    assert int(manifest["has_tumor"].sum()) == DEMO_COUNTS["tumor_slices"]
    assert set(manifest["institution"]) == {"CS", "DU", "FG", "HT"}


def test_slices_are_in_numeric_not_text_order(demo_dir):
    manifest = scan_dataset(demo_dir)
    one = manifest[manifest["patient_id"] == "TCGA_CS_6669"]["slice"].tolist()
    assert one == list(range(1, 23))  # text order would put 10 before 2


def test_tumor_pixel_counts_match_the_masks(demo_dir):
    manifest = scan_dataset(demo_dir)
    # Counted independently of brainseg's reader: tifffile decodes the mask files themselves.
    import tifffile

    expected = [int((tifffile.imread(path) > 0).sum()) for path in manifest["mask_path"]]
    assert manifest["tumor_pixels"].tolist() == expected
    assert sum(count > 0 for count in expected) == 44  # the demo's tumor slices


def test_patient_table_joins_clinical_fields(demo_dir):
    _, patients = load_dataset(demo_dir)
    assert {"RNASeqCluster", "age_at_initial_pathologic", "n_slices", "n_tumor_slices"} <= set(patients.columns)
    assert patients["age_at_initial_pathologic"].notna().all()
    assert patients.set_index("patient_id").loc["TCGA_DU_8165", "n_tumor_slices"] == 5


def test_patient_id_of_case():
    assert patient_id_of("TCGA_CS_4942_19970222") == "TCGA_CS_4942"


def _first_slice(folder: Path) -> Path:
    case = sorted(p for p in folder.iterdir() if p.is_dir())[0]
    return case / f"{case.name}_1.tif"


def test_slice_without_mask_is_named(demo_copy):
    image = _first_slice(demo_copy)
    image.with_name(image.stem + "_mask.tif").unlink()
    with pytest.raises(DataError, match=rf"{image.name}: slice has no mask"):
        scan_dataset(demo_copy)


def test_mask_without_slice_is_named(demo_copy):
    image = _first_slice(demo_copy)
    image.unlink()
    with pytest.raises(DataError, match="mask has no slice"):
        scan_dataset(demo_copy)


def test_truncated_slice_is_named_on_read(demo_copy):
    image = _first_slice(demo_copy)
    image.write_bytes(image.read_bytes()[:3000])
    with pytest.raises(DataError, match=image.name):
        read_image(image)


def test_garbage_slice_is_named_at_scan(demo_copy):
    image = _first_slice(demo_copy)
    image.write_bytes(b"this is not a tiff")
    with pytest.raises(DataError, match=rf"{image.name}: not a readable image"):
        scan_dataset(demo_copy)


def test_empty_file_is_named(demo_copy):
    image = _first_slice(demo_copy)
    image.write_bytes(b"")
    with pytest.raises(DataError, match="empty"):
        read_image(image)


def test_wrong_shape_slice_is_named(demo_copy):
    image = _first_slice(demo_copy)
    Image.fromarray(np.zeros((128, 128, 3), np.uint8)).save(image, format="TIFF")
    with pytest.raises(DataError, match=r"expected a 256x256 RGB image, got 128x128 RGB"):
        scan_dataset(demo_copy)


def test_wrong_dtype_slice_is_named(demo_copy):
    image = _first_slice(demo_copy)
    Image.fromarray(np.zeros((256, 256), np.uint16)).save(image, format="TIFF")
    with pytest.raises(DataError, match=image.name):
        scan_dataset(demo_copy)


def test_manifest_loads_without_data_csv(demo_copy):
    (demo_copy / "data.csv").unlink()
    manifest, patients = load_dataset(demo_copy)
    assert len(manifest) == DEMO_COUNTS["slices"]
    assert "RNASeqCluster" not in patients.columns


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"", "not a readable CSV"), (b"a,b\n1,2\n", "no 'Patient' column"),
     (b"Patient,x\nTCGA_CS_6669,1\nTCGA_CS_6669,2\n", "patient listed twice"),
     (b'Patient,x\n"unclosed,1\n', "not a readable CSV")],
)
def test_malformed_data_csv_is_named(demo_copy, content, message):
    (demo_copy / "data.csv").write_bytes(content)
    with pytest.raises(DataError, match=message):
        load_dataset(demo_copy)
    with pytest.raises(DataError, match=r"data\.csv"):
        read_clinical_table(demo_copy / "data.csv")


def test_missing_folder_and_folder_without_patients(tmp_path):
    with pytest.raises(DataError, match="not found"):
        scan_dataset(tmp_path / "nope")
    with pytest.raises(DataError, match="no patient folders"):
        scan_dataset(tmp_path)


def test_patient_folder_without_slices(demo_copy):
    (demo_copy / "TCGA_XX_0000_20000101").mkdir()
    with pytest.raises(DataError, match="TCGA_XX_0000_20000101: patient folder holds no slices"):
        scan_dataset(demo_copy)


def test_load_slices_shapes(demo_dir):
    manifest = scan_dataset(demo_dir).head(3)
    images, masks = load_slices(manifest)
    assert images.shape == (3, 256, 256, 3) and images.dtype == np.uint8
    assert masks.shape == (3, 256, 256) and masks.dtype == bool
    assert isinstance(manifest, pd.DataFrame)
