"""Inside the network: the layers worth looking at, their feature maps for one image, the learned
filters, and the pattern a channel responds to (gradient ascent on the input, as in keras-io's
"Visualizing what convnets learn"). `cnnlab.analysis.receptive_field` and `cnnlab.analysis.top_activating` build on
these to outline what a unit sees and to find the training images that excite a channel most.

The model always runs in inference mode (`training=False`), so its augmentation layers leave the
image alone. The image "as the model sees it" is the output of its last preprocessing layer
(Rescaling, Resizing, Normalization) before the first inspectable layer. Nested functional
sub-models (a keras.applications backbone) are flattened: their layers are named
`<sub-model>/<layer>` and grouped by the block their name gives (`block1`, `conv2_block1`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

CONV_TYPES = ("Conv2D", "SeparableConv2D", "DepthwiseConv2D")
POOLING_TYPES = ("MaxPooling2D", "AveragePooling2D")
ACTIVATION_TYPES = ("Activation", "ReLU", "LeakyReLU", "PReLU", "ELU", "Softmax")
# Layers that keep the order of values within each channel (batch norm up to the sign of its scale).
ORDER_KEEPING_TYPES = ("Activation", "ReLU", "LeakyReLU", "PReLU", "ELU", *POOLING_TYPES, "BatchNormalization")
PREPROCESSING_TYPES = ("Rescaling", "Resizing", "Normalization", "CenterCrop")
KINDS = {**dict.fromkeys(CONV_TYPES, "conv"), **dict.fromkeys(POOLING_TYPES, "pooling")}
KINDS.update(dict.fromkeys(ACTIVATION_TYPES, "activation"))
# Gradient ascent starts from grey noise: mid-grey plus or minus this many pixel levels.
NOISE_LEVELS = 16.0
# A backbone layer's block in its name: "block1" (VGG), "conv2_block1" (ResNet), "block_1" (MobileNetV2),
# "block1a" (EfficientNet); else a numbered stage followed by the layer's role ("expanded_conv_3_add").
_BLOCK_NAME = re.compile(r"^(.*?block_?\d+[a-z]?)")
_NUMBERED_NAME = re.compile(r"^(.*?_\d+)_")


@dataclass(frozen=True)
class InspectLayer:
    """One layer whose output is a stack of 2-D feature maps."""

    name: str  # "conv_1", or "backbone/block1_conv1" inside a nested sub-model
    kind: str  # "input" (the image as the model sees it), "conv", "pooling" or "activation"
    block: str  # "block 1" (counted by pooling layers), or "<sub-model> block1" from a nested layer's name
    output_shape: tuple[int, int, int]  # (height, width, channels)
    path: tuple[str, ...]  # layer names from the outer model down; () is the model's input

    @property
    def channels(self) -> int:
        """How many feature maps the layer outputs."""
        return self.output_shape[-1]


@dataclass(frozen=True)
class FeatureMap:
    """One layer's output for one image: float32 (height, width, channels)."""

    layer: InspectLayer
    values: np.ndarray

    @property
    def value_range(self) -> tuple[float, float]:
        """The lowest and highest value over all channels."""
        return float(self.values.min()), float(self.values.max())


@dataclass(frozen=True)
class Ascent:
    """An input synthesised to excite one channel, and the channel's mean activation before and after."""

    layer: str
    channel: int
    image: np.ndarray  # uint8 (height, width, channels) raw pixels, as the model takes them
    start_activation: float  # on the grey-noise start
    end_activation: float  # on `image`
    history: list[float]  # the activation before each step


# ------------------------------------------------------------------------------------- layers


def list_layers(model) -> list[InspectLayer]:
    """The conv, pooling and activation layers with 2-D feature maps, in model order, grouped by block.

    Augmentation and preprocessing layers are left out, and so are 1x1 outputs (a squeeze-and-excite
    branch's), which are no maps; nested functional sub-models are flattened.
    """
    return [
        InspectLayer("/".join(path), KINDS[type(layer).__name__], block, _shape(layer.output), path)
        for path, layer, block in _walk(model)
        if _inspectable(layer)
    ]


