"""Speed of the cascade on this machine, against a reference workload timed in the same process.

Machines of one kind differ up to 3x in speed and drift within minutes, so absolute seconds are not
comparable between runs. The benchmark therefore also times a fixed reference workload (the seed
ResUNet on 36 slices) interleaved with the cascade, and reports the cascade's time as a ratio to it.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

import brainseg
from brainseg.core.data import load_slices
from brainseg.core.preprocess import InputSpec
from brainseg.inference.cascade import Cascade, LoadedModel
from brainseg.inference.runtimes import runtime_versions
from brainseg.runtime import cpu_name
from brainseg.settings import RUNTIME_ENV

PATIENT_OVER_REFERENCE_GOAL = 0.5  # the project's speed goal: median patient <= 0.5x the reference

# Runs in a fresh interpreter: the imports are timed apart from the load, which is the only thing
# ``model_load_seconds_cold`` covers. One JSON line on stdout (TensorFlow logs go to stderr).
_COLD_LOAD_SCRIPT = """
import json, os, sys, time
start = time.perf_counter()
import tensorflow
tensorflow_done = time.perf_counter()
import keras
from brainseg.inference.cascade import Cascade
imports_done = time.perf_counter()
cascade = Cascade.from_dir(sys.argv[1], batch_size=int(sys.argv[2]))
loaded = time.perf_counter()
import numpy as np
from brainseg.inference.runtimes import onnx_cache_path
models = (cascade.classifier, cascade.segmenter)
cached = (all(onnx_cache_path(m.spec, m.sha256).is_file() for m in models)
          if cascade.classifier.runtime == "onnxruntime" else None)
call_start = time.perf_counter()
cascade.predict(np.zeros((1, 256, 256, 3), np.uint8))  # builds each network's graph (ONNX: converts or reads cache)
called = time.perf_counter()
cascade.predict(np.zeros((cascade.batch_size, 256, 256, 3), np.uint8))  # a full batch: the working memory
import resource
peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
print(json.dumps({"pid": os.getpid(), "tensorflow_import_seconds": tensorflow_done - start,
                  "other_imports_seconds": imports_done - tensorflow_done,
                  "model_load_seconds": loaded - imports_done, "runtime": cascade.classifier.runtime,
                  "first_call_seconds": called - call_start, "onnx_graphs_cached": cached,
                  "peak_rss_mb_after_one_batch": peak_mb}))
