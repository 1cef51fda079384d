"""The shipped weights, operating point and model card agree: the card cannot drift from the weights."""

import json
from pathlib import Path

import pytest
from conftest import DEMO_DIR, MODELS_DIR, ROOT

from brainseg.core.data import scan_dataset
from brainseg.evaluation.evaluate import evaluate
from brainseg.inference.cascade import Cascade, sha256_of
from brainseg.reports.card_markdown import (
    _applied_words,
    _crossval_summary,
    _final_fit_command_words,
    _gate_note,
    _lone_slice_limit,
    _replaced_choice_lines,
    augment_words,
    dig,
    format_threshold,
    held_out_patients_words,
    render_markdown,
)
from brainseg.reports.model_card import CHECKED_KEYS


@pytest.fixture(scope="module")
def card() -> dict:
    return json.loads((MODELS_DIR / "model_card.json").read_text())


def test_shipped_models_load_in_safe_mode_and_match_the_card_hashes(card):
    cascade = Cascade.from_dir(MODELS_DIR)
    for model in (cascade.classifier, cascade.segmenter):
        assert model.sha256 == card["models"][model.role]["sha256"] == sha256_of(model.path)
        assert model.metadata["sha256"] == model.sha256  # the training sidecar agrees too
    assert cascade.default_threshold == pytest.approx(card["operating_point"]["threshold"])


def test_demo_case_figures_recomputed_from_the_weights_match_the_card(card):
    report = evaluate(Cascade.from_dir(MODELS_DIR), scan_dataset(DEMO_DIR))
    for key in CHECKED_KEYS:
        assert dig(report, key) == pytest.approx(dig(card["demo_cases"], key), abs=2e-3), key
    for name in ("cascade", "segmenter"):  # where the Dice is lost adds up to what is lost
        parts = report[name]["dice_loss_parts"]
        assert sum(parts.values()) == pytest.approx(1 - report[name]["dice_per_volume"]["mean"])
        assert min(parts.values()) >= 0


def test_markdown_card_shows_the_json_figures(card):
    text = (MODELS_DIR / "MODEL_CARD.md").read_text()
    assert f"{card['test']['cascade']['dice_per_volume']['mean']:.3f}" in text
    assert f"{card['test']['classifier']['roc_auc']:.4f}" in text
    assert card["models"]["classifier"]["sha256"] in text
    assert "Not a medical device" in text


def test_readme_results_are_the_cards():
    from brainseg.reports.card_markdown import RESULTS_END, RESULTS_START, results_markdown

    card = json.loads((MODELS_DIR / "model_card.json").read_text())
    readme = (MODELS_DIR.parent / "README.md").read_text()
    section = readme.split(RESULTS_START, 1)[1].split(RESULTS_END, 1)[0]
    assert section.strip() == results_markdown(card).strip()


def test_readme_results_give_the_cascade_slice_sensitivity_and_the_gate_note(card):
    from brainseg.inference.cascade import COMBINED_SLICE_SCORES
    from brainseg.reports.card_markdown import GOALS, RESULTS_END, RESULTS_START, results_markdown

    readme = (MODELS_DIR.parent / "README.md").read_text()
    section = readme.split(RESULTS_START, 1)[1].split(RESULTS_END, 1)[0]
    decisions, intervals = card["test"]["cascade_slice_decisions"], card["test"]["confidence_intervals"]
    for name in ("sensitivity", "specificity"):
        ci = intervals[f"cascade_slice_{name}"]
        assert f"{name} {decisions[name]:.3f} [{ci['low']:.3f}, {ci['high']:.3f}]" in section, name
    assert ("below" if decisions["sensitivity"] < GOALS["sensitivity"] else "at or above") \
        + f" {GOALS['sensitivity']}." in section
    assert "read here as the gate's" in section
    assert "were looked at once for the grey-air check" in section
    op = card["operating_point"]
    gate_open = op["slice_score"] in COMBINED_SLICE_SCORES and op["threshold"] <= op["mask_threshold"] / 2
    note = "every slice on which the segmenter draws passes the gate"
    assert (_gate_note(op)[0] in section) if gate_open else (note not in section)
    # Above cut/2 the gate can hold back drawn slices: no note.
    shut = {**card, "operating_point": {**op, "threshold": op["mask_threshold"] / 2 + 0.01}}
    assert note not in results_markdown(shut) and note in results_markdown({**card, "operating_point": {
        **op, "slice_score": "classifier+segmenter", "threshold": op["mask_threshold"] / 2}})


