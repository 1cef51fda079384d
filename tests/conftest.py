"""Shared fixtures: the shipped demo cases (real slices) and tiny randomly initialized models."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import tempfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Converted ONNX graphs go to a throwaway folder (inherited by the servers and commands tests start), not the
# user's cache.
if "BRAINSEG_CACHE_DIR" not in os.environ:
    os.environ["BRAINSEG_CACHE_DIR"] = tempfile.mkdtemp(prefix="brainseg-test-cache-")
    atexit.register(shutil.rmtree, os.environ["BRAINSEG_CACHE_DIR"], True)

def channel_probe(spec, channel: int) -> SimpleNamespace:
    """A stand-in segmenter whose map is one of its input channels / 255: pixel-wise, so each test-time view
    mapped back gives the same map (but where a shift filled the border), and which channel shows which slice."""
    return SimpleNamespace(spec=spec, infer=lambda x: x[..., channel:channel + 1].astype(np.float32) / 255)


ROOT = Path(__file__).resolve().parent.parent
DEMO_DIR = ROOT / "demo" / "kaggle_3m"
MODELS_DIR = ROOT / "models"
DEMO_COUNTS = {"patients": 4, "slices": 115, "tumor_slices": 44}


@pytest.fixture(scope="session")
def demo_dir() -> Path:
    return DEMO_DIR


@pytest.fixture
def demo_copy(tmp_path: Path) -> Path:
    """A writable copy of the demo folder, for tests that break it."""
    target = tmp_path / "kaggle_3m"
    shutil.copytree(DEMO_DIR, target)
    return target


def open_app(page: str | None = None):
    """The dashboard in AppTest, run once (then switched to ``pages/<page>.py`` and run again); fails on an
    exception. Set the environment (models, data, stores) before calling it."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180).run()
    assert not at.exception, [e.value for e in at.exception]
    return at if page is None else switch_to(at, page)


def switch_to(at, page: str):
    """``at`` switched to ``pages/<page>.py`` and run; fails on an exception."""
    at.switch_page(f"pages/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


@pytest.fixture
def app(monkeypatch):
    """The dashboard on its default data folder (the shipped demo cases)."""
    monkeypatch.delenv("BRAINSEG_DATA_DIR", raising=False)
    return open_app()


@pytest.fixture
def demo_split(tmp_path: Path) -> Path:
    """A split file over the four demo patients (two train, one val, one test), for tiny trainings."""
    path = tmp_path / "split.json"
    path.write_text(json.dumps({"train": ["TCGA_CS_6669", "TCGA_FG_A4MU"], "val": ["TCGA_HT_7855"],
                                "test": ["TCGA_DU_8165"]}))
    return path


@pytest.fixture(scope="session")
def tiny_models_dir(tmp_path_factory) -> Path:
    """A models folder with small, untrained (random-weight) networks at 32x32 and sidecars.

    The weights are seeded: a test that depends on what random weights happen to predict then behaves the same
    on every run instead of failing once in a while.
    """
    import keras

    from brainseg.core.networks import build_classifier, build_segmenter

    keras.utils.set_random_seed(20261127)

    folder = tmp_path_factory.mktemp("tiny_models")
    for role, model, scaling in (
        ("classifier", build_classifier(32, 0.125), "unit"),
        ("segmenter", build_segmenter(32, 0.25), "zscore"),
    ):
        model.save(folder / f"{role}.keras")
        (folder / f"{role}.json").write_text(json.dumps({"role": role, "input_spec": {"size": 32, "scaling": scaling}}))
    return folder
