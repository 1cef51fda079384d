"""Cross-validation folds, the slice cache, and a tiny end-to-end `crossval` (2 folds over the demo patients)."""

from __future__ import annotations

import json
import lzma
import shutil

import numpy as np
import pandas as pd
import pytest
from conftest import DEMO_COUNTS, MODELS_DIR, ROOT

from brainseg.cli import main
from brainseg.core import metrics
from brainseg.core.data import load_dataset, load_slices
from brainseg.core.metrics import DICE_LOSS_PARTS
from brainseg.core.preprocess import prepare_images, resize_masks
from brainseg.core.slice_cache import is_slice_cache, read_slice_cache, write_slice_cache
from brainseg.core.split import load_split
from brainseg.errors import DataError
from brainseg.evaluation.counted_outputs import RECORD_KEY, CountedOutputs
from brainseg.experiments import crossval
from brainseg.runtime import cpu_name

TINY = {"input_size": 32, "width": 0.125, "epochs": 1, "batch_size": 8}


@pytest.fixture(scope="module")
def four_patient_split(tmp_path_factory):
    """All four demo patients in train + val (cross-validation never uses the test part)."""
    path = tmp_path_factory.mktemp("split") / "split4.json"
    path.write_text(json.dumps({"train": ["TCGA_CS_6669", "TCGA_FG_A4MU", "TCGA_HT_7855"],
                                "val": ["TCGA_DU_8165"], "test": []}))
    return path


@pytest.fixture(scope="module")
def trained_folds(tmp_path_factory, demo_dir, four_patient_split):
    """A 2-fold cross-validation of tiny models over the demo patients, trained once for this module's tests
    (each tiny training costs tens of seconds of graph tracing); tests read it and write elsewhere."""
    out = tmp_path_factory.mktemp("crossval") / "cv"
    assert main(["crossval", "--data", str(demo_dir), "--split-file", str(four_patient_split), "--out", str(out),
                 "--folds", "2", "--stage", "folds"]) == 0
    # Not trained yet: the evaluate stage says so (exit 2), it does not score half a cross-validation.
    assert main(["crossval", "--data", str(demo_dir), "--out", str(out), "--stage", "evaluate",
                 "--report", str(out.parent / "r.json")]) == 2
    # Trained from a slice cache, as real cross-validations on a lent GPU are: the fit itself runs on cached arrays.
    manifest, _ = load_dataset(demo_dir)
    cache = write_slice_cache(manifest, TINY["input_size"], out.parent / "cache")
    for fold in (0, 1):
        crossval.train_fold(cache, out, fold, overrides=TINY, verbose=0)
    return out


def test_folds_hold_out_every_train_and_val_patient_once_and_never_touch_test():
    split = load_split(MODELS_DIR / "split.json")
    document = crossval.make_folds(split, k=5, seed=42)
    pool = set(split["train"]) | set(split["val"])
    held_out = [p for fold in document["folds"] for p in fold["test"]]
    assert sorted(held_out) == sorted(pool)  # each exactly once
    for fold in document["folds"]:
        parts = [set(fold[name]) for name in ("train", "val", "test")]
        assert not (parts[0] & parts[1]) and not (parts[0] & parts[2]) and not (parts[1] & parts[2])
        assert set().union(*parts) == pool
        assert not set().union(*parts) & set(split["test"])
        assert abs(len(fold["val"]) / (len(fold["train"]) + len(fold["val"])) - document["validation_share"]) < 0.05
    sizes = [len(fold["test"]) for fold in document["folds"]]
    assert max(sizes) - min(sizes) <= 1
    assert crossval.make_folds(split, 5, 42) == document
    assert crossval.make_folds(split, 5, 7)["folds"] != document["folds"]
    with pytest.raises(DataError, match="folds"):
        crossval.make_folds(split, 1)


def test_write_folds_keeps_identical_folds_restores_a_deleted_one_and_refuses_others(tmp_path):
    split_file = MODELS_DIR / "split.json"
    first = crossval.write_folds(split_file, tmp_path, k=3, seed=1)
    assert crossval.write_folds(split_file, tmp_path, k=3, seed=1)["folds"] == first["folds"]
    assert json.loads((tmp_path / "fold-2" / "split.json").read_text()) == first["folds"][2]
    with pytest.raises(DataError, match="other folds"):
        crossval.write_folds(split_file, tmp_path, k=3, seed=2)
    # A fold's folder deleted to train it again gets its split back; a fold split edited by hand is refused.
    shutil.rmtree(tmp_path / "fold-1")
    crossval.write_folds(split_file, tmp_path, k=3, seed=1)
    assert json.loads((tmp_path / "fold-1" / "split.json").read_text()) == first["folds"][1]
    (tmp_path / "fold-0" / "split.json").write_text(json.dumps(first["folds"][2]))
    with pytest.raises(DataError, match="not fold 0"):
        crossval.write_folds(split_file, tmp_path, k=3, seed=1)


def test_slice_cache_holds_exactly_the_prepared_slices(tmp_path, demo_dir):
    manifest, _ = load_dataset(demo_dir)
    write_slice_cache(manifest, 64, tmp_path / "cache")
    cached, images, masks = read_slice_cache(tmp_path / "cache")
    assert len(cached) == DEMO_COUNTS["slices"] and images.shape == (DEMO_COUNTS["slices"], 64, 64, 3)
    assert cached["has_tumor"].sum() == DEMO_COUNTS["tumor_slices"]  # from the full-size masks
    originals, truths = load_slices(manifest)
    assert np.array_equal(images, prepare_images(originals, 64))  # TCGA_FG_A4MU's grey air made black
    assert np.array_equal(masks, resize_masks(truths, 64)[..., 0] > 0.5)
    with pytest.raises(DataError, match="not empty"):
        write_slice_cache(manifest, 64, tmp_path / "cache")
    # A cache made before the preprocessing changed holds other arrays than training would see: refused.
    meta = tmp_path / "cache" / "meta.json"
    current = meta.read_text()
    meta.write_text(json.dumps({k: v for k, v in json.loads(current).items() if k != "preprocessing"}))
    with pytest.raises(DataError, match="preprocessing version 1"):
        read_slice_cache(tmp_path / "cache")
    meta.write_text(current)

    broken = tmp_path / "cache" / "images.u8.xz"
    raw = bytearray(lzma.decompress(broken.read_bytes()))
    raw[1000] ^= 0xFF  # one flipped pixel: the checksum must catch it
    broken.write_bytes(lzma.compress(bytes(raw)))
    with pytest.raises(DataError, match="checksums"):
        read_slice_cache(tmp_path / "cache")


