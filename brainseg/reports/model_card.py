"""The model card: every figure in it is computed by `brainseg model-card` from the shipped files.

Three jobs, one function each: ``collect_card`` evaluates the cascade on the test split and the demo
cases and benchmarks it (the only step that runs models; ``reread_records`` instead keeps a card's measurements
and reads only the records beside the weights again); ``write_card`` writes ``models/MODEL_CARD.md``
(rendered by ``brainseg.reports.card_markdown``) with its machine-readable twin ``model_card.json``;
``update_readme`` rewrites the README's results section. A test recomputes the demo-case figures from
the weights, so the card cannot drift from them.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path

from brainseg.core import metrics
from brainseg.core.data import load_dataset, scan_dataset
from brainseg.core.split import PARTS, load_split, select_part
from brainseg.errors import DataError
from brainseg.evaluation.bench import bench
from brainseg.evaluation.calibration import load_temperature
from brainseg.evaluation.evaluate import evaluate
from brainseg.inference.cascade import Cascade, sha256_of
from brainseg.reports.card_markdown import RESULTS_START, render_markdown, replace_results_section
from brainseg.settings import DEMO_DATA_DIR as DEMO_DIR

# The figures a test recomputes on the demo cases (dotted paths into an evaluate report).
CHECKED_KEYS = (
    "classifier.roc_auc",
    "classifier.at_default.sensitivity",
    "classifier.at_default.specificity",
    "cascade.dice_per_volume.mean",
    "segmenter.dice_per_volume.mean",
    "cascade.dice_per_tumor_slice.mean",
)


def _strip(report: dict) -> dict:
    """An evaluate report without the bulky per-patient tables."""
    slim = json.loads(json.dumps(report, default=float))
    for name in ("cascade", "segmenter"):
        slim[name].pop("per_patient_dice", None)
    return slim


def collect_card(data_dir: str | Path, models_dir: str | Path, progress: bool = True, bench_patients: int = 14,
                 reference_size: int = 256, train_steps: bool = True) -> dict:
    """Every figure of the card: test-split and demo-case evaluations, the benchmark, the records beside the weights.

    This is the only step that runs models; rendering and writing only read the returned dict.
    """
    models_dir = Path(models_dir)
    manifest, patients = load_dataset(data_dir, progress=progress)
    split = load_split(models_dir / "split.json")
    cascade = Cascade.from_dir(models_dir)
    temperature = load_temperature(models_dir)
    test_report = evaluate(cascade, select_part(manifest, split, "test"), progress=progress, temperature=temperature)
    demo_report = evaluate(cascade, scan_dataset(DEMO_DIR), progress=progress)
    # The same cascade on TensorFlow in the same rounds: the evidence for the runtime it ships on.
    speed = bench(models_dir, select_part(manifest, split, "test"), max_patients=bench_patients,
                  reference_size=reference_size, compare_runtimes=("tensorflow",))
    if train_steps:
        from brainseg.training.step_time import train_step_seconds

        speed["train_step_seconds"] = {f"{model} {name}": train_step_seconds(model, name)
                                       for model in ("classifier", "segmenter") for name in ("seed", "cpu")}
    split_table = {}
    for part in PARTS:
        rows = manifest[manifest["patient_id"].isin(split[part])]
        split_table[part] = {"patients": int(rows["patient_id"].nunique()), "slices": len(rows),
                             "tumor_slices": int(rows["has_tumor"].sum()),
                             "institutions": rows.drop_duplicates("patient_id")["institution"].value_counts()
                             .sort_index().to_dict()}
    return {
        "generated": dt.date.today().isoformat(),
        "command": f"brainseg model-card --data {data_dir}",
        "models": {m.role: {"file": m.path.name, "sha256": m.sha256, "input_spec": m.spec.to_dict(),
                            "parameters": int(m.model.count_params()), "training": m.metadata}
                   for m in (cascade.classifier, cascade.segmenter)},
        **_measured_with(models_dir),
        **_records(models_dir),
        "data": {"folder_patients": len(patients), "folder_slices": len(manifest), "split": split_table},
        "test": _strip(test_report),
        "demo_cases": {"folder": "demo/kaggle_3m", **_strip(demo_report)},
        "checked_keys": list(CHECKED_KEYS),
        "bench": speed,
    }


def reread_records(card: dict, models_dir: str | Path) -> dict:
    """``card`` with the records beside the weights read again (the hand-written decision record, the ablation,
    the cross-validations, the resolution ceiling, the network cost) and its measurements (evaluation,
    benchmark) kept: editing a record's prose need not re-run, and re-roll, the benchmark.

    Refused (DataError) when the weights, operating point or temperature differ from those the card measured
    with: then its figures are stale and only ``collect_card`` may write them.
    """
    models_dir = Path(models_dir)
    for role, model in card["models"].items():
        path = models_dir / model["file"]
        if not path.is_file() or sha256_of(path) != model["sha256"]:
            raise DataError(f"{path} is not the {role} the card measured: run `brainseg model-card` in full")
    now = _measured_with(models_dir)
    for key, value in now.items():
        if card.get(key) != value:
            raise DataError(f"the {key.replace('_', ' ')} beside the weights is not the one the card measured "
                            "with: run `brainseg model-card` in full")
    return {**card, **_records(models_dir), "records_reread": dt.date.today().isoformat()}


def _measured_with(models_dir: Path) -> dict:
    """The files beside the weights that the card's measurements depend on."""
    return {
        "operating_point": json.loads((models_dir / "operating_point.json").read_text()),
        "calibration": _json_or_none(models_dir / "calibration.json"),
    }


