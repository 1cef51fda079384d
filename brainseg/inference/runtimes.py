"""Which runtime executes a loaded network: ONNX Runtime (the default) or TensorFlow.

Both run the same graph: the Keras model with its input scaling (``preprocess.scale_images``) in front, fed
uint8 slices. For ONNX Runtime that graph is converted once with tf2onnx, so the one preprocessing path and
the weights stay Keras'; only the executor changes. On this project's 2-core CPUs a whole patient took about
0.8-0.9x the time it takes on TensorFlow's ``tf.function`` at the cascade's batch of 16 (``brainseg bench
--compare-runtime tensorflow``; the model card quotes it), with outputs equal to within 2e-7 (float32 rounding; the
prediction store's quantisation step is 1.5e-5). TensorFlow stays
available (``BRAINSEG_RUNTIME=tensorflow``) and is what the speed reference always runs on, as the goal
defines it.

A conversion takes seconds, so a model file's ONNX graph is cached on disk (``settings.onnx_cache_dir()``),
named by a digest of everything it depends on: the weights file's sha256, the input spec, the source of the
scaling function, the converter's version and the opset. Any change to one is a new name, never a stale graph.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np

from brainseg.core.files import write_atomically
from brainseg.core.preprocess import InputSpec, scale_images
from brainseg.settings import RUNTIMES, onnx_cache_dir

ONNX_OPSET = 17
INPUT_NAME = "slices"

Infer = Callable[[np.ndarray], np.ndarray]


def check_runtime(runtime: str) -> str:
    """``runtime`` if it is one of ``RUNTIMES``; ValueError naming the choices otherwise."""
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown inference runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}")
    return runtime


def build_infer(model: object, spec: InputSpec, runtime: str, weights_sha256: str = "") -> Infer:
    """A function from a batch of uint8 slices (N, s, s, channels) to the network's float32 output.

    ``weights_sha256``: the weights file's hash, naming the cached ONNX graph; empty for a model that has no
    file (it is then converted in memory each time).
    """
    graph = _scaled_graph(model, spec)
    if check_runtime(runtime) == "tensorflow":
        return lambda images: graph(images).numpy()
    return _onnx_infer(graph, spec, weights_sha256)


def _scaled_graph(model: object, spec: InputSpec):
    import tensorflow as tf

    # One trace for every batch size; 2-7x faster than model.predict on small batches.
    @tf.function(input_signature=[_input_signature(spec)])
    def infer(batch):
        return model(scale_images(batch, spec.scaling), training=False)

    return infer


def _input_signature(spec: InputSpec):
    import tensorflow as tf

    return tf.TensorSpec([None, spec.size, spec.size, spec.channels], tf.uint8, name=INPUT_NAME)


def _onnx_infer(graph, spec: InputSpec, weights_sha256: str) -> Infer:
    import onnxruntime

    def session_of(serialized: bytes):
        options = onnxruntime.SessionOptions()
        # Threads: one per core (the default), as TensorFlow uses. Without spinning: by default each session's
        # threads busy-wait after a run, and the cascade alternates two sessions and then post-processes in numpy,
        # so on 2 cores a whole patient then took longer than on TensorFlow, not less.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        return onnxruntime.InferenceSession(serialized, options, providers=["CPUExecutionProvider"])

    try:
        session = session_of(_cached_onnx(graph, spec, weights_sha256))
    except Exception:  # ONNX Runtime raises several types for a damaged file: convert again and replace the entry
        if not weights_sha256:
            raise
        session = session_of(_cached_onnx(graph, spec, weights_sha256, refresh=True))
    output = session.get_outputs()[0].name
    return lambda images: session.run([output], {INPUT_NAME: np.ascontiguousarray(images, np.uint8)})[0]


def onnx_cache_key(spec: InputSpec, weights_sha256: str) -> str:
    """The digest naming a cached graph: weights, input spec, scaling code, converter version and opset."""
    import tf2onnx

    parts = [weights_sha256, repr(sorted(spec.to_dict().items())), inspect.getsource(scale_images), tf2onnx.__version__,
             str(ONNX_OPSET)]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def onnx_cache_path(spec: InputSpec, weights_sha256: str) -> Path:
    """Where the graph of the weights file with hash ``weights_sha256``, fed as ``spec`` says, is cached."""
    return onnx_cache_dir() / f"{onnx_cache_key(spec, weights_sha256)}.onnx"


def runtime_versions(runtime: str) -> dict[str, str]:
    """The versions that decide what ``runtime`` computes (for benchmark and evaluation records)."""
    import tensorflow as tf

    versions = {"runtime": check_runtime(runtime), "tensorflow": tf.__version__}
    if runtime == "onnxruntime":
        import onnxruntime
        import tf2onnx

        versions |= {"onnxruntime": onnxruntime.__version__, "tf2onnx": tf2onnx.__version__, "opset": str(ONNX_OPSET)}
    return versions


def _cached_onnx(graph, spec: InputSpec, weights_sha256: str, refresh: bool = False) -> bytes:
    if not weights_sha256:
        return _convert(graph, spec)
    path = onnx_cache_path(spec, weights_sha256)
    if path.is_file() and not refresh:
        return path.read_bytes()
    serialized = _convert(graph, spec)
    try:  # a read-only or full disk only costs the next process another conversion
        write_atomically(path, lambda handle: handle.write(serialized))
    except OSError as err:
        logging.getLogger(__name__).warning("could not cache the ONNX graph at %s: %s", path, err)
    return serialized


def _convert(graph, spec: InputSpec) -> bytes:
    import tf2onnx

    logging.getLogger("tf2onnx").setLevel(logging.WARNING)  # its INFO lines narrate every conversion
    proto, _ = tf2onnx.convert.from_function(graph, input_signature=[_input_signature(spec)], opset=ONNX_OPSET)
    return proto.SerializeToString()

