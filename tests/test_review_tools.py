"""Reviewer power tools in the library: error queue, calibration, TTA uncertainty, Grad-CAM, 3-D view,
exports, case report and the review log."""

from __future__ import annotations

import io
import multiprocessing
import sys
import types
import zipfile

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import tifffile
from conftest import channel_probe

from brainseg.core.preprocess import InputSpec, prepare_images
from brainseg.evaluation.calibration import apply_temperature, fit_temperature, negative_log_likelihood
from brainseg.inference.cascade import Cascade, CascadeResult
from brainseg.reports.export import (
    case_report_html,
    key_slices,
    masks_to_multipage_tiff,
    masks_to_nifti,
    masks_to_png_zip,
)
from brainseg.reports.figures import volume_figure
from brainseg.review.error_queue import KINDS, error_queue, filter_queue
from brainseg.review.review_log import ReviewLog
from brainseg.review.saliency import grad_cam
from brainseg.review.uncertainty import _shift, tta_segment


def _stats():
    return pd.DataFrame({
        "patient_id": ["A", "A", "A", "B", "B", "B"],
        "institution": ["CS", "CS", "CS", "HT", "HT", "HT"],
        "slice": [1, 2, 3, 1, 2, 3],
        "probability": [0.1, 0.9, 0.95, 0.8, 0.7, 0.9],
        "truth_pixels": [50, 40, 0, 100, 0, 30],
        "segmenter_pixels": [45, 0, 20, 100, 0, 30],
        "overlap_pixels": [40, 0, 0, 30, 0, 30],
    })


def test_error_queue_orders_misses_then_false_positives_then_low_dice():
    queue = error_queue(_stats(), threshold=0.5)
    assert queue["kind"].tolist() == [KINDS[0], KINDS[1], KINDS[2], KINDS[3]]
    assert queue[["patient_id", "slice"]].values.tolist() == [["A", 1], ["A", 2], ["A", 3], ["B", 1]]
    assert queue["dice"].iloc[3] == pytest.approx(2 * 30 / 200)
    assert len(filter_queue(queue, institutions=["HT"])) == 1
    assert filter_queue(queue, kinds=[KINDS[2]])["slice"].tolist() == [3]
    assert len(filter_queue(queue, min_tumor_pixels=45)) == 3  # keeps the false positive (no tumor)


def test_temperature_scaling_recovers_a_known_temperature():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, 4000)
    labels = rng.random(4000) < 1 / (1 + np.exp(-logits))  # calibrated at T = 1
    overconfident = 1 / (1 + np.exp(-2.0 * logits))  # the same scores made twice as sharp
    temperature = fit_temperature(labels, overconfident)
    assert temperature == pytest.approx(2.0, rel=0.15)
    assert negative_log_likelihood(labels, apply_temperature(overconfident, temperature)) < \
        negative_log_likelihood(labels, overconfident)
    order = np.argsort(overconfident, kind="stable")
    assert (np.diff(apply_temperature(overconfident, temperature)[order]) >= 0).all()  # ranking (AUC) unchanged


def test_shift_is_undone_by_the_opposite_shift():
    batch = np.zeros((1, 8, 8, 1), np.float32)
    batch[0, 3:5, 3:5] = 1
    assert np.array_equal(_shift(_shift(batch, 2, -1), -2, 1), batch)
    assert _shift(batch, 2, 0)[0, 5:7, 3:5].sum() == 4


def test_tta_and_grad_cam_shapes(tiny_models_dir, demo_dir):
    from brainseg.core.data import load_slices, scan_dataset

    cascade = Cascade.from_dir(tiny_models_dir)
    images, _ = load_slices(scan_dataset(demo_dir).head(3))
    tta = tta_segment(cascade.segmenter, images)
    assert tta.mean.shape == tta.std.shape == (3, 256, 256)
    assert tta.n_views == 6 and (tta.std >= 0).all() and tta.score.shape == (3,)
    # Each view is mapped back onto its slice: a pixel-wise stand-in gives the plain map in every view.
    probe = channel_probe(InputSpec(256, "zscore"), channel=0)
    probe_tta = tta_segment(probe, images)
    inner = (slice(None), slice(4, -4), slice(4, -4))  # the 4-pixel shifts' zero-filled border aside
    plain = probe.infer(prepare_images(images, 256))[..., 0]
    np.testing.assert_allclose(probe_tta.mean[inner], plain[inner], atol=1e-6)
    assert probe_tta.std[inner].max() < 1e-6 and plain[inner].std() > 0.05  # a non-uniform map was checked
    cam = grad_cam(cascade.classifier, images)
    assert cam.shape == (3, 256, 256) and cam.min() >= 0 and cam.max() <= 1