def _records(models_dir: Path) -> dict:
    """The records beside the weights that the card quotes but does not measure."""
    return {
        "ablation": _json_or_none(models_dir / "ablation.json"),
        "crossval": _json_or_none(models_dir / "crossval.json"),
        "point_crossval": point_crossval(models_dir),
        "crossval_variants": crossval_variants(models_dir),
        "resolution_ceiling": resolution_ceiling_record(models_dir),
        "network_cost": network_cost_record(models_dir),
        "ablation_decision": _ablation_decision(models_dir),
    }


def point_crossval_path(models_dir: Path) -> Path | None:
    """The cross-validation report the shipped operating point was chosen on (its ``source.report``); None when
    the point came from ``crossval.json`` itself, names no report, or the file is gone."""
    point = _json_or_none(Path(models_dir) / "operating_point.json") or {}
    recorded = (point.get("source") or {}).get("report")
    if not recorded:
        return None
    path = _project_path(Path(models_dir), recorded)
    return None if path.name == "crossval.json" or not path.is_file() else path


def point_crossval(models_dir: Path) -> dict | None:
    """The report of ``point_crossval_path`` without its per-slice rows, or None."""
    path = point_crossval_path(models_dir)
    return None if path is None else crossval_without_slice_rows(path)


def crossval_without_slice_rows(path: Path) -> dict:
    """A cross-validation report without its per-slice rows (the card and the model card page read the rest)."""
    report = json.loads(Path(path).read_text())
    # Thousands of rows the card does not quote; the count says the report keeps them (pairable, poolable).
    report["per_slice_rows"] = len(report.pop("per_slice", []))
    report.pop("per_slice_pixel_counts", None)
    return report


def _project_path(models_dir: Path, recorded: str) -> Path:
    """A path a command recorded: relative ones are read from the project root, as the command wrote them."""
    path = Path(recorded)
    return path if path.is_absolute() else models_dir.parent / path


def crossval_variants(models_dir: Path) -> list[dict]:
    """The recipe variants cross-validated against the shipped recipe (``crossval_variants/*.json``, each a
    ``brainseg crossval --variant ... --compare-to models/crossval.json`` report), without their per-patient rows,
    with what each changes in the recipe."""
    from brainseg.training.train import variant_recipe_changes

    variants = []
    for path in sorted((models_dir / "crossval_variants").glob("*.json")):
        report = json.loads(path.read_text())
        variant = report.get("variant")
        if not variant or "paired_against" not in report:
            raise DataError(f"{path} does not say which variant it scores or what it is paired with: make it with "
                            "`brainseg crossval --stage evaluate --variant NAME --compare-to models/crossval.json`")
        # What it changed in the recipe it was paired with, as recorded when it was scored: the recipe may have
        # moved since (a variant adopted), and the figures compare it with that recipe's folds.
        changes = variant.get("recipe_changes") or variant_recipe_changes(variant["overrides"])
        variants.append({
            "file": f"{path.parent.name}/{path.name}",
            "name": variant["name"],
            "changes": changes,
            "adopted": _adopted(changes, report["paired_against"]),
            **{key: report[key] for key in ("command", "k", "n_patients", "partial", "folds_scored", "figures",
                                            "confidence_intervals", "paired_against")},
            "per_fold": _fold_rows(report),
            **_paired_baseline(models_dir, report),
        })
    return variants


