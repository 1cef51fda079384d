"""Dashboard logic with Streamlit's AppTest: every page, the shared threshold, presets, uploads."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from conftest import DEMO_DIR, ROOT, open_app, switch_to
from PIL import Image
from streamlit.testing.v1 import AppTest

APP = str(ROOT / "app.py")
TIMEOUT = 180


_page = switch_to


def _threshold_slider(at: AppTest):
    return at.sidebar.slider(key="_threshold_sidebar")


def test_patients_page_shows_a_demo_patient_with_the_notice(app):
    assert any("Research use only" in w.value for w in app.sidebar.warning)
    labels = [m.label for m in app.metric]
    assert "Slice score" in labels and "Dice per volume" in labels
    assert app.selectbox(key="patient_id").value == "TCGA_CS_6669"
    assert len(app.selectbox(key="patient_id").options) == 4
    assert len(app.get("image")) >= 5  # three overlays, the difference view and the plain slice


def test_descriptive_metric_notes_carry_no_up_or_down_arrow(app):
    """"classifier P 0.998" and "passed the gate" describe a figure; an arrow would read as a change."""
    from streamlit.proto.Metric_pb2 import Metric

    notes = {m.label: m.proto for m in app.metric if m.label == "Slice score" or m.label.startswith("Decision at")}
    assert len(notes) == 2
    for label, proto in notes.items():
        assert proto.delta, label
        assert proto.direction == Metric.MetricDirection.NONE, label


def test_slice_buttons_and_slider_move_together(app):
    slider = app.slider(key="_slice_slider")
    start = slider.value
    app.button[1].click().run()  # ▶ next
    assert app.slider(key="_slice_slider").value == start + 1
    app.slider(key="_slice_slider").set_value(3).run()
    assert app.session_state["slice_index"] == 2
    app.button[0].click().run()  # ◀ previous
    assert app.slider(key="_slice_slider").value == 2


def test_chosen_patient_and_slice_survive_a_visit_to_another_page(app):
    second = app.selectbox(key="patient_id").options[1].split(" · ")[0]  # options read as their labels
    app.selectbox(key="patient_id").set_value(second).run()
    app.button[1].click().run()  # ▶ next: a slice of the reviewer's own choosing
    slice_shown = app.slider(key="_slice_slider").value
    _page(app, "threshold")
    _page(app, "patients")
    assert app.selectbox(key="patient_id").value == second
    assert app.slider(key="_slice_slider").value == slice_shown


def test_threshold_is_shared_across_pages(app):
    _threshold_slider(app).set_value(0.3).run()
    assert app.session_state["threshold"] == pytest.approx(0.3)
    assert any(m.label == "Decision at 0.300" for m in app.metric)
    _page(app, "threshold")
    assert app.slider(key="_threshold_page").value == pytest.approx(0.3)
    app.slider(key="_threshold_page").set_value(0.7).run()
    assert _threshold_slider(app).value == pytest.approx(0.7)
    _page(app, "patients")
    assert any(m.label == "Decision at 0.700" for m in app.metric)


@pytest.fixture(scope="module")
def demo_scores() -> tuple[np.ndarray, np.ndarray]:
    """Slice labels and slice scores of the demo patients, computed without the app (each patient as a volume)."""
    from conftest import MODELS_DIR

    from brainseg.core.data import load_slices, scan_dataset
    from brainseg.inference.cascade import Cascade

    manifest = scan_dataset(DEMO_DIR)
    cascade = Cascade.from_dir(MODELS_DIR)
    probabilities = [cascade.predict(load_slices(rows)[0], rows["slice"].to_numpy()).probabilities for _, rows in
                     manifest.groupby("patient_id", sort=False)]
    return manifest["has_tumor"].to_numpy(), np.concatenate(probabilities)


def test_threshold_page_warns_when_the_models_trained_on_the_patients_shown(monkeypatch, tmp_path):
    """The shipped models are a final fit on train + val: a val patient's figures are not held out."""
    from conftest import MODELS_DIR

    models = tmp_path / "models"
    models.mkdir()
    for path in MODELS_DIR.iterdir():
        if path.is_file() and path.name != "split.json":
            (models / path.name).symlink_to(path)
    split = json.loads((MODELS_DIR / "split.json").read_text())
    demo_patients = {"_".join(p.name.split("_")[:3]) for p in DEMO_DIR.iterdir() if p.is_dir()}  # TCGA_CS_6669
    moved = next(pid for pid in split["test"] if pid in demo_patients)
    split["test"].remove(moved)
    split["val"].append(moved)
    (models / "split.json").write_text(json.dumps(split))
    monkeypatch.setenv("BRAINSEG_MODELS_DIR", str(models))
    monkeypatch.delenv("BRAINSEG_DATA_DIR", raising=False)
    at = open_app("threshold")
    assert any(w.value.startswith("1 of these 4 patients were used to train the live models (train + val split)")
               for w in at.warning)
    scope = at.radio(key="metrics_scope")
    assert "val split (1 patients, trained on)" in scope.options
    assert "test split (3 patients)" in scope.options
    scope.set_value("test").run()  # the options are the parts, shown with their labels
    assert not any("used to train the live models" in w.value for w in at.warning)
    # Presets set on test patients would be chosen on test: the page says so (and not on validation patients).
    caption = next(c.value for c in at.caption if "3 of them from the test split" in c.value)
    # ... and where the default was chosen comes from the operating point's record (the shipped one: out of fold).
    assert "cross-validation's pooled out-of-fold outputs (81 patients, 2,868 slices of train + val" in caption
    at.radio(key="metrics_scope").set_value("val").run()
    assert not any("from the test split" in c.value for c in at.caption)

