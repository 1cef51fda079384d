import shutil
import zipfile

import numpy as np
import pytest

from brainseg.errors import ModelLoadError
from brainseg.inference.cascade import (
    SLICE_SCORES,
    AveragedModel,
    Cascade,
    CascadeResult,
    describe_slice_score,
    lift_by_neighbours,
    load_model,
    slice_score_reach,
    slice_scores,
)


def _result():
    maps = np.zeros((3, 8, 8), np.float32)
    maps[0, :2, :2] = 0.9  # confident tumor, confident slice
    maps[1, :2, :2] = 0.9  # tumor drawn, but the classifier is unsure
    maps[2] = 0.2  # classifier says tumor, segmenter draws nothing
    return CascadeResult(np.array([0.95, 0.3, 0.8], np.float32), maps)


def test_gate_empties_masks_below_threshold():
    result = _result()
    masks = result.masks(0.5)
    assert masks[0].sum() == 4
    assert masks[1].sum() == 0  # below the gate
    assert result.masks(0.2)[1].sum() == 4  # a lower threshold lets it through
    assert result.segmenter_masks()[1].sum() == 4  # the segmenter alone ignores the gate


def test_positive_slice_with_empty_mask_is_reported_no_tumor():
    result = _result()
    assert result.decisions(0.5).tolist() == [True, False, False]
    assert result.tumor_pixels(0.05).tolist() == [4, 4, 0]


def test_a_slice_score_is_lifted_to_its_neighbours_mean_by_slice_number():
    scores = np.array([0.1, 0.8, 0.2, 0.6], np.float32)
    # Volume ends: the missing neighbour is the slice itself, so slice 1 reads (0.1 + 0.8) / 2.
    assert lift_by_neighbours(scores, np.array([1, 2, 3, 4])) == pytest.approx([0.45, 0.8, 0.7, 0.6])
    # Neighbours go by number, not by position: the same slices given in another order get the same scores.
    order = np.array([2, 0, 3, 1])
    assert lift_by_neighbours(scores[order], np.array([1, 2, 3, 4])[order]) == pytest.approx([0.7, 0.45, 0.6, 0.8])
    # A gap in the numbering: slice 7 has no slice 6, so its lower neighbour is itself: (0.2 + 0.6) / 2.
    assert lift_by_neighbours(scores, np.array([1, 2, 7, 8])) == pytest.approx([0.45, 0.8, 0.4, 0.6])
    # Unrelated slices (an upload) keep their scores.
    assert np.array_equal(lift_by_neighbours(scores, None), scores)
    with pytest.raises(ValueError, match="3 slice numbers for 4"):
        lift_by_neighbours(scores, np.array([1, 2, 3]))


def test_a_lifted_score_is_never_below_the_combined_one_and_lone_slices_keep_it():
    rng = np.random.default_rng(0)
    probabilities, maps = rng.random(20).astype(np.float32), rng.random((20, 4, 4)).astype(np.float32)
    numbers = rng.permutation(40)[:20]
    combined = slice_scores(probabilities, maps, "classifier+segmenter")
    lifted = slice_scores(probabilities, maps, "classifier+segmenter+neighbours", numbers)
    assert (lifted >= combined).all() and (lifted > combined).any()
    assert np.array_equal(slice_scores(probabilities, maps, "classifier+segmenter+neighbours"), combined)
    result = CascadeResult(probabilities, maps, slice_score="classifier+segmenter+neighbours", slice_numbers=numbers)
    assert np.array_equal(result.probabilities, lifted)
    assert all(describe_slice_score(kind) for kind in SLICE_SCORES)
    with pytest.raises(ValueError, match="unknown slice score"):
        describe_slice_score("neighbours")


def test_a_volume_scored_by_the_cascade_carries_its_slice_numbers_to_the_score(tiny_models_dir):
    cascade = Cascade.from_dir(tiny_models_dir)
    cascade.slice_score = "classifier+segmenter+neighbours"
    images = np.random.default_rng(1).integers(0, 255, (5, 256, 256, 3), dtype=np.uint8)
    numbers = np.array([3, 4, 5, 6, 7])
    volume, lone = cascade.predict(images, numbers), cascade.predict(images)
    assert np.array_equal(volume.slice_numbers, numbers) and lone.slice_numbers is None
    combined = slice_scores(volume.classifier_probabilities, volume.maps, "classifier+segmenter")
    assert np.array_equal(volume.probabilities, lift_by_neighbours(combined, numbers))
    assert np.allclose(lone.probabilities, combined)


