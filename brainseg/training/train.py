"""Training of the classifier and the segmenter, resumable and fully recorded.

A run folder holds everything needed to reproduce or continue a run:
``config.json`` (the full TrainConfig), ``backup/`` (last epoch's weights and optimizer state, for
resuming after an interruption), ``best.keras`` (best validation loss so far), ``history.csv`` and
``curves.png``. ``export_model`` copies the best checkpoint to ``models/`` with its sidecar JSON.

A *final fit* (``fit_on="train+val"``) trains on the validation patients too. Nothing is left to pick a
checkpoint on, so it runs a fixed number of epochs (``stop_epoch``, chosen beforehand on validation data,
e.g. by the cross-validation) of the recipe's unchanged schedule, and ``best.keras`` holds the last epoch.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Literal

import keras
import numpy as np
import pandas as pd

from brainseg.core.context import context_rows, stack_context
from brainseg.core.data import load_dataset, load_slices
from brainseg.core.files import write_atomically
from brainseg.core.hashing import sha256_of, weights_sha256
from brainseg.core.loss_names import SEGMENTATION_LOSSES, TVERSKY_OVER, SegmentationLoss, TverskyOver
from brainseg.core.preprocess import (
    PREPROCESSING_VERSION,
    AugmentConfig,
    InputSpec,
    make_dataset,
    prepare_images,
    recorded_preprocessing,
    resize_masks,
)
from brainseg.core.slice_cache import CACHE_ROW, is_slice_cache, read_slice_cache
from brainseg.core.split import FINAL_FIT_PARTS, load_split, select_part
from brainseg.errors import DataError
from brainseg.runtime import cpu_name
from brainseg.training import distribute
from brainseg.training.resume import RandomStateBackup, backed_up_epochs

ModelKind = Literal["classifier", "segmenter"]


@dataclass
class TrainConfig:
    model: ModelKind
    recipe: str
    input_size: int = 256
    width: float = 1.0
    scaling: str = "unit"
    epochs: int = 40
    batch_size: int = 16
    learning_rate: float = 1e-3
    adam_epsilon: float = 1e-7
    schedule: Literal["seed", "cosine"] = "seed"
    decay_start_epoch: int = 20  # 'seed' schedule: constant, then x exp(-0.1) per epoch
    loss: SegmentationLoss = "binary_crossentropy"  # the segmenter's; the classifier always trains on this default
    tversky_alpha: float = 0.7  # focal Tversky only: weight of missed pixels (1 - alpha: extra pixels)
    tversky_gamma: float = 0.75
    # focal Tversky only: one index over the whole 'batch' (seed) or one per 'slice', averaged (small tumors
    # then weigh as much as large ones)
    tversky_over: TverskyOver = "batch"
    # classifier: 'undersample' healthy slices to the tumor count (seed) or keep all and 'class_weight'
    balance: Literal["undersample", "class_weight", "none"] = "none"
    # segmenter: tumor-free slices added, as a fraction of the tumor slices (seed: 0, tumor slices only)
    empty_fraction: float = 0.0
    augment: dict | None = field(default_factory=lambda: AugmentConfig().to_dict())
    seed: int = 42
    # The split parts trained on: 'train' (validation picks the checkpoint) or 'train+val' (a final fit)
    fit_on: Literal["train", "train+val"] = "train"
    # Stop after this many epochs of the ``epochs``-long schedule (None: run it all). A final fit needs it.
    stop_epoch: int | None = None
    # Neighbouring slices read on each side as extra input channels (2.5-D; see brainseg.core.context)
    context_slices: int = 0
    # Momentum of an exponential moving average of the weights (Polyak averaging), per step; None: off. When
    # on, validation, the checkpoints and the exported model use the averaged weights, training the raw ones.
    weight_average_momentum: float | None = None
    # Segmenter: coarser decoder stages that also predict the mask in training (deep supervision; see
    # networks.with_side_maps). 0: off. The network saved and run at inference is the same either way.
    deep_supervision_levels: int = 0

    @property
    def final_fit(self) -> bool:
        return self.fit_on == FINAL_FIT_PARTS

    @property
    def averages_weights(self) -> bool:
        return self.weight_average_momentum is not None

    @property
    def input_spec(self) -> InputSpec:
        return InputSpec(self.input_size, self.scaling, self.context_slices)  # type: ignore[arg-type]

    def to_dict(self) -> dict:
        return asdict(self)


def recipe(model: ModelKind, name: str) -> TrainConfig:
    """Named training recipes. 'seed' is the reference; 'cpu' is what ships (trains in < 90 min on 2 cores)."""
    if model == "classifier":
        if name == "seed":
            return TrainConfig(model, name, input_size=256, width=1.0, scaling="unit", epochs=40,
                               learning_rate=1e-3, schedule="seed", loss="binary_crossentropy",
                               balance="undersample", augment=None)
        if name == "cpu":
            return TrainConfig(model, name, input_size=128, width=0.5, scaling="zscore", epochs=30,
                               learning_rate=1e-3, schedule="cosine", loss="binary_crossentropy",
                               balance="class_weight")
    elif model == "segmenter":
        if name == "seed":
            return TrainConfig(model, name, input_size=256, width=1.0, scaling="zscore", epochs=30,
                               learning_rate=0.01, adam_epsilon=0.1, schedule="seed", decay_start_epoch=10**6,
                               loss="focal_tversky", empty_fraction=0.0, augment=None)
        if name == "cpu":
            # alpha 0.5 (misses and extra pixels weigh alike): chosen by the ablation (models/ablation.json);
            # rotation within 20 degrees and zoom within 20% (not the default 10 and 10%), then pre- and
            # post-contrast each replaced by FLAIR with probability 0.2: each adopted by a CPU cross-validation
            # (models/crossval_variants/segmenter-spatial_20_cpu.json and
            # segmenter-spatial_20-missing_seq_0.2_cpu.json, ablation_decision.md)
            return TrainConfig(model, name, input_size=128, width=1.0, scaling="zscore", epochs=35,
                               learning_rate=1e-3, schedule="cosine", loss="focal_tversky", tversky_alpha=0.5,
                               empty_fraction=0.25,
                               augment=AugmentConfig(max_rotation_deg=20.0, max_scale_delta=0.2,
                                                     missing_sequence_prob=0.2).to_dict())
    raise ValueError(f"unknown recipe {name!r} for {model} (choose 'seed' or 'cpu')")


def learning_rate_at(config: TrainConfig, epoch: int) -> float:
    """Learning rate for a 0-based epoch (a pure function of the epoch, so resuming is exact)."""
    if config.schedule == "cosine":
        progress = epoch / max(1, config.epochs - 1)
        return config.learning_rate * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * progress)))
    if epoch < config.decay_start_epoch:
        return config.learning_rate
    return config.learning_rate * math.exp(-0.1 * (epoch - config.decay_start_epoch + 1))


def select_training_slices(manifest: pd.DataFrame, config: TrainConfig, rng: np.random.Generator) -> pd.DataFrame:
    """The slices a model trains (or validates) on, per the recipe's balancing rule."""
    tumor = manifest[manifest["has_tumor"]]
    healthy = manifest[~manifest["has_tumor"]]
    if config.model == "classifier":
        if config.balance == "undersample":
            keep = rng.choice(len(healthy), size=min(len(healthy), len(tumor)), replace=False)
            return pd.concat([tumor, healthy.iloc[np.sort(keep)]]).sort_index()
        return manifest
    n_empty = min(len(healthy), round(config.empty_fraction * len(tumor)))
    keep = rng.choice(len(healthy), size=n_empty, replace=False)
    return pd.concat([tumor, healthy.iloc[np.sort(keep)]]).sort_index()


