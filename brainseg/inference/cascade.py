"""The two-stage cascade: slice classifier gate, then ResUNet mask for slices called positive.

The expensive part (both networks on every slice) runs once, in batches, and is kept in a
``CascadeResult``; a decision threshold only gates those stored outputs, so moving it never runs a
model again. The segmenter runs on every slice, not just those above today's threshold, for that reason.
"""

from __future__ import annotations

import json
import threading
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from brainseg.core.context import context_rows, lone_rows, stack_context
from brainseg.core.hashing import sha256_of
from brainseg.core.preprocess import InputSpec, prepare_images, upsample_maps
from brainseg.errors import ModelLoadError
from brainseg.inference.runtimes import build_infer, check_runtime
from brainseg.settings import inference_runtime

MASK_THRESHOLD = 0.5  # per-pixel cut on the segmenter's probability map
DEFAULT_THRESHOLD = 0.5  # slice gate used when no operating point file is shipped
DEFAULT_SCALING = {"classifier": "unit", "segmenter": "zscore"}  # the seed's, for models without a sidecar


@dataclass
class LoadedModel:
    """A Keras model with what is needed to feed it: its input spec, file hash, metadata and the runtime that
    executes it (``brainseg.inference.runtimes``; default: ``BRAINSEG_RUNTIME`` or ONNX Runtime)."""

    role: str
    model: object
    spec: InputSpec
    path: Path
    sha256: str
    metadata: dict = field(default_factory=dict)
    runtime: str = field(default_factory=inference_runtime)
    _infer: Callable | None = field(default=None, repr=False)
    _build_lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def infer(self, images: np.ndarray) -> np.ndarray:
        """Run the model on already-resized uint8 slices, with their neighbours' channels if the model reads them
        (scaling happens inside the graph). The first call builds the runtime's graph, once even when the
        dashboard's sessions call it together (a conversion takes seconds)."""
        if self._infer is None:
            with self._build_lock:
                if self._infer is None:
                    self._infer = build_infer(self.model, self.spec, self.runtime, self.sha256)
        return self._infer(images)


@dataclass
class AveragedModel:
    """Models of one role and input spec whose outputs are averaged: an ensemble, which a ``Cascade`` runs like
    one model (it pays each member's inference). Used to score ensembles out of fold
    (``brainseg crossval --ensemble-with``); the shipped cascade runs one model per role."""

    members: list[LoadedModel]

    def __post_init__(self) -> None:
        if not self.members:
            raise ValueError("an averaged model needs at least one member")
        roles = {member.role for member in self.members}
        specs = {member.spec for member in self.members}
        if len(roles) > 1 or len(specs) > 1:
            raise ModelLoadError("an ensemble's members must share a role and an input spec; got "
                                 + ", ".join(f"{m.path} ({m.role}, {m.spec})" for m in self.members))

    @property
    def role(self) -> str:
        return self.members[0].role

    @property
    def spec(self) -> InputSpec:
        return self.members[0].spec

    @property
    def sha256(self) -> list[str]:
        return [member.sha256 for member in self.members]

    def infer(self, images: np.ndarray) -> np.ndarray:
        """The members' outputs on the same inputs, averaged (float32, as each member's)."""
        return np.mean([member.infer(images) for member in self.members], axis=0, dtype=np.float32)


