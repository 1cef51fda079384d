"""The ablation: each candidate change alone against today's recipe, on the validation split, same seed.

A plan (``models/ablation_plan.json``) lists the variants. A variant changes one thing:
- a training override of the classifier or segmenter recipe (a run is trained, resumably, if missing);
- or an inference setting: per-pixel cut, small-component removal, mirrored test-time augmentation,
  or the slice score (classifier alone, or classifier and segmenter evidence combined).
Every variant is scored on the same validation patients with the same rules; the default threshold of
each is chosen on those patients for the plan's target sensitivity, so its specificity is comparable.
The test split is never touched here. ``brainseg ablate`` runs the plan and writes ``models/ablation.json``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from brainseg.core import metrics
from brainseg.core.data import load_dataset, load_slices
from brainseg.core.preprocess import InputSpec, prepare_images, upsample_maps
from brainseg.core.split import load_split, select_part
from brainseg.errors import DataError
from brainseg.inference.cascade import (
    CascadeResult,
    LoadedModel,
    load_model,
    passes_gate,
    remove_small_components,
    tumor_called,
)
from brainseg.training.train import run_is_complete

INFERENCE_DEFAULTS = {"mask_threshold": 0.5, "min_component_pixels": 0, "min_component_voxels_3d": 0,
                      "mirror_tta": False, "slice_score": "classifier"}


def remove_small_components_3d(masks: np.ndarray, min_voxels: int) -> np.ndarray:
    """One patient's masks without the 3-D components (through neighbouring slices) under ``min_voxels``.

    Evidence only: it depends on which slices the gate passes, so a threshold change would need it redone;
    the shipped cascade removes small components per slice instead.
    """
    return remove_small_components(masks, min_voxels, across_slices=True)


@dataclass
class Variant:
    name: str
    change: str
    classifier_run: str = "classifier-baseline"
    segmenter_run: str = "segmenter-baseline"
    inference: dict = field(default_factory=dict)
    # Averaged with ``segmenter_run``'s maps: an ensemble (each member's inference cost is paid)
    ensemble_with: list[str] = field(default_factory=list)

    @property
    def segmenter_runs(self) -> list[str]:
        return [self.segmenter_run, *self.ensemble_with]

    @property
    def settings(self) -> dict:
        return {**INFERENCE_DEFAULTS, **self.inference}


@dataclass
class Plan:
    split: str
    target_sensitivity: float
    runs: dict[str, dict]  # run name -> {"model": ..., "overrides": {...}}
    variants: list[Variant]


def load_plan(path: str | Path) -> Plan:
    """Read an ablation plan; raises DataError (a ValueError) for a split holding test patients or a variant
    naming a run the plan does not list (found now, not after hours of training)."""
    from brainseg.evaluation.operating_point import split_parts

    document = json.loads(Path(path).read_text())
    if "test" in split_parts(str(document.get("split"))):  # 'all' and 'val+test' hold test patients too
        raise DataError(f"split '{document.get('split')}': an ablation chooses between recipes: it must never look "
                        "at the test split")
    plan = Plan(document["split"], float(document["target_sensitivity"]), document["runs"],
                [Variant(**v) for v in document["variants"]])
    for variant in plan.variants:
        missing = [run for run in (variant.classifier_run, *variant.segmenter_runs) if run not in plan.runs]
        if missing:
            raise DataError(f"variant {variant.name!r} names run(s) {', '.join(missing)} not in the plan's runs")
    return plan


def train_missing_runs(plan: Plan, data_dir: str | Path, split_file: str | Path, runs_dir: Path,
                       verbose: int = 2) -> None:
    """Train (or resume) every run the plan needs that is not complete."""
    from brainseg.training.train import config_with_overrides, recipe, train

    for name, spec in plan.runs.items():
        run_dir = runs_dir / name
        if not run_is_complete(run_dir):
            config = config_with_overrides(recipe(spec["model"], spec.get("recipe", "cpu")), **spec["overrides"])
            train(config, data_dir, split_file, run_dir, verbose=verbose)


def run_record(run_dir: Path) -> dict:
    """Epochs run, best epoch (by validation loss) and training minutes (sum of epoch times) of a finished run."""
    history = pd.read_csv(run_dir / "history.csv")
    seconds = pd.read_csv(run_dir / "epoch_seconds.csv", header=None, names=["epoch", "seconds"])["seconds"]
    return {"epochs_run": len(history), "best_epoch": int(history["val_loss"].idxmin()) + 1,
            "training_minutes_epochs": round(float(seconds.sum() / 60), 1)}


def load_run_model(run_dir: Path) -> LoadedModel:
    """A run's best checkpoint with the input spec its config trained it with."""
    config = json.loads((run_dir / "config.json").read_text())["config"]
    if config.get("context_slices"):
        # The validation ablation scores lone slices; a model reading neighbours is cross-validated instead.
        raise DataError(f"{run_dir}: the validation ablation scores 3-channel models only; cross-validate a model "
                        "reading neighbouring slices with `brainseg crossval --variant`")
    return load_model(run_dir / "best.keras", config["model"],
                      spec=InputSpec(int(config["input_size"]), config["scaling"]))


