"""What each candidate recipe would cost at inference, measured before anyone trains it.

A network's inference time depends on its architecture and input (size, width, channels), not on its weights,
so each candidate's networks are built with random weights and run on the speed reference's workload (36
random slices at batch 16, through the cascade's own path on the configured runtime, ``BRAINSEG_RUNTIME``),
interleaved with the reference itself (the seed ResUNet at 256, on TensorFlow) in the same process; each
network's cost is the median over rounds of its time / that round's reference time, a ratio that holds across
machines of different speed.

A candidate is the set of networks the cascade would run on every slice (``passes`` 2 for mirrored test-time
augmentation). Its whole-patient estimate adds the difference between its networks' cost and the shipped
networks' to the shipped cascade's measured ``patient_over_reference`` (``brainseg bench``): decoding,
resizing and post-processing do not change with the networks. The estimate is arithmetic on two measurements,
and the report says so.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from brainseg.core.preprocess import InputSpec
from brainseg.errors import DataError
from brainseg.evaluation.bench import (
    PATIENT_OVER_REFERENCE_GOAL,
    REFERENCE_BATCH_SIZE,
    OtherWorkMeter,
    batched_workload,
    interleaved_runs,
    machine_description,
    reference_workload,
)
from brainseg.inference.cascade import LoadedModel
from brainseg.inference.runtimes import runtime_versions
from brainseg.settings import inference_runtime
from brainseg.training.train import TrainConfig, config_with_overrides, recipe

SHIPPED = "shipped models"


@dataclass(frozen=True)
class Network:
    """The part of a trained model that sets its inference cost."""

    model: str  # "classifier" or "segmenter"
    input_size: int
    width: float
    scaling: str = "zscore"
    context_slices: int = 0

    @classmethod
    def of(cls, config: TrainConfig) -> Network:
        return cls(config.model, config.input_size, config.width, config.scaling, config.context_slices)

    @classmethod
    def of_sidecar(cls, sidecar: dict) -> Network:
        """The network a model's sidecar (``models/<role>.json``) records it was trained as."""
        if "train_config" not in sidecar:
            raise DataError("a model's sidecar without its train_config does not say which network it is")
        return cls.of(TrainConfig(**sidecar["train_config"]))

    @property
    def spec(self) -> InputSpec:
        return InputSpec(self.input_size, self.scaling, self.context_slices)  # type: ignore[arg-type]

    @property
    def label(self) -> str:
        channels = f", {self.spec.channels} channels" if self.context_slices else ""
        return f"{self.model} {self.input_size}x{self.input_size} width {self.width:g}{channels}"


@dataclass(frozen=True)
class Candidate:
    """The networks the cascade runs on every slice, each ``passes`` times (2: mirrored test-time augmentation)."""

    networks: tuple[Network, ...]
    passes: int = 1


def shipped_candidate(models_dir: str | Path) -> Candidate:
    """The shipped models' networks, from their sidecars' training configs."""
    networks = []
    for role in ("classifier", "segmenter"):
        sidecar = Path(models_dir) / f"{role}.json"
        if not sidecar.is_file():
            raise FileNotFoundError(f"{sidecar}: the shipped {role}'s sidecar is needed for its architecture")
        networks.append(Network.of_sidecar(json.loads(sidecar.read_text())))
    return Candidate(tuple(networks))


def plan_candidates(plan: dict, shipped: Candidate) -> dict[str, Candidate]:
    """Candidates a plan (``models/*_plan.json``) describes, by name.

    A plan with ``variants`` (the ablation's) gives one per variant: its classifier run, its segmenter runs (an
    ensemble pays for each) and mirrored TTA's second pass. A plan of ``runs`` alone gives one per run: the
    shipped models with that run's network in place of the shipped one of its kind.
    """
    from brainseg.experiments.ablation import Variant

    runs = {name: Network.of(config_with_overrides(recipe(spec["model"], spec.get("recipe", "cpu")),
                                                   **spec.get("overrides", {})))
            for name, spec in plan["runs"].items()}
    if "variants" not in plan:
        return {name: Candidate(tuple(network if shipped_one.model == network.model else shipped_one
                                      for shipped_one in shipped.networks))
                for name, network in runs.items()}
    candidates = {}
    for record in plan["variants"]:
        variant = Variant(**record)
        networks = (runs[variant.classifier_run], *(runs[name] for name in variant.segmenter_runs))
        candidates[variant.name] = Candidate(networks, 2 if variant.settings["mirror_tta"] else 1)
    return candidates


def group_candidates(shipped: Candidate, named: Iterable[tuple[str, Candidate]]) -> dict[Candidate, list[str]]:
    """Candidates that run the same networks, together (most changes only retrain the shipped networks), with
    the shipped models' group first."""
    groups: dict[Candidate, list[str]] = {shipped: [SHIPPED]}
    for name, candidate in named:
        groups.setdefault(candidate, []).append(name)
    return groups


def network_workload(network: Network, n_slices: int, seed: int = 0) -> Callable[[], None]:
    """A callable running ``network`` (random weights) on ``n_slices`` random slices at the reference's batch."""
    from brainseg.core.networks import build_classifier, build_segmenter

    build = build_classifier if network.model == "classifier" else build_segmenter
    model = LoadedModel(network.model, build(network.input_size, network.width, channels=network.spec.channels),
                        network.spec, Path(f"<{network.label}>"), "", {})
    return batched_workload(model, n_slices, seed)


