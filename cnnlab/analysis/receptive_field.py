"""The receptive field of a unit: the pixels of the image, as the model sees it, that one unit of a
layer depends on, worked out from the layer stack (not from gradients, which vanish through an
inactive ReLU or a max-pooling loser)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from cnnlab.analysis.inspect import CONV_TYPES, POOLING_TYPES, find_layer, input_view, is_nested, layer_at, layer_tensor


@dataclass(frozen=True)
class Box:
    """Pixel rows [top, bottom) and columns [left, right) of the image as the model sees it."""

    top: int
    left: int
    bottom: int
    right: int


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
    stop = layer_tensor(model, view.path)
    boxes = _propagate(model, item.path, (int(row), int(row), int(col), int(col)), stop)
    view_height, view_width, _ = view.output_shape
    top, bottom, left, right = boxes[id(stop)] or (0, view_height - 1, 0, view_width - 1)  # None: all of it
    return Box(top, left, bottom + 1, right + 1)


Span = tuple[int, int, int, int] | None  # inclusive (first row, last row, first col, last col); None: all


def _propagate(model, path: tuple[str, ...], box: Span, stop) -> dict[int, Span]:
    """Boxes of every tensor the layer at `path` depends on, walking back to `stop` in reverse topological order."""
    feeds: dict[int, Any] = {}  # a nested sub-model's input -> the tensor feeding it in the graph around it
    for name in path[:-1]:
        model = model.get_layer(name)
        feeds.update(zip(map(id, model.inputs), model._inbound_nodes[0].input_tensors, strict=False))
    target = layer_at(model, path[-1:]).output
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
    if is_nested(op):
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
