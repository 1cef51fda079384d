"""Correction mode, reviewer identity, the review log's filters and the model folder selector, through AppTest.

AppTest cannot draw on a Plotly chart (a selection event comes from the browser), so the strokes are made with
the correction module's own editor, reached through session state (``correction_state``), exactly as the
chart's selection callback applies them; everything else (the toggle, the reviewer field, Save, the
history, the store) goes through the page.
"""

from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import pytest
from conftest import DEMO_DIR, ROOT
from streamlit.testing.v1 import AppTest

from brainseg.app import correction
from brainseg.app.correction import BRUSH, ERASER, CorrectionContext
from brainseg.review.review_log import ReviewLog

APP = str(ROOT / "app.py")
TIMEOUT = 180


def _ok(at: AppTest) -> AppTest:
    assert not at.exception, [e.value for e in at.exception]
    return at


@pytest.fixture
def store(tmp_path, monkeypatch) -> str:
    location = str(tmp_path / "review.sqlite")
    monkeypatch.setenv("BRAINSEG_REVIEW_DB", location)
    monkeypatch.delenv("BRAINSEG_DATA_DIR", raising=False)
    return location


def _expert_masks_digest() -> str:
    digest = hashlib.sha256()
    for path in sorted(DEMO_DIR.rglob("*_mask.tif")):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def test_a_correction_is_saved_with_its_reviewer_and_version_history(store):
    expert_before = _expert_masks_digest()
    at = _ok(AppTest.from_file(APP, default_timeout=TIMEOUT).run())
    at.sidebar.text_input(key="reviewer_name").set_value("Dr Ann").run()
    _ok(at.toggle(key="correction_mode").set_value(True).run())
    assert "Dice vs AI" in [m.label for m in at.metric] and "Dice vs expert" in [m.label for m in at.metric]
    state = at.session_state["correction_state"]
    editor = state["editor"]
    start = editor.mask.copy()
    editor.stamp([(40, 40)], 6, BRUSH)  # what a click on the chart does
    added = int((editor.mask & ~start).sum())
    assert added > 0
    _ok(at.button(key="correction_save").click().run())
    assert any("Saved version 1" in s.value and "Dr Ann" in s.value for s in at.success)

    at.session_state["correction_state"]["editor"].stamp([(40, 40)], 3, ERASER)
    _ok(at.button(key="correction_save").click().run())
    assert any("Saved version 2" in s.value for s in at.success)

    log = ReviewLog(store)
    versions = log.corrections()
    patient = at.session_state["patient_id"]
    assert versions[["patient_id", "version", "reviewer"]].values.tolist() == [
        [patient, 1, "Dr Ann"], [patient, 2, "Dr Ann"]]
    assert versions["pixels_added"].iloc[0] == added and versions["pixels_removed"].iloc[0] == 0
    first = log.correction_mask(int(versions["id"].iloc[0]))
    assert int((first & ~start).sum()) == added and not (start & ~first).any()  # version 1 as saved, kept
    assert int(log.correction_mask(int(versions["id"].iloc[1])).sum()) < int(first.sum())
    assert versions["started_from"].tolist() == ["cascade", "version 1"]  # the editor went on from version 1
    assert versions["segmenter_sha256"].str.len().eq(64).all() and versions["threshold"].gt(0).all()
    assert _expert_masks_digest() == expert_before  # the expert _mask.tif files are never written
    # The history table and the start choices now list both versions.
    assert len(at.selectbox(key="correction_start").options) == 3


def test_each_slice_opens_on_its_own_latest_version_with_an_empty_note(store):
    at = _ok(AppTest.from_file(APP, default_timeout=TIMEOUT).run())
    at.sidebar.text_input(key="reviewer_name").set_value("Dr Ann").run()
    _ok(at.toggle(key="correction_mode").set_value(True).run())
    at.session_state["correction_state"]["editor"].stamp([(40, 40)], 6, BRUSH)
    at.text_input(key="correction_comment").set_value("blob at the top left")
    _ok(at.button(key="correction_save").click().run())
    assert at.text_input(key="correction_comment").value == ""  # the note went with version 1
    assert ReviewLog(store).corrections()["comment"].tolist() == ["blob at the top left"]
    _ok(at.selectbox(key="correction_start").set_value(0).run())  # back to the AI's mask on this slice
    at.text_input(key="correction_comment").set_value("typed here, not saved")
    _ok(at.button[1].click().run())  # ▶ next slice: no version there
    assert at.selectbox(key="correction_start").value == 0
    assert at.text_input(key="correction_comment").value == ""
    _ok(at.button[0].click().run())  # ◀ back: opens on its latest version, not the AI's mask chosen before
    assert at.selectbox(key="correction_start").value == 1

