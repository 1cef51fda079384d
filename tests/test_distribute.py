"""Distributed training: tiny models trained under MirroredStrategy on two logical CPU devices, and the strategy
factory's errors.

The training runs in a subprocess: logical devices can only be declared before TensorFlow initialises its
devices, which this test session has long done.
"""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest

from brainseg.cli import main
from brainseg.core.hashing import weights_sha256
from brainseg.inference.cascade import load_model
from brainseg.training import distribute
from brainseg.training.distribute import StrategyError

ROOT = Path(__file__).resolve().parent.parent


def tiny(epochs: int = 2) -> list[str]:
    """`brainseg train` options for a few steps of a tiny network at 32x32."""
    return ["--recipe", "cpu", "--epochs", str(epochs), "--batch-size", "4", "--input-size", "32", "--width", "0.125",
            "--limit-slices", "12", "--verbose", "0"]


# In a fresh process: 2 logical CPUs first; then, per model, the initial weights as training starts from them;
# a run interrupted after its first epoch (Python API) and resumed by the command line, and the same run again
# uninterrupted, which the resumed one must match (the shuffle and dropout streams put back under a strategy too).
TRAINING_SCRIPT = textwrap.dedent("""
    import sys
    from pathlib import Path

    from brainseg.training.distribute import split_cpu

    split_cpu(2)  # before anything makes a tensor

    import keras

    from brainseg.cli import main
    from brainseg.training import distribute
    from brainseg.training.train import build_model, config_with_overrides, recipe, train

    demo, split, runs, tiny = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4:]


    class Interrupt(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            raise KeyboardInterrupt("simulated interruption")


    for model in ("classifier", "segmenter"):
        config = config_with_overrides(recipe(model, "cpu"), epochs=2, batch_size=4, input_size=32, width=0.125)
        with distribute.strategy_scope(distribute.make_strategy("mirrored")):
            build_model(config).save(runs / f"{model}-initial.keras")
        try:
            train(config, demo, split, runs / f"{model}-cpu", verbose=0, limit_slices=12,
                  extra_callbacks=[Interrupt()], strategy="mirrored")
        except KeyboardInterrupt:
            pass
        train(config, demo, split, runs / f"{model}-uninterrupted", verbose=0, limit_slices=12, strategy="mirrored")
        code = main(["train", model, "--data", str(demo), "--split-file", str(split), "--runs-dir", str(runs),
                     "--export-dir", str(runs / "export"), "--strategy", "mirrored", *tiny])
        assert code == 0, f"brainseg train {model} exited {code}"
""")


def _demo_inputs(demo_dir: Path, scaling: str) -> np.ndarray:
    from brainseg.core.data import load_slices, scan_dataset
    from brainseg.core.preprocess import resize_images, scale_images

    manifest = scan_dataset(demo_dir)
    images, _ = load_slices(manifest[manifest["has_tumor"]].head(8), progress=False)
    return np.asarray(scale_images(resize_images(images, 32).astype(np.float32), scaling))


