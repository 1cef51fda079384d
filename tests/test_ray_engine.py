"""The Ray engine: Ray Data with an actor pool stores exactly what the local engine stores."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from brainseg.cli import main
from brainseg.core.data import scan_dataset
from brainseg.inference.store import ModelsKey, PredictionStore
from brainseg.scoring.engines import chunk_rows, score_folder

ray = pytest.importorskip("ray")


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray for the whole session (it takes seconds to start): 2 CPUs, no dashboard, quiet."""
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
    yield ray
    if started:
        ray.shutdown()


@pytest.fixture(scope="module")
def two_patients(demo_dir):
    manifest = scan_dataset(demo_dir)
    return manifest[manifest["patient_id"].isin(manifest["patient_id"].unique()[:2])]


def test_chunks_follow_the_cascade_batches(two_patients):
    chunks = chunk_rows(two_patients, 16)
    for patient, rows in two_patients.groupby("patient_id"):
        mine = [c for c in chunks if c["patient_id"] == patient]
        assert [c["start"] for c in mine] == list(range(0, len(rows), 16))
        assert [path for c in mine for path in c["image_paths"]] == rows["image_path"].tolist()


def test_ray_engine_stores_exactly_what_the_local_engine_stores(ray_local, two_patients, tiny_models_dir, tmp_path):
    local, distributed = PredictionStore(tmp_path / "local"), PredictionStore(tmp_path / "ray")
    assert score_folder(two_patients, local, tiny_models_dir, "local", progress=False).scored_patients == 2
    summary = score_folder(two_patients, distributed, tiny_models_dir, "ray", progress=False, actors=2)
    assert (summary.scored_patients, summary.scored_slices) == (2, len(two_patients))
    models = ModelsKey.of_dir(tiny_models_dir)
    for patient in two_patients["patient_id"].unique():
        with np.load(local.path(models, patient)) as a, np.load(distributed.path(models, patient)) as b:
            assert sorted(a.files) == sorted(b.files)
            for name in a.files:
                assert np.array_equal(a[name], b[name]), (patient, name)
    # Resumable on Ray too: nothing left to score.
    again = score_folder(two_patients, distributed, tiny_models_dir, "ray", progress=False)
    assert (again.already_stored, again.scored_patients) == (2, 0)


def test_ray_cli_scores_on_the_running_ray(ray_local, demo_copy, tiny_models_dir,
                                          tmp_path, capsys):
    store = tmp_path / "store"
    # Drop two patients so the run is short.
    for case in sorted(p for p in demo_copy.iterdir() if p.is_dir())[2:]:
        for file in case.iterdir():
            file.unlink()
        case.rmdir()
    argv = ["score", "--data", str(demo_copy), "--store", str(store), "--models-dir", str(tiny_models_dir),
            "--engine", "ray", "--actors", "1"]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (summary["engine"], summary["scored_patients"]) == ("ray", 2)
    assert len(list(store.rglob("*.npz"))) == 2
