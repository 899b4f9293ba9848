"""The model's configuration: a flat, validated `ModelConfig` and the choices its fields take."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from cnnlab.common.checks import check_choice, check_image_size, check_range
from cnnlab.data.images import COLOR_MODES, RESIZE_MODES
from cnnlab.model import backbones
from cnnlab.model.backbones import BACKBONE_NAMES, NO_BACKBONE

POOLINGS = ("max", "average")
HEADS = ("global_average", "flatten")
FLIPS = ("none", "horizontal", "vertical", "horizontal_and_vertical")
OPTIMIZERS = ("adam", "sgd", "rmsprop")
# Keras dtype policies a model can be built with (cnnlab.model.precision resolves "auto" to one of them).
POLICIES = ("float32", "mixed_bfloat16", "mixed_float16")


@dataclass(frozen=True)
class ModelConfig:
    """Everything that shapes the network and its input; saved with every run.

    Defaults: three conv blocks (32, 64, 128 filters), a flattened head with dense 128, measured by
    `bench/bench_sample.py` to beat 95% test accuracy on the built-in sample in ten epochs, and
    label-safe augmentation: small shifts, zoom and contrast, never a flip or a rotation, which
    turn arrows, letters or road signs into other classes (`bench/bench_augment.py`). The small
    changes lifted the sample's accuracy and cost nothing on the generated datasets; the presets
    in `cnnlab.model.augment` switch on flips and rotation where they are safe. Batch normalisation is off by default because with Keras's default
    momentum its moving statistics lag behind on small datasets and validation accuracy swings
    from epoch to epoch; the classic two-block recipe is `conv_blocks=2`.

    `backbone` other than "none" replaces the conv blocks with a pretrained `keras.applications`
    network (`backbone_weights`: "imagenet", "none" for random, or a weights file's path) under a
    new head (global average pooling, `dropout`, `dense_units`); the conv-block fields and `head`
    are then unused. Backbones take RGB images of at least 32 pixels (224 is what ImageNet
    weights were trained at).
    """

    image_size: tuple[int, int] = (64, 64)
    color_mode: str = "rgb"
    resize_mode: str = "stretch"
    backbone: str = NO_BACKBONE
    backbone_weights: str = backbones.IMAGENET
    conv_blocks: int = 3
    filters: int = 32
    filters_growth: float = 2.0
    kernel_size: int = 3
    pooling: str = "max"
    batch_norm: bool = False
    head: str = "flatten"
    dropout: float = 0.3
    dense_units: int = 128
    flip: str = "none"
    rotation: float = 0.0
    zoom: float = 0.1
    contrast: float = 0.1
    translation: float = 0.05
    optimizer: str = "adam"
    learning_rate: float = 1e-3

    def __post_init__(self) -> None:
        object.__setattr__(self, "image_size", check_image_size(self.image_size))
        for name, choices in (
            ("color_mode", COLOR_MODES),
            ("resize_mode", RESIZE_MODES),
            ("backbone", BACKBONE_NAMES),
            ("pooling", POOLINGS),
            ("head", HEADS),
            ("flip", FLIPS),
            ("optimizer", OPTIMIZERS),
        ):
            check_choice(name, getattr(self, name), choices)
        check_range("conv_blocks", self.conv_blocks, 1, 6, int)
        check_range("filters", self.filters, 1, 512, int)
        check_range("filters_growth", self.filters_growth, 1.0, 4.0, float)
        check_range("kernel_size", self.kernel_size, 1, 11, int)
        check_range("dense_units", self.dense_units, 0, 4096, int)
        check_range("dropout", self.dropout, 0.0, 0.9, float)
        for name in ("rotation", "zoom", "contrast", "translation"):
            check_range(name, getattr(self, name), 0.0, 0.5, float)
        check_range("learning_rate", self.learning_rate, 1e-6, 1.0, float)
        if not isinstance(self.batch_norm, bool):
            raise ValueError(f"batch_norm must be True or False. Received: batch_norm={self.batch_norm!r}")
        backbones.check_weights(self.backbone_weights)
        if self.backbone != NO_BACKBONE:
            self._check_backbone_input()
        elif min(self.image_size) // 2**self.conv_blocks < 1:
            raise ValueError(
                f"{self.conv_blocks} pooling blocks shrink a {self.image_size[0]}x{self.image_size[1]} image "
                f"to nothing; use fewer conv blocks or a larger image size. Received: conv_blocks={self.conv_blocks}"
            )

    def _check_backbone_input(self) -> None:
        if self.color_mode != "rgb":
            raise ValueError(
                f"The {self.backbone} backbone was made for colour images; set color_mode to 'rgb' (grayscale "
                f"images are then loaded as RGB). Received: color_mode={self.color_mode!r}"
            )
        if min(self.image_size) < backbones.MIN_SIZE:
            raise ValueError(
                f"The {self.backbone} backbone needs images of at least {backbones.MIN_SIZE}x{backbones.MIN_SIZE} "
                f"pixels ({backbones.RECOMMENDED_SIZE} is what its ImageNet weights were trained at). "
                f"Received: image_size={self.image_size[0]}x{self.image_size[1]}"
            )

    @property
    def channels(self) -> int:
        """Input channels: 3 for RGB, 1 for grayscale."""
        return 3 if self.color_mode == "rgb" else 1

    def block_filters(self) -> list[int]:
        """Filters of each conv block: `filters` growing by `filters_growth` per block."""
        return [int(round(self.filters * self.filters_growth**i)) for i in range(self.conv_blocks)]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        data = asdict(self)
        data["image_size"] = list(self.image_size)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Rebuild from `to_dict` output, ignoring unknown keys from other versions."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})
