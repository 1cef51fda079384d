"""Tiny training runs (a few steps at 32x32) to check the loop, recording, resuming and export."""

import json
import typing
from dataclasses import replace

import keras
import pandas as pd
import pytest

from brainseg.core.hashing import weights_sha256
from brainseg.core.loss_names import SEGMENTATION_LOSSES, TVERSKY_OVER
from brainseg.core.preprocess import PREPROCESSING_VERSION
from brainseg.errors import DataError
from brainseg.inference.cascade import load_model
from brainseg.runtime import cpu_name
from brainseg.training.train import (
    TrainConfig,
    export_model,
    learning_rate_at,
    recipe,
    run_is_complete,
    select_training_slices,
    train,
    with_recorded_defaults,
)


def tiny(model: str, epochs: int = 2) -> TrainConfig:
    base = recipe(model, "cpu")
    return TrainConfig(**{**base.to_dict(), "input_size": 32, "width": 0.125, "epochs": epochs, "batch_size": 4})


class StopAfterEpoch(keras.callbacks.Callback):
    """Interrupts training at the end of epoch ``last`` (1-based), as a killed process would."""

    def __init__(self, last: int = 1):
        super().__init__()
        self.last = last

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.last:
            raise KeyboardInterrupt("simulated interruption")


@pytest.mark.parametrize("model", ["classifier", "segmenter"])
def test_interrupted_training_resumes_and_exports(tmp_path, demo_dir, demo_split, model):
    run_dir = tmp_path / "run"
    config = tiny(model)
    with pytest.raises(KeyboardInterrupt):
        train(config, demo_dir, demo_split, run_dir, verbose=0, limit_slices=12,
              extra_callbacks=[StopAfterEpoch(1)])
    assert len(pd.read_csv(run_dir / "history.csv")) == 1
    assert (run_dir / "backup").exists()
    # The killed invocation's wall clock is kept up to its last completed epoch (start-up included).
    killed = pd.read_csv(run_dir / "wall_seconds.csv", header=None)[0].tolist()
    first_epoch = pd.read_csv(run_dir / "epoch_seconds.csv", header=None)[1].sum()
    assert len(killed) == 1 and killed[0] >= first_epoch
    # Make the killed invocation's epoch unbeatable: the resumed epoch must not replace its checkpoint.
    history = pd.read_csv(run_dir / "history.csv")
    history.loc[0, "val_loss"] = 0.0
    history.to_csv(run_dir / "history.csv", index=False)
    best_before = weights_sha256(keras.models.load_model(run_dir / "best.keras", compile=False))

    train(config, demo_dir, demo_split, run_dir, verbose=0, limit_slices=12)
    history = pd.read_csv(run_dir / "history.csv")
    assert history["epoch"].tolist() == [0, 1]  # resumed at epoch 1, not restarted
    assert weights_sha256(keras.models.load_model(run_dir / "best.keras", compile=False)) == best_before
    train(config, demo_dir, demo_split, run_dir, verbose=0, limit_slices=12)  # complete: nothing is trained again
    assert pd.read_csv(run_dir / "history.csv")["epoch"].tolist() == [0, 1]
    walls = pd.read_csv(run_dir / "wall_seconds.csv", header=None)[0].tolist()
    assert len(walls) == 2 and walls[0] == killed[0]  # one line per invocation; the first one's kept
    assert (run_dir / "curves.png").stat().st_size > 1000
    recorded = json.loads((run_dir / "config.json").read_text())
    assert recorded["config"] == config.to_dict()

    exported = export_model(run_dir, tmp_path / "models" / f"{model}.keras")
    loaded = load_model(exported, model)
    sidecar = json.loads(exported.with_suffix(".json").read_text())
    assert loaded.sha256 == sidecar["sha256"]
    assert sidecar["input_spec"] == {"size": 32, "scaling": config.scaling}
    assert sidecar["epochs_run"] == 2
    assert sidecar["cpu"] == cpu_name() and sidecar["cpu"]  # weights repeat bit for bit only on the same CPU model
    assert sidecar["best_epoch"] == 1 and sidecar["best_val_loss"] == 0.0  # the checkpoint the sidecar names
    assert sidecar["weights_sha256"] == best_before
    assert sidecar["train_wall_seconds"] == pytest.approx(sum(walls)) and sidecar["train_wall_clock_recorded"]
    assert sidecar["train_wall_seconds"] >= sidecar["train_epoch_seconds"]
    assert sidecar["preprocessing"] == recorded["preprocessing"] == PREPROCESSING_VERSION

    # The weights' digest names the values, not the file: a second export of the same run (a new file, with
    # its own save time) has the same digest, and one changed weight changes it.
    again = export_model(run_dir, tmp_path / "again" / f"{model}.keras")
    assert json.loads(again.with_suffix(".json").read_text())["weights_sha256"] == sidecar["weights_sha256"]
    network = keras.models.load_model(again, compile=False)
    assert weights_sha256(network) == sidecar["weights_sha256"]
    kernel = network.weights[0]
    kernel.assign(keras.ops.convert_to_numpy(kernel) + 1e-3)
    assert weights_sha256(network) != sidecar["weights_sha256"]


