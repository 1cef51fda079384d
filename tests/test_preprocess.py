import numpy as np
import pytest
import tensorflow as tf

from brainseg.core.preprocess import (
    GREY_AIR_LEVEL,
    AugmentConfig,
    InputSpec,
    augment,
    black_background,
    make_dataset,
    prepare_images,
    resize_images,
    resize_masks,
    scale_images,
    upsample_maps,
)


def test_resize_images_and_masks():
    images = np.random.default_rng(0).integers(0, 255, (2, 256, 256, 3), dtype=np.uint8)
    assert resize_images(images, 128).shape == (2, 128, 128, 3)
    masks = np.zeros((1, 256, 256), bool)
    masks[0, :128, :128] = True
    small = resize_masks(masks, 128)
    assert small.shape == (1, 128, 128, 1)
    assert small.sum() == 64 * 64


def grey_air_slice(level: int) -> np.ndarray:
    """A 16x16 slice: pre-contrast air at ``level`` with a 120 'tissue' square and one 40 pixel darker than
    the air; FLAIR and post-contrast with black air and a 200 square."""
    image = np.zeros((16, 16, 3), np.uint8)
    image[..., 0] = level
    image[4:12, 4:12] = (120, 200, 200)
    image[8, 8, 0] = 40
    return image


def test_black_background_shifts_grey_air_to_black_and_nothing_else():
    out = black_background(grey_air_slice(76)[None])[0]
    assert (out[0, :, 0] == 0).all() and (out[:, -1, 0] == 0).all()  # air black
    assert out[5, 5, 0] == 120 - 76 and out[8, 8, 0] == 0  # tissue shifted by the air level, clipped at 0
    assert np.array_equal(out[..., 1:], grey_air_slice(76)[..., 1:])  # black-air channels untouched
    # Idempotent: the result has black air, so a second pass changes nothing.
    assert np.array_equal(black_background(out[None])[0], out)


def test_black_background_leaves_black_air_dim_air_and_tissue_filled_borders_alone():
    rng = np.random.default_rng(0)
    black = rng.integers(0, 255, (2, 16, 16, 3), dtype=np.uint8)
    black[:, [0, -1]] = 0
    black[:, :, [0, -1]] = 0
    assert np.array_equal(black_background(black), black)
    at_level = grey_air_slice(GREY_AIR_LEVEL)[None]  # the LGG data's dim air (up to 11) stays as it is
    assert np.array_equal(black_background(at_level), at_level)
    assert black_background(grey_air_slice(GREY_AIR_LEVEL + 1)[None])[0, 0, 0, 0] == 0
    tissue = rng.integers(40, 200, (1, 16, 16, 3), dtype=np.uint8)  # a crop whose border is not uniform air
    assert np.array_equal(black_background(tissue), tissue)


def test_prepare_images_is_black_background_then_resize(demo_dir):
    from brainseg.core.data import load_dataset, load_slices

    manifest, _ = load_dataset(demo_dir)
    grey, _ = load_slices(manifest[manifest["patient_id"] == "TCGA_FG_A4MU"].iloc[:3])  # pre-contrast air at 61
    black, _ = load_slices(manifest[manifest["patient_id"] == "TCGA_CS_6669"].iloc[:3])
    assert np.median(grey[:, 0, :, 0]) > GREY_AIR_LEVEL
    prepared = prepare_images(grey, 128)
    assert np.array_equal(prepared, resize_images(black_background(grey), 128))
    assert np.median(prepared[:, 0, :, 0]) == 0 and np.array_equal(prepared[..., 1:], resize_images(grey, 128)[..., 1:])
    assert np.array_equal(prepare_images(black, 128), resize_images(black, 128))


def test_upsample_maps_back_to_slice_size():
    maps = np.zeros((1, 128, 128, 1), np.float32)
    maps[0, :64] = 1.0
    up = upsample_maps(maps, 256, 256)
    assert up.shape == (1, 256, 256)
    assert (up[0, :120] > 0.99).all() and (up[0, 136:] < 0.01).all()


def test_unit_and_zscore_scaling():
    images = np.stack([np.full((4, 4, 3), 255, np.uint8), np.arange(48, dtype=np.uint8).reshape(4, 4, 3)])
    assert np.allclose(scale_images(images, "unit").numpy()[0], 1.0)
    z = scale_images(images, "zscore").numpy()[1]
    assert np.allclose(z.mean(axis=(0, 1)), 0.0, atol=1e-5)
    assert np.allclose(z.std(axis=(0, 1)), 1.0, atol=1e-3)


def test_unknown_scaling_is_refused():
    with pytest.raises(ValueError, match="unknown scaling"):
        InputSpec(128, "minmax")


def test_augmentation_moves_image_and_mask_together():
    # The image's three channels carry the mask itself, so after any transform they must still agree.
    mask = np.zeros((64, 64, 1), np.float32)
    mask[20:40, 10:30] = 1.0
    image = np.repeat(mask * 255.0, 3, axis=2)
    config = AugmentConfig(max_brightness=0.0, max_contrast_delta=0.0, max_rotation_deg=15)
    moved = 0
    for s in range(8):
        out_image, out_mask = augment(tf.constant(image), tf.constant(mask), tf.constant([s, 1]), config)
        agree = np.mean((out_image.numpy()[..., 0] > 127) == (out_mask.numpy()[..., 0] > 0.5))
        assert agree > 0.99
        moved += not np.array_equal(out_mask.numpy(), mask)
    assert moved >= 6  # the transforms really do something


def test_augmentation_is_reproducible_with_the_same_seed():
    image = tf.constant(np.random.default_rng(1).uniform(0, 255, (32, 32, 3)).astype(np.float32))
    a, _ = augment(image, None, tf.constant([5, 7]), AugmentConfig())
    b, _ = augment(image, None, tf.constant([5, 7]), AugmentConfig())
    c, _ = augment(image, None, tf.constant([6, 7]), AugmentConfig())
    assert np.array_equal(a.numpy(), b.numpy())
    assert not np.array_equal(a.numpy(), c.numpy())


def test_make_dataset_batches_scaled_images_with_targets():
    images = np.random.default_rng(2).integers(0, 255, (5, 32, 32, 3), dtype=np.uint8)
    masks = np.zeros((5, 32, 32, 1), np.float32)
    batches = list(make_dataset(images, masks, InputSpec(32, "unit"), 2, AugmentConfig(), shuffle=True, seed=0))
    assert [b[0].shape[0] for b in batches] == [2, 2, 1]
    assert batches[0][1].shape == (2, 32, 32, 1)
    assert float(tf.reduce_max(batches[0][0])) <= 1.0
    labels = np.array([0, 1, 0, 1, 1], np.float32)
    weights = np.ones(5)
    x, y, w = next(iter(make_dataset(images, labels, InputSpec(32, "unit"), 5, sample_weights=weights)))
    assert y.numpy().tolist() == labels.tolist() and w.shape == (5,)
    assert np.allclose(x.numpy(), images / 255.0)


def test_make_dataset_refuses_wrong_size():
    with pytest.raises(ValueError, match="expects 64x64"):
        make_dataset(np.zeros((1, 32, 32, 3), np.uint8), np.zeros(1), InputSpec(64), 1)
