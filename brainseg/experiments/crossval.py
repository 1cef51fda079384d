"""Patient-level k-fold cross-validation of the shipped recipe over the train + validation patients.

The test split is never touched: folds are made from the recorded split's train and validation patients.
Each fold holds out about 1/k of them; of the rest, the recorded split's validation share becomes the
fold's inner validation set (checkpoint selection and the operating point, as for the shipped models) and
the remainder its training set. Three stages, each resumable and runnable on its own:

1. ``folds``: ``<out>/folds.json`` and a split file per fold (``<out>/fold-<i>/split.json``);
2. ``train``: both models of a fold with the shipped recipes (``brainseg.training.train``), exported to
   ``<out>/fold-<i>/models``. Needs no TensorFlow: on a GPU machine Keras runs on JAX, and the data can be a
   slice cache (``brainseg.core.slice_cache``);
3. ``evaluate`` (TensorFlow, like the shipped cascade): per fold, the operating point is chosen on the inner
   validation patients exactly as ``brainseg operating-point`` chooses it, then the held-out patients are
   scored. Every train + validation patient is scored once, by models that never saw it; the figures pool
   those out-of-fold outputs, with 95% bootstrap intervals over patients.

The evaluate stage also makes the choices a *final fit* on all train + validation patients needs, since
such a fit has no validation patients left (``brainseg final-fit``, ``brainseg.experiments.final_fit``):
the epoch count of each model (the median of the folds' best epochs on their inner validation sets), and
an operating point and temperature chosen on the pooled out-of-fold outputs with the shipped rule: 81
patients instead of one fold's 10 to 13, as nnU-Net chooses its post-processing on cross-validation.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from brainseg.core import metrics
from brainseg.core.split import OUT_OF_FOLD, check_disjoint, load_split, select_part
from brainseg.errors import DataError
from brainseg.evaluation.counted_outputs import RECORD_KEY, CountedOutputs
from brainseg.inference.cascade import passes_gate

DEFAULT_FOLDS = 5
TRADEOFF_SENSITIVITIES = (0.85, 0.90, 0.93, 0.95, 0.97, 0.98)
FOLDS_FILE = "folds.json"


def make_folds(split: dict[str, list[str]], k: int = DEFAULT_FOLDS, seed: int = 42) -> dict:
    """Fold splits over ``split``'s train + val patients (see the module docstring); test is left out."""
    patients = sorted(set(split["train"]) | set(split["val"]))
    if k < 2 or k > len(patients):
        raise DataError(f"cross-validation needs 2 <= folds <= {len(patients)} patients, got {k}")
    rng = np.random.default_rng(seed)
    held_out = [sorted(chunk.tolist()) for chunk in np.array_split(rng.permutation(patients), k)]
    val_share = len(split["val"]) / len(patients)
    folds = []
    for test in held_out:
        rest = sorted(set(patients) - set(test))
        n_val = max(1, round(val_share * len(rest)))
        val = sorted(rng.choice(rest, size=n_val, replace=False).tolist())
        fold = {"train": sorted(set(rest) - set(val)), "val": val, "test": test}
        check_disjoint(fold)
        folds.append(fold)
    return {"k": k, "seed": seed, "n_patients": len(patients), "validation_share": val_share,
            "method": "seeded permutation of the train + val patients cut into k held-out groups; per fold, an "
                      "inner validation set of the recorded split's validation share drawn from the rest",
            "folds": folds}


def write_folds(split_file: str | Path, out_dir: str | Path, k: int = DEFAULT_FOLDS, seed: int = 42) -> dict:
    """Make the folds and write them (idempotent: an existing, identical ``folds.json`` is kept).

    A fold's ``split.json`` that is missing (its folder deleted to train that fold again) is written again; one
    that holds another split is refused, as its models were trained on it.
    """
    out_dir = Path(out_dir)
    document = {**make_folds(load_split(split_file), k, seed), "source_split": str(split_file)}
    path = out_dir / FOLDS_FILE
    if path.exists():
        existing = json.loads(path.read_text())
        if existing["folds"] != document["folds"]:
            raise DataError(f"{path} holds other folds; choose a new --out or delete it")
        document = existing
    for i, fold in enumerate(document["folds"]):
        fold_split = out_dir / f"fold-{i}" / "split.json"
        if fold_split.exists():
            if json.loads(fold_split.read_text()) != fold:
                raise DataError(f"{fold_split} is not fold {i} of {path}; delete that fold's folder to train it again")
            continue
        fold_split.parent.mkdir(parents=True, exist_ok=True)
        fold_split.write_text(json.dumps(fold, indent=2) + "\n")
    if not path.exists():
        path.write_text(json.dumps(document, indent=2) + "\n")
    return document