def test_training_again_from_scratch_gives_the_same_weights(tmp_path, demo_dir, demo_split):
    # Run folders do not outlive a machine: a fold model a variant leaves alone is retrained, and its pairing with
    # the baseline is clean only if the same recipe and seed give the same weights (scripts/cpu_crossval_fold.sh).
    config = tiny("classifier")
    first = train(config, demo_dir, demo_split, tmp_path / "first", verbose=0, limit_slices=12)
    again = train(config, demo_dir, demo_split, tmp_path / "again", verbose=0, limit_slices=12)
    other = train(TrainConfig(**{**config.to_dict(), "seed": 7}), demo_dir, demo_split, tmp_path / "other",
                  verbose=0, limit_slices=12)
    digests = [weights_sha256(keras.models.load_model(run, compile=False)) for run in (first, again, other)]
    assert digests[0] == digests[1] != digests[2]


@pytest.mark.parametrize("model", ["classifier", "segmenter"])
def test_a_resumed_run_ends_with_the_weights_of_an_uninterrupted_one(tmp_path, demo_dir, demo_split, model):
    # A final fit keeps its last epoch, so best.keras holds the weights after epoch 3 whichever the loss.
    # Each epoch draws another slice order: the resumed epoch must draw the third order, not the first again.
    config = TrainConfig(**{**tiny(model, epochs=3).to_dict(), "fit_on": "train+val", "stop_epoch": 3})
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    train(config, demo_dir, demo_split, whole, verbose=0, limit_slices=12)
    with pytest.raises(KeyboardInterrupt):
        train(config, demo_dir, demo_split, resumed, verbose=0, limit_slices=12,
              extra_callbacks=[StopAfterEpoch(2)])
    train(config, demo_dir, demo_split, resumed, verbose=0, limit_slices=12)
    losses = [pd.read_csv(run / "history.csv")["loss"].tolist() for run in (whole, resumed)]
    assert losses[0] == losses[1]
    assert weights_sha256(keras.models.load_model(resumed / "best.keras", compile=False)) == weights_sha256(
        keras.models.load_model(whole / "best.keras", compile=False))


def test_run_folder_refuses_another_config(tmp_path, demo_dir, demo_split):
    run_dir = tmp_path / "run"
    train(tiny("classifier", epochs=1), demo_dir, demo_split, run_dir, verbose=0, limit_slices=8)
    with pytest.raises(DataError, match="another config"):
        train(tiny("classifier", epochs=3), demo_dir, demo_split, run_dir, verbose=0, limit_slices=8)
    # Same config, but trained before the input path changed: resuming would mix two input paths.
    record = run_dir / "config.json"
    record.write_text(json.dumps({k: v for k, v in json.loads(record.read_text()).items() if k != "preprocessing"}))
    with pytest.raises(DataError, match="preprocessing version 1"):
        train(tiny("classifier", epochs=1), demo_dir, demo_split, run_dir, verbose=0, limit_slices=8)


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


class KeepFinalWeights(keras.callbacks.Callback):
    """Remembers each epoch's learning rate and the model's weights when training ends."""

    def __init__(self):
        super().__init__()
        self.learning_rates = []

    def on_epoch_end(self, epoch, logs=None):
        self.learning_rates.append(float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)))

    def on_train_end(self, logs=None):
        self.weights = [w.copy() for w in self.model.get_weights()]