def test_exports_round_trip():
    masks = np.zeros((3, 16, 16), bool)
    masks[1, 4:8, 2:5] = True
    pages = tifffile.imread(io.BytesIO(masks_to_multipage_tiff(masks)))
    assert pages.shape == (3, 16, 16) and pages.max() == 255 and (pages[1] > 0).sum() == 12
    volume = nib.Nifti1Image.from_bytes(masks_to_nifti(masks))
    assert volume.shape == (16, 16, 3)  # (column, row, slice)
    assert np.asarray(volume.dataobj)[2, 4, 1] == 1 and np.asarray(volume.dataobj).sum() == 12
    with zipfile.ZipFile(io.BytesIO(masks_to_png_zip(masks, ["a", "b", "c"]))) as archive:
        assert archive.namelist() == ["a_pred_mask.png", "b_pred_mask.png", "c_pred_mask.png"]


def test_case_report_holds_notice_images_and_hashes():
    rng = np.random.default_rng(1)
    images = rng.integers(0, 255, (4, 32, 32, 3), dtype=np.uint8)
    truth = np.zeros((4, 32, 32), bool)
    truth[2, 10:20, 10:20] = True
    masks = np.roll(truth, 3, axis=2)
    result = CascadeResult(np.array([.1, .2, .9, .3]), masks.astype(np.float32))
    files = [f"TCGA_XX_0001_{k}.tif" for k in range(1, 5)]
    report = case_report_html("TCGA_XX_0001", files, np.arange(1, 5), images, result, truth, 0.5,
                              {"classifier": "abc123"}, "XX")
    assert report.count("Research use only") == 2
    assert "abc123" in report and report.count("data:image/png;base64,") >= 4
    assert key_slices(masks, truth)[0] == 2
    assert "TCGA_XX_0001_3.tif" in report and "out_of_distribution" in report  # the one results table


def test_volume_figure_has_a_surface_per_mask():
    images = np.zeros((6, 32, 32, 3), np.uint8)
    images[:, 6:26, 6:26, 1] = 200
    truth = np.zeros((6, 32, 32), bool)
    truth[2:4, 10:16, 10:16] = True
    figure = volume_figure(images, truth, truth)
    assert [t.name for t in figure.data] == ["brain outline", "ground truth", "prediction"]


def _write_entries(path, worker, count):
    log = ReviewLog(path)
    for k in range(count):
        log.add("TCGA_CS_0001", k, "agree", 0.5, "hash", comment=f"worker {worker}")


def test_review_log_keeps_every_entry_from_concurrent_writers(tmp_path, monkeypatch):
    path = tmp_path / "review.sqlite"
    # A spawned process first re-runs the parent's __main__ file. An AppTest run earlier in this worker leaves a
    # dashboard page there (Streamlit runs scripts as __main__), which then failed in the child; a bare __main__
    # has no file to re-run.
    monkeypatch.setitem(sys.modules, "__main__", types.ModuleType("__main__"))
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_write_entries, args=(path, w, 25)) for w in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(600)  # generous: each spawned worker imports this module (TensorFlow) on a possibly loaded machine
        assert w.exitcode == 0
    entries = ReviewLog(path).entries()
    assert len(entries) == 100
    assert entries.groupby("comment").size().tolist() == [25, 25, 25, 25]
    csv_text = ReviewLog(path).to_csv()
    assert csv_text.splitlines()[0].startswith('"id","created_utc","patient_id"')


def test_review_log_survives_reopening_and_refuses_unknown_verdicts(tmp_path):
    path = tmp_path / "log.sqlite"
    ReviewLog(path).add("P", 3, "disagree", 0.42, "h1", "mask too large")
    entry = ReviewLog(path).entries("P").iloc[0]  # a new connection: what a page reload does
    assert (entry["verdict"], entry["threshold"], entry["model_hash"], entry["comment"]) == (
        "disagree", 0.42, "h1", "mask too large")
    with pytest.raises(ValueError, match="verdict"):
        ReviewLog(path).add("P", 3, "maybe", 0.5, "h1")


def test_dashboard_counts_agree_with_the_full_evaluation(tiny_models_dir, demo_dir):
    """review.metrics_at_threshold (pixel counts) and evaluate (full masks) are two paths to one answer."""
    from brainseg.core.data import scan_dataset
    from brainseg.evaluation.evaluate import evaluate, predict_patients
    from brainseg.evaluation.threshold_analysis import metrics_at_threshold, slice_stats

    cascade = Cascade.from_dir(tiny_models_dir)
    manifest = scan_dataset(demo_dir)
    stats = pd.concat([slice_stats(p.patient_id, p.institution, p.slices, p.result, p.truth)
                       for p in predict_patients(cascade, manifest)], ignore_index=True)
    for threshold in (0.05, 0.5):
        report = evaluate(cascade, manifest, threshold=threshold)
        counts = metrics_at_threshold(stats, threshold)
        assert counts["per_patient_dice"] == pytest.approx(report["cascade"]["per_patient_dice"])
        for key in ("tp", "fp", "tn", "fn"):
            assert counts["cascade_slices"][key] == report["cascade_slice_decisions"][key]
            assert counts["classifier"][key] == report["classifier"]["at_default"][key]
            assert counts["patients"][key] == report["patient_detection"][key]
