"""Inside the network: the layers worth looking at, their feature maps for one image, the receptive
field of a unit, the learned filters, the training images that excite a channel most, and the
pattern a channel responds to (gradient ascent on the input, as in keras-io's "Visualizing what
convnets learn").

The model always runs in inference mode (`training=False`), so its augmentation layers leave the
image alone. The image "as the model sees it" is the output of its last preprocessing layer
(Rescaling, Resizing, Normalization) before the first inspectable layer. Nested functional
sub-models (a keras.applications backbone) are flattened: their layers are named
`<sub-model>/<layer>` and grouped by the block their name gives (`block1`, `conv2_block1`).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cnnlab.files import write_npy
from cnnlab.runs import Run
from cnnlab.settings import cache_dir

CONV_TYPES = ("Conv2D", "SeparableConv2D", "DepthwiseConv2D")
POOLING_TYPES = ("MaxPooling2D", "AveragePooling2D")
ACTIVATION_TYPES = ("Activation", "ReLU", "LeakyReLU", "PReLU", "ELU", "Softmax")
# Layers that keep the order of values within each channel (batch norm up to the sign of its scale).
ORDER_KEEPING_TYPES = ("Activation", "ReLU", "LeakyReLU", "PReLU", "ELU", *POOLING_TYPES, "BatchNormalization")
PREPROCESSING_TYPES = ("Rescaling", "Resizing", "Normalization", "CenterCrop")
KINDS = {**dict.fromkeys(CONV_TYPES, "conv"), **dict.fromkeys(POOLING_TYPES, "pooling")}
KINDS.update(dict.fromkeys(ACTIVATION_TYPES, "activation"))
TOP_K = 9
# Gradient ascent starts from grey noise: mid-grey plus or minus this many pixel levels.
NOISE_LEVELS = 16.0
_BLOCK_NAME = re.compile(r"^(.*?block_?\d+[a-z]?)")


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
class Box:
    """Pixel rows [top, bottom) and columns [left, right) of the image as the model sees it."""

    top: int
    left: int
    bottom: int
    right: int


@dataclass(frozen=True)
class TopImages:
    """The training images whose mean activation of one channel is highest, highest first."""

    layer: str
    channel: int
    images: np.ndarray  # uint8 (k, height, width, channels), the model's input
    paths: list[str]  # relative to the dataset root
    labels: list[str]
    scores: np.ndarray  # the channel's mean activation on each image


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

    Augmentation and preprocessing layers are left out; nested functional sub-models are flattened.
    """
    return [
        InspectLayer("/".join(path), KINDS[type(layer).__name__], block, _shape(layer.output), path)
        for path, layer, block in _walk(model)
        if type(layer).__name__ in KINDS and len(layer.output.shape) == 4
    ]


def input_view(model) -> InspectLayer:
    """The image as the model sees it: the last preprocessing layer's output before the first inspectable layer."""
    view: InspectLayer | None = None
    for path, layer, _ in _walk(model):
        if type(layer).__name__ in KINDS and len(layer.output.shape) == 4:
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
    """(path, layer, block) for every layer, nested functional sub-models flattened, in model order."""
    pools = 1
    for layer in model.layers:
        if _is_nested(layer):
            yield from _walk(layer, (*prefix, layer.name))
            continue
        yield (*prefix, layer.name), layer, _block(prefix, layer.name, pools)
        pools += type(layer).__name__ in POOLING_TYPES


def _block(prefix: tuple[str, ...], name: str, pools: int) -> str:
    if not prefix:
        return f"block {pools}"
    named = _BLOCK_NAME.match(name)
    return f"{'/'.join(prefix)} {named.group(1) if named else f'block {pools}'}"


def _is_nested(layer) -> bool:
    import keras

    return isinstance(layer, keras.Model)


def _shape(tensor) -> tuple[int, int, int]:
    return tuple(tensor.shape[1:])


def _layer(model, path: tuple[str, ...]):
    for name in path[:-1]:
        model = model.get_layer(name)
    return model.get_layer(path[-1])


def _own_tensor(model, path: tuple[str, ...]):
    """The layer's output in its own (possibly nested) graph; the model's input for ()."""
    return _layer(model, path).output if path else model.inputs[0]


# ------------------------------------------------------------------------------- feature maps


