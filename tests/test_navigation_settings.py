"""Slice navigation logic and the data-folder guard, without Streamlit."""

from __future__ import annotations

import numpy as np
import pytest

from brainseg import settings
from brainseg.app.navigation import SliceNavigator


def test_navigator_starts_on_the_middle_tumor_slice_and_clamps():
    nav = SliceNavigator(np.array([1, 2, 3, 5, 8]))
    assert nav.start(np.array([False, True, True, True, False])) == 2
    assert nav.start(np.zeros(5, bool)) == 0
    assert nav.step(0, -1) == 0 and nav.step(4, 1) == 4 and nav.step(1, 2) == 3
    assert nav.index_of(5) == 3 and nav.index_of(4) == 3 and nav.index_of(7.6) == 4 and nav.index_of(99) == 4
    with pytest.raises(ValueError):
        SliceNavigator(np.array([]))


def test_data_folders_outside_the_roots_are_refused(monkeypatch, tmp_path, demo_dir):
    root = tmp_path / "root"
    (root / "cohort").mkdir(parents=True)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (root / "escape").symlink_to(outside)
    monkeypatch.setenv(settings.DATA_ROOTS_ENV, str(root))
    monkeypatch.delenv(settings.DATA_DIR_ENV, raising=False)
    assert settings.allowed_data_dir(root / "cohort") == (root / "cohort").resolve()
    assert settings.allowed_data_dir(demo_dir) == demo_dir.resolve()  # the default folder is always allowed
    for bad in ("/etc", str(root / "cohort" / ".." / ".."), str(root / "escape")):
        with pytest.raises(settings.SettingsError, match="not under an allowed data root"):
            settings.allowed_data_dir(bad)


def test_data_folder_choices_list_kaggle_layout_folders_only(monkeypatch, tmp_path, demo_dir):
    import shutil

    shutil.copytree(demo_dir, tmp_path / "cohort")
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv(settings.DATA_ROOTS_ENV, str(tmp_path))
    choices = settings.data_folder_choices()
    assert (tmp_path / "cohort").resolve() in choices and (tmp_path / "empty").resolve() not in choices


def test_missing_models_folder_names_the_variable(monkeypatch, tmp_path):
    monkeypatch.setenv(settings.MODELS_DIR_ENV, str(tmp_path))
    with pytest.raises(settings.SettingsError, match="BRAINSEG_MODELS_DIR"):
        settings.models_dir()
    monkeypatch.setenv(settings.DATA_DIR_ENV, str(tmp_path / "nope"))
    with pytest.raises(settings.SettingsError, match="BRAINSEG_DATA_DIR"):
        settings.default_data_dir()


def test_remember_keeps_a_widget_value_across_a_page_switch():
    from brainseg.app.navigation import KEPT_PREFIX, remember

    state: dict = {}
    widget = remember("view", "FLAIR", state=state)
    assert widget["key"] == "view" and state["view"] == "FLAIR"  # first visit: the default, seeded
    state["view"] = "RGB composite"  # the user picks another value: Streamlit runs on_change
    widget["on_change"]()
    del state["view"]  # another page is drawn: Streamlit drops the widget's key
    remember("view", "FLAIR", state=state)
    assert state["view"] == "RGB composite" and state[KEPT_PREFIX + "view"] == "RGB composite"
    state[KEPT_PREFIX + "page"] = 4
    remember("page", 1, fit=lambda kept: min(kept, 2), state=state)  # fewer pages now: clamped, not reset
    assert state["page"] == 2


def test_thresholds_are_floored_to_six_decimals_and_written_as_applied():
    from brainseg.app.dashboard import floor_to_step, format_threshold

    assert floor_to_step(0.020058) == 0.020058  # the shipped default, not 0.020
    assert floor_to_step(0.0200589) == 0.020058  # never rounded up past the chosen value
    assert floor_to_step(0.3) == 0.3 and floor_to_step(1.0) == 1.0
    assert format_threshold(0.020058) == "0.020058"
    assert format_threshold(0.3) == "0.300" and format_threshold(0.05) == "0.050" and format_threshold(0.0) == "0.000"


@pytest.mark.parametrize(("score", "threshold"), [
    (0.0197, 0.020), (0.0197, 0.020058), (0.0200575, 0.020058), (0.0200581, 0.020058), (0.020058, 0.020058),
    (float(np.float32(0.7)), 0.7), (0.9981, 0.020058), (0.0, 0.5), (1.0, 1.0), (0.69951, 0.7),
])
def test_a_score_is_written_on_the_side_of_the_threshold_the_gate_puts_it(score, threshold):
    from brainseg.app.dashboard import format_score, format_threshold
    from brainseg.inference.cascade import passes_gate

    shown, bar = float(format_score(score, threshold)), float(format_threshold(threshold))
    assert (shown >= bar) == bool(passes_gate(np.array([score]), threshold)[0])
    assert (shown == bar) == (score == threshold)  # a score is never written as the threshold unless it is it
    assert len(format_score(score, threshold).split(".")[1]) >= 3