def test_mirrored_training_on_two_cpu_devices(tmp_path, demo_dir, demo_split):
    runs = tmp_path / "runs"
    runs.mkdir()
    script = tmp_path / "train_mirrored.py"
    script.write_text(TRAINING_SCRIPT)
    done = subprocess.run([sys.executable, str(script), str(demo_dir), str(demo_split), str(runs), *tiny()],
                          cwd=ROOT, capture_output=True, text=True, timeout=900,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert done.returncode == 0, done.stderr[-3000:]

    for model in ("classifier", "segmenter"):
        run_dir = runs / f"{model}-cpu"
        assert json.loads((run_dir / "config.json").read_text())["strategy"] == {"name": "mirrored", "replicas": 2}
        history = pd.read_csv(run_dir / "history.csv")
        assert history["epoch"].tolist() == [0, 1]  # resumed at epoch 1 (a restart would log 0, 0, 1)
        assert all(math.isfinite(v) for v in [*history["loss"], *history["val_loss"]])
        uninterrupted = runs / f"{model}-uninterrupted"
        assert history["loss"].tolist() == pd.read_csv(uninterrupted / "history.csv")["loss"].tolist()
        assert weights_sha256(keras.models.load_model(run_dir / "best.keras", compile=False)) == weights_sha256(
            keras.models.load_model(uninterrupted / "best.keras", compile=False))
        if model == "segmenter":  # one device's focal Tversky, in [0, 1], not the replicas' sum
            assert history["loss"].max() <= 1.0 and history["val_loss"].max() <= 1.0

        exported = runs / "export" / f"{model}.keras"
        assert json.loads(exported.with_suffix(".json").read_text())["strategy"] == {"name": "mirrored",
                                                                                     "replicas": 2}
        trained, initial = load_model(exported, model), load_model(runs / f"{model}-initial.keras", model)
        inputs = _demo_inputs(demo_dir, trained.spec.scaling)
        after = trained.model.predict(inputs, verbose=0)
        before = initial.model.predict(inputs, verbose=0)
        assert np.isfinite(after).all()
        assert np.abs(after - before).max() > 1e-6, f"{model}: the checkpoint predicts like the initial weights"


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for sock in sockets:
        sock.bind(("localhost", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def test_two_workers_train_in_sync_and_only_the_chief_exports(tmp_path, demo_dir, demo_split):
    # Two local processes form the cluster, as two hosts would (README: Scaling out).
    runs, workers = tmp_path / "runs", [f"localhost:{port}" for port in _free_ports(2)]
    command = [sys.executable, "-m", "brainseg.cli", "train", "segmenter", "--data", str(demo_dir),
               "--split-file", str(demo_split), "--runs-dir", str(runs), "--export-dir", str(tmp_path / "export"),
               "--strategy", "multiworker", *tiny(epochs=1)]
    processes = [
        subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                         env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "TF_CONFIG": json.dumps(
                             {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})})
        for index in range(2)]
    try:
        errors = [process.communicate(timeout=900)[1] for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
    assert [process.returncode for process in processes] == [0, 0], "\n".join(e[-2000:] for e in errors)

    chief, other = runs / "segmenter-cpu", runs / "segmenter-cpu" / "worker-1"
    for run_dir in (chief, other):
        assert json.loads((run_dir / "config.json").read_text())["strategy"] == {"name": "multiworker",
                                                                                 "replicas": 2}
    chief_history, other_history = pd.read_csv(chief / "history.csv"), pd.read_csv(other / "history.csv")
    pd.testing.assert_frame_equal(chief_history, other_history)  # logs averaged over both workers
    assert 0 < chief_history["loss"].iloc[0] <= 1.0
    # One model trained in sync: identical trainable weights (BatchNorm's moving statistics are not trained:
    # in Keras 3 each worker's copy follows its own share of the batches).
    chief_weights = load_model(chief / "best.keras", "segmenter").model.trainable_weights
    other_weights = load_model(other / "best.keras", "segmenter").model.trainable_weights
    assert all(np.array_equal(a, b) for a, b in zip(chief_weights, other_weights, strict=True))
    assert sorted(p.name for p in (tmp_path / "export").iterdir()) == ["segmenter.json", "segmenter.keras"]


@pytest.mark.parametrize("tf_config, message", [(None, "needs the TF_CONFIG"), ("{cluster", "TF_CONFIG is not JSON")])
def test_multiworker_without_a_cluster_is_a_one_line_error(tmp_path, demo_dir, demo_split, monkeypatch, capsys,
                                                           tf_config, message):
    # Chosen over silently training one local worker: a worker whose TF_CONFIG was forgotten must not train alone.
    if tf_config is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", tf_config)
    code = main(["train", "classifier", "--data", str(demo_dir), "--split-file", str(demo_split),
                 "--runs-dir", str(tmp_path / "runs"), "--strategy", "multiworker", *tiny()])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert message in err and err.startswith("brainseg train: error:") and "\n" not in err
    assert not (tmp_path / "runs").exists()  # refused before anything was written


def test_strategy_factory_refuses_unknown_names():
    with pytest.raises(StrategyError, match=r"unknown strategy 'horovod' \(choose default, mirrored, multiworker\)"):
        distribute.make_strategy("horovod")
    assert distribute.make_strategy("default") is None
    assert distribute.describe("default", None) == {"name": "default", "replicas": 1}


def test_split_cpu_after_tensorflow_started_says_so():
    import tensorflow as tf

    tf.config.list_logical_devices()  # this session's devices are fixed from here on
    with pytest.raises(StrategyError, match="too late"):
        distribute.split_cpu(3)
    with pytest.raises(StrategyError, match="at least 1"):
        distribute.split_cpu(0)


@pytest.mark.parametrize("cluster, task, chief", [
    ({"worker": ["a:1", "b:1"]}, {"type": "worker", "index": 0}, True),
    ({"worker": ["a:1", "b:1"]}, {"type": "worker", "index": 1}, False),
    ({"chief": ["c:1"], "worker": ["a:1"]}, {"type": "worker", "index": 0}, False),
    ({"chief": ["c:1"], "worker": ["a:1"]}, {"type": "chief", "index": 0}, True),
])
def test_only_the_chief_writes_the_shared_run_folder(monkeypatch, tmp_path, cluster, task, chief):
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": task}))
    assert distribute.is_chief("multiworker") is chief
    expected = tmp_path if chief else tmp_path / f"worker-{task['index']}"
    assert distribute.worker_run_dir(tmp_path, "multiworker") == expected
    assert distribute.is_chief("mirrored") and distribute.worker_run_dir(tmp_path, "mirrored") == tmp_path
