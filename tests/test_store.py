"""The prediction store: same outputs as the live cascade (within the quantisation step), never a stale entry,
atomic writes, resumable `brainseg score`, and store-backed `brainseg evaluate` equal to the live one."""

from __future__ import annotations

import json
import os
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
from conftest import DEMO_DIR

from brainseg.cli import main
from brainseg.core.data import load_slices, scan_dataset
from brainseg.core.networks import SEGMENTER_OUTPUT
from brainseg.evaluation.evaluate import evaluate
from brainseg.inference.cascade import Cascade, CascadeResult
from brainseg.inference.store import (
    QUANT_STEPS,
    InputIdentity,
    ModelsKey,
    PredictionStore,
    StoreError,
    dequantise,
    quantise,
)

HALF_STEP = 0.5 / QUANT_STEPS + 1e-7  # the quantisation error bound, plus float32 rounding of the division


@pytest.fixture(scope="module")
def tiny_cascade(tiny_models_dir) -> Cascade:
    return Cascade.from_dir(tiny_models_dir)


@pytest.fixture(scope="module")
def confident_models_dir(tiny_models_dir, tmp_path_factory) -> Path:
    """The tiny models with the segmenter's last layer (a 1x1 sigmoid convolution) scaled up 10^4 around the
    median of its logits on a demo patient: random but confident maps (nearly all pixels exactly 0 or 1, about
    half of each), so no pixel sits within a quantisation step of the mask cut and the store and the live
    cascade must agree exactly, not just within the step; centring keeps the maps from being all empty or all
    full, whatever the random weights."""
    import keras

    from brainseg.core.preprocess import resize_images, scale_images

    folder = tmp_path_factory.mktemp("confident_models")
    for name in ("classifier.keras", "classifier.json", "segmenter.json"):
        shutil.copy(tiny_models_dir / name, folder / name)
    segmenter = keras.models.load_model(tiny_models_dir / "segmenter.keras", compile=False)
    last = segmenter.get_layer(SEGMENTER_OUTPUT)
    kernel, bias = last.get_weights()
    images = load_slices(_patient_rows(DEMO_DIR, 0))[0]
    features = keras.Model(segmenter.inputs, last.input)(scale_images(resize_images(images, 32), "zscore"))
    logits = np.tensordot(np.asarray(features), kernel[0, 0], axes=1) + bias
    last.set_weights([kernel * 1e4, (bias - np.median(logits)) * 1e4])
    segmenter.save(folder / "segmenter.keras")
    return folder


def _patient_rows(folder: Path, index: int = 0):
    manifest = scan_dataset(folder)
    patient = manifest["patient_id"].unique()[index]
    return manifest[manifest["patient_id"] == patient]


def test_stored_outputs_equal_live_ones_within_the_quantisation_step(demo_dir, tiny_cascade, tmp_path):
    rows = _patient_rows(demo_dir, 1)
    images = load_slices(rows)[0]
    live = tiny_cascade.predict(images)
    store = PredictionStore(tmp_path / "store")
    first = store.score(tiny_cascade, rows, images)
    stored = store.result(tiny_cascade, rows)
    assert stored is not None
    # The first view (just scored) and every later read are the same numbers.
    assert np.array_equal(first.maps, stored.maps) and np.array_equal(first.probabilities, stored.probabilities)
    assert np.array_equal(stored.classifier_probabilities, live.classifier_probabilities)  # kept as float32
    assert stored.maps.shape == live.maps.shape == (len(rows), 256, 256)
    assert np.abs(stored.maps - live.maps).max() <= HALF_STEP
    # A mask pixel may differ only where the live probability lies within the step of the cut.
    differ = stored.segmenter_masks() != live.segmenter_masks()
    near_cut = np.abs(live.maps - live.mask_threshold) <= HALF_STEP
    assert not (differ & ~near_cut).any()
    for threshold in (0.0, 0.3, 0.5, 0.7):
        same_slices = ~differ.any(axis=(1, 2))
        assert np.array_equal(stored.decisions(threshold)[same_slices], live.decisions(threshold)[same_slices])
        assert np.array_equal(stored.gate(threshold), live.gate(threshold))


