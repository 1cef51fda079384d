import pytest

from brainseg.core.networks import (
    SEED_CLASSIFIER_PARAMS,
    SEED_SEGMENTER_PARAMS,
    build_classifier,
    build_segmenter,
)


def test_seed_classifier_has_exact_parameter_count():
    model = build_classifier(256, 1.0)
    assert model.count_params() == SEED_CLASSIFIER_PARAMS == 8_880_897
    assert model.output_shape == (None, 1)


def test_seed_segmenter_has_exact_parameter_count():
    model = build_segmenter(256, 1.0)
    assert model.count_params() == SEED_SEGMENTER_PARAMS == 1_210_513
    assert model.output_shape == (None, 256, 256, 1)


def test_cheaper_variants_are_smaller_and_keep_shapes():
    classifier = build_classifier(128, 0.5)
    segmenter = build_segmenter(128, 0.5)
    assert classifier.count_params() < SEED_CLASSIFIER_PARAMS / 4
    assert segmenter.count_params() < SEED_SEGMENTER_PARAMS / 3
    assert segmenter.output_shape == (None, 128, 128, 1)


def test_segmenter_rejects_sizes_that_do_not_survive_four_poolings():
    with pytest.raises(ValueError, match="multiple of 16"):
        build_segmenter(100)
