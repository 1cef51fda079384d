"""Uploaded slices of one case are read together as a volume, as the patient pages read a patient."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import DEMO_DIR, MODELS_DIR

from brainseg.core.data import load_slices, scan_dataset
from brainseg.inference.cascade import Cascade, slice_scores
from brainseg.inference.predict import (
    NEIGHBOURS_READ,
    SCORED_ALONE,
    predict_files,
    predict_uploads,
    upload_slice_numbers,
)


def test_slice_numbers_keep_each_case_together_and_every_case_apart():
    names = ["a_1.tif", "a_2.tif", "a_4.tif", "b_2.tif", "notes.png", "b_3.tif"]
    # a: 1, 2, 4 keep their gaps (0, 1, 3); b starts 2 past a's last (5, 6); the unnumbered file 2 past b.
    assert upload_slice_numbers(names).tolist() == [0, 1, 3, 5, 8, 6]
    # A model reading 2 slices each side: cases 3 apart, so a missing neighbour never reaches the next case.
    assert upload_slice_numbers(names, reach=2).tolist() == [0, 1, 3, 6, 10, 7]
    # One case holding slice 2 twice (c_02, c_2): which is slice 1's neighbour is ambiguous, so each is read alone.
    assert upload_slice_numbers(["c_1.tif", "c_02.tif", "c_2.tif"]).tolist() == [0, 2, 4]
    # '12.tif' is not dataset-named (no case), so it is not slice 12 of case '12'; '²' is not a slice number.
    assert upload_slice_numbers(["12.tif", "12_11.tif", "a_².tif"]).tolist() == [0, 2, 4]
    # The same case name in two folders is two volumes.
    assert upload_slice_numbers(["s_1.tif", "s_2.tif"], folders=["patA", "patB"]).tolist() == [0, 2]
    assert upload_slice_numbers(["s_1.tif", "s_2.tif"], folders=["patA", "patA"]).tolist() == [0, 1]
    assert upload_slice_numbers([]).tolist() == []


def test_predict_files_reads_each_folder_as_its_own_volume(tmp_path, shipped):
    rows = scan_dataset(DEMO_DIR).query("patient_id == 'TCGA_CS_6669'").sort_values("slice").reset_index(drop=True)
    for folder, position in (("patA", 10), ("patB", 11)):  # slices 1 and 2 by name, of different folders
        (tmp_path / folder).mkdir()
        (tmp_path / folder / f"s_{position - 9}.tif").write_bytes(Path(rows.loc[position, "image_path"]).read_bytes())
    table, _ = predict_files(shipped, [tmp_path / "patA", tmp_path / "patB"], tmp_path / "out", 0.5)
    assert (table["notes"].str.contains(SCORED_ALONE, regex=False)).all() == bool(shipped.neighbour_reach)


@pytest.fixture(scope="module")
def shipped():
    return Cascade.from_dir(MODELS_DIR)


@pytest.fixture(scope="module")
def lifted_slice(shipped):
    """A demo slice whose neighbours lift its score the most, its patient's rows, and its position there."""
    if not shipped.neighbour_reach:
        pytest.skip("the shipped cascade reads no neighbours")
    manifest = scan_dataset(DEMO_DIR)
    best = None
    for _, rows in manifest.groupby("patient_id"):
        rows = rows.sort_values("slice").reset_index(drop=True)
        result = shipped.predict(load_slices(rows)[0], rows["slice"].to_numpy())
        alone = slice_scores(result.classifier_probabilities, result.maps, "classifier+segmenter")
        lift = result.probabilities - alone
        k = int(np.argmax(lift[1:-1])) + 1  # a slice with a neighbour on each side
        if best is None or lift[k] > best[0]:
            best = (lift[k], rows, k, result.probabilities[k], alone[k])
    assert best[0] > 0.01, "no demo slice is lifted by its neighbours: this test would show nothing"
    return best[1:]


def _upload(rows, positions) -> list[tuple[str, bytes]]:
    return [(f"{rows.loc[i, 'case']}_{rows.loc[i, 'slice']}.tif", Path(rows.loc[i, "image_path"]).read_bytes())
            for i in positions]


def test_a_slice_uploaded_with_its_neighbours_scores_as_in_its_patient(shipped, lifted_slice):
    rows, k, in_volume, alone = lifted_slice
    prediction = predict_uploads(shipped, _upload(rows, [k - 1, k, k + 1]), shipped.default_threshold)
    table = prediction.table().set_index("file")
    name = f"{rows.loc[k, 'case']}_{rows.loc[k, 'slice']}.tif"
    assert table.loc[name, "slice_score"] == pytest.approx(in_volume, abs=1e-5)
    assert table.loc[name, "slice_score"] > alone + 0.01
    below, above = rows.loc[k - 1, "slice"], rows.loc[k + 1, "slice"]
    assert NEIGHBOURS_READ.format(f"{below}, {above}") in table.loc[name, "notes"]


def test_a_slice_uploaded_alone_is_scored_alone_and_says_so(shipped, lifted_slice):
    rows, k, _, alone = lifted_slice
    prediction = predict_uploads(shipped, _upload(rows, [k]), shipped.default_threshold)
    row = prediction.table().iloc[0]
    assert row["slice_score"] == pytest.approx(alone, abs=1e-5)
    assert SCORED_ALONE in row["notes"]
