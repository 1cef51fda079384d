"""Candidates' inference cost: which networks each candidate runs, how rows combine, and an end-to-end run on tiny
networks (no timing is asserted: only what the report holds)."""

import json
import math

import pytest

from brainseg.errors import DataError
from brainseg.experiments.network_cost import (
    SHIPPED,
    Candidate,
    Network,
    bench_patient_ratio,
    candidate_rows,
    group_candidates,
    network_cost,
    plan_candidates,
    shipped_candidate,
)
from brainseg.settings import inference_runtime
from brainseg.training.train import config_with_overrides, recipe

CLASSIFIER = Network("classifier", 128, 0.5)
SEGMENTER = Network("segmenter", 128, 1.0)
SHIPPED_PAIR = Candidate((CLASSIFIER, SEGMENTER))

VARIANT_PLAN = {
    "runs": {
        "classifier-baseline": {"model": "classifier", "overrides": {}},
        "classifier-wide": {"model": "classifier", "overrides": {"width": 1.0}},
        "segmenter-baseline": {"model": "segmenter", "overrides": {"tversky_alpha": 0.7}},
        "segmenter-dice_bce": {"model": "segmenter", "overrides": {"loss": "dice_bce"}},
    },
    "variants": [
        {"name": "baseline", "change": "-"},
        {"name": "cut 0.6", "change": "-", "inference": {"mask_threshold": 0.6}},
        {"name": "tta", "change": "-", "inference": {"mirror_tta": True}},
        {"name": "wide", "change": "-", "classifier_run": "classifier-wide"},
        {"name": "ensemble", "change": "-", "ensemble_with": ["segmenter-dice_bce"]},
    ],
}


def test_network_of_a_config_keeps_what_sets_the_cost():
    network = Network.of(config_with_overrides(recipe("segmenter", "cpu"), context_slices=1, input_size=192))
    assert (network.model, network.input_size, network.width, network.context_slices) == ("segmenter", 192, 1.0, 1)
    assert network.spec.channels == 9
    assert network.label == "segmenter 192x192 width 1, 9 channels"
    assert Network.of(recipe("classifier", "cpu")) == CLASSIFIER


def test_plan_variants_become_candidates():
    candidates = plan_candidates(VARIANT_PLAN, SHIPPED_PAIR)
    assert candidates["baseline"] == SHIPPED_PAIR  # a loss change retrains the same networks
    assert candidates["cut 0.6"] == SHIPPED_PAIR
    assert candidates["tta"] == Candidate((CLASSIFIER, SEGMENTER), passes=2)
    assert candidates["wide"] == Candidate((Network("classifier", 128, 1.0), SEGMENTER))
    assert candidates["ensemble"] == Candidate((CLASSIFIER, SEGMENTER, SEGMENTER))


def test_a_plan_of_runs_replaces_the_shipped_network_of_its_kind():
    plan = {"runs": {"segmenter-context_1": {"model": "segmenter", "overrides": {"context_slices": 1}},
                     "classifier-input_256": {"model": "classifier", "overrides": {"input_size": 256}}}}
    candidates = plan_candidates(plan, SHIPPED_PAIR)
    assert candidates["segmenter-context_1"] == Candidate((CLASSIFIER, Network("segmenter", 128, 1.0,
                                                                               context_slices=1)))
    assert candidates["classifier-input_256"] == Candidate((Network("classifier", 256, 0.5), SEGMENTER))


def test_candidates_running_the_same_networks_are_grouped_after_the_shipped_ones():
    groups = group_candidates(SHIPPED_PAIR, plan_candidates(VARIANT_PLAN, SHIPPED_PAIR).items())
    assert list(groups.values()) == [[SHIPPED, "baseline", "cut 0.6"], ["tta"], ["wide"], ["ensemble"]]