def read_folds(out_dir: str | Path) -> dict:
    path = Path(out_dir) / FOLDS_FILE
    if not path.is_file():
        raise DataError(f"{path} not found: run the 'folds' stage first")
    return json.loads(path.read_text())


def train_fold(data: str | Path, out_dir: str | Path, fold: int, overrides: dict | None = None,
               verbose: int = 2, roles: tuple[str, ...] = ("classifier", "segmenter"),
               role_overrides: dict[str, dict] | None = None) -> Path:
    """Train (or resume) fold ``fold``'s classifier and segmenter with the shipped ('cpu') recipes.

    ``overrides``: TrainConfig fields changed for both models (tests train tiny ones); none for real runs.
    ``role_overrides``: fields changed for one model only (an ablation variant, see ``variant_overrides``).
    ``roles``: train only these (the two models of a fold are independent: separate processes may train them).
    """
    from brainseg.training.train import config_with_overrides, export_model, recipe, train

    fold_dir = Path(out_dir) / f"fold-{fold}"
    if not (fold_dir / "split.json").is_file():
        raise DataError(f"{fold_dir / 'split.json'} not found: run the 'folds' stage first")
    for role in roles:
        changes = {**(overrides or {}), **(role_overrides or {}).get(role, {})}
        config = config_with_overrides(recipe(role, "cpu"), **changes)
        run_dir = fold_dir / "runs" / role
        train(config, data, fold_dir / "split.json", run_dir, verbose=verbose)
        export_model(run_dir, fold_dir / "models" / f"{role}.keras")
    return fold_dir / "models"


def variant_overrides(plan_file: str | Path, run_name: str) -> dict[str, dict]:
    """``{model: overrides}`` of one run of the ablation plan (``models/ablation_plan.json``), to cross-validate
    that variant: its model trains with the run's overrides, the other with the shipped recipe."""
    runs = json.loads(Path(plan_file).read_text())["runs"]
    if run_name not in runs:
        raise DataError(f"{plan_file} has no run {run_name!r} (runs: {', '.join(runs)})")
    return {runs[run_name]["model"]: runs[run_name]["overrides"]}


def variant_record(plan_file: str | Path, run_name: str) -> dict:
    """What a variant's report records of it: its name, overrides and what they change in the recipe now (the
    recipe its models were trained against; a later recipe may adopt the variant, see ``final_fit.read_choices``)."""
    from brainseg.training.train import variant_recipe_changes

    overrides = variant_overrides(plan_file, run_name)
    return {"name": run_name, "overrides": overrides, "recipe_changes": variant_recipe_changes(overrides)}


def reuse_models(baseline_dir: str | Path, out_dir: str | Path, fold: int, role: str) -> Path:
    """Copy one fold model and its sidecar from another cross-validation over the same folds:
    a variant that changes only the segmenter need not retrain the classifier."""
    import shutil

    source, target = Path(baseline_dir) / f"fold-{fold}", Path(out_dir) / f"fold-{fold}"
    if json.loads((source / "split.json").read_text()) != json.loads((target / "split.json").read_text()):
        raise DataError(f"{source} and {target} hold different folds: models cannot be reused across them")
    (target / "models").mkdir(parents=True, exist_ok=True)
    for suffix in (".keras", ".json"):
        shutil.copy2(source / "models" / f"{role}{suffix}", target / "models" / f"{role}{suffix}")
    return target / "models" / f"{role}.keras"