def load_model(path: str | Path, role: str, runtime: str | None = None,
               spec: InputSpec | None = None) -> LoadedModel:
    """Load a ``.keras`` model in Keras safe mode and check it is a ``role`` network, to run on ``runtime``
    (default: ``settings.inference_runtime()``). ``spec``: the input spec, when the caller knows it from elsewhere
    (a training run's config); default the sidecar's.

    Safe mode refuses Python lambdas serialized in the file, so opening a model never runs code
    from it. Raises ModelLoadError (naming the file) if missing, corrupt, or the wrong shape.
    """
    import keras

    import brainseg.core.losses  # noqa: F401  (registers the custom losses a training checkpoint names)

    path = Path(path)
    if role not in DEFAULT_SCALING:
        raise ValueError(f"role must be 'classifier' or 'segmenter', got {role!r}")
    if not path.is_file():
        raise ModelLoadError(f"{path}: {role} model file not found")
    if not zipfile.is_zipfile(path):
        raise ModelLoadError(f"{path}: not a Keras .keras file (corrupt or truncated: not a zip archive)")
    try:
        model = keras.models.load_model(path, compile=False, safe_mode=True)
    except Exception as err:  # Keras raises many types for a damaged archive
        raise ModelLoadError(f"{path}: could not load the {role} model ({type(err).__name__}: {err})") from err

    in_shape, out_shape = tuple(model.input_shape), tuple(model.output_shape)
    if len(in_shape) != 4 or in_shape[1] != in_shape[2] or in_shape[1] is None or in_shape[3] % 3:
        raise ModelLoadError(f"{path}: expected a square image input of 3 channels per slice, model takes {in_shape}")
    size = int(in_shape[1])
    expected_out = (None, 1) if role == "classifier" else (None, size, size, 1)
    if out_shape != expected_out:
        raise ModelLoadError(f"{path}: a {role} should output {expected_out}, this model outputs {out_shape}")

    sidecar = path.with_suffix(".json")
    try:
        metadata = json.loads(sidecar.read_text()) if sidecar.is_file() else {}
    except (json.JSONDecodeError, UnicodeDecodeError) as err:  # truncated or damaged: name the file, no traceback
        raise ModelLoadError(f"{sidecar}: the {role} model's sidecar is not valid JSON ({err})") from err
    if not isinstance(metadata, dict):
        raise ModelLoadError(f"{sidecar}: the {role} model's sidecar should be a JSON object")
    if spec is not None:
        metadata = {**metadata, "input_spec": spec.to_dict()}
    if "input_spec" not in metadata:
        # The scaling cannot be read off the weights: a wrong guess changes every output without an error.
        warnings.warn(f"{path}: no input spec in a sidecar ({sidecar.name}); assuming the seed's "
                      f"'{DEFAULT_SCALING[role]}' scaling. Models exported by `brainseg train --export-dir` carry "
                      "their own.", stacklevel=2)
    spec_dict = metadata.get("input_spec", {"size": size, "scaling": DEFAULT_SCALING[role]})
    spec = InputSpec.from_record(spec_dict)
    if spec.size != size:
        raise ModelLoadError(f"{sidecar}: says input size {spec.size}, the model takes {size}")
    if spec.channels != in_shape[3]:
        raise ModelLoadError(f"{path}: the model takes {in_shape[3]} channels; its sidecar's input spec "
                             f"({spec.context_slices} context slices) means {spec.channels}")
    return LoadedModel(role, model, spec, path, sha256_of(path), metadata,
                       check_runtime(runtime) if runtime else inference_runtime())


def passes_gate(scores: np.ndarray, threshold: float) -> np.ndarray:
    """The gate: a slice goes on to the segmenter's mask when its score is at least ``threshold``.

    Compared in float64 whatever the scores' dtype: numpy compares float32 scores with a Python float in float32,
    so a stored float32 score of 0.7 (0.69999999) passed 0.7 in the cascade and failed it where the same score
    had been read back as float64 (dashboard counts, reports). Every gate in the project goes through here."""
    return np.asarray(scores, dtype=np.float64) >= float(threshold)


def tumor_called(passed_gate: np.ndarray, mask_pixels: np.ndarray) -> np.ndarray:
    """The cascade's slice decision, the one rule every figure uses: through the gate *and* a non-empty mask.

    A slice over the gate whose mask comes out empty is called no tumor (nothing to show a reviewer).
    """
    return np.asarray(passed_gate, bool) & (np.asarray(mask_pixels) > 0)


SLICE_SCORE_MEANINGS = {  # what the gate thresholds under each kind, in words for readers
    "classifier": "the classifier's P(tumor)",
    "classifier+segmenter": "the mean of the classifier's P(tumor) and the segmenter's highest pixel probability",
    "classifier+segmenter+neighbours": "the mean of the classifier's P(tumor) and the segmenter's highest pixel "
                                       "probability, raised to its neighbouring slices' mean when that is higher",
}
SLICE_SCORES = tuple(SLICE_SCORE_MEANINGS)
# Kinds that average the classifier with the segmenter's peak: a drawn pixel (peak >= mask cut) scores >= cut / 2.
COMBINED_SLICE_SCORES = ("classifier+segmenter", "classifier+segmenter+neighbours")


