"""Sidebar widget groups for the model and training configs; each returns the chosen config.

Every widget keeps its value for the whole session (`kept`), so a visit to another page does
not reset the settings a user made, and the server remembers them per person, so a reload
does not either.
"""

from __future__ import annotations

import math
from typing import Literal, TypedDict

import streamlit as st

from cnnlab.data.images import COLOR_MODES, RESIZE_MODES
from cnnlab.data.imbalance import CLASS_WEIGHTS
from cnnlab.model import FLIPS, HEADS, OPTIMIZERS, POOLINGS, ModelConfig, backbones
from cnnlab.model.augment import DEFAULT_PRESET, PRESETS
from cnnlab.model.precision import PRECISIONS
from cnnlab.training.engine import TrainConfig
from cnnlab.training.schedules import LR_SCHEDULES
from cnnlab_ui.state import remember_settings, restore_setting

IMAGE_SIZES = [32, 48, 64, 96, 128, 160, 224]
BACKBONE_SIZES = backbones.accepted_sizes([32, 64, 96, 128, 160, 192, 224, 256])
WEIGHT_SOURCES = {"imagenet": "ImageNet (downloaded once)", "none": "Random (no download)", "file": "A weights file"}
LEARNING_RATES = [1e-5, 3e-5, 1e-4, 2e-4, 3e-4, 5e-4, 1e-3, 2e-3, 3e-3, 5e-3, 1e-2, 2e-2, 3e-2, 5e-2, 1e-1]


class Kept(TypedDict):
    """Keyword arguments that name a widget and keep its value for the session."""

    key: str
    persist_state: Literal["session"]


def kept(key: str) -> Kept:
    """A widget's key, keeping its value for the session when the user moves to another page and
    restoring the person's last value after a reload."""
    restore_setting(key)
    return {"key": key, "persist_state": "session"}


def model_config_sidebar(default: ModelConfig = ModelConfig(), allow_weights_file: bool = True) -> ModelConfig:
    """Widgets for every ModelConfig field, grouped as a person thinks about them.

    With a pretrained backbone its own settings replace the conv-block widgets; a weights file on
    the server can be named only where `allow_weights_file` (never on a hosted demo).
    """
    sb = st.sidebar
    sb.header("Model")
    backbone = sb.selectbox(
        "Backbone",
        backbones.BACKBONE_NAMES,
        index=backbones.BACKBONE_NAMES.index(default.backbone),
        format_func=lambda name: backbones.BACKBONES[name].title if name in backbones.BACKBONES else "None: my own CNN",
        **kept("backbone"),
        help="a pretrained keras.applications network under a new head, or the conv-block CNN you design below",
    )
    uses_backbone = backbone != backbones.NO_BACKBONE
    design = _backbone_widgets(sb, allow_weights_file) if uses_backbone else _conv_block_widgets(sb, default)
    color_mode = sb.radio(
        "Colour mode",
        COLOR_MODES,
        index=COLOR_MODES.index(default.color_mode),
        horizontal=True,
        disabled=uses_backbone,
        **kept("color_mode"),
        help="backbones take colour images; grayscale ones are loaded as RGB",
    )
    resize_mode = choice(
        "Resize",
        RESIZE_MODES,
        default.resize_mode,
        "resize_mode",
        "stretch to the size, centre-crop, or pad with white",
    )
    dropout = sb.slider("Dropout", 0.0, 0.8, default.dropout, 0.05, **kept("dropout"))
    dense_units = sb.select_slider(
        "Dense units (0 = none)", [0, 16, 32, 64, 128, 256, 512], value=default.dense_units, **kept("dense_units")
    )
    with sb.expander("Augmentation"):
        augmentation_presets()
        flip = st.selectbox("Random flip", FLIPS, index=FLIPS.index(default.flip), **kept("flip"))
        rotation = st.slider("Rotation (fraction of a turn)", 0.0, 0.5, default.rotation, 0.05, **kept("rotation"))
        zoom = st.slider("Zoom", 0.0, 0.5, default.zoom, 0.05, **kept("zoom"))
        translation = st.slider("Translation", 0.0, 0.5, default.translation, 0.05, **kept("translation"))
        contrast = st.slider("Contrast", 0.0, 0.5, default.contrast, 0.05, **kept("contrast"))
        chosen = {"flip": flip, "rotation": rotation, "zoom": zoom, "translation": translation, "contrast": contrast}
        if chosen != PRESETS[st.session_state.augmentation_preset].values:
            st.caption("Changed by hand from the preset.")
    optimizer = sb.radio(
        "Optimizer", OPTIMIZERS, index=OPTIMIZERS.index(default.optimizer), horizontal=True, **kept("optimizer")
    )
    learning_rate = sb.select_slider(
        "Learning rate",
        LEARNING_RATES,
        value=default.learning_rate,
        format_func=lambda v: f"{v:g}",
        **kept("learning_rate"),
    )
    remember_settings()
    return ModelConfig(
        **design,
        backbone=backbone,
        color_mode="rgb" if uses_backbone else color_mode,
        resize_mode=resize_mode,
        dropout=dropout,
        dense_units=dense_units,
        flip=flip,
        rotation=rotation,
        zoom=zoom,
        contrast=contrast,
        translation=translation,
        optimizer=optimizer,
        learning_rate=learning_rate,
    )


