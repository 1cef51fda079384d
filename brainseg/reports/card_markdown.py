"""Markdown of the model card and of the README's results section, rendered from the card's dict only."""

from __future__ import annotations

import json

from brainseg.core import metrics
from brainseg.core.preprocess import PREPROCESSING_VERSION, recorded_preprocessing
from brainseg.core.split import OUT_OF_FOLD, PARTS, is_final_fit
from brainseg.errors import ModelLoadError
from brainseg.evaluation.calibration import fitted_on_words
from brainseg.evaluation.operating_point import chosen_on_words, floor_decimals
from brainseg.inference.cascade import COMBINED_SLICE_SCORES, describe_slice_score, slice_score_reach

DATASET_PATIENTS = 110  # LGG MRI Segmentation (Kaggle / TCGA-LGG): the whole dataset
RESULTS_START, RESULTS_END = "<!-- results:start (written by brainseg model-card) -->", "<!-- results:end -->"
GOALS = {"dice": 0.85, "auc": 0.98, "sensitivity": 0.97, "specificity": 0.85, "speed_ratio": 0.5,
         "train_minutes": 150}
LOSS_NAMES = {"focal_tversky": "focal Tversky (alpha {alpha}, gamma {gamma})", "dice_bce": "soft Dice + cross-entropy",
              "binary_crossentropy": "binary cross-entropy"}


def _f(value, digits: int = 3) -> str:
    return "n/a" if value is None or value != value else f"{value:.{digits}f}"


def format_threshold(value: float, decimals: int = 4) -> str:
    """A threshold shown floored, never rounded up: a reader who sets the shown value loses no sensitivity."""
    return f"{floor_decimals(value, decimals):.{decimals}f}"


def _ci(card: dict, name: str, digits: int = 3) -> str:
    ci = card["test"].get("confidence_intervals", {}).get(name)
    return f"[{_f(ci['low'], digits)}, {_f(ci['high'], digits)}]" if ci else ""


def _rounded(value, digits: int = 3):
    if isinstance(value, dict):
        return {k: _rounded(v, digits) for k, v in value.items()}
    return round(value, digits) if isinstance(value, float) else value


def _loss(config: dict) -> str:
    if config["model"] == "classifier":
        return f"binary cross-entropy, {config['balance'].replace('_', ' ')}"
    words = LOSS_NAMES[config["loss"]].format(alpha=config.get("tversky_alpha", 0.7),
                                              gamma=config.get("tversky_gamma", 0.75))
    if config["loss"] == "focal_tversky" and config.get("tversky_over") == "slice":
        words = words[:-1] + ", one index per slice, averaged)"
    return words


def augment_words(augment: dict | None) -> str:
    """A recorded augmentation config in words, with its ranges (a field an older record lacks was off)."""
    if not augment:
        return "none"
    parts = ["left-right flip"] if augment.get("flip_left_right") else []
    if augment.get("max_rotation_deg"):
        parts.append(f"rotation ±{augment['max_rotation_deg']:g}°")
    for key, name in (("max_scale_delta", "zoom"), ("max_shift_fraction", "shift"), ("max_brightness", "brightness"),
                      ("max_contrast_delta", "contrast")):
        if augment.get(key):
            parts.append(f"{name} ±{augment[key]:.0%}")
    if augment.get("max_gamma", 1.0) > 1.0:
        parts.append(f"gamma [1/{augment['max_gamma']:g}, {augment['max_gamma']:g}]")
    if augment.get("missing_sequence_prob"):
        parts.append(f"missing sequence {augment['missing_sequence_prob']:.0%}")
    return ", ".join(parts) or "none"


def train_minutes(card: dict) -> float:
    return sum(card["models"][m]["training"]["train_wall_seconds"] for m in ("classifier", "segmenter")) / 60


def replace_results_section(readme: str, card: dict) -> str:
    """The README with its results section (between the markers) rewritten from the card."""
    if RESULTS_START not in readme or RESULTS_END not in readme:
        return readme
    head, rest = readme.split(RESULTS_START, 1)
    _, tail = rest.split(RESULTS_END, 1)
    return head + RESULTS_START + "\n" + results_markdown(card) + RESULTS_END + tail


def _met(value: float, goal: float, at_most: bool = False) -> str:
    """Whether a goal is met, judged on the unrounded value (0.8496 shows as 0.850 beside "≥ 0.85": not met)."""
    if value is None or value != value:
        return "n/a"
    return "yes" if (value <= goal if at_most else value >= goal) else "no"


def headline_rows(card: dict) -> list[tuple[str, str, str, str, str]]:
    """(figure, goal, test split value, goal met, 95% CI) for the README and the card."""
    t, b, op = card["test"], card["bench"], card["operating_point"]
    at = t["classifier"]["at_default"]
    dice = t["cascade"]["dice_per_volume"]
    decisions = t["cascade_slice_decisions"]
    return [
        ("cascade Dice per volume, mean (median)", f"≥ {GOALS['dice']}", f"{_f(dice['mean'])} ({_f(dice['median'])})",
         _met(dice["mean"], GOALS["dice"]), _ci(card, "cascade_dice_per_volume_mean")),
        ("segmenter alone, Dice per volume, mean", "", _f(t["segmenter"]["dice_per_volume"]["mean"]), "",
         _ci(card, "segmenter_dice_per_volume_mean")),
        ("slice ROC AUC (of the gate's slice score)", f"≥ {GOALS['auc']}", _f(t["classifier"]["roc_auc"], 4),
         _met(t["classifier"]["roc_auc"], GOALS["auc"]), _ci(card, "roc_auc", 4)),
        (f"gate sensitivity at the default threshold {format_threshold(op['threshold'])}", f"≥ {GOALS['sensitivity']}",
         _f(at["sensitivity"]), _met(at["sensitivity"], GOALS["sensitivity"]), _ci(card, "sensitivity_at_default")),
        ("gate specificity at the default threshold", f"≥ {GOALS['specificity']}", _f(at["specificity"]),
         _met(at["specificity"], GOALS["specificity"]), _ci(card, "specificity_at_default")),
        ("cascade slice decisions (gate + non-empty mask): sensitivity / specificity", "",
         f"{_f(decisions['sensitivity'])} / {_f(decisions['specificity'])}", "",
         f"{_ci(card, 'cascade_slice_sensitivity')} / {_ci(card, 'cascade_slice_specificity')}"),
        (f"whole patient (median) / {b['reference']['network']} at {b['reference']['input_size']} on "
         f"{b['reference']['slices']} slices, same process", f"≤ {GOALS['speed_ratio']}",
         f"{_f(b['patient_over_reference'], 2)} ({_f(b['patient_seconds']['median'], 2)} s vs "
         f"{_f(b['reference_seconds'], 2)} s)", _met(b["patient_over_reference"], GOALS["speed_ratio"], at_most=True),
         ""),
        ("training both models from scratch on this CPU", f"≤ {GOALS['train_minutes']} min",
         f"{train_minutes(card):.0f} min ({_time_basis(card)})",
         _met(train_minutes(card), GOALS["train_minutes"], at_most=True), ""),
    ]


def held_out_patients_words(n_patients: int, point: dict | None = None) -> str:
    """What the test patients were used for: nothing chosen, but their images were looked at once; and, for an
    operating point written beside models already scored (``final-fit --choices-only``), that it came later."""
    words = (f"The {n_patients} test patients were never used to train or choose anything (their images, not labels "
             "or model outputs, were looked at once for the grey-air check in `brainseg.core.preprocess`: "
             "`models/ablation_decision.md`, *Grey air made black*).")
    trained = _trained_later(point)
    if trained:
        words += (f" The {_kept_words(point)} was scored on them before, beside earlier models and operating points; "
                  f"the {' and '.join(trained)} trained again later (`brainseg final-fit --only`) and the operating "
                  "point and temperature were chosen on out-of-fold figures alone before they were scored here, and "
                  "the decision record says when they were adopted.")
    elif point and point.get("stop_epochs"):
        words += (" The same models were scored on them before with an earlier operating point; this one was "
                  "chosen on out-of-fold figures alone (`brainseg final-fit --choices-only`), and the decision "
                  "record says when it was adopted.")
    return words