def slice_scores(probabilities: np.ndarray, maps: np.ndarray, kind: str = "classifier",
                 slice_numbers: np.ndarray | None = None) -> np.ndarray:
    """The per-slice score the gate thresholds.

    ``classifier``: the classifier's P(tumor). ``classifier+segmenter``: the mean of that and the
    segmenter's highest pixel probability on the slice, so that either model's strong evidence counts.
    ``classifier+segmenter+neighbours``: that score lifted by the slices above and below (``lift_by_neighbours``;
    ``slice_numbers``: each slice's number in its volume, None for unrelated slices, which keep their own score).
    """
    if kind == "classifier":
        return np.asarray(probabilities, np.float32)
    if kind in COMBINED_SLICE_SCORES:
        peak = maps.reshape(len(maps), -1).max(axis=1) if len(maps) else np.zeros(0, np.float32)
        combined = ((np.asarray(probabilities, np.float32) + peak) / 2).astype(np.float32)
        return combined if kind == "classifier+segmenter" else lift_by_neighbours(combined, slice_numbers)
    raise ValueError(f"unknown slice score {kind!r}; choose one of {SLICE_SCORES}")


def lift_by_neighbours(scores: np.ndarray, slice_numbers: np.ndarray | None) -> np.ndarray:
    """Each slice's score raised to the mean of its two neighbours' scores when that is higher.

    A reader judges a faint slice at a tumor's end by the slices around it; so does this score. Neighbours go by
    slice number in the volume, and a missing one is the slice itself (``context_rows``), so a lone slice
    (``slice_numbers`` None) keeps its score. No score is ever lowered.
    """
    scores = np.asarray(scores, np.float32)
    if slice_numbers is None or len(scores) == 0:
        return scores
    if len(slice_numbers) != len(scores):
        raise ValueError(f"{len(slice_numbers)} slice numbers for {len(scores)} slice scores")
    rows = context_rows(slice_numbers, 1)
    neighbours_mean = (scores[rows[:, 0]] + scores[rows[:, 2]]) / 2
    return np.maximum(scores, neighbours_mean).astype(np.float32)


def slice_score_reach(kind: str) -> int:
    """How many slices on each side a slice score reads: 1 for the neighbour-lifted score, else 0."""
    return 1 if kind == "classifier+segmenter+neighbours" else 0


def describe_slice_score(kind: str) -> str:
    """One line for readers: what the gate thresholds under ``kind``."""
    if kind not in SLICE_SCORE_MEANINGS:
        raise ValueError(f"unknown slice score {kind!r}; choose one of {SLICE_SCORES}")
    return SLICE_SCORE_MEANINGS[kind]