def _conv_block_widgets(sb, default: ModelConfig) -> dict:
    """The image size and the conv-block CNN's own design."""
    side = sb.select_slider("Image size (pixels)", IMAGE_SIZES, value=default.image_size[0], **kept("image_size"))
    conv_blocks = sb.slider(
        "Conv blocks",
        1,
        5,
        default.conv_blocks,
        **kept("conv_blocks"),
        help="each block: Conv2D, optional batch norm, ReLU, pooling",
    )
    filters = sb.select_slider(
        "Filters in the first block", [4, 8, 16, 32, 64, 128], value=default.filters, **kept("filters")
    )
    filters_growth = sb.select_slider(
        "Filter growth per block", [1.0, 1.5, 2.0], value=default.filters_growth, **kept("filters_growth")
    )
    kernel_size = sb.select_slider("Kernel size", [1, 3, 5, 7], value=default.kernel_size, **kept("kernel_size"))
    pooling = sb.radio("Pooling", POOLINGS, index=POOLINGS.index(default.pooling), horizontal=True, **kept("pooling"))
    batch_norm = sb.toggle("Batch normalisation", default.batch_norm, **kept("batch_norm"))
    head = sb.radio("Head", HEADS, index=HEADS.index(default.head), horizontal=True, **kept("head"))
    return {
        "image_size": (side, side),
        "conv_blocks": conv_blocks,
        "filters": filters,
        "filters_growth": filters_growth,
        "kernel_size": kernel_size,
        "pooling": pooling,
        "batch_norm": batch_norm,
        "head": head,
    }


def _backbone_widgets(sb, allow_weights_file: bool) -> dict:
    """The image sizes a backbone accepts and where its weights come from."""
    side = sb.select_slider(
        "Image size (pixels)",
        BACKBONE_SIZES,
        value=backbones.RECOMMENDED_SIZE,
        **kept("backbone_image_size"),
        help=f"a backbone takes {backbones.MIN_SIZE} pixels or more; its ImageNet weights were trained at "
        f"{backbones.RECOMMENDED_SIZE}, which Keras recommends (smaller trains faster)",
    )
    sources = [key for key in WEIGHT_SOURCES if allow_weights_file or key != "file"]
    source = sb.radio("Backbone weights", sources, format_func=WEIGHT_SOURCES.get, **kept("weights_source"))
    weights = source
    if source == "file":
        weights = sb.text_input(
            "Weights file on this machine (.h5)",
            **kept("weights_path"),
            help="e.g. saved with backbone.save_weights(...), for machines without internet",
        ).strip()
    sb.caption("The backbone is frozen while the new head trains; fine-tuning is under Training.")
    return {"image_size": (side, side), "backbone_weights": weights}


