"""The numpy/OpenCV training pipeline (``numpy_batches``) held to its TensorFlow original (``preprocess``)."""

import math

import cv2
import keras
import numpy as np
import pytest
import tensorflow as tf

from brainseg.core import numpy_batches
from brainseg.core.numpy_batches import (
    SliceBatches,
    apply_augmentation_numpy,
    augment_numpy,
    scale_images_numpy,
)
from brainseg.core.preprocess import (
    AugmentConfig,
    InputSpec,
    apply_augmentation,
    make_dataset,
    scale_images,
)

SIZE = 48
DEG = math.pi / 180


def smooth_image(seed: int = 0, size: int = SIZE) -> np.ndarray:
    """A (size, size, 3) float32 image in 0..255 with gentle gradients, so bilinear sampling is well behaved."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0.0, 255.0, (8, 8, 3)).astype(np.float32)
    image = cv2.GaussianBlur(cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC), (0, 0), 2.0)
    return np.clip(image, 0.0, 255.0).astype(np.float32)


def block_mask(size: int = SIZE) -> np.ndarray:
    mask = np.zeros((size, size, 1), np.float32)
    mask[14:34, 10:30] = 1.0
    return mask


CONTRAST = np.array([0.93, 1.04, 1.09], np.float32).reshape(1, 1, 3)
BRIGHTNESS = np.array([-9.0, 2.5, 11.0], np.float32).reshape(1, 1, 3)
NEUTRAL_CONTRAST = np.ones((1, 1, 3), np.float32)
NEUTRAL_BRIGHTNESS = np.zeros((1, 1, 3), np.float32)

# (flip, angle in radians, scale, shift, contrast, brightness)
CASES = {
    "identity": (False, 0.0, 1.0, (0.0, 0.0), NEUTRAL_CONTRAST, NEUTRAL_BRIGHTNESS),
    "flip_only": (True, 0.0, 1.0, (0.0, 0.0), NEUTRAL_CONTRAST, NEUTRAL_BRIGHTNESS),
    "rotate_plus": (False, 8 * DEG, 1.0, (0.0, 0.0), NEUTRAL_CONTRAST, NEUTRAL_BRIGHTNESS),
    "rotate_minus_zoom_out": (False, -8 * DEG, 0.92, (0.0, 0.0), NEUTRAL_CONTRAST, NEUTRAL_BRIGHTNESS),
    "shift_only": (False, 0.0, 1.0, (0.04, -0.04), NEUTRAL_CONTRAST, NEUTRAL_BRIGHTNESS),
    "intensity_only": (False, 0.0, 1.0, (0.0, 0.0), CONTRAST, BRIGHTNESS),
    "flip_rotate_zoom_in_shift": (True, 8 * DEG, 1.08, (-0.04, 0.04), CONTRAST, BRIGHTNESS),
    "flip_rotate_zoom_out_shift": (True, -8 * DEG, 0.92, (0.04, 0.04), CONTRAST, BRIGHTNESS),
    "all_but_flip": (False, 8 * DEG, 0.92, (0.04, -0.04), CONTRAST, BRIGHTNESS),
}


def run_tf(image, mask, flip, angle, scale, shift, contrast, brightness):
    out_image, out_mask = apply_augmentation(
        tf.constant(image),
        None if mask is None else tf.constant(mask),
        tf.constant(flip),
        tf.constant(angle, tf.float32),
        tf.constant(scale, tf.float32),
        tf.constant(np.asarray(shift, np.float32)),
        tf.constant(contrast, tf.float32),
        tf.constant(brightness, tf.float32),
    )
    return out_image.numpy(), None if out_mask is None else out_mask.numpy()


@pytest.mark.parametrize("name", list(CASES))
def test_apply_augmentation_numpy_matches_tensorflow(name):
    flip, angle, scale, shift, contrast, brightness = CASES[name]
    image, mask = smooth_image(), block_mask()
    tf_image, tf_mask = run_tf(image, mask, flip, angle, scale, shift, contrast, brightness)
    np_image, np_mask = apply_augmentation_numpy(
        image, mask, flip, angle, scale, np.asarray(shift, np.float32), contrast, brightness
    )

    assert np_image.shape == tf_image.shape == (SIZE, SIZE, 3)
    assert np_mask.shape == tf_mask.shape == (SIZE, SIZE, 1)
    diff = np.abs(np.asarray(np_image, np.float32) - tf_image)
    # Both sample bilinearly at the same points with zero fill: they agree to float round-off (measured
    # < 0.002 on 0..255); half a grey level leaves room for OpenCV builds, a 1/10-pixel offset does not.
    assert diff[2:-2, 2:-2].max() < 0.5, f"interior max diff {diff[2:-2, 2:-2].max():.3f}"
    assert diff.max() < 1.0, f"max diff {diff.max():.3f} (border included)"
    assert diff.mean() < 0.05, f"mean diff {diff.mean():.4f}"
    assert set(np.unique(np_mask)) <= {0.0, 1.0}
    assert np.mean(np_mask == tf_mask) > 0.99

    if name == "identity":
        np.testing.assert_allclose(np_image, image, atol=1e-3)
        np.testing.assert_array_equal(np_mask, mask)
    else:
        # The transform really did something (a twin that returned its input would fail here).
        assert np.abs(np_image - image).mean() > 2.0
        assert name == "intensity_only" or not np.array_equal(np_mask, mask)


def test_flip_is_left_right():
    image, mask = smooth_image(), block_mask()
    flip_case = CASES["flip_only"]
    np_image, np_mask = apply_augmentation_numpy(image, mask, *flip_case[:3], np.zeros(2), *flip_case[4:])
    np.testing.assert_allclose(np_image, image[:, ::-1], atol=1e-3)
    np.testing.assert_array_equal(np_mask, mask[:, ::-1])


def test_apply_augmentation_numpy_without_mask_matches_tensorflow():
    flip, angle, scale, shift, contrast, brightness = CASES["flip_rotate_zoom_in_shift"]
    image = smooth_image(seed=3)
    tf_image, tf_mask = run_tf(image, None, flip, angle, scale, shift, contrast, brightness)
    np_image, np_mask = apply_augmentation_numpy(image, None, flip, angle, scale, np.asarray(shift), contrast,
                                                 brightness)
    assert tf_mask is None and np_mask is None
    assert np_image.shape == (SIZE, SIZE, 3)
    assert np.abs(np_image - tf_image).max() < 1.0


def test_augment_numpy_draws_within_the_configured_ranges(monkeypatch):
    config = AugmentConfig(max_rotation_deg=12.0, max_scale_delta=0.1, max_shift_fraction=0.05,
                           max_brightness=0.05, max_contrast_delta=0.1)
    drawn = []

    def capture(image, mask, flip, angle, scale, shift, contrast, brightness):
        drawn.append((flip, angle, scale, np.asarray(shift), np.asarray(contrast), np.asarray(brightness)))
        return image, mask

    monkeypatch.setattr(numpy_batches, "apply_augmentation_numpy", capture)
    image, mask = smooth_image(), block_mask()
    for s in range(200):
        augment_numpy(image, mask, np.random.default_rng(s), config)
    flips = np.array([d[0] for d in drawn])
    angles = np.array([d[1] for d in drawn])
    scales = np.array([d[2] for d in drawn])
    shifts = np.stack([d[3] for d in drawn])
    contrasts = np.stack([d[4] for d in drawn])
    brightnesses = np.stack([d[5] for d in drawn])
    assert 0.3 < flips.mean() < 0.7
    assert np.abs(angles).max() <= 12 * DEG and np.abs(angles).max() > 10 * DEG  # radians, not degrees
    assert np.abs(scales - 1).max() <= 0.1 and np.abs(scales - 1).max() > 0.08
    assert shifts.shape == (200, 2) and np.abs(shifts).max() <= 0.05 and np.abs(shifts).max() > 0.04
    assert contrasts.shape == (200, 1, 1, 3) and np.abs(contrasts - 1).max() <= 0.1
    assert brightnesses.shape == (200, 1, 1, 3) and np.abs(brightnesses).max() <= 0.05 * 255
    assert np.abs(brightnesses).max() > 0.04 * 255

    drawn.clear()
    no_flip = AugmentConfig(flip_left_right=False)
    for s in range(20):
        augment_numpy(image, mask, np.random.default_rng(s), no_flip)
    assert not any(d[0] for d in drawn)


# Every random transform off: what is left of an augmentation is only the option under test.
STILL = dict(flip_left_right=False, max_rotation_deg=0, max_scale_delta=0, max_shift_fraction=0,
             max_brightness=0, max_contrast_delta=0)


def test_augment_numpy_with_everything_off_is_identity():
    config = AugmentConfig(**STILL)
    image, mask = smooth_image(), block_mask()
    out_image, out_mask = augment_numpy(image, mask, np.random.default_rng(0), config)
    np.testing.assert_allclose(out_image, image, atol=1e-3)
    np.testing.assert_array_equal(out_mask, mask)


@pytest.mark.parametrize("scaling", ["unit", "zscore"])
def test_scale_images_numpy_matches_tensorflow(scaling):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)
    images[2] = 37  # constant slice: zero variance
    expected = scale_images(images, scaling).numpy()
    got = scale_images_numpy(images, scaling)
    assert got.dtype == np.float32 and got.shape == images.shape
    np.testing.assert_allclose(got, expected, atol=1e-4)


# --- SliceBatches -------------------------------------------------------------------------------------

N = 10
SPEC = InputSpec(32, "zscore")
CONFIG = AugmentConfig(max_rotation_deg=15.0)


def slice_data(n: int = N, size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(5)
    images = np.stack([smooth_image(seed=i, size=size) for i in range(n)]).astype(np.uint8)
    masks = np.zeros((n, size, size, 1), np.float32)
    for i in range(n):
        y, x = rng.integers(4, size // 2, 2)
        masks[i, y:y + 10, x:x + 12] = 1.0
    return images, masks


def test_slice_batches_count_and_shapes():
    images, masks = slice_data()
    batches = SliceBatches(images, masks, SPEC, 4, CONFIG, shuffle=True, seed=1, workers=1)
    assert len(batches) == math.ceil(N / 4) == 3
    sizes = []
    for i in range(len(batches)):
        batch = batches[i]
        assert len(batch) == 2
        x, y = batch
        assert x.dtype == np.float32 and y.dtype == np.float32
        assert x.shape[1:] == (32, 32, 3) and y.shape[1:] == (32, 32, 1) and len(x) == len(y)
        sizes.append(len(x))
    assert sizes == [4, 4, 2]

    weights = np.linspace(0.5, 1.5, N).astype(np.float64)
    weighted = SliceBatches(images, masks, SPEC, 4, CONFIG, shuffle=False, seed=1, sample_weights=weights,
                            workers=1)
    x, y, w = weighted[2]
    assert x.shape == (2, 32, 32, 3) and y.shape == (2, 32, 32, 1)
    assert w.dtype == np.float32
    np.testing.assert_allclose(w, weights[8:10], rtol=1e-6)

    labels = np.arange(N) % 2
    classifier = SliceBatches(images, labels, SPEC, 4, CONFIG, shuffle=True, seed=1, workers=1)
    x, y = classifier[0]
    assert x.shape == (4, 32, 32, 3) and y.shape == (4,) and y.dtype == np.float32


def test_slice_batches_are_reproducible_and_reshuffle_each_epoch():
    images, masks = slice_data()

    def make():
        return SliceBatches(images, masks, SPEC, 4, CONFIG, shuffle=True, seed=7, workers=1)

    first, second = make(), make()
    for i in range(len(first)):
        a, b = first[i], second[i]
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
    # Asking twice for the same batch gives it again (a pure function of seed, epoch, index).
    np.testing.assert_array_equal(first[1][0], first[1][0])

    order0 = first.order()
    assert sorted(order0) == list(range(N))
    first.on_epoch_end()
    order1 = first.order()
    assert sorted(order1) == list(range(N))
    assert not np.array_equal(order0, order1)
    assert not np.array_equal(first[0][0], second[0][0])
    second.on_epoch_end()
    np.testing.assert_array_equal(first[0][0], second[0][0])

    other_seed = SliceBatches(images, masks, SPEC, 4, CONFIG, shuffle=True, seed=8, workers=1)
    assert not np.array_equal(other_seed[0][0], make()[0][0])


def test_slice_batches_of_a_resumed_run_go_on_at_the_epoch_it_stopped():
    images, masks = slice_data()
    uninterrupted = SliceBatches(images, masks, SPEC, 4, CONFIG, shuffle=True, seed=7, workers=1)
    uninterrupted.on_epoch_end()
    uninterrupted.on_epoch_end()
    resumed = SliceBatches(images, masks, SPEC, 4, CONFIG, shuffle=True, seed=7, epochs_done=2, workers=1)
    np.testing.assert_array_equal(resumed.order(), uninterrupted.order())
    np.testing.assert_array_equal(resumed[1][0], uninterrupted[1][0])


def test_slice_batch_is_augment_numpy_of_its_rows():
    images, masks = slice_data()
    batches = SliceBatches(images, masks, SPEC, 4, CONFIG, shuffle=True, seed=3, workers=1)
    batches.on_epoch_end()
    rows = batches.order()[4:8]
    x, y = batches[1]
    for i, row in enumerate(rows):
        rng = np.random.default_rng([3, 1, int(row)])
        image, mask = augment_numpy(images[row].astype(np.float32), masks[row], rng, CONFIG)
        np.testing.assert_allclose(x[i], scale_images_numpy(image[None], SPEC.scaling)[0], atol=1e-5)
        np.testing.assert_array_equal(y[i], mask)


def test_slice_batches_without_shuffle_keep_order():
    images, masks = slice_data()
    batches = SliceBatches(images, masks, InputSpec(32, "unit"), 4, None, shuffle=False, workers=1)
    np.testing.assert_array_equal(batches.order(), np.arange(N))
    batches.on_epoch_end()
    np.testing.assert_array_equal(batches.order(), np.arange(N))
    got = np.concatenate([batches[i][0] for i in range(len(batches))])
    np.testing.assert_allclose(got, images.astype(np.float32) / 255.0, atol=1e-6)
    np.testing.assert_array_equal(np.concatenate([batches[i][1] for i in range(len(batches))]), masks)


def test_slice_batches_masks_stay_binary_and_move_with_their_images():
    # Each image's channels carry its own mask, so after any transform image and mask must still agree.
    _, masks = slice_data()
    images = np.repeat(masks * 255.0, 3, axis=3).astype(np.uint8)
    config = AugmentConfig(max_brightness=0.0, max_contrast_delta=0.0, max_rotation_deg=15.0)
    batches = SliceBatches(images, masks, InputSpec(32, "unit"), 5, config, shuffle=True, seed=2, workers=1)
    moved = 0
    for _ in range(2):
        for i in range(len(batches)):
            x, y = batches[i]
            assert set(np.unique(y)) <= {0.0, 1.0}
            for image, mask in zip(x, y, strict=True):
                assert np.mean((image[..., 0] > 0.5) == (mask[..., 0] > 0.5)) > 0.99
                assert mask.sum() > 0
            rows = batches.order()[i * 5:(i + 1) * 5]
            moved += sum(not np.array_equal(y[j], masks[row]) for j, row in enumerate(rows))
        batches.on_epoch_end()
    assert moved >= 2 * N - 3  # nearly every slice really was transformed


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="checks the TensorFlow backend's pipeline")
def test_make_dataset_is_tf_data_on_tensorflow_backend():
    images, masks = slice_data(n=4)
    dataset = make_dataset(images, masks, SPEC, 2, CONFIG, shuffle=True, seed=0)
    assert isinstance(dataset, tf.data.Dataset)
    assert not isinstance(dataset, SliceBatches)
    x, y = next(iter(dataset))
    assert x.shape == (2, 32, 32, 3) and y.shape == (2, 32, 32, 1)


@pytest.mark.parametrize("probability", [0.0, 1.0])
def test_missing_sequence_augmentation_copies_flair_in_both_pipelines(probability):
    """At probability 1 both pipelines give slices whose three channels are FLAIR (as the dataset stores a
    patient lacking pre- and post-contrast); at 0 the channels stay as they were."""
    from brainseg.core.preprocess import AugmentConfig, augment

    image = np.random.default_rng(3).uniform(0, 255, (24, 24, 3)).astype(np.float32)
    still = AugmentConfig(**STILL, missing_sequence_prob=probability)
    tf_out, _ = augment(tf.constant(image), None, tf.constant([1, 2]), still)
    np_out, _ = augment_numpy(image, None, np.random.default_rng(0), still)
    expected = np.repeat(image[..., 1:2], 3, axis=2) if probability else image
    for out in (tf_out.numpy(), np_out):
        assert np.allclose(out, expected, atol=1e-3)


def test_missing_sequence_augmentation_draws_each_sequence_independently():
    from brainseg.core.preprocess import AugmentConfig

    image = np.stack([np.full((8, 8), v, np.float32) for v in (10.0, 100.0, 200.0)], axis=-1)
    config = AugmentConfig(**STILL, missing_sequence_prob=0.5)
    seen = set()
    for seed in range(60):
        out, _ = augment_numpy(image, None, np.random.default_rng(seed), config)
        seen.add((bool(out[0, 0, 0] == 100.0), bool(out[0, 0, 2] == 100.0)))
        assert out[0, 0, 1] == 100.0
    assert seen == {(False, False), (True, False), (False, True), (True, True)}


def test_apply_gamma_is_the_same_power_in_both_pipelines():
    from brainseg.core.preprocess import apply_gamma

    image = smooth_image(4)
    gamma = np.array([0.5, 1.0, 2.0], np.float32).reshape(1, 1, 3)
    np_out = apply_gamma(image, gamma)
    tf_out = apply_gamma(tf.constant(image), tf.constant(gamma)).numpy()
    np.testing.assert_allclose(tf_out, np_out, rtol=1e-5, atol=1e-3)
    # By hand: 255 (x / 255) ** gamma, per sequence; black and white stay where they are.
    assert np_out[0, 0, 0] == pytest.approx(255 * (image[0, 0, 0] / 255) ** 0.5, rel=1e-5)
    np.testing.assert_allclose(np_out[..., 1], image[..., 1], rtol=1e-6)
    assert np_out[0, 0, 2] == pytest.approx(image[0, 0, 2] ** 2 / 255, rel=1e-5)
    ends = np.array([0.0, 255.0], np.float32).reshape(1, 2, 1).repeat(3, axis=2)
    np.testing.assert_allclose(apply_gamma(ends, gamma), ends)


def test_gamma_jitter_draws_each_sequence_within_its_range_in_both_pipelines():
    """A channel of constant value v comes out as 255 (v / 255) ** gamma; solving for gamma gives the draw."""
    from brainseg.core.preprocess import augment

    image = np.full((8, 8, 3), 64.0, np.float32)
    config = AugmentConfig(**STILL, max_gamma=1.5)
    drawn = []
    for seed in range(100):
        np_out, _ = augment_numpy(image, None, np.random.default_rng(seed), config)
        tf_out, _ = augment(tf.constant(image), None, tf.constant([seed, 7]), config)
        for out in (np_out, tf_out.numpy()):
            drawn.append(np.log(out[0, 0] / 255.0) / np.log(64.0 / 255.0))
    drawn = np.array(drawn)
    assert drawn.min() >= 1 / 1.5 - 1e-4 and drawn.max() <= 1.5 + 1e-4
    assert drawn.min() < 0.7 and drawn.max() > 1.4  # the whole range is used, both ways
    assert np.corrcoef(drawn[:, 0], drawn[:, 2])[0, 1] < 0.5  # sequences drawn independently


def test_gamma_jitter_is_off_by_default_and_refuses_a_range_below_one():
    image = smooth_image(5)
    out, _ = augment_numpy(image, None, np.random.default_rng(0), AugmentConfig(**STILL))
    np.testing.assert_allclose(out, image, atol=1e-3)
    with pytest.raises(ValueError, match="max_gamma"):
        AugmentConfig(max_gamma=0.8)


def test_z_score_undoes_contrast_and_brightness_jitter_but_not_gamma():
    """Why the gamma jitter exists: the models' per-slice, per-sequence z-score removes any linear change of a
    sequence's intensities (short of clipping), so only a non-linear one varies what the networks see."""
    from brainseg.core.preprocess import apply_gamma

    image = 40.0 + 0.6 * smooth_image(6)[None]  # well inside 0..255: no clipping
    linear = image * CONTRAST + BRIGHTNESS
    gamma = apply_gamma(image[0], np.full((1, 1, 3), 1.5, np.float32))[None]
    base = scale_images_numpy(image, "zscore")
    np.testing.assert_allclose(scale_images_numpy(linear, "zscore"), base, atol=1e-3)
    assert np.abs(scale_images_numpy(gamma, "zscore") - base).max() > 0.05