def _trained_later(point: dict | None) -> list[str]:
    """The models a final fit trained again with the point's report (``final-fit --only``), the others kept."""
    return list((point or {}).get("stop_epochs", {}).get("trained_by_it", []))


def _kept_words(point: dict) -> str:
    """The models a final fit of the others (``final-fit --only``) kept as they were, in words."""
    trained = _trained_later(point)
    return " and ".join(role for role in point["stop_epochs"]["models"] if role not in trained)


def cascade_sensitivity_words(card: dict) -> list[str]:
    """The goal's sensitivity read as the gate's, beside the cascade's own slice decisions (what a reviewer sees
    called tumor), where the card holds them."""
    decisions = card["test"].get("cascade_slice_decisions")
    if not decisions:
        return []
    sens, goal = decisions["sensitivity"], GOALS["sensitivity"]
    return [f"The goal's sensitivity at the default threshold is read here as the gate's. The cascade's own slice "
            "decisions (a slice called tumor only when it passes the gate and its mask is non-empty: what a reviewer "
            f"sees called tumor) reach sensitivity {_f(sens)} {_ci(card, 'cascade_slice_sensitivity')} and "
            f"specificity {_f(decisions['specificity'])} {_ci(card, 'cascade_slice_specificity')}: its sensitivity is "
            f"{'below' if sens < goal else 'at or above'} {goal}.", ""]


def results_markdown(card: dict) -> str:
    t, b = card["test"], card["bench"]
    rows = headline_rows(card)
    lines = [
        f"## Results on the test split ({t['n_patients']} patients, {t['n_slices']} slices)",
        "",
        held_out_patients_words(t["n_patients"], card["operating_point"]),
        "",
        "| figure | goal | test split | goal met | 95% CI (bootstrap over patients) |",
        "|---|---|---|---|---|",
        *[f"| {a} | {g} | {v} | {m} | {c} |" for a, g, v, m, c in rows],
        "",
        *_gate_note(card["operating_point"]),
        *cascade_sensitivity_words(card),
        f"Measured by `{card['command']}` on {b['machine']['cpu']} ({b['machine']['cores']} cores, no GPU), which "
        "writes `models/MODEL_CARD.md` (definitions, the ablation behind the recipe, per-institution figures) and this "
        "section. Dice per volume pools each patient's slices into one 3-D mask (Buda et al. 2019); an empty "
        f"prediction on an empty truth counts 1.0. With {t['n_patients']} test patients the intervals are wide: "
        "read the goals against them, not against the point estimates alone.",
        "",
        *_crossval_summary(card.get("crossval"), card.get("point_crossval"), card["operating_point"]),
        "Speed, from the same command (`brainseg bench` inside it; absolute times differ up to 3x between machines "
        "of this kind, the ratio to the reference workload timed in the same process does not):",
        "",
        "```json",
        json.dumps(_rounded({k: b[k] for k in ("patient_over_reference", "reference_seconds", "ms_per_slice",
                                               "patient_seconds", "model_load_seconds_cold", "peak_rss_mb")}),
                   indent=2),
        "```",
        "",
    ]
    return "\n".join(lines)


def estimated_patient_ratios(network_cost: dict | None, patient_ratio: float) -> dict[str, float]:
    """Each costed candidate's whole patient, estimated as the card's own measured ``patient_ratio`` (its bench)
    plus the candidate's networks' difference from the shipped ones (``brainseg network-cost``)."""
    return {name: patient_ratio + row["extra_over_shipped"]
            for row in (network_cost or {}).get("rows", []) for name in row["candidates"]}