def _inspectable(layer) -> bool:
    """A conv, pooling or activation layer with maps of more than one pixel (not a squeeze-excite's 1x1)."""
    shape = tuple(layer.output.shape)
    return type(layer).__name__ in KINDS and len(shape) == 4 and shape[1:3] != (1, 1)


def input_view(model) -> InspectLayer:
    """The image as the model sees it: the last preprocessing layer's output before the first inspectable layer."""
    view: InspectLayer | None = None
    for path, layer, _ in _walk(model):
        if _inspectable(layer):
            break
        if type(layer).__name__ in PREPROCESSING_TYPES:
            view = InspectLayer("input", "input", "input", _shape(layer.output), path)
    return view or InspectLayer("input", "input", "input", _shape(model.inputs[0]), ())


def find_layer(model, name: str) -> InspectLayer:
    """The inspectable layer called `name` (as `list_layers` names it)."""
    layers = list_layers(model)
    for layer in layers:
        if layer.name == name:
            return layer
    names = [layer.name for layer in layers]
    shown = ", ".join(names[:12]) + (f" and {len(names) - 12} more" if len(names) > 12 else "")
    raise ValueError(
        f"layer must name a conv, pooling or activation layer of the model, one of: {shown}. Received: layer={name!r}"
    )


def _walk(model, prefix: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any, str]]:
    """(path, layer, block) for every layer, nested functional sub-models flattened, in model order.

    The outer model's blocks are counted by pooling layers (the builder's conv, ReLU, pool). A
    backbone's come from its layer names (`block1_conv1`, `conv2_block1_out`, `expanded_conv_3_add`);
    a layer whose name has none (`re_lu_7`) stays in the block before it, and the first layers
    before any named block are its stem.
    """
    pools, named = 1, "stem"
    for layer in model.layers:
        if is_nested(layer):
            yield from _walk(layer, (*prefix, layer.name))
            continue
        found = _BLOCK_NAME.match(layer.name) or _NUMBERED_NAME.match(layer.name)
        named = found.group(1) if found else named
        yield (*prefix, layer.name), layer, f"{'/'.join(prefix)} {named}" if prefix else f"block {pools}"
        pools += type(layer).__name__ in POOLING_TYPES


def is_nested(layer) -> bool:
    """Whether a layer is itself a model (a backbone) whose layers are listed too."""
    import keras

    return isinstance(layer, keras.Model)


def _shape(tensor) -> tuple[int, int, int]:
    return tuple(tensor.shape[1:])


def layer_at(model, path: tuple[str, ...]):
    """The layer at `path`, looked up through nested sub-models."""
    for name in path[:-1]:
        model = model.get_layer(name)
    return model.get_layer(path[-1])


def layer_tensor(model, path: tuple[str, ...]):
    """The layer's output in its own (possibly nested) graph; the model's input for ()."""
    return layer_at(model, path).output if path else model.inputs[0]


# ------------------------------------------------------------------------------- feature maps


def feature_maps(model, image: np.ndarray, layers: Sequence[str] | None = None) -> list[FeatureMap]:
    """The image as the model sees it, then each layer's output for `image`, from one forward pass.

    `image` holds raw 0-255 pixels (H, W, C) as the model takes them. `layers` names layers from
    `list_layers` (default: all of them); the result keeps model order, the input view first.
    """
    chosen = list_layers(model) if layers is None else [find_layer(model, name) for name in layers]
    items = [input_view(model), *chosen]
    probe = sub_model(model, [item.path for item in items])
    outputs = as_list(probe(_batch(model, image), training=False))
    return [FeatureMap(item, np.asarray(out[0], dtype=np.float32)) for item, out in zip(items, outputs, strict=True)]


