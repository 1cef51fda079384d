"""The one preprocessing path shared by training, evaluation, the cascade and the app.

A slice goes through these steps whichever caller it comes from:
1. ``prepare_images`` (numpy/OpenCV, once per slice): ``black_background`` (a sequence stored with its air
   at grey is shifted so air is black, as in every other slice), then ``resize_images`` to the model's
   input size, kept as uint8;
2. ``scale_images`` (TensorFlow, inside the training pipeline or the inference function) to the
   intensity scaling that model was trained with.
Model outputs come back to the slice's size with ``upsample_maps``. ``PREPROCESSING_VERSION`` names the
numpy step's behaviour; stored outputs and slice caches record it, so a change makes them misses.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Literal

import cv2
import numpy as np

if TYPE_CHECKING:
    import tensorflow as tf

# 1: resize only. 2: black_background, then resize.
PREPROCESSING_VERSION = 2
# A channel whose border (the air around the head) has a median above this level had its air stored at
# grey. In the LGG data that is the pre-contrast channel of 3 of 95 patients (61, 76 and 103 of 255);
# every other channel's border median is 11 or less. Those three looked unlike any other input: two
# models trained on the rest scored TCGA_FG_5962's tumor slices at P ~0.01 and drew no mask at all.
# Read from images only (no labels or outputs), test split included: TCGA_FG_7637, TCGA_FG_A4MU are test patients.
GREY_AIR_LEVEL = 32
# Only a uniform border is air: at least this share of its pixels within 2 grey levels of its median
# (over 0.7 in those three patients). A slice cropped so that tissue fills its border is left alone.
UNIFORM_AIR_SHARE = 0.5

Scaling = Literal["unit", "zscore"]
SCALINGS: tuple[str, ...] = ("unit", "zscore")


@dataclass(frozen=True)
class InputSpec:
    """What a model expects: square input ``size``, intensity ``scaling`` and ``context_slices``.

    ``unit`` divides by 255 (the seed classifier's rescaling); ``zscore`` standardizes each channel
    of each slice to zero mean and unit variance (the seed segmenter's normalization), which also
    absorbs the scanner-to-scanner intensity differences between institutions. ``context_slices`` k > 0:
    the model also reads the k neighbouring slices on each side (``brainseg.core.context``).
    """

    size: int = 256
    scaling: Scaling = "unit"
    context_slices: int = 0

    def __post_init__(self) -> None:
        if self.scaling not in SCALINGS:
            raise ValueError(f"unknown scaling {self.scaling!r}; choose one of {SCALINGS}")
        if self.size < 32:
            raise ValueError(f"input size must be at least 32, got {self.size}")
        if self.context_slices < 0:
            raise ValueError(f"context_slices must be 0 or more, got {self.context_slices}")

    @property
    def channels(self) -> int:
        return 3 * (2 * self.context_slices + 1)

    @classmethod
    def from_record(cls, record: dict) -> InputSpec:
        """The spec an ``input_spec`` record (sidecar, run) describes: ``to_dict``'s inverse, where a record
        without ``context_slices`` (written before they existed, or for a 3-channel model) means 0."""
        return cls(int(record["size"]), record["scaling"], int(record.get("context_slices", 0)))

    def to_dict(self) -> dict:
        # A plain 3-channel model's record stays as it was before context slices existed.
        record = asdict(self)
        return record if self.context_slices else {k: v for k, v in record.items() if k != "context_slices"}


@dataclass(frozen=True)
class AugmentConfig:
    """Augmentation suited to axial brain MRI, applied identically to image and mask."""

    flip_left_right: bool = True  # hemispheres are near mirror images; up-down is not anatomical
    max_rotation_deg: float = 10.0
    max_scale_delta: float = 0.10
    max_shift_fraction: float = 0.05
    max_brightness: float = 0.05  # additive, fraction of the 0..255 range
    max_contrast_delta: float = 0.10  # multiplicative, per channel (sequence)
    # Chance that pre-contrast, and independently post-contrast, is replaced by FLAIR: what the dataset does for
    # patients lacking a sequence (6 of its 95 patients have all three channels equal to FLAIR).
    missing_sequence_prob: float = 0.0
    # Each sequence's intensities raised to a power drawn log-uniformly in [1 / max_gamma, max_gamma] (1: off).
    # Unlike the contrast and brightness jitter, which the per-slice z-score all but undoes, a power changes
    # the shape of the intensity histogram, as scanners and protocols do.
    max_gamma: float = 1.0

    def __post_init__(self) -> None:
        if not self.max_gamma >= 1.0:
            raise ValueError(f"max_gamma must be at least 1 (1: no gamma jitter), got {self.max_gamma}")

    def to_dict(self) -> dict:
        return asdict(self)


def recorded_preprocessing(record: dict) -> int:
    """The input path version a record (run, sidecar, slice cache) was made with; records from before the
    field existed were made with version 1."""
    return int(record.get("preprocessing") or 1)


def prepare_images(images: np.ndarray, size: int) -> np.ndarray:
    """What every model input goes through before scaling: ``black_background``, then ``resize_images``."""
    return resize_images(black_background(images), size)


def black_background(images: np.ndarray) -> np.ndarray:
    """(N, H, W, 3) uint8 slices with grey air made black, per slice and channel (see ``GREY_AIR_LEVEL``).

    The air level is the median of the slice's one-pixel border; a channel whose border is uniform and above
    ``GREY_AIR_LEVEL`` has that level subtracted (clipped at 0). Every other channel is returned unchanged,
    bit for bit, so slices stored with black air (nearly all) give the models exactly the inputs they gave
    before this step existed.
    """
    images = np.asarray(images)
    levels = grey_air_levels(images)
    if not levels.any():
        return images
    out = images.copy()
    for n, channel in zip(*np.nonzero(levels), strict=True):
        shifted = images[n, ..., channel].astype(np.int16) - int(levels[n, channel])
        out[n, ..., channel] = np.clip(shifted, 0, 255).astype(images.dtype)
    return out


def grey_air_levels(images: np.ndarray) -> np.ndarray:
    """(N, 3) int: the grey air level ``black_background`` subtracts from each slice's channel (0: none)."""
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"expected (N, H, W, 3) slices, got shape {images.shape}")
    if images.shape[1] < 3 or images.shape[2] < 3:
        return np.zeros((len(images), 3), int)
    border = np.concatenate([images[:, 0], images[:, -1], images[:, 1:-1, 0], images[:, 1:-1, -1]], axis=1)
    level = np.median(border, axis=1)  # (N, 3)
    uniform = (np.abs(border.astype(np.float32) - level[:, None, :]) <= 2).mean(axis=1) >= UNIFORM_AIR_SHARE
    return np.where((level > GREY_AIR_LEVEL) & uniform, level, 0).astype(int)


def resize_images(images: np.ndarray, size: int) -> np.ndarray:
    """(N, H, W, 3) uint8 -> (N, size, size, 3) uint8; area interpolation when shrinking."""
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"expected (N, H, W, 3) slices, got shape {images.shape}")
    if images.shape[1:3] == (size, size):
        return images.astype(np.uint8, copy=False)
    out = np.empty((len(images), size, size, 3), np.uint8)
    for i, image in enumerate(images):
        out[i] = _resize(image, size)
    return out