def ablation_markdown(ablation: dict, estimates: dict[str, float] | None = None) -> list[str]:
    """The ablation as a table: one row per variant, the baseline first, deltas in mean Dice per volume. A variant
    not scored says what a whole patient would cost with its networks, where ``estimates`` has it."""
    variants, estimates = ablation["variants"], estimates or {}
    base = variants.get("baseline", {}).get("cascade_dice_per_volume", {}).get("mean", float("nan"))
    lines = [
        f"Validation split: {ablation['n_patients']} patients, {ablation['n_slices']} slices "
        f"({ablation['n_tumor_slices']} with tumor). Each row changes one thing; its gate threshold is set on these "
        f"patients for slice sensitivity {ablation['target_sensitivity']} (so sensitivity is met by construction), "
        "and its specificity, AUC and Dice are compared at that point. The same patients also picked each run's "
        "checkpoint (lowest validation loss), which flatters every row a little and a noisier run more: read "
        "small differences as ties; the cross-validation below is the check on patients that chose nothing.",
        "",
        "| variant | change | cascade Dice/vol mean (Δ) | median | segmenter alone | AUC | spec. at sens. "
        f"{ablation['target_sensitivity']} | cascade slice sens. / spec. | predicted / true px |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, row in variants.items():
        if "status" in row:
            cost = estimates.get(name)
            cost_words = "" if cost is None else (f"; its networks would put a whole patient at about {_f(cost, 2)}x "
                                                  f"the speed reference (goal <= {GOALS['speed_ratio']})")
            lines.append(f"| {name} | {row['change']} | {row['status']}{cost_words} | | | | | | |")
            continue
        dice = row["cascade_dice_per_volume"]
        delta = "" if name == "baseline" else f" ({dice['mean'] - base:+.3f})"
        lines.append(
            f"| {name} | {row['change']} | {_f(dice['mean'])}{delta} | {_f(dice['median'])} | "
            f"{_f(row['segmenter_dice_per_volume_mean'])} | {_f(row['roc_auc'], 4)} | "
            f"{_f(row['gate_at_target']['specificity'])} | {_f(row['cascade_slice_decisions']['sensitivity'])} / "
            f"{_f(row['cascade_slice_decisions']['specificity'])} | "
            f"{_f(row['predicted_over_true_pixels_on_tumor_slices'], 2)} |")
    return lines


def render_markdown(card: dict) -> str:
    t, op, b = card["test"], card["operating_point"], card["bench"]
    clf, seg = card["models"]["classifier"], card["models"]["segmenter"]
    if "train_config" not in clf["training"] or "train_config" not in seg["training"]:
        raise ModelLoadError("a model's sidecar JSON has no training record (train_config): export models with "
                         "`brainseg train ... --export-dir` so the card can describe how they were trained")
    c, s = clf["training"]["train_config"], seg["training"]["train_config"]
    split = card["data"]["split"]
    used = sum(split[part]["patients"] for part in PARTS)  # the patients split, of the dataset's DATASET_PATIENTS
    chosen = op["chosen_on"]
    lines = [
        "# brainseg model card",
        "",
        f"Generated {card['generated']} by `{card['command']}` from the shipped weights; every figure below "
        "comes from that one command (evaluation, benchmark) or from the records it reads beside the weights "
        "(training sidecars, `operating_point.json`, `ablation.json`)."
        + (f" The records were read again on {card['records_reread']} (`brainseg model-card --reread-records`: "
           "same weights, measurements kept)." if card.get("records_reread") else ""),
        "",
        "## Intended use",
        "- **Research and education** on lower-grade glioma (LGG) brain MRI: reviewing where an AI slice",
        "  classifier and segmenter agree or disagree with expert FLAIR-abnormality masks.",
        "- Data like the training data: axial 256x256 slices, channels pre-contrast / FLAIR / post-contrast,",
        "  from the TCGA-LGG collection (5 institutions: CS, DU, EZ, FG, HT).",
        "- **Not a medical device. Not for diagnosis, screening, or treatment decisions.** Out of scope: other",
        "  tumor types, other sequences, other scanners/protocols, pediatric MRI, 3-D volumes not sliced axially.",
        "",
        "## Data and split",
        "LGG MRI Segmentation (Buda et al. 2019; Kaggle `mateuszbuda/lgg-mri-segmentation`; TCIA TCGA-LGG),",
        f"{used} of its {DATASET_PATIENTS} patients (the other {DATASET_PATIENTS - used} are held out by the project "
        "owners). Split **by patient**",
        "(`models/split.json`, seed 42), stratified by institution and tumor burden:",
        "",
        "| part | patients | slices | tumor slices | institutions |",
        "|---|---|---|---|---|",
    ]
    for part in PARTS:
        r = split[part]
        inst = ", ".join(f"{k} {v}" for k, v in r["institutions"].items())
        lines.append(f"| {part} | {r['patients']} | {r['slices']} | {r['tumor_slices']} | {inst} |")
    final_fit = is_final_fit(c) and is_final_fit(s)
    if final_fit:
        lines += ["", f"The shipped models are a **final fit**: trained on train + val "
                  f"({split['train']['patients'] + split['val']['patients']} patients) once every choice was made "
                  "(the recipe by the ablation on val, epoch counts, operating point and temperature by the "
                  "cross-validation below). The test split stays held out."]
    lines += [
        "",
        "## Models",
        "| | classifier | segmenter |",
        "|---|---|---|",
        "| architecture | seed ResNet-style classifier (`build_classifier`) | seed ResUNet (`build_segmenter`) |",
        f"| input | {c['input_size']}x{c['input_size']}x3, {c['scaling']} scaling"
        f"{_input_path_words(clf['training'])} | "
        f"{s['input_size']}x{s['input_size']}x3, {s['scaling']} scaling{_input_path_words(seg['training'])} |",
        f"| width multiplier | {c['width']} | {s['width']} |",
        f"| parameters | {clf['parameters']:,} | {seg['parameters']:,} |",
        f"| loss | {_loss(c)} | {_loss(s)} |",
        f"| training slices | {clf['training']['n_train_slices']} (all {_fit_on_words(c)} slices) | "
        f"{seg['training']['n_train_slices']} ({_fit_on_words(s)} tumor slices + {s['empty_fraction']:.0%} as many "
        "tumor-free) |",
        f"| optimizer | Adam lr {c['learning_rate']}, {c['schedule']} schedule | "
        f"Adam lr {s['learning_rate']}, {s['schedule']} schedule |",
        *_epochs_row(clf["training"], seg["training"], c, s),
        f"| batch, seed | {c['batch_size']}, {c['seed']} | {s['batch_size']}, {s['seed']} |",
        f"| augmentation | {augment_words(c['augment'])} | {augment_words(s['augment'])} |",
        f"| training time | {_train_time(clf['training'])} | {_train_time(seg['training'])} |",
        f"| file, sha256 | `{clf['file']}` `{clf['sha256']}` | `{seg['file']}` `{seg['sha256']}` |",
        "",
        f"Trained on a CPU ({b['machine']['cpu']}, {b['machine']['cores']} cores, TensorFlow "
        f"{b['machine']['tensorflow']}, no GPU) with "
        + (_final_fit_command_words(op) if final_fit else
           "`brainseg train both --data data/kaggle_3m --export-dir models`. ")
        + "The exact seed architectures (8,880,897 and 1,210,513 parameters at 256x256) and focal Tversky remain "
        "available with `--recipe seed`.",
        "",
        *_ablation_lines(card),
        "## Metric definitions",
        "- **Dice per volume** (Buda et al. 2019): a patient's slices pooled into one 3-D mask, Dice",
        "  2|P and T| / (|P| + |T|); then mean and median over patients. **Dice per tumor slice**: 2-D Dice on",
        "  slices whose truth is non-empty. An empty prediction on an empty truth counts 1.0.",
        f"- **Cascade**: each slice gets a *slice score* ('{op.get('slice_score', 'classifier')}': "
        + describe_slice_score(op.get("slice_score", "classifier"))
        + f"); a slice whose score is >= the threshold gets the segmenter's mask (pixel probability >= "
        f"{op.get('mask_threshold', 0.5)}, 2-D components under {op.get('min_component_pixels', 0)} px removed). "
        "A slice over the threshold whose mask is empty counts as no tumor. **Segmenter alone**: the same masks, "
        "no gate.",
        "- Slice classification: a slice is positive when its expert mask is non-empty. Sensitivity = TP/(TP+FN),",
        "  specificity = TN/(TN+FP), precision = TP/(TP+FP). ROC AUC is of the slice score. ECE: 10 equal-width",
        "  bins. HD95 in pixels of the 256x256 slice, on tumor slices where both masks are non-empty; the tumor",
        "  slices it leaves out (empty prediction) are counted next to it. HD95 here pools both directions' boundary",
        "  distances before the 95th percentile (MedPy's convention); MONAI's and many BraTS tables' larger-of-two",
        "  one-way percentiles is never smaller, so compare with those only on the same definition.",
        f"- **95% confidence intervals**: percentile bootstrap over patients ({_resamples_words(t)}, seed 0): "
        "patients are",
        "  drawn with replacement and each brings all its slices, since slices of one patient are not independent.",
        "",
        "## Operating point",
        _chosen_on_words(chosen) + _applied_words(op) + " Stored in `models/operating_point.json`: default threshold "
        f"**{format_threshold(op['threshold'], 6)}**, pixel cut {op.get('mask_threshold', 0.5)}, small components "
        f"under {op.get('min_component_pixels', 0)} px removed. Rule: {op['rule']}. It favours sensitivity: a missed "
        "tumor slice costs a reviewer more than a false alarm they can dismiss. `operating-point` and `calibrate` "
        "refuse the test split and patients the models trained on.",
        "",
        *_gate_note(op),
        f"## Test split results ({t['n_patients']} patients, {t['n_slices']} slices, {t['n_tumor_slices']} with "
        "tumor; scored after every choice above)",
        "",
        held_out_patients_words(t["n_patients"], card["operating_point"]),
        "",
        "| figure | goal | test split | goal met | 95% CI |",
        "|---|---|---|---|---|",
        *[f"| {a} | {g} | {v} | {m} | {ci} |" for a, g, v, m, ci in headline_rows(card)],
        "",
        *cascade_sensitivity_words(card),
        "| gate | threshold | sensitivity | specificity | precision | F1 |",
        "|---|---|---|---|---|---|",
    ]
    for key, label in (("at_default", "default"), ("at_0.5", "seed 0.5"), ("at_0.05", "seed 0.05")):
        r = t["classifier"][key]
        lines.append(f"| {label} | {format_threshold(r['threshold'])} | {_f(r['sensitivity'])} | "
                     f"{_f(r['specificity'])} | {_f(r['precision'])} | {_f(r['f1'])} |")
    p = t["patient_detection"]
    lines += [
        "",
        f"Expected calibration error of the slice score {_f(t['classifier']['expected_calibration_error'])}. "
        f"Patients with a tumor detected (at least one slice called) at the default threshold: {p['tp']} of "
        f"{p['tp'] + p['fn']}.",
        "",
        "| segmentation | Dice/volume mean | Dice/volume median | IoU/volume mean | Dice/tumor slice mean | "
        "HD95 median (px) [tumor slices left out] | false-positive slices |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in ("cascade", "segmenter"):
        r = t[name]
        hd = r["hd95_pixels_per_tumor_slice"]
        lines.append(f"| {name} | **{_f(r['dice_per_volume']['mean'])}** | {_f(r['dice_per_volume']['median'])} | "
                     f"{_f(r['iou_per_volume']['mean'])} | {_f(r['dice_per_tumor_slice']['mean'])} | "
                     f"{_f(hd['median'], 1)} [{hd.get('tumor_slices_left_out', 'n/a')}] | "
                     f"{r['false_positive_slices']} |")
    lines += [
        "",
        *dice_loss_lines(t["cascade"].get("dice_loss_parts"), t["cascade"]["dice_per_volume"]["mean"]),
        "By institution (cascade Dice per volume, mean): " + ", ".join(
            f"{k} {_f(v['cascade_dice_per_volume_mean'])} ({v['n_patients']} pts)"
            for k, v in t["by_institution"].items()),
        "",
        *crossval_lines(card.get("crossval"), op),
        *point_crossval_lines(card.get("point_crossval"), op),
        *crossval_variant_lines(card.get("crossval_variants") or [], card.get("crossval")),
        *resolution_ceiling_lines(card.get("resolution_ceiling"), card.get("crossval"),
                                  card["models"]["segmenter"]["input_spec"]["size"]),
        *_calibration_lines(card),
        *_speed_lines(card),
        "## Demo cases (checked by the test suite)",
        "The four shipped demo patients (from the test split) give: " + ", ".join(
            f"{k} {_f(dig(card['demo_cases'], k), 4)}" for k in card.get("checked_keys", [])) + ".",
        "`tests/test_model_card.py` recomputes these from the weights.",
        "",
        "## Limitations",
        f"- Trained and tested on {used} patients from 5 institutions; the test split has "
        f"{split['test']['patients']} patients, so its figures carry the wide intervals above (one patient moves the "
        "mean Dice per volume by several points). No figure here is measured on the "
        f"{DATASET_PATIENTS - used} patients held out from the whole project.",
        _input_size_limit(card.get("resolution_ceiling"), card["models"]["segmenter"]["input_spec"]["size"]),
        "- The slice score is not calibrated to clinical prevalence.",
        *_lone_slice_limit(op),
        "",
        "## Citation and terms",
        "Buda, Saha, Mazurowski, *Computers in Biology and Medicine* 109 (2019); Mazurowski et al., *Journal of",
        "Neuro-Oncology* (2017); TCIA TCGA-LGG. Data CC BY-NC-SA 4.0 (non-commercial, with attribution); the",
        "weights are derived from it and carry the same terms.",
        "",
    ]
    return "\n".join(lines)


def _resamples_words(test: dict) -> str:
    """The test intervals' bootstrap resamples, as recorded with each interval."""
    counts = sorted({ci["n_resamples"] for ci in test.get("confidence_intervals", {}).values()})
    return f"{' or '.join(map(str, counts)) if counts else 'no'} resamples"


def _input_size_limit(ceiling: dict | None, size: int) -> str:
    """What the input size alone costs the masks, from the resolution ceiling record where there is one."""
    alone = (ceiling or {}).get("ceilings", {}).get(str(size))
    if not alone:
        return (f"- Trained at {size}x{size} to fit a CPU budget (the 256 -> {size} -> 256 round trip alone limits "
                "the masks' Dice per volume); thin tumor rims and very small lesions suffer most.")
    return (f"- Trained at {size}x{size} to fit a CPU budget (256 -> {size} -> 256 alone limits the masks' Dice per "
            f"volume to {_f(alone['dice_per_volume_mean'])} on average over the {ceiling['n_patients']} "
            f"{ceiling['data']['split'].replace('+', ' + ')} patients, `models/resolution_ceiling.json`); thin tumor "
            "rims and very small lesions suffer most.")


def _input_path_words(sidecar: dict) -> str:
    """The input path the weights trained with, against the one serving them (``preprocess.PREPROCESSING_VERSION``)."""
    trained_with = recorded_preprocessing(sidecar)
    if trained_with == PREPROCESSING_VERSION:
        return "; grey air made black first"
    return (f"; **trained with input path version {trained_with}** (no grey-air step), served with version "
            f"{PREPROCESSING_VERSION}")


def _fit_on_words(config: dict) -> str:
    return "train + val" if is_final_fit(config) else "train-split"


def _epochs_row(clf: dict, seg: dict, c: dict, s: dict) -> list[str]:
    if is_final_fit(c) and is_final_fit(s):
        return [f"| epochs (fixed by the cross-validation; final fit, last epoch kept) | {clf['epochs_run']} of the "
                f"{c['epochs']}-epoch schedule | {seg['epochs_run']} of the {s['epochs']}-epoch schedule |"]
    return [f"| epochs (best by val loss) | {clf['epochs_run']} ({clf['best_epoch']}) | "
            f"{seg['epochs_run']} ({seg['best_epoch']}) |"]


def _chosen_on_words(chosen: dict) -> str:
    """Where the operating point was chosen, from its record, and by which command."""
    if chosen["split"] == OUT_OF_FOLD:
        return (f"Chosen {chosen_on_words(chosen)} (`brainseg crossval`), since the final fit trained on the "
                "validation patients.")
    return f"Chosen {chosen_on_words(chosen)} only (`brainseg operating-point`)."


def _final_fit_command_words(point: dict) -> str:
    epochs = point.get("stop_epochs")
    if not epochs:
        return ("`brainseg final-fit --data data/kaggle_3m`, which reads its epoch counts, operating point and "
                "temperature from `models/crossval.json`. ")
    report, trained = point["source"]["report"], _trained_later(point)
    if trained:
        return (f"`brainseg final-fit --data data/kaggle_3m` (the {_kept_words(point)}, its epoch count from "
                f"`models/crossval.json`), then `brainseg final-fit --data data/kaggle_3m --only {trained[0]} "
                f"--crossval {report}`, which trained the {trained[0]} again with that report's epoch count and "
                "wrote its operating point and temperature. ")
    return ("`brainseg final-fit --data data/kaggle_3m`, which read its epoch counts from `models/crossval.json`; "
            f"the operating point and temperature were written later from `{report}` "
            "(`brainseg final-fit --choices-only`). ")


def _applied_words(point: dict) -> str:
    """For a point written beside models trained before it was chosen (``brainseg final-fit --choices-only``)."""
    epochs = point.get("stop_epochs")
    if not epochs:
        return ""
    models, report = epochs["models"], epochs["this_report"]
    words = ", ".join(f"{role} {models[role]}" for role in models)
    same = models == report
    trained = _trained_later(point)
    when = (f"with the {' and '.join(trained)} it trained (`brainseg final-fit --only`), beside the final-fit "
            f"{_kept_words(point)} trained before"
            if trained else "beside the final-fit models after they were trained (`brainseg final-fit --choices-only`)")
    return (f" It comes from `{point['source']['report']}` and was written {when}; the models stopped at epochs {words}"
            + (", the counts that report's folds give too." if same else
               ", from their own cross-validation; that report's folds would give "
               + ", ".join(f"{role} {report[role]}" for role in report) + "."))


def dig(report: dict, dotted: str):
    """``report['a']['b']`` for ``'a.b'``."""
    node = report
    for key in dotted.split("."):
        node = node[key]
    return node


def _time_basis(card: dict) -> str:
    recorded = [card["models"][m]["training"].get("train_wall_clock_recorded", False)
                for m in ("classifier", "segmenter")]
    if all(recorded):
        return "the commands' wall clock"
    if not any(recorded):
        return "sum of epoch times"
    return ", ".join(f"{m}: {'command wall clock' if r else 'sum of epoch times'}"
                     for m, r in zip(("classifier", "segmenter"), recorded, strict=True))


def _gate_note(op: dict) -> list[str]:
    """Say when the combined score lets every drawn slice through: then the masks are the segmenter's."""
    cut = op.get("mask_threshold", 0.5)
    # A lifted score is never below the combined one, so the same bound holds for it.
    if op.get("slice_score") not in COMBINED_SLICE_SCORES or op["threshold"] > cut / 2:
        return []
    return [f"At this threshold every slice on which the segmenter draws passes the gate (a drawn pixel means a peak "
            f"of at least {cut}, so a score of at least {cut / 2}): the cascade's masks are the segmenter's, and the "
            "classifier acts through the slice score (the ROC curve, and thresholds above "
            f"{cut / 2}). The segmenter-alone rows therefore equal the cascade's.", ""]


def _train_time(training: dict) -> str:
    minutes = training["train_wall_seconds"] / 60
    if training.get("train_wall_clock_recorded"):
        return f"{minutes:.1f} min (command wall clock)"
    return f"{minutes:.1f} min (sum of epoch times; this run predates the wall-clock record)"


def _ablation_lines(card: dict) -> list[str]:
    ablation = card.get("ablation")
    if not ablation:
        return ["## How the recipe was chosen", "No ablation record (`models/ablation.json`) beside the weights.", ""]
    return [
        "## How the recipe was chosen: the ablation",
        f"`{ablation.get('command', 'brainseg ablate')}` runs `models/ablation_plan.json` and writes "
        "`models/ablation.json`. The test split is not used.",
        "",
        *ablation_markdown(ablation, estimated_patient_ratios(card.get("network_cost"),
                                                             card["bench"]["patient_over_reference"])),
        "",
        *card.get("ablation_decision", []),
        "",
    ]


def _crossval_summary(cv: dict | None, point_cv: dict | None = None, point: dict | None = None) -> list[str]:
    if not cv:
        return []
    # An adopted variant's CPU cross-validation chose the shipped point: the recipe has moved since crossval.json.
    adopted = (point_cv or {}).get("variant", {}).get("name")
    lines = [f"Patient-level {cv['k']}-fold cross-validation of the "
             # crossval.json may predate several adopted variants, not only the last one.
             + (f"recipe before the variants adopted since (the latest `{adopted}`)" if adopted else "same recipe")
             + f" over the {cv['n_patients']} train + validation patients (`brainseg crossval`, out-of-fold; details "
             "in the model card): " + _oof_figure_words(cv) + "."]
    if point_cv and point:
        lines.append("The same folds retrained on the CPU" + (f" with `{adopted}` (the shipped recipe)" if adopted
                                                              else "")
                     + f" and gated on the shipped '{point_cv['slice_score']}' "
                     f"score, the report the shipped operating point was chosen on (`{point['source']['report']}`): "
                     + _oof_figure_words(point_cv) + ".")
    return [" ".join(lines), ""]


def _oof_figure_words(cv: dict) -> str:
    f, ci = cv["figures"], cv["confidence_intervals"]
    dice, auc = ci["cascade_dice_per_volume_mean"], ci["roc_auc_pooled"]
    gate = f["gate_at_each_folds_threshold"]
    return (f"cascade Dice per volume {_f(f['cascade_dice_per_volume']['mean'])} [{_f(dice['low'])}, "
            f"{_f(dice['high'])}], slice ROC AUC {_f(f['roc_auc_pooled'], 4)} [{_f(auc['low'], 4)}, "
            f"{_f(auc['high'], 4)}], gate sensitivity / specificity {_f(gate['sensitivity'])} / "
            f"{_f(gate['specificity'])} at each fold's own threshold")


def point_crossval_lines(cv: dict | None, point: dict) -> list[str]:
    """The cross-validation report the shipped operating point and temperature were chosen on, when it is not
    ``models/crossval.json`` (``brainseg final-fit --choices-only --crossval REPORT``), with the same figures."""
    if not cv:
        return []
    source = point["source"]["report"]
    return crossval_lines(
        cv, source=source,
        heading=f"## Cross-validation behind the shipped operating point (`{source}`)",
        about=["The shipped operating point and temperature were chosen on this report's pooled out-of-fold "
               "outputs (section *Operating point*): the same five folds of the same patients, both models "
               f"retrained with the shipped recipes, and each slice gated on the '{cv['slice_score']}' score as "
               "the shipped cascade gates it. Its figures, unlike those above, are therefore those of the shipped "
               "recipe and operating point together.", ""],
        choices_heading="### Its choices (`final_fit_choices`): the shipped operating point and temperature, "
                        "not the epochs")


def crossval_lines(cv: dict | None, shipped_point: dict | None = None, *, source: str = "models/crossval.json",
                   heading: str | None = None, about: list[str] | None = None,
                   choices_heading: str = "### Choices for the final fit (`final_fit_choices`)") -> list[str]:
    """The out-of-fold figures of a ``brainseg crossval`` report (``models/crossval.json`` unless ``source`` says
    otherwise), if it was run; ``shipped_point``: the shipped operating point, to say when it was taken from
    another report than this one."""
    if not cv:
        return ["## Cross-validation", "Not run: no `models/crossval.json` beside the weights.", ""]
    f, ci = cv["figures"], cv["confidence_intervals"]

    def interval(name: str, digits: int = 3) -> str:
        r = ci.get(name)
        return f"[{_f(r['low'], digits)}, {_f(r['high'], digits)}]" if r else "n/a"

    training = [fold["training"][role] for fold in cv["per_fold"] for role in ("classifier", "segmenter")]
    backends = sorted({t.get("keras_backend") or "tensorflow" for t in training})
    devices = sorted({d for t in training for d in (t.get("devices") or [])})
    run_minutes = [(t.get("train_wall_seconds") or 0.0) / 60 for t in training]
    gate, decisions = f["gate_at_each_folds_threshold"], f["cascade_slice_decisions"]
    lines = [
        heading or f"## Cross-validation ({cv['k']} folds by patient over the {cv['n_patients']} train + validation "
        "patients)",
        *(about or []),
        f"`{cv.get('command', 'brainseg crossval')}` (`{source}`; folds in its `per_fold`, seed "
        f"{cv['seed']}). Each fold trains both models with the shipped recipes on about 4/5 of the patients, "
        "picks checkpoints and its own operating point (same rule, same target sensitivity "
        f"{cv['target_sensitivity']}) on an inner validation set, and scores the patients it held out: every "
        f"patient is scored once, by models that never saw it ({cv['n_slices']} slices, {cv['n_tumor_slices']} "
        "with tumor). The test split is not used. These figures describe the **recipe** (how well models trained "
        "this way generalise, over five times as many patients as the test split), not the shipped weights.",
        "",
        "| out-of-fold figure | value | 95% CI (bootstrap over patients) |",
        "|---|---|---|",
        f"| cascade Dice per volume, mean (median) | {_f(f['cascade_dice_per_volume']['mean'])} "
        f"({_f(f['cascade_dice_per_volume']['median'])}) | {interval('cascade_dice_per_volume_mean')} |",
        f"| segmenter alone, Dice per volume, mean | {_f(f['segmenter_dice_per_volume']['mean'])} | "
        f"{interval('segmenter_dice_per_volume_mean')} |",
        f"| slice ROC AUC, pooled (per fold: {_f(f['roc_auc_per_fold']['min'], 4)} to "
        f"{_f(f['roc_auc_per_fold']['max'], 4)}) | {_f(f['roc_auc_pooled'], 4)} | {interval('roc_auc_pooled', 4)} |",
        f"| gate sensitivity / specificity at each fold's threshold | {_f(gate['sensitivity'])} / "
        f"{_f(gate['specificity'])} | {interval('gate_sensitivity')} / {interval('gate_specificity')} |",
        f"| cascade slice decisions: sensitivity / specificity | {_f(decisions['sensitivity'])} / "
        f"{_f(decisions['specificity'])} | |",
        "",
        "Per fold, cascade Dice per volume (mean): " + ", ".join(
            f"fold {fold['fold']} {_f(fold['cascade_dice_per_volume_mean'])} ({fold['n_test_patients']} pts)"
            for fold in cv["per_fold"]) + ".",
        "",
        *_record_format_lines(cv),
        *dice_loss_lines(f.get("cascade_dice_loss_parts"), f["cascade_dice_per_volume"]["mean"]),
        *_loss_by_size_lines(cv["per_patient"]),
        "Lowest out-of-fold cascade Dice per volume: " + ", ".join(
            f"{row['patient_id']} {_f(row['cascade_dice'])} ({row.get('tumor_slices', '?')} tumor slices, "
            f"{row.get('tumor_pixels', '?')} px in truth, {row.get('predicted_pixels', '?')} predicted)"
            for row in sorted(cv["per_patient"], key=lambda r: r["cascade_dice"])[:5]) + ".",
        "",
        f"Trained with Keras on {', '.join(backends)}"
        + (f" on {', '.join(devices)}" if devices else "")
        + f"; each of the {len(training)} runs took {min(run_minutes):.1f} to {max(run_minutes):.1f} min of wall "
        "clock"
        + (" (all ten side by side on one lent GPU; on this project's 2-core CPU they take about five hours in "
           "all). Off TensorFlow the training "
           "input pipeline is its numpy/OpenCV twin (same transforms, held to the TensorFlow one by "
           "`tests/test_numpy_batches.py`; another random stream), so fold models are not bit-for-bit what the "
           "CPU command would train." if "jax" in backends or "torch" in backends else "."),
        "",
        *_input_path_lines(training),
        *_paired_lines(cv.get("paired_against")),
        *_final_fit_choice_lines(cv.get("final_fit_choices"), choices_heading),
        *_replaced_choice_lines(shipped_point),
    ]
    return lines


def _lone_slice_limit(point: dict) -> list[str]:
    """A slice score lifted by its neighbours is lower, or equal, for a slice read without them."""
    if not slice_score_reach(point.get("slice_score", "classifier")):
        return []
    return ["- The slice score reads the slices above and below. A slice scored without them (a lone upload) keeps "
            "its own, unlifted score, so at the default threshold, set on lifted scores, the gate misses more of "
            "such slices' tumors; the Upload page reads a case's uploaded slices together and notes each slice "
            "scored alone."]


def _replaced_choice_lines(shipped_point: dict | None) -> list[str]:
    if not shipped_point or not shipped_point.get("stop_epochs"):
        return []
    later = shipped_point["source"]["report"]
    trained = _trained_later(shipped_point)
    if trained:
        return [f"The shipped {_kept_words(shipped_point)}'s final fit took its epoch count from these choices; the "
                f"shipped {' and '.join(trained)} was trained again later with the epoch count of `{later}`, and the "
                "operating point and temperature were chosen on that report (section *Operating point*).", ""]
    return [f"The final fit took its epoch counts from these choices; its shipped operating point and temperature "
            f"are not these but were chosen later on `{later}` (section *Operating point*).", ""]


def _record_format_lines(cv: dict) -> list[str]:
    """Say so when a cross-validation record was written before per-slice scores were kept in it."""
    if "per_slice" in cv or cv.get("per_slice_rows"):
        return []
    return ["This record was written before `brainseg crossval` kept every held-out slice's score (`per_slice`): "
            "its ROC AUC cannot be paired with another score's (`--compare-to`) nor pooled with fold reports "
            "(`--stage combine`), and its pooled final-fit threshold cannot be re-derived from it. The CPU re-run's "
            "fold reports (`models/crossval_cpu/`) keep them.", ""]


LOSS_PART_WORDS = {
    "extra_on_tumor_free_slices": "extra pixels on tumor-free slices (false-positive blobs)",
    "extra_on_tumor_slices": "extra pixels on tumor slices (over-segmentation)",
    "missed_on_slices_left_empty": "missed pixels on tumor slices left empty (gated out or nothing drawn)",
    "missed_on_slices_drawn_on": "missed pixels on tumor slices drawn on (under-segmentation)",
}


def dice_loss_lines(parts: dict | None, mean_dice: float) -> list[str]:
    """Where the cascade's mean Dice per volume falls short of 1 (``metrics.dice_loss_parts``), largest first."""
    if not parts:
        return []
    return ["Where the cascade's mean Dice per volume falls short of 1 (1 - Dice = (FP + FN) / (2 TP + FP + FN) per "
            "patient, split by where the wrong pixels lie, then averaged; the parts add up to "
            f"{_f(1 - mean_dice)}): " + "; ".join(f"{LOSS_PART_WORDS[name]} {_f(value)}" for name, value in
                                                 sorted(parts.items(), key=lambda item: -item[1])) + ".", ""]


def _loss_by_size_lines(per_patient: list[dict]) -> list[str]:
    """The out-of-fold Dice loss parts for small, middle and large tumors (thirds of the patients by size)."""
    if not per_patient or not all("missed_on_slices_drawn_on" in row for row in per_patient):
        return []
    rows = metrics.dice_loss_by_tumor_size(per_patient)
    return [
        "By tumor size (thirds of the patients by tumor pixels in truth): mean cascade Dice per volume, and where "
        "it is lost (the four parts add up to 1 - Dice):",
        "",
        "| tumor pixels | patients | cascade Dice/vol | " + " | ".join(metrics.DICE_LOSS_PARTS.values()) + " |",
        "|---|---|---|" + "---|" * len(metrics.DICE_LOSS_PARTS),
        *[f"| {row['min_tumor_pixels']} to {row['max_tumor_pixels']} | {row['n_patients']} | "
          f"{_f(row['dice_mean'])} | " + " | ".join(_f(row[name]) for name in metrics.DICE_LOSS_PARTS) + " |"
          for row in rows],
        "",
    ]


def _change_words(changes: dict[str, dict[str, list]]) -> str:
    return "; ".join(f"{role} {key} {old} -> {new}" for role, fields in changes.items()
                     for key, (old, new) in fields.items()) or "nothing (same recipe)"


def fold_differences(variant: dict, shipped: dict) -> list[float | None]:
    """Per fold, the variant's mean out-of-fold cascade Dice per volume minus the shipped recipe's; None for a
    fold the two did not score on the same number of patients (then they are not the same fold)."""
    base = {fold["fold"]: fold for fold in shipped["per_fold"]}
    return [fold["cascade_dice_per_volume_mean"] - base[fold["fold"]]["cascade_dice_per_volume_mean"]
            if fold["fold"] in base and base[fold["fold"]]["n_test_patients"] == fold["n_test_patients"] else None
            for fold in variant["per_fold"]]


def _seed_only(changes: dict[str, dict[str, list]]) -> bool:
    """Whether a variant changes nothing but a model's training seed (a repeatability check)."""
    return bool(changes) and all(set(fields) == {"seed"} for fields in changes.values())


def _size_changes(groups: list[dict] | None) -> str:
    """The change in mean cascade Dice per volume per tumor-size group, smallest first, with each group's range."""
    if not groups:
        return "n/a"
    return ", ".join(f"{group['change']:+.3f} ({group['min_tumor_pixels']:,} to {group['max_tumor_pixels']:,} px)"
                     for group in groups)


def _loss_part_changes(variant: dict, shipped: dict) -> str:
    """The variant's mean Dice loss parts minus the shipped recipe's (negative: less lost there)."""
    ours, theirs = (r.get("figures", {}).get("cascade_dice_loss_parts") for r in (variant, shipped))
    if not ours or not theirs:
        return "n/a"
    return ", ".join(f"{label} {ours[name] - theirs[name]:+.3f}" for name, label in metrics.DICE_LOSS_PARTS.items())


def crossval_variant_lines(variants: list[dict], shipped: dict | None) -> list[str]:
    """Recipe variants cross-validated on the same folds and paired, patient by patient, with the shipped recipe."""
    if not variants or not shipped:
        return []
    lines = [
        "### Variants cross-validated against the shipped recipe",
        "Each variant changes one thing in the recipe, is retrained in the same folds (the model it leaves alone "
        "is reused from the shipped recipe's folds) and is scored out of fold with the same rule; the difference "
        "is paired over the same patients. A variant is adopted only when the paired 95% interval lies above 0 "
        "(a rule written down before all of its folds were scored; decisions in *How the recipe was chosen*). "
        "A row that changes only the training seed is a repeatability check, never adopted: how far retraining "
        "alone moves these figures.",
        "",
        "| variant (`models/crossval_variants/`) | change | patients | cascade Dice/vol mean [95% CI] | paired "
        "difference [95% CI] | better / worse | per fold difference | loss parts, change | change by tumor size "
        "(smallest, middle, largest third) | pooled AUC | interval above 0 |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for v in variants:
        dice, paired = v["confidence_intervals"]["cascade_dice_per_volume_mean"], v["paired_against"]
        ci = paired["confidence_interval"]
        # Per-fold and loss-part differences are taken from the report the variant was paired with.
        baseline = v.get("paired_baseline", shipped)
        folds = "n/a" if baseline is None else ", ".join(
            "n/a" if d is None else f"{d:+.3f}" for d in fold_differences(v, baseline))
        against = "" if baseline is None or baseline.get("file", "crossval.json") == "crossval.json" else \
            f" (against `{baseline['file']}`)"
        check = " (repeatability check)" if _seed_only(v["changes"]) else ""
        lines.append(
            f"| {v['name']}{check}{against}"
            f"{' (partial: folds ' + str(v.get('folds_scored')) + ')' if v['partial'] else ''} | "
            f"{_change_words(v['changes'])} | {paired['n_patients']} | {_f(dice['estimate'])} [{_f(dice['low'])}, "
            f"{_f(dice['high'])}] | {paired['mean_difference']:+.3f} [{ci['low']:+.3f}, {ci['high']:+.3f}] | "
            f"{paired['better']} / {paired['worse']} | {folds} | {_loss_part_changes(v, baseline or {})} | "
            f"{_size_changes(v.get('dice_change_by_tumor_size'))} | {_f(v['figures']['roc_auc_pooled'], 4)} | "
            f"{'yes' if ci['low'] > 0 else 'no'}{', adopted' if v.get('adopted') else ''} |")
    return [*lines, ""]


def resolution_ceiling_lines(ceiling: dict | None, cv: dict | None, segmenter_size: int) -> list[str]:
    """The Dice a perfect segmenter could reach at each input size (``brainseg resolution-ceiling``), beside the
    shipped recipe's out-of-fold Dice (its segmenter at ``segmenter_size``): how much of the gap the input size
    can explain."""
    if not ceiling:
        return []
    sizes = sorted({int(key.split("+")[0].split(" ")[0]) for key in ceiling["ceilings"]})
    lines = [
        "### What the input size costs (`models/resolution_ceiling.json`)",
        f"`{ceiling['command']}`. No model is run: {ceiling['definition']} Over {ceiling['n_patients']} patients "
        f"(mask cut {ceiling['mask_threshold']}, removal under {ceiling['min_component_pixels']} px); the smallest "
        "third of tumors and the loss parts are the round trip's without removal:",
        "",
        "| input size | labels | ceiling: Dice/vol mean (min) | with removal | smallest third of tumors | "
        + " | ".join(metrics.DICE_LOSS_PARTS.values()) + " |",
        "|---|---|---|---|---|" + "---|" * len(metrics.DICE_LOSS_PARTS),
    ]
    for size in sizes:
        for tag, words in (("", "at least half covered (trained on now)"), (" soft", "covered fraction (soft)")):
            alone, removal = ceiling["ceilings"].get(f"{size}{tag}"), ceiling["ceilings"].get(f"{size}{tag}+removal")
            if not alone or not removal:
                continue
            lines.append(
                f"| {size} | {words} | {_f(alone['dice_per_volume_mean'])} ({_f(alone['dice_per_volume_min'])}) | "
                f"{_f(removal['dice_per_volume_mean'])} | {_f(alone['by_tumor_size'][0]['dice_mean'])} | "
                + " | ".join(_f(alone["dice_loss_parts"][name]) for name in metrics.DICE_LOSS_PARTS) + " |")
    at_size = ceiling["ceilings"].get(f"{segmenter_size}+removal")
    if cv and at_size:
        oof, best = cv["figures"]["cascade_dice_per_volume"]["mean"], at_size["dice_per_volume_mean"]
        lines += ["", f"Out of fold the shipped recipe (segmenter at {segmenter_size}, removal as shipped) loses "
                  f"{_f(1 - oof)} of Dice per volume; a perfect segmenter at {segmenter_size} with the same removal "
                  f"would lose {_f(1 - best)}. The rest, {_f(best - oof)}, is the models' error, not the input "
                  "size's."]
    return [*lines, ""]


def _input_path_lines(training: list[dict]) -> list[str]:
    """Says so when the fold models trained with an older input path than the one that scored them."""
    older = sorted({recorded_preprocessing(t) for t in training} - {PREPROCESSING_VERSION})
    if not older:
        return []
    return [f"The fold models were trained with input path version {', '.join(map(str, older))} and scored here "
            f"with version {PREPROCESSING_VERSION} (`brainseg.core.preprocess`: grey air made black first). The "
            "step changes only slices stored with grey air; every other slice reaches the models bit for bit "
            "as before.", ""]


def _paired_lines(paired: dict | None) -> list[str]:
    """The paired out-of-fold comparison the report was made with (``crossval --compare-to``), if any."""
    if not paired:
        return []
    ci = paired["confidence_interval"]
    return [f"Against `{paired['report']}`, patient by patient over {paired['n_patients']}: cascade Dice per volume "
            f"{_f(paired['mean'])} vs {_f(paired['baseline_mean'])}, mean difference "
            f"{paired['mean_difference']:+.3f} [{ci['low']:+.3f}, {ci['high']:+.3f}] (paired bootstrap), "
            f"{paired['better']} patients better, {paired['worse']} worse.", ""]


def _gate_by_fold_words(rows: list[dict] | None) -> str:
    if not rows:
        return ""
    return (f" One threshold over {len(rows)} folds' models' scores: at it, each fold's own gate sensitivity / "
            "specificity is "
            + ", ".join(f"fold {r['fold']} {_f(r['sensitivity'])} / {_f(r['specificity'])}" for r in rows) + ".")


def _final_fit_choice_lines(choices: dict | None, heading: str) -> list[str]:
    """What the cross-validation chose for the final fit, and what the gate costs and buys out of fold."""
    if not choices:
        return []
    epochs = choices["stop_epochs"]
    point = choices["operating_point"]
    gate, cascade = point["at_threshold_on_that_split"], point["cascade_on_that_split"]
    cut = point["mask_threshold"]
    lines = [
        heading,
        "- **Epochs**: " + "; ".join(
            f"{role} {epochs[role]['stop_epoch']} (median of the folds' best epochs "
            f"{', '.join(str(e) for e in epochs[role]['folds_best_epochs'])})" for role in ("classifier", "segmenter"))
        + ". The schedule is kept and training stops there.",
        f"- **Operating point**, chosen on all {point['chosen_on']['n_patients']} out-of-fold patients pooled with "
        f"the shipped rule: threshold {format_threshold(point['threshold'], 6)} on the '{point['slice_score']}' score "
        f"(gate sensitivity {_f(gate['sensitivity'])}, specificity {_f(gate['specificity'])}), pixel cut {cut}, "
        f"components under {point['min_component_pixels']} px removed; there the cascade's slice decisions reach "
        f"{_f(cascade['slice_decisions']['sensitivity'])} / {_f(cascade['slice_decisions']['specificity'])} and "
        f"Dice per volume {_f(cascade['dice_per_volume_mean'])} (chosen and measured on the same patients)."
        + _gate_by_fold_words(choices.get("gate_by_fold_at_that_threshold")),
        f"- **Temperature** {choices['calibration']['temperature']:.3f} (ECE {choices['calibration']['ece_before']:.3f}"
        f" -> {choices['calibration']['ece_after']:.3f} out of fold).",
        "",
    ]
    tradeoff = choices.get("gate_tradeoff")
    if tradeoff:
        lines += [
            "What the gate costs and buys out of fold, at thresholds set for other target sensitivities (pixel cut "
            f"and component size held at the chosen ones). At or below a threshold of {cut / 2} every slice the "
            "segmenter draws on passes, so there the gate's own figures move but the cascade's do not:",
            "",
            "| target gate sensitivity | threshold | gate sensitivity / specificity | cascade slice sensitivity / "
            "specificity | cascade Dice per volume, mean |",
            "|---|---|---|---|---|",
            *[f"| {row['target_sensitivity']} | {format_threshold(row['threshold'], 3)} | "
              f"{_f(row['gate_sensitivity'])} / "
              f"{_f(row['gate_specificity'])} | {_f(row['cascade_sensitivity'])} / {_f(row['cascade_specificity'])} | "
              f"{_f(row['dice_per_volume_mean'])} |" for row in tradeoff],
            "",
        ]
    return lines


def _calibration_lines(card: dict) -> list[str]:
    calibration = card.get("calibration")
    if not calibration:
        return ["No temperature scaling fitted (`brainseg calibrate`).", ""]
    fitted = calibration["fitted_on"]
    test = card["test"]["classifier"]
    return [
        "## Calibration",
        f"Temperature scaling (optional, `models/calibration.json`): T = {calibration['temperature']:.3f}, fitted "
        f"on {fitted_on_words(calibration)} ({fitted['n_slices']} slices; ECE {fitted['ece_before']:.3f} -> "
        f"{fitted['ece_after']:.3f}). On the test split: ECE {_f(test['expected_calibration_error'])} raw, "
        f"{_f(test.get('expected_calibration_error_temperature_scaled'))} scaled. It does not change the ranking "
        "(ROC AUC) and is not applied to the default threshold, which is defined on raw scores.",
        "",
    ]


def _speed_lines(card: dict) -> list[str]:
    b = card["bench"]
    reference = b["reference"]
    lines = [
        "## Speed (`brainseg bench` inside this command, test split)",
        f"A whole patient takes **{_f(b['patient_over_reference'], 2)}x** the time of the reference workload "
        f"({reference['network']} at {reference['input_size']}x{reference['input_size']}, {reference['slices']} "
        f"slices, batch {reference['batch_size']}) timed in the same process, interleaved with the patients "
        f"(goal <= {GOALS['speed_ratio']}). Absolute: {_f(b['patient_seconds']['median'], 2)} s per patient "
        f"(median of {b['repeats']} runs each; max {_f(b['patient_seconds']['max'], 2)} s), "
        f"{_f(b['ms_per_slice'], 1)} ms per slice, reference {_f(b['reference_seconds'], 2)} s. Model load "
        f"{_f(b['model_load_seconds_cold'], 1)} s in a fresh process ({_f(b['model_load_seconds'], 2)} s in a warm "
        f"one); {_memory(b)}. Both models run on every slice (batch 16) so that any threshold applies without "
        "re-running them.",
    ]
    if b.get("runtime"):
        lines.append(runtime_line(b["runtime"], b.get("cold_load")))
    for name, other in b.get("other_runtimes", {}).items():
        lines.append(f"The same cascade on {_RUNTIME_NAMES[name]}, timed in the same rounds: "
                     f"{_f(other['patient_over_reference'], 2)}x the reference per whole patient "
                     f"({_f(other['patient_seconds']['median'], 2)} s, {_f(other['ms_per_slice'], 1)} ms per slice"
                     + (f"; a fresh process needs {other['cold_load']['peak_rss_mb_after_one_batch']:.0f} MB after "
                        "one batch" if (other.get("cold_load") or {}).get("peak_rss_mb_after_one_batch") else "")
                     + ").")
    others = b.get("other_processes_cpu_share")
    if others is not None:
        lines.append(f"Other processes used {others:.0%} of the machine's CPU capacity while it was measured (they "
                     "slow the absolute times; the interleaved ratio is meant to hold regardless).")
    tools = b.get("review_tools_ms_per_slice")
    if tools:
        lines.append(f"Optional review overlays: {_f(tools['tta_uncertainty'], 1)} ms per slice (test-time "
                     f"augmentation, 6 segmenter passes), {_f(tools['grad_cam'], 1)} ms per slice (Grad-CAM).")
    steps = b.get("train_step_seconds")
    if steps:
        lines.append("Training step, batch 16: " + ", ".join(f"{k} {v:.2f} s" for k, v in steps.items()) + ".")
    lines.append("")
    return [*lines, *network_cost_lines(card.get("network_cost"), b["patient_over_reference"])]


def _memory(b: dict) -> str:
    """Memory: a fresh process serving the cascade (loaded, one batch run) where measured; the bench's own peak."""
    own = f"peak memory {b['peak_rss_mb']:.0f} MB"
    fresh = (b.get("cold_load") or {}).get("peak_rss_mb_after_one_batch")
    if fresh is None:
        return own
    return (f"a fresh process holding the cascade needs {fresh:.0f} MB after one batch ({own} in this benchmark's "
            "process, which also holds the reference and any runtime compared)")


def runtime_line(runtime: dict, cold: dict | None) -> str:
    """Which runtime executed the networks, and what its first call cost in a fresh process."""
    if runtime["runtime"] == "onnxruntime":
        line = (f"The networks ran on ONNX Runtime {runtime['onnxruntime']} (graphs converted from the Keras models by "
                f"tf2onnx {runtime['tf2onnx']}, opset {runtime['opset']}); the reference on TensorFlow "
                f"{runtime['tensorflow']}.")
    else:
        line = f"The networks and the reference ran on TensorFlow {runtime['tensorflow']}."
    if cold and cold.get("first_call_seconds") is not None:
        built = {True: "ONNX graphs read from the cache", False: "ONNX graphs converted, then cached",
                 None: "tf.function traced"}[cold.get("onnx_graphs_cached")]
        line += f" First call in the fresh process: {_f(cold['first_call_seconds'], 1)} s ({built})."
    return line


_RUNTIME_NAMES = {"onnxruntime": "ONNX Runtime", "tensorflow": "TensorFlow"}


def _runtime_name(record: dict) -> str:
    """The runtime a timing record ran the networks on (records without one predate ONNX Runtime)."""
    return _RUNTIME_NAMES[record.get("runtime", {"runtime": "tensorflow"})["runtime"]]


def network_cost_lines(report: dict | None, patient_ratio: float) -> list[str]:
    """What each candidate's networks would cost at inference (``brainseg network-cost``): one row per set of
    networks, with the candidates that share it, and the whole patient estimated from this card's bench."""
    if not report:
        return []
    goal = GOALS["speed_ratio"]
    lines = [
        "### What each candidate would cost at inference (`models/network_cost.json`)",
        f"`{report['command']}`. Each candidate's networks, with random weights (the time does not depend on "
        f"them), run on the reference's workload (36 random slices, batch 16) on {_runtime_name(report)}, "
        "interleaved with the reference (TensorFlow) in one process; a network's cost is the median over rounds "
        "of its time / that round's reference time. The whole patient is an estimate, not a measurement: the "
        f"shipped cascade's ratio measured above ({_f(patient_ratio, 2)}) plus the candidate's networks' "
        "difference from the shipped ones (decoding, resizing and post-processing do not change).",
        "",
        f"| candidates | networks run on every slice | networks x reference | whole patient, estimated (goal <= "
        f"{goal}) |",
        "|---|---|---|---|",
    ]
    for row in report["rows"]:
        names = row["candidates"]
        shown = ", ".join(names) if len(names) <= 4 else f"{', '.join(names[:3])} and {len(names) - 3} more"
        networks = " + ".join(row["networks"]) + (f", {row['passes']} passes" if row["passes"] > 1 else "")
        estimate = patient_ratio + row["extra_over_shipped"]
        lines.append(f"| {shown} | {networks} | {_f(row['networks_over_reference'], 2)} | {_f(estimate, 2)} "
                     f"({'within' if estimate <= goal else '**over**'}) |")
    others = report.get("other_processes_cpu_share")
    if others is not None:
        lines += ["", f"Other processes used {others:.0%} of the machine's CPU capacity while it was measured."]
    return [*lines, ""]