class CountingModel:
    """Wraps a LoadedModel's infer to count calls and batch sizes."""

    def __init__(self, loaded):
        self.loaded, self.batches = loaded, []
        original = loaded.infer

        def counting(images):
            self.batches.append(len(images))
            return original(images)

        loaded.infer = counting


def test_cascade_runs_in_batches_and_threshold_changes_run_nothing(tiny_models_dir):
    cascade = Cascade.from_dir(tiny_models_dir, batch_size=3)
    classifier_calls = CountingModel(cascade.classifier)
    segmenter_calls = CountingModel(cascade.segmenter)
    images = np.random.default_rng(0).integers(0, 255, (7, 256, 256, 3), dtype=np.uint8)
    result = cascade.predict(images)
    assert classifier_calls.batches == [3, 3, 1]
    assert segmenter_calls.batches == [3, 3, 1]
    assert result.probabilities.shape == (7,)
    assert result.maps.shape == (7, 256, 256)
    for threshold in np.linspace(0, 1, 11):
        result.masks(threshold)
        result.decisions(threshold)
    assert len(classifier_calls.batches) == 3 and len(segmenter_calls.batches) == 3

    # Another batch size changes only float rounding (oneDNN picks kernels by batch shape: ~1e-5 seen);
    # a batch misaligned with its slices would differ by orders of magnitude more.
    one_batch = Cascade.from_dir(tiny_models_dir, batch_size=16).predict(images)
    np.testing.assert_allclose(one_batch.probabilities, result.probabilities, atol=1e-4)
    np.testing.assert_allclose(one_batch.maps, result.maps, atol=1e-4)


def test_an_averaged_model_runs_in_a_cascade_as_the_mean_of_its_members(tmp_path, tiny_models_dir):
    import keras

    from brainseg.core.networks import build_segmenter

    keras.utils.set_random_seed(7)  # another random segmenter of the same shape and spec
    build_segmenter(32, 0.25).save(tmp_path / "segmenter.keras")
    shutil.copy(tiny_models_dir / "segmenter.json", tmp_path / "segmenter.json")
    classifier = load_model(tiny_models_dir / "classifier.keras", "classifier")
    first = load_model(tiny_models_dir / "segmenter.keras", "segmenter")
    second = load_model(tmp_path / "segmenter.keras", "segmenter")
    images = np.random.default_rng(1).integers(0, 255, (5, 64, 64, 3), dtype=np.uint8)
    probabilities, first_maps = Cascade(classifier, first).predict_native(images)
    second_maps = Cascade(classifier, second).predict_native(images)[1]
    assert np.abs(first_maps - second_maps).max() > 0.01  # the members differ, so their mean is a real check

    averaged = AveragedModel([first, second])
    assert averaged.role == "segmenter" and averaged.spec == first.spec
    assert averaged.sha256 == [first.sha256, second.sha256]
    ensemble_probabilities, maps = Cascade(classifier, averaged).predict_native(images)
    np.testing.assert_allclose(maps, (first_maps + second_maps) / 2, atol=1e-6)
    np.testing.assert_array_equal(ensemble_probabilities, probabilities)  # the gate's classifier is untouched

    with pytest.raises(ModelLoadError, match="share a role and an input spec"):
        AveragedModel([first, classifier])
    keras.utils.set_random_seed(7)
    build_segmenter(64, 0.25).save(tmp_path / "wider.keras")
    (tmp_path / "wider.json").write_text('{"role": "segmenter", "input_spec": {"size": 64, "scaling": "zscore"}}')
    with pytest.raises(ModelLoadError, match="share a role and an input spec"):
        AveragedModel([first, load_model(tmp_path / "wider.keras", "segmenter")])
    with pytest.raises(ValueError, match="at least one member"):
        AveragedModel([])


def test_cascade_refuses_non_slices(tiny_models_dir):
    cascade = Cascade.from_dir(tiny_models_dir)
    with pytest.raises(ValueError, match="uint8"):
        cascade.predict(np.zeros((1, 256, 256, 3), np.float32))


def test_missing_model_file(tmp_path):
    with pytest.raises(ModelLoadError, match="classifier model file not found"):
        load_model(tmp_path / "classifier.keras", "classifier")


def test_corrupt_and_truncated_model_files(tmp_path, tiny_models_dir):
    garbage = tmp_path / "garbage.keras"
    garbage.write_bytes(b"not a model at all")
    with pytest.raises(ModelLoadError, match=r"not a Keras \.keras file"):
        load_model(garbage, "classifier")
    truncated = tmp_path / "truncated.keras"
    data = (tiny_models_dir / "classifier.keras").read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError, match="truncated"):
        load_model(truncated, "classifier")


