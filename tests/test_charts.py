"""Chart functions: assert on the figure data (trace types, values, ordering), not on pixels."""

import subprocess
import sys

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio
import pytest

from cnnlab import charts


def _history(n: int) -> list[dict]:
    return [
        {"epoch": e, "loss": 1.0 / e, "accuracy": 0.5 + e / 100, "val_loss": 1.2 / e, "val_accuracy": 0.45 + e / 100}
        for e in range(1, n + 1)
    ]


def test_charts_module_does_not_import_tensorflow_or_streamlit():
    code = (
        "import sys, cnnlab.charts; print(sorted(m for m in ('tensorflow', 'keras', 'streamlit') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_every_figure_uses_the_house_template():
    figures = [
        charts.class_counts_figure({"a": 1}),
        charts.image_sizes_figure([10], [20]),
        charts.history_figure(_history(2), "loss"),
        charts.training_curves_figure(_history(2)),
        charts.confusion_figure(np.eye(2, dtype=int), ["a", "b"]),
        charts.probabilities_figure(["a", "b"], [0.3, 0.7]),
        charts.compare_figure({"r": _history(2)}, "accuracy"),
        charts.parallel_coordinates_figure(pd.DataFrame({"p": [1, 2], "v": [0.1, 0.2]}), ["p"], "v"),
        charts.sweep_figure(pd.DataFrame({"number": [0], "value": [0.5], "state": ["COMPLETE"]}), "v", "maximize"),
        charts.importance_figure({"p": 1.0}),
        charts.lr_find_figure([1e-4, 1e-3, 1e-2], [2.0, 1.0, 3.0], 1e-3),
        charts.learning_rate_figure(_history(2)),
        charts.feature_maps_figure(np.ones((2, 2, 3)), "conv_1"),
        charts.channel_figure(np.zeros((4, 4, 3), np.uint8), np.ones((2, 2)), (0, 0, 2, 2), (0, 0), "t"),
        charts.filters_figure(np.full((2, 3, 3, 3), 0.5), "conv_1"),
        charts.kernels_figure(np.ones((3, 3, 4, 2)), 0, "conv_2"),
    ]
    for fig in figures:
        assert isinstance(fig, go.Figure)
        assert fig.layout.title.text
        assert fig.layout.template == pio.templates[charts.TEMPLATE]


def test_class_counts_bars_keep_class_order():
    fig = charts.class_counts_figure({"zebra": 3, "ant": 5})
    (bar,) = fig.data
    assert bar.type == "bar"
    assert list(bar.x) == ["zebra", "ant"] and list(bar.y) == [3, 5]
    assert fig.layout.yaxis.title.text == "Images"


def test_class_counts_rejects_negative_counts():
    with pytest.raises(ValueError, match=r"non-negative int. Received: counts\['a'\]=-1"):
        charts.class_counts_figure({"a": -1})


def test_image_sizes_group_identical_sizes():
    fig = charts.image_sizes_figure([640, 640, 320], [480, 480, 240])
    (scatter,) = fig.data
    assert scatter.type == "scatter"
    points = sorted(zip(scatter.x, scatter.y, scatter.customdata, strict=True))
    assert points == [(320, 240, 1), (640, 480, 2)]
    assert fig.layout.xaxis.title.text == "Width (px)" and fig.layout.yaxis.title.text == "Height (px)"


def test_image_sizes_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="equally long.*Received: len\\(widths\\)=2, len\\(heights\\)=1"):
        charts.image_sizes_figure([1, 2], [3])


@pytest.mark.parametrize("metric", ["loss", "accuracy"])
def test_history_has_training_and_validation_lines(metric):
    fig = charts.history_figure(_history(3), metric)
    training, validation = fig.data
    assert training.name == "Training" and validation.name == "Validation"
    assert training.mode == validation.mode == "lines+markers"
    assert list(training.x) == [1, 2, 3]
    assert list(validation.y) == [row[f"val_{metric}"] for row in _history(3)]


@pytest.mark.parametrize("rows", [0, 1])
def test_history_works_with_zero_or_one_rows(rows):
    fig = charts.history_figure(_history(rows), "accuracy")
    assert [len(trace.x) for trace in fig.data] == [rows, rows]
    assert fig.layout.yaxis.tickformat == ".0%"


