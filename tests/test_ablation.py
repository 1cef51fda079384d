"""The ablation runner on tiny random models: variants scored like `brainseg evaluate` scores the cascade."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from brainseg.core.data import scan_dataset
from brainseg.evaluation.evaluate import evaluate
from brainseg.experiments.ablation import load_plan, remove_small_components_3d, run_ablation
from brainseg.inference.cascade import Cascade
from brainseg.training.train import config_with_overrides, recipe


@pytest.fixture
def ablation_setup(tmp_path, tiny_models_dir, demo_dir):
    """Two finished tiny runs, one unfinished, a split with the demo patients as validation, and a plan."""
    runs = tmp_path / "runs"
    for role, scaling in (("classifier", "unit"), ("segmenter", "zscore")):
        run = runs / f"{role}-baseline"
        run.mkdir(parents=True)
        shutil.copy(tiny_models_dir / f"{role}.keras", run / "best.keras")
        config = config_with_overrides(recipe(role, "cpu"), input_size=32, scaling=scaling, epochs=2)
        (run / "config.json").write_text(json.dumps({"config": config.to_dict()}))
        (run / "history.csv").write_text("epoch,loss,val_loss\n0,1,1\n1,1,1\n")
        (run / "epoch_seconds.csv").write_text("0,1.0\n1,1.0\n")
    (runs / "segmenter-unfinished").mkdir()
    patients = sorted(scan_dataset(demo_dir)["patient_id"].unique())
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"train": [], "val": patients, "test": []}))
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({
        "split": "val", "target_sensitivity": 0.9,
        "runs": {"classifier-baseline": {"model": "classifier", "overrides": {}},
                 "segmenter-baseline": {"model": "segmenter", "overrides": {}},
                 "segmenter-unfinished": {"model": "segmenter", "overrides": {"loss": "dice_bce"}}},
        "variants": [
            {"name": "baseline", "change": "none"},
            {"name": "cut 0.3", "change": "cut", "inference": {"mask_threshold": 0.3}},
            {"name": "3-D", "change": "3-D removal", "inference": {"min_component_voxels_3d": 10**9}},
            {"name": "new loss", "change": "loss", "segmenter_run": "segmenter-unfinished"},
        ]}))
    return load_plan(plan), runs, split


def test_baseline_variant_scores_like_evaluate(ablation_setup, demo_dir, tiny_models_dir):
    plan, runs, split = ablation_setup
    result = run_ablation(plan, demo_dir, split, runs, progress=False, train=False)
    assert result["pending_runs"] == ["segmenter-unfinished"]
    assert "not scored" in result["variants"]["new loss"]["status"]
    baseline = result["variants"]["baseline"]
    report = evaluate(Cascade.from_dir(tiny_models_dir), scan_dataset(demo_dir),
                      threshold=baseline["threshold_for_target"], n_resamples=0)
    assert baseline["cascade_dice_per_volume"]["mean"] == pytest.approx(report["cascade"]["dice_per_volume"]["mean"])
    assert baseline["roc_auc"] == pytest.approx(report["classifier"]["roc_auc"])
    assert baseline["gate_at_target"]["sensitivity"] >= 0.9
    # Inference settings reach the scoring. Removing every 3-D component leaves only empty masks: Dice 0 for
    # each demo patient (all have tumor), where the baseline's masks overlap the tumor somewhere.
    empty = result["variants"]["3-D"]["per_patient_cascade_dice"]
    assert empty == dict.fromkeys(baseline["per_patient_cascade_dice"], 0.0)
    assert max(baseline["per_patient_cascade_dice"].values()) > 0
    # A lower per-pixel cut keeps more pixels (the gate is the same: the slice score is the classifier's).
    key = "predicted_over_true_pixels_on_tumor_slices"
    assert result["variants"]["cut 0.3"][key] > baseline[key]


@pytest.mark.parametrize("split", ["test", "all", "val+test"])
def test_plan_refuses_the_test_split(tmp_path, split):
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"split": split, "target_sensitivity": 0.97, "runs": {}, "variants": []}))
    with pytest.raises(ValueError, match="test split"):
        load_plan(plan)


@pytest.mark.parametrize("field", ["classifier_run", "segmenter_run", "ensemble_with"])
def test_plan_refuses_a_variant_naming_a_run_it_does_not_list(tmp_path, field):
    from brainseg.errors import DataError

    plan = tmp_path / "plan.json"
    runs = {"classifier-baseline": {"model": "classifier", "overrides": {}},
            "segmenter-baseline": {"model": "segmenter", "overrides": {}}}
    variant = {"name": "typo", "change": "x", field: ["segmenter-typo"] if field == "ensemble_with" else "run-typo"}
    plan.write_text(json.dumps({"split": "val", "target_sensitivity": 0.97, "runs": runs,
                                "variants": [{"name": "baseline", "change": "none"}, variant]}))
    with pytest.raises(DataError, match="variant 'typo' names run"):
        load_plan(plan)


def test_3d_component_removal_counts_voxels_across_slices():
    masks = np.zeros((3, 6, 6), bool)
    masks[0:3, 1, 1] = True  # 3 voxels over 3 slices: one 3-D component
    masks[1, 4, 4] = True  # a lone voxel
    kept = remove_small_components_3d(masks, 2)
    assert kept.sum() == 3 and not kept[1, 4, 4]
