"""Dashboard state across pages and the threshold as applied, with Streamlit's AppTest.

Streamlit drops a widget's value when its page is not drawn: the reviewing loop (Error browser -> Open in
Patients -> back) must find its filters, page and display settings as they were; the threshold applied must be
the shipped one, written as applied; a slice score must read on the side of the threshold that decided it.
"""

from __future__ import annotations

import json

import pytest
from conftest import DEMO_DIR, MODELS_DIR, open_app, switch_to
from streamlit.testing.v1 import AppTest

SHIPPED = json.loads((MODELS_DIR / "operating_point.json").read_text())["threshold"]  # 0.020058


_page = switch_to


def _run(widget) -> AppTest:
    at = widget.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_error_browser_filters_and_page_survive_a_visit_to_patients(app):
    _run(app.sidebar.slider(key="_threshold_sidebar").set_value(1.0))  # 44 tumor slices missed: 4 pages
    _page(app, "errors")
    _run(app.multiselect(key="errors_kinds").set_value(["missed by gate"]))
    _run(app.number_input(key="errors_page").set_value(3))
    opened = next(b for b in app.button if b.label == "Open in Patients")
    _run(opened.click())
    assert app.session_state["patient_id"] == opened.key[len("open_"):].rsplit("_", 1)[0]  # on the Patients page
    _page(app, "errors")
    assert app.multiselect(key="errors_kinds").value == ["missed by gate"]
    assert app.number_input(key="errors_page").value == 3
    assert next(b for b in app.button if b.label == "Open in Patients").key == opened.key  # the same slices


def test_error_browser_page_is_kept_or_clamped_when_the_page_count_changes(app):
    _run(app.sidebar.slider(key="_threshold_sidebar").set_value(1.0))
    _page(app, "errors")
    _run(app.number_input(key="errors_page").set_value(2))
    _run(app.multiselect(key="errors_institutions").set_value(["FG", "HT"]))  # 29 slices: 4 pages -> 3
    assert app.number_input(key="errors_page").value == 2
    _run(app.number_input(key="errors_page").set_value(3))
    _run(app.multiselect(key="errors_institutions").set_value(["FG"]))  # 18 slices: 2 pages
    assert app.number_input(key="errors_page").value == 2


def test_error_browser_defines_low_dice_with_the_queue_constant(app):
    from brainseg.review.error_queue import LOW_DICE

    _page(app, "errors")
    assert any(f"Dice < {LOW_DICE}" in c.value for c in app.caption)


def test_threshold_scope_survives_a_visit_to_another_page(app):
    _page(app, "threshold")
    scope = app.radio(key="metrics_scope")
    assert "test split (4 patients)" in scope.options
    _run(scope.set_value("test"))
    _page(app, "patients")
    _page(app, "threshold")
    assert app.radio(key="metrics_scope").value == "test"
    assert any("detected" in c.value and "any of its slices is called" in c.value for c in app.caption)


