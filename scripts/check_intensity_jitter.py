"""How much of an intensity jitter survives the models' per-slice z-score? A check, not a variant.

Draws training slices from a slice cache (brainseg cache-slices), applies the recipe's contrast and brightness
jitter, or a per-sequence gamma within [1/1.5, 1.5], and prints how far each moves the z-scored input inside the
head, in standard deviations (models/ablation_decision.md, thirteenth session).

    .venv/bin/python scripts/check_intensity_jitter.py [--cache runs/cache128] [--slices 400]
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import numpy as np

from brainseg.core.numpy_batches import augment_numpy, scale_images_numpy
from brainseg.core.preprocess import AugmentConfig
from brainseg.core.slice_cache import read_slice_cache

# The training pipeline's own draws and transform (numpy_batches.augment_numpy), with the geometry held still.
STILL = AugmentConfig(flip_left_right=False, max_rotation_deg=0.0, max_scale_delta=0.0, max_shift_fraction=0.0)
JITTERS = {
    "contrast and brightness (recipe)": STILL,
    "gamma within [1/1.5, 1.5]": replace(STILL, max_brightness=0.0, max_contrast_delta=0.0, max_gamma=1.5),
}


def jittered(images: np.ndarray, config: AugmentConfig, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([augment_numpy(image, None, rng, config)[0] for image in images])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=Path("runs/cache128"))
    parser.add_argument("--slices", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    _, images, _ = read_slice_cache(args.cache)
    rows = np.random.default_rng(args.seed).choice(len(images), args.slices, replace=False)
    images = images[rows].astype(np.float32)
    inside_head = images.sum(axis=-1) > 0
    unchanged = scale_images_numpy(images, "zscore")
    for name, config in JITTERS.items():
        moved = np.abs(scale_images_numpy(jittered(images, config, args.seed + 1), "zscore") - unchanged)[inside_head]
        print(f"{name}: z-scored input moved by {moved.mean():.3f} SD on average inside the head "
              f"(95th percentile {np.percentile(moved, 95):.3f}), over {args.slices} slices")


if __name__ == "__main__":
    main()