def remove_small_components(masks: np.ndarray, min_size: int, across_slices: bool = False) -> np.ndarray:
    """(N, H, W) bool masks without the connected components smaller than ``min_size`` pixels.

    Never "largest only": gliomas can be multifocal. By default components are 8-connected within each
    slice, so the result does not depend on which slices the gate lets through and thresholds keep
    re-gating stored counts; ``across_slices`` joins them through neighbouring slices too (26-connected).
    """
    if min_size <= 1 or not masks.any():
        return masks
    # Label only where there is something: the non-empty slices (per-slice components only) inside the box
    # bounding every mask pixel. Same result; labelling is the costly step when the dashboard gathers a whole
    # cohort's counts, and most slices are empty and most of a slice is background.
    busy = masks.any(axis=(1, 2)) if not across_slices else np.ones(len(masks), bool)
    rows, cols = np.flatnonzero(masks.any(axis=(0, 2))), np.flatnonzero(masks.any(axis=(0, 1)))
    box = (busy, slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    kept = np.zeros_like(masks)
    kept[box] = _remove_small_components(masks[box], min_size, across_slices)
    return kept


def _remove_small_components(masks: np.ndarray, min_size: int, across_slices: bool) -> np.ndarray:
    from scipy import ndimage

    structure = np.ones((3, 3, 3), bool)
    if not across_slices:
        structure[[0, 2]] = False  # neighbours in the same slice only
    labels, _ = ndimage.label(masks, structure=structure)
    sizes = np.bincount(labels.ravel())
    return masks & (sizes >= min_size)[labels] & (labels > 0)


@dataclass
class CascadeResult:
    """Stored outputs for N slices; thresholds gate them without re-running any model.

    ``classifier_probabilities``: (N,) classifier P(tumor); ``maps``: (N, H, W) segmenter P(tumor pixel)
    at the slices' own size (float32: a float16 copy can round a pixel just under the cut up onto it).
    ``mask_threshold`` and ``min_component_pixels`` (the per-pixel cut and small-component removal)
    turn maps into masks; ``slice_score`` says what the gate thresholds (see ``slice_scores``). All three
    are chosen on validation and stored in ``operating_point.json``. ``slice_numbers``: each slice's number in
    its volume when the slices are one volume's (a neighbour-lifted slice score reads them), else None.
    """

    classifier_probabilities: np.ndarray
    maps: np.ndarray
    mask_threshold: float = MASK_THRESHOLD
    min_component_pixels: int = 0
    slice_score: str = "classifier"
    slice_numbers: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.classifier_probabilities)

    @cached_property
    def probabilities(self) -> np.ndarray:
        """(N,) the slice score the gate thresholds (the classifier's P(tumor) unless combined)."""
        return slice_scores(self.classifier_probabilities, self.maps, self.slice_score, self.slice_numbers)

    @cached_property
    def _segmenter_masks(self) -> np.ndarray:
        return remove_small_components(self.maps >= self.mask_threshold, self.min_component_pixels)

    def segmenter_masks(self) -> np.ndarray:
        """(N, H, W) bool: the segmenter alone, without the classifier gate (computed once, then reused)."""
        return self._segmenter_masks

    def gate(self, threshold: float) -> np.ndarray:
        """(N,) bool: slices whose slice score passes ``threshold``."""
        return passes_gate(self.probabilities, threshold)

    def masks(self, threshold: float) -> np.ndarray:
        """(N, H, W) bool: the cascade's masks; a slice below ``threshold`` gets an empty mask."""
        return self.segmenter_masks() & self.gate(threshold)[:, None, None]

    def decisions(self, threshold: float) -> np.ndarray:
        """(N,) bool: tumor called (see ``tumor_called``)."""
        return tumor_called(self.gate(threshold), self.segmenter_masks().sum(axis=(1, 2)))

    def tumor_pixels(self, threshold: float) -> np.ndarray:
        return self.masks(threshold).sum(axis=(1, 2))


