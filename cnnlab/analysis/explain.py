"""Grad-CAM: which parts of an image pushed the model towards a class.

Follows keras-io `examples/vision/grad_cam.py`: the gradient of the class score with respect to
the last conv layer's feature maps, averaged per channel, weights those maps into one heatmap.
A layer inside a nested model (a pretrained backbone) is named "backbone/layer"; its feature
maps are reached by running the outer model in three parts around the backbone.
"""

from __future__ import annotations

import threading
import weakref

import numpy as np

# Layers whose output is a spatial feature map Grad-CAM can weight.
_CONV_TYPES = ("Conv2D", "SeparableConv2D", "DepthwiseConv2D")


def last_conv_layer_name(model) -> str:
    """Name of the last conv layer with a 4-D (batch, height, width, channels) output.

    In a model with a nested backbone it is the backbone's last conv layer, "backbone/layer".
    """
    for name, layer in reversed(_named_layers(model)):
        if type(layer).__name__ in _CONV_TYPES and len(_output_shape(layer)) == 4:
            return name
    raise ValueError(
        "Grad-CAM needs a Conv2D layer but the model has none; pass a model with convolution "
        f"layers or name a 4-D layer with layer_name. Received: model={model.name!r}"
    )


def grad_cam(model, image: np.ndarray, class_index: int | None = None, layer_name: str | None = None) -> np.ndarray:
    """Grad-CAM heatmap of `image` for `class_index`, float32 (H, W) in [0, 1] at the image's size.

    `image` holds raw 0-255 pixels (H, W, C) as the model expects. `class_index=None` explains the
    predicted class. The class score is the output layer's logit (before softmax or sigmoid) when
    it can be reached, so saturated probabilities still give gradients; a single-sigmoid model's
    class 1 uses that logit and class 0 its negation. `layer_name` defaults to the last conv layer.
    The gradient computation is traced once per model and layer, then reused (a few ms a call).
    """
    import tensorflow as tf

    pixels = _check_image(model, image)
    class_index = _check_class_index(model, class_index)
    cam_function = _cam_function(model, layer_name or last_conv_layer_name(model))
    cam = cam_function(
        tf.convert_to_tensor(pixels[np.newaxis]), tf.constant(-1 if class_index is None else class_index)
    )
    return _unit_range(np.asarray(cam, dtype=np.float32))


# One traced Grad-CAM function per (model, layer), dropped with the model. The functions hold the
# model's layers, never the model object itself, so a model evicted from a cache is freed.
_cam_functions: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_cam_lock = threading.Lock()


def _cam_function(model, layer_name: str):
    with _cam_lock:
        per_model = _cam_functions.setdefault(model, {})
        if layer_name not in per_model:
            per_model[layer_name] = _trace_cam(model, *_feature_layer(model, layer_name))
        return per_model[layer_name]


def _trace_cam(model, nested, layer):
    """A tf.function (pixels (1, H, W, C), class_index; -1 = predicted) -> unscaled heatmap (H, W).

    Built on new Functional models over the same layers, so the shared model is never changed.
    """
    import tensorflow as tf

    head = _logit_layer(model)
    forward = _forward(model, nested, layer, head.input if head is not None else model.outputs[0])
    threshold = 0.0 if head is not None else 0.5

    @tf.function(reduce_retracing=True)
    def cam_function(pixels, class_index):
        with tf.GradientTape() as tape:
            feature_maps, last = forward(pixels)
            # A mixed-precision model computes in 16 bits; the heatmap is worked out in float32.
            feature_maps, last = tf.cast(feature_maps, tf.float32), tf.cast(last, tf.float32)
            scores = _logits(head, last) if head is not None else last
            score = _class_score(scores, class_index, threshold)
        grads = tape.gradient(score, feature_maps)
        channel_weights = tf.reduce_mean(grads, axis=(0, 1, 2))
        cam = tf.nn.relu(tf.reduce_sum(feature_maps[0] * channel_weights, axis=-1))
        return tf.image.resize(cam[..., tf.newaxis], tf.shape(pixels)[1:3], method="bilinear")[..., 0]

    return cam_function


def _forward(model, nested, layer, target):
    """pixels -> (`layer`'s feature maps, the outer `target`), in one differentiable pass.

    training=False keeps any augmentation layers inside older models from moving the image. A
    layer inside a nested model (`nested`, a backbone) belongs to that model's own graph, so no
    single Model reaches it from the outer input: the outer graph is cut before and after the
    nested model's call.
    """
    import keras

    if nested is None:
        grad_model = keras.Model(model.inputs, [layer.output, target])
        return lambda pixels: grad_model(pixels, training=False)
    # The outer tensors entering and leaving the nested model (it is called once).
    node = nested._inbound_nodes[0]
    inner = keras.Model(nested.inputs[0], [layer.output, nested.outputs[0]])
    after = keras.Model(node.output_tensors[0], target)
    entering = node.input_tensors[0]
    before = None if entering is model.inputs[0] else keras.Model(model.inputs[0], entering)

    def forward(pixels):
        x = pixels if before is None else before(pixels, training=False)
        feature_maps, out = inner(x, training=False)
        return feature_maps, after(out, training=False)

    return forward


def overlay(image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.4) -> np.ndarray:
    """Blend a jet-coloured `heatmap` (H, W) in [0, 1] over `image`, returning uint8 (H, W, 3).

    Grayscale images, (H, W) or (H, W, 1), are shown as RGB. `alpha` is the heatmap's weight.
    """
    rgb = _as_rgb(image)
    heat = np.asarray(heatmap, dtype=np.float32)
    if heat.shape != rgb.shape[:2]:
        raise ValueError(
            f"heatmap must have the image's height and width {rgb.shape[:2]}; make it with grad_cam on the "
            f"same image. Received: heatmap.shape={heat.shape}"
        )
    if not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f"alpha must be a float from 0 to 1 (the heatmap's weight). Received: alpha={alpha!r}")
    colours = jet_colormap(np.clip(np.nan_to_num(heat), 0.0, 1.0)) * 255.0
    blended = (1.0 - alpha) * rgb.astype(np.float32) + alpha * colours
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)


