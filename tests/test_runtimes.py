"""The inference runtimes: ONNX Runtime computes what TensorFlow computes, and its graph cache is keyed honestly."""

from __future__ import annotations

import json

import numpy as np
import pytest

from brainseg.core import files
from brainseg.inference import runtimes
from brainseg.inference.cascade import Cascade, load_model
from brainseg.inference.runtimes import onnx_cache_path
from brainseg.settings import SettingsError, inference_runtime

# float32 through two executors that sum in different orders: random-weight networks on random slices differ
# by up to ~1e-5 relative (the shipped networks by 2e-7 absolute); a wrong graph differs by whole units.
TOLERANCE = {"rtol": 1e-4, "atol": 1e-5}


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("BRAINSEG_CACHE_DIR", str(folder))
    return folder / "onnx"


def _slices(n: int, size: int, channels: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, channels), dtype=np.uint8)


@pytest.mark.parametrize("role", ["classifier", "segmenter"])
def test_onnx_runtime_computes_what_tensorflow_computes(tiny_models_dir, cache_dir, role):
    on_tensorflow = load_model(tiny_models_dir / f"{role}.keras", role, runtime="tensorflow")
    on_onnx = load_model(tiny_models_dir / f"{role}.keras", role, runtime="onnxruntime")
    for n in (5, 16):  # one graph serves every batch size
        images = _slices(n, 32, seed=n)
        expected, got = on_tensorflow.infer(images), on_onnx.infer(images)
        assert got.shape == expected.shape and got.dtype == np.float32
        np.testing.assert_allclose(got, expected, **TOLERANCE)
    assert np.ptp(expected) > 1e-3  # outputs that vary, so agreement means something


def test_onnx_runtime_feeds_neighbouring_slices_like_tensorflow(tmp_path, cache_dir):
    from brainseg.core.networks import build_segmenter

    build_segmenter(32, 0.25, channels=9).save(tmp_path / "segmenter.keras")
    (tmp_path / "segmenter.json").write_text(json.dumps(
        {"input_spec": {"size": 32, "scaling": "zscore", "context_slices": 1}}))
    images = _slices(4, 32, channels=9)
    expected = load_model(tmp_path / "segmenter.keras", "segmenter", runtime="tensorflow").infer(images)
    got = load_model(tmp_path / "segmenter.keras", "segmenter", runtime="onnxruntime").infer(images)
    np.testing.assert_allclose(got, expected, **TOLERANCE)
    assert np.ptp(expected) > 1e-3  # outputs that vary, so agreement means something


def test_the_cascade_gives_the_same_results_on_either_runtime(tiny_models_dir, cache_dir, demo_dir):
    from brainseg.core.data import load_slices, scan_dataset

    rows = scan_dataset(demo_dir).query("patient_id == 'TCGA_HT_7855'")
    images, _ = load_slices(rows)
    results = {runtime: Cascade.from_dir(tiny_models_dir, runtime=runtime).predict(images, rows["slice"].to_numpy())
               for runtime in ("tensorflow", "onnxruntime")}
    np.testing.assert_allclose(results["onnxruntime"].probabilities, results["tensorflow"].probabilities,
                               **TOLERANCE)
    np.testing.assert_allclose(results["onnxruntime"].maps, results["tensorflow"].maps,
                               **TOLERANCE)


def test_the_converted_graph_is_cached_and_reused(tiny_models_dir, cache_dir, monkeypatch):
    model = load_model(tiny_models_dir / "classifier.keras", "classifier", runtime="onnxruntime")
    images = _slices(3, 32)
    first = model.infer(images)
    assert [p.name for p in cache_dir.iterdir()] == [onnx_cache_path(model.spec, model.sha256).name]

    def no_conversion(*args):
        raise AssertionError("converted again although the cache holds the graph")

    monkeypatch.setattr(runtimes, "_convert", no_conversion)
    again = load_model(tiny_models_dir / "classifier.keras", "classifier", runtime="onnxruntime")
    np.testing.assert_array_equal(again.infer(images), first)


def test_a_damaged_cache_entry_is_converted_again_and_replaced(tiny_models_dir, cache_dir):
    model = load_model(tiny_models_dir / "segmenter.keras", "segmenter", runtime="onnxruntime")
    path = onnx_cache_path(model.spec, model.sha256)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not an onnx graph")
    images = _slices(2, 32)
    expected = load_model(tiny_models_dir / "segmenter.keras", "segmenter", runtime="tensorflow").infer(images)
    np.testing.assert_allclose(model.infer(images), expected, **TOLERANCE)
    assert path.read_bytes() != b"not an onnx graph"


