"""Fill a prediction store for a Kaggle-layout folder, resumably: patients already stored are skipped.

``local`` runs the cascade in this process, one patient at a time (batches of ``batch_size`` slices).
``ray`` runs it on Ray Data: the rows are chunks of up to ``batch_size`` slice paths of one patient,
``map_batches`` sends them to a pool of actors that each load the models once, the actors read the slices
and return the outputs already quantised, and this process writes each patient's entry as soon as all its
chunks are back (a segmenter reading neighbouring slices gets whole patients as chunks, so no slice loses
its neighbours at a chunk's edge). Chunks start at each patient's slice 0 exactly like ``Cascade.predict``'s
batches, so both engines (and the live cascade) feed the networks identical batches and store bit-identical entries.

Ray starts locally (``num_cpus`` of this machine, no dashboard) unless an address is given or ``RAY_ADDRESS``
is set, in which case the same code runs on that cluster; its workers need brainseg installed and the data
folder and models folder at the same paths (shared storage). The store is written by this process only.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from brainseg.core.data import SLICE_SHAPE, load_slices
from brainseg.core.preprocess import InputSpec
from brainseg.errors import BrainsegError
from brainseg.inference.cascade import Cascade
from brainseg.inference.store import InputIdentity, ModelsKey, PredictionStore, quantise

ENGINES = ("local", "ray")


@dataclass
class ScoreSummary:
    """What one scoring run did."""

    engine: str
    patients: int
    already_stored: int
    scored_patients: int
    scored_slices: int
    seconds: float

    def to_dict(self) -> dict:
        return asdict(self)


def score_folder(manifest: pd.DataFrame, store: PredictionStore, models_dir: str | Path, engine: str = "local",
                 batch_size: int = 16, progress: bool = True, ray_address: str | None = None,
                 num_cpus: int | None = None, actors: int | None = None) -> ScoreSummary:
    """Score every patient of ``manifest`` that ``store`` lacks (or holds stale) with the models in ``models_dir``."""
    if engine not in ENGINES:
        raise BrainsegError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")
    if batch_size < 1:
        raise BrainsegError(f"batch size must be at least 1, got {batch_size}")
    start = time.perf_counter()
    models = ModelsKey.of_dir(models_dir)
    todo = store.missing(models, manifest)
    work = manifest[manifest["patient_id"].isin(todo)]
    if todo:
        if engine == "local":
            cascade = Cascade.from_dir(models_dir, batch_size)
            _check_models(cascade, models, models_dir)
            score_local(cascade, work, store, progress)
        else:
            score_ray(models_dir, models, work, store, batch_size, progress, ray_address, num_cpus, actors)
    patients = int(manifest["patient_id"].nunique())
    return ScoreSummary(engine, patients, patients - len(todo), len(todo), len(work),
                        round(time.perf_counter() - start, 3))


def score_local(cascade: Cascade, manifest: pd.DataFrame, store: PredictionStore, progress: bool = True) -> None:
    """The cascade in this process, patient by patient; each patient is stored as soon as it is scored."""
    bar = _bar(len(manifest), progress)
    for _, rows in manifest.groupby("patient_id", sort=False):
        store.score(cascade, rows, load_slices(rows)[0])
        bar.update(len(rows))
    bar.close()


def segmenter_context_slices(models_dir: str | Path) -> int:
    """How many neighbouring slices on each side the folder's segmenter reads, from its sidecar (0 without one;
    each actor's ``load_model`` checks the sidecar against the weights)."""
    sidecar = Path(models_dir) / "segmenter.json"
    record = json.loads(sidecar.read_text()).get("input_spec") if sidecar.is_file() else None
    return InputSpec.from_record(record).context_slices if record else 0


def _bar(total: int, progress: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc="scoring", unit="slice", disable=not progress)


def _check_models(cascade: Cascade, expected: ModelsKey, models_dir: str | Path) -> None:
    if ModelsKey.of(cascade) != expected:
        raise BrainsegError(f"{models_dir}: the weights changed while scoring (or differ on this node): "
                            "entries would be filed under the wrong models")


def chunk_rows(manifest: pd.DataFrame, batch_size: int, whole_patients: bool = False) -> list[dict]:
    """One row per chunk of up to ``batch_size`` slices of one patient, starting at its first slice (with
    ``whole_patients``, one chunk per patient: a segmenter reading neighbouring slices needs the whole volume)."""
    chunks = []
    for patient, rows in manifest.groupby("patient_id", sort=False):
        paths = rows["image_path"].astype(str).tolist()
        numbers = rows["slice"].astype(int).tolist()
        step = len(paths) if whole_patients else batch_size
        for start in range(0, len(paths), step):
            chunks.append({"patient_id": str(patient), "start": start, "image_paths": paths[start : start + step],
                           "slice_numbers": numbers[start : start + step]})
    return chunks


