"""The Threshold and Error pages' per-slice counts, kept in the prediction store beside the outputs.

Gathering a cohort's counts from stored outputs still means upsampling every map, cutting and cleaning the
masks and reading the truth: seconds for 95 patients on 2 cores, at every server start. The counts themselves
are a few numbers per slice, so they are stored too, under a digest of everything they depend on: the models,
the slice and mask files (name, size, mtime), the operating point's mask cut, small-component removal and
slice score. Any change to one of those is a miss and a recount, never a stale figure.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd

from brainseg.core.data import MASK_SHAPE, read_mask
from brainseg.core.preprocess import PREPROCESSING_VERSION
from brainseg.evaluation.threshold_analysis import slice_stats
from brainseg.inference.cascade import Cascade
from brainseg.inference.store import InputIdentity, ModelsKey, PredictionStore

TABLE = "stats"
STATS_VERSION = 1


def stats_key(cascade: Cascade, rows: pd.DataFrame) -> str:
    """The digest a patient's stored counts are filed under (see the module docstring)."""
    images = InputIdentity.of(rows)
    masks = InputIdentity.of(rows.assign(image_path=rows["mask_path"]))
    described = {"version": STATS_VERSION, "preprocessing": PREPROCESSING_VERSION,
                 "models": [cascade.classifier.sha256, cascade.segmenter.sha256],
                 "images": [images.names, images.sizes, images.mtimes_ns],
                 "masks": [masks.names, masks.sizes, masks.mtimes_ns], "institution": str(rows["institution"].iloc[0]),
                 "slices": rows["slice"].astype(int).tolist(), "mask_threshold": float(cascade.mask_threshold),
                 "min_component_pixels": int(cascade.min_component_pixels), "slice_score": cascade.slice_score}
    return hashlib.sha256(json.dumps(described).encode()).hexdigest()


def stored_slice_stats(store: PredictionStore, cascade: Cascade, rows: pd.DataFrame) -> pd.DataFrame:
    """``slice_stats`` for one patient's manifest rows, from the store's counts when valid, else counted from the
    stored outputs (the patient scored into the store first when missing) and stored for next time."""
    patient, models, key = str(rows["patient_id"].iloc[0]), ModelsKey.of(cascade), stats_key(cascade, rows)
    kept = store.read_table(models, patient, TABLE, key)
    if kept is not None:
        return kept
    truth = np.stack([read_mask(path) for path in rows["mask_path"]]) if len(rows) else np.zeros((0, *MASK_SHAPE))
    stats = slice_stats(patient, str(rows["institution"].iloc[0]), rows["slice"].to_numpy(),
                        store.result_or_score(cascade, rows), truth)
    store.write_table(models, patient, TABLE, key, stats)
    return stats
