"""Fine-tune the shipped segmenter on reviewers' corrected slices, with replay so it does not forget.

Input: a Kaggle-layout corrections folder (``brainseg corrections export``: the corrected slices with their
corrected masks, and ``corrections.json``), the original data folder and its split file. The segmenter
trains a few epochs at a low learning rate on the corrected slices plus a random **replay** sample of the
split's *train* slices (expert masks): without it, a few dozen corrections would pull the network towards
those slices and away from the cohort it was validated on (catastrophic forgetting). A corrected slice
replaces its expert-masked original in the replay pool.

Output: a new model folder, never over an existing one: the parent's classifier, operating point, split and
calibration copied as they are, the new ``segmenter.keras`` and its sidecar with the provenance (parent
folder and hash, corrections used, epochs, replay size). Only the expert masks' files are read, never written.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import keras
import pandas as pd

from brainseg.core.data import load_dataset, load_slices
from brainseg.core.hashing import sha256_of
from brainseg.core.preprocess import AugmentConfig, InputSpec, make_dataset, prepare_images, resize_masks
from brainseg.core.split import load_split, select_part
from brainseg.errors import DataError

COPIED_FILES = ("classifier.keras", "classifier.json", "operating_point.json", "split.json", "calibration.json")


@dataclass
class FinetuneConfig:
    epochs: int = 5
    learning_rate: float = 1e-4  # a tenth of the shipped recipe's: adjust the network, do not retrain it
    batch_size: int = 8
    replay_per_correction: float = 4.0  # replayed training slices per corrected slice
    max_replay: int = 512
    seed: int = 42
    augment: bool = True

    def to_dict(self) -> dict:
        return asdict(self)


def _corrections_listing(corrections_dir: Path, manifest: pd.DataFrame) -> list[dict]:
    """Which corrected slices were used, with their versions and reviewers when corrections.json is there."""
    listing = corrections_dir / "corrections.json"
    if listing.is_file():
        try:
            slices = json.loads(listing.read_text()).get("slices", [])
        except json.JSONDecodeError as err:
            raise DataError(f"{listing}: not valid JSON ({err})") from err
        return [{k: s.get(k) for k in ("case", "slice", "latest_version", "reviewers")} for s in slices]
    return [{"case": r.case, "slice": int(r.slice)} for r in manifest.itertuples()]


def replay_sample(data_dir: str | Path, split_file: str | Path, corrected: pd.DataFrame, size: int,
                  seed: int) -> pd.DataFrame:
    """``size`` random slices of the split's train part, never one that was corrected (its correction wins)."""
    manifest, _ = load_dataset(data_dir)
    train = select_part(manifest, load_split(split_file), "train")
    corrected_keys = set(zip(corrected["case"], corrected["slice"], strict=True))
    pool = train[[(c, s) not in corrected_keys for c, s in zip(train["case"], train["slice"], strict=True)]]
    size = min(size, len(pool))
    return pool.sample(n=size, random_state=seed).sort_index() if size else pool.iloc[:0]


