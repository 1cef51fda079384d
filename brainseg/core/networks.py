"""Network builders: the seed's ResNet-style slice classifier and its ResUNet segmenter.

Both builders take ``input_size`` and ``width`` (a multiplier on every filter and dense-unit
count) so cheaper variants can be trained on a CPU. ``input_size=256, width=1.0`` gives the
seed's exact architectures (8,880,897 and 1,210,513 parameters).
"""

from __future__ import annotations

import keras
from keras import layers

SEED_CLASSIFIER_PARAMS = 8_880_897
SEED_SEGMENTER_PARAMS = 1_210_513

# Layer names that with_side_maps and inference_network find the segmenter's parts by.
SEGMENTER_OUTPUT = "tumor_map"
SIDE_MAPS_OUTPUT = "maps_finest_first"


def decoder_stage_output(stage: int) -> str:
    """Name of the segmenter's decoder stage ``stage``'s output (1: coarsest, after the bottleneck)."""
    return f"up{stage}_out"


def _scaled(n: int, width: float) -> int:
    return max(1, round(n * width))


def residual_block(x: keras.KerasTensor, filters: int, name: str) -> keras.KerasTensor:
    """Seed resblock: Conv1x1-BN-ReLU-Conv3x3-BN on the main path, Conv1x1-BN shortcut, Add, ReLU.

    (The seed's text wrote ``Add()(X, X_shortcut)``; ``Add`` takes a list.)
    """
    shortcut = layers.Conv2D(filters, 1, kernel_initializer="he_normal", name=f"{name}_short_conv")(x)
    shortcut = layers.BatchNormalization(name=f"{name}_short_bn")(shortcut)
    y = layers.Conv2D(filters, 1, kernel_initializer="he_normal", name=f"{name}_conv1")(x)
    y = layers.BatchNormalization(name=f"{name}_bn1")(y)
    y = layers.Activation("relu", name=f"{name}_relu1")(y)
    y = layers.Conv2D(filters, 3, padding="same", kernel_initializer="he_normal", name=f"{name}_conv2")(y)
    y = layers.BatchNormalization(name=f"{name}_bn2")(y)
    y = layers.Add(name=f"{name}_add")([y, shortcut])
    return layers.Activation("relu", name=f"{name}_out")(y)