def jet_colormap(values: np.ndarray) -> np.ndarray:
    """Jet colours (..., 3) in [0, 1] for values in [0, 1]: blue (low) through green to red (high)."""
    x = np.asarray(values, dtype=np.float32)[..., np.newaxis]
    # Piecewise-linear jet: each channel is a clipped tent peaking at 3/4, 1/2 and 1/4.
    centres = np.array([0.75, 0.5, 0.25], dtype=np.float32)
    return np.clip(1.5 - np.abs(4.0 * x - 4.0 * centres), 0.0, 1.0)


def _output_shape(layer) -> tuple:
    try:
        return tuple(layer.output.shape)
    except (AttributeError, ValueError):
        # A layer that was never called on a symbolic input has no output to inspect.
        return ()


def _check_image(model, image: np.ndarray) -> np.ndarray:
    expected = tuple(model.inputs[0].shape[1:])
    array = np.asarray(image)
    if array.ndim == 2 and len(expected) == 3 and expected[-1] == 1:
        array = array[..., np.newaxis]
    matches = array.ndim == len(expected) and all(
        e is None or e == a for e, a in zip(expected, array.shape, strict=True)
    )
    if not matches or not np.issubdtype(array.dtype, np.number):
        raise ValueError(
            f"image must be one numeric array of raw pixels shaped like the model input {expected}; "
            f"resize it with cnnlab.data.images.normalize. Received: image.shape={array.shape}"
        )
    return array.astype(np.float32)


def _named_layers(model) -> list[tuple[str, object]]:
    """Every layer in graph order, with the layers of a nested model named "model/layer"."""
    import keras

    found: list[tuple[str, object]] = []
    for layer in model.layers:
        found.append((layer.name, layer))
        if isinstance(layer, keras.Model):
            found += [(f"{layer.name}/{inner.name}", inner) for inner in layer.layers]
    return found


def _feature_layer(model, name: str):
    """(the nested model holding it or None, the layer) for a 4-D layer named `name`."""
    named = dict(_named_layers(model))
    layer = named.get(name)
    if layer is None or len(_output_shape(layer)) != 4:
        names = [key for key, layer in named.items() if len(_output_shape(layer)) == 4]
        raise ValueError(
            f"layer_name must name a layer with a 4-D feature-map output, one of {names}. Received: layer_name={name!r}"
        )
    return (named[name.split("/")[0]] if "/" in name else None), layer


def _logit_layer(model):
    """The output Dense layer when its softmax/sigmoid can be undone by recomputing its logits."""
    import keras

    last = model.layers[-1]
    activation = getattr(getattr(last, "activation", None), "__name__", "")
    if (
        len(model.outputs) == 1
        and isinstance(last, keras.layers.Dense)
        and activation in ("softmax", "sigmoid")
        and last.output is model.outputs[0]
    ):
        return last
    return None


def _logits(dense, inputs):
    from keras import ops

    logits = ops.matmul(inputs, dense.kernel)
    return logits + dense.bias if dense.use_bias else logits


def _check_class_index(model, class_index: int | None) -> int | None:
    # A single sigmoid unit scores class 1, so it still describes two classes.
    num_classes = max(2, int(model.outputs[0].shape[-1]))
    if class_index is None:
        return None
    if (
        isinstance(class_index, bool)
        or not isinstance(class_index, (int, np.integer))
        or not 0 <= class_index < num_classes
    ):
        raise ValueError(
            f"class_index must be an int from 0 to {num_classes - 1}, or None for the predicted class. "
            f"Received: class_index={class_index!r}"
        )
    return int(class_index)


def _class_score(scores, class_index, threshold: float):
    """The scalar to differentiate: the class's score, or for one sigmoid unit +-its score.

    `class_index` is an int32 tensor, -1 for the predicted class. `threshold` is the single
    unit's decision boundary: 0 for a logit, 0.5 for a probability.
    """
    import tensorflow as tf

    if scores.shape[-1] != 1:
        predicted = tf.argmax(scores[0], output_type=tf.int32)
        return tf.gather(scores[0], tf.where(class_index < 0, predicted, class_index))
    predicted = tf.cast(scores[0, 0] >= threshold, tf.int32)
    index = tf.where(class_index < 0, predicted, class_index)
    return tf.where(index == 1, scores[0, 0], -scores[0, 0])


def _unit_range(cam: np.ndarray) -> np.ndarray:
    peak = float(cam.max()) if cam.size else 0.0
    if not np.isfinite(peak) or peak <= 0.0:
        # No positive evidence for the class anywhere: an all-zero map says exactly that.
        return np.zeros_like(cam, dtype=np.float32)
    return np.clip(cam / peak, 0.0, 1.0).astype(np.float32)


def _as_rgb(image: np.ndarray) -> np.ndarray:
    array = np.asarray(image)
    if array.ndim == 2:
        array = array[..., np.newaxis]
    if array.ndim != 3 or array.shape[-1] not in (1, 3) or not np.issubdtype(array.dtype, np.number):
        raise ValueError(
            "image must be a numeric (H, W, 3) RGB or (H, W) / (H, W, 1) grayscale array of 0-255 pixels. "
            f"Received: image.shape={array.shape}"
        )
    array = np.clip(array, 0, 255)
    return np.repeat(array, 3, axis=-1) if array.shape[-1] == 1 else array
