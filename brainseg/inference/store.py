"""The prediction store: the cascade's outputs per patient on disk, so nothing scores a patient twice.

Batch scoring (``brainseg score``, local or Ray) fills it; ``brainseg evaluate --store`` and the dashboard
(``BRAINSEG_STORE``) read it and score only what is missing. What is kept is what ``Cascade.predict_native``
makes: the classifier's P(tumor) per slice (float32) and the segmenter's probability map per slice at the
segmenter's own input size (128x128 for the shipped models, a quarter of the 256x256 slice), before the
bilinear upsampling that ``Cascade.predict`` applies; reading an entry applies the same upsampling and the
current operating point (mask cut, small-component removal, slice score), so changing those never needs a
rescore.

Layout and why: one compressed ``.npz`` per patient under a folder named by the two models' hashes,
``<store>/<classifier sha256[:16]>-<segmenter sha256[:16]>/<patient_id>.npz``. A patient is the unit
everything reads (a page, an evaluation, a resumed run), so one file per patient is one read; each file is
written whole to a temporary name and renamed (atomic on POSIX), so a crash or two writers (two app servers,
two Ray drivers) leave either the old entry or the new one, never a torn one, with no lock and no
coordination. A single Zarr store would need chunk-aligned, coordinated writes and resizes for the same
guarantee, for no gain at this size (~5.5 KB per slice: 18 MB for the 95 patients' 3,362 slices). Other
models' entries live in their own folder, so switching models back finds them again.

Maps are quantised to uint16 (step 1/65535, error at most 7.7e-6). Against the live float32 cascade on the
95 patients with the shipped models: largest map difference 7.6e-6, largest slice-score difference 3.7e-6,
no mask pixel (of 2.3 million at the default threshold) and no gate or slice decision changed (at 0.05, the
default and 0.5). float16 is 4x larger and 30x coarser at the 0.6 mask cut (on the demo patients it moved
one pixel); uint8 is 30x smaller but moved 16. A pixel can only flip if its live probability lies within
half a step of a cut.

An entry is valid only for the same models (full sha256 of both weights files, checked on read), the same
preprocessing (``preprocess.PREPROCESSING_VERSION``) and the same input files: per slice, the image file's
name, size and modification time (ns). ``stat`` instead of hashing the pixels because the dashboard checks
every patient it shows (95 patients: 3,362 stats take milliseconds, hashing their 650 MB takes seconds); any
rewrite of a slice, even a ``touch``, is a miss and a rescore, never a stale answer. Masks are not part of the
key: they are not model inputs.
"""

from __future__ import annotations

import os
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from brainseg.core.data import load_slices
from brainseg.core.files import write_atomically
from brainseg.core.hashing import sha256_of
from brainseg.core.preprocess import PREPROCESSING_VERSION, upsample_maps
from brainseg.errors import BrainsegError
from brainseg.inference.cascade import Cascade, CascadeResult

FORMAT_VERSION = 1
QUANT_STEPS = 65535  # uint16: maps are stored as round(p * 65535)
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class StoreError(BrainsegError):
    """The prediction store folder cannot be used (not a folder, not writable, bad patient id)."""


@dataclass(frozen=True)
class ModelsKey:
    """The two weights files' sha256: what a stored entry was made with."""

    classifier: str
    segmenter: str

    @classmethod
    def of(cls, cascade: Cascade) -> ModelsKey:
        return cls(cascade.classifier.sha256, cascade.segmenter.sha256)

    @classmethod
    def of_dir(cls, models_dir: str | Path) -> ModelsKey:
        """From the files alone (no TensorFlow): the same hashes ``load_model`` records."""
        return cls(sha256_of(Path(models_dir) / "classifier.keras"), sha256_of(Path(models_dir) / "segmenter.keras"))

    @property
    def folder(self) -> str:
        return f"{self.classifier[:16]}-{self.segmenter[:16]}"


@dataclass(frozen=True)
class InputIdentity:
    """Per slice of one patient (in manifest order): image file name, size in bytes, mtime in ns."""

    names: tuple[str, ...]
    sizes: tuple[int, ...]
    mtimes_ns: tuple[int, ...]

    @classmethod
    def of(cls, rows: pd.DataFrame) -> InputIdentity:
        """Stat the image files of ``rows`` (a manifest's rows for one patient). Take it *before* reading the
        pixels: a file rewritten in between then shows a new identity next time (a miss), never a stale hit."""
        stats = [os.stat(path) for path in rows["image_path"]]
        return cls(tuple(Path(p).name for p in rows["image_path"]), tuple(int(s.st_size) for s in stats),
                   tuple(int(s.st_mtime_ns) for s in stats))