def _adopted(changes: dict[str, dict[str, list]], paired: dict) -> bool:
    """Adopted by the decision record's rule (paired 95% interval above 0) and trained by today's recipe: every
    value it changed is the recipe's now. A later variant that adopted the same change does not mark an earlier
    one that missed its rule, and an adopted variant stays marked when another is adopted on top of it."""
    from brainseg.training.train import recipe_changes

    in_recipe = all(not recipe_changes(model, {field: new for field, (_, new) in fields.items()})
                    for model, fields in changes.items())
    return in_recipe and paired["confidence_interval"]["low"] > 0


def _fold_rows(report: dict) -> list[dict]:
    return [{key: fold[key] for key in ("fold", "n_test_patients", "cascade_dice_per_volume_mean", "roc_auc")}
            for fold in report["per_fold"]]


def _paired_baseline(models_dir: Path, variant_report: dict) -> dict:
    """What a variant's table row compares with, from the report it was paired with (the GPU folds'
    ``crossval.json`` or the CPU folds' pooled report), so the row compares like with like: that report's
    per-fold figures and loss parts (``paired_baseline``), and the change in mean Dice per volume by thirds of
    tumor size over the same patients (``dice_change_by_tumor_size``). Both are None when that file is gone, the
    second also when either report's patient rows predate ``tumor_pixels``. A relative path is read from the
    project root, as the command wrote it."""
    path = _project_path(models_dir, variant_report["paired_against"]["report"])
    if not path.is_file():
        return {"paired_baseline": None, "dice_change_by_tumor_size": None}
    report = json.loads(path.read_text())
    rows, baseline_rows = variant_report.get("per_patient") or [], report.get("per_patient") or []
    sized = rows and all("tumor_pixels" in row for row in rows)
    return {
        "paired_baseline": {"file": path.name, "per_fold": _fold_rows(report),
                            "figures": {"cascade_dice_loss_parts": report["figures"].get("cascade_dice_loss_parts")}},
        "dice_change_by_tumor_size": metrics.dice_change_by_tumor_size(rows, baseline_rows) if sized else None,
    }


def resolution_ceiling_record(models_dir: Path) -> dict | None:
    """``resolution_ceiling.json`` (``brainseg resolution-ceiling``) without its per-patient rows, or None."""
    report = _json_or_none(models_dir / "resolution_ceiling.json")
    if report is None:
        return None
    for ceiling in report["ceilings"].values():
        ceiling.pop("per_patient", None)
    return report


def network_cost_record(models_dir: Path) -> dict | None:
    """``network_cost.json`` (``brainseg network-cost``) without its per-round seconds, or None."""
    report = _json_or_none(models_dir / "network_cost.json")
    if report is not None:
        report.pop("rounds", None)
    return report


def _json_or_none(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def _ablation_decision(models_dir: Path) -> list[str]:
    """What was adopted from the ablation and why: written by hand in ``ablation_decision.md`` beside it."""
    path = models_dir / "ablation_decision.md"
    return path.read_text().strip().splitlines() if path.is_file() else []


def write_card(card: dict, models_dir: str | Path) -> None:
    """``model_card.json``, ``MODEL_CARD.md`` and ``bench.json`` in the models folder."""
    models_dir = Path(models_dir)
    (models_dir / "bench.json").write_text(json.dumps(card["bench"], indent=2, default=float) + "\n")
    (models_dir / "model_card.json").write_text(card_json(card))
    (models_dir / "MODEL_CARD.md").write_text(render_markdown(card))


def card_json(card: dict) -> str:
    """The card as strict JSON: an undefined figure (NaN, e.g. patient specificity with no tumor-free patient) is
    null, which every JSON parser reads; the card's markdown shows both as n/a."""
    plain = json.loads(json.dumps(card, default=float))  # numpy scalars to Python numbers first
    return json.dumps(_finite_or_null(plain), indent=2, allow_nan=False) + "\n"


def _finite_or_null(node):
    if isinstance(node, dict):
        return {key: _finite_or_null(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_finite_or_null(value) for value in node]
    return None if isinstance(node, float) and not math.isfinite(node) else node


def update_readme(readme: str | Path, card: dict) -> bool:
    """Rewrite the README's results section from the card; False when the README has no such section."""
    readme = Path(readme)
    if not readme.is_file():
        return False
    text = readme.read_text()
    updated = replace_results_section(text, card)
    readme.write_text(updated)
    return updated != text or RESULTS_START in text