def paired_comparison(report: dict, baseline: dict, n_resamples: int = 2000, seed: int = 0) -> dict:
    """Out-of-fold cascade Dice per volume of ``report`` minus ``baseline``'s, patient by patient: the mean
    difference with a paired bootstrap interval over patients, and how many patients gain or lose. When both
    reports hold their slice scores (``per_slice``), the pooled slice ROC AUC's difference too, with the same
    patients drawn for both scores in each resample.

    When both hold each patient's segmenter-alone Dice (``segmenter_dice``: each fold's segmenter at its own mask
    cut, no gate), its difference is paired the same way (``segmenter_alone``): where a retrained classifier also
    differs, it tells the segmenters' share. ``mean_absolute_difference``: how far a single patient moves.

    A partial ``report`` (some folds scored) is paired with the baseline's patients of the same folds."""
    from brainseg.evaluation.bootstrap import mean_of_column, patient_bootstrap

    ours = pd.DataFrame(report["per_patient"])
    theirs = pd.DataFrame(baseline["per_patient"])
    if report.get("partial"):
        theirs = theirs[theirs["fold"].isin(report["folds_scored"])]
    columns = ["patient_id", "cascade_dice"]
    with_segmenter = "segmenter_dice" in ours and "segmenter_dice" in theirs
    columns += ["segmenter_dice"] if with_segmenter else []
    paired = ours[columns].merge(theirs[columns], on="patient_id", suffixes=("", "_baseline"), validate="one_to_one")
    if len(paired) != len(ours) or len(paired) != len(theirs):
        raise DataError("the two cross-validations scored different patients: they cannot be paired")

    def difference_of(column: str) -> dict:
        paired["difference"] = paired[column] - paired[f"{column}_baseline"]
        return {"mean_difference": float(paired["difference"].mean()),
                "confidence_interval": patient_bootstrap(paired, mean_of_column("difference"),
                                                         n_resamples=n_resamples, seed=seed),
                "better": int((paired["difference"] > 1e-6).sum()),
                "worse": int((paired["difference"] < -1e-6).sum()),
                "mean_absolute_difference": float(paired["difference"].abs().mean())}

    comparison = {"n_patients": len(paired), "folds": report.get("folds_scored"), **difference_of("cascade_dice"),
                  "baseline_mean": float(paired["cascade_dice_baseline"].mean()),
                  "mean": float(paired["cascade_dice"].mean())}
    if with_segmenter:
        comparison["segmenter_alone"] = difference_of("segmenter_dice")
    if "per_slice" in report and "per_slice" in baseline:
        baseline_slices = pd.DataFrame(baseline["per_slice"])
        baseline_slices = baseline_slices[baseline_slices["patient_id"].isin(set(theirs["patient_id"]))]
        comparison["roc_auc_pooled"] = paired_auc(report["per_slice"], baseline_slices, n_resamples, seed)
    weights = same_weights(report, baseline)
    if weights:
        comparison["same_weights"] = weights
    return comparison


def same_weights(report: dict, baseline: dict) -> dict[str, dict[str, bool]]:
    """``{model: {fold: identical}}``: whether each fold model of ``report`` has the weights of the baseline's
    (``weights_sha256`` of their training records). A variant pairs cleanly only if the model it leaves alone is
    the same in both, reused or retrained by the same recipe and seed; folds without records are left out."""
    def trained(document: dict) -> dict[int, dict]:
        return {int(entry["fold"]): entry["training"] for entry in document.get("per_fold", [])
                if "training" in entry}

    ours, theirs = trained(report), trained(baseline)
    found: dict[str, dict[str, bool]] = {}
    for fold in sorted(set(ours) & set(theirs)):
        for role in sorted(set(ours[fold]) & set(theirs[fold])):
            mine, other = ours[fold][role].get("weights_sha256"), theirs[fold][role].get("weights_sha256")
            if mine and other:
                found.setdefault(role, {})[str(fold)] = mine == other
    return found