def feature_maps(model, image: np.ndarray, layers: Sequence[str] | None = None) -> list[FeatureMap]:
    """The image as the model sees it, then each layer's output for `image`, from one forward pass.

    `image` holds raw 0-255 pixels (H, W, C) as the model takes them. `layers` names layers from
    `list_layers` (default: all of them); the result keeps model order, the input view first.
    """
    chosen = list_layers(model) if layers is None else [find_layer(model, name) for name in layers]
    items = [input_view(model), *chosen]
    extractor = _extractor(model, [item.path for item in items])
    outputs = _as_list(extractor(_batch(model, image), training=False))
    return [FeatureMap(item, np.asarray(out[0], dtype=np.float32)) for item, out in zip(items, outputs, strict=True)]


def _extractor(model, paths: Sequence[tuple[str, ...]], reduce=None):
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
            found[path] = _own_tensor(model, path)
        else:
            nested.setdefault(path[0], []).append(path)
    for name, inner_paths in nested.items():
        sub = model.get_layer(name)
        inner = keras.Model(sub.inputs[0], _tensors(sub, [p[1:] for p in inner_paths]))
        feed = sub._inbound_nodes[0].input_tensors[0]
        found.update(zip(inner_paths, _as_list(inner(feed)), strict=True))
    return [found[path] for path in paths]


def _as_list(outputs) -> list:
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
            f"cnnlab.images.normalize. Received: image.shape={array.shape}"
        )
    return array[np.newaxis].astype(np.float32)


# ---------------------------------------------------------------------------- receptive field