def test_card_cross_validation_is_the_recorded_one_and_covers_train_and_val_once(card):
    from brainseg.core.split import load_split

    record = json.loads((MODELS_DIR / "crossval.json").read_text())
    assert card["crossval"] == record
    assert f"{record['figures']['cascade_dice_per_volume']['mean']:.3f}" in (MODELS_DIR / "MODEL_CARD.md").read_text()
    split = load_split(MODELS_DIR / "split.json")
    scored = [row["patient_id"] for row in record["per_patient"]]
    assert sorted(scored) == sorted(split["train"] + split["val"])  # each once; no test patient


def test_shipped_operating_point_and_epochs_come_from_where_the_models_allow(card):
    """A final fit (trained on val too) must ship the cross-validation's choices; other models choose on val."""
    sidecars = {role: json.loads((MODELS_DIR / f"{role}.json").read_text()) for role in ("classifier", "segmenter")}
    point = json.loads((MODELS_DIR / "operating_point.json").read_text())
    if all(s["train_config"].get("fit_on") == "train+val" for s in sidecars.values()):
        # The report the point names (models/crossval.json, or a later one applied with final-fit --choices-only).
        source = Path(point["source"]["report"])  # relative to the repository, or absolute where it was made
        report = json.loads((MODELS_DIR / source.name if source.is_absolute() else ROOT / source).read_text())
        choices = report["final_fit_choices"]
        assert {k: point[k] for k in ("threshold", "mask_threshold", "min_component_pixels", "slice_score")} == {
            k: choices["operating_point"][k] for k in ("threshold", "mask_threshold", "min_component_pixels",
                                                       "slice_score")}
        assert point["chosen_on"]["split"] == "cross-validation out-of-fold"
        epochs = point.get("stop_epochs", {}).get("models") or {
            role: choices["stop_epochs"][role]["stop_epoch"] for role in sidecars}
        for role, sidecar in sidecars.items():
            assert sidecar["epochs_run"] == sidecar["train_config"]["stop_epoch"] == epochs[role]
        assert "final fit" in (MODELS_DIR / "MODEL_CARD.md").read_text()
    else:
        assert all(s["train_config"].get("fit_on", "train") == "train" for s in sidecars.values())
        assert point["chosen_on"]["split"] == "val"


def test_card_lists_every_cross_validated_variant_paired_with_the_shipped_record(card):
    from brainseg.reports.model_card import crossval_variants

    listed = crossval_variants(MODELS_DIR)
    assert card["crossval_variants"] == json.loads(json.dumps(listed))
    text = (MODELS_DIR / "MODEL_CARD.md").read_text()
    # Paired with the GPU folds' record, with the CPU folds' report the shipped operating point came from, or, when
    # that report is an adopted variant's, with a report the chain of adopted variants before it was paired with.
    point_report = json.loads((MODELS_DIR / "operating_point.json").read_text())["source"]["report"]
    chain = [point_report]
    while (before := json.loads((ROOT / chain[-1]).read_text()).get("paired_against", {}).get("report")):
        chain.append(before)
    for variant in listed:
        paired = variant["paired_against"]
        assert paired["report"] in ("models/crossval.json", *chain)
        record = json.loads((ROOT / paired["report"]).read_text())
        assert paired["baseline_mean"] == pytest.approx(record["figures"]["cascade_dice_per_volume"]["mean"])
        assert variant["paired_baseline"]["file"] == Path(paired["report"]).name
        assert f"{paired['mean_difference']:+.3f}" in text


