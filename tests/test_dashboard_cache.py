"""The dashboard's per-patient caches: one shared, read-only result per patient, keyed by the patient's files."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import streamlit as st
from PIL import Image

from brainseg.core.data import scan_dataset
from brainseg.inference import cascade as cascade_module


@pytest.fixture
def dash(tiny_models_dir, monkeypatch):
    """The dashboard module on the tiny models, with empty caches before and after (streamlit keeps them per
    process; outside a runtime it only warns "No runtime found")."""
    from brainseg.app import dashboard

    monkeypatch.setenv("BRAINSEG_MODELS_DIR", str(tiny_models_dir))
    monkeypatch.delenv("BRAINSEG_STORE", raising=False)
    st.cache_data.clear()
    st.cache_resource.clear()
    yield dashboard
    st.cache_data.clear()
    st.cache_resource.clear()


def _tumor_and_clear_slices(data_dir) -> tuple[str, int, int]:
    """A demo patient, the index of one of its tumor slices and of one tumor-free slice."""
    manifest = scan_dataset(data_dir)
    for patient, rows in manifest.groupby("patient_id"):
        tumor = np.flatnonzero(rows["tumor_pixels"].to_numpy() > 0)
        clear = np.flatnonzero(rows["tumor_pixels"].to_numpy() == 0)
        if len(tumor) and len(clear):
            return str(patient), int(tumor[0]), int(clear[0])
    raise AssertionError("no demo patient with both tumor and tumor-free slices")


def test_a_patient_read_twice_is_one_shared_read_only_result(dash, demo_copy, monkeypatch):
    """A cache hit is the same object, its masks computed once (small-component removal is not rerun per hit),
    and its arrays refuse writes (a page changing one would change every session's view)."""
    removals = []
    real_removal = cascade_module.remove_small_components

    def counted(*args, **kwargs):
        removals.append(1)
        return real_removal(*args, **kwargs)

    monkeypatch.setattr(cascade_module, "remove_small_components", counted)
    patient, _, _ = _tumor_and_clear_slices(demo_copy)
    first = dash.get_patient_prediction(str(demo_copy), patient, dash.models_key())
    first_masks = dash.patient_result(first).masks(0.5)
    second = dash.get_patient_prediction(str(demo_copy), patient, dash.models_key())
    second_masks = dash.patient_result(second).masks(0.5)

    assert second["result"] is first["result"]
    assert np.array_equal(first_masks, second_masks)
    assert len(removals) == 1
    result = dash.patient_result(second)
    for array in (second["images"], second["truth"], result.maps, result.classifier_probabilities,
                  result.probabilities, result.segmenter_masks()):
        with pytest.raises(ValueError, match="read-only"):
            array[0] = 0
    with pytest.raises(TypeError):
        second["images"] = None  # the shared mapping itself cannot be rebound either


@pytest.mark.parametrize("with_store", [False, True], ids=["live", "prediction store"])
def test_a_slice_rewritten_on_disk_is_read_again(dash, demo_copy, tmp_path, monkeypatch, with_store):
    """Rewriting one slice's image and mask (new bytes, new mtime) shows the new image, truth and score next time:
    the caches are keyed by the files, and the prediction store's own check is not hidden behind them."""
    if with_store:
        monkeypatch.setenv("BRAINSEG_STORE", str(tmp_path / "store"))
    patient, tumor, clear = _tumor_and_clear_slices(demo_copy)
    key = dash.models_key()
    before = dash.get_patient_prediction(str(demo_copy), patient, key)
    stats_before = dash.get_patient_stats(str(demo_copy), patient, key)
    assert stats_before["truth_pixels"].iloc[clear] == 0 < stats_before["truth_pixels"].iloc[tumor]

    rows = before["rows"]
    for column in ("image_path", "mask_path"):  # the tumor slice's files copied over the tumor-free slice's
        target = rows[column].iloc[clear]
        shutil.copyfile(rows[column].iloc[tumor], target)
        later = os.stat(target).st_mtime_ns + 2_000_000_000  # a clearly newer mtime, whatever the clock's step
        os.utime(target, ns=(later, later))

    after = dash.get_patient_prediction(str(demo_copy), patient, key)
    assert np.array_equal(after["images"][clear], before["images"][tumor])
    assert np.array_equal(after["truth"][clear], before["truth"][tumor])
    scores_before = dash.patient_result(before).classifier_probabilities
    assert dash.patient_result(after).classifier_probabilities[clear] == pytest.approx(scores_before[tumor],
                                                                                        abs=1e-5)
    stats_after = dash.get_patient_stats(str(demo_copy), patient, key)
    assert stats_after["truth_pixels"].iloc[clear] == stats_before["truth_pixels"].iloc[tumor]
    assert stats_after["probability"].iloc[clear] == pytest.approx(
        float(dash.patient_result(after).probabilities[clear]), abs=1e-5)


def test_cases_and_slices_removed_from_the_folder_show_at_once(dash, demo_copy, monkeypatch):
    """The folder scan is cached (it reads every mask), but keyed by the folders' times: a case or a slice taken
    away is gone on the next run, not when the file recheck interval is over."""
    scans = _counted_case_scans(dash, monkeypatch)
    _, patients = dash.get_dataset(str(demo_copy))
    dash.get_dataset(str(demo_copy))
    assert len(scans) == len(patients)  # each case read once, then cached while nothing changes
    case_dirs = sorted(p for p in demo_copy.iterdir() if p.is_dir())
    shutil.rmtree(case_dirs[0])
    os.utime(demo_copy, ns=(1, 1))  # whatever the file system's time step: the folder's time moved
    after, after_patients = dash.get_dataset(str(demo_copy))
    assert len(after_patients) == len(patients) - 1
    first = after.iloc[-1]  # one slice of another case taken away, image and mask
    for column in ("image_path", "mask_path"):
        os.remove(first[column])
    os.utime(case_dirs[-1], ns=(1, 1))  # whatever the file system's time step: the folder's time moved
    assert len(dash.get_dataset(str(demo_copy))[0]) == len(after) - 1
    assert scans[len(patients):] == [str(case_dirs[-1])]  # the other cases came from the cache


def test_a_mask_rewritten_in_place_shows_once_files_are_rechecked_and_only_its_case_is_read(dash, demo_copy,
                                                                                           monkeypatch):
    """A mask rewritten under its own name changes no folder's time; the files' sizes and times, looked at every
    FILE_RECHECK_SECONDS, find it, and only its case is scanned again."""
    patient, tumor_row, _ = _tumor_and_clear_slices(demo_copy)
    before, patients = dash.get_dataset(str(demo_copy))
    rows = before[before["patient_id"] == patient]
    mask_path = rows["mask_path"].iloc[tumor_row]
    Image.fromarray(np.zeros((256, 256), np.uint8)).save(mask_path)  # the reader took the tumor out
    folder_times = [(p, p.stat().st_mtime_ns) for p in (demo_copy, *demo_copy.iterdir())]
    for path, mtime in folder_times:  # in place: no folder's time may tell it
        os.utime(path, ns=(mtime, mtime))

    scans = _counted_case_scans(dash, monkeypatch)
    dash.case_stamps.clear()  # as when FILE_RECHECK_SECONDS have passed
    after, after_patients = dash.get_dataset(str(demo_copy))
    assert scans == [str(Path(mask_path).parent)]
    changed = after.set_index("mask_path").loc[mask_path]
    assert not changed["has_tumor"] and changed["tumor_pixels"] == 0
    counts = after_patients.set_index("patient_id")["n_tumor_slices"]
    assert counts[patient] == patients.set_index("patient_id")["n_tumor_slices"][patient] - 1
    others = before["patient_id"] != patient
    pd.testing.assert_frame_equal(after[others.to_numpy()], before[others])


def _counted_case_scans(dash, monkeypatch) -> list[str]:
    """The case folders the dashboard scans from now on, in order."""
    scans: list[str] = []
    real_scan = dash.scan_case
    monkeypatch.setattr(dash, "scan_case", lambda case_dir: scans.append(str(case_dir)) or real_scan(case_dir))
    return scans


def test_a_clinical_table_rewritten_in_place_shows_on_the_next_run(dash, demo_copy, monkeypatch):
    """data.csv's own time is in the folder signature: its fields change in the patient table at once, with no
    case scanned again."""
    csv = demo_copy / "data.csv"
    _, patients = dash.get_dataset(str(demo_copy))
    table = pd.read_csv(csv)
    table["gender"] = 9.0
    table.to_csv(csv, index=False)
    os.utime(csv, ns=(1, 1))  # whatever the file system's time step: the table's time moved
    scans = _counted_case_scans(dash, monkeypatch)
    _, after = dash.get_dataset(str(demo_copy))
    assert scans == []
    assert (patients["gender"] != 9.0).any()
    assert (after["gender"] == 9.0).all()