class CascadeActor:
    """A Ray Data actor: loads the models once, then scores chunks of slice paths (one network batch each)."""

    def __init__(self, models_dir: str, classifier_sha256: str, segmenter_sha256: str, batch_size: int) -> None:
        from brainseg.runtime import import_tensorflow_quietly

        import_tensorflow_quietly()
        self.cascade = Cascade.from_dir(models_dir, batch_size)
        _check_models(self.cascade, ModelsKey(classifier_sha256, segmenter_sha256), models_dir)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from brainseg.core.data import read_image

        patients, positions, probabilities, maps = [], [], [], []
        for patient, start, paths, numbers in zip(batch["patient_id"], batch["start"], batch["image_paths"],
                                                  batch["slice_numbers"], strict=True):
            images = np.stack([read_image(path) for path in paths])
            chunk_probabilities, chunk_maps = self.cascade.predict_native(images, np.asarray(numbers))
            patients += [str(patient)] * len(paths)
            positions.extend(range(int(start), int(start) + len(paths)))
            probabilities.append(chunk_probabilities)
            maps.append(quantise(chunk_maps))  # a quarter of the bytes back to the driver
        return {"patient_id": np.array(patients), "position": np.array(positions, np.int64),
                "probability": np.concatenate(probabilities), "map": np.concatenate(maps)}


def start_ray(address: str | None = None, num_cpus: int | None = None) -> bool:
    """Connect to ``address`` (or ``RAY_ADDRESS``) or start a local Ray; returns whether this call started it.

    A Ray already initialised in this process is used as it is.
    """
    import ray

    if ray.is_initialized():
        return False
    connecting = address or os.environ.get("RAY_ADDRESS")
    options = {} if connecting else {"num_cpus": num_cpus or os.cpu_count() or 1}
    ray.init(address=address, include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False,
             configure_logging=True, **options)
    return True


def score_ray(models_dir: str | Path, models: ModelsKey, manifest: pd.DataFrame, store: PredictionStore,
              batch_size: int = 16, progress: bool = True, address: str | None = None, num_cpus: int | None = None,
              actors: int | None = None) -> None:
    """Score ``manifest`` on Ray Data (see the module docstring) and write each patient as it completes."""
    import ray

    started = start_ray(address, num_cpus)
    try:
        logging.getLogger("ray.data").setLevel(logging.ERROR)  # before the next line, which warns about itself
        ray.data.DataContext.get_current().enable_progress_bars = False  # ours counts slices stored, below
        # Identity is taken here, before any worker reads a pixel (see InputIdentity.of).
        expected = {str(p): (rows, InputIdentity.of(rows)) for p, rows in manifest.groupby("patient_id", sort=False)}
        chunks = chunk_rows(manifest, batch_size, whole_patients=segmenter_context_slices(models_dir) > 0)
        max_actors = actors or max(1, int(ray.available_resources().get("CPU", 1)))
        dataset = ray.data.from_items(chunks, override_num_blocks=min(len(chunks), 4 * max_actors))
        outputs = dataset.map_batches(
            CascadeActor, batch_size=1, batch_format="numpy", num_cpus=1,
            compute=ray.data.ActorPoolStrategy(min_size=1, max_size=max_actors),
            fn_constructor_kwargs={"models_dir": str(Path(models_dir).resolve()),
                                   "classifier_sha256": models.classifier, "segmenter_sha256": models.segmenter,
                                   "batch_size": batch_size})
        pending: dict[str, dict[int, tuple[float, np.ndarray]]] = {}
        bar = _bar(len(manifest), progress)
        for batch in outputs.iter_batches(batch_size=None, batch_format="numpy"):
            for patient, position, probability, prob_map in zip(batch["patient_id"], batch["position"],
                                                                batch["probability"], batch["map"], strict=True):
                got = pending.setdefault(str(patient), {})
                got[int(position)] = (float(probability), prob_map)
                rows, identity = expected[str(patient)]
                if len(got) == len(rows):
                    ordered = [got[k] for k in range(len(rows))]
                    store.write(models, str(patient), identity, np.array([o[0] for o in ordered], np.float32),
                                np.stack([o[1] for o in ordered]), SLICE_SHAPE[:2])
                    del pending[str(patient)]
            bar.update(len(batch["position"]))
        bar.close()
        if pending:
            raise BrainsegError(f"Ray returned incomplete outputs for {len(pending)} patients: {sorted(pending)[:3]}")
    finally:
        if started:
            ray.shutdown()

