"""Grad-CAM (Selvaraju et al. 2017) for the slice classifier's decision.

The heat map weights the last convolutional block's activations by the mean gradient of the tumor
probability with respect to each channel; only positive evidence is kept. It shows where the network
looked, not where the tumor is, and is no substitute for the segmenter's mask.
"""

from __future__ import annotations

import numpy as np

from brainseg.core.preprocess import prepare_images, scale_images, upsample_maps
from brainseg.inference.cascade import LoadedModel

TARGET_LAYER = "head_relu"  # the classifier's last convolutional activation (see brainseg.core.networks)


def grad_cam(classifier: LoadedModel, images: np.ndarray, layer: str = TARGET_LAYER) -> np.ndarray:
    """(N, H, W) heat maps in [0, 1] for (N, H, W, 3) uint8 slices."""
    import keras
    import tensorflow as tf

    model = classifier.model
    try:
        target = model.get_layer(layer)
    except ValueError as err:
        raise ValueError(f"{classifier.path}: no layer {layer!r} for Grad-CAM") from err
    probe = keras.Model(model.inputs, [target.output, model.outputs[0]])
    n, height, width = images.shape[:3]
    x = scale_images(prepare_images(images, classifier.spec.size), classifier.spec.scaling)
    with tf.GradientTape() as tape:
        activations, probability = probe(x, training=False)
    gradients = tape.gradient(probability, activations)
    weights = tf.reduce_mean(gradients, axis=(1, 2), keepdims=True)
    cam = tf.nn.relu(tf.reduce_sum(weights * activations, axis=-1)).numpy()
    peak = cam.reshape(n, -1).max(axis=1).reshape(n, 1, 1)
    cam = np.divide(cam, peak, out=np.zeros_like(cam), where=peak > 0)
    return np.clip(upsample_maps(cam, height, width), 0.0, 1.0)
