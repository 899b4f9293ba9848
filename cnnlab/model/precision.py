"""Training precision: which Keras dtype policy a training uses, what `auto` picks here, and why.

Mixed precision computes in 16 bits and keeps the weights in float32. It only pays where the
hardware does 16-bit arithmetic natively: bfloat16 dot products on recent CPUs (AVX512_BF16 or
AMX on x86, BF16 on Arm), float16 tensor cores on GPUs. Elsewhere it is emulated and slower.
Whatever the training precision, models are saved, evaluated and exported in float32
(`float32_copy`), so nothing downstream depends on it.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import asdict, dataclass

from cnnlab.common.checks import check_choice
from cnnlab.model.config import POLICIES

PRECISIONS = ("auto", *POLICIES)
# CPU feature flags that mean native bfloat16 dot products: x86 (/proc/cpuinfo `flags`) and Arm (`Features`).
BF16_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")
# Measured by bench/bench_precision.py (bench/README.md): on the sample and two generated datasets,
# three seeds each, mixed_bfloat16 kept the default model's test accuracy within seed noise of float32.
AUTO_USES_BFLOAT16 = True


@dataclass(frozen=True)
class Hardware:
    """What training can run on: the CPU (model name, cores, feature flags) and any GPUs by name."""

    cpu: str
    cores: int
    cpu_flags: frozenset[str]
    gpus: tuple[str, ...] = ()

    @property
    def bf16_flags(self) -> list[str]:
        """The CPU's native-bfloat16 feature flags (empty when it has none)."""
        return [flag for flag in BF16_FLAGS if flag in self.cpu_flags]

    @property
    def device(self) -> str:
        """Where training runs, for people: the GPU when there is one, else the CPU."""
        if self.gpus:
            more = f" (+{len(self.gpus) - 1} more)" if len(self.gpus) > 1 else ""
            return f"GPU: {self.gpus[0]}{more}"
        return f"CPU: {self.cpu}, {self.cores} cores"


@dataclass(frozen=True)
class Precision:
    """The policy a training uses (never "auto"), what was asked for, why, and the device."""

    policy: str
    requested: str
    reason: str
    device: str

    def to_dict(self) -> dict[str, str]:
        """JSON-ready fields (recorded in the run)."""
        return asdict(self)

    def describe(self) -> str:
        """Where and in what precision a training runs, and why, in one line."""
        return f"Training on {self.device} in {self.policy}" + (f" ({self.reason})" if self.reason else "")


def read_cpuinfo(text: str) -> tuple[str, frozenset[str]]:
    """The CPU model name and feature flags from the text of /proc/cpuinfo (x86 or Arm)."""
    name, flags = "", frozenset[str]()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "cpu model", "hardware") and not name:
            name = value.strip()
        elif key in ("flags", "features") and not flags:
            flags = frozenset(value.split())
    return name, flags


def detect_hardware() -> Hardware:
    """This machine's CPU (from /proc/cpuinfo where there is one) and the GPUs TensorFlow sees."""
    import platform

    import tensorflow as tf

    text = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
        text = info.read()
    name, flags = read_cpuinfo(text)
    gpus = tuple(
        tf.config.experimental.get_device_details(gpu).get("device_name", gpu.name)
        for gpu in tf.config.list_physical_devices("GPU")
    )
    return Hardware(name or platform.processor() or platform.machine(), os.cpu_count() or 1, flags, gpus)


def choose_precision(requested: str = "auto", hardware: Hardware | None = None) -> Precision:
    """Resolve `requested` (one of PRECISIONS) to a Keras policy for `hardware` (default: detected).

    `auto` picks mixed_bfloat16 on a CPU with native bfloat16 instructions, float32 otherwise,
    on a GPU too: measured on an H100, CNN Lab's models trained no faster in mixed precision. An explicit choice is kept, with a warning in `reason`
    when this hardware would only emulate it.
    """
    check_choice("precision", requested, PRECISIONS)
    hardware = hardware or detect_hardware()
    policy, reason = _auto(hardware) if requested == "auto" else (requested, _explicit(requested, hardware))
    return Precision(policy, requested, reason, hardware.device)


def _auto(hardware: Hardware) -> tuple[str, str]:
    if hardware.gpus:
        return "float32", (
            "auto: float32 on a GPU; CNN Lab's models are too small to gain from mixed precision there "
            "(0.93x to 1.07x the speed on an H100, bench/README.md)"
        )
    flags = ", ".join(hardware.bf16_flags)
    if flags and AUTO_USES_BFLOAT16:
        return "mixed_bfloat16", (
            f"auto: this CPU has native bfloat16 instructions ({flags}); about 2x faster than float32 here "
            "with test accuracy within seed noise (bench/README.md)"
        )
    if flags:
        return "float32", f"auto: float32; this CPU has bfloat16 ({flags}) but it cost accuracy in our measurements"
    return (
        "float32",
        "auto: this CPU has no native bfloat16 instructions, so 16-bit compute would be emulated and slower",
    )


def _explicit(policy: str, hardware: Hardware) -> str:
    if policy == "mixed_float16" and not hardware.gpus:
        return "chosen; without a GPU float16 is emulated and slow (mixed_bfloat16 is the CPU's 16-bit mode)"
    if policy == "mixed_bfloat16" and not hardware.gpus and not hardware.bf16_flags:
        return "chosen; this CPU has no native bfloat16 instructions, so expect it to be slower than float32"
    return "chosen"


def float32_copy(model):
    """`model` itself when it computes in float32, else a float32 copy with the same weights.

    Saved, evaluated and exported models are float32 whatever the training precision, so they
    load and predict anywhere float32 is expected (TFLite included). The copy has no optimizer.
    """
    import keras

    if all(layer.dtype_policy.name == "float32" for layer in _all_layers(model)):
        return model

    def as_float32(layer):
        if getattr(layer, "dtype_policy", None) is None or layer.dtype_policy.name == "float32":
            # Already float32 (a backbone's layers, and the operations its graph calls, such as
            # Add, which cannot be rebuilt from a config with a dtype): shared, not rebuilt.
            return layer
        config = layer.get_config()
        config["dtype"] = "float32"
        return layer.__class__.from_config(config)

    copy = keras.models.clone_model(model, clone_function=as_float32, recursive=True)
    copy.set_weights(model.get_weights())
    return copy


def _all_layers(model) -> list:
    """Every layer, those inside nested models (a backbone) included."""
    found = []
    for layer in model.layers:
        found.append(layer)
        if hasattr(layer, "layers"):
            found.extend(_all_layers(layer))
    return found