def test_a_stored_result_gates_on_its_volumes_slice_numbers(demo_dir, tiny_cascade, tmp_path, monkeypatch):
    rows = _patient_rows(demo_dir, 1)
    store = PredictionStore(tmp_path / "store")
    store.score(tiny_cascade, rows)
    stored = store.result(tiny_cascade, rows)
    assert np.array_equal(stored.slice_numbers, rows["slice"].to_numpy())
    lifted = CascadeResult(stored.classifier_probabilities, stored.maps, slice_score="classifier+segmenter+neighbours",
                           slice_numbers=stored.slice_numbers)
    # The rules are applied when read (patched: the cascade is shared by this module's tests).
    monkeypatch.setattr(tiny_cascade, "slice_score", "classifier+segmenter+neighbours")
    assert np.array_equal(store.result(tiny_cascade, rows).probabilities, lifted.probabilities)


def test_quantisation_round_trip_error_is_half_a_step():
    values = np.random.default_rng(0).random((3, 8, 8)).astype(np.float32)
    restored = dequantise(quantise(values))
    assert np.abs(restored - values).max() <= HALF_STEP
    assert quantise(np.array([0.0, 1.0, 1.5, -0.2])).tolist() == [0, QUANT_STEPS, QUANT_STEPS, 0]


def test_entries_are_misses_for_other_models_or_changed_slices(demo_copy, tiny_cascade, tmp_path):
    rows = _patient_rows(demo_copy)
    store = PredictionStore(tmp_path / "store")
    store.score(tiny_cascade, rows)
    models, patient = ModelsKey.of(tiny_cascade), rows["patient_id"].iloc[0]
    assert store.read(models, patient, InputIdentity.of(rows)) is not None

    # Another weights file (same 16-character folder prefix even): a miss, checked on the full hash.
    other = ModelsKey(models.classifier[:16] + "0" * 48, models.segmenter)
    assert store.read(other, patient, InputIdentity.of(rows)) is None
    # A touched slice (same bytes, new mtime) is a miss ...
    first = Path(rows["image_path"].iloc[3])
    stat = first.stat()
    os.utime(first, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert store.result(tiny_cascade, rows) is None
    # ... and so is a rewritten one, once rescored the entry is valid again.
    store.score(tiny_cascade, rows)
    assert store.result(tiny_cascade, rows) is not None
    first.write_bytes(Path(rows["image_path"].iloc[4]).read_bytes())
    assert store.result(tiny_cascade, rows) is None
    # A slice fewer is a miss too.
    assert store.result_or_score(tiny_cascade, rows) is not None
    assert store.result(tiny_cascade, rows.iloc[:-1]) is None


def test_entries_made_with_other_preprocessing_are_misses(demo_dir, tiny_cascade, tmp_path, monkeypatch):
    import brainseg.inference.store as store_module

    rows = _patient_rows(demo_dir, 3)
    store = PredictionStore(tmp_path / "store")
    store.score(tiny_cascade, rows)
    assert store.result(tiny_cascade, rows) is not None
    monkeypatch.setattr(store_module, "PREPROCESSING_VERSION", store_module.PREPROCESSING_VERSION + 1)
    assert store.result(tiny_cascade, rows) is None


def test_a_damaged_entry_is_a_miss_and_gets_rescored(demo_dir, tiny_cascade, tmp_path):
    rows = _patient_rows(demo_dir, 3)
    store = PredictionStore(tmp_path / "store")
    store.score(tiny_cascade, rows)
    path = store.path(ModelsKey.of(tiny_cascade), rows["patient_id"].iloc[0])
    path.write_bytes(path.read_bytes()[:1000])  # truncated, e.g. by a full disk or a copy cut short
    assert store.result(tiny_cascade, rows) is None
    assert store.result_or_score(tiny_cascade, rows) is not None
    assert store.result(tiny_cascade, rows) is not None


def test_a_crash_mid_write_leaves_the_old_entry_and_no_temporary_file(demo_dir, tiny_cascade, tmp_path, monkeypatch):
    rows = _patient_rows(demo_dir, 3)
    store = PredictionStore(tmp_path / "store")
    store.score(tiny_cascade, rows)
    path = store.path(ModelsKey.of(tiny_cascade), rows["patient_id"].iloc[0])
    before = path.read_bytes()

    def crash(handle, **arrays):
        handle.write(b"PK\x03\x04 half an archive")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez_compressed", crash)
    with pytest.raises(StoreError, match=r"cannot write to the prediction store.*disk full"):
        store.score(tiny_cascade, rows)
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]