def test_card_shows_the_cross_validation_the_shipped_operating_point_was_chosen_on(card, tmp_path):
    from brainseg.reports.card_markdown import point_crossval_lines
    from brainseg.reports.model_card import point_crossval

    point = json.loads((MODELS_DIR / "operating_point.json").read_text())
    report = json.loads((ROOT / point["source"]["report"]).read_text())
    shown = card["point_crossval"]
    assert shown["per_slice_rows"] == len(report["per_slice"]) > 0 and "per_slice" not in shown
    assert shown["final_fit_choices"]["operating_point"]["threshold"] == point["threshold"]
    lines = point_crossval_lines(shown, point)
    section = "\n".join(lines)
    assert lines[0] == f"## Cross-validation behind the shipped operating point (`{point['source']['report']}`)"
    assert f"| cascade Dice per volume, mean (median) | {report['figures']['cascade_dice_per_volume']['mean']:.3f}" \
        in section
    assert format_threshold(point["threshold"], 6) in section and "written before" not in section
    assert section in (MODELS_DIR / "MODEL_CARD.md").read_text()

    # A point chosen on crossval.json itself, one naming no report, or a report that is gone: no such section.
    models = tmp_path / "models"
    models.mkdir()
    for source in ({"report": "models/crossval.json"}, {}, {"report": "models/gone.json"}):
        (models / "operating_point.json").write_text(json.dumps({**point, "source": source}))
        assert point_crossval(models) is None
    (tmp_path / "elsewhere.json").write_text(json.dumps({"per_slice": [1, 2, 3], "per_slice_pixel_counts": [1]}))
    (models / "operating_point.json").write_text(json.dumps({**point, "source": {"report": "elsewhere.json"}}))
    assert point_crossval(models) == {"per_slice_rows": 3}  # read from the project root, rows dropped


def test_card_shows_the_recorded_resolution_ceiling_beside_the_out_of_fold_dice(card):
    from brainseg.reports.model_card import resolution_ceiling_record

    record = resolution_ceiling_record(MODELS_DIR)
    assert card["resolution_ceiling"] == json.loads(json.dumps(record))
    assert record["command"].startswith("brainseg resolution-ceiling") and record["data"]["split"] == "train+val"
    size = card["models"]["segmenter"]["input_spec"]["size"]
    ceiling = record["ceilings"][f"{size}+removal"]["dice_per_volume_mean"]
    oof = card["crossval"]["figures"]["cascade_dice_per_volume"]["mean"]
    text = (MODELS_DIR / "MODEL_CARD.md").read_text()
    assert f"would lose {1 - ceiling:.3f}. The rest, {ceiling - oof:.3f}, is the models' error" in text


def test_card_shows_the_recorded_cost_of_every_planned_candidate(card):
    from brainseg.experiments.network_cost import SHIPPED, Network
    from brainseg.reports.model_card import network_cost_record

    record = network_cost_record(MODELS_DIR)
    assert card["network_cost"] == json.loads(json.dumps(record))
    assert record["command"].startswith("brainseg network-cost")
    shipped_row = record["rows"][0]
    assert shipped_row["candidates"][0] == SHIPPED
    # The cost was measured on the architectures that ship (the card reads them from the weights' sidecars).
    shipped = [Network.of_sidecar(card["models"][role]["training"]).label for role in ("classifier", "segmenter")]
    assert shipped_row["networks"] == shipped
    # The card adds the record's differences to its own bench: both must have timed the same runtime.
    assert record["runtime"]["runtime"] == card["bench"]["runtime"]["runtime"]
    costed = {name for row in record["rows"] for name in row["candidates"]}
    for plan in record["plans"]:
        document = json.loads((MODELS_DIR.parent / plan).read_text())
        names = [v["name"] for v in document["variants"]] if "variants" in document else list(document["runs"])
        assert set(names) <= costed, plan
    text = (MODELS_DIR / "MODEL_CARD.md").read_text()
    patient = card["bench"]["patient_over_reference"]
    for row in record["rows"]:
        assert f"| {row['networks_over_reference']:.2f} | {patient + row['extra_over_shipped']:.2f} (" in text
    # An ablation row left untrained says what its networks would cost, from this card's own bench.
    for name, variant in card["ablation"]["variants"].items():
        if "status" in variant:
            extra = next(row["extra_over_shipped"] for row in record["rows"] if name in row["candidates"])
            assert f"| {name} | {variant['change']} | {variant['status']}; its networks would put a whole patient " \
                   f"at about {patient + extra:.2f}x" in text


