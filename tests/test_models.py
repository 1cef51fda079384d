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


def test_side_maps_train_alongside_and_leave_the_inference_network_as_built():
    import numpy as np

    from brainseg.core.networks import decoder_stage_output, inference_network, with_side_maps

    segmenter = build_segmenter(32, 0.125)
    wrapped = with_side_maps(segmenter, levels=2)
    assert wrapped.output_shape == (None, 32, 32, 3)
    # Two 1x1 heads (weights + bias on the up2 and up3 stages' features) are all that is added.
    extra = wrapped.count_params() - segmenter.count_params()
    up2, up3 = (segmenter.get_layer(decoder_stage_output(i)).output.shape[-1] for i in (2, 3))
    assert extra == (up2 + 1) + (up3 + 1)

    network = inference_network(wrapped)
    assert network.output_shape == (None, 32, 32, 1)
    assert network.count_params() == segmenter.count_params()
    images = np.random.default_rng(0).uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32)
    np.testing.assert_allclose(network.predict(images, verbose=0), wrapped.predict(images, verbose=0)[..., :1],
                               atol=1e-6)
    np.testing.assert_allclose(network.predict(images, verbose=0), segmenter.predict(images, verbose=0), atol=1e-6)
    assert inference_network(segmenter) is segmenter


def test_side_maps_come_only_from_the_coarser_decoder_stages():
    from brainseg.core.networks import with_side_maps

    segmenter = build_segmenter(32, 0.125)
    for levels in (0, 4):
        with pytest.raises(ValueError, match="coarser decoder stages"):
            with_side_maps(segmenter, levels)
