"""The command line: one-line errors with exit code 2 for bad input, and working commands on demo data."""

import json
import re
import subprocess
import sys

import pandas as pd
import pytest

from brainseg.cli import main


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["scan", "--data", "/no/such/folder"], "dataset folder not found"),
        (["evaluate", "--data", "/no/such", "--out", "x.json"], "dataset folder not found"),
        (["predict", "/no/such.tif", "--out", "o", "--models-dir", "/no/models"], "models folder not found"),
        # its own --out: the default (models/split.json) exists, and is refused before the folder is read
        (["split", "--data", "/no/such", "--out", "/no/such/split.json"], "not found"),
    ],
)
def test_bad_paths_give_one_line_error_and_exit_2(capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err
    assert len(err.splitlines()) == 1
    assert "Traceback" not in err


def test_folder_without_patients(tmp_path, capsys):
    assert main(["scan", "--data", str(tmp_path)]) == 2
    assert "no patient folders" in capsys.readouterr().err


def test_unknown_split_part_for_folder_outside_the_split(demo_dir, tmp_path, tiny_models_dir, capsys):
    code = main(["evaluate", "--data", str(demo_dir), "--split", "train", "--models-dir", str(tiny_models_dir),
                 "--out", str(tmp_path / "r.json")])
    assert code == 2
    assert "no patient of the 'train' split" in capsys.readouterr().err


def test_scan_counts_demo(demo_dir, tmp_path, capsys):
    assert main(["scan", "--data", str(demo_dir), "--out", str(tmp_path / "manifest.csv")]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (summary["patients"], summary["slices"], summary["tumor_slices"]) == (4, 115, 44)
    assert len(pd.read_csv(tmp_path / "manifest.csv")) == 115


def test_evaluate_writes_the_documented_keys(demo_dir, tmp_path, tiny_models_dir):
    out = tmp_path / "report.json"
    assert main(["evaluate", "--data", str(demo_dir), "--models-dir", str(tiny_models_dir), "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    for dotted in ("default_threshold", "classifier.roc_auc", "classifier.at_default.sensitivity",
                   "classifier.at_default.specificity", "classifier.at_default.precision",
                   "cascade.dice_per_volume.mean", "cascade.dice_per_volume.median",
                   "segmenter.dice_per_volume.mean", "n_patients", "n_slices"):
        node = report
        for key in dotted.split("."):
            node = node[key]
        assert isinstance(node, int | float), dotted
    assert (report["n_patients"], report["n_slices"]) == (4, 115)
    assert out.with_suffix(".txt").read_text().startswith("patients 4, slices 115")



def test_evaluate_gives_the_classifiers_own_auc_beside_a_combined_gate_score(demo_dir, tiny_models_dir):
    from sklearn.metrics import roc_auc_score

    from brainseg.core.data import load_slices, scan_dataset
    from brainseg.evaluation.evaluate import evaluate, format_report
    from brainseg.inference.cascade import Cascade

    manifest = scan_dataset(demo_dir)
    combined = Cascade.from_dir(tiny_models_dir)
    combined.slice_score = "classifier+segmenter"
    report = evaluate(combined, manifest, n_resamples=50)
    labels, probabilities = [], []
    for _, rows in manifest.groupby("patient_id", sort=True):
        images, truth = load_slices(rows)
        labels += truth.any(axis=(1, 2)).tolist()
        probabilities += combined.predict(images, rows["slice"].to_numpy()).classifier_probabilities.tolist()
    alone = report["classifier_alone"]["roc_auc"]
    assert alone == pytest.approx(roc_auc_score(labels, probabilities))
    assert alone != pytest.approx(report["classifier"]["roc_auc"])  # the gate's score is another one here
    interval = report["confidence_intervals"]["classifier_alone_roc_auc"]
    assert interval["low"] <= alone <= interval["high"] and report["slice_score"] == "classifier+segmenter"
    # Each interval is around the very figure the report states (one computation, not a second copy of it).
    ci, at_default = report["confidence_intervals"], report["classifier"]["at_default"]
    for stated, figure in [(ci["roc_auc"], report["classifier"]["roc_auc"]), (interval, alone),
                           (ci["sensitivity_at_default"], at_default["sensitivity"]),
                           (ci["specificity_at_default"], at_default["specificity"]),
                           (ci["cascade_slice_sensitivity"], report["cascade_slice_decisions"]["sensitivity"]),
                           (ci["cascade_slice_specificity"], report["cascade_slice_decisions"]["specificity"]),
                           (ci["cascade_dice_per_volume_mean"], report["cascade"]["dice_per_volume"]["mean"]),
                           (ci["segmenter_dice_per_volume_mean"], report["segmenter"]["dice_per_volume"]["mean"])]:
        assert stated["estimate"] == pytest.approx(figure, abs=1e-12)
    combined.slice_score = "classifier"
    assert "the classifier's P alone: ROC AUC" in format_report(report)
    plain = evaluate(combined, manifest, n_resamples=50)
    assert "classifier_alone" not in plain and "classifier_alone_roc_auc" not in plain["confidence_intervals"]


def test_bench_writes_the_documented_keys(demo_dir, tmp_path, tiny_models_dir):
    out = tmp_path / "bench.json"
    assert main(["bench", "--data", str(demo_dir), "--models-dir", str(tiny_models_dir), "--out", str(out),
                 "--max-patients", "2", "--repeats", "2", "--reference-size", "64"]) == 0
    result = json.loads(out.read_text())
    assert result["n_patients"] == 2 and result["reference"]["input_size"] == 64
    for key in ("ms_per_slice", "model_load_seconds", "model_load_seconds_cold", "peak_rss_mb", "reference_seconds"):
        assert result[key] > 0
    assert result["patient_over_reference"] == pytest.approx(
        result["patient_seconds"]["median"] / result["reference_seconds"])


def test_predict_writes_masks_and_csv(demo_dir, tmp_path, tiny_models_dir):
    out = tmp_path / "pred"
    patient = demo_dir / "TCGA_HT_7855_19951020"
    assert main(["predict", str(patient), "--models-dir", str(tiny_models_dir), "--out", str(out),
                 "--threshold", "0.5"]) == 0
    table = pd.read_csv(out / "predictions.csv")
    assert len(table) == 21
    assert table["file"].iloc[1].endswith("_2.tif")  # numeric slice order
    assert table["dice"].notna().all()  # masks in the folder were paired with their slices
    assert (out / "TCGA_HT_7855_19951020_1_pred_mask.png").exists()
    assert (out / "TCGA_HT_7855_19951020_1_pred_mask.tif").exists()


def test_help_for_every_command(capsys):
    for command in ("train", "evaluate", "operating-point", "calibrate", "predict", "bench", "model-card", "split",
                    "scan"):
        with pytest.raises(SystemExit) as exit_info:
            main([command, "--help"])
        assert exit_info.value.code == 0
    assert "usage" in capsys.readouterr().out


def test_predict_writes_only_inside_the_output_folder(demo_dir, tmp_path, tiny_models_dir):
    inputs = tmp_path / "in"
    inputs.mkdir()
    source = demo_dir / "TCGA_HT_7855_19951020" / "TCGA_HT_7855_19951020_3.tif"
    (inputs / "..evil_3.tif").write_bytes(source.read_bytes())
    before = set(tmp_path.rglob("*"))
    out = tmp_path / "chosen" / "out"
    assert main(["predict", str(inputs), "--models-dir", str(tiny_models_dir), "--out", str(out)]) == 0
    written = set(tmp_path.rglob("*")) - before
    assert written and all(out in p.parents or p in (out, out.parent) for p in written)


@pytest.fixture
def tiny_models_with_split(tmp_path, tiny_models_dir, demo_dir):
    """A writable copy of the tiny models with a split of the 4 demo patients: 2 val, 2 test."""
    import shutil

    from brainseg.core.data import scan_dataset
    from brainseg.training.train import config_with_overrides, recipe

    folder = tmp_path / "models"
    shutil.copytree(tiny_models_dir, folder)
    for role in ("classifier", "segmenter"):  # the training record `brainseg train --export-dir` writes
        sidecar = json.loads((folder / f"{role}.json").read_text())
        config = config_with_overrides(recipe(role, "cpu"), input_size=32, epochs=1)
        sidecar.update(train_config=config.to_dict(), n_train_slices=10, n_val_slices=5, best_epoch=1,
                       epochs_run=1, train_wall_seconds=1.0, train_wall_clock_recorded=True)
        (folder / f"{role}.json").write_text(json.dumps(sidecar))
    patients = sorted(scan_dataset(demo_dir)["patient_id"].unique())
    (folder / "split.json").write_text(json.dumps({"train": [], "val": patients[:2], "test": patients[2:]}))
    return folder


def _run(argv, models):
    return main([*argv, "--models-dir", str(models), "--split-file", str(models / "split.json")])


def test_operating_point_is_chosen_on_val_and_refuses_test(demo_dir, tiny_models_with_split, capsys):
    models = tiny_models_with_split
    assert _run(["operating-point", "--data", str(demo_dir), "--split", "test"], models) == 2
    assert "never on 'test'" in capsys.readouterr().err
    assert _run(["operating-point", "--data", str(demo_dir), "--target-sensitivity", "0.9"], models) == 0
    point = json.loads((models / "operating_point.json").read_text())
    assert point["chosen_on"]["split"] == "val" and point["chosen_on"]["n_patients"] == 2
    assert point["at_threshold_on_that_split"]["sensitivity"] >= 0.9
    assert point["threshold"] == round(point["threshold"], 6)
    assert point["mask_threshold"] in (0.3, 0.4, 0.5, 0.6, 0.7) and len(point["postprocessing_grid"]) == 25
    from brainseg.inference.cascade import Cascade

    cascade = Cascade.from_dir(models)  # the cascade applies what was chosen
    assert (cascade.default_threshold, cascade.mask_threshold, cascade.min_component_pixels) == (
        point["threshold"], point["mask_threshold"], point["min_component_pixels"])


def test_calibrate_fits_on_val_and_refuses_test(demo_dir, tiny_models_with_split, capsys):
    models = tiny_models_with_split
    assert _run(["calibrate", "--data", str(demo_dir), "--split", "test"], models) == 2
    assert "never on 'test'" in capsys.readouterr().err
    assert _run(["calibrate", "--data", str(demo_dir)], models) == 0
    record = json.loads((models / "calibration.json").read_text())
    assert record["temperature"] > 0 and record["fitted_on"]["split"] == "val"
    assert record["fitted_on"]["nll_after"] <= record["fitted_on"]["nll_before"] + 1e-9


def test_choices_on_patients_the_models_trained_on_are_refused(demo_dir, tiny_models_with_split, capsys):
    models = tiny_models_with_split
    for role in ("classifier", "segmenter"):  # as a final fit records it
        sidecar = json.loads((models / f"{role}.json").read_text())
        sidecar["train_config"]["fit_on"] = "train+val"
        (models / f"{role}.json").write_text(json.dumps(sidecar))
    for command in ("operating-point", "calibrate"):
        assert _run([command, "--data", str(demo_dir), "--split", "val"], models) == 2
        assert "trained on the 'val' patients" in capsys.readouterr().err
    assert not (models / "operating_point.json").exists() and not (models / "calibration.json").exists()


def _sidecars(folder, fit_on):
    """Training sidecars recording ``fit_on`` (None: no sidecars at all)."""
    folder.mkdir(exist_ok=True)
    for role in ("classifier", "segmenter"):
        if fit_on is not None:
            (folder / f"{role}.json").write_text(json.dumps({"train_config": {"fit_on": fit_on}}))
    return folder


@pytest.mark.parametrize(("fit_on", "split", "refused"), [
    ("train+val", "train+val", "'train+val' patients"),  # a final fit saw both parts
    ("train+val", "val", "'val' patients"),
    ("train+val", "train", "'train' patients"),
    ("train", "train+val", "'train' patients"),  # the usual fit saw train, which train+val includes
    ("train", "train", "'train' patients"),
    (None, "train", "'train' patients"),  # no sidecar: taken as trained on train
    (None, "train+val", "'train' patients"),
    ("train", "val", None),
    (None, "val", None),
])
def test_choices_on_any_part_the_models_trained_on_are_refused(tmp_path, fit_on, split, refused):
    from brainseg.errors import DataError
    from brainseg.evaluation.operating_point import refuse_trained_on

    models = _sidecars(tmp_path / "models", fit_on)
    if refused is None:
        refuse_trained_on(models, split, "the operating point")
        return
    with pytest.raises(DataError, match=re.escape(refused)):
        refuse_trained_on(models, split, "the operating point")


@pytest.mark.parametrize("split", ["test", "all", "train+test", "val+test"])
def test_splits_holding_test_patients_are_refused(split):
    from brainseg.errors import DataError
    from brainseg.evaluation.operating_point import refuse_test_split, split_parts

    assert "test" in split_parts(split)
    with pytest.raises(DataError, match=re.escape(f"never on '{split}'")):
        refuse_test_split(split, "the operating point")


def test_split_parts_by_hand():
    from brainseg.evaluation.operating_point import split_parts

    assert split_parts("all") == {"train", "val", "test"}
    assert split_parts("train+val") == {"train", "val"} and split_parts("val") == {"val"}


@pytest.mark.parametrize("command", ["operating-point", "calibrate"])
def test_all_is_refused_even_without_training_sidecars(tmp_path, command, capsys):
    models = _sidecars(tmp_path / "models", None)  # nothing says what the models trained on
    assert main([command, "--data", str(tmp_path), "--split", "all", "--models-dir", str(models)]) == 2
    assert "never on 'all'" in capsys.readouterr().err


@pytest.mark.parametrize("target", ["0", "-0.1", "1.5", "nan", "high"])
def test_target_sensitivity_outside_0_1_is_refused_before_anything_runs(tmp_path, target, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["operating-point", "--data", str(tmp_path), "--target-sensitivity", target])
    assert exit_info.value.code == 2
    assert "--target-sensitivity" in capsys.readouterr().err


def test_floor_decimals_never_returns_more_than_its_input():
    import numpy as np

    from brainseg.evaluation.operating_point import floor_decimals

    below = float(np.nextafter(0.199975, 0))  # x 1e6 rounds up to 199975.0 exactly
    assert floor_decimals(below) == 0.199974 and floor_decimals(below) <= below
    assert floor_decimals(0.199975) == 0.199975  # a value on a step stays
    assert floor_decimals(0.29, 2) == 0.29  # 0.29 x 100 is 28.999999999999996: still the step itself
    assert floor_decimals(0.0200589) == 0.020058 and floor_decimals(0.020058, 4) == 0.02


def test_where_an_operating_point_was_chosen_is_said_from_its_record():
    from brainseg.evaluation.operating_point import chosen_on_words

    assert chosen_on_words({"split": "val", "n_patients": 13, "n_slices": 475}) == (
        "on the val split (13 patients, 475 slices)")
    assert chosen_on_words({"split": "cross-validation out-of-fold", "n_patients": 81, "n_slices": 2868}) == (
        "on the cross-validation's pooled out-of-fold outputs (81 patients, 2,868 slices of train + val, each "
        "scored by the fold models that never saw it), not on test patients")
    assert chosen_on_words({"split": "val", "n_patients": 13}) == "on the val split (13 patients)"


def test_model_card_is_written_from_one_command(demo_dir, tiny_models_with_split, tmp_path):
    models = tiny_models_with_split
    assert _run(["operating-point", "--data", str(demo_dir), "--no-postprocessing"], models) == 0
    readme = tmp_path / "README.md"
    readme.write_text("# x\n<!-- results:start (written by brainseg model-card) -->\nSTALE-SECTION\n"
                      "<!-- results:end -->\ntail\n")
    assert main(["model-card", "--data", str(demo_dir), "--models-dir", str(models), "--readme", str(readme),
                 "--bench-patients", "1", "--reference-size", "64", "--no-train-steps"]) == 0
    card = json.loads((models / "model_card.json").read_text())
    assert card["test"]["n_patients"] == 2 and card["demo_cases"]["n_patients"] == 4
    text = (models / "MODEL_CARD.md").read_text()
    assert f"{card['test']['cascade']['dice_per_volume']['mean']:.3f}" in text
    assert card["operating_point"]["chosen_on"]["split"] == "val" and "'val' split" in text
    updated = readme.read_text()
    assert "STALE-SECTION" not in updated and updated.endswith("tail\n")
    assert f"{card['test']['cascade']['dice_per_volume']['mean']:.3f}" in updated


def test_ui_report_rewrites_the_readme_section_from_artifacts(tmp_path, capsys):
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    (artifacts / "ui_timings.json").write_text(json.dumps({"threshold_change_s": 1.234, "next_slice_s": 0.5,
                                                            "first_view_s (cold server)": 9.0}))
    (artifacts / "concurrency.json").write_text(json.dumps({"sessions": 8, "seconds": 60, "actions": 40,
                                                            "median_response_seconds": 2.0,
                                                            "slowest_response_seconds": 9.5,
                                                            "server_peak_rss_mb": 1500, "model_loads": 1}))
    readme = tmp_path / "README.md"
    readme.write_text("a\n<!-- ui:start (written by brainseg ui-report) -->\nSTALE\n<!-- ui:end -->\nb\n")
    assert main(["ui-report", "--artifacts", str(artifacts), "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert "STALE" not in text and "| threshold change | 1.23 |" in text and "| next slice | 0.50 |" in text
    assert "| first view (cold server) | 9.00 |" in text
    assert "model loads in the server process: 1" in text
    assert text.startswith("a\n") and text.endswith("b\n")
    (artifacts / "ui_timings.json").unlink()
    assert main(["ui-report", "--artifacts", str(artifacts), "--readme", str(readme)]) == 2
    assert "run `pytest tests/test_browser.py` first" in capsys.readouterr().err


def test_resolution_ceiling_on_demo_cases(demo_dir, tmp_path, capsys):
    out = tmp_path / "ceiling.json"
    no_operating_point = tmp_path / "models"  # absent file: the cascade's own defaults (cut 0.5, no removal)
    assert main(["resolution-ceiling", "--data", str(demo_dir), "--models-dir", str(no_operating_point),
                 "--size", "128", "--size", "256", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert (report["mask_threshold"], report["min_component_pixels"], report["n_patients"]) == (0.5, 0, 4)
    ceilings = report["ceilings"]
    assert ceilings["256"]["dice_per_volume_mean"] == 1.0  # the slices' own size: nothing lost
    assert 0.9 < ceilings["128"]["dice_per_volume_mean"] < 1.0
    assert "128+removal" in ceilings and "Dice per volume" in capsys.readouterr().out


def test_readme_documents_every_command():
    from conftest import ROOT

    from brainseg.cli import COMMANDS

    readme = (ROOT / "README.md").read_text()
    assert [name for name in COMMANDS if f"`brainseg {name}" not in readme] == []


def test_split_refuses_to_overwrite_an_existing_split_file(demo_dir, tmp_path, capsys):
    out = tmp_path / "split.json"
    out.write_text("the split models were trained on")
    assert main(["split", "--data", str(demo_dir), "--out", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err and out.read_text() == "the split models were trained on"
    assert main(["split", "--data", str(demo_dir), "--out", str(out), "--overwrite"]) == 0
    assert sorted(json.loads(out.read_text())["fractions"]) == ["test", "train", "val"]


def test_evaluate_refuses_a_txt_out_that_its_summary_would_overwrite(tmp_path, capsys):
    assert main(["evaluate", "--data", str(tmp_path), "--out", str(tmp_path / "r.txt")]) == 2
    assert "give --out a .json name" in capsys.readouterr().err


@pytest.fixture
def point_only_models(tmp_path):
    """A models folder holding only an operating point (what crossval's evaluate stage reads first)."""
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "operating_point.json").write_text(json.dumps({"target_sensitivity": 0.97,
                                                             "slice_score": "classifier+segmenter"}))
    return folder


def test_crossval_slice_score_screen_needs_its_own_report(tmp_path, point_only_models, capsys):
    # --out is an empty folder: should the guard fail to fire, the command stops at its missing folds.json
    # instead of writing the default report.
    evaluate = ["crossval", "--data", str(tmp_path), "--out", str(tmp_path / "cv"), "--stage", "evaluate",
                "--models-dir", str(point_only_models)]
    assert main([*evaluate, "--slice-score", "classifier"]) == 2
    assert "give it its own --report" in capsys.readouterr().err
    assert main([*evaluate, "--slice-score", "classifier+segmenter"]) == 2  # the models' own score: not a screen
    assert "run the 'folds' stage first" in capsys.readouterr().err


@pytest.mark.parametrize("content", [None, '{"per_patient": [', '{"figures": {}}'])
def test_crossval_compare_to_is_checked_before_evaluating(tmp_path, point_only_models, capsys, content):
    baseline = tmp_path / "baseline.json"
    if content is not None:
        baseline.write_text(content)
    assert main(["crossval", "--data", str(tmp_path), "--out", str(tmp_path / "cv"), "--stage", "evaluate",
                 "--models-dir", str(point_only_models), "--report", str(tmp_path / "r.json"),
                 "--compare-to", str(baseline)]) == 2
    err = capsys.readouterr().err
    assert str(baseline) in err and "folds" not in err


def test_crossval_report_is_written_before_a_failing_comparison(tmp_path, point_only_models, monkeypatch):
    from brainseg.errors import DataError
    from brainseg.experiments import crossval

    def cannot_pair(report, baseline):
        raise DataError("the two cross-validations scored different patients: they cannot be paired")

    monkeypatch.setattr(crossval, "evaluate_folds", lambda *args, **kwargs: {"per_patient": [], "partial": False})
    monkeypatch.setattr(crossval, "paired_comparison", cannot_pair)
    baseline, report = tmp_path / "baseline.json", tmp_path / "r.json"
    baseline.write_text(json.dumps({"per_patient": []}))
    assert main(["crossval", "--data", str(tmp_path), "--stage", "evaluate", "--models-dir", str(point_only_models),
                 "--report", str(report), "--compare-to", str(baseline)]) == 2
    assert json.loads(report.read_text())["per_patient"] == []  # the long evaluation is kept


@pytest.mark.parametrize("argv", [
    ["scan", "--data", "{demo}", "--out", "{tmp}/no/such/folder/manifest.csv"],  # pandas' plain OSError
    ["split", "--data", "{demo}", "--out", "{tmp}/a-file/split.json"],  # NotADirectoryError
])
def test_file_system_errors_give_one_line_error_and_exit_2(demo_dir, tmp_path, capsys, argv):
    (tmp_path / "a-file").write_text("")
    assert main([a.format(demo=demo_dir, tmp=tmp_path) for a in argv]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]  # after the scan's progress bar
    assert last.startswith(f"brainseg {argv[0]}: error:") and "Traceback" not in last


def test_split_fractions_not_summing_to_1_are_a_one_line_error(demo_dir, tmp_path, capsys):
    assert main(["split", "--data", str(demo_dir), "--out", str(tmp_path / "s.json"),
                 "--fractions", "0.8", "0.1", "0.2"]) == 2
    assert "summing to 1" in capsys.readouterr().err and not (tmp_path / "s.json").exists()


@pytest.mark.parametrize(("argv", "option"), [
    (["bench", "--out", "b.json", "--repeats", "0"], "--repeats"),
    (["bench", "--out", "b.json", "--max-patients", "0"], "--max-patients"),
    (["resolution-ceiling", "--out", "c.json", "--size", "0"], "--size"),
    (["bench", "--out", "b.json", "--batch-size", "0"], "--batch-size"),
    (["network-cost", "--out", "n.json", "--repeats", "-3"], "--repeats"),
    (["train", "segmenter", "--epochs", "0"], "--epochs"),
    (["score", "--store", "s", "--batch-size", "0"], "--batch-size"),
    (["finetune", "--batch-size", "0"], "--batch-size"),
])
def test_counts_and_sizes_below_1_are_refused_by_the_parser(tmp_path, capsys, argv, option):
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--data", str(tmp_path)])
    assert exit_info.value.code == 2
    assert f"argument {option}" in capsys.readouterr().err  # the option's own error, not the usage line


def test_cache_slices_refuses_an_unknown_part_before_scanning(demo_dir, demo_split, tmp_path, capsys):
    out = tmp_path / "cache"
    assert main(["cache-slices", "--data", str(demo_dir), "--out", str(out), "--split-file", str(demo_split),
                 "--parts", "train,tset"]) == 2
    assert "unknown split part 'tset'" in capsys.readouterr().err and not out.exists()


def test_train_both_with_a_run_name_gives_each_model_its_own_run(tmp_path, monkeypatch):
    import brainseg.training.train as training

    run_dirs = []
    monkeypatch.setattr(training, "train", lambda config, data, split, run_dir, **kwargs: run_dirs.append(run_dir))
    assert main(["train", "both", "--data", str(tmp_path), "--runs-dir", str(tmp_path), "--run-name", "x"]) == 0
    assert run_dirs == [tmp_path / "x-classifier", tmp_path / "x-segmenter"]
    run_dirs.clear()
    assert main(["train", "segmenter", "--data", str(tmp_path), "--runs-dir", str(tmp_path), "--run-name", "x"]) == 0
    assert run_dirs == [tmp_path / "x"]


@pytest.mark.parametrize("readme_text", [None, "# a README without the results markers\n"])
def test_model_card_refuses_a_readme_it_cannot_update(tmp_path, capsys, readme_text):
    readme = tmp_path / "README.md"
    if readme_text is not None:
        readme.write_text(readme_text)
    assert main(["model-card", "--reread-records", "--models-dir", str(tmp_path), "--readme", str(readme)]) == 2
    assert f"--readme {readme}" in capsys.readouterr().err


def test_predict_reports_refused_files_and_drops_a_stale_list(demo_dir, tmp_path, tiny_models_dir, capsys):
    inputs, out = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    source = demo_dir / "TCGA_HT_7855_19951020" / "TCGA_HT_7855_19951020_3.tif"
    (inputs / "TCGA_HT_7855_19951020_3.tif").write_bytes(source.read_bytes())
    (inputs / "broken_1.tif").write_bytes(b"not an image")
    assert main(["predict", str(inputs), "--models-dir", str(tiny_models_dir), "--out", str(out)]) == 0
    assert "1 refused (see refused.csv)" in capsys.readouterr().out and (out / "refused.csv").is_file()
    (inputs / "broken_1.tif").unlink()
    assert main(["predict", str(inputs), "--models-dir", str(tiny_models_dir), "--out", str(out)]) == 0
    assert "refused (see" not in capsys.readouterr().out and not (out / "refused.csv").exists()


@pytest.mark.parametrize(("model", "levels"), [("segmenter", 2), ("both", 2), ("segmenter", None)])
def test_train_passes_deep_supervision_to_the_segmenter_only(tmp_path, monkeypatch, model, levels):
    from brainseg.training import train as train_module

    trained = {}
    monkeypatch.setattr(train_module, "train", lambda config, *args, **kwargs: trained.update({config.model: config}))
    argv = ["train", model, "--data", str(tmp_path), "--runs-dir", str(tmp_path / "runs")]
    assert main(argv + ([] if levels is None else ["--deep-supervision-levels", str(levels)])) == 0
    assert trained["segmenter"].deep_supervision_levels == (levels or 0)
    assert trained.get("classifier") is None or trained["classifier"].deep_supervision_levels == 0


@pytest.mark.parametrize(("model", "over"), [("segmenter", "slice"), ("both", "slice"), ("segmenter", None)])
def test_train_passes_the_tversky_reduction_to_the_segmenter_only(tmp_path, monkeypatch, model, over):
    from brainseg.training import train as train_module

    trained = {}
    monkeypatch.setattr(train_module, "train", lambda config, *args, **kwargs: trained.update({config.model: config}))
    argv = ["train", model, "--data", str(tmp_path), "--runs-dir", str(tmp_path / "runs")]
    assert main(argv + ([] if over is None else ["--tversky-over", over])) == 0
    assert trained["segmenter"].tversky_over == (over or "batch")
    assert trained.get("classifier") is None or trained["classifier"].tversky_over == "batch"


def test_the_command_line_starts_without_keras():
    # Its choices (losses, Tversky reductions, strategies) come from light modules: `brainseg --help` and every
    # refusal of bad input stay fast, and Keras is imported only by the commands that build a model.
    probe = ("import sys; from brainseg.cli import build_parser; build_parser(); "
             "print(sorted(m for m in ('keras', 'tensorflow') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("flag", ["--loss", "--tversky-over"])
def test_train_refuses_a_segmenter_option_it_does_not_know(tmp_path, capsys, flag):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "segmenter", "--data", str(tmp_path), flag, "pixel"])
    assert exit_info.value.code == 2
    assert f"argument {flag}: invalid choice: 'pixel'" in capsys.readouterr().err