def finetune(parent_dir: str | Path, corrections_dir: str | Path, data_dir: str | Path, out_dir: str | Path,
             config: FinetuneConfig | None = None, split_file: str | Path | None = None,
             verbose: int = 2) -> dict:
    """Fine-tune ``parent_dir``'s segmenter on the corrections (+ replay) into the new folder ``out_dir``.

    Returns the provenance written into the new segmenter's sidecar (key ``finetune``).
    """
    config = config or FinetuneConfig()
    parent_dir, corrections_dir, out_dir = Path(parent_dir), Path(corrections_dir), Path(out_dir)
    split_file = Path(split_file) if split_file else parent_dir / "split.json"
    if config.epochs < 1:
        raise DataError(f"--epochs must be at least 1, got {config.epochs}")
    if out_dir.exists() and any(out_dir.iterdir()):
        raise DataError(f"{out_dir}: the output folder exists and is not empty (a fine-tune never overwrites a "
                        "model folder: choose a new --out)")
    if out_dir.resolve() == parent_dir.resolve():
        raise DataError(f"{out_dir}: --out must differ from the parent models folder")
    parent_model = parent_dir / "segmenter.keras"
    if not parent_model.is_file():
        raise DataError(f"{parent_model}: parent segmenter not found")
    sidecar_path = parent_model.with_suffix(".json")
    parent_meta = json.loads(sidecar_path.read_text()) if sidecar_path.is_file() else {}
    spec_dict = parent_meta.get("input_spec")
    import brainseg.core.losses as losses

    model = keras.models.load_model(parent_model, compile=False, safe_mode=True)
    spec = InputSpec.from_record(spec_dict) if spec_dict else InputSpec(int(model.input_shape[1]), "zscore")
    if spec.context_slices:
        # Corrections are single slices; their neighbours' channels would have to be gathered from the volume.
        raise DataError(f"{parent_model}: fine-tuning a segmenter that reads neighbouring slices is not supported")

    corrected, _ = load_dataset(corrections_dir)
    replay = replay_sample(data_dir, split_file, corrected,
                           min(config.max_replay, round(config.replay_per_correction * len(corrected))), config.seed)
    rows = pd.concat([corrected, replay], ignore_index=True)
    images, masks = load_slices(rows, progress=verbose > 0)
    x = prepare_images(images, spec.size)
    y = resize_masks(masks, spec.size)

    train_config = parent_meta.get("train_config", {})
    loss = losses.segmentation_loss(train_config.get("loss", "focal_tversky"),
                                    float(train_config.get("tversky_alpha", losses.ALPHA)),
                                    float(train_config.get("tversky_gamma", losses.GAMMA)),
                                    train_config.get("tversky_over", "batch"))
    keras.utils.set_random_seed(config.seed)
    model.compile(optimizer=keras.optimizers.Adam(config.learning_rate), loss=loss)
    dataset = make_dataset(x, y, spec, config.batch_size, AugmentConfig() if config.augment else None,
                           shuffle=True, seed=config.seed)
    history = model.fit(dataset, epochs=config.epochs, verbose=verbose, shuffle=False)

    out_dir.mkdir(parents=True, exist_ok=True)
    for name in COPIED_FILES:
        if (parent_dir / name).is_file():
            shutil.copy2(parent_dir / name, out_dir / name)
    if not (out_dir / "split.json").is_file() and Path(split_file).is_file():
        shutil.copy2(split_file, out_dir / "split.json")
    destination = out_dir / "segmenter.keras"
    model.save(destination)
    provenance = {
        "created_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "parent_models_dir": str(parent_dir.resolve()),
        "parent_segmenter_sha256": sha256_of(parent_model),
        "corrections_dir": str(corrections_dir.resolve()),
        "corrections": _corrections_listing(corrections_dir, corrected),
        "corrected_slices": len(corrected),
        "replay_slices": len(replay),
        "replay_source": f"train part of {split_file}",
        "data_dir": str(data_dir),
        "epochs": config.epochs,
        "config": config.to_dict(),
        "final_loss": float(history.history["loss"][-1]),
    }
    # The architecture, input spec and loss are the parent's; its training record describes the parent only.
    parent_training = {k: v for k, v in parent_meta.items() if k not in ("role", "input_spec", "train_config", "sha256",
                                                                          "finetune")}
    sidecar = {"role": "segmenter", "input_spec": spec.to_dict(), "train_config": train_config,
               "sha256": sha256_of(destination), "finetune": provenance, "parent_training": parent_training}
    destination.with_suffix(".json").write_text(json.dumps(sidecar, indent=2) + "\n")
    return provenance


def record_validation(out_dir: str | Path, validation: dict) -> None:
    """Add the before/after validation figures to the new segmenter's sidecar (``finetune.validation``)."""
    path = Path(out_dir) / "segmenter.json"
    sidecar = json.loads(path.read_text())
    sidecar.setdefault("finetune", {})["validation"] = validation
    path.write_text(json.dumps(sidecar, indent=2) + "\n")