def sub_model(model, paths: Sequence[tuple[str, ...]], reduce=None):
    """One model from the input to the outputs at `paths` (each passed through `reduce` when given)."""
    import keras

    tensors = _tensors(model, paths)
    return keras.Model(model.inputs[0], [reduce(t) if reduce else t for t in tensors])


def _tensors(model, paths: Sequence[tuple[str, ...]]) -> list:
    """Symbolic outputs, in `model`'s own graph, of the layers at `paths`.

    A layer inside a nested sub-model is reached by calling a model of the sub-model's requested
    layers on the tensor that feeds the sub-model: one extra branch per sub-model, not per layer.
    """
    import keras

    found: dict[tuple[str, ...], Any] = {}
    nested: dict[str, list[tuple[str, ...]]] = {}
    for path in paths:
        if len(path) <= 1:
            found[path] = layer_tensor(model, path)
        else:
            nested.setdefault(path[0], []).append(path)
    for name, inner_paths in nested.items():
        sub = model.get_layer(name)
        inner = keras.Model(sub.inputs[0], _tensors(sub, [p[1:] for p in inner_paths]))
        feed = sub._inbound_nodes[0].input_tensors[0]
        found.update(zip(inner_paths, as_list(inner(feed)), strict=True))
    return [found[path] for path in paths]


def as_list(outputs) -> list:
    """A model's outputs as a list (Keras returns a lone output bare)."""
    return list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]


def _batch(model, image: np.ndarray) -> np.ndarray:
    """`image` as a batch of one float32 image, checked against the model's input shape."""
    expected = tuple(model.inputs[0].shape[1:])
    array = np.asarray(image)
    if array.ndim == 2:
        array = array[..., np.newaxis]
    fits = array.ndim == len(expected) and all(e is None or e == a for e, a in zip(expected, array.shape, strict=True))
    if not fits or not np.issubdtype(array.dtype, np.number):
        raise ValueError(
            f"image must be one array of raw 0-255 pixels shaped like the model input {expected}; resize it with "
            f"cnnlab.data.images.normalize. Received: image.shape={array.shape}"
        )
    return array[np.newaxis].astype(np.float32)


# ------------------------------------------------------------------------------------ filters


def kernel(model, layer: str) -> np.ndarray:
    """A conv layer's learned kernel, float32 (height, width, input channels, filters), as stored in the model.

    A depthwise or separable conv gives its depthwise kernel (height, width, input channels, multiplier).
    """
    item = find_layer(model, layer)
    if item.kind != "conv":
        convs = [entry.name for entry in list_layers(model) if entry.kind == "conv"]
        raise ValueError(
            f"Only conv layers have filters; pooling and activation layers have no weights. Pick one of "
            f"{', '.join(convs[:12])}. Received: layer={layer!r}"
        )
    found = layer_at(model, item.path)
    weights = found.depthwise_kernel if hasattr(found, "depthwise_kernel") else found.kernel
    return np.asarray(weights, dtype=np.float32)


def layer_file_name(layer: str) -> str:
    """A layer's name made safe as part of a file name (a nested layer's "/" included)."""
    return re.sub(r"[^A-Za-z0-9_.]+", "_", layer)


