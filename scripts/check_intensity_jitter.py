"""How much of an intensity jitter survives the models' per-slice z-score? A check, not a variant.

Draws training slices from a slice cache (brainseg cache-slices), applies the recipe's contrast and brightness
jitter, or a per-sequence gamma within [1/1.5, 1.5], and prints how far each moves the z-scored input inside the
head, in standard deviations (models/ablation_decision.md, thirteenth session).

    .venv/bin/python scripts/check_intensity_jitter.py [--cache runs/cache128] [--slices 400]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from brainseg.core.numpy_batches import scale_images_numpy
from brainseg.core.preprocess import AugmentConfig, apply_gamma
from brainseg.core.slice_cache import read_slice_cache


def contrast_and_brightness(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    recipe = AugmentConfig()
    shape = (len(images), 1, 1, 3)
    contrast = 1.0 + rng.uniform(-1.0, 1.0, shape) * recipe.max_contrast_delta
    brightness = rng.uniform(-1.0, 1.0, shape) * recipe.max_brightness * 255.0
    return np.clip(images * contrast + brightness, 0.0, 255.0)  # as preprocess.apply_augmentation does


def gamma(images: np.ndarray, rng: np.random.Generator, max_gamma: float = 1.5) -> np.ndarray:
    powers = np.exp(rng.uniform(-1.0, 1.0, (len(images), 1, 1, 3)) * np.log(max_gamma))
    return np.stack([apply_gamma(image, power) for image, power in zip(images, powers, strict=True)])


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
    for name, jitter in (("contrast and brightness (recipe)", contrast_and_brightness),
                         ("gamma within [1/1.5, 1.5]", gamma)):
        moved = np.abs(scale_images_numpy(jitter(images, np.random.default_rng(args.seed + 1)), "zscore")
                       - unchanged)[inside_head]
        print(f"{name}: z-scored input moved by {moved.mean():.3f} SD on average inside the head "
              f"(95th percentile {np.percentile(moved, 95):.3f}), over {args.slices} slices")


if __name__ == "__main__":
    main()
