"""The dataset seen as a whole (issue 23) end to end: a run trained on a version with copies across
its split reports its test accuracy with and without the leaked copies (library, CLI, Evaluate page),
the training plan warns in one line, the Data page counts the leaking and conflicting groups and
keeps one image of each in one click (a new version; the files untouched), and the Evaluate page's
map shows every image and lets a box selection relabel or exclude them.

AppTest cannot draw a lasso; the chart's selection state, as its widget deserializes the browser's
event (`points` with their `customdata`), is assigned before a run, as tests/test_app_fixes.py does.
"""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import streamlit as st
from streamlit.elements.plotly_chart import PlotlyChartSelectionSerde
from streamlit.testing.v1 import AppTest

from cnnlab.data import versions
from cnnlab.data.splits import split
from helpers import last_json, open_page, start_app, tiny_model_config, tiny_train_config, tree_hashes, write_dataset

COPIES = 6  # cats images copied within their class, so that some copies land across the split


def leaky_folder(root: Path) -> tuple[Path, int]:
    """Cats, dogs and owls with `COPIES` exact copies of cats images (and one cats image copied under
    dogs: a conflict), and a split seed that puts at least one copy in training and its twin in test."""
    from cnnlab.data import scan

    write_dataset(root, per_class=12)
    for i in range(COPIES):
        shutil.copy(root / "cats" / f"cats_{i:03d}.png", root / "cats" / f"copy_{i}.png")
    shutil.copy(root / "cats" / "cats_011.png", root / "dogs" / "cat_in_dogs.png")
    report = scan(root)
    for seed in range(200):
        parts = split(report.labels, 0.2, 0.3, seed)
        part_of = {report.files[i]: part for part, indices in parts.items() for i in indices}
        pairs = [(part_of[f"cats/cats_{i:03d}.png"], part_of[f"cats/copy_{i}.png"]) for i in range(COPIES)]
        if any({"train", "test"} == set(pair) for pair in pairs):
            return root, seed
    raise AssertionError("no seed splits a copy across training and test")


def leaked_by_hash(manifest: versions.Manifest) -> set[str]:
    """The test images with the same content as a training image: the exact leaks, found independently."""
    trained = {e.sha256 for e in manifest.included if e.split == "train"}
    return {e.path for e in manifest.included if e.split == "test" and e.sha256 in trained}


@pytest.fixture(scope="module")
def leaky_run(tmp_path_factory):
    """A 2-epoch run on version 1 of a folder whose split has exact copies across training and test."""
    from cnnlab.runs.store import RunStore
    from cnnlab.runs.workspace import Workspace
    from cnnlab.training.engine import train

    base = tmp_path_factory.mktemp("leaky")
    root, seed = leaky_folder(base / "pets")
    datasets, cache = base / "datasets", base / "cache"
    dataset = versions.open_dataset(root, datasets, validation_split=0.2, test_split=0.3, seed=seed)
    workspace = Workspace(RunStore(base / "models"), cache, datasets=datasets)
    run = train(root, tiny_model_config(), tiny_train_config(), workspace=workspace)
    return {"run": run, "root": root, "dataset": dataset, "workspace": workspace, "base": base}


def test_the_evaluation_reports_the_accuracy_without_the_test_images_that_copy_training_images(leaky_run) -> None:
    from cnnlab.analysis.evaluate import evaluate_run

    run, dataset = leaky_run["run"], leaky_run["dataset"]
    expected = leaked_by_hash(dataset.manifest(1))
    assert expected  # the fixture's seed put a copy across training and test
    evaluation = evaluate_run(run, cache=leaky_run["workspace"].cache)
    assert set(evaluation.leaked or ()) >= expected and evaluation.num_leaked_test_images == len(evaluation.leaked)
    rows = evaluation.predictions
    kept = rows[~rows["path"].isin(evaluation.leaked)]
    assert evaluation.accuracy_without_leaks == pytest.approx(kept["correct"].mean())
    saved = json.loads((run.path / "evaluation.json").read_text())  # found once, then saved with the run
    assert saved["num_leaked_test_images"] == evaluation.num_leaked_test_images
    assert saved["test_accuracy_without_leaks"] == pytest.approx(evaluation.accuracy_without_leaks)


def test_evaluate_json_names_the_leaks_and_the_plan_warns_in_one_line(leaky_run, capsys, monkeypatch) -> None:
    from cnnlab.cli import main
    from cnnlab.training.plan import training_plan

    run, workspace = leaky_run["run"], leaky_run["workspace"]
    monkeypatch.setenv("CNNLAB_MODELS_DIR", str(workspace.store.root))
    monkeypatch.setenv("CNNLAB_CACHE_DIR", str(workspace.cache))
    monkeypatch.setenv("CNNLAB_DATASETS_DIR", str(workspace.datasets))
    assert main(["evaluate", run.id, "--json"]) == 0
    result = last_json(capsys)
    expected = leaked_by_hash(leaky_run["dataset"].manifest(1))
    assert set(result["leaked_test_images"]) >= expected
    assert result["num_leaked_test_images"] == len(result["leaked_test_images"])
    assert 0.0 <= result["test_accuracy_without_leaks"] <= 1.0

    plan = training_plan(leaky_run["root"], tiny_model_config(), tiny_train_config(), workspace=workspace)
    assert plan.leakage is not None and "\n" not in plan.leakage
    assert f"({result['num_leaked_test_images']} test images copy a training image)" in plan.leakage
    assert plan.leakage in plan.describe()