def _mirrored(model: LoadedModel, images: np.ndarray, batch_size: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """The model's outputs on the slices as they are and mirrored left-right (mapped back)."""
    resized = prepare_images(images, model.spec.size)
    plain, mirror = [], []
    for start in range(0, len(resized), batch_size):
        batch = resized[start : start + batch_size]
        plain.append(model.infer(batch))
        mirror.append(model.infer(np.ascontiguousarray(batch[:, :, ::-1])))
    plain_out, mirror_out = np.concatenate(plain), np.concatenate(mirror)
    if model.role == "segmenter":
        mirror_out = mirror_out[:, :, ::-1]
    return plain_out, mirror_out


@dataclass
class ModelOutputs:
    """One model's outputs on every validation patient, as is and mirrored (for TTA), per patient."""

    plain: list[np.ndarray]
    mirrored: list[np.ndarray]

    def get(self, tta: bool) -> list[np.ndarray]:
        return [(p + m) / 2 for p, m in zip(self.plain, self.mirrored, strict=True)] if tta else self.plain

    @staticmethod
    def average(members: list[ModelOutputs]) -> ModelOutputs:
        """The members' outputs averaged patient by patient (an ensemble of models)."""
        if len(members) == 1:
            return members[0]
        return ModelOutputs([np.mean(maps, axis=0) for maps in zip(*(m.plain for m in members), strict=True)],
                            [np.mean(maps, axis=0) for maps in zip(*(m.mirrored for m in members), strict=True)])


def collect_model_outputs(model: LoadedModel, images: list[np.ndarray]) -> ModelOutputs:
    plain, mirrored = [], []
    for patient_images in images:
        p, m = _mirrored(model, patient_images)
        height, width = patient_images.shape[1:3]
        if model.role == "segmenter":
            p, m = upsample_maps(p, height, width), upsample_maps(m, height, width)
        else:
            p, m = p[:, 0], m[:, 0]
        plain.append(p.astype(np.float32))
        mirrored.append(m.astype(np.float32))
    return ModelOutputs(plain, mirrored)


def score_variant(patients: list[str], truths: list[np.ndarray], classifier: ModelOutputs,
                  segmenter: ModelOutputs, settings: dict, target_sensitivity: float,
                  slice_numbers: list[np.ndarray] | None = None) -> dict:
    """Validation figures of one variant, with its own threshold for the target sensitivity (``slice_numbers``:
    each patient's, for a slice score that reads neighbouring slices)."""
    tta = bool(settings["mirror_tta"])
    numbers = slice_numbers or [None] * len(patients)
    results = [CascadeResult(p, m, settings["mask_threshold"], int(settings["min_component_pixels"]),
                             settings["slice_score"], n)
               for p, m, n in zip(classifier.get(tta), segmenter.get(tta), numbers, strict=True)]
    labels = np.concatenate([t.any(axis=(1, 2)) for t in truths])
    scores = np.concatenate([r.probabilities for r in results])
    threshold = metrics.threshold_for_sensitivity(labels, scores, target_sensitivity)
    masks = [remove_small_components_3d(r.masks(threshold), int(settings["min_component_voxels_3d"]))
             for r in results]
    cascade_dice = [metrics.dice(m, t) for m, t in zip(masks, truths, strict=True)]
    segmenter_dice = [metrics.dice(r.segmenter_masks(), t) for r, t in zip(results, truths, strict=True)]
    decisions = np.concatenate([tumor_called(r.gate(threshold), m.sum(axis=(1, 2)))
                                for r, m in zip(results, masks, strict=True)])
    predicted = sum(int(m[t.any(axis=(1, 2))].sum()) for m, t in zip(masks, truths, strict=True))
    true_pixels = sum(int(t.sum()) for t in truths)
    gate = metrics.classification_at(labels, passes_gate(scores, threshold))
    return {
        "cascade_dice_per_volume": metrics.summarize(cascade_dice),
        "segmenter_dice_per_volume_mean": float(np.mean(segmenter_dice)),
        "roc_auc": metrics.roc_auc(labels, scores),
        "threshold_for_target": threshold,
        "gate_at_target": {k: gate[k] for k in ("sensitivity", "specificity")},
        "cascade_slice_decisions": {k: v for k, v in metrics.classification_at(labels, decisions).items()
                                    if k in ("sensitivity", "specificity")},
        # > 1: the cascade draws more tumor pixels than the experts on tumor slices (over-segmentation)
        "predicted_over_true_pixels_on_tumor_slices": predicted / true_pixels if true_pixels else float("nan"),
        "per_patient_cascade_dice": dict(zip(patients, map(float, cascade_dice), strict=True)),
    }


def run_ablation(plan: Plan, data_dir: str | Path, split_file: str | Path, runs_dir: str | Path,
                 progress: bool = True, train: bool = True) -> dict:
    runs_dir = Path(runs_dir)
    started = time.perf_counter()
    if train:
        train_missing_runs(plan, data_dir, split_file, runs_dir)
    manifest, _ = load_dataset(data_dir, progress=progress)
    rows = select_part(manifest, load_split(split_file), plan.split)
    patients = list(dict.fromkeys(rows["patient_id"]))
    decoded = [load_slices(rows[rows["patient_id"] == p]) for p in patients]
    images, truths = [d[0] for d in decoded], [d[1] for d in decoded]
    slice_numbers = [rows.loc[rows["patient_id"] == p, "slice"].to_numpy() for p in patients]

    outputs: dict[str, ModelOutputs] = {}
    models: dict[str, dict] = {}
    needed = dict.fromkeys(r for v in plan.variants for r in (v.classifier_run, *v.segmenter_runs))
    pending = [run for run in needed if not run_is_complete(runs_dir / run)]
    if pending and train:
        raise RuntimeError(f"runs still incomplete after training: {pending}")
    for run in needed:
        if run in pending:
            continue
        model = load_run_model(runs_dir / run)
        outputs[run] = collect_model_outputs(model, images)
        models[run] = {"role": model.role, "sha256": model.sha256, "overrides": plan.runs[run]["overrides"],
                       **run_record(runs_dir / run)}

    table = {}
    for variant in plan.variants:
        if any(run in pending for run in (variant.classifier_run, *variant.segmenter_runs)):
            table[variant.name] = {"change": variant.change, "status": "not scored: its training run is incomplete"}
            continue
        table[variant.name] = {
            "change": variant.change, "classifier_run": variant.classifier_run,
            "segmenter_runs": variant.segmenter_runs, "inference": variant.settings,
            **score_variant(patients, truths, outputs[variant.classifier_run],
                            ModelOutputs.average([outputs[run] for run in variant.segmenter_runs]),
                            variant.settings, plan.target_sensitivity, slice_numbers),
        }
    return {
        "split": plan.split,
        "n_patients": len(patients),
        "n_slices": int(sum(len(t) for t in truths)),
        "n_tumor_slices": int(sum(t.any(axis=(1, 2)).sum() for t in truths)),
        "target_sensitivity": plan.target_sensitivity,
        "runs": models,
        "pending_runs": pending,
        "variants": table,
        "wall_seconds": time.perf_counter() - started,
    }