class Cascade:
    """Classifier + segmenter, run together on batches of slices."""

    def __init__(self, classifier: LoadedModel, segmenter: LoadedModel, batch_size: int = 16,
                 default_threshold: float = DEFAULT_THRESHOLD, mask_threshold: float = MASK_THRESHOLD,
                 min_component_pixels: int = 0, slice_score: str = "classifier") -> None:
        if classifier.role != "classifier" or segmenter.role != "segmenter":
            raise ValueError("Cascade(classifier, segmenter): models passed in the wrong order")
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.classifier = classifier
        self.segmenter = segmenter
        self.batch_size = batch_size
        self.default_threshold = default_threshold
        self.mask_threshold = mask_threshold
        self.min_component_pixels = min_component_pixels
        if slice_score not in SLICE_SCORES:
            raise ValueError(f"unknown slice score {slice_score!r}; choose one of {SLICE_SCORES}")
        self.slice_score = slice_score

    @property
    def neighbour_reach(self) -> int:
        """How many slices on each side a slice's outputs depend on (its score lifted by its neighbours', a model
        reading them as channels); 0 when none, so a slice scores the same alone as in its volume."""
        return max(slice_score_reach(self.slice_score), self.classifier.spec.context_slices,
                   self.segmenter.spec.context_slices)

    @classmethod
    def from_dir(cls, models_dir: str | Path, batch_size: int = 16, runtime: str | None = None) -> Cascade:
        """Load ``classifier.keras``, ``segmenter.keras`` and the operating point from a models folder (``runtime``:
        see ``load_model``)."""
        models_dir = Path(models_dir)
        if not models_dir.is_dir():
            raise ModelLoadError(f"{models_dir}: models folder not found (point --models-dir or $BRAINSEG_MODELS_DIR "
                                 "at a folder holding classifier.keras and segmenter.keras)")
        point = read_operating_point(models_dir)
        return cls(load_model(models_dir / "classifier.keras", "classifier", runtime),
                   load_model(models_dir / "segmenter.keras", "segmenter", runtime), batch_size,
                   float(point.get("threshold", DEFAULT_THRESHOLD)),
                   float(point.get("mask_threshold", MASK_THRESHOLD)), int(point.get("min_component_pixels", 0)),
                   str(point.get("slice_score", "classifier")))

    def predict(self, images: np.ndarray, slice_numbers: np.ndarray | None = None,
                progress: Callable[[int, int], None] | None = None) -> CascadeResult:
        """Run both models on (N, H, W, 3) uint8 slices, ``batch_size`` at a time (``slice_numbers`` and
        ``progress``: see ``predict_native``)."""
        probabilities, maps = self.predict_native(images, slice_numbers, progress)
        height, width = np.shape(images)[1:3]
        return self.result(probabilities, upsample_maps(maps, height, width) if len(maps) else
                           np.zeros((0, height, width), np.float32), slice_numbers)

    def predict_native(self, images: np.ndarray, slice_numbers: np.ndarray | None = None,
                       progress: Callable[[int, int], None] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(N,) classifier P(tumor) and (N, s, s) segmenter maps at the segmenter's own input size ``s``.

        ``slice_numbers``: when the slices are one volume's, each one's number in it, so that a model reading
        neighbouring slices (``InputSpec.context_slices``) gets them; None: unrelated slices (e.g. uploads), each
        read as its own neighbours. Models without context slices ignore it. ``progress(done, total)`` is called
        after each batch.

        What the prediction store keeps: ``predict`` is this plus ``upsample_maps`` to the slices' size. Batches
        always start at slice 0, so any caller scoring the same slices gets bit-identical outputs (a different
        batch size can change the last float bits).
        """
        images = np.asarray(images)
        if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
            raise ValueError(f"expected (N, H, W, 3) uint8 slices, got {images.shape} {images.dtype}")
        if slice_numbers is not None and len(slice_numbers) != len(images):
            raise ValueError(f"{len(slice_numbers)} slice numbers for {len(images)} slices")
        n = len(images)
        probabilities = np.empty(n, np.float32)
        maps = np.empty((n, self.segmenter.spec.size, self.segmenter.spec.size), np.float32)
        inputs = {model.role: ModelInputs(model.spec, images, slice_numbers) for model in (self.classifier,
                                                                                             self.segmenter)}
        for start in range(0, n, self.batch_size):
            stop = min(n, start + self.batch_size)
            probabilities[start:stop] = self.classifier.infer(inputs["classifier"].batch(start, stop))[:, 0]
            maps[start:stop] = self.segmenter.infer(inputs["segmenter"].batch(start, stop))[..., 0]
            if progress is not None:
                progress(stop, n)
        return probabilities, maps

    def result(self, probabilities: np.ndarray, maps: np.ndarray,
               slice_numbers: np.ndarray | None = None) -> CascadeResult:
        """A ``CascadeResult`` for outputs made elsewhere (e.g. the prediction store), with this cascade's rules
        (``slice_numbers``: see ``predict_native``)."""
        return CascadeResult(probabilities, maps, self.mask_threshold, self.min_component_pixels, self.slice_score,
                             None if slice_numbers is None else np.asarray(slice_numbers))


class ModelInputs:
    """One model's inputs for a run of slices, a batch at a time: ``prepare_images`` at the model's size, and
    for a model reading neighbouring slices, those stacked as channels (``brainseg.core.context``)."""

    def __init__(self, spec: InputSpec, images: np.ndarray, slice_numbers: np.ndarray | None) -> None:
        self.spec, self.images = spec, images
        self.rows = None
        if spec.context_slices:
            k = spec.context_slices
            self.rows = lone_rows(len(images), k) if slice_numbers is None else context_rows(slice_numbers, k)
            # Neighbours cross batch boundaries: prepare every slice once, up front.
            self.prepared = prepare_images(images, spec.size)

    def batch(self, start: int, stop: int) -> np.ndarray:
        if self.rows is None:
            return prepare_images(self.images[start:stop], self.spec.size)
        return stack_context(self.prepared, self.rows[start:stop])


def read_operating_point(models_dir: str | Path) -> dict:
    """``models/operating_point.json`` (default threshold, mask cut, post-processing and how they were chosen),
    or {} if absent."""
    path = Path(models_dir) / "operating_point.json"
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ModelLoadError(f"{path}: not valid JSON ({err})") from err