def test_a_slice_cache_cut_off_part_way_leaves_no_cache_and_is_rebuilt(tmp_path, demo_dir, monkeypatch):
    from brainseg.core import slice_cache

    manifest, _ = load_dataset(demo_dir)
    chunks = []

    def cut_off_at_the_second_chunk(rows):
        chunks.append(len(rows))
        if len(chunks) == 2:
            raise KeyboardInterrupt
        return load_slices(rows)

    monkeypatch.setattr(slice_cache, "load_slices", cut_off_at_the_second_chunk)
    (tmp_path / "cache").mkdir()  # an empty folder made for it is fine
    with pytest.raises(KeyboardInterrupt):
        write_slice_cache(manifest, 32, tmp_path / "cache", chunk=8)
    assert not is_slice_cache(tmp_path / "cache") and not any((tmp_path / "cache").iterdir())
    assert (tmp_path / "cache.partial" / "images.u8.xz").is_file()  # the cut-off run's arrays, set aside

    monkeypatch.setattr(slice_cache, "load_slices", load_slices)
    write_slice_cache(manifest, 32, tmp_path / "cache", chunk=8)
    assert not (tmp_path / "cache.partial").exists()
    cached, images, _ = read_slice_cache(tmp_path / "cache")
    assert len(cached) == len(manifest) == len(images)


def test_training_from_a_slice_cache_sees_the_same_arrays(tmp_path, demo_dir, demo_split, monkeypatch):
    from brainseg.training import train as train_module

    manifest, _ = load_dataset(demo_dir)
    write_slice_cache(manifest, 32, tmp_path / "cache")
    seen = {}
    original = train_module.make_dataset

    def recording(images, targets, *args, **kwargs):
        seen.setdefault(kwargs.get("shuffle", False), []).append((images.copy(), targets.copy()))
        return original(images, targets, *args, **kwargs)

    class ArraysMadeError(Exception):
        """Raised where the model would be built: the arrays are made by then, and fitting costs tens of seconds
        (the `trained_folds` fixture fits from a cache)."""

    def stop(_config):
        raise ArraysMadeError

    monkeypatch.setattr(train_module, "make_dataset", recording)
    monkeypatch.setattr(train_module, "build_model", stop)
    config = train_module.config_with_overrides(train_module.recipe("segmenter", "cpu"), **TINY)
    for source, run in ((demo_dir, "from_folder"), (tmp_path / "cache", "from_cache")):
        with pytest.raises(ArraysMadeError):
            train_module.train(config, source, demo_split, tmp_path / run, verbose=0)
    for shuffled in (True, False):  # the training and the validation arrays
        (folder_x, folder_y), (cache_x, cache_y) = seen[shuffled]
        assert len(folder_x) > 0 and np.array_equal(folder_x, cache_x) and np.array_equal(folder_y, cache_y)
    assert json.loads((tmp_path / "from_cache" / "config.json").read_text())["keras_backend"] == "tensorflow"

    wrong_size = config_at(config, 64)
    with pytest.raises(DataError, match="slice cache holds 32x32"):
        train_module.train(wrong_size, tmp_path / "cache", demo_split, tmp_path / "wrong", verbose=0)


def config_at(config, size):
    from dataclasses import replace

    return replace(config, input_size=size)