def test_presets_pick_the_highest_threshold_reaching_the_sensitivity(app, demo_scores):
    labels, scores = demo_scores
    _page(app, "threshold")
    app.button(key="preset_sensitivity ≥ 0.97").click().run()
    chosen = app.session_state["threshold"]
    # By hand: with n tumor slices, 0.97 sensitivity allows floor(0.03 n) misses, so the highest such
    # threshold is the (misses+1)-th lowest tumor-slice probability (applied rounded down to 6 decimals).
    positives = np.sort(scores[labels])
    expected = positives[int(np.floor(0.03 * len(positives) + 1e-9))]
    assert chosen == pytest.approx(np.floor(expected * 1e6) / 1e6, abs=1e-12) and chosen <= expected
    assert (positives >= chosen).mean() >= 0.97
    above = positives[positives > expected]
    if len(above):  # the next tumor probability up would miss one more slice: below the target
        assert (positives >= above[0]).mean() < 0.97
    table = app.dataframe[0].value
    gate = table[table["level"] == "slices: gate (slice score)"].iloc[0]
    assert float(gate["sensitivity"]) == pytest.approx((positives >= chosen).mean(), abs=1e-3)
    assert int(gate["TP"]) + int(gate["FN"]) == int(labels.sum())
    app.button(key="preset_seed 0.05").click().run()
    assert app.session_state["threshold"] == pytest.approx(0.05)


def _loss_chart(at: AppTest) -> dict:
    return next(json.loads(c.proto.spec) for c in at.get("plotly_chart")
                if "Where the Dice is lost, at threshold" in json.loads(c.proto.spec)["layout"]["title"]["text"])


def test_dice_loss_chart_follows_the_threshold(app):
    _page(app, "threshold")
    _threshold_slider(app).set_value(0.05).run()
    dice = app.dataframe[-1].value["Dice per volume"]  # the expander's table, one row per patient

    def lengths(chart: dict) -> dict[str, float]:  # each patient's bar: its four parts stacked
        patients = chart["data"][0]["y"]
        return dict(zip(patients, np.sum([_plotly_array(t["x"]) for t in chart["data"]], axis=0), strict=True))

    low = _loss_chart(app)
    assert lengths(low) == pytest.approx({p: 1 - d for p, d in dice.items()}, abs=1e-4)
    _threshold_slider(app).set_value(0.99).run()
    high = _loss_chart(app)
    left_empty = [t for t in (low, high) for t in t["data"] if t["name"] == "slices left empty"]
    before, after = (dict(zip(t["y"], _plotly_array(t["x"]), strict=True)) for t in left_empty)
    assert all(after[p] >= before[p] - 1e-12 for p in before)  # gating more slices only empties more of them
    assert sum(after.values()) > sum(before.values())