def _context(threshold: float) -> CorrectionContext:
    return CorrectionContext(patient_id="P", case_name="P_1", slice_number=7, slice_file="P_1_7.tif",
                             threshold=threshold, classifier_sha256="c" * 64, segmenter_sha256="s" * 64)


@pytest.fixture
def session(monkeypatch) -> dict:
    """A plain dict for ``st.session_state``: the editor's bookkeeping without a Streamlit run."""
    state: dict = {}
    monkeypatch.setattr(correction.st, "session_state", state)
    return state


def _square(top: int, size: int) -> np.ndarray:
    mask = np.zeros((32, 32), bool)
    mask[top : top + size, top : top + size] = True
    return mask


def test_moving_the_threshold_keeps_pending_edits_and_reset_loads_the_new_ai_mask(session):
    ai_before, ai_after = _square(4, 8), _square(4, 12)  # the AI's mask at 0.5 and at 0.4
    editor = correction.editor_for(_context(0.5), ai_before, None)
    editor.stamp([(25, 25)], 2, BRUSH)
    edited = editor.mask.copy()
    assert correction.editor_for(_context(0.4), ai_after, None) is editor  # the same editor, edits and undo kept
    assert np.array_equal(editor.mask, edited) and len(editor.history) == 1
    assert np.array_equal(editor.start, ai_before)  # what the edits began from...
    state = session[correction.STATE_KEY]
    assert correction.start_moved(state) and state["started_at"] == 0.5  # ...differs: the page says so
    correction._reset()  # the Reset button: the AI's mask at the threshold now in effect
    assert np.array_equal(editor.mask, ai_after) and not correction.start_moved(state)
    assert editor.undo() and np.array_equal(editor.mask, edited)  # and the edits are one Undo away


def test_without_pending_edits_the_editor_follows_the_ai_mask(session):
    ai_before, ai_after = _square(4, 8), np.zeros((32, 32), bool)  # at 0.5 the slice is gated off
    correction.editor_for(_context(0.4), ai_before, None)
    assert np.array_equal(correction.editor_for(_context(0.5), ai_after, None).mask, ai_after)
    assert not correction.start_moved(session[correction.STATE_KEY])


def test_moving_the_threshold_keeps_the_edits_of_a_saved_version(session):
    saved = _square(2, 10)  # a saved version's mask does not depend on the threshold
    editor = correction.editor_for(_context(0.5), saved, 3)
    editor.stamp([(6, 6)], 2, ERASER)
    editor.stamp([(25, 25)], 2, BRUSH)
    assert correction.editor_for(_context(0.45), saved, 3) is editor and len(editor.history) == 2
    assert correction.editor_for(_context(0.45), saved, None) is not editor  # another start chosen: a new editor


def test_the_editor_draws_the_ai_in_the_prediction_colour_and_the_reviewer_in_their_own():
    from brainseg.reports.overlays import CORRECTION_COLOR, DIFFERENCE_COLORS, PREDICTION_COLOR, TRUTH_COLOR

    # The reviewer's colour means nothing else anywhere: not the AI, the truth nor a difference class.
    assert CORRECTION_COLOR not in {PREDICTION_COLOR, TRUTH_COLOR, *DIFFERENCE_COLORS.values()}
    base = np.full((32, 32, 3), 100, np.uint8)
    ai, mine = _square(4, 8), _square(20, 6)
    shown = np.asarray(correction._edit_figure(base, mine, ai).data[0].z, np.uint8)
    assert tuple(shown[4, 4]) == PREDICTION_COLOR  # the AI's outline
    assert tuple(shown[8, 8]) == (100, 100, 100)  # inside it, untouched: only the outline is drawn
    expected = tuple(int(0.5 * 100 + 0.5 * c + 0.5) for c in CORRECTION_COLOR)
    assert tuple(shown[22, 22]) == expected  # the reviewer's mask, filled in its own colour
    legend = correction.editor_legend(0.5)
    assert f"rgb{CORRECTION_COLOR}" in legend and f"rgb{PREDICTION_COLOR}" in legend
    assert "your mask" in legend and "AI's mask at threshold 0.500" in legend