def test_crossval_end_to_end_scores_every_patient_once(tmp_path, demo_dir, four_patient_split, trained_folds):
    out = trained_folds
    report = crossval.evaluate_folds(demo_dir, out, target_sensitivity=0.98, slice_score="classifier+segmenter",
                                     n_resamples=200)

    assert report["n_patients"] == DEMO_COUNTS["patients"] and report["n_slices"] == DEMO_COUNTS["slices"]
    scored = [row["patient_id"] for row in report["per_patient"]]
    assert sorted(scored) == sorted(set(scored))  # each patient once, by the fold that held it out
    folds = json.loads((out / "folds.json").read_text())["folds"]
    for row in report["per_patient"]:
        assert row["patient_id"] in folds[row["fold"]]["test"]
        assert 0.0 <= row["cascade_dice"] <= 1.0
        assert sum(row[name] for name in DICE_LOSS_PARTS) == pytest.approx(1 - row["cascade_dice"])
    for fold in report["per_fold"]:
        point = json.loads((out / f"fold-{fold['fold']}" / "models" / "operating_point.json").read_text())
        assert point["chosen_on"]["split"] == f"fold-{fold['fold']} inner val"
        assert point["threshold"] == fold["operating_point"]["threshold"]
        assert fold["training"]["segmenter"]["keras_backend"] == "tensorflow"
        assert fold["training"]["classifier"]["cpu"] == cpu_name()
        assert fold["training"]["classifier"]["epochs_run"] == 1
    parts = report["figures"]["cascade_dice_loss_parts"]
    assert sum(parts.values()) == pytest.approx(1 - report["figures"]["cascade_dice_per_volume"]["mean"])
    dice = report["confidence_intervals"]["cascade_dice_per_volume_mean"]
    assert dice["low"] <= report["figures"]["cascade_dice_per_volume"]["mean"] <= dice["high"]
    figures, ci = report["figures"], report["confidence_intervals"]  # each interval around its stated figure
    for interval, figure in [(dice, figures["cascade_dice_per_volume"]["mean"]),
                             (ci["segmenter_dice_per_volume_mean"], figures["segmenter_dice_per_volume"]["mean"]),
                             (ci["roc_auc_pooled"], figures["roc_auc_pooled"]),
                             (ci["gate_sensitivity"], figures["gate_at_each_folds_threshold"]["sensitivity"]),
                             (ci["gate_specificity"], figures["gate_at_each_folds_threshold"]["specificity"])]:
        assert interval["estimate"] == pytest.approx(figure, abs=1e-12)
    pooled = report["figures"]["gate_at_each_folds_threshold"]
    assert pooled["tp"] + pooled["fn"] == DEMO_COUNTS["tumor_slices"]
    # Every held-out slice's score is kept, by slice number: a screen of another slice score pairs its ROC AUC.
    per_slice = pd.DataFrame(report["per_slice"])
    assert len(per_slice) == DEMO_COUNTS["slices"] and not per_slice.duplicated(["patient_id", "slice"]).any()
    assert metrics.roc_auc(per_slice["has_tumor"], per_slice["probability"]) == report["figures"]["roc_auc_pooled"]
    # ... with its counted outputs, row for row: what a final fit's choices are made from in any later session.
    counts = CountedOutputs.from_report(json.loads(json.dumps(report, default=float)))
    assert counts.patient_ids.tolist() == per_slice["patient_id"].tolist()
    assert counts.truth_pixels.sum() == sum(row["tumor_pixels"] for row in report["per_patient"])
    lifted = crossval.evaluate_folds(demo_dir, out, target_sensitivity=0.98,
                                     slice_score="classifier+segmenter+neighbours", n_resamples=0, folds=[0])
    paired = crossval.paired_comparison(lifted, report, n_resamples=100)["roc_auc_pooled"]
    fold_0 = per_slice[per_slice["patient_id"].isin(folds[0]["test"])]
    assert paired["baseline"] == pytest.approx(metrics.roc_auc(fold_0["has_tumor"], fold_0["probability"]))
    assert paired["value"] == pytest.approx(lifted["figures"]["roc_auc_pooled"])
    lifted_slices = pd.DataFrame(lifted["per_slice"]).merge(fold_0, on=["patient_id", "slice"])
    assert (lifted_slices["probability_x"] >= lifted_slices["probability_y"] - 1e-7).all()  # never lowered

    choices = report["final_fit_choices"]
    assert choices["stop_epochs"]["segmenter"]["stop_epoch"] == 1  # every fold trained 1 epoch
    point = choices["operating_point"]
    assert point["chosen_on"]["n_patients"] == DEMO_COUNTS["patients"]  # pooled out of fold, not one fold's val
    assert point["at_threshold_on_that_split"]["sensitivity"] >= 0.98
    assert [row["target_sensitivity"] for row in choices["gate_tradeoff"]] == list(crossval.TRADEOFF_SENSITIVITIES)
    assert all(row["gate_sensitivity"] >= row["target_sensitivity"] for row in choices["gate_tradeoff"])
    assert choices["calibration"]["temperature"] > 0
    # Each fold at the pooled threshold: the folds' counts add up to the pooled gate's, every fold is there once.
    by_fold = choices["gate_by_fold_at_that_threshold"]
    assert sorted(row["fold"] for row in by_fold) == sorted({row["fold"] for row in report["per_patient"]})
    pooled = point["at_threshold_on_that_split"]
    for count in ("tp", "fn", "tn", "fp"):
        assert sum(row[count] for row in by_fold) == pooled[count], count

    # The final fit takes those choices: both models on train + val, stopped at the chosen epoch.
    report_path = tmp_path / "crossval.json"
    report_path.write_text(json.dumps({**report, "command": "brainseg crossval"}, default=float))
    models = tmp_path / "final"
    assert main(["final-fit", "--data", str(demo_dir), "--split-file", str(four_patient_split), "--crossval",
                 str(report_path), "--runs-dir", str(tmp_path / "runs"), "--export-dir", str(models),
                 "--epochs", "2", "--limit-slices", "24", "--verbose", "0"]) == 0
    for role in ("classifier", "segmenter"):
        sidecar = json.loads((models / f"{role}.json").read_text())
        assert sidecar["fit_on"] == "train+val" and sidecar["epochs_run"] == 1
        assert len((models / "training" / role / "history.csv").read_text().splitlines()) == 2  # header + 1 epoch
        assert sidecar["n_train_slices"] == json.loads((tmp_path / "runs" / role / "config.json").read_text())[
            "n_train_slices"]
    shipped = json.loads((models / "operating_point.json").read_text())
    assert shipped["threshold"] == point["threshold"] and shipped["source"]["report"] == str(report_path)
    temperature = json.loads((models / "calibration.json").read_text())
    assert temperature["temperature"] == choices["calibration"]["temperature"]
    assert temperature["fitted_on"]["split"] == "cross-validation out-of-fold"

    # A slice score adopted after the final fit: another cross-validation's choices are written beside the same
    # models (--choices-only), which stay as they were; the record keeps both reports' epoch counts in view.
    weights = {role: (models / f"{role}.keras").read_bytes() for role in ("classifier", "segmenter")}
    lifted_report = tmp_path / "crossval_lifted.json"
    lifted_full = crossval.evaluate_folds(demo_dir, out, 0.98, "classifier+segmenter+neighbours", n_resamples=0)
    lifted_report.write_text(json.dumps({**lifted_full, "command": "brainseg crossval"}, default=float))
    choices_only = ["final-fit", "--crossval", str(lifted_report), "--split-file", str(four_patient_split),
                    "--export-dir", str(models), "--choices-only"]
    assert main(choices_only) == 0
    applied = json.loads((models / "operating_point.json").read_text())
    assert applied["slice_score"] == "classifier+segmenter+neighbours"
    assert applied["threshold"] == lifted_full["final_fit_choices"]["operating_point"]["threshold"]
    assert applied["source"]["report"] == str(lifted_report)
    assert applied["stop_epochs"] == {"models": {"classifier": 1, "segmenter": 1},
                                      "this_report": {"classifier": 1, "segmenter": 1}}
    assert all((models / f"{role}.keras").read_bytes() == weights[role] for role in weights)
    fold_models = str(out / "fold-0" / "models")  # trained on the fold's train part: not a final fit
    assert main([*choices_only[:-3], "--export-dir", fold_models, "--choices-only"]) == 2
    assert main([*choices_only[:3], "--export-dir", str(models), "--choices-only"]) == 2  # models/split.json's
    variant_report = tmp_path / "variant.json"  # another recipe's cross-validation chose for other models
    variant_report.write_text(json.dumps({**lifted_full, "variant": {"name": "x", "overrides": {
        "segmenter": {"tversky_alpha": 0.3}}}}, default=float))
    assert main([*choices_only[:1], "--crossval", str(variant_report), *choices_only[3:]]) == 2
    assert json.loads((models / "operating_point.json").read_text()) == applied  # refusals wrote nothing
    assert main(["final-fit", "--crossval", str(lifted_report), "--export-dir", str(models)]) == 2  # no --data

    # A segmenter variant adopted later: the segmenter alone is trained again, the classifier kept as it was.
    only_segmenter = ["final-fit", "--data", str(demo_dir), "--split-file", str(four_patient_split), "--crossval",
                      str(lifted_report), "--runs-dir", str(tmp_path / "runs-segmenter"), "--only", "segmenter",
                      "--epochs", "2", "--limit-slices", "24", "--verbose", "0"]
    assert main([*only_segmenter, "--export-dir", fold_models]) == 2  # its classifier is no final fit
    assert not (tmp_path / "runs-segmenter").exists()  # refused before training
    assert main([*only_segmenter, "--export-dir", str(models)]) == 0
    assert (models / "classifier.keras").read_bytes() == weights["classifier"]
    assert sorted(path.name for path in (tmp_path / "runs-segmenter").iterdir()) == ["segmenter"]
    assert json.loads((models / "operating_point.json").read_text())["stop_epochs"] == {
        "models": {"classifier": 1, "segmenter": 1}, "this_report": {"classifier": 1, "segmenter": 1},
        "trained_by_it": ["segmenter"]}


