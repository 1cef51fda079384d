"""Fine-tuning tiny models on a few corrected demo slices: new folder, provenance, before/after, untouched inputs."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from brainseg.cli import main
from brainseg.core.data import load_dataset, load_slices, read_mask
from brainseg.core.hashing import sha256_of
from brainseg.core.split import save_split
from brainseg.errors import DataError
from brainseg.review.corrections import export_kaggle
from brainseg.review.review_log import ReviewLog


def _digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def setup(tmp_path, demo_copy, tiny_models_dir):
    """A parent model folder (tiny models + a split of the demo patients) and a corrections folder of 3 slices."""
    parent = tmp_path / "models"
    shutil.copytree(tiny_models_dir, parent)
    manifest, patients = load_dataset(demo_copy)
    ids = sorted(patients["patient_id"])
    save_split({"train": ids[:2], "val": ids[2:3], "test": ids[3:]}, parent / "split.json", 42, (0.5, 0.25, 0.25))
    log = ReviewLog(tmp_path / "store.sqlite")
    rows = manifest[manifest["patient_id"] == ids[0]].iloc[8:11]
    for row in rows.itertuples():
        ai = read_mask(row.mask_path)
        corrected = np.zeros_like(ai)
        corrected[60:200, 50:210] = True  # a reviewer's very different mask: something to learn
        log.save_correction(patient_id=row.patient_id, case_name=row.case, slice_number=row.slice,
                            slice_file=Path(row.image_path).name, mask=corrected, ai_mask=ai, reviewer="ann",
                            threshold=0.5, classifier_sha256="c",
                            segmenter_sha256=sha256_of(parent / "segmenter.keras"))
    corrections = tmp_path / "corrections"
    export_kaggle(log, corrections, [demo_copy])
    return parent, corrections, demo_copy


def _segmenter_maps(models_dir: Path, folder: Path) -> np.ndarray:
    from brainseg.inference.cascade import Cascade

    manifest, _ = load_dataset(folder)
    images, _ = load_slices(manifest)
    return Cascade.from_dir(models_dir).predict(images).maps


def test_finetune_changes_predictions_on_corrected_slices_and_touches_no_input(setup, tmp_path):
    from brainseg.experiments.finetune_report import finetune_with_report
    from brainseg.training.finetune import FinetuneConfig

    parent, corrections, data = setup
    inputs_before = {"parent": _digests(parent), "data": _digests(data), "corrections": _digests(corrections)}
    out = tmp_path / "models-ft1"
    config = FinetuneConfig(epochs=3, learning_rate=1e-3, batch_size=4, replay_per_correction=1.0, augment=False)
    report = finetune_with_report(parent, corrections, data, out, config, verbose=0)

    after = {"parent": _digests(parent), "data": _digests(data), "corrections": _digests(corrections)}
    assert after == inputs_before  # expert masks (and everything else read) byte-identical
    maps_before = _segmenter_maps(parent, corrections)
    maps_after = _segmenter_maps(out, corrections)
    assert np.abs(maps_after - maps_before).max() > 1e-3  # the corrected slices are predicted differently

    assert (out / "classifier.keras").read_bytes() == (parent / "classifier.keras").read_bytes()
    assert (out / "split.json").read_bytes() == (parent / "split.json").read_bytes()
    sidecar = json.loads((out / "segmenter.json").read_text())
    provenance = sidecar["finetune"]
    assert sidecar["sha256"] == sha256_of(out / "segmenter.keras") != sha256_of(parent / "segmenter.keras")
    assert provenance["parent_segmenter_sha256"] == sha256_of(parent / "segmenter.keras")
    assert provenance["corrected_slices"] == 3 and provenance["replay_slices"] == 3 and provenance["epochs"] == 3
    assert [c["reviewers"] for c in provenance["corrections"]] == [["ann"]] * 3
    assert sidecar["input_spec"] == json.loads((parent / "segmenter.json").read_text())["input_spec"]
    validation = provenance["validation"]
    assert validation["before"] == report["before"] and validation["after"] == report["after"]
    assert validation["before"]["patients"] == 1
    card = (out / "FINETUNE.md").read_text()
    assert f"{report['before']['segmenter_dice_per_volume_mean']:.4f}" in card
    assert f"{report['after']['segmenter_dice_per_volume_mean']:.4f}" in card


def test_finetune_refuses_to_overwrite_a_model_folder(setup, tmp_path):
    from brainseg.training.finetune import FinetuneConfig, finetune

    parent, corrections, data = setup
    with pytest.raises(DataError, match="never overwrites"):
        finetune(parent, corrections, data, parent, FinetuneConfig(epochs=1), verbose=0)
    with pytest.raises(DataError, match="epochs"):
        finetune(parent, corrections, data, tmp_path / "new", FinetuneConfig(epochs=0), verbose=0)


def test_finetune_cli_reports_before_after_and_the_selector_offers_the_new_folder(setup, tmp_path, capsys,
                                                                                   monkeypatch):
    from brainseg import settings

    parent, corrections, data = setup
    out = tmp_path / "models-ft2"
    assert main(["finetune", "--corrections", str(corrections), "--data", str(data), "--out", str(out),
                 "--models-dir", str(parent), "--epochs", "1", "--batch-size", "4", "--verbose", "0"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(summary["before"]) == set(summary["after"]) >= {"segmenter_dice_per_volume_mean"}
    monkeypatch.setenv(settings.MODELS_DIR_ENV, str(parent))
    assert settings.model_folder_choices() == [parent.resolve(), out.resolve()]
    assert main(["finetune", "--corrections", str(tmp_path / "missing"), "--data", str(data), "--out",
                 str(tmp_path / "x"), "--models-dir", str(parent)]) == 2
    assert "missing" in capsys.readouterr().err


def test_corrected_validation_patients_are_not_measured_on_and_test_patients_are_flagged(setup):
    from brainseg.core.split import load_split
    from brainseg.experiments.finetune_report import finetune_markdown, validation_dice

    parent, _, data = setup
    split = load_split(parent / "split.json")
    (val_patient,) = split["val"]
    assert validation_dice(parent, data, parent / "split.json")["patients"] == 1
    with pytest.raises(DataError, match="no patient is left"):
        validation_dice(parent, data, parent / "split.json", exclude=frozenset({val_patient}))
    figures = {"patients": 1, "slices": 20, "threshold": 0.5, "segmenter_dice_per_volume_mean": 0.5,
               "cascade_dice_per_volume_mean": 0.5}
    provenance = {"created_utc": "now", "parent_segmenter_sha256": "ab" * 32, "parent_models_dir": "models",
                  "epochs": 1, "corrected_slices": 3, "corrections": [], "replay_slices": 6,
                  "replay_source": "train split", "corrections_dir": "c"}
    text = finetune_markdown(provenance, figures, figures, [val_patient], True, [split["test"][0]])
    assert f"Left out: 1 validation patient(s) with corrections ({val_patient})" in text
    assert "final fit on train + val" in text and f"in the test split ({split['test'][0]})" in text
    assert "Left out" not in finetune_markdown(provenance, figures, figures)