def _tif_bytes(path) -> bytes:
    return path.read_bytes()


def test_upload_real_slice_with_mask_and_bad_files(app):
    _page(app, "upload")
    case = DEMO_DIR / "TCGA_HT_7855_19951020"
    png = io.BytesIO()
    Image.fromarray(np.full((300, 300), 90, np.uint8)).save(png, format="PNG")
    app.file_uploader(key="uploads").set_value([
        ("TCGA_HT_7855_19951020_10.tif", _tif_bytes(case / "TCGA_HT_7855_19951020_10.tif"), "image/tiff"),
        ("TCGA_HT_7855_19951020_10_mask.tif", _tif_bytes(case / "TCGA_HT_7855_19951020_10_mask.tif"), "image/tiff"),
        ("gray.png", png.getvalue(), "image/png"),
        ("notes.tif", b"this is text, not an image", "image/tiff"),
        ("empty.png", b"", "image/png"),
        ("orphan_mask.png", png.getvalue(), "image/png"),
    ]).run()
    assert not app.exception
    errors = " ".join(e.value for e in app.error)
    assert "notes.tif" in errors and "not a TIFF, PNG or JPEG" in errors
    assert "empty.png" in errors and "empty" in errors
    assert "orphan_mask.png" in errors and "mask without its image" in errors
    table = app.dataframe[0].value
    assert table["file"].tolist() == ["TCGA_HT_7855_19951020_10.tif", "gray.png"]
    from brainseg.inference.results import SLICE_RESULT_COLUMNS

    assert tuple(table.columns) == SLICE_RESULT_COLUMNS  # the same table as `brainseg predict` writes
    assert table["dice"].notna().tolist() == [True, False]
    assert "grayscale" in table["notes"].iloc[1] and "resized from 300x300" in table["notes"].iloc[1]
    assert table["out_of_distribution"].iloc[0] == "" and "grayscale" in table["out_of_distribution"].iloc[1]
    assert any("outside the training distribution" in w.value for w in app.warning)
    assert len(app.get("download_button")) >= 4
    # The threshold column shows the applied value in full (a default float format wrote 0.020058 as 0.0201).
    assert json.loads(app.dataframe[0].proto.columns)["threshold"]["type_config"]["format"] == "%.6f"


def test_uploaded_slices_are_kept_across_pages_and_not_rerun_for_a_threshold(app):
    _page(app, "upload")
    case = DEMO_DIR / "TCGA_HT_7855_19951020"
    names = [f"TCGA_HT_7855_19951020_{n}.tif" for n in (10, 11)]
    app.file_uploader(key="uploads").set_value([(n, _tif_bytes(case / n), "image/tiff") for n in names]).run()
    held = app.session_state["_held_upload"]
    _threshold_slider(app).set_value(0.9).run()
    assert app.session_state["_held_upload"] is held  # re-gated, not run again
    assert app.dataframe[0].value["threshold"].tolist() == [0.9, 0.9]
    _page(app, "threshold")
    _page(app, "upload")
    assert app.dataframe[0].value["file"].tolist() == names
    assert any("uploaded earlier in this session" in i.value for i in app.info)
    assert app.session_state["_held_upload"] is held
    app.button(key="forget_uploads").click().run()
    assert any(i.value == "No files yet." for i in app.info)
    assert "_held_upload" not in app.session_state
    app.file_uploader(key="uploads").set_value([(names[0], _tif_bytes(case / names[0]), "image/tiff")]).run()
    assert "_held_upload" in app.session_state
    app.file_uploader(key="uploads").set_value([]).run()  # emptying the box forgets them too
    assert any(i.value == "No files yet." for i in app.info) and "_held_upload" not in app.session_state

