"""Pretrained backbones from `keras.applications`: which ones, their sizes and their weights.

A backbone is a `keras.applications` network without its classifier (`include_top=False`) with
its own preprocessing inside, so it takes raw 0-255 pixels like every CNN Lab model: MobileNetV3
rescales to [-1, 1] (`include_preprocessing=True`) and EfficientNet rescales and normalises in its
first layers. Weights are "imagenet" (downloaded once into Keras's own cache, `~/.keras/models`,
with `keras.utils.get_file`, which checks the file's hash and reuses a checked file), "none"
(random) or the path of a weights file on this machine.
"""

from __future__ import annotations

import importlib
import math
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from cnnlab.common.checks import one_line

NO_BACKBONE = "none"
IMAGENET = "imagenet"
RANDOM_WEIGHTS = "none"
WEIGHTS_SUFFIXES = (".h5", ".hdf5")
# The smallest input keras.applications accepts, and the size the ImageNet weights were trained at.
MIN_SIZE = 32
RECOMMENDED_SIZE = 224
POLL_S = 0.2
STALL_S = 30.0

DownloadProgress = Callable[[int], None]


@dataclass(frozen=True)
class Backbone:
    """One `keras.applications` network and where Keras finds its ImageNet weights without the top."""

    title: str
    application: str  # the keras.applications function
    module: str  # the keras.src.applications module holding its weight addresses and hashes
    weights_key: str  # its key in that module's WEIGHTS_HASHES
    weights_file: str  # the no-top ImageNet file keras.applications downloads

    def imagenet_source(self) -> tuple[str, str]:
        """The weights' address and hash, read from the very module keras.applications loads them with."""
        module = importlib.import_module(f"keras.src.applications.{self.module}")
        base = getattr(module, "BASE_WEIGHT_PATH", None) or module.BASE_WEIGHTS_PATH
        return base + self.weights_file, module.WEIGHTS_HASHES[self.weights_key][1]


# Networks that train in reasonable time on a CPU (a few million weights).
BACKBONES = {
    "mobilenet_v3_small": Backbone(
        "MobileNetV3 Small",
        "MobileNetV3Small",
        "mobilenet_v3",
        "small_224_1.0_float",
        "weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5",
    ),
    "mobilenet_v3_large": Backbone(
        "MobileNetV3 Large",
        "MobileNetV3Large",
        "mobilenet_v3",
        "large_224_1.0_float",
        "weights_mobilenet_v3_large_224_1.0_float_no_top_v2.h5",
    ),
    "efficientnet_b0": Backbone("EfficientNet B0", "EfficientNetB0", "efficientnet", "b0", "efficientnetb0_notop.h5"),
}
BACKBONE_NAMES = (NO_BACKBONE, *BACKBONES)


def check_weights(backbone_weights: str) -> None:
    """Raise the house-style ValueError unless `backbone_weights` is "imagenet", "none" or a .h5 path."""
    ok = isinstance(backbone_weights, str) and (
        backbone_weights in (IMAGENET, RANDOM_WEIGHTS) or backbone_weights.lower().endswith(WEIGHTS_SUFFIXES)
    )
    if not ok:
        raise ValueError(
            "backbone_weights must be 'imagenet', 'none' (random weights) or the path of a Keras weights file "
            f"(.weights.h5 or .h5). Received: backbone_weights={backbone_weights!r}"
        )


def build_backbone(name: str, image_size: tuple[int, int], weights: str):
    """The backbone `name` for RGB images of `image_size`, without its classifier.

    `weights` "imagenet" loads Keras's cached ImageNet file (fetch it first with `fetch_imagenet`,
    or Keras downloads it without progress), "none" leaves the weights random, and a path loads
    that weights file.
    """
    import keras

    spec = BACKBONES[name]
    extra = {"include_preprocessing": True} if spec.module == "mobilenet_v3" else {}
    with warnings.catch_warnings():
        # Keras warns that ImageNet weights were trained at 224 px; the Train page says so instead.
        warnings.filterwarnings("ignore", message=".*224.*")
        return getattr(keras.applications, spec.application)(
            input_shape=(*image_size, 3),
            include_top=False,
            weights=_keras_weights(weights),
            **extra,
        )


def _keras_weights(weights: str) -> str | None:
    if weights == RANDOM_WEIGHTS:
        return None
    return weights if weights == IMAGENET else str(Path(weights).expanduser())


