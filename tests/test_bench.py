"""The benchmark's bookkeeping: ratio to the in-process reference, medians of runs, cold load elsewhere.

Behaviour only: nothing here asserts that anything is fast (timings depend on the machine).
"""

import json
import os

import numpy as np
import pytest

from brainseg.core.data import scan_dataset
from brainseg.core.networks import SEED_SEGMENTER_PARAMS
from brainseg.evaluation.bench import bench, interleaved_runs, reference_model, reference_workload
from brainseg.settings import RUNTIMES, inference_runtime

REPEATS = 3
OTHER_RUNTIME = next(runtime for runtime in RUNTIMES if runtime != inference_runtime())


@pytest.fixture(scope="module")
def result(tiny_models_dir, demo_dir) -> dict:
    # A small reference (32x32, quarter width, 4 slices) keeps the test quick; the default is the seed ResUNet.
    # The runtime the cascade runs on is listed too: it must not be timed twice.
    return bench(tiny_models_dir, scan_dataset(demo_dir), max_patients=2, repeats=REPEATS,
                 reference_size=32, reference_slices=4, reference_width=0.25,
                 compare_runtimes=(OTHER_RUNTIME, inference_runtime()))


def test_result_has_the_keys_callers_use(result):
    for key in ("ms_per_slice", "model_load_seconds", "model_load_seconds_cold", "peak_rss_mb", "reference_seconds",
                "patient_over_reference", "first_call_seconds"):
        assert isinstance(result[key], float) and result[key] > 0, key
    assert set(result["patient_seconds"]) == {"median", "max", "mean"}
    assert set(result["review_tools_ms_per_slice"]) == {"tta_uncertainty", "grad_cam"}
    assert {"cpu", "cores", "tensorflow"} <= set(result["machine"])
    assert 0.0 <= result["other_processes_cpu_share"] <= 1.0  # Linux: read from /proc/stat
    assert result["slices_per_patient"]["median"] > 0
    assert result["n_patients"] == 2 and result["repeats"] == REPEATS
    assert result["reference"]["input_size"] == 32 and result["reference"]["slices"] == 4
    assert {"model_load_seconds", "model_load_seconds_cold", "patient_seconds", "patient_over_reference"} <= set(
        result["notes"])
    json.dumps(result)  # written as bench.json


def test_patient_time_is_the_median_of_its_runs(result):
    runs = result["patient_runs_seconds"]
    assert len(runs) == 2 and all(len(r) == REPEATS for r in runs.values())
    per_patient = np.array([np.median(r) for r in runs.values()])
    assert result["patient_seconds"]["median"] == pytest.approx(np.median(per_patient))
    assert result["patient_seconds"]["max"] == pytest.approx(per_patient.max())
    assert result["patient_seconds"]["mean"] == pytest.approx(per_patient.mean())
    slices = [result["patient_slices"][p] for p in runs]
    assert result["ms_per_slice"] == pytest.approx(1000 * per_patient.sum() / sum(slices))


def test_ratio_is_median_patient_over_median_reference(result):
    assert len(result["reference_runs_seconds"]) == REPEATS
    assert result["reference_seconds"] == pytest.approx(np.median(result["reference_runs_seconds"]))
    assert result["patient_over_reference"] == pytest.approx(
        result["patient_seconds"]["median"] / result["reference_seconds"])


def test_another_runtime_is_timed_in_the_same_rounds_and_reported_apart(result):
    assert result["runtime"]["runtime"] == inference_runtime()
    assert list(result["other_runtimes"]) == [OTHER_RUNTIME]
    other = result["other_runtimes"][OTHER_RUNTIME]
    assert other["runtime"]["runtime"] == OTHER_RUNTIME
    assert set(other["patient_runs_seconds"]) == set(result["patient_runs_seconds"])
    assert all(len(runs) == REPEATS for runs in other["patient_runs_seconds"].values())
    medians = [np.median(runs) for runs in other["patient_runs_seconds"].values()]
    assert other["patient_over_reference"] == pytest.approx(np.median(medians) / result["reference_seconds"])
    assert other["patient_runs_seconds"] != result["patient_runs_seconds"]  # its own runs, not the cascade's
    assert other["cold_load"]["runtime"] == OTHER_RUNTIME  # its fresh process ran on it too
    assert other["cold_load"]["pid"] != result["cold_load"]["pid"]


def test_cold_load_ran_in_another_process(result):
    cold = result["cold_load"]
    assert cold["pid"] != os.getpid()
    assert result["model_load_seconds_cold"] == cold["model_load_seconds"]
    assert cold["tensorflow_import_seconds"] > 0 and cold["other_imports_seconds"] >= 0
    # The child also pays for its first call, which builds the runtime's graphs.
    assert cold["runtime"] == result["runtime"]["runtime"]
    assert cold["first_call_seconds"] > 0 and cold["peak_rss_mb_after_one_batch"] > 0
    assert (cold["onnx_graphs_cached"] is None) == (cold["runtime"] == "tensorflow")


def test_rounds_interleave_every_workload():
    log = []
    workloads = [lambda name=name: log.append(name) for name in ("reference", "a", "b")]
    runs = interleaved_runs(workloads, repeats=3)
    assert log == ["reference", "a", "b"] * 3
    assert [len(r) for r in runs] == [3, 3, 3]


def test_reference_defaults_to_the_seed_resunet_with_fixed_weights():
    _, description = reference_workload()  # built, not run
    assert description["network"] == "seed ResUNet"
    assert (description["input_size"], description["width"], description["slices"]) == (256, 1.0, 36)
    assert description["parameters"] == SEED_SEGMENTER_PARAMS
    first, again, other = (reference_model(32, 0.25, seed) for seed in (0, 0, 1))
    assert all(np.array_equal(a, b) for a, b in zip(first.model.get_weights(), again.model.get_weights(), strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(first.model.get_weights(), other.model.get_weights(),
                                                        strict=True))


def test_other_work_share_leaves_out_this_process_and_its_children(monkeypatch):
    from brainseg.evaluation import bench as bench_module

    readings = {"busy": 100.0, "own": 10.0, "wall": 50.0}
    monkeypatch.setattr(bench_module, "_machine_busy_cpu_seconds", lambda: readings["busy"])
    monkeypatch.setattr(bench_module, "_own_cpu_seconds", lambda: readings["own"])
    monkeypatch.setattr(bench_module.time, "perf_counter", lambda: readings["wall"])
    monkeypatch.setattr(bench_module.os, "cpu_count", lambda: 2)
    meter = bench_module.OtherWorkMeter()
    # 2 s of wall clock on 2 cores: 4 CPU seconds of capacity; the machine used 3, this process 1 of them.
    readings.update(busy=103.0, own=11.0, wall=52.0)
    assert meter.share() == pytest.approx(0.5)
    readings.update(own=13.0)  # all of it this process's own: nothing else ran
    assert meter.share() == 0.0
    monkeypatch.setattr(bench_module, "_machine_busy_cpu_seconds", lambda: None)  # not Linux
    assert meter.share() is None
