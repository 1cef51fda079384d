"""Final fit: the shipped recipe trained on all train + validation patients, with every choice made beforehand.

Training on the validation patients too leaves nothing to pick a checkpoint, an operating point or a
temperature on, so all three come from the cross-validation's out-of-fold record (``models/crossval.json``,
``final_fit_choices``, see ``brainseg.experiments.crossval``):
- each model trains the recipe's unchanged schedule and stops at a fixed epoch (the median of the folds'
  best epochs on their inner validation patients), keeping that last epoch;
- the operating point (gate threshold, pixel cut, small-component size) and the temperature are the ones
  chosen on the 81 pooled out-of-fold patients, with the shipped rule.
The test split stays untouched throughout. ``run_final_fit`` resumes an interrupted run.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from brainseg.core.split import FINAL_FIT_PARTS, is_final_fit
from brainseg.errors import DataError

ROLES = ("classifier", "segmenter")


def read_choices(crossval_report: str | Path, split_file: str | Path | None = None) -> dict:
    """The ``final_fit_choices`` of a cross-validation report, with where they came from.

    Refused: a report of an ablation variant the recipe has not adopted (another recipe than the one a final fit
    trains), and, given the ``split_file``, a report whose out-of-fold patients are not exactly that split's
    train + validation patients."""
    path = Path(crossval_report)
    if not path.is_file():
        raise DataError(f"{path} not found: a final fit takes its epoch counts and operating point from the "
                        "cross-validation (brainseg crossval)")
    report = json.loads(path.read_text())
    choices = report.get("final_fit_choices")
    if report.get("partial"):
        raise DataError(f"{path} scored only folds {report['folds_scored']} of {report['k']}: a final fit needs "
                        "every patient out of fold (run `brainseg crossval --stage evaluate` without --fold)")
    if choices is None:
        raise DataError(f"{path} has no final_fit_choices: re-run `brainseg crossval --stage evaluate` to add them")
    if report.get("variant"):
        _check_variant_adopted(path, report["variant"])
    if split_file is not None:
        from brainseg.core.split import load_split

        split = load_split(split_file)
        scored = {row["patient_id"] for row in report["per_patient"]}
        if scored != set(split["train"]) | set(split["val"]):
            raise DataError(f"{path} scored other patients than the train + validation patients of {split_file}: "
                            "not this split's cross-validation")
    return {**choices, "source": {"report": str(path), "command": report.get("command"), "k": report["k"],
                                  "n_patients": report["n_patients"]}}


def _check_variant_adopted(path: Path, variant: dict) -> None:
    """A variant's cross-validation chooses for the final fit only once the recipe is that variant (adopted): then
    its out-of-fold models were trained by the recipe the final fit trains."""
    from brainseg.training.train import variant_recipe_changes

    changes = {f"{role}.{field}": values
               for role, fields in variant_recipe_changes(variant.get("overrides", {})).items()
               for field, values in fields.items()}
    if changes:
        listed = ", ".join(f"{name} {old!r} -> {new!r}" for name, (old, new) in changes.items())
        raise DataError(f"{path} cross-validates the variant {variant.get('name')!r}, not the shipped recipe "
                        f"({listed}): its choices are the final fit's only once the recipe adopts it")


def final_fit_config(role: str, choices: dict, recipe_name: str = "cpu", **overrides):
    """The recipe's TrainConfig turned into a final fit that stops at the cross-validated epoch."""
    from brainseg.training.train import config_with_overrides, recipe

    config = replace(recipe(role, recipe_name), fit_on=FINAL_FIT_PARTS,
                     stop_epoch=int(choices["stop_epochs"][role]["stop_epoch"]))
    return config_with_overrides(config, **overrides)