def choice(label: str, options: tuple[str, ...], value: str, key: str, help: str) -> str:
    """A horizontal sidebar radio over `options`, starting at `value`, kept for the session."""
    return st.sidebar.radio(label, options, index=options.index(value), horizontal=True, help=help, **kept(key))


def augmentation_presets() -> None:
    """A preset picker that fills in the augmentation widgets below it, with when the preset is safe."""

    def apply() -> None:
        st.session_state.update(PRESETS[st.session_state.augmentation_preset].values)

    names = list(PRESETS)
    name = st.selectbox(
        "Preset", names, index=names.index(DEFAULT_PRESET), on_change=apply, **kept("augmentation_preset")
    )
    st.caption(PRESETS[name].when)


def use_learning_rate(rate: float) -> None:
    """Set the sidebar's learning rate to the listed value nearest `rate` (on a log scale)."""
    st.session_state.learning_rate = min(LEARNING_RATES, key=lambda v: abs(math.log(v / rate)))


def train_config_sidebar(default: TrainConfig = TrainConfig(), backbone: str = backbones.NO_BACKBONE) -> TrainConfig:
    """Widgets for every TrainConfig field (fine-tuning ones only for a `backbone`)."""
    sb = st.sidebar
    sb.header("Training")
    epochs = sb.number_input("Epochs", 1, 200, default.epochs, **kept("epochs"))
    fine_tune_layers, fine_tune_epochs = default.fine_tune_layers, default.fine_tune_epochs
    if backbone != backbones.NO_BACKBONE:
        fine_tune_layers = sb.number_input(
            "Fine-tune the top layers (0 = off)",
            0,
            300,
            default.fine_tune_layers,
            **kept("fine_tune_layers"),
            help="after the head's epochs, these top backbone layers train too (batch norm stays frozen)",
        )
        fine_tune_epochs = sb.number_input(
            "Fine-tuning epochs",
            0,
            200,
            default.fine_tune_epochs,
            **kept("fine_tune_epochs"),
            help="at a tenth of the learning rate",
        )

    batch_size = sb.select_slider("Batch size", [8, 16, 32, 64, 128], value=default.batch_size, **kept("batch_size"))
    patience = sb.number_input(
        "Early-stopping patience (0 = off)",
        0,
        50,
        default.patience,
        **kept("patience"),
        help="stop when validation loss has not improved for this many epochs",
    )
    seed = sb.number_input("Seed", 0, 2**31 - 1, default.seed, **kept("seed"))
    validation_split = sb.slider(
        "Validation split", 0.05, 0.4, default.validation_split, 0.05, **kept("validation_split")
    )
    test_split = sb.slider("Test split", 0.05, 0.4, default.test_split, 0.05, **kept("test_split"))
    class_weight = choice(
        "Class weights",
        CLASS_WEIGHTS,
        default.class_weight,
        "class_weight",
        "auto: weight classes inversely to their size when the largest has over 1.5x the images of the smallest",
    )
    lr_schedule = choice(
        "Learning-rate schedule",
        LR_SCHEDULES,
        default.lr_schedule,
        "lr_schedule",
        "reduce_on_plateau halves the rate after 2 epochs without a better validation loss; "
        "cosine decays it smoothly towards zero by the last epoch",
    )
    precision = sb.selectbox(
        "Precision",
        PRECISIONS,
        index=PRECISIONS.index(default.precision),
        **kept("precision"),
        help="auto: 16-bit compute where the hardware has it (bfloat16 CPUs, GPUs), else float32; "
        "saved models are float32 either way",
    )
    remember_settings()
    return TrainConfig(
        epochs=int(epochs),
        batch_size=batch_size,
        patience=int(patience),
        seed=int(seed),
        validation_split=validation_split,
        test_split=test_split,
        class_weight=class_weight,
        lr_schedule=lr_schedule,
        precision=precision,
        fine_tune_layers=int(fine_tune_layers),
        fine_tune_epochs=int(fine_tune_epochs),
    )
