"""Dashboard logic with Streamlit's AppTest: every page, the shared threshold, presets, uploads."""

from __future__ import annotations

import io

import numpy as np
import pytest
from conftest import DEMO_DIR, ROOT
from PIL import Image
from streamlit.testing.v1 import AppTest

APP = str(ROOT / "app.py")
TIMEOUT = 180


@pytest.fixture
def app(monkeypatch) -> AppTest:
    monkeypatch.delenv("BRAINSEG_DATA_DIR", raising=False)
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _page(at: AppTest, page: str) -> AppTest:
    at.switch_page(f"pages/{page}.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _threshold_slider(at: AppTest):
    return at.sidebar.slider(key="_threshold_sidebar")


def test_patients_page_shows_a_demo_patient_with_the_notice(app):
    assert any("Research use only" in w.value for w in app.sidebar.warning)
    labels = [m.label for m in app.metric]
    assert "P(tumor)" in labels and "Dice per volume" in labels
    assert app.selectbox(key="patient_id").value == "TCGA_CS_6669"
    assert len(app.selectbox(key="patient_id").options) == 4
    assert len(app.get("image")) >= 5  # three overlays, the difference view and the plain slice


def test_slice_buttons_and_slider_move_together(app):
    slider = app.slider(key="_slice_slider")
    start = slider.value
    app.button[1].click().run()  # ▶ next
    assert app.slider(key="_slice_slider").value == start + 1
    app.slider(key="_slice_slider").set_value(3).run()
    assert app.session_state["slice_index"] == 2
    app.button[0].click().run()  # ◀ previous
    assert app.slider(key="_slice_slider").value == 2


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


def test_presets_pick_the_highest_threshold_reaching_the_sensitivity(app):
    _page(app, "threshold")
    app.button(key="preset_sensitivity ≥ 0.97").click().run()
    chosen = app.session_state["threshold"]
    table = app.dataframe[0].value
    gate = table[table["level"] == "slices: classifier gate"].iloc[0]
    assert float(gate["sensitivity"]) >= 0.97
    # A threshold a little higher must fall below the target, or the preset was not the highest.
    _threshold_slider(app).set_value(min(1.0, chosen + 0.02)).run()
    higher = app.dataframe[0].value
    assert float(higher[higher["level"] == "slices: classifier gate"].iloc[0]["sensitivity"]) <= float(
        gate["sensitivity"])
    app.button(key="preset_seed 0.05").click().run()
    assert app.session_state["threshold"] == pytest.approx(0.05)


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
    assert table["dice_vs_uploaded_mask"].notna().tolist() == [True, False]
    assert "grayscale" in table["notes"].iloc[1] and "resized from 300x300" in table["notes"].iloc[1]
    assert len(app.get("download_button")) >= 4


def test_dataset_and_model_card_pages(app):
    _page(app, "dataset")
    assert len(app.get("plotly_chart")) == 3
    _page(app, "model_card")
    assert any("sha256" in c.value for c in app.code)


def test_unreadable_data_folder_is_a_message_not_a_crash(app, tmp_path):
    app.sidebar.text_input(key="_data_dir_input").set_value(str(tmp_path)).run()
    assert not app.exception
    assert any("Cannot read the data folder" in e.value for e in app.error)


def test_error_browser_lists_errors_and_jumps_to_the_slice(app):
    _page(app, "errors")
    assert any("slices" in m.value and "threshold" in m.value for m in app.markdown)
    open_buttons = [b for b in app.button if b.label == "Open in Patients"]
    if not open_buttons:  # a perfect model on the demo cases leaves nothing to open
        assert any("No errors" in s.value for s in app.success)
        return
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
    app.radio(key="review_verdict").set_value("disagree")
    app.text_input(key="review_comment").set_value("edge too wide")
    app.button(key="FormSubmitter:review_form-Save verdict").click().run()
    assert not app.exception, [e.value for e in app.exception]
    from brainseg.review.review_log import ReviewLog

    entries = ReviewLog(tmp_path / "review.sqlite").entries()
    assert entries[["patient_id", "verdict", "comment"]].values.tolist() == [
        ["TCGA_CS_6669", "disagree", "edge too wide"]]


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