def paired_auc(ours: dict | pd.DataFrame, theirs: dict | pd.DataFrame, n_resamples: int = 2000,
               seed: int = 0) -> dict:
    """Pooled slice ROC AUC of two reports' slice scores (``per_slice``) over the same slices, and their
    difference with a paired bootstrap interval over patients."""
    from brainseg.evaluation.bootstrap import patient_bootstrap, roc_auc_statistic

    keys = ["patient_id", "slice"]
    slices = pd.DataFrame(ours).merge(pd.DataFrame(theirs), on=keys, suffixes=("", "_baseline"),
                                      validate="one_to_one")
    if len(slices) != len(ours["slice"]) or len(slices) != len(theirs["slice"]):
        raise DataError("the two cross-validations scored different slices: their ROC AUCs cannot be paired")
    if not (slices["has_tumor"] == slices["has_tumor_baseline"]).all():
        raise DataError("the two cross-validations disagree on which slices hold tumor: not the same data")

    def difference(table: pd.DataFrame) -> float:
        return roc_auc_statistic(table) - roc_auc_statistic(table, score_column="probability_baseline")

    baseline_auc = roc_auc_statistic(slices, score_column="probability_baseline")
    return {"value": roc_auc_statistic(slices), "baseline": baseline_auc, "difference": difference(slices),
            "confidence_interval": patient_bootstrap(slices, difference, n_resamples=n_resamples, seed=seed)}