def test_fold_reports_scored_apart_combine_into_the_report_of_those_folds_scored_together(
        tmp_path, demo_dir, trained_folds):
    def comparable(report):
        kept = {k: v for k, v in report.items() if k != "combined_from"}
        return json.loads(json.dumps(kept, default=float, sort_keys=True))

    score = "classifier+segmenter+neighbours"
    together = crossval.evaluate_folds(demo_dir, trained_folds, 0.98, score, n_resamples=150)
    apart = [crossval.evaluate_folds(demo_dir, trained_folds, 0.98, score, n_resamples=150, folds=[fold])
             for fold in (1, 0)]
    assert all(report["partial"] for report in apart)
    combined = crossval.combine_reports(apart, n_resamples=150)
    # Figures, intervals, records and the final fit's choices (from the counted outputs), to the last digit.
    assert comparable(combined) == comparable(together)
    assert not combined["partial"] and "final_fit_choices" in combined and RECORD_KEY in combined
    # Fold reports made before counted outputs were kept still pool their figures, with no choices.
    without_counts = [{k: v for k, v in report.items() if k != RECORD_KEY} for report in apart]
    figures_only = crossval.combine_reports([without_counts[0], apart[1]], n_resamples=150)
    assert figures_only["figures"] == combined["figures"]
    assert "final_fit_choices" not in figures_only and RECORD_KEY not in figures_only
    assert [source["folds_scored"] for source in combined["combined_from"]] == [[0], [1]]

    # Through the CLI, from the files, and what cannot be pooled is refused.
    paths = []
    for report in apart:
        paths.append(tmp_path / f"fold{report['folds_scored'][0]}.json")
        paths[-1].write_text(json.dumps({**report, "command": "brainseg crossval ..."}, default=float))
    out = tmp_path / "pooled.json"
    args = ["crossval", "--stage", "combine", "--report", str(out)]
    assert main([*args, "--fold-report", str(paths[0]), "--fold-report", str(paths[1])]) == 0
    written = json.loads(out.read_text())
    assert written["figures"] == comparable(together)["figures"]
    assert written["final_fit_choices"] == comparable(together)["final_fit_choices"]
    assert [source["report"] for source in written["combined_from"]] == [str(paths[1]), str(paths[0])]
    assert main(args) == 2  # no fold reports
    assert main(["crossval", "--stage", "combine", "--fold-report", str(paths[0])]) == 2  # the default report
    assert main([*args, "--fold-report", str(paths[0]), "--fold-report", str(paths[0])]) == 2  # one fold twice
    with pytest.raises(DataError, match="differs from the first in slice_score"):
        crossval.combine_reports([apart[0], {**apart[1], "slice_score": "classifier"}])
    with pytest.raises(DataError, match="folds_sha256"):
        crossval.combine_reports([apart[0], {**apart[1], "folds_sha256": "0" * 64}])
    # An ensemble's fold reports pool only with the same ensemble's, and the pooled report names it.
    ensemble = [{**report, "ensemble_with": ["runs/other"]} for report in apart]
    with pytest.raises(DataError, match="differs from the first in ensemble_with"):
        crossval.combine_reports([apart[0], ensemble[1]])
    assert crossval.combine_reports(ensemble, n_resamples=20)["ensemble_with"] == ["runs/other"]
    with pytest.raises(DataError, match="interleave"):
        crossval.combine_reports([{**apart[0], "folds_scored": [0, 2]}, {**apart[1], "folds_scored": [1]}])
    on_jax = json.loads(json.dumps(apart[1], default=float))
    on_jax["per_fold"][0]["training"]["segmenter"]["keras_backend"] = "jax"
    with pytest.raises(DataError, match="differ in keras_backend"):
        crossval.combine_reports([apart[0], on_jax])
    older = {**apart[0], "per_slice": {k: v for k, v in apart[0]["per_slice"].items() if k != "cascade_called"}}
    with pytest.raises(DataError, match="lacks cascade_called"):
        crossval.combine_reports([older, apart[1]])
    assert main(["crossval", "--stage", "evaluate", "--report", str(out)]) == 2  # every other stage needs --data


def test_final_fit_epoch_count_is_the_median_of_the_folds_best_epochs():
    folds = [{"training": {"classifier": {"best_epoch": b}, "segmenter": {"best_epoch": s}}}
             for b, s in ((21, 19), (14, 22), (21, 29), (26, 30), (30, 27))]
    counts = crossval.fixed_epoch_counts(folds)
    assert counts["classifier"]["stop_epoch"] == 21 and counts["segmenter"]["stop_epoch"] == 27
    assert crossval.fixed_epoch_counts(folds[:2])["segmenter"]["stop_epoch"] == 20  # (19 + 22) / 2, rounded down


def test_final_fit_refuses_a_report_without_its_choices(tmp_path):
    from brainseg.experiments.final_fit import read_choices

    with pytest.raises(DataError, match="not found"):
        read_choices(tmp_path / "missing.json")
    (tmp_path / "old.json").write_text(json.dumps({"k": 5, "n_patients": 81}))
    with pytest.raises(DataError, match="final_fit_choices"):
        read_choices(tmp_path / "old.json")
    (tmp_path / "partial.json").write_text(json.dumps({"k": 5, "n_patients": 16, "partial": True,
                                                       "folds_scored": [2]}))
    with pytest.raises(DataError, match=r"only folds \[2\] of 5"):
        read_choices(tmp_path / "partial.json")


def test_final_fit_takes_a_variants_choices_only_once_the_recipe_is_that_variant(tmp_path):
    from brainseg.experiments.final_fit import read_choices
    from brainseg.training.train import recipe

    shipped_alpha = recipe("segmenter", "cpu").tversky_alpha
    report = {"k": 5, "n_patients": 81, "final_fit_choices": {"stop_epochs": {}},
              "variant": {"name": "segmenter-alpha", "overrides": {"segmenter": {"tversky_alpha": 0.3}}}}
    (tmp_path / "variant.json").write_text(json.dumps(report))
    with pytest.raises(DataError, match=rf"segmenter.tversky_alpha {shipped_alpha} -> 0.3.*adopts it"):
        read_choices(tmp_path / "variant.json")
    # Adopted: every override is what the recipe now trains, so its folds cross-validated the final fit's recipe.
    report["variant"]["overrides"]["segmenter"]["tversky_alpha"] = shipped_alpha
    (tmp_path / "adopted.json").write_text(json.dumps(report))
    assert read_choices(tmp_path / "adopted.json")["source"]["report"] == str(tmp_path / "adopted.json")