def test_zip_without_weights_is_refused(tmp_path):
    path = tmp_path / "empty.keras"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.json", "{}")
    with pytest.raises(ModelLoadError, match="could not load the segmenter"):
        load_model(path, "segmenter")


def test_model_of_the_wrong_role_is_refused(tmp_path, tiny_models_dir):
    shutil.copy(tiny_models_dir / "segmenter.keras", tmp_path / "classifier.keras")
    with pytest.raises(ModelLoadError, match="a classifier should output"):
        load_model(tmp_path / "classifier.keras", "classifier")


def test_sidecar_size_must_match_the_model(tmp_path, tiny_models_dir):
    shutil.copy(tiny_models_dir / "classifier.keras", tmp_path / "classifier.keras")
    (tmp_path / "classifier.json").write_text('{"input_spec": {"size": 64, "scaling": "unit"}}')
    with pytest.raises(ModelLoadError, match="input size 64"):
        load_model(tmp_path / "classifier.keras", "classifier")


@pytest.mark.parametrize("sidecar", ['{"input_spec": {"size": 32, "sca', "[]"])
def test_truncated_or_invalid_sidecar_is_a_model_load_error_naming_it(tmp_path, tiny_models_dir, sidecar):
    shutil.copy(tiny_models_dir / "classifier.keras", tmp_path / "classifier.keras")
    (tmp_path / "classifier.json").write_text(sidecar)
    with pytest.raises(ModelLoadError, match=r"classifier\.json: the classifier model's sidecar"):
        load_model(tmp_path / "classifier.keras", "classifier")


def test_a_model_without_its_sidecar_warns_that_its_scaling_is_assumed(tmp_path, tiny_models_dir):
    shutil.copy(tiny_models_dir / "classifier.keras", tmp_path / "classifier.keras")
    with pytest.warns(UserWarning, match=r"classifier\.keras: no input spec .* assuming the seed's 'unit' scaling"):
        loaded = load_model(tmp_path / "classifier.keras", "classifier")
    assert loaded.spec.scaling == "unit"


def test_loaded_model_records_hash_and_spec(tiny_models_dir):
    loaded = load_model(tiny_models_dir / "segmenter.keras", "segmenter")
    assert len(loaded.sha256) == 64
    assert loaded.spec.size == 32 and loaded.spec.scaling == "zscore"


@pytest.mark.parametrize("threshold", [0.7, 0.1, 0.079])
def test_a_float32_score_on_the_threshold_gets_one_decision_wherever_the_gate_is_applied(threshold):
    """The cascade holds float32 scores; the dashboard's counts and the reports hold them as float64. numpy compares
    float32 with a Python float in float32, so float32(0.7) passed 0.7 in one and failed it in the other."""
    from brainseg.evaluation.threshold_analysis import slice_stats
    from brainseg.inference.counts import gated_counts

    maps = np.zeros((2, 8, 8), np.float32)
    maps[:, 2:4, 2:4] = 0.9
    scores = np.array([threshold, np.nextafter(threshold, 1)], np.float32)  # on the threshold, and just above it
    result = CascadeResult(scores, maps)
    counts = gated_counts(slice_stats("P", "X", [1, 2], result, maps > 0.5), threshold)
    assert result.decisions(threshold).tolist() == counts["called"].tolist()
    # Exactly: the float32 score is compared by its own value, whichever side of the decimal threshold it lies.
    assert result.gate(threshold).tolist() == [float(s) >= threshold for s in scores]


@pytest.mark.parametrize("kind", SLICE_SCORES)
def test_a_slice_score_reads_neighbours_exactly_when_its_reach_says_so(kind):
    """The reach decides whether a lone upload is scored as in its volume (the Upload page's note, the card's
    limit): a score of reach 0 gives a slice the same score with or without its volume's slice numbers."""
    probabilities = np.array([0.1, 0.9, 0.1], np.float32)  # the middle slice's neighbours are quieter...
    maps = np.zeros((3, 4, 4), np.float32)
    maps[[0, 2]] = 0.95  # ...by the classifier, and louder by the segmenter
    in_volume = slice_scores(probabilities, maps, kind, np.array([1, 2, 3]))
    alone = slice_scores(probabilities, maps, kind, None)
    assert slice_score_reach(kind) in (0, 1)
    assert np.array_equal(in_volume, alone) == (slice_score_reach(kind) == 0)
