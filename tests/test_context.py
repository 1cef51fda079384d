"""Neighbouring slices as extra input channels (2.5-D): which slices are read, how they are stacked, and that
training, augmentation and the cascade all read them the same way."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import channel_probe

from brainseg.core.context import context_rows, lone_rows, stack_context
from brainseg.core.preprocess import InputSpec, replace_missing_sequences


def test_context_rows_replaces_missing_neighbours_by_the_nearest_slice_towards_the_centre():
    # Slices 1, 2, 3 and 5 of one volume (4 is missing).
    assert context_rows([1, 2, 3, 5], 1).tolist() == [[0, 0, 1], [0, 1, 2], [1, 2, 2], [3, 3, 3]]
    assert context_rows([1, 2, 3, 5], 2).tolist() == [[0, 0, 0, 1, 2], [0, 0, 1, 2, 2], [0, 1, 2, 2, 3],
                                                      [2, 3, 3, 3, 3]]


def test_context_rows_never_crosses_volumes_and_follows_slice_numbers_not_positions():
    rows = context_rows([2, 1, 1, 2], 1, volumes=["a", "a", "b", "b"])
    assert rows.tolist() == [[1, 0, 0], [1, 1, 0], [2, 2, 3], [2, 3, 3]]


def test_context_rows_refuses_ambiguous_slices_and_negative_k():
    with pytest.raises(ValueError, match="ambiguous"):
        context_rows([1, 1], 1)
    with pytest.raises(ValueError, match="0 or more"):
        context_rows([1], -1)


def test_zero_context_and_lone_slices_read_only_the_slice_itself():
    assert context_rows([7, 8, 9], 0).tolist() == [[0], [1], [2]]
    assert lone_rows(2, 1).tolist() == [[0, 0, 0], [1, 1, 1]]


def test_stack_context_puts_the_slices_in_order_each_as_pre_flair_post():
    images = np.arange(3 * 2 * 2 * 3, dtype=np.uint8).reshape(3, 2, 2, 3)
    stacked = stack_context(images, context_rows([1, 2, 3], 1))
    assert stacked.shape == (3, 2, 2, 9)
    np.testing.assert_array_equal(stacked[1, ..., 0:3], images[0])
    np.testing.assert_array_equal(stacked[1, ..., 3:6], images[1])
    np.testing.assert_array_equal(stacked[1, ..., 6:9], images[2])
    np.testing.assert_array_equal(stacked[0, ..., 0:3], images[0])  # first slice: its own upper neighbour
    np.testing.assert_array_equal(stack_context(images, context_rows([1, 2, 3], 0)), images)


def test_input_spec_channels_and_record():
    assert InputSpec(128, "zscore").channels == 3
    assert InputSpec(128, "zscore", 2).channels == 15
    # A 3-channel model's sidecar reads as it did before context slices existed.
    assert InputSpec(128, "zscore").to_dict() == {"size": 128, "scaling": "zscore"}
    assert InputSpec(128, "zscore", 1).to_dict()["context_slices"] == 1
    with pytest.raises(ValueError):
        InputSpec(128, "zscore", -1)
    # Every reader of a sidecar or run record goes through from_record, to_dict's inverse.
    for spec in (InputSpec(128, "zscore"), InputSpec(64, "unit", 2)):
        assert InputSpec.from_record(spec.to_dict()) == spec
    assert InputSpec.from_record({"size": 96, "scaling": "unit"}).context_slices == 0


def test_missing_sequences_are_missing_in_every_neighbour():
    image = np.arange(2 * 2 * 9, dtype=np.float32).reshape(2, 2, 9)
    out = replace_missing_sequences(image, np.array([True, False]))
    for group in range(3):
        flair = image[..., 3 * group + 1]
        np.testing.assert_array_equal(out[..., 3 * group], flair)  # pre-contrast replaced by this slice's FLAIR
        np.testing.assert_array_equal(out[..., 3 * group + 2], image[..., 3 * group + 2])  # post-contrast kept


def _smooth(size: int, seed: int) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size] / size
    rng = np.random.default_rng(seed)
    return np.stack([100 + 80 * np.sin(3 * xx + rng.uniform(0, 3)) * np.cos(2 * yy + rng.uniform(0, 3))
                     for _ in range(3)], axis=-1).astype(np.float32)


def test_augmentation_moves_a_slice_and_its_neighbours_as_one():
    import tensorflow as tf

    from brainseg.core.numpy_batches import apply_augmentation_numpy
    from brainseg.core.preprocess import apply_augmentation

    groups = [_smooth(32, seed) for seed in range(3)]
    image = np.concatenate(groups, axis=-1)
    mask = np.zeros((32, 32, 1), np.float32)
    mask[10:20, 12:22] = 1
    params = (True, 0.12, 1.06, np.array([0.03, -0.02], np.float32),
              np.array([[[1.05, 0.95, 1.02]]], np.float32), np.array([[[3.0, -4.0, 1.0]]], np.float32))
    tf_params = [tf.constant(p) for p in params]
    out, out_mask = apply_augmentation(tf.constant(image), tf.constant(mask), *tf_params)
    assert out.shape == (32, 32, 9)
    for g, group in enumerate(groups):  # each slice transformed exactly as a 3-channel input would be
        alone, alone_mask = apply_augmentation(tf.constant(group), tf.constant(mask), *tf_params)
        np.testing.assert_allclose(out.numpy()[..., 3 * g:3 * g + 3], alone.numpy(), atol=1e-3)
        np.testing.assert_array_equal(out_mask.numpy(), alone_mask.numpy())
    np_out, np_mask = apply_augmentation_numpy(image, mask, *params)
    assert np.abs(np_out - out.numpy())[2:-2, 2:-2].max() < 0.5  # the numpy twin agrees (GPU machines use it)
    assert np.mean(np_mask == out_mask.numpy()) > 0.99


@pytest.fixture
def context_volume():
    """One volume of 5 slices, rows 0-4: row n's pixels all equal 5 n (below the grey-air level, so the input
    path leaves them as they are), tumor on rows 2 and 3 only."""
    images = np.stack([np.full((32, 32, 3), 5 * n, np.uint8) for n in range(5)])
    masks = np.zeros((5, 32, 32), bool)
    masks[2:4, 8:16, 8:16] = True
    manifest = pd.DataFrame({"patient_id": "TCGA_XX_0001", "case": "TCGA_XX_0001_20000101", "slice": range(1, 6),
                             "has_tumor": masks.any(axis=(1, 2)), "cache_row": range(5)})
    return manifest, images, masks


def test_training_reads_neighbours_the_selection_left_out(context_volume):
    from brainseg.training.train import config_with_overrides, prepare_arrays, recipe

    manifest, images, masks = context_volume
    config = config_with_overrides(recipe("segmenter", "cpu"), input_size=32, context_slices=1)
    selected = manifest[manifest["has_tumor"]]  # slices 3 and 4 (rows 2, 3); their neighbours are tumor-free
    x, y = prepare_arrays(selected, config, progress=False, cache=(images, masks), volumes=manifest)
    assert x.shape == (2, 32, 32, 9) and y.shape == (2, 32, 32, 1)
    assert [int(v) for v in x[0, 0, 0, ::3]] == [5, 10, 15]  # rows 1, 2, 3
    assert [int(v) for v in x[1, 0, 0, ::3]] == [10, 15, 20]
    assert y.sum() == masks[2:4].sum()  # targets are the selected slices' own masks
    plain, _ = prepare_arrays(selected, config_with_overrides(config, context_slices=0), progress=False,
                              cache=(images, masks), volumes=manifest)
    np.testing.assert_array_equal(plain, x[..., 3:6])


@pytest.fixture(scope="module")
def context_models_dir(tmp_path_factory, tiny_models_dir):
    """The tiny classifier with a tiny segmenter reading one neighbour on each side."""
    import shutil

    import keras

    from brainseg.core.networks import build_segmenter

    keras.utils.set_random_seed(7)
    folder = tmp_path_factory.mktemp("context_models")
    for name in ("classifier.keras", "classifier.json"):
        shutil.copy2(tiny_models_dir / name, folder / name)
    build_segmenter(32, 0.25, channels=9).save(folder / "segmenter.keras")
    (folder / "segmenter.json").write_text(json.dumps({"role": "segmenter", "input_spec": {
        "size": 32, "scaling": "zscore", "context_slices": 1}}))
    return folder


def _volume(n: int = 7) -> np.ndarray:
    rng = np.random.default_rng(3)
    return rng.integers(0, 255, (n, 32, 32, 3), dtype=np.uint8)


def test_cascade_feeds_a_context_segmenter_each_slice_with_its_neighbours(context_models_dir):
    from brainseg.inference.cascade import Cascade

    images, numbers = _volume(), np.arange(10, 17)
    cascade = Cascade.from_dir(context_models_dir, batch_size=3)  # neighbours cross batch boundaries
    assert cascade.segmenter.spec.context_slices == 1
    _, maps = cascade.predict_native(images, numbers)
    expected = cascade.segmenter.infer(stack_context(images, context_rows(numbers, 1)))[..., 0]
    np.testing.assert_allclose(maps, expected, atol=1e-5)
    # Unrelated slices (uploads) read as their own neighbours: other inputs, other maps.
    _, lone_maps = cascade.predict_native(images)
    np.testing.assert_allclose(lone_maps, cascade.segmenter.infer(stack_context(images, lone_rows(7, 1)))[..., 0],
                               atol=1e-5)
    assert np.abs(lone_maps - maps).max() > 1e-4
    with pytest.raises(ValueError, match="slice numbers"):
        cascade.predict_native(images, numbers[:3])


def test_a_plain_segmenter_ignores_slice_numbers(tiny_models_dir):
    from brainseg.inference.cascade import Cascade

    cascade = Cascade.from_dir(tiny_models_dir)
    images = _volume()
    with_numbers, without = cascade.predict_native(images, np.arange(7)), cascade.predict_native(images)
    for a, b in zip(with_numbers, without, strict=True):
        np.testing.assert_array_equal(a, b)


def test_load_model_refuses_a_sidecar_that_disagrees_with_the_weights(context_models_dir, tmp_path):
    import shutil

    from brainseg.errors import ModelLoadError
    from brainseg.inference.cascade import load_model

    shutil.copy2(context_models_dir / "segmenter.keras", tmp_path / "segmenter.keras")
    (tmp_path / "segmenter.json").write_text(json.dumps({"input_spec": {"size": 32, "scaling": "zscore"}}))
    with pytest.raises(ModelLoadError, match="9 channels"):
        load_model(tmp_path / "segmenter.keras", "segmenter")


def test_tta_moves_the_neighbours_with_the_slice():
    from brainseg.core.preprocess import prepare_images
    from brainseg.review.uncertainty import tta_segment

    images, numbers = _volume(), np.arange(10, 17)
    probe = channel_probe(InputSpec(32, "zscore", context_slices=1), channel=1)  # the slice below's 2nd channel
    tta = tta_segment(probe, images, slice_numbers=numbers)
    assert tta.std.shape == (7, 32, 32) and tta.n_views == 6
    # Every view, mirrored or shifted with its neighbours and mapped back, shows the slice below: no spread.
    expected = probe.infer(stack_context(prepare_images(images, 32), context_rows(numbers, 1)))[..., 0]
    inner = (slice(None), slice(1, -1), slice(1, -1))  # the shifted views' zero-filled border aside
    np.testing.assert_allclose(tta.mean[inner], expected[inner], atol=1e-6)
    assert tta.std[inner].max() < 1e-6
    # Without slice numbers each slice is its own neighbour: another map (the probe does see the neighbour).
    assert np.abs(tta_segment(probe, images).mean[inner] - expected[inner]).max() > 0.1


def test_ray_chunks_hold_whole_patients_for_a_context_segmenter(context_models_dir, tiny_models_dir):
    from brainseg.scoring.engines import chunk_rows, segmenter_context_slices

    manifest = pd.DataFrame({"patient_id": ["a"] * 5 + ["b"] * 2, "slice": [1, 2, 3, 4, 5, 1, 2],
                             "image_path": [f"p{i}.tif" for i in range(7)]})
    assert segmenter_context_slices(context_models_dir) == 1 and segmenter_context_slices(tiny_models_dir) == 0
    whole = chunk_rows(manifest, 2, whole_patients=True)
    assert [(c["patient_id"], c["slice_numbers"]) for c in whole] == [("a", [1, 2, 3, 4, 5]), ("b", [1, 2])]
    assert [len(c["image_paths"]) for c in chunk_rows(manifest, 2)] == [2, 2, 1, 2]