def _plotly_array(value) -> list:
    """A trace's array as plain values (plotly ships numeric arrays as base64 'bdata')."""
    import base64

    if isinstance(value, dict) and "bdata" in value:
        return np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"]).tolist()
    return list(value)


def test_dataset_and_model_card_pages(app):
    from conftest import DEMO_COUNTS, MODELS_DIR

    from brainseg.inference.cascade import sha256_of

    _page(app, "dataset")
    assert any(f"{DEMO_COUNTS['patients']} patients, {DEMO_COUNTS['slices']} slices, "
               f"{DEMO_COUNTS['tumor_slices']} with tumor" in c.value for c in app.caption)
    charts = [json.loads(c.proto.spec) for c in app.get("plotly_chart")]
    balance = next(c for c in charts if "with and without tumor" in c["layout"]["title"]["text"])
    bars = dict(zip(_plotly_array(balance["data"][0]["x"]), _plotly_array(balance["data"][0]["y"]), strict=True))
    assert bars == {"no tumor": DEMO_COUNTS["slices"] - DEMO_COUNTS["tumor_slices"],
                    "tumor": DEMO_COUNTS["tumor_slices"]}
    split_table = app.dataframe[-1].value
    assert len(split_table) == DEMO_COUNTS["patients"] and set(split_table["split"]) == {"test"}
    _page(app, "model_card")
    codes = " ".join(c.value for c in app.code)
    for role in ("classifier", "segmenter"):
        assert sha256_of(MODELS_DIR / f"{role}.keras") in codes
    card = json.loads((MODELS_DIR / "model_card.json").read_text())
    assert any(f"{card['test']['cascade']['dice_per_volume']['mean']:.3f}" in m.value for m in app.markdown)
    # The out-of-fold plots come from the report the shipped operating point was chosen on, where it names one
    # (then the plotted threshold trade-off is the shipped score's), else from crossval.json.
    point = json.loads((MODELS_DIR / "operating_point.json").read_text())
    plotted_report = point.get("source", {}).get("report", "models/crossval.json")
    crossval = json.loads((MODELS_DIR.parent / plotted_report).read_text())
    assert crossval["slice_score"] == point["slice_score"]  # the shipped models' point names such a report
    assert any(f"`{plotted_report}`" in c.value for c in app.caption)
    chart = next(json.loads(c.proto.spec) for c in app.get("plotly_chart")
                 if "Cross-validation" in json.loads(c.proto.spec)["layout"]["title"]["text"])
    plotted = sorted(d for trace in chart["data"] if trace.get("mode") == "markers" for d in _plotly_array(trace["y"]))
    assert plotted == pytest.approx(sorted(row["cascade_dice"] for row in crossval["per_patient"]))
    losses = next(json.loads(c.proto.spec) for c in app.get("plotly_chart")
                  if "Where the Dice is lost" in json.loads(c.proto.spec)["layout"]["title"]["text"])
    worst = sorted(crossval["per_patient"], key=lambda row: row["cascade_dice"])[:20]
    assert sorted(losses["data"][0]["y"]) == sorted(row["patient_id"] for row in worst)
    stacked = np.sum([_plotly_array(trace["x"]) for trace in losses["data"]], axis=0)  # the bars' full lengths
    assert sorted(stacked) == pytest.approx(sorted(1 - row["cascade_dice"] for row in worst))
    tradeoff = next(json.loads(c.proto.spec) for c in app.get("plotly_chart")
                    if "gate costs" in json.loads(c.proto.spec)["layout"]["title"]["text"])
    rows = crossval["final_fit_choices"]["gate_tradeoff"]
    for trace, column in zip(tradeoff["data"], ("gate_specificity", "cascade_specificity", "cascade_sensitivity"),
                             strict=True):
        assert _plotly_array(trace["y"]) == pytest.approx([row[column] for row in rows])