def test_paired_comparison_pairs_patients_and_refuses_different_ones():
    report = {"per_patient": [{"patient_id": "a", "cascade_dice": 0.8}, {"patient_id": "b", "cascade_dice": 0.6},
                              {"patient_id": "c", "cascade_dice": 0.5}]}
    baseline = {"per_patient": [{"patient_id": "b", "cascade_dice": 0.7}, {"patient_id": "a", "cascade_dice": 0.5},
                                {"patient_id": "c", "cascade_dice": 0.5}]}
    paired = crossval.paired_comparison(report, baseline, n_resamples=500)
    assert paired["mean_difference"] == pytest.approx((0.3 - 0.1 + 0.0) / 3)  # matched by patient, not by row
    assert (paired["better"], paired["worse"], paired["n_patients"]) == (1, 1, 3)
    ci = paired["confidence_interval"]
    assert -0.1 - 1e-9 <= ci["low"] <= paired["mean_difference"] <= ci["high"] <= 0.3 + 1e-9
    with pytest.raises(DataError, match="different patients"):
        crossval.paired_comparison(report, {"per_patient": baseline["per_patient"][:2]})


def test_paired_comparison_pairs_the_segmenter_alone_too_and_says_how_far_a_patient_moves():
    report = {"per_patient": [{"patient_id": "a", "cascade_dice": 0.8, "segmenter_dice": 0.9},
                              {"patient_id": "b", "cascade_dice": 0.6, "segmenter_dice": 0.6}]}
    baseline = {"per_patient": [{"patient_id": "b", "cascade_dice": 0.7, "segmenter_dice": 0.8},
                                {"patient_id": "a", "cascade_dice": 0.5, "segmenter_dice": 0.9}]}
    paired = crossval.paired_comparison(report, baseline, n_resamples=200)
    assert paired["mean_difference"] == pytest.approx((0.3 - 0.1) / 2)
    assert paired["mean_absolute_difference"] == pytest.approx((0.3 + 0.1) / 2)
    alone = paired["segmenter_alone"]
    assert alone["mean_difference"] == pytest.approx((0.0 - 0.2) / 2)
    assert alone["mean_absolute_difference"] == pytest.approx(0.1)
    assert (alone["better"], alone["worse"]) == (0, 1)
    assert -0.2 - 1e-9 <= alone["confidence_interval"]["low"] <= alone["confidence_interval"]["high"] <= 1e-9
    without = {"per_patient": [{k: v for k, v in row.items() if k != "segmenter_dice"}
                               for row in report["per_patient"]]}
    assert "segmenter_alone" not in crossval.paired_comparison(without, baseline, n_resamples=50)


def test_paired_comparison_records_which_fold_models_share_the_baselines_weights():
    per_patient = [{"patient_id": "a", "cascade_dice": 0.5}, {"patient_id": "b", "cascade_dice": 0.5}]

    def trained(classifier: str, segmenter: str | None) -> dict:
        record = {"classifier": {"weights_sha256": classifier}}
        if segmenter is not None:
            record["segmenter"] = {"weights_sha256": segmenter}
        return record

    report = {"per_patient": per_patient, "per_fold": [{"fold": 0, "training": trained("c0", "s0-variant")},
                                                       {"fold": 1, "training": trained("c1-retrained", None)}]}
    baseline = {"per_patient": per_patient, "per_fold": [{"fold": 1, "training": trained("c1", "s1")},
                                                         {"fold": 0, "training": trained("c0", "s0")}]}
    paired = crossval.paired_comparison(report, baseline, n_resamples=50)
    assert paired["same_weights"] == {"classifier": {"0": True, "1": False}, "segmenter": {"0": False}}
    assert "same_weights" not in crossval.paired_comparison({"per_patient": per_patient}, baseline, n_resamples=50)


def test_paired_auc_matches_slices_by_patient_and_number_with_hand_computed_values():
    ours = {"patient_id": ["a", "a", "b", "b"], "slice": [1, 2, 1, 2], "has_tumor": [True, False, True, False],
            "probability": [0.9, 0.2, 0.4, 0.6]}  # 3 of 4 tumor / tumor-free pairs ordered right: 0.75
    theirs = {"patient_id": ["b", "b", "a", "a"], "slice": [2, 1, 2, 1], "has_tumor": [False, True, False, True],
              "probability": [0.7, 0.3, 0.5, 0.5]}  # one tie (0.5 / 0.5) of 4 pairs: 0.125
    paired = crossval.paired_auc(ours, theirs, n_resamples=300)
    assert (paired["value"], paired["baseline"]) == (pytest.approx(0.75), pytest.approx(0.125))
    assert paired["difference"] == pytest.approx(0.625)
    ci = paired["confidence_interval"]
    assert ci["n_patients"] == 2 and ci["low"] <= paired["difference"] <= ci["high"]
    per_patient = [{"patient_id": "a", "cascade_dice": 0.5}, {"patient_id": "b", "cascade_dice": 0.5}]
    both = crossval.paired_comparison({"per_patient": per_patient, "per_slice": ours},
                                      {"per_patient": per_patient, "per_slice": theirs}, n_resamples=100)
    assert both["roc_auc_pooled"]["difference"] == pytest.approx(0.625)
    assert "roc_auc_pooled" not in crossval.paired_comparison({"per_patient": per_patient, "per_slice": ours},
                                                              {"per_patient": per_patient}, n_resamples=100)
    with pytest.raises(DataError, match="different slices"):
        crossval.paired_auc(ours, {k: v[:3] for k, v in theirs.items()})
    with pytest.raises(DataError, match="disagree"):
        crossval.paired_auc(ours, {**theirs, "has_tumor": [True, True, False, True]})