def test_rereading_the_records_keeps_the_measurements_and_refuses_other_weights(tmp_path, capsys):
    import shutil

    from brainseg.cli import main

    models = tmp_path / "models"
    shutil.copytree(MODELS_DIR, models)
    before = json.loads((models / "model_card.json").read_text())
    with open(models / "ablation_decision.md", "a") as handle:
        handle.write("\nA paragraph added after the card was measured.\n")
    readme = tmp_path / "README.md"
    shutil.copy(MODELS_DIR.parent / "README.md", readme)

    assert main(["model-card", "--reread-records", "--models-dir", str(models), "--readme", str(readme)]) == 0
    after = json.loads((models / "model_card.json").read_text())
    assert after["ablation_decision"][-1] == "A paragraph added after the card was measured."
    assert "A paragraph added after the card was measured." in (models / "MODEL_CARD.md").read_text()
    for measured in ("test", "demo_cases", "bench", "models", "generated", "command"):
        assert after[measured] == before[measured], measured
    assert "read again on" in (models / "MODEL_CARD.md").read_text()

    # Measurements of other weights or another operating point would be stale: refused, nothing written.
    point = json.loads((models / "operating_point.json").read_text())
    (models / "operating_point.json").write_text(json.dumps({**point, "threshold": point["threshold"] / 2}))
    assert main(["model-card", "--reread-records", "--models-dir", str(models)]) == 2
    assert "operating point" in capsys.readouterr().err
    (models / "operating_point.json").write_text(json.dumps(point))
    shutil.copy(models / "classifier.keras", models / "segmenter.keras")
    assert main(["model-card", "--reread-records", "--models-dir", str(models)]) == 2
    assert "is not the segmenter the card measured" in capsys.readouterr().err
    assert json.loads((models / "model_card.json").read_text()) == after
    # Measuring needs the data.
    assert main(["model-card", "--models-dir", str(models)]) == 2
    assert "needs --data" in capsys.readouterr().err


@pytest.mark.parametrize("kind, threshold, noted", [
    ("classifier+segmenter", 0.25, True),  # a drawn pixel (peak >= 0.5) scores >= 0.25: every drawn slice passes
    ("classifier+segmenter+neighbours", 0.25, True),  # lifting never lowers a score, so the same bound holds
    ("classifier+segmenter", 0.26, False),
    ("classifier", 0.10, False),  # the classifier alone bounds nothing about the segmenter
])
def test_card_says_when_the_gate_lets_every_drawn_slice_through(kind, threshold, noted):
    lines = _gate_note({"slice_score": kind, "threshold": threshold, "mask_threshold": 0.5})
    assert bool(lines) is noted
    if noted:
        assert "score of at least 0.25" in lines[0]


def test_card_says_when_a_point_was_applied_to_models_stopped_by_another_cross_validation():
    point = {"source": {"report": "models/later.json"}}
    assert _applied_words(point) == ""  # chosen with the models' own cross-validation
    same = _applied_words({**point, "stop_epochs": {"models": {"classifier": 20, "segmenter": 27},
                                                     "this_report": {"classifier": 20, "segmenter": 27}}})
    assert "models/later.json" in same and "classifier 20, segmenter 27, the counts that report's folds give" in same
    other = _applied_words({**point, "stop_epochs": {"models": {"classifier": 20, "segmenter": 27},
                                                      "this_report": {"classifier": 24, "segmenter": 27}}})
    assert "from their own cross-validation; that report's folds would give classifier 24, segmenter 27." in other
    assert "written later from `models/later.json`" in _final_fit_command_words(
        {**point, "stop_epochs": {"models": {}, "this_report": {}}})
    assert "operating point and temperature from `models/crossval.json`" in _final_fit_command_words(point)
    assert _replaced_choice_lines(point) == []
    assert "chosen later on `models/later.json`" in _replaced_choice_lines(
        {**point, "stop_epochs": {"models": {}, "this_report": {}}})[0]
    # Written by a final fit of the segmenter alone (--only), beside the classifier trained before.
    retrained = {**point, "stop_epochs": {"models": {"classifier": 21, "segmenter": 27}, "trained_by_it": ["segmenter"],
                                          "this_report": {"classifier": 23, "segmenter": 27}}}
    assert "written with the segmenter it trained (`brainseg final-fit --only`), beside the final-fit classifier " \
        "trained before" in _applied_words(retrained)
    assert "that report's folds would give classifier 23, segmenter 27." in _applied_words(retrained)
    assert "then `brainseg final-fit --data data/kaggle_3m --only segmenter --crossval models/later.json`" in \
        _final_fit_command_words(retrained)
    assert "the shipped segmenter was trained again later" in _replaced_choice_lines(retrained)[0]
    assert "The classifier was scored on them before" in held_out_patients_words(14, retrained)
    assert "The same models" not in held_out_patients_words(14, retrained)
    # A point written beside models already scored on the test split says so where the test figures are read.
    assert "earlier operating point" not in held_out_patients_words(14, point)
    assert "scored on them before with an earlier operating point" in held_out_patients_words(
        14, {**point, "stop_epochs": {"models": {}, "this_report": {}}})