def test_threshold_page_warns_when_the_split_cannot_be_read(monkeypatch, tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    for path in MODELS_DIR.iterdir():
        if path.is_file() and path.name != "split.json":
            (models / path.name).symlink_to(path)
    (models / "split.json").write_text("{not json")
    monkeypatch.setenv("BRAINSEG_MODELS_DIR", str(models))
    monkeypatch.delenv("BRAINSEG_DATA_DIR", raising=False)
    at = open_app("threshold")
    assert any("Cannot read the split" in w.value and "trained on" in w.value for w in at.warning)


def test_patients_display_settings_survive_a_visit_to_another_page(app):
    _run(app.selectbox(key="mri_view").set_value("post-contrast"))
    _run(app.radio(key="mask_style").set_value("contour"))
    _run(app.slider(key="mask_opacity").set_value(0.8))
    _run(app.toggle(key="show_truth").set_value(False))
    _run(app.toggle(key="show_prediction").set_value(False))
    _page(app, "errors")
    _page(app, "patients")
    assert app.selectbox(key="mri_view").value == "post-contrast"
    assert app.radio(key="mask_style").value == "contour"
    assert app.slider(key="mask_opacity").value == pytest.approx(0.8)
    assert app.toggle(key="show_truth").value is False and app.toggle(key="show_prediction").value is False


def test_the_dashboard_applies_and_shows_the_shipped_threshold(app):
    assert round(SHIPPED, 3) != SHIPPED  # the point of the test: a default off the 0.001 grid
    assert app.session_state["threshold"] == SHIPPED
    assert any(m.label == f"Decision at {SHIPPED}" for m in app.metric)
    _page(app, "threshold")
    _run(app.slider(key="_threshold_page").set_value(0.5))
    default = app.button(key="preset_default")
    assert default.label == f"default: {SHIPPED}"
    _run(default.click())
    assert app.session_state["threshold"] == SHIPPED
    assert app.sidebar.slider(key="_threshold_sidebar").value == SHIPPED
    _run(app.number_input(key="_threshold_exact").set_value(0.0123456))  # typed: rounded down to 1e-6
    assert app.session_state["threshold"] == 0.012345


def test_slice_score_reads_on_the_side_of_the_threshold_that_decided_it(app, monkeypatch):
    from brainseg.app import dashboard as dash

    monkeypatch.setenv("BRAINSEG_MODELS_DIR", str(MODELS_DIR))
    prediction = dash.get_patient_prediction(str(DEMO_DIR), app.session_state["patient_id"], dash.models_key())
    # A slice whose score and a threshold just above it (so: below the gate) read the same to 3 decimals.
    index, threshold = next(
        (k, round(float(p) + 1e-6, 6)) for k, p in enumerate(dash.patient_result(prediction).probabilities)
        if f"{p:.3f}" == f"{round(float(p) + 1e-6, 6):.3f}" and p < 0.99)
    app.session_state["slice_index"] = index
    app.session_state["threshold"] = threshold
    app.run()
    assert not app.exception, [e.value for e in app.exception]
    shown = next(m for m in app.metric if m.label == "Slice score").value
    decision = next(m for m in app.metric if m.label.startswith("Decision at "))
    assert decision.value == "no tumor" and decision.proto.delta == "below the gate"
    assert float(shown) < float(decision.label.removeprefix("Decision at "))


def test_patients_toggles_and_review_log_filters_survive_a_visit_to_another_page(monkeypatch, tmp_path):
    from brainseg.review.review_log import ReviewLog

    store = tmp_path / "review.sqlite"
    ReviewLog(str(store)).add("TCGA_HT_7855", 10, "agree", 0.5, "models", "", "Dr Ann")  # a reviewer to filter on
    monkeypatch.setenv("BRAINSEG_REVIEW_DB", str(store))
    monkeypatch.delenv("BRAINSEG_DATA_DIR", raising=False)
    app = open_app()
    _run(app.toggle(key="show_3d").set_value(True))
    _run(app.selectbox(key="review_filter_reviewer").set_value("Dr Ann"))
    _run(app.radio(key="review_filter_scope").set_value("all"))
    _run(app.toggle(key="correction_mode").set_value(True))
    _run(app.radio(key="correction_mode_tool").set_value("eraser"))
    _run(app.radio(key="correction_stroke").set_value("lasso"))
    _run(app.slider(key="correction_brush_size").set_value(14))
    _page(app, "errors")
    _page(app, "patients")
    assert app.toggle(key="correction_mode").value is True  # and its panel is drawn again, with the same kit:
    assert app.selectbox(key="correction_start").value is not None
    assert app.radio(key="correction_mode_tool").value == "eraser"
    assert app.radio(key="correction_stroke").value == "lasso"
    assert app.slider(key="correction_brush_size").value == 14
    assert app.toggle(key="show_3d").value is True
    assert app.selectbox(key="review_filter_reviewer").value == "Dr Ann"
    assert app.radio(key="review_filter_scope").value == "all"


def _editor_context(segmenter: str, slice_number: int = 7, classifier: str = "c"):
    from brainseg.app.correction import CorrectionContext

    return CorrectionContext(patient_id="P", case_name="P_1", slice_number=slice_number, slice_file="P_1_7.tif",
                             threshold=0.5, classifier_sha256=classifier * 64, segmenter_sha256=segmenter * 64)


def test_other_models_set_pending_edits_aside_and_say_so_once():
    import numpy as np

    from brainseg.app.correction import BRUSH, editor_state

    ai = np.zeros((16, 16), bool)
    state = editor_state(None, _editor_context("a"), ai, None)
    state["editor"].stamp([(8, 8)], 2, BRUSH)  # pending edits against models a
    state = editor_state(state, _editor_context("b"), ai, None)  # the model folder switched
    assert not state["editor"].pending  # a new editor, on the new models' mask...
    assert state["notice"] == ("Unsaved edits on slice 7 of P were made while other models were loaded and were "
                               "discarded: the editor starts again from these models' mask.")  # ...and it says so
    state.pop("notice")  # the page shows it once
    assert "notice" not in editor_state(state, _editor_context("b"), ai, None)
    state = editor_state(state, _editor_context("b", classifier="d"), ai, None)  # the classifier alone counts too
    assert "notice" not in state  # nothing was pending
    state["editor"].stamp([(8, 8)], 2, BRUSH)
    assert "notice" in editor_state(dict(state), _editor_context("b", classifier="e"), ai, None)
    # Another slice drops its edits as it always did (the reviewer moved): no notice about models.
    assert "notice" not in editor_state(state, _editor_context("c", slice_number=8), ai, None)


def test_unsaved_edits_are_kept_aside_while_browsing_other_slices_and_come_back():
    import numpy as np

    from brainseg.app.correction import BRUSH, MAX_PARKED, editor_state, parked_slices

    ai, parked = np.zeros((16, 16), bool), {}
    state = editor_state(None, _editor_context("a"), ai, None, parked)
    state["editor"].stamp([(8, 8)], 2, BRUSH)
    edited = state["editor"].mask.copy()
    state = editor_state(state, _editor_context("a", slice_number=8), ai, None, parked)  # on to the next slice
    assert not state["editor"].pending and parked_slices(parked) == "slice 7 of P"
    state = editor_state(state, _editor_context("a"), ai, None, parked)  # and back
    assert np.array_equal(state["editor"].mask, edited) and len(state["editor"].history) == 1
    assert "are back" in state.pop("notice") and parked == {}
    # Other models: what was kept aside is dropped, and said.
    state = editor_state(state, _editor_context("a", slice_number=8), ai, None, parked)
    state = editor_state(state, _editor_context("b", slice_number=8), ai, None, parked)
    assert parked == {} and "slice 7 of P, made while other models were loaded, were discarded" in state["notice"]
    # A bounded number is kept; the oldest goes first, with a notice.
    for number in range(MAX_PARKED + 2):
        state = editor_state(state, _editor_context("b", slice_number=100 + number), ai, None, parked)
        state["editor"].stamp([(8, 8)], 2, BRUSH)
    state = editor_state(state, _editor_context("b", slice_number=99), ai, None, parked)
    # 26 slices edited: slice 100 went when the 26th was opened (said there), slice 101 now.
    assert len(parked) == MAX_PARKED and "slice 101 of P were dropped" in state["notice"]
    assert {k[1] for k in parked} == set(range(102, 100 + MAX_PARKED + 2))