def test_concurrent_writers_and_readers_never_see_a_broken_entry(demo_dir, tiny_cascade, tmp_path):
    rows = _patient_rows(demo_dir, 3)
    images = load_slices(rows)[0]
    probabilities, maps = tiny_cascade.predict_native(images)
    store, models, identity = PredictionStore(tmp_path / "store"), ModelsKey.of(tiny_cascade), InputIdentity.of(rows)
    patient = rows["patient_id"].iloc[0]
    store.write(models, patient, identity, probabilities, maps, (256, 256))
    failures: list[str] = []

    def writer() -> None:
        for _ in range(15):
            store.write(models, patient, identity, probabilities, maps, (256, 256))

    def reader() -> None:
        for _ in range(40):
            got = store.read(models, patient, identity)
            if got is None or not np.array_equal(got.probabilities, probabilities):
                failures.append("broken or missing entry seen")

    threads = [threading.Thread(target=writer) for _ in range(2)] + [threading.Thread(target=reader)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures
    assert [p.name for p in store.path(models, patient).parent.iterdir()] == [f"{patient}.npz"]


def test_store_must_be_a_folder(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreError, match="must be a folder"):
        PredictionStore(tmp_path / "file")
    with pytest.raises(StoreError, match="not usable"):
        PredictionStore(tmp_path / "s").path(ModelsKey("a" * 64, "b" * 64), "../escape")


def _score(argv: list[str], capsys) -> dict:
    assert main(["score", *argv]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_score_is_resumable_and_a_second_run_scores_nothing(demo_copy, tiny_models_dir, tmp_path, capsys,
                                                            monkeypatch):
    argv = ["--data", str(demo_copy), "--store", str(tmp_path / "store"), "--models-dir", str(tiny_models_dir)]
    first = _score(argv, capsys)
    assert (first["patients"], first["scored_patients"], first["scored_slices"]) == (4, 4, 115)
    entries = sorted((tmp_path / "store").rglob("*.npz"))
    assert [p.stem for p in entries] == sorted(scan_dataset(demo_copy)["patient_id"].unique())

    # Nothing to do: the models are not even loaded.
    def no_models(*args, **kwargs):
        raise AssertionError("a model was loaded although everything is stored")

    monkeypatch.setattr(Cascade, "from_dir", no_models)
    second = _score(argv, capsys)
    assert (second["already_stored"], second["scored_patients"], second["scored_slices"]) == (4, 0, 0)
    monkeypatch.undo()

    # An interrupted run (one entry lost) and a changed slice: only those two patients are scored again.
    entries[0].unlink()
    changed = next(demo_copy.glob(f"{entries[1].stem}_*/*_1.tif"))
    os.utime(changed)
    third = _score(argv, capsys)
    assert (third["already_stored"], third["scored_patients"]) == (2, 2)


def test_score_bad_input_is_a_one_line_error(tiny_models_dir, tmp_path, capsys, demo_dir):
    assert main(["score", "--data", str(tmp_path / "none"), "--store", str(tmp_path / "s")]) == 2
    assert "dataset folder not found" in capsys.readouterr().err
    (tmp_path / "file").write_text("x")
    assert main(["score", "--data", str(demo_dir), "--store", str(tmp_path / "file"),
                 "--models-dir", str(tiny_models_dir)]) == 2
    err = capsys.readouterr().err.strip()
    assert "must be a folder" in err and len(err.splitlines()) == 1


def _without_latency(report: dict) -> str:
    """The report as canonical JSON without the latency (so NaN figures compare equal to NaN)."""
    return json.dumps({k: v for k, v in report.items() if k != "latency"}, sort_keys=True, default=float)


def test_store_backed_evaluate_equals_live_and_runs_no_model(demo_dir, confident_models_dir, tmp_path, monkeypatch):
    cascade = Cascade.from_dir(confident_models_dir)
    manifest = scan_dataset(demo_dir)
    live = evaluate(cascade, manifest, n_resamples=50)
    store = PredictionStore(tmp_path / "store")
    scoring = evaluate(cascade, manifest, n_resamples=50, store=store)  # missing patients are scored into it
    assert len(list((tmp_path / "store").rglob("*.npz"))) == 4

    def no_model(*args, **kwargs):
        raise AssertionError("the cascade ran although every patient is stored")

    monkeypatch.setattr(cascade, "predict_native", no_model)
    monkeypatch.setattr(cascade, "predict", no_model)
    stored = evaluate(cascade, manifest, n_resamples=50, store=store)
    assert _without_latency(stored) == _without_latency(live)
    assert _without_latency(scoring) == _without_latency(live)
    assert 0 < live["segmenter"]["dice_per_volume"]["mean"] < 1  # not a degenerate all-empty comparison


def test_evaluate_cli_with_store(demo_dir, tiny_models_dir, tmp_path, capsys):
    store = tmp_path / "store"
    _score(["--data", str(demo_dir), "--store", str(store), "--models-dir", str(tiny_models_dir)], capsys)
    out = tmp_path / "report.json"
    assert main(["evaluate", "--data", str(demo_dir), "--models-dir", str(tiny_models_dir), "--store", str(store),
                 "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert (report["n_patients"], report["n_slices"]) == (4, 115)
    assert "prediction store" in report["latency"]["note"]


def test_dashboard_reads_the_store_and_scores_missing_patients(demo_dir, tiny_models_dir, tmp_path, monkeypatch):
    """With $BRAINSEG_STORE the Threshold page scores what the store lacks into it, and later reads it alone."""
    import streamlit as st
    from conftest import open_app
    from streamlit.testing.v1 import AppTest

    store = tmp_path / "store"
    monkeypatch.setenv("BRAINSEG_STORE", str(store))
    monkeypatch.setenv("BRAINSEG_MODELS_DIR", str(tiny_models_dir))
    monkeypatch.setenv("BRAINSEG_DATA_DIR", str(demo_dir))
    st.cache_data.clear()

    def threshold_page() -> AppTest:
        return open_app("threshold")

    first = threshold_page()
    assert len(list(store.rglob("*.npz"))) == 4  # scored on demand into the store
    table = first.dataframe[0].value

    st.cache_data.clear()  # a new server process: nothing cached in memory, the store is still there

    def no_model(*args, **kwargs):
        raise AssertionError("the cascade ran although every patient is stored")

    monkeypatch.setattr(Cascade, "predict_native", no_model)
    second = threshold_page()
    assert second.dataframe[0].value.equals(table)
    second.button(key="preset_seed 0.05").click().run()  # a threshold change re-gates the stored outputs
    assert not second.exception and second.session_state["threshold"] == pytest.approx(0.05)
    assert second.slider(key="_threshold_page").value == pytest.approx(0.05)
    assert second.sidebar.slider(key="_threshold_sidebar").value == pytest.approx(0.05)
    st.cache_data.clear()


def test_dashboard_counts_from_the_store_equal_the_live_cascade(demo_dir, confident_models_dir, tmp_path,
                                                                 monkeypatch):
    """The store path of the Threshold page's per-slice counts (it reads only the tumor slices' masks) gives
    the live cascade's counts."""
    import streamlit as st

    from brainseg.app import dashboard as dash
    from brainseg.evaluation.threshold_analysis import slice_stats

    monkeypatch.setenv("BRAINSEG_STORE", str(tmp_path / "store"))
    monkeypatch.setenv("BRAINSEG_MODELS_DIR", str(confident_models_dir))
    st.cache_data.clear()
    cascade = Cascade.from_dir(confident_models_dir)
    manifest = scan_dataset(demo_dir)
    for patient, rows in manifest.groupby("patient_id"):
        images, truth = load_slices(rows)
        expected = slice_stats(patient, rows["institution"].iloc[0], rows["slice"].to_numpy(),
                               cascade.predict(images), truth)
        shown = dash.get_patient_stats(str(demo_dir), patient, "confident")
        assert shown.equals(expected), patient
        st.cache_data.clear()  # a new server: the counts now come from the store's table
        assert dash.get_patient_stats(str(demo_dir), patient, "confident").equals(expected), patient
    assert len(list((tmp_path / "store").rglob("*.npz"))) == 4
    assert len(list((tmp_path / "store").rglob("*.stats.table"))) == 4
    st.cache_data.clear()


def test_counts_kept_in_the_store_are_reused_and_never_stale(demo_copy, tiny_cascade, tmp_path, monkeypatch):
    from brainseg.core.data import read_mask
    from brainseg.evaluation.stored_stats import stored_slice_stats

    rows = _patient_rows(demo_copy)
    store = PredictionStore(tmp_path / "store")
    counted = stored_slice_stats(store, tiny_cascade, rows)
    assert len(list((tmp_path / "store").rglob("*.stats.table"))) == 1

    def no_recount(*args, **kwargs):
        raise AssertionError("counted again although the stored counts are valid")

    with monkeypatch.context() as patched:
        patched.setattr(PredictionStore, "result_or_score", no_recount)
        assert stored_slice_stats(store, tiny_cascade, rows).equals(counted)
        # Another mask cut, component filter or slice score, or a rewritten mask file, is a miss (which would
        # recount here); each changes one setting of the cascade the counts were made with.
        same = {"mask_threshold": tiny_cascade.mask_threshold, "slice_score": tiny_cascade.slice_score,
                "min_component_pixels": tiny_cascade.min_component_pixels}
        assert stored_slice_stats(store, Cascade(tiny_cascade.classifier, tiny_cascade.segmenter, **same),
                                  rows).equals(counted)
        for changed in ({"mask_threshold": 0.9}, {"min_component_pixels": 50},
                        {"slice_score": "classifier+segmenter+neighbours"}):
            assert next(iter(changed.values())) != same[next(iter(changed))]
            other = Cascade(tiny_cascade.classifier, tiny_cascade.segmenter, **{**same, **changed})
            with pytest.raises(AssertionError, match="counted again"):
                stored_slice_stats(store, other, rows)
        tumor = rows[rows["has_tumor"]].iloc[0]
        empty = rows[~rows["has_tumor"]].iloc[0]
        Path(empty["mask_path"]).write_bytes(Path(tumor["mask_path"]).read_bytes())
        with pytest.raises(AssertionError, match="counted again"):
            stored_slice_stats(store, tiny_cascade, rows)
    recounted = stored_slice_stats(store, tiny_cascade, rows)
    position = rows.index.get_loc(empty.name)
    assert recounted["truth_pixels"].iloc[position] == read_mask(tumor["mask_path"]).sum() > 0
    assert counted["truth_pixels"].iloc[position] == 0