def _strict_loads(text: str):
    """json.loads that refuses NaN and Infinity, as strict JSON parsers (and JavaScript's JSON.parse) do."""
    def refuse(name):
        raise ValueError(f"not strict JSON: {name}")
    return json.loads(text, parse_constant=refuse)


def test_thresholds_are_shown_floored_never_rounded_up_past_the_chosen_one(card):
    assert format_threshold(0.020058) == "0.0200"  # not 0.0201
    assert format_threshold(0.020058, 3) == "0.020" and format_threshold(0.4469, 3) == "0.446"
    assert format_threshold(0.020058, 6) == "0.020058"  # a stored 6-decimal threshold is shown as stored
    assert format_threshold(0.5) == "0.5000"
    text = (MODELS_DIR / "MODEL_CARD.md").read_text()
    threshold = card["operating_point"]["threshold"]
    assert f"default threshold {format_threshold(threshold)} |" in text
    assert f"**{format_threshold(threshold, 6)}**" in text
    readme = (MODELS_DIR.parent / "README.md").read_text()
    assert f"default threshold {format_threshold(threshold)} |" in readme


def test_card_json_is_strict_and_undefined_figures_read_back_as_n_a(card, tmp_path):
    import numpy as np

    from brainseg.reports.model_card import write_card

    _strict_loads((MODELS_DIR / "model_card.json").read_text())  # the shipped card
    measured = json.loads(json.dumps(card))
    measured["test"]["patient_detection"]["specificity"] = float("nan")  # no tumor-free patient
    measured["test"]["classifier"]["expected_calibration_error"] = np.float32("nan")
    measured["bench"]["ms_per_slice"] = float("nan")
    measured["test"]["patient_detection"]["precision"] = float("-inf")  # not rendered; inf would show as "inf"
    write_card(measured, tmp_path)
    written = _strict_loads((tmp_path / "model_card.json").read_text())
    assert written["test"]["patient_detection"]["specificity"] is None
    assert written["test"]["classifier"]["expected_calibration_error"] is None
    assert written["bench"]["ms_per_slice"] is None and written["test"]["patient_detection"]["precision"] is None
    # The markdown reads null as it read NaN: n/a.
    assert render_markdown(written) == (tmp_path / "MODEL_CARD.md").read_text()
    assert "Expected calibration error of the slice score n/a." in render_markdown(written)


def test_card_quotes_patient_counts_resamples_and_input_size_cost_from_its_records(card):
    changed = json.loads(json.dumps(card))
    changed["data"]["split"]["train"]["patients"] -= 1  # 94 patients split, 16 held out
    for interval in changed["test"]["confidence_intervals"].values():
        interval["n_resamples"] = 500
    ceiling = changed["resolution_ceiling"]
    size = changed["models"]["segmenter"]["input_spec"]["size"]
    ceiling["n_patients"], ceiling["data"]["split"] = 13, "val"
    ceiling["ceilings"][str(size)]["dice_per_volume_mean"] = 0.5
    text = render_markdown(changed)
    used = sum(changed["data"]["split"][part]["patients"] for part in ("train", "val", "test"))
    assert f"{used} of its 110 patients (the other {110 - used} are held out" in text
    assert f"Trained and tested on {used} patients" in text and f"measured on the {110 - used} patients" in text
    assert "(500 resamples, seed 0)" in text
    assert f"256 -> {size} -> 256 alone limits the masks' Dice per volume to 0.500 on average over the 13 val " \
           "patients" in text
    assert "about 0.97 on validation" not in text