def test_data_folder_is_chosen_among_allowed_roots(monkeypatch, tmp_path):
    import shutil

    root = tmp_path / "root"
    shutil.copytree(DEMO_DIR, root / "cohort")
    broken = root / "broken" / "TCGA_XX_0000_20000101"
    broken.mkdir(parents=True)
    (broken / "TCGA_XX_0000_20000101_1_mask.tif").write_bytes(b"not a tiff")
    monkeypatch.setenv("BRAINSEG_DATA_ROOTS", str(root))
    monkeypatch.delenv("BRAINSEG_DATA_DIR", raising=False)
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    choice = at.sidebar.selectbox(key="_data_dir_choice")
    cohort, broken_root = str((root / "cohort").resolve()), str((root / "broken").resolve())
    assert {cohort, broken_root} <= set(choice.options)
    choice.set_value(cohort).run()
    assert not at.exception and at.session_state["data_dir"] == cohort
    at.sidebar.selectbox(key="_data_dir_choice").set_value(broken_root).run()
    assert not at.exception
    assert any("Cannot read the data folder" in e.value for e in at.error)
    at.session_state["data_dir"] = "/etc"  # whatever reaches the state, the server never scans outside the roots
    at.run()
    assert not at.exception
    assert any("not under an allowed data root" in e.value for e in at.error)


def test_error_browser_lists_errors_and_jumps_to_the_slice(app):
    from conftest import DEMO_COUNTS

    _threshold_slider(app).set_value(1.0).run()  # a gate nothing passes: every tumor slice is an error
    _page(app, "errors")
    n = DEMO_COUNTS["tumor_slices"]
    assert any(f"**{n} slices**" in m.value and f"{n} missed by gate" in m.value for m in app.markdown)
    open_buttons = [b for b in app.button if b.label == "Open in Patients"]
    assert len(open_buttons) == 12  # the first page of the queue
    key = open_buttons[0].key  # open_<patient>_<slice>
    open_buttons[0].click().run()
    assert not app.exception, [e.value for e in app.exception]
    assert app.session_state["patient_id"] == key[len("open_"):].rsplit("_", 1)[0]
    assert any(c.value.startswith(f"Showing {app.session_state['patient_id']} slice {key.rsplit('_', 1)[1]}")
               for c in app.caption)


def test_review_tools_on_the_patients_page(app, tmp_path, monkeypatch):
    monkeypatch.setenv("BRAINSEG_REVIEW_DB", str(tmp_path / "review.sqlite"))
    app.toggle(key="show_uncertainty").set_value(True).run()
    app.toggle(key="show_grad_cam").set_value(True).run()
    assert not app.exception, [e.value for e in app.exception]
    captions = " ".join(c.caption for image in app.get("image") for c in image.proto.imgs)
    assert "Uncertainty (std over 6 views" in captions and "Grad-CAM of P(tumor)" in captions
    app.toggle(key="show_3d").set_value(True).run()
    assert not app.exception
    keys = {b.key for b in app.get("download_button")}
    assert {"export_tiff", "export_nifti", "export_png", "export_csv", "export_report"} <= keys
    app.sidebar.text_input(key="reviewer_name").set_value("Dr Test").run()  # asked once per session
    app.radio(key="review_verdict").set_value("disagree")
    app.text_input(key="review_comment").set_value("edge too wide")
    app.button(key="FormSubmitter:review_form-Save verdict").click().run()
    assert not app.exception, [e.value for e in app.exception]
    from brainseg.review.review_log import ReviewLog

    entries = ReviewLog(tmp_path / "review.sqlite").entries()
    assert entries[["patient_id", "verdict", "comment", "reviewer"]].values.tolist() == [
        ["TCGA_CS_6669", "disagree", "edge too wide", "Dr Test"]]