def test_final_fit_trains_on_train_and_val_runs_a_fixed_part_of_the_schedule_and_keeps_the_last_epoch(
        tmp_path, demo_dir, demo_split, monkeypatch):
    import numpy as np

    from brainseg.core.data import scan_dataset
    from brainseg.training import train as train_module

    sizes = []
    original = train_module.make_dataset
    monkeypatch.setattr(train_module, "make_dataset",
                        lambda images, *a, **k: sizes.append(len(images)) or original(images, *a, **k))
    config = TrainConfig(**{**tiny("classifier", epochs=3).to_dict(), "fit_on": "train+val", "stop_epoch": 2})
    final = KeepFinalWeights()
    run_dir = tmp_path / "run"
    train(config, demo_dir, demo_split, run_dir, verbose=0, extra_callbacks=[final])

    manifest = scan_dataset(demo_dir)
    split = json.loads(demo_split.read_text())
    assert sizes == [manifest["patient_id"].isin(split["train"] + split["val"]).sum()]  # no validation set
    history = pd.read_csv(run_dir / "history.csv")
    assert len(history) == 2 and history["val_loss"].isna().all()  # CSVLogger keeps the column, empty
    # The 3-epoch schedule is kept, cut after 2 epochs (not a 2-epoch schedule).
    assert final.learning_rates == pytest.approx([learning_rate_at(config, e) for e in (0, 1)], rel=1e-5)
    assert final.learning_rates[1] > config.learning_rate * 0.5  # a 2-epoch cosine would be at its floor
    saved = keras.models.load_model(run_dir / "best.keras", compile=False).get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(saved, final.weights, strict=True))
    assert run_is_complete(run_dir)

    sidecar = json.loads(export_model(run_dir, tmp_path / "models" / "classifier.keras").with_suffix(".json")
                         .read_text())
    assert sidecar["fit_on"] == "train+val" and sidecar["best_epoch"] == 2 and sidecar["best_val_loss"] is None
    assert sidecar["n_val_slices"] == 0


def test_a_final_fit_needs_a_stop_epoch_within_the_schedule(tmp_path, demo_dir, demo_split):
    base = tiny("segmenter", epochs=3).to_dict()
    for stop, message in ((None, "fixed epoch count"), (4, "between 1 and"), (0, "between 1 and")):
        config = TrainConfig(**{**base, "fit_on": "train+val", "stop_epoch": stop})
        with pytest.raises(DataError, match=message):
            train(config, demo_dir, demo_split, tmp_path / "run", verbose=0)


def test_runs_recorded_before_new_fields_existed_still_match_their_config():
    # A run from before missing-sequence and gamma augmentation existed trained with both off.
    shipped = recipe("segmenter", "cpu")
    config = replace(shipped, augment={**shipped.augment, "missing_sequence_prob": 0.0, "max_gamma": 1.0})
    recorded = config.to_dict()
    for newer in ("fit_on", "stop_epoch"):
        del recorded[newer]
    del recorded["augment"]["missing_sequence_prob"], recorded["augment"]["max_gamma"]
    assert with_recorded_defaults(recorded) == config.to_dict()
    assert with_recorded_defaults({**recorded, "fit_on": "train+val"}) != config.to_dict()


def test_run_is_complete_counts_epochs_up_to_the_stop_epoch(tmp_path):
    (tmp_path / "best.keras").write_bytes(b"weights")
    (tmp_path / "history.csv").write_text("epoch,loss\n0,1\n1,1\n")
    for stop, epochs, complete in ((None, 2, True), (None, 3, False), (2, 3, True), (3, 3, False)):
        (tmp_path / "config.json").write_text(json.dumps({"config": {"epochs": epochs, "stop_epoch": stop}}))
        assert run_is_complete(tmp_path) is complete


class KeepStepWeights(keras.callbacks.Callback):
    """Remembers the trainable weights (the raw ones, while training) after the first and the latest step."""

    def on_train_batch_end(self, batch, logs=None):
        self.last_step = [keras.ops.convert_to_numpy(w).copy() for w in self.model.trainable_weights]
        if not hasattr(self, "first_step"):
            self.first_step = self.last_step