def test_a_partial_report_is_paired_with_the_baselines_patients_of_the_same_folds():
    baseline = {"per_patient": [{"patient_id": "a", "fold": 0, "cascade_dice": 0.5},
                                {"patient_id": "b", "fold": 1, "cascade_dice": 0.7},
                                {"patient_id": "c", "fold": 1, "cascade_dice": 0.4}]}
    partial = {"k": 2, "partial": True, "folds_scored": [1],
               "per_patient": [{"patient_id": "c", "cascade_dice": 0.6}, {"patient_id": "b", "cascade_dice": 0.6}]}
    paired = crossval.paired_comparison(partial, baseline, n_resamples=200)
    assert paired["n_patients"] == 2 and paired["folds"] == [1]
    assert paired["baseline_mean"] == pytest.approx(0.55)  # patient a (fold 0) is left out
    assert paired["mean_difference"] == pytest.approx((0.2 - 0.1) / 2)
    # Unmarked as partial, the same report lacks patient a, so it cannot be paired.
    with pytest.raises(DataError, match="different patients"):
        crossval.paired_comparison({**partial, "partial": False}, baseline)


def test_an_ensemble_of_fold_segmenters_is_scored_as_one_and_leaves_the_folds_operating_points_alone(
        tmp_path, demo_dir, four_patient_split, trained_folds):
    cv, twin = tmp_path / "cv", tmp_path / "cv-twin"
    shutil.copytree(trained_folds, cv)
    shutil.copytree(trained_folds, twin)
    plain = crossval.evaluate_folds(demo_dir, cv, 0.98, "classifier+segmenter", n_resamples=50)
    points = [(cv / f"fold-{fold}" / "models" / "operating_point.json").read_bytes() for fold in (0, 1)]
    # Averaged with an identical segmenter, each map is itself: every figure is the fold's segmenter's alone.
    sidecar = twin / "fold-1" / "models" / "segmenter.json"
    sidecar.write_text(json.dumps({**json.loads(sidecar.read_text()), "cpu": "the twin's machine"}))
    report = crossval.evaluate_folds(demo_dir, cv, 0.98, "classifier+segmenter", n_resamples=50,
                                     ensemble_with=[twin])
    assert report["ensemble_with"] == [str(twin)] and "ensemble_with" not in plain
    columns = ["patient_id", "cascade_dice", "segmenter_dice", "predicted_pixels"]
    assert pd.DataFrame(report["per_patient"])[columns].equals(pd.DataFrame(plain["per_patient"])[columns])
    assert [fold["operating_point"] for fold in report["per_fold"]] == \
        [fold["operating_point"] for fold in plain["per_fold"]]
    members = [fold["segmenter_ensemble_members"] for fold in report["per_fold"]]
    assert [len(m) for m in members] == [2, 2] and members[1][1]["cpu"] == "the twin's machine"
    assert members[1][0] == report["per_fold"][1]["training"]["segmenter"]  # this cross-validation's own first
    # The folds' own operating points are their models'; the ensemble's lives in its report alone.
    assert [(cv / f"fold-{fold}" / "models" / "operating_point.json").read_bytes() for fold in (0, 1)] == points

    # Only members over the same folds, each trained, and never into the shipped recipe's report.
    (twin / "fold-1" / "models" / "segmenter.keras").unlink()
    with pytest.raises(DataError, match="fold 1's segmenter is not trained"):
        crossval.evaluate_folds(demo_dir, cv, 0.98, "classifier+segmenter", n_resamples=50, ensemble_with=[twin])
    folds = json.loads((twin / "folds.json").read_text())
    folds["folds"].reverse()
    (twin / "folds.json").write_text(json.dumps(folds))
    with pytest.raises(DataError, match="folds differ"):
        crossval.evaluate_folds(demo_dir, cv, 0.98, "classifier+segmenter", n_resamples=50, ensemble_with=[twin])
    assert main(["crossval", "--data", str(demo_dir), "--out", str(cv), "--stage", "evaluate",
                 "--ensemble-with", str(twin)]) == 2
    assert main(["crossval", "--data", str(demo_dir), "--out", str(cv), "--stage", "train",
                 "--ensemble-with", str(twin)]) == 2


def test_fold_numbers_to_score():
    assert crossval.check_fold_numbers(None, 3) == [0, 1, 2]
    assert crossval.check_fold_numbers([2, 0, 2], 3) == [0, 2]
    with pytest.raises(DataError, match="no fold 3"):
        crossval.check_fold_numbers([1, 3], 3)