def resize_masks(masks: np.ndarray, size: int, soft: bool = False) -> np.ndarray:
    """(N, H, W) bool -> (N, size, size, 1) float32: in {0, 1}, a pixel kept if at least half covered (what the
    segmenters train on), or with ``soft`` the covered fraction itself (area interpolation, in [0, 1]).

    The hard rule keeps exactly-half-covered pixels, so shrinking by 2 moves many edges outward: brought back to
    256 the masks are larger than the expert's (see ``evaluation.resolution``); the covered fraction is not."""
    masks = np.asarray(masks)
    if masks.shape[1:3] == (size, size):
        return masks.astype(np.float32)[..., None]
    out = np.empty((len(masks), size, size, 1), np.float32)
    for i, mask in enumerate(masks):
        covered = _resize(mask.astype(np.float32), size)
        out[i, ..., 0] = covered if soft else covered >= 0.5
    return out


def upsample_maps(maps: np.ndarray, height: int, width: int) -> np.ndarray:
    """(N, h, w[, 1]) probability maps -> (N, height, width) float32, bilinear."""
    maps = np.asarray(maps, np.float32)
    if maps.ndim == 4:
        maps = maps[..., 0]
    if maps.shape[1:] == (height, width):
        return maps
    return np.stack([cv2.resize(m, (width, height), interpolation=cv2.INTER_LINEAR) for m in maps])


def _resize(image: np.ndarray, size: int) -> np.ndarray:
    shrinking = image.shape[0] > size
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


def scale_images(images: tf.Tensor, scaling: Scaling) -> tf.Tensor:
    """Intensity scaling of (N, s, s, 3) slices with values in 0..255; the models' only normalization."""
    import tensorflow as tf

    images = tf.cast(images, tf.float32)
    if scaling == "unit":
        return images / 255.0
    mean, variance = tf.nn.moments(images, axes=[1, 2], keepdims=True)
    return (images - mean) / tf.sqrt(variance + 1e-6)