def test_temperature_scaled_reliability_is_offered_when_fitted(app):
    from conftest import MODELS_DIR

    from brainseg.evaluation.calibration import load_temperature

    _page(app, "threshold")
    if load_temperature(MODELS_DIR) is None:
        assert not [t for t in app.toggle if t.key == "show_calibrated"]
        return
    app.toggle(key="show_calibrated").set_value(True).run()
    assert not app.exception
    assert any("ECE after temperature scaling" in c.value for c in app.caption)


def test_dashboard_masks_and_dice_equal_evaluate(monkeypatch):
    """The dashboard's cached outputs give the very masks and Dice `brainseg evaluate` computes."""
    from conftest import MODELS_DIR

    from brainseg.app import dashboard as dash
    from brainseg.core import metrics
    from brainseg.core.data import scan_dataset
    from brainseg.evaluation.evaluate import predict_patients
    from brainseg.evaluation.threshold_analysis import metrics_at_threshold
    from brainseg.inference.cascade import Cascade

    monkeypatch.setenv("BRAINSEG_MODELS_DIR", str(MODELS_DIR))
    cascade = Cascade.from_dir(MODELS_DIR)
    threshold = cascade.default_threshold
    for patient in predict_patients(cascade, scan_dataset(DEMO_DIR)):
        cached = dash.get_patient_prediction(str(DEMO_DIR), patient.patient_id, dash.models_key())
        shown = dash.patient_result(cached)
        assert np.array_equal(shown.masks(threshold), patient.result.masks(threshold))
        stats = dash.get_patient_stats(str(DEMO_DIR), patient.patient_id, dash.models_key())
        assert metrics_at_threshold(stats, threshold)["per_patient_dice"][patient.patient_id] == pytest.approx(
            metrics.dice(patient.result.masks(threshold), patient.truth), abs=1e-12)


def test_without_a_data_folder_only_the_pages_that_need_one_stop(monkeypatch, tmp_path):
    """A `pip install .` has no demo/ folder: Upload, Study and Model card still work; data pages say why not."""
    monkeypatch.setenv("BRAINSEG_DATA_DIR", str(tmp_path / "nowhere"))
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("No data folder" in e.value and "BRAINSEG_DATA_DIR" in e.value for e in at.sidebar.error)
    assert any("Cannot read the data folder" in e.value for e in at.main.error)  # Patients needs one
    for page in ("upload", "study", "model_card"):
        _page(at, page)
        assert not any("Cannot read the data folder" in e.value for e in at.main.error), page
        assert at.sidebar.slider(key="_threshold_sidebar").value == at.session_state["threshold"]
    _page(at, "upload")
    assert any(i.value == "No files yet." for i in at.info)


def test_a_one_slice_patient_opens_with_a_disabled_slice_slider(monkeypatch, tmp_path):
    import shutil

    case = DEMO_DIR / "TCGA_HT_7855_19951020"
    folder = tmp_path / "kaggle_3m" / case.name
    folder.mkdir(parents=True)
    for name in ("TCGA_HT_7855_19951020_12.tif", "TCGA_HT_7855_19951020_12_mask.tif"):
        shutil.copy(case / name, folder / name)
    monkeypatch.setenv("BRAINSEG_DATA_DIR", str(tmp_path / "kaggle_3m"))
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    assert not at.exception, [e.value for e in at.exception]
    slider = at.slider(key="_slice_slider")
    assert slider.disabled and slider.value == 12
    assert any(c.value.startswith("Showing TCGA_HT_7855 slice 12 (1 of 1)") for c in at.caption)


def test_where_the_default_was_chosen_is_read_from_the_operating_point():
    from brainseg.app.dashboard import default_origin_words

    assert default_origin_words({"chosen_on": {"split": "val", "n_patients": 13}}) == (
        "The default was chosen on the val split (13 patients).")
    assert "each scored by the fold models that never saw it" in default_origin_words(
        {"chosen_on": {"split": "cross-validation out-of-fold", "n_patients": 81}})
    assert "does not record" in default_origin_words({"threshold": 0.5})