def test_a_variant_is_cross_validated_on_the_same_folds_reusing_the_model_it_does_not_change(
        tmp_path, demo_dir, four_patient_split, trained_folds):
    base, variant = trained_folds, tmp_path / "cv-variant"
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"runs": {"segmenter-alpha_0.3": {"model": "segmenter",
                                                                 "overrides": {"tversky_alpha": 0.3}}}}))
    common = ["--data", str(demo_dir), "--split-file", str(four_patient_split), "--folds", "2"]
    base_report = tmp_path / "base.json"
    base_report.write_text(json.dumps(crossval.evaluate_folds(demo_dir, base, 0.98, "classifier+segmenter",
                                                              n_resamples=50), default=float))
    # Its own --out and --report are required: the defaults hold the shipped recipe's cross-validation.
    assert main(["crossval", *common, "--variant", "segmenter-alpha_0.3", "--plan", str(plan)]) == 2
    # Writing its folds or training it writes no report, so only --out is needed then; scoring needs --report.
    assert main(["crossval", *common, "--out", str(variant), "--stage", "folds",
                 "--variant", "segmenter-alpha_0.3", "--plan", str(plan)]) == 0
    assert main(["crossval", *common, "--out", str(variant), "--stage", "evaluate",
                 "--variant", "segmenter-alpha_0.3", "--plan", str(plan)]) == 2
    assert main(["crossval", *common, "--out", str(variant), "--report", str(tmp_path / "variant.json"),
                 "--variant", "segmenter-alpha_0.3", "--plan", str(plan), "--reuse-from", str(base),
                 "--compare-to", str(base_report), "--epochs", "1"]) == 0

    report = json.loads((tmp_path / "variant.json").read_text())
    for fold in (0, 1):
        models, base_models = variant / f"fold-{fold}" / "models", base / f"fold-{fold}" / "models"
        assert (models / "classifier.keras").read_bytes() == (base_models / "classifier.keras").read_bytes()
        segmenter = json.loads((models / "segmenter.json").read_text())["train_config"]
        assert segmenter["tversky_alpha"] == 0.3 and segmenter["epochs"] == 1
    assert report["variant"]["overrides"] == {"segmenter": {"tversky_alpha": 0.3}}
    assert report["variant"]["recipe_changes"] == {"segmenter": {"tversky_alpha": [0.5, 0.3]}}  # recipe's, variant's
    paired = report["paired_against"]
    assert paired["n_patients"] == DEMO_COUNTS["patients"] and paired["report"] == str(base_report)
    assert paired["mean"] == pytest.approx(report["figures"]["cascade_dice_per_volume"]["mean"])
    assert paired["same_weights"] == {"classifier": {"0": True, "1": True}, "segmenter": {"0": False, "1": False}}

    # One fold scored while others still train: marked partial, paired over that fold's patients only, and
    # with no final-fit choices (they need every patient out of fold). It needs its own --report.
    evaluate = ["crossval", "--data", str(demo_dir), "--out", str(variant), "--stage", "evaluate",
                "--compare-to", str(base_report)]
    assert main([*evaluate, "--fold", "1"]) == 2
    held_out = json.loads((variant / "folds.json").read_text())["folds"][1]["test"]
    # A second --compare-to (here the variant's own full report: same models, so no difference) is paired too.
    assert main([*evaluate, "--fold", "1", "--report", str(tmp_path / "partial.json"),
                 "--compare-to", str(tmp_path / "variant.json")]) == 0
    partial = json.loads((tmp_path / "partial.json").read_text())
    [itself] = partial["also_paired_against"]
    assert itself["report"] == str(tmp_path / "variant.json") and itself["n_patients"] == len(held_out)
    assert itself["mean_difference"] == pytest.approx(0.0) and itself["better"] == itself["worse"] == 0
    assert itself["same_weights"] == {"classifier": {"1": True}, "segmenter": {"1": True}}
    assert partial["partial"] is True and partial["folds_scored"] == [1] and "final_fit_choices" not in partial
    assert sorted(row["patient_id"] for row in partial["per_patient"]) == sorted(held_out)
    assert partial["paired_against"]["n_patients"] == len(held_out)
    full = {row["patient_id"]: row["cascade_dice"] for row in report["per_patient"]}
    assert partial["paired_against"]["mean"] == pytest.approx(np.mean([full[p] for p in held_out]))
    assert report["partial"] is False and report["folds_scored"] == [0, 1]

    # The model card lists both reports as variants of the recipe, with per-fold differences from the baseline.
    from brainseg.reports.card_markdown import crossval_variant_lines, fold_differences
    from brainseg.reports.model_card import crossval_variants

    listing = tmp_path / "models" / "crossval_variants"
    listing.mkdir(parents=True)
    (listing / "partial.json").write_text(json.dumps(partial))
    with pytest.raises(DataError, match="which variant"):  # it was scored without --variant
        crossval_variants(tmp_path / "models")
    # Scored against an older recipe (alpha 0.7 then): the card keeps what it changed in that one.
    then = {**report["variant"], "recipe_changes": {"segmenter": {"tversky_alpha": [0.7, 0.3]}}}
    (listing / "partial.json").write_text(json.dumps({**partial, "variant": then}))
    (listing / "variant.json").write_bytes((tmp_path / "variant.json").read_bytes())
    listed = crossval_variants(tmp_path / "models")
    assert [v["file"] for v in listed] == ["crossval_variants/partial.json", "crossval_variants/variant.json"]
    assert listed[1]["changes"] == {"segmenter": {"tversky_alpha": [0.5, 0.3]}}  # against the shipped 'cpu' recipe
    assert listed[0]["changes"] == then["recipe_changes"]
    assert not listed[1]["adopted"]  # the recipe still trains alpha 0.5

    # Adopted: its rule met (paired interval above 0) and what it changed is what the recipe trains now, also
    # after a later variant changed the recipe elsewhere. The same change with its interval reaching below 0 is not
    # adopted, though a later variant carrying it may have brought it into the recipe.
    def scored(changes: dict, low: float) -> dict:
        interval = {**report["paired_against"]["confidence_interval"], "low": low}
        return {**report, "variant": {**report["variant"], "recipe_changes": changes},
                "paired_against": {**report["paired_against"], "confidence_interval": interval}}

    to_recipe = {"segmenter": {"tversky_alpha": [0.7, 0.5]}}
    (listing / "adopted.json").write_text(json.dumps(scored(to_recipe, 0.01)))
    (listing / "missed.json").write_text(json.dumps(scored(to_recipe, -0.01)))
    assert [v["adopted"] for v in crossval_variants(tmp_path / "models")] == [True, False, False, False]
    rows = crossval_variant_lines(crossval_variants(tmp_path / "models"), report)[5:9]
    assert [row.endswith(", adopted |") for row in rows] == [True, False, False, False]
    (listing / "adopted.json").unlink()
    (listing / "missed.json").unlink()
    assert "per_patient" not in listed[1]
    assert listed[1]["paired_baseline"]["file"] == "base.json"  # the report it was paired with, read back
    assert listed[1]["paired_baseline"]["per_fold"] == [
        {key: fold[key] for key in ("fold", "n_test_patients", "cascade_dice_per_volume_mean", "roc_auc")}
        for fold in json.loads(base_report.read_text())["per_fold"]]
    baseline = json.loads(base_report.read_text())
    by_fold = {f["fold"]: f["cascade_dice_per_volume_mean"] for f in report["per_fold"]}
    base_by_fold = {f["fold"]: f["cascade_dice_per_volume_mean"] for f in baseline["per_fold"]}
    assert fold_differences(listed[1], baseline) == pytest.approx([by_fold[f] - base_by_fold[f] for f in (0, 1)])
    text = "\n".join(crossval_variant_lines(listed, baseline))
    assert "segmenter tversky_alpha 0.5 -> 0.3" in text and "partial: folds [1]" in text
    assert f"{paired['mean_difference']:+.3f}" in text
    moved = report["figures"]["cascade_dice_loss_parts"]["missed_on_slices_drawn_on"] - baseline["figures"][
        "cascade_dice_loss_parts"]["missed_on_slices_drawn_on"]
    assert f"under-segmentation {moved:+.3f}" in text
    # By thirds of tumor size, over the variant's own patients, against the same patients in the baseline.
    sizes = listed[1]["dice_change_by_tumor_size"]
    from brainseg.core.metrics import dice_change_by_tumor_size

    assert sizes == dice_change_by_tumor_size(report["per_patient"], baseline["per_patient"])
    assert sum(group["n_patients"] for group in sizes) == len(report["per_patient"])
    assert listed[0]["dice_change_by_tumor_size"] == dice_change_by_tumor_size(partial["per_patient"],
                                                                               baseline["per_patient"])
    smallest = sizes[0]
    assert f"{smallest['change']:+.3f} ({smallest['min_tumor_pixels']:,} to {smallest['max_tumor_pixels']:,} px)" \
        in text


