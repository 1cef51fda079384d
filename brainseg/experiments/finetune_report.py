"""Fine-tuning with its evidence: validation-split Dice of the parent and the fine-tuned models, side by side.

Training may not import evaluation (the pipeline's layers), so the before/after comparison lives here:
``finetune_with_report`` fine-tunes (``brainseg.training.finetune``), scores both folders on the split's
*val* patients with the cascade, and writes the figures into the new folder's ``FINETUNE.md`` (shown on the
dashboard's Model card page) and its segmenter sidecar.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from brainseg.core import metrics
from brainseg.core.data import load_dataset, scan_dataset
from brainseg.core.split import is_final_fit, load_split, select_part
from brainseg.errors import DataError
from brainseg.evaluation.evaluate import predict_patients
from brainseg.inference.cascade import Cascade
from brainseg.training.finetune import FinetuneConfig, finetune, record_validation


def validation_dice(models_dir: str | Path, data_dir: str | Path, split_file: str | Path,
                    progress: str | None = None, exclude: frozenset[str] = frozenset()) -> dict:
    """Mean Dice per volume on the val patients (less ``exclude``): the segmenter alone and the cascade at its
    default threshold."""
    cascade = Cascade.from_dir(models_dir)
    manifest = select_part(scan_dataset(data_dir), load_split(split_file), "val")
    manifest = manifest[~manifest["patient_id"].isin(exclude)]
    if manifest.empty:
        raise DataError("every validation patient has corrections, so the fine-tune trains on all of them: no "
                        "patient is left to measure it on (correct training-split patients instead)")
    segmenter, gated = [], []
    for patient in predict_patients(cascade, manifest, progress):
        segmenter.append(metrics.dice(patient.result.segmenter_masks(), patient.truth))
        gated.append(metrics.dice(patient.result.masks(cascade.default_threshold), patient.truth))
    return {"patients": len(segmenter), "slices": len(manifest),
            "segmenter_dice_per_volume_mean": float(np.mean(segmenter)),
            "cascade_dice_per_volume_mean": float(np.mean(gated)), "threshold": cascade.default_threshold}


def finetune_markdown(provenance: dict, before: dict, after: dict, left_out: list[str] | None = None,
                      parent_final_fit: bool = False, corrected_test: list[str] | None = None) -> str:
    rows = [("segmenter alone, Dice per volume (mean)", "segmenter_dice_per_volume_mean"),
            (f"cascade at threshold {before['threshold']:.4f}, Dice per volume (mean)", "cascade_dice_per_volume_mean")]
    table = "\n".join(f"| {label} | {before[key]:.4f} | {after[key]:.4f} | {after[key] - before[key]:+.4f} |"
                      for label, key in rows)
    reviewers = sorted({name for c in provenance["corrections"] for name in (c.get("reviewers") or [])})
    return (
        "# Fine-tuned segmenter\n\n"
        f"Made by `brainseg finetune` on {provenance['created_utc']} from the segmenter "
        f"`{provenance['parent_segmenter_sha256'][:16]}…` of `{provenance['parent_models_dir']}`: "
        f"{provenance['epochs']} epochs on {provenance['corrected_slices']} corrected slices "
        f"({', '.join(reviewers) or 'reviewers not listed'}) plus {provenance['replay_slices']} replayed slices "
        f"from the {provenance['replay_source']} (so it does not forget the cohort). Corrections from "
        f"`{provenance['corrections_dir']}`.\n\n"
        f"## Validation split ({before['patients']} patients, {before['slices']} slices)\n\n"
        "| figure | before | after | change |\n|---|---|---|---|\n" + table + "\n\n"
        + (f"Left out: {len(left_out)} validation patient(s) with corrections ({', '.join(left_out)}), since the "
           "fine-tune trained on them. " if left_out else "")
        + ("The parent is a final fit on train + val: it trained on these patients, so both columns are in-sample "
           "for it; the change is what the fine-tune did on patients it did not train on itself. "
           if parent_final_fit else "")
        + (f"**{len(corrected_test)} corrected patient(s) are in the test split ({', '.join(corrected_test)})**: "
           "this model trained on them, so its test-split figures are not held out. " if corrected_test else "")
        + "The classifier, operating point and split are the parent's "
        "(re-choose the operating point for the new segmenter with `brainseg operating-point --data DIR "
        "--models-dir <this folder>`).\n"
    )


def finetune_with_report(parent_dir: str | Path, corrections_dir: str | Path, data_dir: str | Path,
                         out_dir: str | Path, config: FinetuneConfig | None = None,
                         split_file: str | Path | None = None, verbose: int = 2) -> dict:
    """Fine-tune, then score parent and child on the val split; returns {provenance, before, after}."""
    split_file = Path(split_file) if split_file else Path(parent_dir) / "split.json"
    # Patients the fine-tune trains on are not measured on: corrected validation patients are left out.
    corrected = set(load_dataset(corrections_dir)[0]["patient_id"]) if Path(corrections_dir).is_dir() else set()
    split = load_split(split_file)
    left_out, corrected_test = sorted(corrected & set(split["val"])), sorted(corrected & set(split["test"]))
    before = validation_dice(parent_dir, data_dir, split_file, "validation, before" if verbose else None,
                             frozenset(left_out))
    provenance = finetune(parent_dir, corrections_dir, data_dir, out_dir, config, split_file, verbose)
    after = validation_dice(out_dir, data_dir, split_file, "validation, after" if verbose else None,
                            frozenset(left_out))
    validation = {"split_file": str(split_file), "before": before, "after": after, "left_out_patients": left_out,
                  "corrected_test_patients": corrected_test}
    record_validation(out_dir, validation)
    parent_sidecar = Path(parent_dir) / "segmenter.json"
    parent_config = json.loads(parent_sidecar.read_text()).get("train_config", {}) if parent_sidecar.is_file() else {}
    (Path(out_dir) / "FINETUNE.md").write_text(finetune_markdown(provenance, before, after, left_out,
                                                                 is_final_fit(parent_config), corrected_test))
    return {"provenance": provenance, **validation}
