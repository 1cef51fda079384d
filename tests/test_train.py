"""Tiny training runs (a few steps at 32x32) to check the loop, recording, resuming and export."""

import json

import keras
import pandas as pd
import pytest

from brainseg.errors import DataError
from brainseg.inference.cascade import load_model
from brainseg.training.train import TrainConfig, export_model, learning_rate_at, recipe, select_training_slices, train


def tiny(model: str, epochs: int = 2) -> TrainConfig:
    base = recipe(model, "cpu")
    return TrainConfig(**{**base.to_dict(), "input_size": 32, "width": 0.125, "epochs": epochs, "batch_size": 4})


class StopAfterFirstEpoch(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        raise KeyboardInterrupt("simulated interruption")


@pytest.mark.parametrize("model", ["classifier", "segmenter"])
def test_interrupted_training_resumes_and_exports(tmp_path, demo_dir, demo_split, model):
    run_dir = tmp_path / "run"
    config = tiny(model)
    with pytest.raises(KeyboardInterrupt):
        train(config, demo_dir, demo_split, run_dir, verbose=0, limit_slices=12,
              extra_callbacks=[StopAfterFirstEpoch()])
    assert len(pd.read_csv(run_dir / "history.csv")) == 1
    assert (run_dir / "backup").exists()

    train(config, demo_dir, demo_split, run_dir, verbose=0, limit_slices=12)
    history = pd.read_csv(run_dir / "history.csv")
    assert history["epoch"].tolist() == [0, 1]  # resumed at epoch 1, not restarted
    assert (run_dir / "curves.png").stat().st_size > 1000
    recorded = json.loads((run_dir / "config.json").read_text())
    assert recorded["config"] == config.to_dict()

    exported = export_model(run_dir, tmp_path / "models" / f"{model}.keras")
    loaded = load_model(exported, model)
    sidecar = json.loads(exported.with_suffix(".json").read_text())
    assert loaded.sha256 == sidecar["sha256"]
    assert sidecar["input_spec"] == {"size": 32, "scaling": config.scaling}
    assert sidecar["epochs_run"] == 2


def test_run_folder_refuses_another_config(tmp_path, demo_dir, demo_split):
    run_dir = tmp_path / "run"
    train(tiny("classifier", epochs=1), demo_dir, demo_split, run_dir, verbose=0, limit_slices=8)
    with pytest.raises(DataError, match="another config"):
        train(tiny("classifier", epochs=3), demo_dir, demo_split, run_dir, verbose=0, limit_slices=8)


def test_seed_schedule_is_constant_then_decays():
    config = recipe("classifier", "seed")
    assert learning_rate_at(config, 0) == learning_rate_at(config, 19) == config.learning_rate
    assert learning_rate_at(config, 20) == pytest.approx(config.learning_rate * 0.904837, rel=1e-5)
    assert learning_rate_at(config, 21) < learning_rate_at(config, 20)


def test_slice_selection_rules(demo_dir):
    import numpy as np

    from brainseg.core.data import scan_dataset

    manifest = scan_dataset(demo_dir)
    n_tumor = int(manifest["has_tumor"].sum())
    seed_classifier = select_training_slices(manifest, recipe("classifier", "seed"), np.random.default_rng(0))
    assert len(seed_classifier) == 2 * n_tumor  # healthy undersampled to the tumor count
    assert len(select_training_slices(manifest, recipe("classifier", "cpu"), np.random.default_rng(0))) == len(
        manifest)  # class weights instead: nothing thrown away
    seed_segmenter = select_training_slices(manifest, recipe("segmenter", "seed"), np.random.default_rng(0))
    assert seed_segmenter["has_tumor"].all() and len(seed_segmenter) == n_tumor
    cpu_segmenter = select_training_slices(manifest, recipe("segmenter", "cpu"), np.random.default_rng(0))
    assert (~cpu_segmenter["has_tumor"]).sum() == round(0.25 * n_tumor)