def test_history_skips_missing_values():
    rows = [
        {"epoch": 1, "loss": 0.9},
        {"epoch": 2, "loss": 0.7, "val_loss": float("nan")},
        {"epoch": 3, "loss": 0.5, "val_loss": 0.6},
    ]
    training, validation = charts.history_figure(rows, "loss").data
    assert list(training.x) == [1, 2, 3] and list(validation.x) == [3]


def test_history_rejects_other_metrics():
    with pytest.raises(ValueError, match="Received: metric='f1'"):
        charts.history_figure(_history(1), "f1")


def test_confusion_is_a_clickable_scatter_over_a_heatmap_with_cell_indices():
    matrix = np.array([[5, 1, 0], [2, 7, 1], [0, 0, 9]])
    names = ["cat", "dog", "fox"]
    fig = charts.confusion_figure(matrix, names)
    cells, colours = fig.data
    assert cells.type == "scatter" and cells.marker.symbol == "square" and cells.marker.opacity == 0
    assert colours.type == "heatmap" and colours.hoverinfo == "skip"
    assert np.array_equal(np.asarray(colours.z), matrix) and list(colours.x) == names == list(colours.y)
    assert len(cells.x) == 9
    # Cells are in row-major order: the selection's point index gives the clicked cell.
    for point_index, (x, y, color) in enumerate(zip(cells.x, cells.y, cells.marker.color, strict=True)):
        true_index, predicted_index = divmod(point_index, len(names))
        assert y == names[true_index] and x == names[predicted_index]
        assert color == matrix[true_index, predicted_index]
    assert list(cells.text[:3]) == ["5", "1", "0"]
    # True classes top to bottom, predicted classes left to right, both in class order.
    assert fig.layout.yaxis.autorange == "reversed" and list(fig.layout.yaxis.categoryarray) == names
    assert list(fig.layout.xaxis.categoryarray) == names
    assert fig.layout.xaxis.title.text == "Predicted class" and fig.layout.yaxis.title.text == "True class"
    # A few classes: a fixed, square plot area whose cells hold their hit areas.
    layout = fig.layout
    side = layout.width - layout.margin.l - layout.margin.r
    assert side == layout.height - layout.margin.t - layout.margin.b
    assert 0.8 * side / 3 < cells.marker.size < side / 3


@pytest.mark.parametrize("n", [2, 20, 21, 50, 100])
def test_confusion_stays_readable_from_2_to_100_classes(n):
    rng = np.random.default_rng(n)
    matrix = rng.integers(0, 5, (n, n)) + np.diag(rng.integers(10, 30, n))
    fig = charts.confusion_figure(matrix, [f"class_{i:03d}" for i in range(n)])
    cells = fig.data[0]
    assert len(cells.x) == n * n and fig.layout.clickmode == "event+select"
    plot_height = fig.layout.height - fig.layout.margin.t - fig.layout.margin.b
    if n <= charts.FIXED_SIZE_CLASSES:
        assert fig.layout.width is not None and cells.mode == "markers+text"
        assert fig.layout.width - fig.layout.margin.l - fig.layout.margin.r == plot_height
    else:
        # Many classes: the figure takes the page's width, its height grows with the class
        # count, counts move to the hover text and the colour bar is no taller than the matrix.
        assert fig.layout.width is None and cells.mode == "markers"
        assert plot_height >= 7 * n
        assert fig.data[1].colorbar.len <= 1.0
        assert fig.layout.xaxis.tickfont.size >= 7
    small = charts.confusion_figure(np.eye(2, dtype=int), ["a", "b"])
    assert small.layout.height < fig.layout.height or n == 2


def test_lr_find_marks_the_suggestion_on_a_log_axis():
    fig = charts.lr_find_figure([1e-5, 1e-4, 1e-3, 1e-2, 1e-1], [2.3, 2.2, 1.5, 0.9, 9.0], 1e-3)
    curve, mark = fig.data
    assert fig.layout.xaxis.type == "log" and list(curve.x) == [1e-5, 1e-4, 1e-3, 1e-2, 1e-1]
    assert list(mark.x) == [1e-3] and mark.y[0] == pytest.approx(1.5)
    # The blow-up at the end is cut off so the useful part stays readable.
    assert fig.layout.yaxis.range[1] < 9.0
    with pytest.raises(ValueError, match="Received: len\\(learning_rates\\)=2, len\\(losses\\)=1"):
        charts.lr_find_figure([1e-3, 1e-2], [1.0], 1e-3)