def evaluate_folds(data: str | Path, out_dir: str | Path, target_sensitivity: float, slice_score: str,
                   n_resamples: int = 2000, seed: int = 0, progress: bool = False,
                   folds: list[int] | None = None, ensemble_with: Sequence[str | Path] = ()) -> dict:
    """Out-of-fold figures (see the module docstring); every fold scored must be trained.

    ``folds`` scores only those folds' held-out patients (default: all), e.g. while a slow variant is still
    training. Such a report is marked ``partial`` and makes no final-fit choices: the epoch counts and the
    operating point need every patient out of fold.

    ``ensemble_with``: other cross-validations over the same folds whose fold segmenters are averaged with this
    one's (an ensemble, scored like one segmenter: its operating point is chosen on the inner validation patients
    as any fold's). The report names them (``ensemble_with``) and each fold's members' training records.
    """
    from brainseg.core.data import load_dataset
    from brainseg.evaluation.operating_point import choose_operating_point, collect_outputs, save_operating_point
    from brainseg.inference.cascade import AveragedModel, Cascade, load_model

    out_dir = Path(out_dir)
    document = read_folds(out_dir)
    ensemble_with = [Path(other) for other in ensemble_with]
    for other in ensemble_with:
        if read_folds(other)["folds"] != document["folds"]:
            raise DataError(f"{other}: its folds differ from {out_dir}'s; an ensemble's members must have held out "
                            "the same patients")
    manifest, _ = load_dataset(data)
    scored = check_fold_numbers(folds, document["k"])
    members_of = {i: [out_dir / f"fold-{i}" / "models", *(other / f"fold-{i}" / "models" for other in ensemble_with)]
                  for i in scored}  # each fold's segmenter folders: this cross-validation's first
    for i in scored:  # checked before any fold is scored: scoring one takes minutes
        for member in members_of[i][1:]:
            if not (member / "segmenter.keras").is_file():
                raise DataError(f"{member}: fold {i}'s segmenter is not trained yet (run the 'train' stage)")
    volumes, tables, per_fold = [], [], []
    out_of_fold = []  # every held-out patient's counted outputs, fold by fold
    for i in scored:
        fold = document["folds"][i]
        models = members_of[i][0]
        if not all((models / f"{role}.keras").is_file() for role in ("classifier", "segmenter")):
            raise DataError(f"{models}: fold {i} is not trained yet (run the 'train' stage)")
        segmenters = [load_model(member / "segmenter.keras", "segmenter") for member in members_of[i]]
        cascade = Cascade(load_model(models / "classifier.keras", "classifier"),
                          AveragedModel(segmenters) if ensemble_with else segmenters[0], slice_score=slice_score)
        val_rows = select_part(manifest, fold, "val")
        val = CountedOutputs.from_outputs(collect_outputs(cascade, val_rows, progress=progress), slice_score)
        point = choose_operating_point(val, target_sensitivity, slice_score=slice_score, chosen_on={
            "split": f"fold-{i} inner val", "n_patients": len(val.patients), "n_slices": len(val_rows)})
        if not ensemble_with:  # the folder's point is its own models'; an ensemble's lives in its report only
            save_operating_point(point, models)
        held_out = collect_outputs(cascade, select_part(manifest, fold, "test"), progress=progress)
        out_of_fold.append(CountedOutputs.from_outputs(held_out, slice_score))
        results = held_out.with_postprocessing(point["mask_threshold"], point["min_component_pixels"], slice_score)
        threshold = point["threshold"]
        fold_volumes, fold_tables = [], []
        for patient, truth, result in zip(held_out.patient_ids, held_out.truths, results, strict=True):
            masks = result.masks(threshold)
            fold_volumes.append({"patient_id": patient, "fold": i, "cascade_dice": metrics.dice(masks, truth),
                                 "segmenter_dice": metrics.dice(result.segmenter_masks(), truth),
                                 "tumor_slices": int(truth.any(axis=(1, 2)).sum()),
                                 "tumor_pixels": int(truth.sum()), "predicted_pixels": int(masks.sum()),
                                 **metrics.dice_loss_parts(masks, truth)})
            fold_tables.append(pd.DataFrame({"patient_id": patient, "fold": i, "slice": result.slice_numbers,
                                             "has_tumor": truth.any(axis=(1, 2)),
                                             "probability": result.probabilities,
                                             "passed_gate": passes_gate(result.probabilities, threshold),
                                             "cascade_called": result.decisions(threshold)}))
        volumes += fold_volumes
        tables += fold_tables
        fold_slices = pd.concat(fold_tables, ignore_index=True)
        sidecars = {role: json.loads((models / f"{role}.json").read_text()) for role in ("classifier", "segmenter")}
        per_fold.append({
            "fold": i, "n_test_patients": len(held_out.patient_ids), "operating_point": {
                k: point[k] for k in ("threshold", "mask_threshold", "min_component_pixels", "slice_score")},
            "roc_auc": metrics.roc_auc(fold_slices["has_tumor"].to_numpy(), fold_slices["probability"].to_numpy()),
            "cascade_dice_per_volume_mean": float(np.mean([v["cascade_dice"] for v in fold_volumes])),
            "training": {role: training_record(s) for role, s in sidecars.items()},
        })
        if ensemble_with:
            # Each member's sidecar, as load_model read it (its metadata): not read from disk again.
            per_fold[-1]["segmenter_ensemble_members"] = [training_record(m.metadata) for m in segmenters]

    report = out_of_fold_report(pd.DataFrame(volumes), pd.concat(tables, ignore_index=True), per_fold,
                                {**run_identity(document), "target_sensitivity": target_sensitivity,
                                 "slice_score": slice_score}, CountedOutputs.concatenate(out_of_fold),
                                n_resamples=n_resamples, seed=seed)
    if ensemble_with:
        report["ensemble_with"] = [str(other) for other in ensemble_with]
    return report


TRAINING_RECORD_KEYS = ("epochs_run", "best_epoch", "train_wall_seconds", "keras_backend", "devices", "cpu", "sha256",
                        "weights_sha256", "preprocessing")


def training_record(sidecar: dict) -> dict:
    """What a fold report keeps of a fold model's sidecar: how it trained, where, and which weights it ended with."""
    return {key: sidecar.get(key) for key in TRAINING_RECORD_KEYS}


def gate_by_fold(per_slice: pd.DataFrame, threshold: float) -> list[dict]:
    """Each fold's held-out slices gated at one ``threshold``: its tp/fn/tn/fp, sensitivity and specificity.

    The final fit's threshold is chosen on all folds' scores pooled, though each fold's models score on their own
    scale: a fold whose scores run low loses sensitivity there while the pooled figure still looks met."""
    rows = []
    for fold, slices in per_slice.groupby("fold", sort=True):
        gate = metrics.classification_at(slices["has_tumor"].to_numpy(bool),
                                         passes_gate(slices["probability"].to_numpy(), threshold))
        rows.append({"fold": int(fold), "n_patients": int(slices["patient_id"].nunique()), **gate})
    return rows