def _conv_bn_pool_relu(x: keras.KerasTensor, filters: int, name: str) -> keras.KerasTensor:
    x = layers.Conv2D(filters, 3, padding="valid", kernel_initializer="he_normal", name=f"{name}_conv")(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    x = layers.MaxPooling2D(2, name=f"{name}_pool")(x)
    return layers.Activation("relu", name=f"{name}_relu")(x)


def build_classifier(input_size: int = 256, width: float = 1.0, dropout: float = 0.2, channels: int = 3) -> keras.Model:
    """Slice classifier: P(tumor) for a (input_size, input_size, channels) slice (3, or more with neighbours)."""
    inputs = keras.Input((input_size, input_size, channels), name="image")
    x = _conv_bn_pool_relu(inputs, _scaled(32, width), "stem1")
    x = _conv_bn_pool_relu(x, _scaled(64, width), "stem2")
    for i, filters in enumerate((64, 128, 256), start=1):
        x = residual_block(x, _scaled(filters, width), f"res{i}")
    x = _conv_bn_pool_relu(x, _scaled(256, width), "head")
    x = layers.AveragePooling2D(2, name="avg_pool")(x)
    x = layers.Flatten(name="flatten")(x)
    for i in (1, 2):
        x = layers.Dense(_scaled(128, width), kernel_initializer="he_normal", activation="relu", name=f"fc{i}")(x)
        x = layers.BatchNormalization(name=f"fc{i}_bn")(x)
        x = layers.Dropout(dropout, name=f"fc{i}_dropout")(x)
    x = layers.Dense(_scaled(64, width), kernel_initializer="he_normal", activation="relu", name="fc3")(x)
    x = layers.BatchNormalization(name="fc3_bn")(x)
    outputs = layers.Dense(1, activation="sigmoid", name="tumor_probability")(x)
    return keras.Model(inputs, outputs, name="classifier")


def build_segmenter(input_size: int = 256, width: float = 1.0, channels: int = 3) -> keras.Model:
    """ResUNet: per-pixel tumor probability map of shape (input_size, input_size, 1).

    ``channels``: 3, or 3 per slice read when neighbouring slices are extra input (only the first layer grows).
    """
    if input_size % 16:
        raise ValueError(f"segmenter input_size must be a multiple of 16 (four poolings), got {input_size}")
    inputs = keras.Input((input_size, input_size, channels), name="image")
    f16 = _scaled(16, width)
    x = layers.Conv2D(f16, 3, padding="same", activation="relu", kernel_initializer="he_normal", name="stem_conv1")(
        inputs
    )
    x = layers.BatchNormalization(name="stem_bn1")(x)
    x = layers.Conv2D(f16, 3, padding="same", activation="relu", kernel_initializer="he_normal", name="stem_conv2")(x)
    stem = layers.BatchNormalization(name="stem_bn2")(x)

    skips = [stem]
    x = stem
    for i, filters in enumerate((32, 64, 128, 256), start=1):
        x = layers.MaxPooling2D(2, name=f"down{i}_pool")(x)
        x = residual_block(x, _scaled(filters, width), f"down{i}")
        skips.append(x)

    x = skips.pop()  # bottleneck
    for i, filters in enumerate((128, 64, 32, 16), start=1):
        x = layers.UpSampling2D(2, name=f"up{i}_upsample")(x)
        x = layers.Concatenate(name=f"up{i}_concat")([x, skips.pop()])
        x = residual_block(x, _scaled(filters, width), f"up{i}")  # its output: decoder_stage_output(i)
    outputs = layers.Conv2D(1, 1, padding="same", activation="sigmoid", name=SEGMENTER_OUTPUT)(x)
    return keras.Model(inputs, outputs, name="segmenter")


def with_side_maps(segmenter: keras.Model, levels: int) -> keras.Model:
    """The segmenter wrapped for deep-supervised training (as nnU-Net trains): its map, then ``levels`` maps
    predicted from coarser decoder stages (a 1x1 sigmoid head each, brought back to the input size by bilinear
    upsampling), stacked as channels, finest first.

    The returned model shares every layer with ``segmenter``; the extra heads exist only in training, so the
    network that is saved and run at inference is ``segmenter`` itself, its cost unchanged.
    """
    decoder_stages = sum(1 for layer in segmenter.layers if layer.name.endswith("_upsample"))
    if not 1 <= levels < decoder_stages:
        raise ValueError(f"side maps come from the {decoder_stages - 1} coarser decoder stages; got {levels}")
    maps = [segmenter.output]
    for level in range(1, levels + 1):
        stage = decoder_stages - level  # up3 sits one level below the last stage (up4), and so on
        features = segmenter.get_layer(decoder_stage_output(stage)).output
        side = layers.Conv2D(1, 1, activation="sigmoid", name=f"side{level}_map")(features)
        maps.append(layers.UpSampling2D(2**level, interpolation="bilinear", name=f"side{level}_upsample")(side))
    stacked = layers.Concatenate(name=SIDE_MAPS_OUTPUT)(maps)
    return keras.Model(segmenter.input, stacked, name="segmenter_with_side_maps")


def inference_network(model: keras.Model) -> keras.Model:
    """The network saved and run at inference: a deep-supervised training model's main map alone (its layers and
    weights, shared), any other model itself."""
    if not any(layer.name == SIDE_MAPS_OUTPUT for layer in model.layers):
        return model
    return keras.Model(model.input, model.get_layer(SEGMENTER_OUTPUT).output, name="segmenter")