def test_a_goal_is_judged_met_on_the_unrounded_figure(card):
    from copy import deepcopy

    from brainseg.reports.card_markdown import headline_rows

    rows = {row[0]: row for row in headline_rows(card)}
    dice_row = rows["cascade Dice per volume, mean (median)"]
    assert dice_row[3] == ("yes" if card["test"]["cascade"]["dice_per_volume"]["mean"] >= 0.85 else "no")
    close = deepcopy(card)
    close["test"]["cascade"]["dice_per_volume"]["mean"] = 0.8496  # shown as 0.850 beside "≥ 0.85"
    close["bench"]["patient_over_reference"] = 0.5
    shown = {row[0]: row for row in headline_rows(close)}
    assert shown[dice_row[0]][2].startswith("0.850") and shown[dice_row[0]][3] == "no"
    speed = next(row for name, row in shown.items() if name.startswith("whole patient"))
    assert speed[3] == "yes"  # "≤ 0.5" holds at 0.5


def test_card_names_the_lone_slice_limit_only_for_a_score_read_with_neighbours(card):
    assert _lone_slice_limit({"slice_score": "classifier+segmenter"}) == []
    assert "scored without them" in _lone_slice_limit({"slice_score": "classifier+segmenter+neighbours"})[0]
    shipped = card["operating_point"]["slice_score"] == "classifier+segmenter+neighbours"
    assert ("A slice scored without them" in (MODELS_DIR / "MODEL_CARD.md").read_text()) == shipped


def test_card_names_a_focal_tversky_index_taken_per_slice():
    from brainseg.reports.card_markdown import _loss

    config = {"model": "segmenter", "loss": "focal_tversky", "tversky_alpha": 0.5, "tversky_gamma": 0.75}
    assert _loss(config) == "focal Tversky (alpha 0.5, gamma 0.75)"  # an older record: over the batch
    assert _loss({**config, "tversky_over": "batch"}) == "focal Tversky (alpha 0.5, gamma 0.75)"
    assert _loss({**config, "tversky_over": "slice"}) == ("focal Tversky (alpha 0.5, gamma 0.75, one index per "
                                                          "slice, averaged)")


def test_card_states_each_models_augmentation_ranges_from_its_record(card):
    assert augment_words(None) == "none"
    assert augment_words({"flip_left_right": False, "max_rotation_deg": 0.0}) == "none"
    recorded = {"flip_left_right": True, "max_rotation_deg": 20.0, "max_scale_delta": 0.2, "max_shift_fraction": 0.05,
                "max_brightness": 0.05, "max_contrast_delta": 0.1, "missing_sequence_prob": 0.0, "max_gamma": 1.5}
    assert augment_words(recorded) == ("left-right flip, rotation ±20°, zoom ±20%, shift ±5%, brightness ±5%, "
                                       "contrast ±10%, gamma [1/1.5, 1.5]")
    # An older record without the later fields trained with them off.
    assert augment_words({"flip_left_right": True, "max_rotation_deg": 10.0}) == "left-right flip, rotation ±10°"
    segmenter = card["models"]["segmenter"]["training"]["train_config"]["augment"]
    assert f"| {augment_words(segmenter)} |" in render_markdown(card)


def test_cross_validation_summary_says_when_the_shipped_point_came_from_an_adopted_variant():
    cv = json.loads((MODELS_DIR / "crossval.json").read_text())
    cpu = json.loads((MODELS_DIR / "crossval_cpu_folds0-4_neighbour_score.json").read_text())
    point = {"source": {"report": "models/cpu.json"}}
    plain = " ".join(_crossval_summary(cv, cpu, point))
    assert "cross-validation of the same recipe over" in plain and "retrained on the CPU and gated" in plain
    adopted = " ".join(_crossval_summary(cv, {**cpu, "variant": {"name": "segmenter-x"}}, point))
    assert "of the recipe before the variants adopted since (the latest `segmenter-x`) over" in adopted
    assert "retrained on the CPU with `segmenter-x` (the shipped recipe) and gated" in adopted