def test_the_cache_key_changes_with_what_the_graph_depends_on(tiny_models_dir, cache_dir):
    from brainseg.core.preprocess import InputSpec

    spec, sha = InputSpec(32, "zscore"), "a" * 64
    names = {onnx_cache_path(spec, sha), onnx_cache_path(InputSpec(32, "unit"), sha),
             onnx_cache_path(InputSpec(32, "zscore", 1), sha), onnx_cache_path(InputSpec(64, "zscore"), sha),
             onnx_cache_path(spec, "b" * 64)}
    assert len(names) == 5
    assert onnx_cache_path(spec, sha) == onnx_cache_path(InputSpec(32, "zscore"), sha)


def test_a_model_without_a_file_is_converted_in_memory(tiny_models_dir, cache_dir):
    from brainseg.inference.cascade import LoadedModel

    loaded = load_model(tiny_models_dir / "classifier.keras", "classifier", runtime="tensorflow")
    in_memory = LoadedModel("classifier", loaded.model, loaded.spec, loaded.path, "", runtime="onnxruntime")
    images = _slices(2, 32)
    np.testing.assert_allclose(in_memory.infer(images), loaded.infer(images), **TOLERANCE)
    assert not cache_dir.exists()


def test_the_runtime_comes_from_the_environment_and_a_bad_one_is_named(tiny_models_dir, monkeypatch):
    monkeypatch.delenv("BRAINSEG_RUNTIME", raising=False)
    assert inference_runtime() == "onnxruntime"
    monkeypatch.setenv("BRAINSEG_RUNTIME", "tensorflow")
    assert load_model(tiny_models_dir / "classifier.keras", "classifier").runtime == "tensorflow"
    monkeypatch.setenv("BRAINSEG_RUNTIME", "jax")
    with pytest.raises(SettingsError, match=r"BRAINSEG_RUNTIME='jax'.*onnxruntime, tensorflow"):
        load_model(tiny_models_dir / "classifier.keras", "classifier")
    with pytest.raises(ValueError, match="unknown inference runtime 'torch'"):
        load_model(tiny_models_dir / "classifier.keras", "classifier", runtime="torch")


def test_an_unwritable_cache_only_costs_a_conversion(tiny_models_dir, tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder would go")
    monkeypatch.setenv("BRAINSEG_CACHE_DIR", str(blocker))
    model = load_model(tiny_models_dir / "classifier.keras", "classifier", runtime="onnxruntime")
    _assert_same_as_tensorflow(model, tiny_models_dir / "classifier.keras")


def _assert_same_as_tensorflow(model, path) -> None:
    """``model`` (converted without a usable cache) answers as the Keras model itself, on varied slices."""
    images = _slices(4, 32)
    expected = load_model(path, "classifier", runtime="tensorflow").infer(images)
    np.testing.assert_allclose(model.infer(images), expected, **TOLERANCE)
    assert expected.shape == (4, 1) and np.ptp(expected) > 1e-4  # outputs that vary, so agreement means something


def test_sessions_calling_a_new_model_together_convert_it_once(tiny_models_dir, cache_dir, monkeypatch):
    from concurrent.futures import ThreadPoolExecutor

    conversions = []
    convert = runtimes._convert

    def counted(graph, spec):
        conversions.append(spec)
        return convert(graph, spec)

    monkeypatch.setattr(runtimes, "_convert", counted)
    model = load_model(tiny_models_dir / "segmenter.keras", "segmenter", runtime="onnxruntime")
    images = _slices(2, 32)
    with ThreadPoolExecutor(4) as pool:
        outputs = list(pool.map(lambda _: model.infer(images), range(4)))
    assert len(conversions) == 1
    for output in outputs[1:]:
        np.testing.assert_array_equal(output, outputs[0])


def test_a_failed_cache_write_leaves_no_partial_file(tiny_models_dir, cache_dir, monkeypatch):
    def full_disk(source, destination):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files.os, "replace", full_disk)
    model = load_model(tiny_models_dir / "classifier.keras", "classifier", runtime="onnxruntime")
    _assert_same_as_tensorflow(model, tiny_models_dir / "classifier.keras")
    assert list(cache_dir.iterdir()) == []