def test_moving_the_threshold_mid_edit_keeps_the_edits_and_saves_at_the_new_threshold(store):
    at = _ok(AppTest.from_file(APP, default_timeout=TIMEOUT).run())
    at.sidebar.text_input(key="reviewer_name").set_value("Dr Ann").run()
    _ok(at.sidebar.slider(key="_threshold_sidebar").set_value(0.0).run())  # every slice keeps its mask
    _ok(at.toggle(key="correction_mode").set_value(True).run())
    editor = at.session_state["correction_state"]["editor"]
    ai_at_zero = editor.start.copy()
    editor.stamp([(40, 40)], 6, BRUSH)
    edited = editor.mask.copy()
    _ok(at.sidebar.slider(key="_threshold_sidebar").set_value(1.0).run())  # no slice scores above 1
    state = at.session_state["correction_state"]
    assert not state["start"].any() and ai_at_zero.any()  # the AI's mask did change under the edits
    assert state["editor"] is editor and np.array_equal(editor.mask, edited) and editor.history
    assert any("differs from the one you started from" in i.value for i in at.info)
    assert any("your mask" in m.value and "(outline)" in m.value for m in at.markdown)  # the colour legend
    _ok(at.button(key="correction_save").click().run())
    saved = ReviewLog(store).corrections()
    assert saved["threshold"].tolist() == [1.0]  # the threshold in effect at save time, its AI mask empty
    assert saved["pixels_added"].iloc[0] == int(edited.sum()) and saved["pixels_removed"].iloc[0] == 0


def test_nothing_is_saved_without_a_reviewer(store):
    at = _ok(AppTest.from_file(APP, default_timeout=TIMEOUT).run())
    _ok(at.toggle(key="correction_mode").set_value(True).run())
    assert at.button(key="correction_save").disabled
    assert any("reviewer name" in w.value for w in at.warning)
    at.button(key="FormSubmitter:review_form-Save verdict").click().run()
    assert ReviewLog(store).entries().empty
    assert any("reviewer name" in w.value for w in at.warning)


def test_review_log_shows_who_did_what_and_filters_by_reviewer(store):
    log = ReviewLog(store)
    log.add("TCGA_CS_6669", 3, "agree", 0.4, "h", reviewer="ann")
    log.add("TCGA_CS_6669", 4, "disagree", 0.4, "h", reviewer="bob")
    at = _ok(AppTest.from_file(APP, default_timeout=TIMEOUT).run())
    assert at.selectbox(key="review_filter_reviewer").options == ["everyone", "ann", "bob"]
    verdicts = at.dataframe[-2].value
    assert verdicts["reviewer"].tolist() == ["ann", "bob"]
    _ok(at.selectbox(key="review_filter_reviewer").set_value("bob").run())
    assert at.dataframe[-2].value["reviewer"].tolist() == ["bob"]
    assert "export_review_log" in {b.key for b in at.get("download_button")}


