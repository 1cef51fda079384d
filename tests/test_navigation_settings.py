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