PER_SLICE_COLUMNS = ("patient_id", "fold", "slice", "has_tumor", "probability", "passed_gate", "cascade_called")
# What must agree for fold reports to be pooled into one out-of-fold report (combine_reports).
IDENTITY_KEYS = ("k", "seed", "folds_sha256", "target_sensitivity", "slice_score")


def run_identity(document: dict) -> dict:
    """The fold set a report was scored on: its k, seed and a digest of every fold's patients."""
    digest = hashlib.sha256(json.dumps(document["folds"], sort_keys=True).encode()).hexdigest()
    return {"k": document["k"], "seed": document["seed"], "folds_sha256": digest}


def out_of_fold_report(per_patient: pd.DataFrame, slices: pd.DataFrame, per_fold: list[dict], identity: dict,
                       counts: CountedOutputs | None, n_resamples: int = 2000, seed: int = 0) -> dict:
    """The out-of-fold figures, intervals and records of the scored folds, from their per-patient and per-slice
    rows and counted outputs alone: ``evaluate_folds`` makes it from fresh scores, ``combine_reports`` from fold
    reports' records. With every fold scored and ``counts`` (row for row with ``slices``) at hand, it also makes
    the final fit's choices; fold reports made before counts were kept give ``counts`` None, and no choices."""
    from brainseg.evaluation import bootstrap as b

    labels, scores = slices["has_tumor"].to_numpy(), slices["probability"].to_numpy()
    volumes = per_patient.to_dict(orient="records")
    common = {"n_resamples": n_resamples, "seed": seed}
    figures = {
        "cascade_dice_per_volume": metrics.summarize(per_patient["cascade_dice"].to_numpy()),
        "segmenter_dice_per_volume": metrics.summarize(per_patient["segmenter_dice"].to_numpy()),
        "roc_auc_pooled": metrics.roc_auc(labels, scores),
        "roc_auc_per_fold": metrics.summarize([f["roc_auc"] for f in per_fold]),
        "gate_at_each_folds_threshold": metrics.classification_at(labels, slices["passed_gate"].to_numpy()),
        "cascade_slice_decisions": metrics.classification_at(labels, slices["cascade_called"].to_numpy()),
        "cascade_dice_loss_parts": metrics.mean_dice_loss_parts(volumes),
    }
    intervals = {}
    if n_resamples > 0:
        intervals = {
            "cascade_dice_per_volume_mean": b.patient_bootstrap(per_patient, b.mean_of_column("cascade_dice"),
                                                                **common),
            "segmenter_dice_per_volume_mean": b.patient_bootstrap(per_patient, b.mean_of_column("segmenter_dice"),
                                                                  **common),
            "roc_auc_pooled": b.patient_bootstrap(slices, b.roc_auc_statistic, **common),
            **{f"gate_{name}": interval
               for name, interval in b.detection_intervals(slices, "passed_gate", **common).items()},
        }
    scored = sorted(int(f["fold"]) for f in per_fold)
    report = {
        **identity, "folds_scored": scored, "partial": len(scored) < identity["k"],
        "n_patients": int(per_patient["patient_id"].nunique()),
        "n_slices": len(slices), "n_tumor_slices": int(labels.sum()),
        "definitions": {
            "dice_per_volume": "2|P∩T| / (|P|+|T|) over all of a patient's slices at once; 1.0 when both are "
                               "empty (no patient here is tumor-free)",
            "roc_auc_pooled": "slice-level ROC AUC over all out-of-fold slices pooled; the folds' models differ, "
                              "so per-fold AUCs are given too",
            "gate": "each fold's own threshold, chosen on its inner validation patients",
        },
        "figures": figures, "confidence_intervals": intervals, "per_fold": per_fold,
        "per_patient": volumes,
        # Every held-out slice's score and decisions, columns as lists: what a paired ROC AUC comparison
        # (paired_auc) and a later pooling of fold reports (combine_reports) need.
        "per_slice": {
            "patient_id": slices["patient_id"].tolist(), "fold": slices["fold"].astype(int).tolist(),
            "slice": slices["slice"].astype(int).tolist(), "has_tumor": slices["has_tumor"].astype(bool).tolist(),
            "probability": [float(v) for v in slices["probability"]],
            "passed_gate": slices["passed_gate"].astype(bool).tolist(),
            "cascade_called": slices["cascade_called"].astype(bool).tolist()},
    }
    if counts is None:
        return report
    if list(counts.patient_ids) != slices["patient_id"].tolist() or list(counts.slice_numbers) != slices[
            "slice"].astype(int).tolist():
        raise DataError("the counted outputs are not row for row with the per-slice records")
    report[RECORD_KEY] = counts.to_record()
    if not report["partial"]:
        choices = final_fit_choices(counts, per_fold, identity["k"], identity["target_sensitivity"])
        # One threshold pooled over five models' scores: say how each fold's patients fare at it.
        choices["gate_by_fold_at_that_threshold"] = gate_by_fold(slices, choices["operating_point"]["threshold"])
        report["final_fit_choices"] = choices
    return report