def test_variant_table_marks_folds_that_differ_and_adopts_only_an_interval_above_zero():
    from brainseg.reports.card_markdown import crossval_variant_lines, fold_differences

    shipped = {"per_fold": [{"fold": 0, "n_test_patients": 2, "cascade_dice_per_volume_mean": 0.70},
                            {"fold": 1, "n_test_patients": 3, "cascade_dice_per_volume_mean": 0.80}]}

    def variant(low: float, high: float) -> dict:
        return {"name": "v", "partial": False, "changes": {}, "figures": {"roc_auc_pooled": 0.9},
                "confidence_intervals": {"cascade_dice_per_volume_mean": {"estimate": 0.8, "low": 0.7, "high": 0.9}},
                "paired_against": {"n_patients": 5, "mean_difference": (low + high) / 2, "better": 3, "worse": 2,
                                   "confidence_interval": {"low": low, "high": high}},
                "per_fold": [{"fold": 0, "n_test_patients": 2, "cascade_dice_per_volume_mean": 0.75},
                             {"fold": 1, "n_test_patients": 4, "cascade_dice_per_volume_mean": 0.90}]}

    assert fold_differences(variant(0.01, 0.05), shipped) == [pytest.approx(0.05), None]  # fold 1: other patients
    rows = [crossval_variant_lines([variant(low, high)], shipped)[-2] for low, high in
            ((0.01, 0.05), (-0.01, 0.05), (-0.05, -0.01))]
    assert [row.rstrip(" |").rsplit("| ", 1)[1] for row in rows] == ["yes", "no", "no"]
    assert "+0.050, n/a" in rows[0] and "nothing (same recipe)" in rows[0] and "| n/a |" in rows[0]
    assert crossval_variant_lines([], shipped) == [] and crossval_variant_lines([variant(0, 1)], None) == []

    # A variant paired with another report (the CPU folds') is compared fold by fold with that report, not with
    # the card's cross-validation, and says which it was; with that report gone its fold differences are n/a.
    cpu_folds = {"file": "crossval_cpu.json", "figures": {"cascade_dice_loss_parts": None},
                 "per_fold": [{"fold": 0, "n_test_patients": 2, "cascade_dice_per_volume_mean": 0.60},
                              {"fold": 1, "n_test_patients": 4, "cascade_dice_per_volume_mean": 0.85}]}
    row = crossval_variant_lines([{**variant(0.01, 0.05), "paired_baseline": cpu_folds}], shipped)[-2]
    assert "v (against `crossval_cpu.json`)" in row and "+0.150, +0.050" in row
    row = crossval_variant_lines([{**variant(0.01, 0.05), "paired_baseline": None}], shipped)[-2]
    assert "| 5 | 0.800 [0.700, 0.900] | +0.030 [+0.010, +0.050] | 3 / 2 | n/a | n/a | n/a |" in row

    # A change of the training seed alone is named a repeatability check; any other change is not.
    reseeded = {**variant(0.01, 0.05), "changes": {"segmenter": {"seed": [42, 43]}}}
    assert "| v (repeatability check) | segmenter seed 42 -> 43 |" in crossval_variant_lines([reseeded], shipped)[-2]
    both = {**reseeded, "changes": {"segmenter": {"seed": [42, 43], "tversky_alpha": [0.5, 0.3]}}}
    assert "| v | segmenter seed 42 -> 43; segmenter tversky_alpha 0.5 -> 0.3 |" in crossval_variant_lines(
        [both], shipped)[-2]

    # The change by tumor size, smallest group first, each with its size range.
    groups = [{"min_tumor_pixels": 10, "max_tumor_pixels": 90, "n_patients": 2, "change": -0.15},
              {"min_tumor_pixels": 500, "max_tumor_pixels": 2000, "n_patients": 3, "change": 0.05}]
    row = crossval_variant_lines([{**variant(0.01, 0.05), "dice_change_by_tumor_size": groups}], shipped)[-2]
    assert "| -0.150 (10 to 90 px), +0.050 (500 to 2,000 px) | 0.9000 |" in row


def run_shipped_cpu_crossval(cwd, *args):
    import subprocess
    import sys

    return subprocess.run([sys.executable, str(ROOT / "scripts" / "shipped_cpu_crossval.py"), *args], cwd=cwd,
                          capture_output=True, text=True)


def test_cpu_scripts_pair_a_variant_with_the_cross_validation_the_shipped_point_came_from(tmp_path):
    """scripts/shipped_cpu_crossval.py follows models/operating_point.json to the pooled report and its folds."""
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "operating_point.json").write_text(json.dumps({"source": {"report": "pooled.json"}}))
    sources = [{"folds_scored": [f], "report": f"reports/fold-{f}.json",
                "command": f"brainseg crossval --data d --out runs/cv-adopted --stage evaluate --fold {f}"}
               for f in (1, 0)]
    (tmp_path / "pooled.json").write_text(json.dumps({"combined_from": sources}))
    assert run_shipped_cpu_crossval(tmp_path, "pooled").stdout == "pooled.json\n"
    assert run_shipped_cpu_crossval(tmp_path, "fold-report", "0").stdout == "reports/fold-0.json\n"
    assert run_shipped_cpu_crossval(tmp_path, "run-dir").stdout == "runs/cv-adopted\n"
    missing = run_shipped_cpu_crossval(tmp_path, "fold-report", "4")
    assert missing.returncode != 0 and "no report of fold 4" in missing.stderr
    sources[1]["command"] = sources[1]["command"].replace("cv-adopted", "cv-other")
    (tmp_path / "pooled.json").write_text(json.dumps({"combined_from": sources}))
    assert "several run folders" in run_shipped_cpu_crossval(tmp_path, "run-dir").stderr
    (tmp_path / "pooled.json").write_text(json.dumps({"figures": {}}))  # e.g. the GPU cross-validation's record
    assert "does not pool CPU fold reports" in run_shipped_cpu_crossval(tmp_path, "run-dir").stderr
    # The repository's own records: each fold's report is there and was pooled from the same run folder.
    for fold in range(5):
        report = run_shipped_cpu_crossval(ROOT, "fold-report", str(fold)).stdout.strip()
        assert json.loads((ROOT / report).read_text())["folds_scored"] == [fold]
    assert run_shipped_cpu_crossval(ROOT, "run-dir").stdout.strip().startswith("runs/crossval-cpu")