@pytest.mark.parametrize("interrupted", [False, True])
def test_weight_averaging_validates_checkpoints_and_exports_the_average_and_survives_a_resume(
        tmp_path, demo_dir, demo_split, interrupted):
    import numpy as np

    # Momentum 1 freezes the average at the weights after the first step: easy to tell from the raw weights.
    config = TrainConfig(**{**tiny("segmenter", epochs=2).to_dict(), "weight_average_momentum": 1.0})
    steps = KeepStepWeights()
    run_dir = tmp_path / "run"
    if interrupted:  # the average lives in the optimizer state: the backup must carry it over
        with pytest.raises(KeyboardInterrupt):
            train(config, demo_dir, demo_split, run_dir, verbose=0, limit_slices=12,
                  extra_callbacks=[steps, StopAfterEpoch(1)])
    train(config, demo_dir, demo_split, run_dir, verbose=0, limit_slices=12, extra_callbacks=[steps])
    assert pd.read_csv(run_dir / "history.csv")["epoch"].tolist() == [0, 1]

    exported = keras.models.load_model(export_model(run_dir, tmp_path / "models" / "segmenter.keras"), compile=False)
    averaged = [keras.ops.convert_to_numpy(w) for w in exported.trainable_weights]
    def largest_difference(weights):
        return max(float(np.abs(a - b).max()) for a, b in zip(averaged, weights, strict=True))

    # Equal up to rounding (Keras swaps the two sets of weights in place by adding and subtracting).
    assert largest_difference(steps.first_step) < 1e-6
    # Training itself moved on with the raw weights, which are not what was exported.
    assert largest_difference(steps.last_step) > 1e-4


def test_a_run_repeats_bit_for_bit_whatever_ran_before_it_in_the_process(tmp_path, demo_dir, demo_split):
    config = tiny("segmenter", epochs=1)
    digests = []
    for i, earlier_seed in enumerate((7, 42)):
        keras.utils.set_random_seed(earlier_seed)  # what earlier work (another run, a test) left in this process
        best = train(config, demo_dir, demo_split, tmp_path / f"run-{i}", verbose=0, limit_slices=12)
        digests.append(weights_sha256(keras.models.load_model(best, compile=False)))
    assert digests[0] == digests[1]


def test_slices_from_a_cache_are_used_as_cached_not_prepared_twice():
    """The cache stores prepare_images' output; a second pass at the small size could see air the first did not
    (a noisy grey border smoothed by the resize) and shift it: one preprocessing path, applied once."""
    import numpy as np

    from brainseg.core.preprocess import GREY_AIR_LEVEL, black_background
    from brainseg.core.slice_cache import CACHE_ROW
    from brainseg.training.train import prepare_arrays

    images = np.full((2, 32, 32, 3), GREY_AIR_LEVEL + 20, np.uint8)  # uniform grey air in every channel
    images[:, 8:24, 8:24] = 200
    assert (black_background(images) != images).any()  # a second pass would change these slices
    masks = np.zeros((2, 32, 32), bool)
    manifest = pd.DataFrame({CACHE_ROW: [1, 0], "has_tumor": [0, 0]})
    prepared, labels = prepare_arrays(manifest, tiny("classifier"), progress=False, cache=(images, masks))
    np.testing.assert_array_equal(prepared, images[[1, 0]])
    assert labels.tolist() == [0.0, 0.0]


def test_a_deep_supervised_run_resumes_and_exports_the_plain_segmenter(tmp_path, demo_dir, demo_split):
    import numpy as np

    from brainseg.core.networks import build_segmenter

    config = TrainConfig(**{**tiny("segmenter").to_dict(), "deep_supervision_levels": 2})
    run_dir = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train(config, demo_dir, demo_split, run_dir, verbose=0, limit_slices=12,
              extra_callbacks=[StopAfterEpoch(1)])
    train(config, demo_dir, demo_split, run_dir, verbose=0, limit_slices=12)
    history = pd.read_csv(run_dir / "history.csv")
    assert history["epoch"].tolist() == [0, 1]
    # The main map's metrics keep the single-map run's column names (curves and reports read them).
    assert {"tversky_index", "val_soft_dice", "val_loss"} <= set(history.columns)

    exported = keras.models.load_model(export_model(run_dir, tmp_path / "models" / "segmenter.keras"), compile=False)
    plain = build_segmenter(config.input_size, config.width)
    assert exported.output_shape == plain.output_shape
    assert [w.shape for w in exported.weights] == [w.shape for w in plain.weights]

    # The side maps changed the training: the same seed without them ends elsewhere.
    plain_run = train(tiny("segmenter"), demo_dir, demo_split, tmp_path / "plain", verbose=0, limit_slices=12)
    trained_plain = keras.models.load_model(plain_run, compile=False)
    assert any(not np.array_equal(a, b) for a, b in zip(exported.get_weights(), trained_plain.get_weights(),
                                                         strict=True))