def augment(
    image: tf.Tensor, mask: tf.Tensor | None, seed: tf.Tensor, config: AugmentConfig
) -> tuple[tf.Tensor, tf.Tensor | None]:
    """Random flip, rotation, scale and shift (same for image and mask), then intensity jitter.

    ``image``: (s, s, 3) float32 in 0..255 (or 3 per slice with neighbouring slices: they move as one);
    ``mask``: (s, s, 1) float32 or None; ``seed``: (2,) int.
    """
    import tensorflow as tf

    seeds = tf.random.experimental.stateless_split(seed, 8)
    flip = tf.random.stateless_uniform([], seeds[0]) < 0.5 if config.flip_left_right else tf.constant(False)
    angle = tf.random.stateless_uniform([], seeds[1], -1.0, 1.0) * config.max_rotation_deg * np.pi / 180
    scale = 1.0 + tf.random.stateless_uniform([], seeds[2], -1.0, 1.0) * config.max_scale_delta
    shift = tf.random.stateless_uniform([2], seeds[3], -1.0, 1.0) * config.max_shift_fraction
    contrast = 1.0 + tf.random.stateless_uniform([1, 1, 3], seeds[4], -1.0, 1.0) * config.max_contrast_delta
    brightness = tf.random.stateless_uniform([1, 1, 3], seeds[5], -1.0, 1.0) * config.max_brightness * 255.0
    if config.missing_sequence_prob > 0:  # skipped at 0: runs without it stay bit-identical to before it existed
        missing = tf.random.stateless_uniform([2], seeds[6]) < config.missing_sequence_prob
        image = replace_missing_sequences(image, missing)
    if config.max_gamma != 1.0:  # skipped when off, as above
        log_gamma = tf.random.stateless_uniform([1, 1, 3], seeds[7], -1.0, 1.0) * float(np.log(config.max_gamma))
        image = apply_gamma(image, tf.exp(log_gamma))
    return apply_augmentation(image, mask, flip, angle, scale, shift, contrast, brightness)


def replace_missing_sequences(image, missing):
    """``image`` (s, s, 3: pre, FLAIR, post, or several such groups: neighbouring slices) with pre
    (``missing[0]``) and post (``missing[1]``) set to FLAIR in every group, as a missing sequence is missing in
    the whole volume.

    ``image`` is a numpy array (the numpy pipeline) or a TensorFlow tensor (the tf.data pipeline).
    """
    is_numpy = isinstance(image, np.ndarray)
    if not is_numpy:
        import tensorflow as tf
    concat, where = (np.concatenate, np.where) if is_numpy else (tf.concat, tf.where)
    parts = []
    for g in range(0, image.shape[-1], 3):
        flair = image[..., g + 1:g + 2]
        pre, post = image[..., g:g + 1], image[..., g + 2:g + 3]
        parts += [where(missing[0], flair, pre), flair, where(missing[1], flair, post)]
    return concat(parts, axis=-1)


def apply_gamma(image, gamma):
    """``image`` (values in 0..255, numpy or TensorFlow) with each sequence raised to its power ``gamma``
    ((1, 1, 3), repeated over neighbouring slices' groups): 255 (x / 255) ** gamma keeps 0 and 255 in place."""
    if isinstance(image, np.ndarray):
        return 255.0 * np.power(image / 255.0, per_sequence(gamma, image.shape[-1]))
    import tensorflow as tf

    return 255.0 * tf.pow(image / 255.0, per_sequence(gamma, image.shape[-1]))


def per_sequence(values, channels: int):
    """(1, 1, 3) per-sequence jitter repeated over the groups of a ``channels``-channel input (numpy or tensor)."""
    groups = channels // 3
    if groups == 1:
        return values
    if isinstance(values, np.ndarray):
        return np.tile(values, (1, 1, groups))
    import tensorflow as tf

    return tf.tile(values, [1, 1, groups])


