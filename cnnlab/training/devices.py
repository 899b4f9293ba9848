"""Which devices a training runs on: every local GPU through `tf.distribute.MirroredStrategy`, or one device.

With two or more GPUs a training mirrors its model on each of them (Keras 3 with the TensorFlow
backend distributes `model.fit` over the strategy its model and optimizer were built under). The
batch size stays the global one the person chose: the pipeline yields whole batches and Keras
splits each one over the devices, so each device computes `batch_size / devices` images a step.
A batch that does not split evenly is refused (rather than rounded), so the recorded batch size is
the one trained. With one GPU, or none, no strategy is used: TensorFlow places the training itself.

A list of device names (`CNNLAB_DEVICES`, read by `cnnlab.settings` and passed on in the
`Workspace`) chooses the devices instead: two or more are mirrored, one is used alone
(`OneDeviceStrategy`). CPU devices count too, which is how the tests run a mirrored training
without GPUs: the CPU split into logical devices before TensorFlow starts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

STRATEGIES = ("default", "OneDeviceStrategy", "MirroredStrategy")
_NAME = re.compile(r"^/?(?:device:)?(CPU|GPU):(\d+)$", re.IGNORECASE)


@dataclass(frozen=True)
class Devices:
    """The devices a training runs on, and how it splits its batches over them (recorded in the run).

    `names` are short device names ("/GPU:0"); `strategy` is one of STRATEGIES ("default": no
    distribution strategy, TensorFlow places the work); `batch_size` is the global batch and
    `per_device_batch` what each device computes of it.
    """

    names: tuple[str, ...] = ()
    strategy: str = "default"
    batch_size: int = 0
    per_device_batch: int = 0

    @property
    def mirrored(self) -> bool:
        """Whether the training is mirrored over several devices."""
        return self.strategy == "MirroredStrategy"

    def describe(self) -> str:
        """The devices in one line, as the Train page and the `train` command show them."""
        listed = ", ".join(self.names)
        if self.mirrored:
            return (
                f"{len(self.names)} devices ({listed}), MirroredStrategy, {self.per_device_batch} images per device "
                f"(batches of {self.batch_size})"
            )
        how = "OneDeviceStrategy" if self.strategy == "OneDeviceStrategy" else "no distribution strategy"
        return f"1 device ({listed}), {how}, {self.batch_size} images per batch"


def short_name(name: str) -> str:
    """A device name as CNN Lab writes it ("/GPU:0"), from any of TensorFlow's spellings ("/device:gpu:0",
    "gpu:0"); anything else is a one-line ValueError."""
    found = _NAME.match(str(name).strip())
    if found is None:
        raise ValueError(
            "A device name must be a CPU or GPU and its number, such as /GPU:0 or /CPU:1 (see the README's "
            f"Several GPUs). Received: device={name!r}"
        )
    return f"/{found.group(1).upper()}:{int(found.group(2))}"


def per_device_batch(batch_size: int, num_devices: int) -> int:
    """What each of `num_devices` devices computes of a batch; refused when the batch does not split evenly."""
    if num_devices < 1 or batch_size % num_devices:
        lower = batch_size - batch_size % max(num_devices, 1)
        raise ValueError(
            f"A batch of {batch_size} images does not split evenly over {num_devices} devices; choose a batch size "
            f"that is a multiple of {num_devices} (such as {max(lower, num_devices)}), or train on fewer devices "
            f"(CNNLAB_DEVICES, or CUDA_VISIBLE_DEVICES). Received: batch_size={batch_size}"
        )
    return batch_size // num_devices


def choose_devices(batch_size: int, requested: tuple[str, ...] = ()) -> Devices:
    """The devices a training with batches of `batch_size` runs on here (this starts TensorFlow's devices).

    Without `requested`: every local GPU, mirrored when there are two or more; else the CPU. With
    `requested` (device names), those devices, which must exist here; a name that does not, or a
    batch that does not split evenly over them, is a one-line ValueError.
    """
    import tensorflow as tf

    present = [short_name(d.name) for d in tf.config.list_logical_devices() if d.device_type in ("CPU", "GPU")]
    names = tuple(dict.fromkeys(short_name(n) for n in requested))
    missing = [n for n in names if n not in present]
    if missing:
        raise ValueError(
            f"Device {missing[0]} is not on this machine, which has {', '.join(present)}; name devices from that "
            f"list in CNNLAB_DEVICES, or leave it unset to train on every GPU. Received: devices={list(requested)}"
        )
    if not names:
        names = tuple(n for n in present if n.startswith("/GPU:")) or ("/CPU:0",)
    strategy = "MirroredStrategy" if len(names) > 1 else "OneDeviceStrategy" if requested else "default"
    return Devices(names, strategy, batch_size, per_device_batch(batch_size, len(names)))


def strategy_for(devices: Devices | None):
    """A `tf.distribute` strategy for `devices`: build and compile the model and its optimizer in its
    `scope()`; Keras then distributes `fit`, `evaluate` and `predict` over it. None: the default strategy."""
    import tensorflow as tf

    if devices is None or devices.strategy == "default":
        return tf.distribute.get_strategy()
    if devices.strategy == "OneDeviceStrategy":
        return tf.distribute.OneDeviceStrategy(devices.names[0])
    return tf.distribute.MirroredStrategy(devices=list(devices.names))
