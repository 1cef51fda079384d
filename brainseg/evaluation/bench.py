"""Speed of the cascade on this machine: cold load, ms per slice, seconds per whole patient, peak memory."""

from __future__ import annotations

import os
import platform
import resource
import time
from pathlib import Path

import numpy as np
import pandas as pd

from brainseg.core.data import load_slices
from brainseg.inference.cascade import Cascade


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def machine_description() -> dict:
    import tensorflow as tf

    cpu = "unknown"
    if Path("/proc/cpuinfo").is_file():
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "tensorflow": tf.__version__,
            "platform": platform.platform()}


def bench(models_dir: str | Path, manifest: pd.DataFrame, max_patients: int = 10, batch_size: int = 16,
          repeats: int = 3) -> dict:
    """Time the cascade per patient (decoded slices in memory, both models on every slice).

    The first patient is run once untimed to warm up the traced functions. Each patient's time is the
    best of ``repeats`` runs (the least disturbed by other work on the machine).
    """
    start = time.perf_counter()
    cascade = Cascade.from_dir(models_dir, batch_size=batch_size)
    load_seconds = time.perf_counter() - start

    patients = list(dict.fromkeys(manifest["patient_id"]))[:max_patients]
    if not patients:
        raise ValueError("no patients to benchmark")
    first_images, _ = load_slices(manifest[manifest["patient_id"] == patients[0]])
    start = time.perf_counter()
    cascade.predict(first_images)
    first_call_seconds = time.perf_counter() - start

    patient_seconds, n_slices, decode_seconds = [], [], []
    for patient in patients:
        rows = manifest[manifest["patient_id"] == patient]
        start = time.perf_counter()
        images, _ = load_slices(rows)
        decode_seconds.append(time.perf_counter() - start)
        runs = []
        for _ in range(repeats):
            start = time.perf_counter()
            cascade.predict(images)
            runs.append(time.perf_counter() - start)
        patient_seconds.append(min(runs))
        n_slices.append(len(rows))
    seconds = np.asarray(patient_seconds)
    review_tools = _time_review_tools(cascade, first_images)
    return {
        "ms_per_slice": float(1000 * seconds.sum() / sum(n_slices)),
        "patient_seconds": {"median": float(np.median(seconds)), "max": float(seconds.max()),
                            "mean": float(seconds.mean())},
        "slices_per_patient": {"median": float(np.median(n_slices)), "max": int(max(n_slices))},
        "decode_seconds_per_patient": {"median": float(np.median(decode_seconds))},
        "model_load_seconds": load_seconds,
        "first_call_seconds": first_call_seconds,
        "review_tools_ms_per_slice": review_tools,
        "peak_rss_mb": peak_rss_mb(),
        "n_patients": len(patients),
        "batch_size": batch_size,
        "repeats": repeats,
        "models": {"classifier": {"input": cascade.classifier.spec.to_dict(), "sha256": cascade.classifier.sha256},
                   "segmenter": {"input": cascade.segmenter.spec.to_dict(), "sha256": cascade.segmenter.sha256}},
        "machine": machine_description(),
    }


def _time_review_tools(cascade: Cascade, images: np.ndarray) -> dict[str, float]:
    """Extra cost of the dashboard's optional overlays, per slice (best of 2 runs after a warm-up)."""
    from brainseg.review.saliency import grad_cam
    from brainseg.review.uncertainty import tta_segment

    timings = {}
    for name, run in (("tta_uncertainty", lambda: tta_segment(cascade.segmenter, images)),
                      ("grad_cam", lambda: grad_cam(cascade.classifier, images))):
        run()
        best = float("inf")
        for _ in range(2):
            start = time.perf_counter()
            run()
            best = min(best, time.perf_counter() - start)
        timings[name] = 1000.0 * best / len(images)
    return timings


def train_step_seconds(model: str, recipe_name: str, steps: int = 4) -> float:
    """Seconds per training step (batch of the recipe's size) of a recipe's network, on random data."""
    import tensorflow as tf

    from brainseg.training.train import build_model, recipe

    config = recipe(model, recipe_name)
    network = build_model(config)
    rng = np.random.default_rng(0)
    size, batch = config.input_size, config.batch_size
    x = rng.random((batch, size, size, 3), dtype=np.float32)
    y = (rng.random(batch) < 0.5).astype(np.float32) if model == "classifier" else (
        rng.random((batch, size, size, 1)) < 0.1).astype(np.float32)
    data = tf.data.Dataset.from_tensors((x, y)).repeat()
    network.fit(data, steps_per_epoch=2, epochs=1, verbose=0, shuffle=False)  # trace and warm up
    start = time.perf_counter()
    network.fit(data, steps_per_epoch=steps, epochs=1, verbose=0, shuffle=False)
    return (time.perf_counter() - start) / steps