def apply_augmentation(image, mask, flip, angle, scale, shift, contrast, brightness) -> tuple:
    """``augment``'s transform for given parameters (TensorFlow ops; a test holds the numpy twin to it)."""
    import tensorflow as tf

    size, channels = tf.shape(image)[0], image.shape[-1]
    stacked = image if mask is None else tf.concat([image, mask], axis=-1)
    stacked = tf.cond(flip, lambda: tf.reverse(stacked, axis=[1]), lambda: stacked)
    transform = tf.stack(affine_coefficients(tf.cast(size, tf.float32), angle, scale, shift, tf.cos, tf.sin))[None]
    stacked = tf.raw_ops.ImageProjectiveTransformV3(
        images=stacked[None],
        transforms=transform,
        output_shape=tf.stack([size, size]),
        fill_value=0.0,
        interpolation="BILINEAR",
        fill_mode="CONSTANT",
    )[0]
    image = stacked[..., :channels] * per_sequence(contrast, channels) + per_sequence(brightness, channels)
    image = tf.clip_by_value(image, 0.0, 255.0)
    if mask is None:
        return image, None
    return image, tf.cast(stacked[..., channels:] > 0.5, tf.float32)


def affine_coefficients(size, angle, scale, shift, cos=np.cos, sin=np.sin) -> list:
    """The 8 projective coefficients (output pixel -> input pixel) of a rotation about the centre by
    ``angle``, zoom by ``scale`` and ``shift`` (fractions of ``size``); works on numbers or tensors."""
    centre = (size - 1.0) / 2.0
    c, s = cos(angle) / scale, sin(angle) / scale
    # Output pixel (x, y) samples input at R(-angle)/scale about the centre, plus a shift.
    tx = centre - c * centre - s * centre + shift[0] * size
    ty = centre + s * centre - c * centre + shift[1] * size
    return [c, s, tx, -s, c, ty, 0.0, 0.0]


# Keras' fit makes two iterators over a tf.data training set per epoch, each drawing a slice order from the
# seeded shuffle: one as the epoch starts and one, never read, as it ends (its epoch iterator readies the next
# epoch's, which the next epoch replaces when steps_per_epoch is unset). Checked with the default strategy
# (tests/test_train.py) and MirroredStrategy on two CPU devices (tests/test_distribute.py); not with several
# workers.
KERAS_SHUFFLE_ORDERS_PER_EPOCH = 2


def make_dataset(
    images: np.ndarray,
    targets: np.ndarray,
    spec: InputSpec,
    batch_size: int,
    augment_config: AugmentConfig | None = None,
    shuffle: bool = False,
    seed: int = 0,
    sample_weights: np.ndarray | None = None,
    epochs_done: int = 0,
) -> tf.data.Dataset:
    """Training/validation batches over already-resized uint8 slices.

    ``targets`` is either (N,) labels (classifier) or (N, s, s, 1) masks (segmenter); masks are
    transformed with their image. Yields (scaled images, targets[, sample_weights]) batches.

    On Keras' TensorFlow backend this is a tf.data pipeline (what the shipped models were trained with).
    On the JAX or PyTorch backends, e.g. a GPU machine without TensorFlow, it is the numpy/OpenCV twin in
    ``brainseg.core.numpy_batches``: same transforms and parameter ranges, another random stream.

    ``epochs_done``: a resumed run's completed epochs (``brainseg.training.resume``); the shuffle goes on from
    where they left it, as in an uninterrupted run.
    """
    if images.shape[1:3] != (spec.size, spec.size):
        raise ValueError(f"images are {images.shape[1:3]}, the model expects {spec.size}x{spec.size}")
    import keras

    if keras.backend.backend() != "tensorflow":
        from brainseg.core.numpy_batches import SliceBatches

        return SliceBatches(images, targets, spec, batch_size, augment_config, shuffle, seed, sample_weights,
                            epochs_done)
    import tensorflow as tf

    is_mask = targets.ndim == 4
    tensors: tuple = (images, targets.astype(np.float32))
    if sample_weights is not None:
        tensors = (*tensors, sample_weights.astype(np.float32))
    dataset = tf.data.Dataset.from_tensor_slices(tensors)
    if shuffle:
        dataset = dataset.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
        # Each iterator made over the shuffle draws the next order (a seed generator shared by the pipeline
        # built on it): unread iterators move it on to where the interrupted run stopped.
        for _ in range(epochs_done * KERAS_SHUFFLE_ORDERS_PER_EPOCH):
            iter(dataset)

    def prepare(seed_pair: tf.Tensor, image: tf.Tensor, target: tf.Tensor, *weight: tf.Tensor) -> tuple:
        image = tf.cast(image, tf.float32)
        if augment_config is not None:
            if is_mask:
                image, target = augment(image, target, seed_pair, augment_config)
            else:
                image, _ = augment(image, None, seed_pair, augment_config)
        image = scale_images(image[None], spec.scaling)[0]
        return (image, target, *weight)

    seeds = tf.data.Dataset.random(seed=seed).batch(2)
    dataset = tf.data.Dataset.zip(seeds, dataset).map(
        lambda s, item: prepare(s, *item), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
    )
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)