@pytest.fixture
def app(app_cache, leaky_run, monkeypatch) -> AppTest:
    """The whole app on the leaky run's store and datasets folder."""
    workspace = leaky_run["workspace"]
    monkeypatch.setenv("CNNLAB_CACHE_DIR", str(app_cache))
    monkeypatch.setenv("CNNLAB_MODELS_DIR", str(workspace.store.root))
    monkeypatch.setenv("CNNLAB_DATASETS_DIR", str(workspace.datasets))
    st.cache_resource.clear()
    st.cache_data.clear()
    return start_app()


def plotly_array(value) -> np.ndarray:
    """An array of a figure's JSON: a list, or plotly's typed array (base64 data with its dtype)."""
    if isinstance(value, dict):
        return np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"])
    return np.asarray(value)


def check(at: AppTest) -> AppTest:
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_the_data_page_counts_leaks_and_conflicts_and_keeps_one_of_each_group_in_a_click(app, leaky_run) -> None:
    from cnnlab_ui.state import DatasetChoice

    root, dataset = leaky_run["root"], leaky_run["dataset"]
    before = tree_hashes(root)
    app.session_state["dataset"] = DatasetChoice(str(root), "pets")
    at = check(open_page(app, "pages/data.py"))
    warning = next(w.value for w in at.warning if w.value.startswith("Copies of one image"))
    assert "1 carry two labels" in warning
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Groups of copies"] == str(COPIES + 1)
    assert metrics["With two labels"] == "1"
    assert int(metrics["Leaking across the split"]) >= 1
    labels = [t.label for t in at.tabs]
    assert "Images" in labels and any(label.startswith(f"Duplicates ({COPIES + 1} groups: ") for label in labels)

    # The Map tab offers the run trained on this dataset.
    assert at.selectbox(key="data-map-run").value == leaky_run["run"].id
    check(at.button(key="data-duplicates-keep-all").click().run())
    assert dataset.version_numbers()[-1] == 2
    v2 = dataset.manifest(2)
    excluded = {e.path for e in v2.entries if e.excluded}
    assert len(excluded) == COPIES + 1  # one of each pair
    assert all(e.reason.startswith("duplicate of ") for e in v2.entries if e.excluded)
    contents = [e.sha256 for e in v2.included]
    assert len(contents) == len(set(contents))  # no two images left with one content
    assert not any(e.excluded for e in dataset.manifest(1).entries)
    assert tree_hashes(root) == before
    # The page now shows version 2, without copies.
    assert any(m.label == "Groups of copies" and m.value == "0" for m in at.metric)


def test_the_evaluate_page_shows_both_accuracies_and_the_map_whose_selection_can_be_fixed(app, leaky_run) -> None:
    from cnnlab.analysis.embedding import run_embedding

    run = leaky_run["run"]
    at = check(open_page(app, "pages/evaluate.py"))
    assert {"Test results", "Data map"} <= {t.label for t in at.tabs}
    leak = next(w.value for w in at.warning if "copies of training images" in w.value)
    assert "without them it is" in leak
    check(at.toggle(key="show-map").set_value(True).run())
    assert len(at.get("plotly_chart")) >= 1
    figure = json.loads(next(c.proto.spec for c in at.get("plotly_chart") if "Embedding map" in c.proto.spec))
    shown = np.sort(np.concatenate([plotly_array(trace["customdata"]) for trace in figure["data"]]))
    embedding = run_embedding(run, cache=leaky_run["workspace"].cache)
    assert shown.tolist() == list(range(len(embedding.paths)))  # every image once, by its row
    assert len(embedding.paths) == len(leaky_run["dataset"].manifest(1).included)

    rows = [0, 1, 2]
    points = [{"customdata": [i], "point_index": i, "curve_number": 0} for i in rows]
    selection = {"points": points, "point_indices": rows, "box": [{"x": [0, 1], "y": [0, 1]}], "lasso": []}
    at.session_state["evaluate-map"] = PlotlyChartSelectionSerde().deserialize(json.dumps({"selection": selection}))
    check(at.run())
    assert any(h.value == "3 images selected" for h in at.subheader)
    check(at.toggle(key="fixing-evaluate-selection").set_value(True).run())
    editor = next(e for e in at.data_editor if e.key and e.key.startswith("fix-evaluate-selection-"))
    assert editor.value["path"].tolist() == [embedding.paths[i] for i in rows]
    assert np.all(editor.value["label"].to_numpy() == np.asarray([embedding.labels[i] for i in rows]))
    # Below the map, the images least like their class.
    assert any(h.value == "Least like their class" for h in at.subheader)