def combine_reports(reports: list[dict], n_resamples: int = 2000, seed: int = 0) -> dict:
    """One out-of-fold report pooled from reports of separate folds (``evaluate --fold``) of one cross-validation.

    Scoring a fold as soon as it is trained keeps its figures when its models are lost (run folders do not
    outlive a session here); pooled, they give exactly the report that scoring those folds together gives, since
    every figure comes from the held-out patients' records: with every fold and each report's counted outputs
    (``per_slice_pixel_counts``), the final fit's choices too. Reports made before those counts were kept pool
    into figures only."""
    if not reports:
        raise DataError("nothing to combine: give the fold reports")
    for i, report in enumerate(reports):
        missing = [c for c in PER_SLICE_COLUMNS if c not in report.get("per_slice", {})] + [
            k for k in IDENTITY_KEYS if k not in report]
        if missing:
            raise DataError(f"fold report {i + 1} lacks {', '.join(missing)}: made by an older brainseg; "
                            "score its folds again with --stage evaluate")
    first = reports[0]
    for i, report in enumerate(reports[1:], start=2):
        differing = [k for k in IDENTITY_KEYS if report[k] != first[k]]
        differing += [k for k in ("variant", "ensemble_with") if report.get(k) != first.get(k)]
        if differing:
            what = ", ".join(differing)
            raise DataError(f"fold report {i} differs from the first in {what}: not one cross-validation")
    folds = [f for report in reports for f in report["folds_scored"]]
    if len(folds) != len(set(folds)):
        raise DataError(f"folds scored twice among the reports: {sorted(folds)}")
    ordered = sorted(reports, key=lambda r: r["folds_scored"])  # fold order, as evaluate_folds scores them
    in_order = [f for report in ordered for f in report["folds_scored"]]
    if in_order != sorted(in_order):  # e.g. folds [0, 2] and [1, 3]: the rows would not be in fold order
        raise DataError(f"the reports' folds interleave ({[r['folds_scored'] for r in ordered]}): pool reports of "
                        "consecutive folds, e.g. one report per fold")
    for key in ("keras_backend", "preprocessing"):
        seen = {json.dumps(f["training"][role].get(key), sort_keys=True) for r in ordered for f in r["per_fold"]
                for role in ("classifier", "segmenter")}
        if len(seen) > 1:
            raise DataError(f"the fold reports' models differ in {key} ({', '.join(sorted(seen))}): not one "
                            "cross-validation's models")
    per_patient = pd.concat([pd.DataFrame(r["per_patient"]) for r in ordered], ignore_index=True)
    slices = pd.concat([pd.DataFrame(r["per_slice"]) for r in ordered], ignore_index=True)
    per_fold = sorted((f for r in ordered for f in r["per_fold"]), key=lambda f: f["fold"])
    identity = {k: first[k] for k in IDENTITY_KEYS}
    counts = None
    if all(RECORD_KEY in r for r in ordered):
        counts = CountedOutputs.concatenate([CountedOutputs.from_report(r) for r in ordered])
    combined = out_of_fold_report(per_patient, slices, per_fold, identity, counts, n_resamples=n_resamples,
                                  seed=seed)
    for key in ("variant", "ensemble_with"):
        if key in first:
            combined[key] = first[key]
    combined["combined_from"] = [{"folds_scored": r["folds_scored"], "command": r.get("command")} for r in ordered]
    return combined