def test_learning_rate_figure_plots_each_epochs_rate():
    history = [{"epoch": e, "learning_rate": 1e-3 * 0.5 ** (e // 2)} for e in range(1, 5)]
    fig = charts.learning_rate_figure(history)
    assert list(fig.data[0].x) == [1, 2, 3, 4] and fig.data[0].y[-1] == pytest.approx(2.5e-4)
    assert fig.layout.yaxis.type == "log"


def test_confusion_rejects_mismatched_names():
    with pytest.raises(ValueError, match=r"square \(3, 3\).*Received: matrix.shape=\(2, 2\)"):
        charts.confusion_figure(np.eye(2), ["a", "b", "c"])


def test_probabilities_are_ranked_with_the_highest_on_top():
    fig = charts.probabilities_figure(["cat", "dog", "fox"], np.array([0.2, 0.7, 0.1]))
    (bar,) = fig.data
    assert bar.type == "bar" and bar.orientation == "h"
    assert list(bar.y) == ["dog", "cat", "fox"]
    assert list(bar.x) == [0.7, 0.2, 0.1]
    # Plotly draws the first category at the bottom unless the axis is reversed.
    assert fig.layout.yaxis.autorange == "reversed"


def test_probabilities_reject_a_length_mismatch():
    with pytest.raises(ValueError, match=r"one value per class name \(2\). Received: probabilities.shape=\(3,\)"):
        charts.probabilities_figure(["a", "b"], [0.1, 0.2, 0.7])


def test_compare_overlays_runs_in_one_colour_each():
    fig = charts.compare_figure({"run-a": _history(3), "run-b": _history(2)}, "loss")
    assert [t.name for t in fig.data] == [
        "run-a (validation)",
        "run-a (training)",
        "run-b (validation)",
        "run-b (training)",
    ]
    assert [t.line.dash for t in fig.data] == ["solid", "dash", "solid", "dash"]
    assert fig.data[0].line.color == fig.data[1].line.color != fig.data[2].line.color == fig.data[3].line.color
    assert list(fig.data[2].x) == [1, 2]


def test_compare_keeps_runs_with_the_same_name_apart():
    histories = {"20260101-aaaa": _history(3), "20260102-bbbb": _history(2), "20260103-cccc": _history(1)}
    names = {"20260101-aaaa": "baseline", "20260102-bbbb": "baseline", "20260103-cccc": "wider"}
    fig = charts.compare_figure(histories, "accuracy", names)
    assert [t.legendgroup for t in fig.data[::2]] == list(histories)
    assert [t.name for t in fig.data[::2]] == [
        "baseline · 20260101-aaaa (validation)",
        "baseline · 20260102-bbbb (validation)",
        "wider (validation)",
    ]
    assert [len(t.x) for t in fig.data[::2]] == [3, 2, 1]


def test_parallel_coordinates_codes_categories_and_colours_by_objective():
    frame = pd.DataFrame(
        {
            "learning_rate": [1e-3, 1e-2, 1e-4],
            "optimizer": ["sgd", "adam", "sgd"],
            "batch_norm": [True, False, True],
            "val_accuracy": [0.8, 0.6, None],
        }
    )
    fig = charts.parallel_coordinates_figure(frame, ["learning_rate", "optimizer", "batch_norm"], "val_accuracy")
    (parcoords,) = fig.data
    assert parcoords.type == "parcoords"
    lr, optimizer, batch_norm, objective = parcoords.dimensions
    # The trial without an objective value is left out.
    assert list(lr.values) == [1e-3, 1e-2] and lr.ticktext is None
    assert list(optimizer.ticktext) == ["adam", "sgd"] and list(optimizer.values) == [1, 0]
    assert list(optimizer.tickvals) == [0, 1]
    assert list(batch_norm.ticktext) == ["False", "True"] and list(batch_norm.values) == [1, 0]
    assert objective.label == "val_accuracy"
    assert list(parcoords.line.color) == [0.8, 0.6]


def test_parallel_coordinates_rejects_missing_columns():
    with pytest.raises(ValueError, match=r"lacks the columns \['dropout'\].*Received: frame.columns=\['v'\]"):
        charts.parallel_coordinates_figure(pd.DataFrame({"v": [1.0]}), ["dropout"], "v")


@pytest.mark.parametrize(("direction", "best"), [("maximize", [0.5, 0.7, 0.7]), ("minimize", [0.5, 0.5, 0.3])])
def test_sweep_shows_trials_and_best_so_far(direction, best):
    trials = pd.DataFrame(
        {
            "number": [2, 0, 1, 3],
            "value": [0.3, 0.5, 0.7, np.nan],
            "state": ["COMPLETE", "COMPLETE", "COMPLETE", "PRUNED"],
        }
    )
    fig = charts.sweep_figure(trials, "val_loss", direction)
    markers, line = fig.data
    assert markers.mode == "markers" and list(markers.x) == [0, 1, 2] and list(markers.y) == [0.5, 0.7, 0.3]
    assert line.mode == "lines" and list(line.y) == best
    assert fig.layout.yaxis.title.text == "val_loss"


def test_sweep_rejects_a_bad_direction():
    trials = pd.DataFrame({"number": [], "value": [], "state": []})
    with pytest.raises(ValueError, match="Received: direction='up'"):
        charts.sweep_figure(trials, "v", "up")


def test_importance_bars_most_important_on_top():
    fig = charts.importance_figure({"dropout": 0.1, "learning_rate": 0.6, "filters": 0.3})
    (bar,) = fig.data
    assert bar.orientation == "h"
    assert list(bar.y) == ["learning_rate", "filters", "dropout"]
    assert fig.layout.yaxis.autorange == "reversed"


def test_feature_maps_grid_shows_every_channel_with_its_number():
    values = np.random.default_rng(0).normal(size=(6, 5, 7)).astype(np.float32)
    fig = charts.feature_maps_figure(values, "conv_2")
    (heatmap,) = fig.data
    z, numbers = np.asarray(heatmap.z, dtype=float), np.asarray(heatmap.customdata, dtype=float)
    columns = 3  # 7 maps of 6x5 pixels, about square
    assert z.shape == (3 * 6 + 2, columns * 5 + 2)
    for channel in range(7):
        top, left = (channel // columns) * 7, (channel % columns) * 6
        np.testing.assert_array_equal(z[top : top + 6, left : left + 5], values[..., channel])
        assert set(numbers[top : top + 6, left : left + 5].ravel()) == {channel}
    assert np.isnan(z[6]).all()  # the gap between rows
    assert fig.layout.title.text == f"conv_2: output 6x5x7, values {values.min():.3g} to {values.max():.3g}"
    assert heatmap.zmid == 0.0  # signed values: diverging scale centred on zero


def test_feature_maps_grid_stops_at_128_channels_and_says_so():
    fig = charts.feature_maps_figure(np.ones((2, 2, 130), np.float32), "relu_9")
    numbers = np.asarray(fig.data[0].customdata, dtype=float)
    assert np.nanmax(numbers) == 127 and "first 128 of 130 channels" in fig.layout.title.text
    with pytest.raises(ValueError, match=r"Received: values.shape=\(4, 4\)"):
        charts.feature_maps_figure(np.ones((4, 4)), "x")


def test_channel_figure_outlines_the_receptive_field_and_the_unit():
    view = np.zeros((10, 12, 1), np.uint8)
    fig = charts.channel_figure(view, np.arange(12.0).reshape(3, 4), (2, 3, 7, 9), (1, 2), "conv_1 channel 0")
    image, heatmap = fig.data
    assert np.asarray(image.z).shape == (10, 12, 3) and np.asarray(heatmap.z).shape == (3, 4)
    field, unit = fig.layout.shapes
    assert (field.x0, field.x1, field.y0, field.y1) == (2.5, 8.5, 1.5, 6.5) and field.xref == "x"
    assert (unit.x0, unit.x1, unit.y0, unit.y1) == (1.5, 2.5, 0.5, 1.5) and unit.xref == "x2"


def test_filters_figure_tiles_rgb_patches_and_kernels_figure_one_filter():
    patches = np.random.default_rng(1).uniform(size=(4, 3, 3, 3))
    image = np.asarray(charts.filters_figure(patches, "conv_1").data[0].z)
    assert image.shape == (7, 7, 3) and image.dtype == np.uint8
    np.testing.assert_array_equal(image[:3, 4:7], np.rint(patches[1] * 255).astype(np.uint8))
    weights = np.random.default_rng(2).normal(size=(3, 3, 5, 2))
    heatmap = charts.kernels_figure(weights, 1, "conv_2").data[0]
    z = np.asarray(heatmap.z, dtype=float)
    np.testing.assert_allclose(z[:3, 4:7], weights[..., 1, 1])  # input channel 1 of filter 1
    assert heatmap.zmin == -heatmap.zmax == pytest.approx(-np.abs(weights[..., 1]).max())
    with pytest.raises(ValueError, match="Received: filter_index=2"):
        charts.kernels_figure(weights, 2, "conv_2")


def test_history_marks_where_fine_tuning_starts():
    rows = [
        {"epoch": 1, "loss": 1.0, "val_loss": 1.1, "phase": "head"},
        {"epoch": 2, "loss": 0.8, "val_loss": 0.9, "phase": "head"},
        {"epoch": 3, "loss": 0.5, "val_loss": 0.7, "phase": "fine_tune"},
    ]
    assert charts.fine_tune_start(rows) == 3
    fig = charts.history_figure(rows, "loss")
    (line,) = [shape for shape in fig.layout.shapes if shape.type == "line"]
    assert line.x0 == line.x1 == 2.5
    assert [a.text for a in fig.layout.annotations] == ["fine-tuning"]
    assert list(fig.data[0].x) == [1, 2, 3]  # one continuous history
    assert charts.fine_tune_start(rows[:2]) is None
    assert not charts.history_figure(rows[:2], "loss").layout.shapes


def test_training_curves_put_loss_and_accuracy_side_by_side_in_one_figure():
    rows = [{**row, "learning_rate": 1e-3} for row in _history(4)]
    fig = charts.training_curves_figure(rows)
    assert [a.text for a in fig.layout.annotations] == ["Loss", "Accuracy"]  # no rate panel: the rate never changed
    for metric, axis in (("loss", "x"), ("accuracy", "x2")):
        panel = [trace for trace in fig.data if trace.xaxis == axis]
        alone = charts.history_figure(rows, metric).data
        assert [(t.name, list(t.x), list(t.y)) for t in panel] == [(t.name, list(t.x), list(t.y)) for t in alone]
    assert [t.showlegend for t in fig.data] == [True, True, False, False]  # one legend entry per line
    assert tuple(fig.layout.yaxis2.range) == (0, 1.02) and fig.layout.yaxis2.tickformat == ".0%"
    assert fig.layout.xaxis.dtick == fig.layout.xaxis2.dtick == 1


def test_training_curves_add_the_learning_rate_once_a_schedule_changes_it_and_mark_fine_tuning():
    rows = [
        {**row, "learning_rate": 1e-3 / row["epoch"], "phase": "head" if row["epoch"] < 3 else "fine_tune"}
        for row in _history(4)
    ]
    fig = charts.training_curves_figure(rows)
    assert [a.text for a in fig.layout.annotations if a.text != "fine-tuning"] == ["Loss", "Accuracy", "Learning rate"]
    (rate,) = [trace for trace in fig.data if trace.xaxis == "x3"]
    assert list(rate.y) == [1e-3, 5e-4, pytest.approx(1e-3 / 3), 2.5e-4] and fig.layout.yaxis3.type == "log"
    lines = [shape for shape in fig.layout.shapes if shape.type == "line"]
    assert sorted(shape.xref for shape in lines) == ["x", "x2", "x3"] and {shape.x0 for shape in lines} == {2.5}


def test_training_curves_draw_empty_axes_before_the_first_epoch():
    fig = charts.training_curves_figure([])
    assert [len(trace.x) for trace in fig.data] == [0, 0, 0, 0]
