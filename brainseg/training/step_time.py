"""Seconds per training step of a recipe's network: what makes one recipe cheaper than another."""

from __future__ import annotations

import time

import numpy as np


def train_step_seconds(model: str, recipe_name: str, steps: int = 4) -> float:
    """Seconds per training step (batch of the recipe's size) of a recipe's network, on random data."""
    import tensorflow as tf

    from brainseg.training.train import build_model, recipe

    config = recipe(model, recipe_name)
    network = build_model(config)
    rng = np.random.default_rng(0)
    size, batch = config.input_size, config.batch_size
    x = rng.random((batch, size, size, 3), dtype=np.float32)
    y = (rng.random(batch) < 0.5).astype(np.float32) if model == "classifier" else (
        rng.random((batch, size, size, 1)) < 0.1).astype(np.float32)
    data = tf.data.Dataset.from_tensors((x, y)).repeat()
    network.fit(data, steps_per_epoch=2, epochs=1, verbose=0, shuffle=False)  # trace and warm up
    start = time.perf_counter()
    network.fit(data, steps_per_epoch=steps, epochs=1, verbose=0, shuffle=False)
    return (time.perf_counter() - start) / steps