"""


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _machine_busy_cpu_seconds() -> float | None:
    """CPU seconds all processes have used since boot (Linux ``/proc/stat``); None where it cannot be read."""
    try:
        ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    except (OSError, ValueError):
        return None
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait


def _own_cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class OtherWorkMeter:
    """How much of the machine's CPU capacity processes other than this one (and its children) used since it was
    made: 0 on an otherwise idle machine, 1 when other work kept every core busy."""

    def __init__(self) -> None:
        self.start = (time.perf_counter(), _machine_busy_cpu_seconds(), _own_cpu_seconds())

    def share(self) -> float | None:
        wall0, busy0, own0 = self.start
        busy = _machine_busy_cpu_seconds()
        if busy is None or busy0 is None:
            return None
        capacity = (time.perf_counter() - wall0) * (os.cpu_count() or 1)
        return float(min(1.0, max(0.0, (busy - busy0 - (_own_cpu_seconds() - own0)) / capacity)))


def machine_description() -> dict:
    import tensorflow as tf

    return {"cpu": cpu_name(), "cores": os.cpu_count(), "python": platform.python_version(),
            "tensorflow": tf.__version__, "platform": platform.platform()}


REFERENCE_BATCH_SIZE = 16  # fixed, not the cascade's batch size: the reference must be the same workload everywhere


def reference_model(input_size: int = 256, width: float = 1.0, seed: int = 0) -> LoadedModel:
    """The seed ResUNet (at 256 and width 1.0) with deterministic random weights, fed like the cascade's segmenter.

    Wrapping it in a ``LoadedModel`` makes it run through the same graph the cascade builds (uint8 in, z-score
    scaling inside the graph), on TensorFlow.
    """
    from brainseg.core.networks import build_segmenter

    model = build_segmenter(input_size, width)
    # Redraw the conv kernels (He-normal scale) from a local generator instead of seeding Keras globally,
    # which would reset the caller's random state. Biases and batch-norm statistics start constant.
    rng = np.random.default_rng(seed)
    for weight in model.weights:
        shape = tuple(weight.shape)
        if len(shape) == 4:
            weight.assign(rng.normal(0.0, np.sqrt(2.0 / np.prod(shape[:3])), shape).astype(np.float32))
    # Always TensorFlow: the goal defines the reference as the seed network under TensorFlow's tf.function,
    # whatever runtime the cascade uses.
    return LoadedModel("segmenter", model, InputSpec(input_size, "zscore"), Path("<reference>"), "",
                       {"input_size": input_size, "width": width, "seed": seed}, runtime="tensorflow")


def reference_workload(input_size: int = 256, n_slices: int = 36, width: float = 1.0,
                       seed: int = 0) -> tuple[Callable[[], None], dict]:
    """A callable running the reference model on ``n_slices`` random uint8 slices at batch 16, and its description."""
    reference = reference_model(input_size, width, seed)
    run = batched_workload(reference, n_slices, seed)
    description = {"network": "seed ResUNet" if (input_size, width) == (256, 1.0) else "ResUNet",
                   "input_size": input_size, "width": width, "slices": n_slices, "batch_size": REFERENCE_BATCH_SIZE,
                   "parameters": int(reference.model.count_params()), "seed": seed}
    return run, description


def batched_workload(model: LoadedModel, n_slices: int, seed: int = 0) -> Callable[[], None]:
    """A callable running ``model`` on ``n_slices`` random uint8 slices of its input shape, at the reference's
    batch size: the reference's workload, for any network."""
    spec = model.spec
    images = np.random.default_rng(seed).integers(0, 256, (n_slices, spec.size, spec.size, spec.channels),
                                                   dtype=np.uint8)

    def run() -> None:
        for start in range(0, n_slices, REFERENCE_BATCH_SIZE):
            model.infer(images[start : start + REFERENCE_BATCH_SIZE])

    return run


def interleaved_runs(workloads: list[Callable[[], object]], repeats: int, progress: bool = False) -> list[list[float]]:
    """Seconds of each workload per round: every round runs each workload once, in order.

    Interleaving spreads the machine's drift in speed over all workloads alike, so their ratios hold
    even when the absolute times move.
    """
    from tqdm import tqdm

    runs: list[list[float]] = [[] for _ in workloads]
    for _ in tqdm(range(repeats), desc="timing rounds", unit="round", disable=not progress):
        for work, times in zip(workloads, runs, strict=True):
            start = time.perf_counter()
            work()
            times.append(time.perf_counter() - start)
    return runs