@dataclass
class StoredPrediction:
    """One patient's stored outputs: (N,) classifier P(tumor), (N, s, s) maps (dequantised) and the slices' size."""

    probabilities: np.ndarray
    maps: np.ndarray
    height: int
    width: int

    def result(self, cascade: Cascade, slice_numbers: np.ndarray | None = None) -> CascadeResult:
        """The outputs as ``cascade.predict`` returns them (maps upsampled to the slices' size), under
        ``cascade``'s current rules (``slice_numbers``: see ``Cascade.predict_native``)."""
        maps = upsample_maps(self.maps, self.height, self.width) if len(self.maps) else \
            np.zeros((0, self.height, self.width), np.float32)
        return cascade.result(self.probabilities, maps, slice_numbers)


def quantise(maps: np.ndarray) -> np.ndarray:
    """Probabilities in [0, 1] -> uint16 steps of 1/65535 (round to nearest); uint16 input is taken as quantised."""
    if np.asarray(maps).dtype == np.uint16:
        return np.asarray(maps)
    return np.round(np.clip(np.asarray(maps, np.float32), 0.0, 1.0) * QUANT_STEPS).astype(np.uint16)


def dequantise(maps: np.ndarray) -> np.ndarray:
    return np.asarray(maps, np.float32) / np.float32(QUANT_STEPS)