def write_choices(choices: dict, models_dir: str | Path, models_epochs: dict | None = None,
                  trained: tuple[str, ...] = ()) -> None:
    """The out-of-fold operating point and temperature, stored where the cascade and dashboard read them.
    ``models_epochs``: the models' own stop epochs, recorded when some came from another report (``apply_choices``,
    or a final fit of one model); ``trained``: then, the models this report's epoch count trained."""
    from brainseg.evaluation.calibration import save_calibration
    from brainseg.evaluation.operating_point import save_operating_point

    models_dir = Path(models_dir)
    source = choices["source"]
    point = {**choices["operating_point"], "applies_to": "final fit on train + val (brainseg final-fit)",
             "source": source}
    if models_epochs is not None:
        point["stop_epochs"] = {"models": models_epochs, "this_report": {
            role: int(choices["stop_epochs"][role]["stop_epoch"]) for role in ROLES}}
        if trained:
            point["stop_epochs"]["trained_by_it"] = list(trained)
    save_operating_point(point, models_dir)
    calibration = dict(choices["calibration"])
    save_calibration(models_dir / "calibration.json", calibration.pop("temperature"), {**calibration,
                                                                                       "source": source})


def apply_choices(crossval_report: str | Path, models_dir: str | Path, split_file: str | Path) -> dict:
    """A cross-validation's operating point and temperature written beside final-fit models already trained,
    which stay as they are: e.g. a slice score adopted after the final fit, its point chosen on a later
    cross-validation of the same recipe. The operating point records the models' stop epochs next to the ones
    this report would have chosen, so a difference between the two cross-validations stays in view."""
    choices = read_choices(crossval_report, split_file)
    write_choices(choices, models_dir, models_epochs=final_fit_epochs(models_dir, ROLES))
    return choices


def final_fit_epochs(models_dir: str | Path, roles: tuple[str, ...]) -> dict[str, int]:
    """The stop epochs of the final-fit ``roles`` in ``models_dir``; refused for a model missing or not a final
    fit (one trained on the train part alone has its own validation patients to choose on)."""
    models_dir, epochs = Path(models_dir), {}
    for role in roles:
        sidecar = models_dir / f"{role}.json"
        if not sidecar.is_file():
            raise DataError(f"{sidecar} not found: a final fit's choices go beside trained final-fit models")
        config = json.loads(sidecar.read_text()).get("train_config", {})
        if not is_final_fit(config) or config.get("stop_epoch") is None:
            raise DataError(f"the {role} in {models_dir} is not a final fit on {FINAL_FIT_PARTS}: its operating point "
                            "is chosen on its own validation patients (brainseg operating-point)")
        epochs[role] = int(config["stop_epoch"])
    return epochs


def run_final_fit(data: str | Path, split_file: str | Path, crossval_report: str | Path, runs_dir: str | Path,
                  export_dir: str | Path, verbose: int = 2, overrides: dict | None = None,
                  limit_slices: int | None = None, roles: tuple[str, ...] = ROLES) -> Path:
    """Train (or resume) the final-fit models, export them to ``export_dir`` with their training records
    (``training/<role>/``), the out-of-fold operating point and temperature; returns ``export_dir``.
    ``roles``: retrain only these (e.g. the segmenter after a segmenter variant is adopted); the other model must
    be a final fit in ``export_dir`` already and stays as it is, its stop epoch recorded beside the report's.
    ``overrides`` and ``limit_slices``: tests train tiny ones."""
    from brainseg.training.train import check_run_config, copy_run_record, export_model, run_is_complete, train

    choices = read_choices(crossval_report, split_file)
    runs_dir, export_dir = Path(runs_dir), Path(export_dir)
    kept = tuple(role for role in ROLES if role not in roles)
    final_fit_epochs(export_dir, kept)  # before hours of training: the kept model must be a final fit
    for role in roles:
        config = final_fit_config(role, choices, **(overrides or {}))
        run_dir = runs_dir / role
        check_run_config(run_dir, config)
        if not run_is_complete(run_dir):
            train(config, data, split_file, run_dir, verbose=verbose, limit_slices=limit_slices)
        export_model(run_dir, export_dir / f"{role}.keras")
        copy_run_record(run_dir, export_dir / "training" / role)
    if kept:
        write_choices(choices, export_dir, models_epochs=final_fit_epochs(export_dir, ROLES), trained=roles)
    else:
        write_choices(choices, export_dir)
    return export_dir