def cold_model_load(models_dir: str | Path, batch_size: int = 16, timeout: float = 600.0,
                    runtime: str | None = None) -> dict:
    """``Cascade.from_dir`` timed in a fresh Python process (nothing imported, nothing cached in memory).

    Returns the child's ``pid``, ``tensorflow_import_seconds``, ``other_imports_seconds`` (keras,
    brainseg), ``model_load_seconds`` (the load alone), its ``runtime``, ``first_call_seconds`` (one slice, which
    builds each network's graph) and ``onnx_graphs_cached`` (whether the ONNX cache held both graphs beforehand;
    None on TensorFlow) and ``peak_rss_mb_after_one_batch`` (the memory a process serving the cascade needs:
    loaded, then one full batch run). ``runtime``: the child's (default: this process's setting).
    """
    env = dict(os.environ)
    # The child must import this same brainseg, installed or not.
    root = str(Path(brainseg.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if runtime is not None:
        env[RUNTIME_ENV] = runtime
    done = subprocess.run([sys.executable, "-c", _COLD_LOAD_SCRIPT, str(Path(models_dir).resolve()), str(batch_size)],
                          capture_output=True, text=True, env=env, timeout=timeout, check=False)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"cold model load failed (exit {done.returncode}): {done.stderr.strip()[-2000:]}")
    return json.loads(lines[-1])


def bench(models_dir: str | Path, manifest: pd.DataFrame, max_patients: int = 10, batch_size: int = 16,
          repeats: int = 3, reference_size: int = 256, reference_slices: int = 36, reference_width: float = 1.0,
          cold_load: bool = True, compare_runtimes: tuple[str, ...] = ()) -> dict:
    """Time the cascade per patient (decoded slices in memory, both models on every slice) against a reference.

    The reference workload (``reference_workload``; by default the seed ResUNet on 36 slices of 256x256)
    and the cascade on each patient are timed interleaved, ``repeats`` rounds; each patient's time and the
    reference's are medians of their runs. ``patient_over_reference`` (median patient / reference) is the
    figure that compares across machines; the absolute seconds describe this machine only.

    ``compare_runtimes``: other inference runtimes to time the same cascade on, in the same rounds (so the
    machine's drift falls on all alike); reported under ``other_runtimes`` with their own ratios.
    """
    if repeats < 1:
        raise ValueError("repeats must be at least 1")
    patients = list(dict.fromkeys(manifest["patient_id"]))[:max_patients]
    if not patients:
        raise ValueError("no patients to benchmark")

    others = OtherWorkMeter()  # other work on the machine slows the absolute times (the ratio is meant to hold)
    # First, while this process has not read the models yet, so the child pays for the whole load.
    cold = cold_model_load(models_dir, batch_size) if cold_load else None

    import keras  # noqa: F401  (imported before the clock starts: model_load_seconds is the load alone)

    start = time.perf_counter()
    cascade = Cascade.from_dir(models_dir, batch_size=batch_size)
    load_seconds = time.perf_counter() - start

    # Decode every patient up front: decoding is not the cascade's time, and the rounds must run back to back.
    images, numbers, decode_seconds = {}, {}, []
    for patient in patients:
        start = time.perf_counter()
        rows = manifest[manifest["patient_id"] == patient]
        images[patient], _ = load_slices(rows)
        numbers[patient] = rows["slice"].to_numpy()  # a segmenter reading neighbouring slices needs them
        decode_seconds.append(time.perf_counter() - start)
    n_slices = [len(images[p]) for p in patients]

    run_reference, reference = reference_workload(reference_size, reference_slices, reference_width)
    start = time.perf_counter()
    cascade.predict(images[patients[0]], numbers[patients[0]])  # traces the cascade's functions
    first_call_seconds = time.perf_counter() - start
    run_reference()  # traces the reference's function

    others_by_runtime = {runtime: Cascade.from_dir(models_dir, batch_size=batch_size, runtime=runtime)
                         for runtime in dict.fromkeys(compare_runtimes) if runtime != cascade.classifier.runtime}
    for other in others_by_runtime.values():
        other.predict(images[patients[0]], numbers[patients[0]])  # builds its graphs before the clock runs
    others_cold = {runtime: cold_model_load(models_dir, batch_size, runtime=runtime) if cold_load else None
                   for runtime in others_by_runtime}

    workloads: list[Callable[[], object]] = [run_reference]
    for timed in (cascade, *others_by_runtime.values()):
        workloads += [lambda c=timed, p=patient: c.predict(images[p], numbers[p]) for patient in patients]
    reference_runs, *all_patient_runs = interleaved_runs(workloads, repeats)
    reference_seconds = float(np.median(reference_runs))
    timings = [_patient_timings(patients, all_patient_runs[i * len(patients) : (i + 1) * len(patients)], n_slices,
                                reference_seconds) for i in range(1 + len(others_by_runtime))]

    review_tools = _time_review_tools(cascade, images[patients[0]])
    result = {
        "patient_over_reference": timings[0]["patient_over_reference"],
        "patient_over_reference_goal": PATIENT_OVER_REFERENCE_GOAL,
        "reference_seconds": reference_seconds,
        "reference": reference,
        "ms_per_slice": timings[0]["ms_per_slice"],
        "patient_seconds": timings[0]["patient_seconds"],
        "slices_per_patient": {"median": float(np.median(n_slices)), "max": int(max(n_slices))},
        "decode_seconds_per_patient": {"median": float(np.median(decode_seconds))},
        "model_load_seconds": load_seconds,
        "model_load_seconds_cold": None if cold is None else cold["model_load_seconds"],
        "cold_load": cold,
        "first_call_seconds": first_call_seconds,
        "review_tools_ms_per_slice": review_tools,
        "peak_rss_mb": peak_rss_mb(),
        "n_patients": len(patients),
        "batch_size": batch_size,
        "repeats": repeats,
        "reference_runs_seconds": [float(t) for t in reference_runs],
        "patient_runs_seconds": timings[0]["patient_runs_seconds"],
        "patient_slices": dict(zip(patients, n_slices, strict=True)),
        "runtime": runtime_versions(cascade.classifier.runtime),
        "models": {"classifier": {"input": cascade.classifier.spec.to_dict(), "sha256": cascade.classifier.sha256},
                   "segmenter": {"input": cascade.segmenter.spec.to_dict(), "sha256": cascade.segmenter.sha256}},
        "machine": machine_description(),
        "other_processes_cpu_share": others.share(),
    }
    if others_by_runtime:
        result["other_runtimes"] = {runtime: {"runtime": runtime_versions(runtime), **timing,
                                              "cold_load": others_cold[runtime]}
                                    for runtime, timing in zip(others_by_runtime, timings[1:], strict=True)}
    result["notes"] = {
        "patient_over_reference": "median whole-patient seconds / reference_seconds, timed interleaved in this "
                                  f"process; the goal is <= {PATIENT_OVER_REFERENCE_GOAL}. Compare this across "
                                  "machines, not the absolute seconds.",
        "reference_seconds": f"median of {repeats} runs of the reference workload (see 'reference'), one per round",
        "patient_seconds": f"each patient's time is the median of its {repeats} runs (patient_runs_seconds); "
                           "median/max/mean are over patients. Slices are decoded beforehand and not timed.",
        "ms_per_slice": "sum of the per-patient medians / all their slices",
        "model_load_seconds": "Cascade.from_dir in this process, TensorFlow and Keras already imported",
        "model_load_seconds_cold": "Cascade.from_dir in a fresh Python process (pid in cold_load), imports "
                                   "timed apart: cold_load.tensorflow_import_seconds, cold_load.other_imports_seconds; "
                                   "its first call on one slice (building the runtime's graphs) in "
                                   "cold_load.first_call_seconds"
                                   if cold is not None else "not measured (cold_load=False)",
        "runtime": "what executed the cascade's networks; the reference always runs on TensorFlow",
        "other_runtimes": "the same cascade on other runtimes, timed in the same rounds as the patients above; "
                          "each ratio is over the same reference_seconds",
    }
    return result


def _patient_timings(patients: list[str], runs: list[list[float]], n_slices: list[int],
                     reference_seconds: float) -> dict:
    """One cascade's per-patient runs, summarised: each patient's time is the median of its runs; the ratio to
    the reference is the median patient's."""
    seconds = np.asarray([np.median(patient_runs) for patient_runs in runs])
    return {"patient_over_reference": float(np.median(seconds)) / reference_seconds,
            "ms_per_slice": float(1000 * seconds.sum() / sum(n_slices)),
            "patient_seconds": {"median": float(np.median(seconds)), "max": float(seconds.max()),
                                "mean": float(seconds.mean())},
            "patient_runs_seconds": {p: [float(t) for t in r] for p, r in zip(patients, runs, strict=True)}}


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
