"""The embedding map and outliers: a run's features are its classifier's input, computed once per model
file and dataset; their PCA, t-SNE and UMAP projections; the map's figure; a planted odd image ranked
first as an outlier, by the library and by `cnnlab dataset outliers`; the one-line refusals."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
import pytest

from cnnlab import charts
from cnnlab.analysis import Embedding, project, projection_methods, run_embedding, run_outliers
from cnnlab.analysis.embedding import EMBEDDING_FILE, feature_model
from cnnlab.analysis.evaluate import open_split, probabilities
from cnnlab.analysis.outliers import OUTLIER_COLUMNS, outliers
from cnnlab.cli import main
from cnnlab.data import make_dataset
from cnnlab.model import ModelConfig, build_model
from cnnlab.runs.store import Run, RunStore
from helpers import (
    CLASS_COLORS,
    class_image,
    image_bytes,
    last_json,
    one_line_error,
    relocated_run,
)

PLANTED = "cats/cats_000.png"  # replaced by an owl-coloured image: a blue picture filed under red cats


@pytest.fixture
def copied(trained_run, tmp_path) -> tuple[Run, Path]:
    """A copy of the shared trained run and of its dataset, with a cache of its own (the run and the
    dataset change here); one cat is replaced by an owl-coloured image. Returns (run, cache)."""
    run_dir = relocated_run(trained_run["run"], tmp_path / "data", tmp_path / "models")
    (tmp_path / "data" / PLANTED).write_bytes(image_bytes(class_image(CLASS_COLORS["owls"], np.random.default_rng(5))))
    return RunStore(tmp_path / "models").get(str(run_dir)), tmp_path / "cache"


def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_features_are_the_classifier_input_for_every_image_of_every_split(copied):
    run, cache = copied
    calls = []
    embedding = run_embedding(run, cache=cache, progress=lambda done, total: calls.append((done, total)))
    split = run.split()
    num_images = sum(len(paths) for paths in split.values())
    model = run.load_model()
    width = model.get_layer("dense").units  # the tiny model's dense layer feeds its classifier
    assert embedding.features.shape == (num_images, width) and embedding.features.dtype == np.float32
    assert sorted(embedding.paths) == sorted(p for paths in split.values() for p in paths)
    part_of = {p: part for part, paths in split.items() for p in paths}
    assert list(embedding.splits) == [part_of[p] for p in embedding.paths]
    assert list(embedding.labels) == [p.split("/")[0] for p in embedding.paths]
    assert calls and calls[-1] == (num_images, num_images)

    # The final Dense layer applied to the features gives the model's own probabilities.
    weights, bias = model.get_layer("predictions").get_weights()
    probs = _softmax(embedding.features.astype(np.float64) @ weights + bias)
    with open_split(run, cache=cache) as (prepared, _):
        position = {rel: i for i, rel in enumerate(prepared.report.files)}
        rows = np.asarray([position[p] for p in embedding.paths])
        expected = probabilities(model, make_dataset(prepared, rows, 16))
    np.testing.assert_allclose(probs, expected, atol=1e-5)
    np.testing.assert_allclose(embedding.confidences, expected.max(axis=1), atol=1e-5)
    labels = np.asarray([run.class_names.index(label) for label in embedding.labels])
    np.testing.assert_allclose(embedding.self_confidences, expected[np.arange(len(labels)), labels], atol=1e-5)
    assert list(embedding.predictions) == [run.class_names[i] for i in expected.argmax(axis=1)]

    frame = embedding.frame()
    assert list(frame.columns) == ["path", "label", "prediction", "split", "correct", "confidence"]
    assert frame["correct"].tolist() == [a == b for a, b in zip(embedding.labels, embedding.predictions, strict=True)]
    by_path = embedding.features_by_path()
    assert list(by_path) == list(embedding.paths)
    np.testing.assert_array_equal(by_path[PLANTED], embedding.features[embedding.paths.index(PLANTED)])


def test_the_feature_model_finds_the_classifier_under_a_backbone_and_a_sigmoid_unit():
    config = ModelConfig(
        image_size=(32, 32), backbone="mobilenet_v3_small", backbone_weights="none", dense_units=0, dropout=0.0
    )
    model = build_model(config, 2)
    images = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3)).astype(np.float32)
    features, outputs = feature_model(model).predict(images, verbose=0)
    assert features.shape == (4, model.get_layer("gap").output.shape[-1])  # the pooled backbone features
    weights, bias = model.get_layer("predictions").get_weights()
    np.testing.assert_allclose(1 / (1 + np.exp(-(features @ weights + bias))), outputs, atol=1e-5)
    np.testing.assert_allclose(outputs, model.predict(images, verbose=0), atol=1e-6)


def test_a_second_call_reads_the_run_folder_and_runs_no_model(copied):
    run, cache = copied
    first = run_embedding(run, cache=cache)
    stored = run.path / EMBEDDING_FILE
    assert stored.is_file()
    stored_at = stored.stat().st_mtime_ns

    # The model file is swapped for bytes Keras cannot load, of the same size and time: only a
    # call that never opens the model can still answer.
    model = run.model_path
    saved = model.stat()
    model.rename(model.with_name("real.keras"))
    model.write_bytes(b"\0" * saved.st_size)
    os.utime(model, ns=(saved.st_atime_ns, saved.st_mtime_ns))
    calls = []
    second = run_embedding(run, cache=cache, progress=lambda done, total: calls.append(done))
    assert calls == [] and stored.stat().st_mtime_ns == stored_at
    for field in ("paths", "labels", "predictions", "splits"):
        assert getattr(second, field) == getattr(first, field)
    for field in ("features", "confidences", "self_confidences"):
        np.testing.assert_array_equal(getattr(second, field), getattr(first, field))

    # A model file of another time is another model: the stored features are not its.
    os.utime(model, ns=(saved.st_atime_ns, saved.st_mtime_ns + 10**9))
    with pytest.raises(ValueError, match=r"model file of run .* is unreadable"):
        run_embedding(run, cache=cache)

    # Nor are they the features of changed images.
    model.with_name("real.keras").replace(model)
    os.utime(model, ns=(saved.st_atime_ns, saved.st_mtime_ns))
    assert run_embedding(run, cache=cache, progress=lambda done, total: calls.append(done)) is not None
    assert calls == []
    changed = run.dataset_root(cache) / "dogs" / "dogs_001.png"
    changed.write_bytes(image_bytes(class_image(CLASS_COLORS["cats"], np.random.default_rng(9))))
    third = run_embedding(run, cache=cache, progress=lambda done, total: calls.append(done))
    assert calls and stored.stat().st_mtime_ns != stored_at
    row = first.paths.index("dogs/dogs_001.png")
    assert not np.array_equal(third.features[row], first.features[row])


def test_the_demo_runs_embedding_is_kept_in_the_cache_not_in_its_folder(copied):
    run, cache = copied
    demo = RunStore(run.path.parent / "elsewhere", demo=run.path).get(str(run.path))
    assert demo.is_demo
    before = sorted(p.name for p in run.path.iterdir())
    first = run_embedding(demo, cache=cache)
    assert sorted(p.name for p in run.path.iterdir()) == before
    assert [p.name for p in (cache / "embeddings").iterdir()] == [f"{demo.id}.npz"]
    calls = []
    second = run_embedding(demo, cache=cache, progress=lambda done, total: calls.append(done))
    assert calls == [] and second.paths == first.paths


def test_a_run_without_a_model_file_is_one_line(copied):
    run, cache = copied
    run.model_path.unlink()
    with pytest.raises(ValueError, match=r"has no saved model .*Received: run=") as caught:
        run_embedding(run, cache=cache)
    assert "\n" not in str(caught.value)


def test_pca_is_numpys_svd_projection_with_a_fixed_sign():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(40, 6)) * [5, 3, 1, 1, 1, 1]
    xy = project(features)
    assert xy.shape == (40, 2) and xy.dtype == np.float64
    np.testing.assert_array_equal(project(features), xy)
    centred = features - features.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    signs = np.sign(vt[np.arange(2), np.abs(vt[:2]).argmax(axis=1)])  # each component's largest loading positive
    np.testing.assert_allclose(xy, centred @ (vt[:2] * signs[:, None]).T, atol=1e-9)
    # The same images in another order are the same points: no component's sign is left to chance.
    np.testing.assert_allclose(project(features[::-1]), xy[::-1], atol=1e-9)
    np.testing.assert_allclose(project(features.astype(np.float32)), xy, atol=1e-4)
    assert xy[:, 0].var() > xy[:, 1].var()
    # One feature: its centred values, and a zero second axis.
    one = project(features[:, :1])
    np.testing.assert_allclose(np.abs(one[:, 0]), np.abs(features[:, 0] - features[:, 0].mean()))
    assert not one[:, 1].any()


def test_too_few_images_or_an_unknown_method_is_one_line():
    with pytest.raises(ValueError, match=r"at least 3 images.*Received: features.shape=\(2, 4\)"):
        project(np.ones((2, 4)))
    with pytest.raises(ValueError, match=r"Received: method='mds'"):
        project(np.ones((5, 4)), "mds")


def test_tsne_projects_and_is_repeatable_where_scikit_learn_is_installed():
    pytest.importorskip("sklearn.manifold", reason="scikit-learn is not installed (it is in the dev extra)")
    assert projection_methods()["tsne"] is None
    rng = np.random.default_rng(1)
    features = np.concatenate([rng.normal(0, 1, (10, 12)), rng.normal(8, 1, (10, 12))])
    xy = project(features, "tsne", seed=3)
    assert xy.shape == (20, 2) and np.isfinite(xy).all()
    np.testing.assert_allclose(project(features, "tsne", seed=3), xy)
    # The two groups stay apart: each point's nearest neighbour on the map is of its own group.
    distances = np.linalg.norm(xy[:, None] - xy[None], axis=2) + np.eye(20) * 1e9
    assert ((distances.argmin(axis=1) < 10) == (np.arange(20) < 10)).all()
    assert project(features[:4], "tsne").shape == (4, 2)  # the perplexity stays under the image count


def test_a_missing_projection_package_is_said_in_one_line():
    methods = projection_methods()
    assert methods["pca"] is None and set(methods) == {"pca", "tsne", "umap"}
    if importlib.util.find_spec("umap") is not None:
        pytest.skip("umap-learn is installed here, so UMAP is usable")
    assert "umap-learn" in methods["umap"] and "\n" not in methods["umap"]
    with pytest.raises(ValueError, match=r"umap-learn.*Received: method='umap'"):
        project(np.random.default_rng(0).normal(size=(10, 3)), "umap")


def test_the_map_has_a_trace_per_colour_and_rows_in_its_customdata(copied):
    run, cache = copied
    embedding = run_embedding(run, cache=cache)
    frame = embedding.frame()
    xy = project(embedding.features)
    fig = charts.embedding_figure(frame, xy, "label")
    assert isinstance(fig, go.Figure) and fig.layout.template == pio.templates[charts.TEMPLATE]
    assert [t.name for t in fig.data] == ["cats", "dogs", "owls"] and fig.layout.dragmode == "lasso"
    rows = np.concatenate([t.customdata for t in fig.data])
    assert sorted(rows.tolist()) == list(range(len(frame)))
    for trace in fig.data:
        assert isinstance(trace, go.Scattergl)
        for row, x, y, hover in zip(trace.customdata, trace.x, trace.y, trace.hovertext, strict=True):
            image = frame.iloc[row]
            assert (x, y) == tuple(xy[row]) and image["label"] == trace.name
            for part in (image["path"], image["label"], image["prediction"], image["split"]):
                assert part in hover
            assert f"({image['confidence']:.0%})" in hover
    split = charts.embedding_figure(frame, xy, "split")
    assert [t.name for t in split.data] == [s for s in ("train", "validation", "test") if s in set(frame["split"])]
    right = charts.embedding_figure(frame, xy, "correct")
    assert {t.name for t in right.data} == {"right" if c else "wrong" for c in frame["correct"]}
    for trace in right.data:
        assert frame.iloc[trace.customdata]["correct"].eq(trace.name == "right").all()
    predicted = charts.embedding_figure(frame, xy, "prediction")
    assert sum(len(t.customdata) for t in predicted.data) == len(frame)
    with pytest.raises(ValueError, match=r"Received: color_by='size'"):
        charts.embedding_figure(frame, xy, "size")
    with pytest.raises(ValueError, match=r"Received: xy.shape=\(3, 2\)"):
        charts.embedding_figure(frame, xy[:3], "label")


def test_the_planted_odd_image_is_the_first_outlier(copied):
    run, cache = copied
    table = run_outliers(run, cache=cache, top=5)
    assert list(table.columns) == list(OUTLIER_COLUMNS) and len(table) == 5
    assert table.loc[0, "path"] == PLANTED and table.loc[0, "label"] == "cats"
    assert table["score"].is_monotonic_decreasing
    # Scores are in units of the class's median distance: the planted image is far out of its class.
    assert table.loc[0, "score"] > 2 * table.loc[1, "score"]
    with pytest.raises(ValueError, match=r"Received: top=0"):
        run_outliers(run, cache=cache, top=0)


def test_outlier_scores_by_hand_and_a_class_of_one_image_by_self_confidence():
    features = np.array(
        [
            [1.0, 0.0],
            [0.0, 1.0],
            [1.0, 1.0],  # class a: unit vectors (1,0), (0,1), (.71,.71); centroid (.57,.57)
            [3.0, 0.0],  # class b, the only one: 1 - its label's probability
        ],
        dtype=np.float32,
    )
    embedding = Embedding(
        paths=("a/1", "a/2", "a/3", "b/1"),
        labels=("a", "a", "a", "b"),
        predictions=("a", "a", "a", "a"),
        splits=("train", "validation", "test", "train"),
        confidences=np.array([0.9, 0.8, 0.7, 0.6]),
        self_confidences=np.array([0.9, 0.8, 0.7, 0.4]),
        features=features,
    )
    unit = features[:3] / np.linalg.norm(features[:3], axis=1, keepdims=True)
    distances = np.linalg.norm(unit - unit.mean(axis=0), axis=1)
    expected = {"a/1": distances[0], "a/2": distances[1], "a/3": distances[2]}
    expected = {path: d / np.median(distances) for path, d in expected.items()} | {"b/1": 1 - 0.4}
    table = outliers(embedding, top=None)
    assert dict(zip(table["path"], table["score"], strict=True)) == pytest.approx(expected)
    assert table["path"].tolist()[:2] == ["a/1", "a/2"]  # equally far: in the embedding's order
    assert table.loc[table["path"] == "b/1", ["label", "prediction", "split", "confidence"]].values.tolist() == [
        ["b", "a", "train", 0.6]
    ]
    assert len(outliers(embedding, top=2)) == 2


def test_the_command_line_lists_outliers_and_prints_json_last(copied, capsys, monkeypatch):
    run, cache = copied
    monkeypatch.setenv("CNNLAB_MODELS_DIR", str(run.path.parent))
    monkeypatch.setenv("CNNLAB_CACHE_DIR", str(cache))
    assert main(["dataset", "outliers", run.id, "--top", "3"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3 and PLANTED in lines[0] and "label cats" in lines[0]
    assert main(["dataset", "outliers", run.id, "--top", "4", "--json"]) == 0
    result = last_json(capsys)
    assert result["run"] == run.id and len(result["outliers"]) == 4
    assert set(result["outliers"][0]) == set(OUTLIER_COLUMNS) and result["outliers"][0]["path"] == PLANTED

    assert main(["dataset", "outliers", run.id, "--top", "0"]) == 2
    assert "--top" in one_line_error(capsys)
    run.model_path.unlink()
    (run.path / EMBEDDING_FILE).unlink()
    assert main(["dataset", "outliers", run.id, "--json"]) == 2
    assert "has no saved model" in one_line_error(capsys)


def test_the_embedding_modules_import_no_tensorflow():
    code = (
        "import sys, cnnlab.analysis.embedding, cnnlab.analysis.outliers, cnnlab.charts.embedding, "
        "cnnlab.cli.dataset_outliers; print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.slow
def test_a_damaged_model_is_one_line_on_stderr_even_after_tensorflow_loads(copied, tmp_path):
    """`dataset outliers` imports TensorFlow quietly first, as the top-level commands that need it do."""
    run, cache = copied
    run.model_path.write_bytes(b"not a model")
    env = {**os.environ, "CNNLAB_MODELS_DIR": str(run.path.parent), "CNNLAB_CACHE_DIR": str(cache)}
    done = subprocess.run(
        [sys.executable, "-m", "cnnlab", "dataset", "outliers", run.id],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1, done.stderr
    assert "unreadable" in done.stderr