class PredictionStore:
    """A folder of per-patient entries (see the module docstring for the layout and the key)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        if self.root.exists() and not self.root.is_dir():
            raise StoreError(f"{self.root}: the prediction store must be a folder, this is a file")

    def path(self, models: ModelsKey, patient_id: str) -> Path:
        if not _SAFE_NAME.match(patient_id):
            raise StoreError(f"{patient_id!r}: not usable as a prediction store entry name")
        return self.root / models.folder / f"{patient_id}.npz"

    def read(self, models: ModelsKey, patient_id: str, identity: InputIdentity) -> StoredPrediction | None:
        """The stored outputs, or None when absent, made by other models or from other input files, or unreadable
        (an unreadable entry is rescored and replaced, never shown)."""
        return self._load(models, patient_id, identity, with_outputs=True)

    def contains(self, models: ModelsKey, patient_id: str, identity: InputIdentity) -> bool:
        """Whether a valid entry exists (reads the entry's key, not its maps)."""
        return self._load(models, patient_id, identity, with_outputs=False) is not None

    def _load(self, models: ModelsKey, patient_id: str, identity: InputIdentity,
              with_outputs: bool) -> StoredPrediction | bool | None:
        try:
            with np.load(self.path(models, patient_id), allow_pickle=False) as entry:  # lazy: per array on access
                if (int(entry["format"]) != FORMAT_VERSION
                        or int(entry["preprocessing"]) != PREPROCESSING_VERSION  # absent before version 2: a miss
                        or str(entry["classifier_sha256"]) != models.classifier
                        or str(entry["segmenter_sha256"]) != models.segmenter
                        or tuple(entry["names"].tolist()) != identity.names
                        or tuple(entry["sizes"].tolist()) != identity.sizes
                        or tuple(entry["mtimes_ns"].tolist()) != identity.mtimes_ns):
                    return None
                if not with_outputs:
                    return True
                height, width = (int(v) for v in entry["slice_shape"])
                return StoredPrediction(entry["probabilities"].astype(np.float32), dequantise(entry["maps"]),
                                        height, width)
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):  # absent or damaged: a miss
            return None

    def write(self, models: ModelsKey, patient_id: str, identity: InputIdentity, probabilities: np.ndarray,
              maps: np.ndarray, slice_shape: tuple[int, int]) -> Path:
        """Write one patient's entry atomically (temporary file in the same folder, then rename)."""
        probabilities = np.asarray(probabilities, np.float32)
        if len(probabilities) != len(identity.names) or len(maps) != len(identity.names):
            raise ValueError(f"{patient_id}: {len(identity.names)} slices but {len(probabilities)} probabilities "
                             f"and {len(maps)} maps")
        path = self.path(models, patient_id)
        _atomic_savez(path, format=np.int64(FORMAT_VERSION), preprocessing=np.int64(PREPROCESSING_VERSION),
                      classifier_sha256=np.str_(models.classifier),
                      segmenter_sha256=np.str_(models.segmenter), names=np.array(identity.names, dtype=str),
                      sizes=np.array(identity.sizes, np.int64), mtimes_ns=np.array(identity.mtimes_ns, np.int64),
                      probabilities=probabilities, maps=quantise(maps), slice_shape=np.array(slice_shape, np.int64))
        return path

    def read_table(self, models: ModelsKey, patient_id: str, name: str, key: str) -> pd.DataFrame | None:
        """A small per-patient table derived from the outputs (e.g. the dashboard's per-slice counts), or None
        unless it was stored under exactly ``key`` (the caller's digest of everything the table depends on)."""
        try:
            with np.load(self._table_path(models, patient_id, name), allow_pickle=False) as entry:
                if str(entry["key"]) != key:
                    return None
                return pd.DataFrame({column: entry[f"column_{column}"] for column in entry["columns"].tolist()})
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            return None

    def write_table(self, models: ModelsKey, patient_id: str, name: str, key: str, table: pd.DataFrame) -> None:
        """Store ``table`` (numeric and text columns) under ``key``, atomically like an entry."""
        _atomic_savez(self._table_path(models, patient_id, name), key=np.str_(key),
                      columns=np.array(table.columns, dtype=str),
                      **{f"column_{c}": table[c].to_numpy(dtype=str if table[c].dtype == object or
                                                          pd.api.types.is_string_dtype(table[c]) else None)
                         for c in table.columns})

    def _table_path(self, models: ModelsKey, patient_id: str, name: str) -> Path:
        if not _SAFE_NAME.match(name):
            raise StoreError(f"{name!r}: not usable as a table name")
        return self.path(models, patient_id).with_name(f"{patient_id}.{name}.table")  # an .npz by content

    def result(self, cascade: Cascade, rows: pd.DataFrame) -> CascadeResult | None:
        """The stored ``CascadeResult`` for one patient's manifest rows, or None when not (validly) stored."""
        stored = self.read(ModelsKey.of(cascade), _patient_of(rows), InputIdentity.of(rows))
        return None if stored is None else stored.result(cascade, rows["slice"].to_numpy())

    def score(self, cascade: Cascade, rows: pd.DataFrame, images: np.ndarray | None = None) -> CascadeResult:
        """Run the cascade on one patient (decoding its slices unless given) and store the outputs."""
        identity = InputIdentity.of(rows)  # before reading the pixels (see InputIdentity.of)
        if images is None:
            images = load_slices(rows)[0]
        probabilities, maps = cascade.predict_native(images, rows["slice"].to_numpy())
        self.write(ModelsKey.of(cascade), _patient_of(rows), identity, probabilities, maps, images.shape[1:3])
        # Return what a later read returns (quantised), so a first view and a second one never differ.
        return StoredPrediction(probabilities, dequantise(quantise(maps)), *images.shape[1:3]).result(
            cascade, rows["slice"].to_numpy())

    def result_or_score(self, cascade: Cascade, rows: pd.DataFrame, images: np.ndarray | None = None) -> CascadeResult:
        """The stored result, scoring the patient into the store first when it is missing or stale."""
        stored = self.result(cascade, rows)
        return stored if stored is not None else self.score(cascade, rows, images)

    def missing(self, models: ModelsKey, manifest: pd.DataFrame) -> list[str]:
        """Patients of ``manifest`` with no valid entry for ``models`` (in manifest order)."""
        return [patient for patient, rows in manifest.groupby("patient_id", sort=False)
                if not self.contains(models, str(patient), InputIdentity.of(rows))]


def _atomic_savez(path: Path, **arrays: np.ndarray) -> None:
    """Write a compressed .npz atomically (``write_atomically``); a disk's error becomes a one-line StoreError."""
    try:
        write_atomically(path, lambda handle: np.savez_compressed(handle, **arrays))
    except OSError as err:
        raise StoreError(f"{path.parent}: cannot write to the prediction store ({err.strerror or err})") from err


def _patient_of(rows: pd.DataFrame) -> str:
    patients = rows["patient_id"].unique()
    if len(patients) != 1:
        raise ValueError(f"expected one patient's rows, got {len(patients)} patients")
    return str(patients[0])