def receptive_field(model, layer: str, row: int, col: int) -> Box:
    """The pixels of the image as the model sees it that unit (`row`, `col`) of `layer` depends on.

    Worked out from the layer stack: each conv or pooling layer's kernel size, strides, dilation
    and padding (TensorFlow's "same" pads the extra pixel after), padding and cropping layers'
    offsets, and whole-image dependence through global pooling. Where branches join (a residual
    Add), the boxes of the branches are united; the box is clipped to the image.
    """
    item = find_layer(model, layer)
    height, width, _ = item.output_shape
    for name, value, size in (("row", row, height), ("col", col, width)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= value < size:
            raise ValueError(
                f"{name} must be an int from 0 to {size - 1} for layer {layer!r}. Received: {name}={value!r}"
            )
    view = input_view(model)
    stop = _own_tensor(model, view.path)
    boxes = _propagate(model, item.path, (int(row), int(row), int(col), int(col)), stop)
    view_height, view_width, _ = view.output_shape
    top, bottom, left, right = boxes.get(id(stop)) or (0, view_height - 1, 0, view_width - 1)
    return Box(top, left, bottom + 1, right + 1)


Span = tuple[int, int, int, int] | None  # inclusive (first row, last row, first col, last col); None: all


def _propagate(model, path: tuple[str, ...], box: Span, stop) -> dict[int, Span]:
    """Boxes of every tensor the layer at `path` depends on, walking back to `stop` in reverse topological order."""
    feeds: dict[int, Any] = {}  # a nested sub-model's input -> the tensor feeding it in the graph around it
    for name in path[:-1]:
        model = model.get_layer(name)
        feeds.update(zip(map(id, model.inputs), model._inbound_nodes[0].input_tensors, strict=False))
    target = _layer(model, path[-1:]).output
    order: list = []
    seen: set[int] = set()

    def visit(tensor) -> None:
        seen.add(id(tensor))
        if tensor is not stop:
            for parent, _ in _back(tensor, None, feeds):
                if id(parent) not in seen:
                    visit(parent)
        order.append(tensor)

    visit(target)
    boxes: dict[int, Span] = {id(target): box}
    for tensor in reversed(order):  # every consumer of a tensor comes before it
        if tensor is stop or id(tensor) not in boxes:
            continue
        for parent, parent_box in _back(tensor, boxes[id(tensor)], feeds):
            boxes[id(parent)] = _union(boxes[id(parent)], parent_box) if id(parent) in boxes else parent_box
    return boxes


def _back(tensor, box: Span, feeds: dict[int, Any]) -> list[tuple[Any, Span]]:
    """The tensors `tensor` is computed from, each with the box of it that `box` of `tensor` depends on."""
    history = tensor._keras_history
    op = history.operation
    if type(op).__name__ == "InputLayer":
        feed = feeds.get(id(tensor))  # a nested sub-model's input: continue in the outer graph
        return [(feed, box)] if feed is not None else []
    node = op._inbound_nodes[history.node_index]
    if _is_nested(op):
        feeds.update(zip(map(id, op.inputs), node.input_tensors, strict=False))
        return [(op.outputs[history.tensor_index], box)]
    parents = [t for t in node.input_tensors if hasattr(t, "_keras_history")]
    return [(parent, _box_through(op, tensor, parent, box)) for parent in parents]


def _box_through(op, output, parent, box: Span) -> Span:
    out_size, in_size = _spatial(output), _spatial(parent)
    if box is None or out_size is None or in_size is None:
        return None
    kind = type(op).__name__
    if kind in CONV_TYPES or kind in POOLING_TYPES:
        kernel = getattr(op, "kernel_size", None) or op.pool_size
        dilation = getattr(op, "dilation_rate", (1, 1))
        rows = _through_kernel(box[0:2], kernel[0], op.strides[0], dilation[0], op.padding, in_size[0], out_size[0])
        cols = _through_kernel(box[2:4], kernel[1], op.strides[1], dilation[1], op.padding, in_size[1], out_size[1])
        return (*rows, *cols)
    if kind in ("ZeroPadding2D", "Cropping2D"):
        (top, _), (left, _) = op.padding if kind == "ZeroPadding2D" else op.cropping
        sign = -1 if kind == "ZeroPadding2D" else 1
        return _clip((box[0] + sign * top, box[1] + sign * top, box[2] + sign * left, box[3] + sign * left), in_size)
    if in_size == out_size:
        return box
    # Broadcast (1x1), global pooling, resizing or upsampling: scale the box to the input's size.
    rows = (box[0] * in_size[0] // out_size[0], -(-(box[1] + 1) * in_size[0] // out_size[0]) - 1)
    cols = (box[2] * in_size[1] // out_size[1], -(-(box[3] + 1) * in_size[1] // out_size[1]) - 1)
    return _clip((*rows, *cols), in_size)


def _through_kernel(
    span: tuple[int, ...], kernel: int, stride: int, dilation: int, padding: str, size_in: int, size_out: int
) -> tuple[int, int]:
    reach = dilation * (kernel - 1) + 1
    pad = max((size_out - 1) * stride + reach - size_in, 0) // 2 if padding == "same" else 0
    first, last = span[0] * stride - pad, span[1] * stride - pad + reach - 1
    return max(first, 0), min(last, size_in - 1)


def _spatial(tensor) -> tuple[int, int] | None:
    shape = tuple(tensor.shape)
    if len(shape) != 4 or None in shape[1:3]:
        return None
    return int(shape[1]), int(shape[2])


def _clip(box: tuple[int, int, int, int], size: tuple[int, int]) -> Span:
    top, bottom = max(box[0], 0), min(box[1], size[0] - 1)
    left, right = max(box[2], 0), min(box[3], size[1] - 1)
    return top, bottom, left, right


def _union(a: Span, b: Span) -> Span:
    if a is None or b is None:
        return None
    return min(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), max(a[3], b[3])


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
    found = _layer(model, item.path)
    weights = found.depthwise_kernel if hasattr(found, "depthwise_kernel") else found.kernel
    return np.asarray(weights, dtype=np.float32)


# ---------------------------------------------------------------------- top-activating images


def channel_means(model, layers: Sequence[str], batches) -> dict[str, np.ndarray]:
    """Per image, the mean of every channel of each layer over its map: float32 (N, channels), one batched pass.

    `batches` is what `model.predict` takes: an array of raw images or a dataset of (images, labels).
    """
    import keras

    items = [find_layer(model, name) for name in layers]
    extractor = _extractor(model, [item.path for item in items], lambda t: keras.ops.mean(t, axis=(1, 2)))
    outputs = _as_list(extractor.predict(batches, verbose=0))
    return {item.name: np.asarray(out, dtype=np.float32) for item, out in zip(items, outputs, strict=True)}


def top_indices(scores: np.ndarray, k: int = TOP_K) -> np.ndarray:
    """Indices of the `k` highest scores, highest first (ties keep their order)."""
    return np.argsort(-np.asarray(scores), kind="stable")[:k]


def top_images(
    run: Run, model, layer: str, channel: int, k: int = TOP_K, cache: Path | None = None, batch_size: int = 64
) -> TopImages:
    """The run's `k` training images that activate `channel` of `layer` most, on average over its map.

    The means of all the layer's channels come from one batched pass over the run's training
    split and are kept in `inspect_folder(run)`, so other channels and later calls are instant.
    """
    from cnnlab import data
    from cnnlab.evaluate import prepared_split

    item = find_layer(model, layer)
    _check_channel(item, channel)
    prepared, train = prepared_split(run, "train", cache)
    if not len(train):
        raise ValueError(f"Run '{run.name}' has no training images left in its dataset. Received: run={run.id!r}")
    key = _means_key(run, prepared, train)
    path = inspect_folder(run, cache) / f"{layer_file_name(item.name)}-{key}.npy"
    try:
        means = np.load(path, allow_pickle=False)
    except (OSError, ValueError):
        means = channel_means(model, [item.name], data.make_dataset(prepared, train, batch_size))[item.name]
        _save_means(path, means)
    order = top_indices(means[:, channel], k)
    chosen = train[order]
    names = prepared.report.class_names
    return TopImages(
        layer=item.name,
        channel=int(channel),
        images=np.asarray(prepared.images[chosen]),
        paths=[prepared.report.files[i] for i in chosen],
        labels=[names[prepared.labels[i]] for i in chosen],
        scores=means[order, channel],
    )


def inspect_folder(run: Run, cache: Path | None = None) -> Path:
    """Where a run's cached channel means live: `<run>/inspect`; the shared demo's go to the cache folder."""
    if run.is_demo:
        return (cache or cache_dir()) / "inspect" / run.id
    return run.path / "inspect"


def _means_key(run: Run, prepared, train: np.ndarray) -> str:
    """Changes with the model file, the dataset's content, the preparation and the training split."""
    stat = run.model_path.stat()
    text = f"{stat.st_mtime_ns}-{stat.st_size}-{prepared.cache_path.name}-{train.tobytes().hex()}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _save_means(path: Path, means: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    layer = path.name.rsplit("-", 1)[0]
    for stale in path.parent.glob(f"{layer}-*.npy"):  # an older model's or dataset's means
        if stale.name.rsplit("-", 1)[0] == layer:
            stale.unlink(missing_ok=True)
    write_npy(path, means)


def layer_file_name(layer: str) -> str:
    """A layer's name made safe as part of a file name (a nested layer's "/" included)."""
    return re.sub(r"[^A-Za-z0-9_.]+", "_", layer)


def _check_channel(item: InspectLayer, channel: int) -> None:
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
    _check_channel(item, channel)
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= 500:
        raise ValueError(f"steps must be an int from 1 to 500. Received: steps={steps!r}")
    source, sign = _pre_activation(model, item, channel)
    extractor = _extractor(model, [item.path, source])
    noise = np.random.default_rng(seed).uniform(-NOISE_LEVELS, NOISE_LEVELS, (1, *model.inputs[0].shape[1:]))
    pixels = tf.Variable(127.5 + noise, dtype=tf.float32)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            chosen, climbed = extractor(pixels, training=False)
            objective = sign * tf.reduce_mean(climbed[..., channel])
        grads = tape.gradient(objective, pixels)
        rms = tf.sqrt(tf.reduce_mean(tf.square(grads)))
        pixels.assign(tf.clip_by_value(pixels + step_size * tf.math.divide_no_nan(grads, rms), 0.0, 255.0))
        return tf.reduce_mean(chosen[..., channel])

    history = [float(step()) for _ in range(steps)]
    image = np.rint(pixels.numpy()[0]).astype(np.uint8)
    chosen, _ = extractor(image[np.newaxis].astype(np.float32), training=False)
    return Ascent(item.name, int(channel), image, history[0], float(np.mean(np.asarray(chosen)[..., channel])), history)


def _pre_activation(model, item: InspectLayer, channel: int) -> tuple[tuple[str, ...], float]:
    """The conv layer whose `channel` an activation or pooling layer passes on in order, and the sign it keeps.

    Walks back through per-channel layers (activations, pooling, batch normalisation, whose
    negative scale would flip the order); any other layer on the way means the layer itself.
    """
    tensor = _own_tensor(model, item.path)
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
