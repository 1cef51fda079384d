"""The command line: one-line errors with exit code 2 for bad input, and working commands on demo data."""

import json

import pandas as pd
import pytest

from brainseg.cli import main


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["scan", "--data", "/no/such/folder"], "dataset folder not found"),
        (["evaluate", "--data", "/no/such", "--out", "x.json"], "dataset folder not found"),
        (["predict", "/no/such.tif", "--out", "o", "--models-dir", "/no/models"], "model file not found"),
        (["split", "--data", "/no/such"], "not found"),
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


def test_bench_writes_the_documented_keys(demo_dir, tmp_path, tiny_models_dir):
    out = tmp_path / "bench.json"
    assert main(["bench", "--data", str(demo_dir), "--models-dir", str(tiny_models_dir), "--out", str(out),
                 "--max-patients", "2"]) == 0
    result = json.loads(out.read_text())
    assert result["n_patients"] == 2
    for key in ("ms_per_slice", "model_load_seconds", "peak_rss_mb"):
        assert result[key] > 0
    assert result["patient_seconds"]["median"] > 0


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
    for command in ("train", "evaluate", "operating-point", "predict", "bench", "split", "scan"):
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