@pytest.mark.parametrize(("model", "levels", "message"),
                         [("classifier", 1, "segmenter's"), ("segmenter", -1, "0 \\(off\\) or more")])
def test_bad_deep_supervision_is_refused_before_any_io(tmp_path, demo_split, model, levels, message):
    config = TrainConfig(**{**tiny(model).to_dict(), "deep_supervision_levels": levels})
    # A data folder that does not exist: the config is refused before anything is read or written.
    with pytest.raises(DataError, match=message):
        train(config, tmp_path / "no-such-data", demo_split, tmp_path / "run", verbose=0, limit_slices=12)
    assert not (tmp_path / "run" / "config.json").exists()


def test_a_segmenter_trains_with_one_tversky_index_per_slice(tmp_path, demo_dir, demo_split):
    import numpy as np

    config = TrainConfig(**{**tiny("segmenter").to_dict(), "tversky_over": "slice"})
    best = train(config, demo_dir, demo_split, tmp_path / "run", verbose=0, limit_slices=12)
    history = pd.read_csv(tmp_path / "run" / "history.csv")
    assert np.isfinite(history[["loss", "val_loss"]].to_numpy()).all()
    exported = export_model(tmp_path / "run", tmp_path / "models" / "segmenter.keras")
    assert json.loads(exported.with_suffix(".json").read_text())["train_config"]["tversky_over"] == "slice"
    # Same seed and data, the index over the batch: the reduction changed the training.
    batch_run = train(tiny("segmenter"), demo_dir, demo_split, tmp_path / "batch", verbose=0, limit_slices=12)
    per_slice, over_batch = (keras.models.load_model(path, compile=False) for path in (best, batch_run))
    assert any(not np.array_equal(a, b) for a, b in zip(per_slice.get_weights(), over_batch.get_weights(),
                                                         strict=True))


def test_an_unknown_tversky_reduction_is_refused_before_any_io(tmp_path, demo_split):
    config = TrainConfig(**{**tiny("segmenter").to_dict(), "tversky_over": "pixel"})
    with pytest.raises(DataError, match=r"tversky_over must be one of \('batch', 'slice'\), got 'pixel'"):
        train(config, tmp_path / "no-such-data", demo_split, tmp_path / "run", verbose=0, limit_slices=12)
    assert not (tmp_path / "run" / "config.json").exists()


def test_an_unknown_segmenter_loss_is_refused_before_any_io(tmp_path, demo_split):
    config = TrainConfig(**{**tiny("segmenter").to_dict(), "loss": "dice"})
    with pytest.raises(DataError, match=r"the segmenter's loss must be one of \('focal_tversky', 'dice_bce', "
                       r"'binary_crossentropy'\), got 'dice'"):
        train(config, tmp_path / "no-such-data", demo_split, tmp_path / "run", verbose=0, limit_slices=12)
    assert not (tmp_path / "run" / "config.json").exists()


def test_the_config_fields_accept_exactly_the_names_the_checks_and_command_line_offer():
    hints = typing.get_type_hints(TrainConfig)
    assert typing.get_args(hints["loss"]) == SEGMENTATION_LOSSES
    assert typing.get_args(hints["tversky_over"]) == TVERSKY_OVER


def test_an_older_record_without_the_tversky_reduction_took_it_over_the_batch():
    recorded = {k: v for k, v in tiny("segmenter").to_dict().items() if k != "tversky_over"}
    assert TrainConfig(**with_recorded_defaults(recorded)).tversky_over == "batch"
