"""The training input pipeline without TensorFlow: a ``keras.utils.PyDataset`` on numpy and OpenCV.

``preprocess.make_dataset`` hands this out on Keras' JAX and PyTorch backends, so the same training code
runs on a GPU machine that has no TensorFlow. It applies the transforms of ``preprocess.augment`` with the
same parameter ranges (tests hold the two implementations to the same output for the same parameters), and
scales intensities as ``preprocess.scale_images`` does. Only the random stream differs: numpy's, seeded
by (seed, epoch, slice), so a run is reproducible on its own backend.
"""

from __future__ import annotations

import math

import cv2
import keras
import numpy as np

from brainseg.core.preprocess import (
    AugmentConfig,
    InputSpec,
    affine_coefficients,
    apply_gamma,
    per_sequence,
    replace_missing_sequences,
)


def scale_images_numpy(images: np.ndarray, scaling: str) -> np.ndarray:
    """``preprocess.scale_images`` in numpy: (N, s, s, 3) values in 0..255 -> float32."""
    images = np.asarray(images, np.float32)
    if scaling == "unit":
        return images / 255.0
    mean = images.mean(axis=(1, 2), keepdims=True)
    variance = images.var(axis=(1, 2), keepdims=True)
    return (images - mean) / np.sqrt(variance + 1e-6)


def apply_augmentation_numpy(
    image: np.ndarray, mask: np.ndarray | None, flip: bool, angle: float, scale: float,
    shift: np.ndarray, contrast: np.ndarray, brightness: np.ndarray,
) -> tuple[np.ndarray, np.ndarray | None]:
    """``preprocess.apply_augmentation`` in numpy/OpenCV (bilinear, zeros outside the slice)."""
    size, channels = image.shape[0], image.shape[-1]
    stacked = image if mask is None else np.concatenate([image, mask], axis=-1)
    if flip:
        stacked = stacked[:, ::-1]
    c = affine_coefficients(float(size), angle, scale, shift)
    matrix = np.array([c[0:3], c[3:6]], np.float64)
    # WARP_INVERSE_MAP: the matrix maps output pixels to input pixels, as TensorFlow's transform does.
    stacked = cv2.warpAffine(np.ascontiguousarray(stacked, np.float32), matrix, (size, size),
                             flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT,
                             borderValue=0)
    if stacked.ndim == 2:
        stacked = stacked[..., None]
    image = np.clip(stacked[..., :channels] * per_sequence(contrast, channels) + per_sequence(brightness, channels),
                    0.0, 255.0)
    if mask is None:
        return image, None
    return image, (stacked[..., channels:] > 0.5).astype(np.float32)


def augment_numpy(
    image: np.ndarray, mask: np.ndarray | None, rng: np.random.Generator, config: AugmentConfig
) -> tuple[np.ndarray, np.ndarray | None]:
    """Random flip, rotation, scale, shift and intensity jitter, drawn as ``preprocess.augment`` draws them."""
    flip = bool(config.flip_left_right and rng.uniform() < 0.5)
    angle = rng.uniform(-1.0, 1.0) * config.max_rotation_deg * np.pi / 180
    scale = 1.0 + rng.uniform(-1.0, 1.0) * config.max_scale_delta
    shift = rng.uniform(-1.0, 1.0, 2) * config.max_shift_fraction
    contrast = 1.0 + rng.uniform(-1.0, 1.0, (1, 1, 3)) * config.max_contrast_delta
    brightness = rng.uniform(-1.0, 1.0, (1, 1, 3)) * config.max_brightness * 255.0
    if config.missing_sequence_prob > 0:
        image = replace_missing_sequences(image, rng.uniform(size=2) < config.missing_sequence_prob)
    if config.max_gamma != 1.0:
        image = apply_gamma(image, np.exp(rng.uniform(-1.0, 1.0, (1, 1, 3)) * np.log(config.max_gamma)))
    return apply_augmentation_numpy(image, mask, flip, angle, scale, shift, contrast, brightness)


class SliceBatches(keras.utils.PyDataset):
    """Shuffled, augmented, scaled batches; every batch a pure function of (seed, epoch, batch index)."""

    def __init__(
        self, images: np.ndarray, targets: np.ndarray, spec: InputSpec, batch_size: int,
        augment_config: AugmentConfig | None = None, shuffle: bool = False, seed: int = 0,
        sample_weights: np.ndarray | None = None, epochs_done: int = 0, workers: int = 4,
    ) -> None:
        # Threads suffice: OpenCV releases the GIL while it warps.
        super().__init__(workers=workers, use_multiprocessing=False)
        self.images = images
        self.targets = targets.astype(np.float32)
        self.weights = None if sample_weights is None else sample_weights.astype(np.float32)
        self.spec, self.batch_size, self.augment_config = spec, batch_size, augment_config
        self.shuffle, self.seed = shuffle, seed
        self.epoch = epochs_done  # a resumed run goes on with the epoch its next batches belong to

    def __len__(self) -> int:
        return math.ceil(len(self.images) / self.batch_size)

    def on_epoch_end(self) -> None:
        self.epoch += 1

    def order(self) -> np.ndarray:
        if not self.shuffle:
            return np.arange(len(self.images))
        return np.random.default_rng([self.seed, self.epoch]).permutation(len(self.images))

    def __getitem__(self, index: int) -> tuple:
        rows = self.order()[index * self.batch_size:(index + 1) * self.batch_size]
        images = self.images[rows].astype(np.float32)
        targets = self.targets[rows].copy()
        if self.augment_config is not None:
            for i, row in enumerate(rows):
                rng = np.random.default_rng([self.seed, self.epoch, int(row)])
                mask = targets[i] if targets.ndim == 4 else None
                images[i], moved = augment_numpy(images[i], mask, rng, self.augment_config)
                if moved is not None:
                    targets[i] = moved
        batch = (scale_images_numpy(images, self.spec.scaling), targets)
        return batch if self.weights is None else (*batch, self.weights[rows])