def test_rows_add_the_networks_difference_to_the_shipped_cascade():
    wide = Network("classifier", 128, 1.0)
    ratios = {CLASSIFIER: 0.1, SEGMENTER: 0.3, wide: 0.4}
    groups = {SHIPPED_PAIR: [SHIPPED], Candidate((wide, SEGMENTER)): ["wide"],
              Candidate((CLASSIFIER, SEGMENTER), 2): ["tta"]}
    shipped, wide_row, tta = candidate_rows(groups, ratios, SHIPPED_PAIR, shipped_patient_ratio=0.45)
    assert shipped["networks_over_reference"] == pytest.approx(0.4)
    assert shipped["estimated_patient_over_reference"] == pytest.approx(0.45)
    assert shipped["within_goal"] is True
    assert wide_row["extra_over_shipped"] == pytest.approx(0.3)
    assert wide_row["estimated_patient_over_reference"] == pytest.approx(0.75)
    assert wide_row["within_goal"] is False
    assert tta["networks_over_reference"] == pytest.approx(0.8)
    assert tta["networks"] == [CLASSIFIER.label, SEGMENTER.label]
    # Without a bench record nothing is estimated.
    (row, *_) = candidate_rows(groups, ratios, SHIPPED_PAIR, shipped_patient_ratio=None)
    assert row["estimated_patient_over_reference"] is None and row["within_goal"] is None


def _write_sidecars(models_dir, **classifier_overrides):
    for model, overrides in (("classifier", classifier_overrides), ("segmenter", {})):
        config = config_with_overrides(recipe(model, "cpu"), **overrides)
        (models_dir / f"{model}.json").write_text(json.dumps({"train_config": config.to_dict()}))


def test_shipped_candidate_reads_the_sidecars(tmp_path):
    _write_sidecars(tmp_path, width=0.25)
    assert shipped_candidate(tmp_path) == Candidate((Network("classifier", 128, 0.25), SEGMENTER))
    (tmp_path / "segmenter.json").unlink()
    with pytest.raises(FileNotFoundError, match="segmenter"):
        shipped_candidate(tmp_path)
    (tmp_path / "classifier.json").write_text(json.dumps({"input_spec": {"size": 128, "scaling": "zscore"}}))
    with pytest.raises(DataError, match="train_config"):
        shipped_candidate(tmp_path)


def test_network_cost_end_to_end_on_tiny_networks(tmp_path):
    _write_sidecars(tmp_path, input_size=32, width=0.125)
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"runs": {"classifier-wider": {"model": "classifier",
                                                               "overrides": {"input_size": 32, "width": 0.25}}}}))
    bench = tmp_path / "bench.json"
    bench.write_text(json.dumps({"patient_over_reference": 0.4, "runtime": {"runtime": inference_runtime()}}))
    report = network_cost([plan], tmp_path, bench, repeats=2, n_slices=4, reference_size=32, reference_width=0.125,
                          progress=False)
    labels = [network["label"] for network in report["networks"]]
    assert labels == ["classifier 32x32 width 0.125", "segmenter 128x128 width 1", "classifier 32x32 width 0.25"]
    assert all(network["over_reference"] > 0 and math.isfinite(network["over_reference"])
               for network in report["networks"])
    assert [row["candidates"] for row in report["rows"]] == [[SHIPPED], ["classifier-wider"]]
    shipped, wider = report["rows"]
    assert shipped["estimated_patient_over_reference"] == pytest.approx(0.4)
    assert wider["estimated_patient_over_reference"] == pytest.approx(0.4 + wider["extra_over_shipped"])
    assert len(report["rounds"]["reference_seconds"]) == 2
    assert report["shipped_patient_over_reference"] == 0.4
    assert report["runtime"]["runtime"] == inference_runtime()


def test_an_estimate_only_adds_to_a_bench_of_the_same_runtime(tmp_path):
    bench = tmp_path / "bench.json"
    assert bench_patient_ratio(bench, "onnxruntime") is None  # no record
    bench.write_text(json.dumps({"patient_over_reference": 0.4, "runtime": {"runtime": "onnxruntime"}}))
    assert bench_patient_ratio(bench, "onnxruntime") == 0.4
    assert bench_patient_ratio(bench, "tensorflow") is None
    bench.write_text(json.dumps({"patient_over_reference": 0.45}))  # written before runtimes were recorded
    assert bench_patient_ratio(bench, "tensorflow") == 0.45
    assert bench_patient_ratio(bench, "onnxruntime") is None
