"""Distributed training through ``tf.distribute``: a strategy by name, and logical CPU devices to try it on.

* ``default``: no strategy; training runs exactly as it does without this module.
* ``mirrored``: ``tf.distribute.MirroredStrategy`` on this host: one replica per visible GPU or, on a host
  without GPUs, per logical CPU device (one unless :func:`split_cpu` made several; tests use that).
* ``multiworker``: ``tf.distribute.MultiWorkerMirroredStrategy`` across the hosts named by the
  ``TF_CONFIG`` environment variable (every worker runs the same command with its own ``task.index``).

Keras 3 on the TensorFlow backend distributes ``model.fit`` when the model and its optimizer are created
inside ``strategy.scope()`` (both capture the strategy when they are built) and the input is a
``tf.data.Dataset``: each batch the pipeline yields is the *global* batch (the config's ``batch_size``),
split evenly between the replicas, whose gradients are averaged before one shared update.

Two workers (hosts ``a`` and ``b``; the same command and data on each, only ``index`` differs)::

    TF_CONFIG='{"cluster": {"worker": ["a:12345", "b:12345"]}, "task": {"type": "worker", "index": 0}}' \
        brainseg train segmenter --data data/kaggle_3m --strategy multiworker     # on a
    TF_CONFIG='{"cluster": {"worker": ["a:12345", "b:12345"]}, "task": {"type": "worker", "index": 1}}' \
        brainseg train segmenter --data data/kaggle_3m --strategy multiworker     # on b

Worker 0 (the chief) writes the run folder and the export; the others keep theirs in ``<run>/worker-<i>``.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from brainseg.errors import BrainsegError

STRATEGIES = ("default", "mirrored", "multiworker")
_created: dict = {}  # one strategy per name and process: collective ops can be configured only once


class StrategyError(BrainsegError, ValueError):
    """An unknown strategy name, a missing or malformed TF_CONFIG, or a device set-up requested too late."""


def split_cpu(n: int) -> None:
    """Split the host CPU into ``n`` logical devices, so ``mirrored`` gets ``n`` replicas without a GPU.

    Ordering: TensorFlow fixes its device list when its runtime context initialises, at the first tensor,
    op, tf.data pipeline or ``tf.config.list_logical_devices`` call of the process; logical devices can be
    declared only before that (importing TensorFlow and listing *physical* devices are fine). So call this
    first thing in a fresh process, before building data or models.
    """
    import tensorflow as tf

    if n < 1:
        raise StrategyError(f"split_cpu needs at least 1 device, got {n}")
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(n)])
    except RuntimeError as err:  # TensorFlow: "Virtual devices cannot be modified after being initialized"
        raise StrategyError(f"split_cpu({n}) came too late: TensorFlow has already initialised its devices in "
                            "this process; call it first, before any tensor, dataset or model is made") from err


def make_strategy(name: str):
    """The ``tf.distribute.Strategy`` named ``name`` (None for 'default'), created once per process.

    Call it before any TensorFlow op runs: MultiWorkerMirroredStrategy configures the collective ops,
    which TensorFlow allows only at program start-up.
    """
    if name not in STRATEGIES:
        raise StrategyError(f"unknown strategy {name!r} (choose {', '.join(STRATEGIES)})")
    if name == "default":
        return None
    if name not in _created:
        import tensorflow as tf

        if name == "mirrored":
            _created[name] = tf.distribute.MirroredStrategy()  # the GPUs, else every logical CPU device
        else:
            _tf_config()  # a clear error instead of silently training alone (see _tf_config)
            _patch_keras_for_multiple_workers()
            try:
                _created[name] = tf.distribute.MultiWorkerMirroredStrategy()
            except RuntimeError as err:  # "Collective ops must be configured at program startup"
                raise StrategyError("the multiworker strategy must be created before TensorFlow runs its first "
                                    "op in this process") from err
    return _created[name]


def strategy_scope(strategy) -> contextlib.AbstractContextManager:
    """``strategy.scope()``, or a no-op for the default (None) so undistributed training is untouched."""
    return strategy.scope() if strategy is not None else contextlib.nullcontext()


def distributable(dataset, strategy):
    """``dataset`` ready for ``strategy``: across workers, each keeps every n-th batch of the same stream.

    The pipeline is built from in-memory arrays (no files to split), so data sharding is the only policy
    that applies; naming it avoids TensorFlow's fallback warning. Workers agree on the stream because its
    shuffle and augmentation are seeded. On one host (mirrored) the option has no effect.
    """
    if strategy is None:
        return dataset
    import tensorflow as tf

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


def replica_loss_weight(loss) -> float | None:
    """The compile ``loss_weights`` that keeps a batch-statistic loss right under a strategy (None otherwise).

    Keras 3 divides a loss by the number of replicas (the replicas' gradients are then summed) only when the
    loss returns one value per sample; focal Tversky and Dice+BCE return one value for the whole batch,
    which Keras leaves unscaled: gradients and the reported loss would be ``replicas`` times too large.
    Weighting such a loss by 1 / replicas restores both. Each replica still computes its index over its own
    share of the global batch, so the loss is the replicas' mean of the per-share loss.
    """
    import keras
    import numpy as np

    if keras.backend.backend() != "tensorflow":  # strategies are tf.distribute's; other backends train alone
        return None
    import tensorflow as tf

    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    if replicas == 1 or isinstance(loss, str):  # Keras' own losses by name are per sample
        return None
    probe = np.zeros((2, 4, 4, 1), np.float32)
    if len(loss.call(probe, probe).shape) > 0:  # per-sample values: Keras scales them itself
        return None
    return 1.0 / replicas


def _patch_keras_for_multiple_workers() -> None:
    """Work around two Keras 3 bugs that stop ``fit`` under MultiWorkerMirroredStrategy (keras-team/keras#20585,
    open; checked with Keras 3.15). Installed only when that strategy is created; other strategies are untouched.

    1. Before training, fit builds the model's state from one batch's shapes, getting that batch by averaging a
       distributed batch across workers, which fails for an (images, targets) tuple ("Attempt to convert a value
       (PerReplica...)"). Shapes are all the build needs: this worker's first local batch is used instead.
    2. Each step averages its scalar logs (loss, metrics) across workers along an axis 0 they lack ("Invalid
       reduction dimension 0"). Scalars are averaged across all replicas instead, as on one host.
    """
    import tensorflow as tf
    from keras.src.backend.tensorflow import trainer as tf_trainer

    if getattr(tf_trainer, "_brainseg_patched", False):
        return
    reduce_per_replica = tf_trainer.reduce_per_replica
    maybe_symbolic_build = tf_trainer.TensorFlowTrainer._maybe_symbolic_build

    def is_multi_worker(strategy) -> bool:
        return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)

    def patched_reduce(values, strategy, reduction):
        if not is_multi_worker(strategy) or reduction not in ("auto", "mean"):
            return reduce_per_replica(values, strategy, reduction)

        def reduce(value):
            if strategy.experimental_local_results(value)[0].shape.rank == 0:
                return strategy.reduce("MEAN", value, axis=None)
            return reduce_per_replica(value, strategy, reduction)

        return tf.nest.map_structure(reduce, values)

    def patched_build(self, iterator=None, data_batch=None):
        strategy = self._distribute_strategy
        if not is_multi_worker(strategy) or iterator is None:
            return maybe_symbolic_build(self, iterator=iterator, data_batch=data_batch)

        def local(value):
            is_distributed = isinstance(value, tf.distribute.DistributedValues)
            return strategy.experimental_local_results(value)[0] if is_distributed else value

        for _, _, batches in iterator:
            data_batch = tf.nest.map_structure(local, next(batches))
            break
        with strategy.scope():
            self._symbolic_build(data_batch=data_batch)

    tf_trainer.reduce_per_replica = patched_reduce
    tf_trainer.TensorFlowTrainer._maybe_symbolic_build = patched_build
    tf_trainer._brainseg_patched = True


def describe(name: str, strategy) -> dict:
    """What a run records: the strategy's name and its number of replicas (devices training in sync)."""
    return {"name": name, "replicas": 1 if strategy is None else int(strategy.num_replicas_in_sync)}


def is_chief(name: str) -> bool:
    """Whether this process writes the run's shared outputs: always, except on multiworker's other workers.

    TensorFlow's rule: the task of type 'chief', else worker 0 when the cluster names no chief.
    """
    if name != "multiworker":
        return True
    config = _tf_config()
    task_type, index = config["task"]["type"], int(config["task"]["index"])
    return task_type == "chief" or (task_type == "worker" and index == 0 and "chief" not in config["cluster"])


def worker_run_dir(run_dir: Path, name: str) -> Path:
    """Where this process keeps its run folder: ``run_dir`` for the chief, ``run_dir/worker-<i>`` for the others.

    Every worker must keep its own backup (they resume at the same epoch, or the collectives wait forever),
    and workers sharing a file system must not overwrite each other's files.
    """
    if is_chief(name):
        return run_dir
    return run_dir / f"worker-{int(_tf_config()['task']['index'])}"


def _tf_config() -> dict:
    """The parsed TF_CONFIG. Without it MultiWorkerMirroredStrategy would quietly train one local worker,
    so a worker whose variable was forgotten would train alone; that is an error here instead."""
    raw = os.environ.get("TF_CONFIG", "").strip()
    if not raw:
        raise StrategyError("strategy 'multiworker' needs the TF_CONFIG environment variable (the cluster's "
                            "workers and this process's task), e.g. TF_CONFIG='{\"cluster\": {\"worker\": "
                            "[\"host1:12345\", \"host2:12345\"]}, \"task\": {\"type\": \"worker\", \"index\": 0}}'")
    try:
        config = json.loads(raw)
        valid = isinstance(config["cluster"], dict) and isinstance(config["task"]["type"], str)
        valid = valid and int(config["task"]["index"]) >= 0
    except (ValueError, KeyError, TypeError):
        valid = False
    if not valid:
        raise StrategyError(f"TF_CONFIG is not JSON with 'cluster' and 'task' {{'type', 'index'}}: {raw[:200]}")
    return config