def prepare_arrays(manifest: pd.DataFrame, config: TrainConfig, progress: bool,
                   cache: tuple[np.ndarray, np.ndarray] | None = None,
                   volumes: pd.DataFrame | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Decoded, resized slices and their targets (labels or masks) for one model.

    ``cache``: the (images, masks) of a slice cache, which ``manifest``'s ``cache_row`` column points into.
    ``volumes``: the whole volumes ``manifest``'s slices were selected from (its index labels are theirs), where a
    model with context slices finds each slice's neighbours; default ``manifest`` itself.
    """
    if not config.context_slices:
        images, masks = _decoded(manifest, config, progress, cache)
    else:
        volumes = manifest if volumes is None else volumes
        k = config.context_slices
        rows = context_rows(volumes["slice"], k, volumes["case"])[volumes.index.get_indexer(manifest.index)]
        # Every slice and neighbour decoded once; each slice is its own middle neighbour, so its mask is among them.
        needed, positions = np.unique(rows, return_inverse=True)
        positions = positions.reshape(rows.shape)
        decoded, decoded_masks = _decoded(volumes.iloc[needed], config, progress, cache)
        images, masks = stack_context(decoded, positions), decoded_masks[positions[:, k]]
    if config.model == "classifier":
        return images, manifest["has_tumor"].to_numpy(np.float32)
    return images, resize_masks(masks, config.input_size)


def _decoded(manifest: pd.DataFrame, config: TrainConfig, progress: bool,
             cache: tuple[np.ndarray, np.ndarray] | None) -> tuple[np.ndarray, np.ndarray]:
    """The slices' (N, s, s, 3) model-ready uint8 images and their full-size or cached masks."""
    if cache is None:
        images, masks = load_slices(manifest, progress=progress)
    else:
        rows = manifest[CACHE_ROW].to_numpy()
        images, masks = cache[0][rows], cache[1][rows]
        if images.shape[1] != config.input_size:
            raise DataError(f"the slice cache holds {images.shape[1]}x{images.shape[1]} slices; this recipe "
                            f"trains at {config.input_size}x{config.input_size}")
        return images, masks  # cached slices went through prepare_images when cached: not twice
    return prepare_images(images, config.input_size), masks


def build_model(config: TrainConfig) -> keras.Model:
    from brainseg.core.losses import DeepSupervisionLoss, on_main_map, segmentation_loss, soft_dice, tversky_index
    from brainseg.core.networks import build_classifier, build_segmenter, with_side_maps

    check_config(config)
    keras.utils.set_random_seed(config.seed)
    if config.model == "classifier":
        model = build_classifier(config.input_size, config.width, channels=config.input_spec.channels)
        metrics = ["accuracy", keras.metrics.AUC(name="auc")]
        loss = "binary_crossentropy"
    else:
        model = build_segmenter(config.input_size, config.width, channels=config.input_spec.channels)
        metrics = [tversky_index, soft_dice]
        loss = segmentation_loss(config.loss, config.tversky_alpha, config.tversky_gamma, config.tversky_over)
        if config.deep_supervision_levels:
            model = with_side_maps(model, config.deep_supervision_levels)
            metrics = [on_main_map(metric) for metric in metrics]
            loss = DeepSupervisionLoss(loss, config.deep_supervision_levels)
    optimizer = keras.optimizers.Adam(config.learning_rate, epsilon=config.adam_epsilon,
                                      use_ema=config.averages_weights,
                                      ema_momentum=config.weight_average_momentum if config.averages_weights else 0.99)
    model.compile(optimizer=optimizer, loss=loss, metrics=metrics, loss_weights=distribute.replica_loss_weight(loss))
    return model


def train(
    config: TrainConfig,
    data_dir: str | Path,
    split_file: str | Path,
    run_dir: str | Path,
    verbose: int = 2,
    limit_slices: int | None = None,
    extra_callbacks: list | None = None,
    strategy: str = "default",
) -> Path:
    """Train (or resume) one model; returns the path of the best checkpoint.

    ``limit_slices`` caps the train and validation sets (for smoke tests only). ``strategy`` distributes
    training (see brainseg.training.distribute): the batch size stays the global one, split across replicas.
    """
    started = time.perf_counter()
    # First, before any TensorFlow op: a multi-worker strategy can only be set up at program start-up.
    distribution = distribute.make_strategy(strategy)
    run_dir = distribute.worker_run_dir(Path(run_dir), strategy)
    run_dir.mkdir(parents=True, exist_ok=True)
    check_config(config)  # before any I/O: a bad config must not leave a half-made run behind
    check_run_config(run_dir, config)
    if run_is_complete(run_dir):  # its backup is gone: training it again would start over from epoch 0
        if verbose:
            print(f"{run_dir}: already trained ({config.stop_epoch or config.epochs} epochs); not trained again",
                  flush=True)
        return run_dir / "best.keras"
    _forget_global_seed()
    config_path = run_dir / "config.json"
    cache = None
    if is_slice_cache(data_dir):  # the arrays themselves, already at the input size (see core.slice_cache)
        manifest, *cache = read_slice_cache(data_dir)
    else:
        manifest, _ = load_dataset(data_dir, progress=verbose > 0)
    split = load_split(split_file)
    rng = np.random.default_rng(config.seed)
    parts = {}
    # A final fit has no validation part: the validation patients are trained on.
    part_patients = {"train": config.fit_on.split("+")} | ({} if config.final_fit else {"val": ["val"]})
    for part, members in part_patients.items():
        rows = pd.concat([select_part(manifest, split, member) for member in members], ignore_index=True)
        selected = select_training_slices(rows, config, rng)
        if limit_slices is not None:
            selected = selected.sample(n=min(limit_slices, len(selected)), random_state=config.seed).sort_index()
        parts[part] = prepare_arrays(selected, config, progress=verbose > 0, cache=cache, volumes=rows)

    x_train, y_train = parts["train"]
    weights = None
    if config.model == "classifier" and config.balance == "class_weight":
        positive_share = float(y_train.mean())
        weights = np.where(y_train > 0.5, 0.5 / positive_share, 0.5 / (1 - positive_share))
    spec = config.input_spec
    augment = AugmentConfig(**config.augment) if config.augment else None
    train_ds = make_dataset(x_train, y_train, spec, config.batch_size, augment, shuffle=True, seed=config.seed,
                            sample_weights=weights, epochs_done=backed_up_epochs(run_dir / "backup"))
    train_ds = distribute.distributable(train_ds, distribution)
    val_ds = None
    if not config.final_fit:
        val_ds = distribute.distributable(make_dataset(*parts["val"], spec, config.batch_size), distribution)

    config_path.write_text(json.dumps({
        "config": config.to_dict(),
        "data_dir": str(data_dir),
        "split_file": str(split_file),
        "n_train_slices": len(x_train),
        "n_val_slices": 0 if config.final_fit else len(parts["val"][0]),
        "n_train_tumor_slices": int((y_train.reshape(len(y_train), -1).max(axis=1) > 0).sum()),
        "strategy": distribute.describe(strategy, distribution),
        "keras_backend": keras.backend.backend(),
        "devices": _device_names(),
        # CPU training repeats bit for bit on the same CPU model, not across models (their kernels round apart)
        "cpu": cpu_name(),
        "preprocessing": PREPROCESSING_VERSION,
    }, indent=2) + "\n")

    # Model and optimizer are created, the backup restored into them and fit run, inside the strategy's scope.
    with distribute.strategy_scope(distribution):
        model = build_model(config)
        epoch_timer = EpochTimer(run_dir / "epoch_seconds.csv")
        clock = InvocationClock(run_dir / "wall_seconds.csv", started)
        callbacks = [
            # The backup holds the raw weights (the average lives in the optimizer state it saves too) ...
            keras.callbacks.BackupAndRestore(str(run_dir / "backup")),
            RandomStateBackup(run_dir / "backup"),  # dropout's random stream, which the backup leaves out
            # ... then the averaged weights are swapped in for validation and for the checkpoint below.
            *([keras.callbacks.SwapEMAWeights(swap_on_epoch=True)] if config.averages_weights else []),
            # A final fit keeps its last epoch (nothing held out to choose by). A resumed run starts from the best
            # validation loss so far: a fresh checkpoint callback would take its first epoch as the best.
            InferenceNetworkCheckpoint(str(run_dir / "best.keras"), monitor="val_loss",
                                       save_best_only=not config.final_fit,
                                       initial_value_threshold=best_val_loss_so_far(run_dir)),
            keras.callbacks.CSVLogger(str(run_dir / "history.csv"), append=True),
            keras.callbacks.LearningRateScheduler(lambda epoch, _lr: learning_rate_at(config, epoch)),
            epoch_timer,
            clock,
            *(extra_callbacks or []),
        ]
        model.fit(train_ds, validation_data=val_ds, epochs=config.stop_epoch or config.epochs, callbacks=callbacks,
                  verbose=verbose, shuffle=False)  # the dataset shuffles itself (seeded)
    from brainseg.training.curves import plot_training_curves

    plot_training_curves(run_dir / "history.csv", run_dir / "curves.png", config.model)
    clock.record()
    return run_dir / "best.keras"


def best_val_loss_so_far(run_dir: Path) -> float | None:
    """The lowest validation loss in a run's history (None for a new run or one without validation)."""
    history = run_dir / "history.csv"
    if not history.is_file():
        return None
    losses = pd.read_csv(history).get("val_loss")
    return None if losses is None or losses.dropna().empty else float(losses.min())


class InferenceNetworkCheckpoint(keras.callbacks.ModelCheckpoint):
    """A checkpoint of the network inference runs (``networks.inference_network``): a deep-supervised run's
    training model without its side heads, any other model as trained. Resuming uses the backup, not this."""

    def set_model(self, model: keras.Model) -> None:
        from brainseg.core.networks import inference_network

        super().set_model(inference_network(model))


class EpochTimer(keras.callbacks.Callback):
    """Appends each epoch's wall time to a CSV, so a resumed run still reports its total."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        self._start = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        with open(self.path, "a") as handle:
            handle.write(f"{epoch},{time.perf_counter() - self._start:.1f}\n")


class InvocationClock(keras.callbacks.Callback):
    """The command's own wall clock (start-up and data loading included), one line of ``wall_seconds.csv`` per
    invocation of a (resumed) run. This invocation's line is rewritten after every epoch, so a run killed
    mid-way (a session's end) still counts its time up to its last completed epoch."""

    def __init__(self, path: Path, started: float) -> None:
        super().__init__()
        self.path, self.started = path, started
        self.earlier = path.read_text().splitlines() if path.is_file() else []

    def record(self) -> None:
        lines = [*self.earlier, f"{time.perf_counter() - self.started:.1f}"]
        write_atomically(self.path, lambda handle: handle.write(("\n".join(lines) + "\n").encode()))

    def on_epoch_end(self, epoch, logs=None):
        self.record()


def export_model(run_dir: str | Path, destination: str | Path) -> Path:
    """Copy a run's best checkpoint to ``destination`` (.keras) with a sidecar ``.json``.

    The sidecar records the input spec the cascade needs, the training config, wall time and sha256.
    """
    run_dir, destination = Path(run_dir), Path(destination)
    record = json.loads((run_dir / "config.json").read_text())
    config = TrainConfig(**record["config"])
    destination.parent.mkdir(parents=True, exist_ok=True)
    # Ship the weights without the optimizer state (a third of the size); training resumes from the run folder.
    import brainseg.core.losses  # noqa: F401  (registers the custom objects the checkpoint names)

    model = keras.models.load_model(run_dir / "best.keras", compile=False, safe_mode=True)
    model.save(destination)
    epoch_seconds = pd.read_csv(run_dir / "epoch_seconds.csv", header=None, names=["epoch", "seconds"])
    history = pd.read_csv(run_dir / "history.csv")
    # A final fit ships its last epoch and has no validation loss.
    best = history.iloc[-1] if config.final_fit else history.loc[history["val_loss"].idxmin()]
    sidecar = {
        "role": config.model,
        "input_spec": config.input_spec.to_dict(),
        "train_config": config.to_dict(),
        "n_train_slices": record["n_train_slices"],
        "n_val_slices": record["n_val_slices"],
        "best_epoch": int(best["epoch"]) + 1,
        "best_val_loss": None if config.final_fit else float(best["val_loss"]),
        "fit_on": config.fit_on,
        "epochs_run": len(history),
        "train_epoch_seconds": float(epoch_seconds["seconds"].sum()),
        # The command's wall clock when recorded (runs from before it was recorded: the epochs' sum).
        "train_wall_seconds": _wall_seconds(run_dir) or float(epoch_seconds["seconds"].sum()),
        "train_wall_clock_recorded": _wall_seconds(run_dir) is not None,
        "sha256": sha256_of(destination),
        # The weight values' own digest: equal for two trainings that gave the same model (the file's is not).
        "weights_sha256": weights_sha256(model),
        "strategy": record.get("strategy", {"name": "default", "replicas": 1}),  # runs before it was recorded
        "keras_backend": record.get("keras_backend", "tensorflow"),
        "devices": record.get("devices", []),
        "cpu": record.get("cpu"),  # None for runs from before it was recorded
        # The input path the weights were trained with (runs from before it was recorded: version 1).
        "preprocessing": recorded_preprocessing(record),
    }
    destination.with_suffix(".json").write_text(json.dumps(sidecar, indent=2) + "\n")
    return destination


def check_run_config(run_dir: str | Path, config: TrainConfig) -> None:
    """Raise DataError if ``run_dir`` already holds a run of another config (resuming it would mix the two)."""
    config_path = Path(run_dir) / "config.json"
    if config_path.exists():
        previous = json.loads(config_path.read_text())
        if with_recorded_defaults(previous.get("config") or {}) != config.to_dict():
            raise DataError(f"{run_dir} holds a run with another config; choose a new run folder (brainseg train "
                            "--run-name or --runs-dir) or delete it")
        made_with = recorded_preprocessing(previous)
        if made_with != PREPROCESSING_VERSION:
            raise DataError(f"{run_dir} holds a run trained with preprocessing version {made_with}, this code's is "
                            f"{PREPROCESSING_VERSION}; resuming it would mix the two: choose a new run folder")


def run_is_complete(run_dir: str | Path) -> bool:
    """A finished run: its checkpoint and a history as long as its configured epochs (or its stop epoch)."""
    run_dir = Path(run_dir)
    config, history = run_dir / "config.json", run_dir / "history.csv"
    if not ((run_dir / "best.keras").is_file() and config.is_file() and history.is_file()):
        return False
    recorded = json.loads(config.read_text())["config"]
    return len(pd.read_csv(history)) >= (recorded.get("stop_epoch") or recorded["epochs"])


RUN_RECORD_FILES = ("config.json", "history.csv", "epoch_seconds.csv", "wall_seconds.csv", "curves.png")


def copy_run_record(run_dir: str | Path, destination: str | Path) -> Path:
    """Copy a run's small records (config, history, epoch times, wall clock, curves) beside shipped weights."""
    import shutil

    destination = Path(destination)
    destination.mkdir(parents=True, exist_ok=True)
    for name in RUN_RECORD_FILES:
        if (Path(run_dir) / name).is_file():
            shutil.copy2(Path(run_dir) / name, destination / name)
    return destination


def with_recorded_defaults(config: dict) -> dict:
    """A recorded config with the fields added since it was written set to their defaults (which keep the
    behaviour it was trained with), so older runs still resume."""
    defaults = {f.name: f.default for f in fields(TrainConfig) if f.default is not MISSING}
    filled = {**{k: v for k, v in defaults.items() if k not in config}, **config} if config else config
    if not filled or filled.get("augment") is None:
        return filled
    return {**filled, "augment": AugmentConfig(**filled["augment"]).to_dict()}


def check_config(config: TrainConfig) -> None:
    """Refuse a config that cannot train, before any data are read or files written.

    A final fit must say when to stop; a stop must lie within the schedule; deep supervision is the segmenter's;
    the segmenter's loss and focal Tversky's reduction must be ones it knows.
    """
    if config.deep_supervision_levels and config.model != "segmenter":
        raise DataError("deep supervision is the segmenter's (the classifier has no decoder stages)")
    if config.model == "segmenter" and config.loss not in SEGMENTATION_LOSSES:
        raise DataError(f"the segmenter's loss must be one of {SEGMENTATION_LOSSES}, got {config.loss!r}")
    if config.tversky_over not in TVERSKY_OVER:
        raise DataError(f"tversky_over must be one of {TVERSKY_OVER}, got {config.tversky_over!r}")
    if config.deep_supervision_levels < 0:
        raise DataError(f"deep_supervision_levels must be 0 (off) or more, got {config.deep_supervision_levels}")
    if config.final_fit and config.stop_epoch is None:
        raise DataError("a final fit on train+val has no validation data to choose a checkpoint by: give it a fixed "
                        "epoch count (stop_epoch, e.g. from the cross-validation)")
    if config.stop_epoch is not None and not 1 <= config.stop_epoch <= config.epochs:
        raise DataError(f"stop_epoch must lie between 1 and the schedule's {config.epochs} epochs, "
                        f"got {config.stop_epoch}")


def _forget_global_seed() -> None:
    """Make a run's random stream depend on its config alone, not on what ran before it in the process.

    ``build_model`` sets TensorFlow's global seed (for the initial weights); a second run in the same process
    (the ablation, the final fit, the tests) then built its datasets under that seed instead of none, and drew
    another shuffle order than the same run in a fresh process. Unset, as in a fresh process, the datasets' own
    seeds decide, so every run repeats bit for bit what the same run gives as the first of a fresh process.
    """
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.random.set_seed(None)


def _device_names() -> list[str]:
    """The accelerators (or CPU) this run trained on, as the backend names them, for the record."""
    try:
        if keras.backend.backend() == "jax":  # JAX names the hardware itself (e.g. 'gpu:0 NVIDIA H100 80GB HBM3')
            import jax

            return [f"{d.platform}:{d.id} {d.device_kind}" for d in jax.devices()]
        return [str(d) for d in keras.distribution.list_devices()]
    except Exception:  # a record, not a requirement: never fail a training run over it
        return []


def _wall_seconds(run_dir: Path) -> float | None:
    path = run_dir / "wall_seconds.csv"
    return float(pd.read_csv(path, header=None)[0].sum()) if path.is_file() else None


def recipe_changes(model: ModelKind, overrides: dict, name: str = "cpu") -> dict[str, list]:
    """What ``overrides`` (e.g. an ablation variant's) change in the named recipe, as ``{field: [recipe's,
    variant's]}``; nested fields (augmentation) by dotted name. Overrides equal to the recipe are left out."""
    def flat(values: dict, prefix: str = "") -> dict:
        out = {}
        for key, value in values.items():
            out.update(flat(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value})
        return out

    shipped = flat(recipe(model, name).to_dict())
    return {key: [shipped.get(key), value] for key, value in flat(overrides).items() if shipped.get(key) != value}


def variant_recipe_changes(overrides_by_model: dict[str, dict], name: str = "cpu") -> dict[str, dict[str, list]]:
    """``recipe_changes`` of a variant's overrides for each model (``{model: overrides}``); all empty once the
    recipe has adopted the variant."""
    return {model: recipe_changes(model, overrides, name) for model, overrides in overrides_by_model.items()}


def config_with_overrides(config: TrainConfig, **overrides) -> TrainConfig:
    """``config`` with the non-None overrides applied (command-line flags)."""
    return replace(config, **{k: v for k, v in overrides.items() if v is not None})