def test_model_folder_selector_and_card_say_which_folder_is_live(store, tmp_path, monkeypatch, tiny_models_dir):
    home, tuned = tmp_path / "models", tmp_path / "models-ft1"
    shutil.copytree(tiny_models_dir, home)
    shutil.copytree(tiny_models_dir, tuned)
    sidecar = json.loads((tuned / "segmenter.json").read_text())
    sidecar["finetune"] = {"corrected_slices": 3, "replay_slices": 12, "epochs": 2,
                           "parent_segmenter_sha256": "ab" * 32, "parent_models_dir": str(home)}
    (tuned / "segmenter.json").write_text(json.dumps(sidecar))
    (tuned / "FINETUNE.md").write_text("# Fine-tuned segmenter\n\nbefore 0.1000, after 0.2000\n")
    point = {"threshold": 0.37, "slice_score": "classifier"}
    (tuned / "operating_point.json").write_text(json.dumps(point))
    monkeypatch.setenv("BRAINSEG_MODELS_DIR", str(home))
    at = _ok(AppTest.from_file(APP, default_timeout=TIMEOUT).run())
    selector = at.sidebar.selectbox(key="_models_choice")
    assert selector.options == ["models", "models-ft1"]  # shown by folder name
    _ok(selector.set_value(str(tuned.resolve())).run())
    assert at.session_state["models_dir"] == str(tuned.resolve())
    assert at.session_state["threshold"] == pytest.approx(0.37)  # the folder's own default, not the last one's

    def score_help() -> str:
        return next(m.proto.help for m in at.metric if m.label == "Slice score")

    assert score_help().removeprefix("What the threshold gates: ") == "the classifier's P(tumor)"
    point["slice_score"] = "classifier+segmenter"  # the operating point rewritten while the server runs
    (tuned / "operating_point.json").write_text(json.dumps(point))
    _ok(at.run())
    assert "the segmenter's highest pixel probability" in score_help()
    at.switch_page("pages/model_card.py")
    _ok(at.run())
    live = " ".join(i.value for i in at.info)
    assert str(tuned.resolve()) in live and "fine-tuned" in live and "3 corrected slices" in live
    assert any("after 0.2000" in m.value for m in at.markdown)


AUTH = {"redirect_uri": "http://localhost:8501/oauth2callback", "cookie_secret": "test-secret", "client_id": "x",
        "client_secret": "y", "server_metadata_url": "https://idp.example/.well-known/openid-configuration"}


def test_with_an_identity_provider_the_logged_in_user_is_the_reviewer(store):
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.secrets["auth"] = AUTH
    at.user = {"is_logged_in": False}
    _ok(at.run())
    assert "reviewer_login" in {b.key for b in at.sidebar.button}
    assert not [t for t in at.sidebar.text_input if t.key == "reviewer_name"]  # no free-typed name with a login
    at.user = {"is_logged_in": True, "email": "ann@hospital.example", "name": "Ann"}
    _ok(at.run())
    assert any("ann@hospital.example" in c.value for c in at.sidebar.caption)
    at.radio(key="review_verdict").set_value("agree")
    _ok(at.button(key="FormSubmitter:review_form-Save verdict").click().run())
    assert ReviewLog(store).entries()["reviewer"].tolist() == ["ann@hospital.example"]


def test_a_broken_review_store_is_a_message_not_a_traceback(tmp_path, monkeypatch):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    monkeypatch.setenv("BRAINSEG_REVIEW_DB", str(blocker / "review.sqlite"))  # its folder is a file
    monkeypatch.delenv("BRAINSEG_DATA_DIR", raising=False)
    at = _ok(AppTest.from_file(APP, default_timeout=TIMEOUT).run())
    assert any("review store is unavailable" in e.value for e in at.error)
    assert any(m.label == "Slice score" for m in at.metric)  # the rest of the page still works


def test_unsaved_edits_survive_a_look_at_the_next_slice(store):
    at = _ok(AppTest.from_file(APP, default_timeout=TIMEOUT).run())
    at.sidebar.text_input(key="reviewer_name").set_value("Dr Ann").run()
    _ok(at.toggle(key="correction_mode").set_value(True).run())
    at.session_state["correction_state"]["editor"].stamp([(40, 40)], 6, BRUSH)
    edited = at.session_state["correction_state"]["editor"].mask.copy()
    _ok(at.button[1].click().run())  # ▶ next slice, edits not saved
    assert not at.session_state["correction_state"]["editor"].pending
    assert any("Unsaved edits kept aside on slice" in caption.value for caption in at.caption)
    _ok(at.button[0].click().run())  # ◀ back
    editor = at.session_state["correction_state"]["editor"]
    assert np.array_equal(editor.mask, edited) and len(editor.history) == 1
    assert any("are back" in warning.value for warning in at.warning)
    assert ReviewLog(store).corrections().empty  # nothing was saved on the way