def write_pngs(model, maps: Sequence[FeatureMap], out_dir: Path) -> list[Path]:
    """Write `maps` (from `feature_maps`: the input view first) as PNG grids in `out_dir`, created when missing.

    `input.png` is the image as the model sees it, enlarged to about 256 pixels a side; then, per
    layer, `<layer>-feature-maps.png` and, for a conv layer, `<layer>-filters.png` (its kernel).
    Returns the files in that order.
    """
    from cnnlab.charts import grids

    out_dir.mkdir(parents=True, exist_ok=True)
    view = grids.view_to_uint8(maps[0].values)
    written = [grids.write_png(out_dir / "input.png", grids.enlarge(view, max(1, 256 // max(view.shape[:2]))))]
    for fmap in maps[1:]:
        stem = layer_file_name(fmap.layer.name)
        written.append(grids.write_png(out_dir / f"{stem}-feature-maps.png", grids.feature_grid_png(fmap.values)))
        if fmap.layer.kind == "conv":
            weights = kernel(model, fmap.layer.name)
            written.append(grids.write_png(out_dir / f"{stem}-filters.png", grids.filter_grid_png(weights)))
    return written


def check_channel(item: InspectLayer, channel: int) -> None:
    """Raise the house-style ValueError unless `channel` is one of the layer's channels."""
    if isinstance(channel, bool) or not isinstance(channel, (int, np.integer)) or not 0 <= channel < item.channels:
        raise ValueError(
            f"channel must be an int from 0 to {item.channels - 1} (layer {item.name!r} has {item.channels} channels). "
            f"Received: channel={channel!r}"
        )


# --------------------------------------------------------------------------- gradient ascent


def gradient_ascent(model, layer: str, channel: int, steps: int = 40, step_size: float = 8.0, seed: int = 0) -> Ascent:
    """Synthesise an input that excites `channel` of `layer`: keras-io's filter visualisation.

    Starts from grey noise and takes `steps` steps up the gradient of the channel's mean
    activation, each moving the pixels by `step_size` levels (root mean square), clipped to the
    0-255 range the model takes. For an activation or pooling layer the climb follows the conv
    channel that feeds it, as Lucid climbs pre-ReLU activations: ReLU and pooling keep each
    channel's order, but a ReLU that is off everywhere on grey noise has no gradient at all. The
    activations reported are always the chosen layer's.
    """
    import tensorflow as tf

    item = find_layer(model, layer)
    check_channel(item, channel)
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= 500:
        raise ValueError(f"steps must be an int from 1 to 500. Received: steps={steps!r}")
    source, sign = _pre_activation(model, item, channel)
    probe = sub_model(model, [item.path, source])
    noise = np.random.default_rng(seed).uniform(-NOISE_LEVELS, NOISE_LEVELS, (1, *model.inputs[0].shape[1:]))
    pixels = tf.Variable(127.5 + noise, dtype=tf.float32)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            chosen, climbed = probe(pixels, training=False)
            objective = sign * tf.reduce_mean(climbed[..., channel])
        grads = tape.gradient(objective, pixels)
        rms = tf.sqrt(tf.reduce_mean(tf.square(grads)))
        pixels.assign(tf.clip_by_value(pixels + step_size * tf.math.divide_no_nan(grads, rms), 0.0, 255.0))
        return tf.reduce_mean(chosen[..., channel])

    history = [float(step()) for _ in range(steps)]
    image = np.rint(pixels.numpy()[0]).astype(np.uint8)
    chosen, _ = probe(image[np.newaxis].astype(np.float32), training=False)
    return Ascent(item.name, int(channel), image, history[0], float(np.mean(np.asarray(chosen)[..., channel])), history)


def _pre_activation(model, item: InspectLayer, channel: int) -> tuple[tuple[str, ...], float]:
    """The conv layer whose `channel` an activation or pooling layer passes on in order, and the sign it keeps.

    Walks back through per-channel layers (activations, pooling, batch normalisation, whose
    negative scale would flip the order); any other layer on the way means the layer itself.
    """
    tensor = layer_tensor(model, item.path)
    sign = 1.0
    while item.kind != "conv":  # a conv layer is climbed itself
        history = tensor._keras_history
        op = history.operation
        kind = type(op).__name__
        if kind in CONV_TYPES:
            return (*item.path[:-1], op.name), sign
        if kind not in ORDER_KEEPING_TYPES:
            break
        if kind == "BatchNormalization" and op.scale:
            sign *= float(np.sign(np.asarray(op.gamma)[channel])) or 1.0
        tensor = op._inbound_nodes[history.node_index].input_tensors[0]
    return item.path, 1.0


def strongest_unit(values: np.ndarray) -> tuple[int, int]:
    """(row, col) of a channel map's highest value: the unit whose receptive field is worth showing."""
    row, col = np.unravel_index(int(np.argmax(values)), values.shape)
    return int(row), int(col)
