import shutil
import zipfile

import numpy as np
import pytest

from brainseg.errors import ModelLoadError
from brainseg.inference.cascade import Cascade, CascadeResult, load_model


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


def test_loaded_model_records_hash_and_spec(tiny_models_dir):
    loaded = load_model(tiny_models_dir / "segmenter.keras", "segmenter")
    assert len(loaded.sha256) == 64
    assert loaded.spec.size == 32 and loaded.spec.scaling == "zscore"
