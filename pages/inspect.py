"""Inspect: inside the network for one image, layer by layer, and what each channel responds to."""

import numpy as np
import streamlit as st

from cnnlab import charts
from cnnlab.analysis import inspect
from cnnlab.analysis.evaluate import run_report
from cnnlab.analysis.receptive_field import receptive_field
from cnnlab.analysis.top_activating import TopImages, top_images
from cnnlab.charts import grids
from cnnlab.data.images import SUPPORTED_EXTENSIONS, load_array
from cnnlab.runs.store import Run
from cnnlab.settings import check_upload_size
from cnnlab_ui.loaders import run_model
from cnnlab_ui.messages import show_error
from cnnlab_ui.runs import run_picker
from cnnlab_ui.shell import require_app_shell
from cnnlab_ui.state import settings, store

require_app_shell()

DATASET, UPLOAD = "The run's dataset", "Upload"


@st.cache_data(max_entries=32, show_spinner=False)
def layers_of(run_id: str, stamp: float, _model) -> list[inspect.InspectLayer]:
    """The run's inspectable layers (cached per model file)."""
    return inspect.list_layers(_model)


@st.cache_data(max_entries=16, show_spinner="Running the image through the network...")
def maps_of(run_id: str, stamp: float, image: np.ndarray, layer: str, _model) -> list[inspect.FeatureMap]:
    """The image as the model sees it and one layer's feature maps (a backbone's every layer would fill memory)."""
    return inspect.feature_maps(_model, image, [layer])


@st.cache_data(max_entries=64, show_spinner="Finding the training images that excite this channel most...")
def top_of(run_id: str, stamp: float, layer: str, channel: int, _model) -> TopImages:
    """The top 9 training images; the pass over the training split is cached on disk per layer."""
    return top_images(store().get(run_id), _model, layer, channel, cache=settings().cache_dir)


@st.cache_data(max_entries=64, show_spinner="Synthesising the pattern by gradient ascent...")
def ascent_of(run_id: str, stamp: float, layer: str, channel: int, _model) -> inspect.Ascent:
    """The input gradient ascent makes for one channel."""
    return inspect.gradient_ascent(_model, layer, channel)


def image_picker(run: Run) -> tuple[str, bytes] | None:
    """An image from the run's dataset, by class, or an upload; returns (name, encoded bytes)."""
    root = run.dataset_root(settings().cache_dir)
    has_data = root.is_dir()
    source = st.radio("Image from", [DATASET, UPLOAD] if has_data else [UPLOAD], horizontal=True, key="source")
    if source == UPLOAD:
        types = sorted(e.lstrip(".") for e in SUPPORTED_EXTENSIONS)
        upload = st.file_uploader("Image", type=types, max_upload_size=settings().max_upload_mb)
        if upload is not None:
            check_upload_size(upload.name, upload.size, settings())
        return (upload.name, upload.getvalue()) if upload is not None else None
    report = run_report(run, settings().cache_dir)  # its dataset version, added images included
    left, right = st.columns(2)
    label = left.selectbox("Class", report.class_names)
    files = [f for f, i in zip(report.files, report.labels, strict=True) if report.class_names[i] == label]
    number = right.number_input(f"Image (1 to {len(files)})", 1, len(files), 1, key=f"image-{label}")
    return files[number - 1], report.path_of(files[number - 1]).read_bytes()


def shown(image: np.ndarray) -> np.ndarray:
    """A uint8 image as st.image takes it (grayscale without its channel axis)."""
    return image[..., 0] if image.shape[-1] == 1 else image


st.title("Inspect")
run = run_picker()
config = run.model_config()
try:
    model = run_model(run)
    stamp = run.model_path.stat().st_mtime
    picked = image_picker(run)
    if picked is None:
        st.info("Upload an image to look inside the network with it.")
        st.stop()
    name, encoded = picked
    image = load_array(encoded, config.image_size, config.color_mode, config.resize_mode, name=name)
except ValueError as exc:
    show_error(exc)
    st.stop()

layers = {layer.name: layer for layer in layers_of(run.id, stamp, model)}
chosen = st.selectbox(
    "Layer",
    list(layers),
    key="layer",
    format_func=lambda n: f"{layers[n].block} · {n} ({layers[n].kind}, {'x'.join(map(str, layers[n].output_shape))})",
)
layer = layers[chosen]
view_map, layer_map = maps_of(run.id, stamp, image, layer.name, model)
values = layer_map.values
st.plotly_chart(charts.feature_maps_figure(values, layer.name), key="feature-maps")
st.caption("Channel 0 is at the top left, then row by row: hover over a map for its channel and values.")

channel = int(st.number_input("Channel", 0, layer.channels - 1, 0, key=f"channel-{layer.name}"))
unit = inspect.strongest_unit(values[..., channel])
box = receptive_field(model, layer.name, *unit)
view = grids.view_to_uint8(view_map.values)
title = f"{layer.name} channel {channel}, its strongest unit and the input pixels it sees"
st.plotly_chart(
    charts.channel_figure(view, values[..., channel], (box.top, box.left, box.bottom, box.right), unit, title),
    key="channel",
)

st.subheader("Learned filters")
if layer.kind != "conv":
    st.caption(f"{layer.name} is a {layer.kind} layer with no weights of its own: choose a conv layer to see filters.")
else:
    weights = inspect.kernel(model, layer.name)
    if weights.shape[2] in (1, 3):  # a first layer: one RGB or grey patch per filter
        figure = charts.filters_figure(grids.filter_patches(weights), layer.name)
    else:
        figure = charts.kernels_figure(weights, channel, layer.name)
    st.plotly_chart(figure, key="filters")

st.subheader(f"What channel {channel} of {layer.name} responds to")
left, right = st.columns([3, 1])
try:
    top = top_of(run.id, stamp, layer.name, channel, model)
    left.markdown("**The training images that excite it most** (mean activation over the map)")
    captions = [f"{label}: {score:.3g}" for label, score in zip(top.labels, top.scores, strict=True)]
    left.image([shown(i) for i in top.images], caption=captions, width=96)
    if not top.scores.max() > 0 and layer.kind != "conv":
        left.caption("It stays at zero on every training image: a 'dead' unit the network never uses.")
except ValueError as exc:
    with left:
        show_error(exc)
ascent = ascent_of(run.id, stamp, layer.name, channel, model)
right.markdown("**The pattern it responds to** (gradient ascent from grey noise)")
right.image(shown(ascent.image), caption=f"after {len(ascent.history)} gradient steps", width="stretch")
right.metric(
    "Mean activation reached",
    f"{ascent.end_activation:.3g}",
    f"{ascent.end_activation - ascent.start_activation:+.3g} from grey noise",
)