# Activation functions a backbone's Activation layers use, by what a forward pass computes beside the
# output (temporaries, in output sizes) and what their gradient keeps (in input sizes). hard_silu
# is x * relu6(x + 3) / 6: x + 3 and relu6's result live beside x, and the gradient needs x, x + 3
# and relu6(x + 3) / 6. silu is x * sigmoid(x); its gradient recomputes the sigmoid from x.
ACTIVATION_COST = {"hard_silu": (2, 3), "silu": (1, 1)}
# Layers whose forward pass makes one full-size temporary (a scale, then an offset: BN in
# inference mode is x * inv + (beta - mean * inv)).
ONE_TEMPORARY = ("BatchNormalization", "Rescaling", "Normalization")
WEIGHTED = ("Conv2D", "DepthwiseConv2D", "Dense")


@dataclass(frozen=True)
class OpCost:
    """One operation of a backbone's forward pass, in values per image (what the memory estimate needs)."""

    layer: int  # index in the backbone's layers of this op's layer (of the layer before it, for a bare op)
    weights: int  # weights that train when fine-tuning reaches its layer (batch normalisation never does)
    live: int  # values alive while it runs: its inputs, output and temporaries, and every tensor a later op needs
    kept: int  # values the backward pass keeps from it when gradients flow through it
    largest: int  # its largest input or output


@dataclass(frozen=True)
class Profile:
    """A backbone's size at one image size: what the weight count and memory estimate need."""

    params: int  # weights, batch-norm statistics included
    features: int  # channels of its last feature map (the head's input after pooling)
    num_layers: int  # len(backbone.layers), what `--fine-tune-layers` counts
    ops: tuple[OpCost, ...]  # its operations in the order the forward pass runs them


@dataclass(frozen=True)
class PhaseCost:
    """What one training phase of a backbone runs: trainable weights, operations, values per image."""

    trainable: int  # backbone weights this phase trains
    forward_ops: int  # operations the training step runs
    backward_ops: int  # operations it differentiates (the backbone's part)
    values: int  # backbone values alive at the step's peak, per image


@lru_cache(maxsize=16)
def profile(name: str, image_size: tuple[int, int]) -> Profile:
    """Backbone `name`'s `Profile` at `image_size`, measured on a random-weight build (cached).

    Walks the forward pass operation by operation, freeing each tensor after its last use, as
    TensorFlow's executor does; every Keras operation counts, bare ones (the `x + 3` of a hard
    sigmoid) included.
    """
    import keras

    model = build_backbone(name, image_size, RANDOM_WEIGHTS)
    users: dict[int, int] = {id(t): 1 for t in model.outputs}  # the head reads the outputs
    for op in model.operations:
        for tensor in op._inbound_nodes[0].input_tensors:
            users[id(tensor)] = users.get(id(tensor), 0) + 1
    layer_index = {id(layer): i for i, layer in enumerate(model.layers)}
    alive: dict[int, int] = {}
    ops, layer = [], 0
    for op in model.operations:
        node = op._inbound_nodes[0]
        inputs = [_values(t) for t in node.input_tensors]
        out = sum(_values(t) for t in node.output_tensors)
        layer = layer_index.get(id(op), layer)
        temporaries, kept = _op_cost(op, inputs, out)
        live = sum(alive.values()) + out + temporaries
        for tensor in node.input_tensors:
            users[id(tensor)] -= 1
            if not users[id(tensor)]:
                alive.pop(id(tensor), None)
        alive.update({id(t): _values(t) for t in node.output_tensors if users.get(id(t))})
        trains = isinstance(op, keras.layers.Layer) and type(op).__name__ != "BatchNormalization"
        weights = sum(math.prod(w.shape) for w in op.trainable_weights) if trains else 0
        ops.append(OpCost(layer, int(weights), live, kept, max([out, *inputs])))
    return Profile(int(model.count_params()), int(model.outputs[0].shape[-1]), len(model.layers), tuple(ops))


def _values(tensor) -> int:
    return math.prod(int(dim) for dim in tensor.shape[1:])


def _op_cost(op, inputs: list[int], out: int) -> tuple[int, int]:
    """Temporaries of `op`'s forward pass, and the values its gradient keeps (per image)."""
    kind = type(op).__name__
    function = getattr(getattr(op, "activation", None), "__name__", "linear")
    temporaries, keeps = ACTIVATION_COST.get(function, (0, 1))
    if kind == "Activation":
        return temporaries * out, keeps * inputs[0]
    if kind in WEIGHTED:
        # The weights' gradient needs the input; a built-in activation's gradient needs its output.
        return temporaries * out, sum(inputs) + (0 if function == "linear" else keeps * out)
    if kind == "ReLU":
        return 0, out
    if kind == "Multiply" and len(inputs) > 1:
        return 0, sum(inputs)  # each factor's gradient is the other factor
    return (out if kind in ONE_TEMPORARY else 0), 0


