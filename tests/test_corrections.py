"""Correction editing logic, and corrections exported in the Kaggle layout and as NIfTI (CLI included)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from brainseg.app.correction import (
    BRUSH,
    ERASER,
    MaskEditor,
    compare,
    polygon_region,
    selection_region,
)
from brainseg.cli import main
from brainseg.core import metrics
from brainseg.core.data import load_dataset, read_mask
from brainseg.review.corrections import export_kaggle, export_nifti
from brainseg.review.review_log import ReviewLog


def test_brush_eraser_fill_undo_clear_reset():
    start = np.zeros((64, 64), bool)
    start[10:20, 10:20] = True
    editor = MaskEditor(start)
    assert editor.stamp([(40, 30)], 3, BRUSH)  # x = column 40, y = row 30
    assert editor.mask[30, 40] and editor.mask[30, 43] and not editor.mask[30, 44]
    assert editor.mask[10:20, 10:20].all()
    assert editor.stamp([(15, 15)], 2, ERASER)
    assert not editor.mask[15, 15] and editor.mask[10, 10]
    ring = np.zeros_like(start)
    ring[40:60, 40:60] = True
    ring[43:57, 43:57] = False
    editor.paint(ring, BRUSH)
    assert not editor.mask[50, 50]
    assert editor.fill()
    assert editor.mask[50, 50] and editor.mask[15, 15]  # the erased dab inside the square is a hole too
    assert editor.undo() and not editor.mask[50, 50]
    assert editor.clear() and not editor.mask.any()
    assert editor.reset() and np.array_equal(editor.mask, start)
    steps = len(editor.history)
    assert not editor.paint(np.zeros_like(start), BRUSH)  # nothing changes: nothing to undo
    assert len(editor.history) == steps
    while editor.undo():
        pass
    assert np.array_equal(editor.mask, start)
    assert np.array_equal(editor.start, start)
    with pytest.raises(ValueError, match="mode"):
        editor.paint(start, "smudge")


def test_selection_events_become_regions():
    shape = (32, 32)
    lasso = selection_region({"lasso": [{"x": [5, 20, 20, 5], "y": [5, 5, 15, 15]}], "points": [{"x": 1, "y": 1}]},
                             4, shape)
    assert lasso[10, 10] and not lasso[1, 1] and not lasso[25, 25]
    box = selection_region({"box": [{"x": [20.2, 28.7], "y": [2, 6]}]}, 4, shape)
    assert box[4, 24] and not box[10, 24] and box.sum() == 5 * 10  # pixels 20..29 are touched
    clicks = selection_region({"points": [{"x": 16, "y": 16}]}, 2, shape)
    assert clicks[16, 16] and clicks[16, 18] and not clicks[16, 19]
    assert not selection_region({}, 4, shape).any()
    assert polygon_region([0, 31, 31, 0], [0, 0, 31, 31], shape).sum() > 0.9 * 32 * 32


def test_compare_uses_the_project_dice():
    ai = np.zeros((20, 20), bool)
    ai[0:10, 0:10] = True
    mask = ai.copy()
    mask[0:10, 10:15] = True  # +50
    mask[0:2, 0:10] = False  # -20
    truth = np.zeros_like(ai)
    truth[0:10, 0:15] = True
    result = compare(mask, ai, truth)
    assert (result["pixels_added"], result["pixels_removed"]) == (50, 20)
    assert result["dice_vs_ai"] == metrics.dice(mask, ai) == pytest.approx(2 * 80 / (130 + 100))
    assert result["dice_vs_expert"] == metrics.dice(mask, truth) > result["ai_dice_vs_expert"]
    assert compare(mask, ai, None)["dice_vs_expert"] is None


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*_mask.tif"))}


@pytest.fixture
def store_with_corrections(tmp_path, demo_copy):
    """A SQLite store with corrections of two slices of one demo patient (two versions of the first)."""
    manifest, _ = load_dataset(demo_copy)
    rows = manifest[manifest["case"] == manifest["case"].iloc[0]].iloc[[10, 12]]
    log = ReviewLog(tmp_path / "store.sqlite")
    masks = {}
    for k, row in enumerate(rows.itertuples()):
        ai = read_mask(row.mask_path)
        edited = ai.copy()
        edited[100 + k : 130, 100:140] = True
        for version, reviewer in enumerate(["ann", "bob"][: 2 - k], start=1):
            edited[0:version, 0:version] = True
            log.save_correction(patient_id=row.patient_id, case_name=row.case, slice_number=row.slice,
                                slice_file=Path(row.image_path).name, mask=edited, ai_mask=ai, reviewer=reviewer,
                                threshold=0.3, classifier_sha256="c" * 64, segmenter_sha256="s" * 64,
                                parent_version=None if version == 1 else version - 1)
        masks[(row.case, int(row.slice))] = edited.copy()
    return log, rows, masks


def test_kaggle_export_reloads_as_a_dataset_and_leaves_the_expert_masks(store_with_corrections, demo_copy, tmp_path):
    log, rows, masks = store_with_corrections
    before = _digest(demo_copy)
    out = tmp_path / "export"
    manifest_written = export_kaggle(log, out, [tmp_path / "elsewhere", demo_copy])
    assert _digest(demo_copy) == before  # the expert's masks, byte-identical
    reloaded, patients = load_dataset(out)
    assert len(patients) == 1 and len(reloaded) == 2
    for row in reloaded.itertuples():
        assert np.array_equal(read_mask(row.mask_path), masks[(row.case, int(row.slice))])
        source = demo_copy / row.case / Path(row.image_path).name
        assert Path(row.image_path).read_bytes() == source.read_bytes()
    listing = json.loads((out / "corrections.json").read_text())
    assert listing == manifest_written
    first = next(s for s in listing["slices"] if s["slice"] == int(rows["slice"].iloc[0]))
    assert first["latest_version"] == 2 and first["reviewers"] == ["ann", "bob"]
    assert [v["version"] for v in first["versions"]] == [1, 2]
    assert first["versions"][1]["started_from"] == "version 1"


def test_nifti_export_holds_the_corrected_slices_in_order(store_with_corrections, tmp_path):
    log, rows, masks = store_with_corrections
    manifest = export_nifti(log, tmp_path / "nifti")
    (case, entry), = manifest["cases"].items()
    volume = np.asarray(nib.load(tmp_path / "nifti" / entry["file"]).dataobj)
    assert volume.shape == (256, 256, 2)
    assert entry["planes_slice_numbers"] == sorted(int(s) for s in rows["slice"])
    for plane, number in enumerate(entry["planes_slice_numbers"]):
        assert np.array_equal(volume[:, :, plane].T.astype(bool), masks[(case, number)])


def test_cli_exports_both_layouts_and_refuses_an_empty_store(store_with_corrections, demo_copy, tmp_path, capsys):
    log, _, _ = store_with_corrections
    out = tmp_path / "cli"
    assert main(["corrections", "export", "--out", str(out), "--data", str(demo_copy),
                 "--review-db", str(log.location)]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["kaggle_slices"] == 2 and summary["nifti_cases"] == 1
    assert len(load_dataset(out / "kaggle_3m")[0]) == 2 and (out / "nifti" / "corrections.json").is_file()
    assert main(["corrections", "export", "--out", str(tmp_path / "none"), "--data", str(demo_copy),
                 "--review-db", str(tmp_path / "empty.sqlite")]) == 2
    assert "no corrections to export" in capsys.readouterr().err
    assert main(["corrections", "export", "--out", str(tmp_path / "x"), "--data", str(tmp_path),
                 "--review-db", str(log.location)]) == 2
    assert "--data" in capsys.readouterr().err


def test_cli_export_refuses_a_non_empty_folder(store_with_corrections, demo_copy, tmp_path, capsys):
    log, _, _ = store_with_corrections
    out = tmp_path / "earlier"
    out.mkdir()
    (out / "corrections.json").write_text("{}")  # an earlier export: a second one would mix with it
    assert main(["corrections", "export", "--out", str(out), "--data", str(demo_copy), "--format", "kaggle",
                 "--review-db", str(log.location)]) == 2
    assert "not an empty folder" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["corrections.json"]
