"""A compact, exact copy of a dataset's slices at one model input size, for training elsewhere.

Training only ever sees slices resized to the model's input size (``preprocess.prepare_images`` and
``resize_masks``). A cache holds exactly those arrays, so ``brainseg train --data <cache>`` gives the same
arrays as training from the Kaggle folder, at a quarter of the pixels at 128x128, compressed with LZMA:
the 81 train + validation patients fit in about 50 MB, small enough to travel to a GPU machine with the
checkout. The manifest keeps ``has_tumor`` and ``tumor_pixels`` from the full-size masks.

Layout of the folder: ``meta.json`` (size, count, sha256 of each array), ``manifest.csv``,
``images.u8.xz`` ((N, size, size, 3) uint8, C order) and ``masks.bits.xz`` (np.packbits of the
(N, size, size) resized masks).
"""

from __future__ import annotations

import hashlib
import json
import lzma
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from brainseg.core.data import load_slices
from brainseg.core.preprocess import PREPROCESSING_VERSION, prepare_images, recorded_preprocessing, resize_masks
from brainseg.errors import DataError

META = "meta.json"
MANIFEST_KEEP = ["patient_id", "case", "institution", "slice", "has_tumor", "tumor_pixels"]


def is_slice_cache(path: str | Path) -> bool:
    return (Path(path) / META).is_file()


def write_slice_cache(manifest: pd.DataFrame, size: int, out_dir: str | Path, progress: bool = False,
                      chunk: int = 256) -> Path:
    """Decode, resize and store ``manifest``'s slices (in its order) under ``out_dir``.

    The arrays are written to a sibling ``<out_dir>.partial`` folder, renamed to ``out_dir`` once complete: a run
    cut off part way (caching all slices takes minutes) leaves no folder that looks like a cache."""
    final_dir = Path(out_dir)
    if final_dir.exists() and any(final_dir.iterdir()):
        raise DataError(f"{final_dir} is not empty; choose a new folder for the slice cache")
    out_dir = final_dir.with_name(final_dir.name + ".partial")
    if out_dir.exists():  # left by a run that was cut off
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    manifest = manifest.reset_index(drop=True)
    image_hash, mask_hash = hashlib.sha256(), hashlib.sha256()
    masks_all = []
    with lzma.open(out_dir / "images.u8.xz", "wb", preset=6) as images_file:
        starts = range(0, len(manifest), chunk)
        if progress:
            from tqdm import tqdm

            starts = tqdm(starts, desc="caching slices", unit="chunk")
        for start in starts:
            images, masks = load_slices(manifest.iloc[start:start + chunk])
            small = np.ascontiguousarray(prepare_images(images, size))
            images_file.write(small.tobytes())
            image_hash.update(small.tobytes())
            masks_all.append(resize_masks(masks, size)[..., 0] > 0.5)
    masks = np.concatenate(masks_all) if masks_all else np.zeros((0, size, size), bool)
    mask_hash.update(masks.tobytes())
    (out_dir / "masks.bits.xz").write_bytes(lzma.compress(np.packbits(masks).tobytes(), preset=9))
    manifest[MANIFEST_KEEP].to_csv(out_dir / "manifest.csv", index=False)
    (out_dir / META).write_text(json.dumps({
        "size": size, "n_slices": len(manifest), "n_patients": int(manifest["patient_id"].nunique()),
        "preprocessing": PREPROCESSING_VERSION, "images_sha256": image_hash.hexdigest(),
        "masks_sha256": mask_hash.hexdigest(),
    }, indent=2) + "\n")
    if final_dir.exists():  # an empty folder the user made for it
        final_dir.rmdir()
    out_dir.rename(final_dir)
    return final_dir


CACHE_ROW = "cache_row"


def read_slice_cache(cache_dir: str | Path) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """(manifest, (N, s, s, 3) uint8 images, (N, s, s) bool masks), checked against ``meta.json``.

    The manifest's ``cache_row`` column is each slice's row in the arrays: it survives the filtering and
    re-indexing that selecting a split part does (a DataFrame index does not).
    """
    cache_dir = Path(cache_dir)
    try:
        meta = json.loads((cache_dir / META).read_text())
        size, n = int(meta["size"]), int(meta["n_slices"])
        images = np.frombuffer(lzma.decompress((cache_dir / "images.u8.xz").read_bytes()), np.uint8)
        bits = np.frombuffer(lzma.decompress((cache_dir / "masks.bits.xz").read_bytes()), np.uint8)
        manifest = pd.read_csv(cache_dir / "manifest.csv", dtype={"slice": int, "has_tumor": bool})
    except (OSError, ValueError, KeyError, lzma.LZMAError) as err:
        raise DataError(f"{cache_dir}: not a readable slice cache ({err})") from err
    made_with = recorded_preprocessing(meta)
    if made_with != PREPROCESSING_VERSION:
        raise DataError(f"{cache_dir}: slice cache made with preprocessing version {made_with}, this code's is "
                        f"{PREPROCESSING_VERSION}; rebuild it (brainseg cache-slices)")
    if images.size != n * size * size * 3 or len(manifest) != n:
        raise DataError(f"{cache_dir}: slice cache is incomplete ({len(manifest)} rows, {images.size} bytes)")
    images = images.reshape(n, size, size, 3)
    masks = np.unpackbits(bits, count=n * size * size).reshape(n, size, size).astype(bool)
    if hashlib.sha256(images.tobytes()).hexdigest() != meta["images_sha256"] or \
            hashlib.sha256(masks.tobytes()).hexdigest() != meta["masks_sha256"]:
        raise DataError(f"{cache_dir}: slice cache content does not match its meta.json checksums")
    return manifest.assign(**{CACHE_ROW: np.arange(n)}), images, masks