def phase_cost(name: str, image_size: tuple[int, int], fine_tune_layers: int = 0) -> PhaseCost:
    """The `PhaseCost` of training with backbone `name` frozen (0) or its top `fine_tune_layers` unfrozen.

    A frozen op keeps nothing for the backward pass; from the lowest trainable layer up, each op
    keeps what its gradient needs (`OpCost.kept`) until the backward pass reaches it. The peak is
    the larger of the forward pass's (live tensors plus what is kept so far) and the backward
    pass's start (all that is kept, plus the incoming gradient, the outgoing one and a scratch
    buffer of the largest tensor's size).
    """
    prof = profile(name, image_size)
    top = prof.num_layers - fine_tune_layers if fine_tune_layers else prof.num_layers
    start = next((i for i, op in enumerate(prof.ops) if op.layer >= top and op.weights), len(prof.ops))
    kept, forward = 0, 0
    for i, op in enumerate(prof.ops):
        kept += op.kept if i >= start else 0
        forward = max(forward, op.live + kept)
    region = prof.ops[start:]
    backward = kept + 3 * max((op.largest for op in region), default=0)
    return PhaseCost(sum(op.weights for op in region), len(prof.ops), len(region), max(forward, backward))


def prepare_weights(name: str, weights: str, on_progress: DownloadProgress | None = None) -> None:
    """Make the backbone's weights available before any training starts (nothing to do for "none").

    "imagenet" is fetched into Keras's cache (nothing to do when a checked copy is there); a path
    must be an existing file. Raises a one-line ValueError that says how to go on offline.
    """
    if name == NO_BACKBONE:
        return
    if weights == IMAGENET:
        fetch_imagenet(name, on_progress)
    elif weights != RANDOM_WEIGHTS and not Path(weights).expanduser().is_file():
        raise ValueError(
            f"The backbone weights file was not found; give the path of a Keras weights file on this machine, "
            f"or 'imagenet' or 'none'. Received: backbone_weights={weights!r}"
        )


def fetch_imagenet(name: str, on_progress: DownloadProgress | None = None) -> Path:
    """Download backbone `name`'s ImageNet weights into Keras's cache and return the file.

    The same call as keras.applications makes (`keras.utils.get_file` with the same file name and
    hash), so the backbone then finds the checked file and downloads nothing. `on_progress(bytes)`
    reports the growing file; a download that receives nothing for STALL_S seconds is given up.
    """
    import keras
    from keras.src.backend.config import keras_home  # where get_file caches by default (KERAS_HOME)

    spec = BACKBONES[name]
    url, file_hash = spec.imagenet_source()
    partial = Path(keras_home()).expanduser() / "models" / spec.weights_file
    outcome: dict[str, object] = {}

    def fetch() -> None:
        # Keras's setting is per thread: only this worker's printed bar is silenced, as `on_progress` replaces it.
        keras.config.disable_interactive_logging()
        try:
            outcome["path"] = keras.utils.get_file(spec.weights_file, url, file_hash=file_hash, cache_subdir="models")
        except BaseException as exc:  # noqa: BLE001 - explained on the caller's thread
            outcome["error"] = exc

    worker = threading.Thread(target=fetch, name=f"weights-{name}", daemon=True)
    worker.start()
    received, last_change = -1, time.monotonic()
    while worker.is_alive():
        worker.join(POLL_S)
        size = partial.stat().st_size if partial.is_file() else 0
        if size != received:
            received, last_change = size, time.monotonic()
            if on_progress is not None:
                on_progress(size)
        elif time.monotonic() - last_change > STALL_S:
            raise _offline(name, f"no data arrived for {STALL_S:g} s")
    if "error" in outcome:
        raise _offline(name, _reason(outcome["error"])) from None
    return Path(str(outcome["path"]))


def _reason(exc: object) -> str:
    # get_file re-raises URL errors as a bare Exception; the original is its context.
    cause = exc.__context__ if type(exc) is Exception and exc.__context__ is not None else exc
    reason = getattr(cause, "reason", None) or cause
    return one_line(reason) if isinstance(reason, BaseException) else str(reason)


def _offline(name: str, reason: str) -> ValueError:
    return ValueError(
        f"Could not download the ImageNet weights of {name} ({reason}); on a machine without internet, pass a "
        f"weights file with --backbone-weights PATH (or copy {BACKBONES[name].weights_file} into ~/.keras/models), "
        f"or use --backbone-weights none for random weights. Received: backbone_weights='imagenet'"
    )


def accepted_sizes(sizes: list[int]) -> list[int]:
    """The image sides from `sizes` that a backbone accepts (at least MIN_SIZE pixels)."""
    return [side for side in sizes if side >= MIN_SIZE]