def measure_networks(networks: list[Network], repeats: int = 7, n_slices: int = 36, reference_size: int = 256,
                     reference_width: float = 1.0, progress: bool = True) -> tuple[dict[Network, float], dict]:
    """Each network's time on ``n_slices`` / the reference's, median over ``repeats`` interleaved rounds.

    Returns the ratios and a record of the rounds (reference description, per-round seconds).
    """
    if repeats < 1:
        raise ValueError("repeats must be at least 1")
    run_reference, reference = reference_workload(reference_size, n_slices, reference_width)
    workloads = [network_workload(network, n_slices) for network in networks]
    tf_logger = logging.getLogger("tensorflow")
    level = tf_logger.level
    tf_logger.setLevel(logging.ERROR)  # one tf.function per network reads to TensorFlow as "excessive retracing"
    try:
        for work in (run_reference, *workloads):
            work()  # traces each function before the clock runs
    finally:
        tf_logger.setLevel(level)
    seconds = np.asarray(interleaved_runs([run_reference, *workloads], repeats, progress)).T  # rounds x workloads
    ratios = np.median(seconds[:, 1:] / seconds[:, :1], axis=0)
    record = {"reference": reference, "repeats": repeats, "slices": n_slices,
              "reference_seconds": [float(t) for t in seconds[:, 0]],
              "network_seconds": {network.label: [float(t) for t in seconds[:, i + 1]]
                                  for i, network in enumerate(networks)}}
    return {network: float(ratio) for network, ratio in zip(networks, ratios, strict=True)}, record


def candidate_rows(groups: dict[Candidate, list[str]], network_ratios: dict[Network, float], shipped: Candidate,
                   shipped_patient_ratio: float | None) -> list[dict]:
    """One row per group: its networks' cost, the difference from the shipped networks', and the estimated
    whole patient (shipped cascade's measured ratio + that difference; None without a bench record)."""
    def cost(candidate: Candidate) -> float:
        return candidate.passes * sum(network_ratios[network] for network in candidate.networks)

    shipped_cost = cost(shipped)
    rows = []
    for candidate, names in groups.items():
        extra = cost(candidate) - shipped_cost
        estimate = None if shipped_patient_ratio is None else shipped_patient_ratio + extra
        rows.append({"candidates": names, "networks": [network.label for network in candidate.networks],
                     "passes": candidate.passes, "networks_over_reference": cost(candidate),
                     "extra_over_shipped": extra, "estimated_patient_over_reference": estimate,
                     "within_goal": None if estimate is None else bool(estimate <= PATIENT_OVER_REFERENCE_GOAL)})
    return rows


def network_cost(plans: list[str | Path], models_dir: str | Path, bench_record: str | Path | None = None,
                 repeats: int = 7, n_slices: int = 36, reference_size: int = 256, reference_width: float = 1.0,
                 progress: bool = True) -> dict:
    """Measure every candidate of ``plans`` against the shipped models (see the module's docstring)."""
    shipped = shipped_candidate(models_dir)
    named = [item for plan in plans for item in plan_candidates(json.loads(Path(plan).read_text()), shipped).items()]
    groups = group_candidates(shipped, named)
    networks = list(dict.fromkeys(network for candidate in groups for network in candidate.networks))

    others = OtherWorkMeter()
    ratios, rounds = measure_networks(networks, repeats, n_slices, reference_size, reference_width, progress)
    runtime = inference_runtime()
    shipped_patient_ratio = bench_patient_ratio(bench_record, runtime)
    return {
        "rows": candidate_rows(groups, ratios, shipped, shipped_patient_ratio),
        "networks": [{**asdict(network), "label": network.label, "over_reference": ratios[network]}
                     for network in networks],
        "shipped_patient_over_reference": shipped_patient_ratio,
        "bench_record": None if shipped_patient_ratio is None else _shown(Path(bench_record)),
        "patient_over_reference_goal": PATIENT_OVER_REFERENCE_GOAL,
        "plans": [str(plan) for plan in plans],
        "rounds": rounds,
        "runtime": runtime_versions(runtime),
        "machine": machine_description(),
        "other_processes_cpu_share": others.share(),
        "notes": {
            "over_reference": f"median over rounds of the network's time on {n_slices} random slices at batch "
                              f"{REFERENCE_BATCH_SIZE} on the runtime in 'runtime' / the same round's reference "
                              "time on TensorFlow (random weights: the time does not depend on them)",
            "networks_over_reference": "sum over the candidate's networks, times its passes (2 for mirrored TTA)",
            "estimated_patient_over_reference": "an estimate, not a measurement: the shipped cascade's measured "
                                                "patient_over_reference (bench_record) + extra_over_shipped",
        },
    }


def bench_patient_ratio(bench_record: str | Path | None, runtime: str) -> float | None:
    """The shipped cascade's whole-patient ratio from a ``brainseg bench`` record, if there is one and it timed
    ``runtime``: an estimate may only add differences measured on the runtime the bench measured (a record
    without a runtime predates ONNX Runtime: TensorFlow)."""
    if not bench_record or not Path(bench_record).is_file():
        return None
    bench = json.loads(Path(bench_record).read_text())
    if bench.get("runtime", {}).get("runtime", "tensorflow") != runtime:
        return None
    return float(bench["patient_over_reference"])


def _shown(path: Path) -> str:
    """``path`` relative to the working folder when inside it (records stay the same on every checkout)."""
    relative = os.path.relpath(path)
    return str(path) if relative.startswith("..") else relative