def check_fold_numbers(folds: list[int] | None, k: int) -> list[int]:
    """The folds to score, sorted and each once (default: all ``k``); unknown numbers are refused."""
    if folds is None:
        return list(range(k))
    unknown = sorted(set(folds) - set(range(k)))
    if unknown:
        raise DataError(f"there are {k} folds (0 to {k - 1}); no fold {', '.join(map(str, unknown))}")
    return sorted(set(folds))


def final_fit_choices(out_of_fold: CountedOutputs, per_fold: list[dict], k: int, target_sensitivity: float) -> dict:
    """What a final fit on all train + validation patients takes from the cross-validation (module docstring)."""
    from brainseg.evaluation.calibration import fit_calibration
    from brainseg.evaluation.operating_point import choose_operating_point

    slice_score = out_of_fold.slice_score
    pooled_on = {"split": OUT_OF_FOLD, "n_patients": len(out_of_fold.patients), "n_slices": len(out_of_fold),
                 "method": f"each of the {k} folds' held-out patients scored by that fold's models"}
    point = choose_operating_point(out_of_fold, target_sensitivity, pooled_on, slice_score=slice_score)
    return {
        "about": "for a final fit on all train + validation patients (brainseg final-fit), which has no validation "
                 "patients left to choose on",
        "stop_epochs": fixed_epoch_counts(per_fold),
        "operating_point": point,
        "gate_tradeoff": gate_tradeoff(out_of_fold, point["mask_threshold"], point["min_component_pixels"]),
        "calibration": fit_calibration(out_of_fold.labels, out_of_fold.scores,
                                       {**pooled_on, "slice_score": slice_score}),
    }


def gate_tradeoff(outputs: CountedOutputs, mask_threshold: float, min_component_pixels: int,
                  sensitivities: tuple[float, ...] = TRADEOFF_SENSITIVITIES) -> list[dict]:
    """What the gate costs and buys on the pooled out-of-fold outputs, at thresholds set for a range of target
    slice sensitivities: the gate's own sensitivity and specificity, the cascade's slice decisions, and its mean
    Dice per volume (the post-processing held fixed)."""
    from brainseg.evaluation.operating_point import floor_decimals

    labels, scores = outputs.labels, outputs.scores
    rows = []
    for target in sensitivities:
        threshold = floor_decimals(metrics.threshold_for_sensitivity(labels, scores, target))
        decisions = outputs.decisions(mask_threshold, min_component_pixels, threshold)
        gate = metrics.classification_at(labels, passes_gate(scores, threshold))
        cascade = metrics.classification_at(labels, decisions)
        rows.append({"target_sensitivity": target, "threshold": threshold,
                     "gate_sensitivity": gate["sensitivity"], "gate_specificity": gate["specificity"],
                     "cascade_sensitivity": cascade["sensitivity"], "cascade_specificity": cascade["specificity"],
                     "dice_per_volume_mean": float(np.mean(outputs.dice_per_volume(mask_threshold,
                                                                                  min_component_pixels, threshold)))})
    return rows


def fixed_epoch_counts(per_fold: list[dict]) -> dict:
    """Each model's epoch count for a final fit: the median over folds of the epoch that was best on the fold's
    inner validation patients (the recipe's schedule is kept; training stops there)."""
    counts = {}
    for role in ("classifier", "segmenter"):
        best = [int(f["training"][role]["best_epoch"]) for f in per_fold]
        counts[role] = {"stop_epoch": int(np.median(best)), "folds_best_epochs": best,
                        "rule": "median of the folds' best epochs by inner-validation loss (rounded down)"}
    return counts
