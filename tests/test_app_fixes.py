"""Fixing labels from every gallery (issue 22): relabel and exclude through the fixer's data_editor,
the pending edits with undo, saving the next version, and retraining on it.

AppTest cannot type into a data_editor (`set_value` raises); a keyed editor is driven by assigning
the edit state its widget writes (`edited_rows`) on `at.session_state` before a run, as Streamlit's
testing API says. The confusion-matrix cell is chosen the same way: the plotly chart's selection
state, as its widget deserializes a click (`points` with their `point_index`), is assigned before the run.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from pathlib import Path

import pytest
import streamlit as st
from streamlit.elements.plotly_chart import PlotlyChartSelectionSerde
from streamlit.testing.v1 import AppTest

from cnnlab.data import edits, versions
from cnnlab.training.plan import training_plan
from helpers import open_page, start_app, swap_labels, tiny_model_config, tiny_train_config, wait_for_job, write_dataset


@pytest.fixture(scope="module")
def mislabelled_run(tmp_path_factory):
    """A run on cats, dogs and owls with six labels swapped on purpose, trained well enough that the
    swapped images in its test split are confident mistakes and likely label errors; with a saved
    cross-validated list of likely label errors (the held-out one: what the run's model finds)."""
    from cnnlab.analysis.crossval import CROSS_VALIDATED_FILE, CrossValidatedIssues
    from cnnlab.analysis.label_issues import run_label_issues
    from cnnlab.runs.store import RunStore
    from cnnlab.runs.workspace import Workspace
    from cnnlab.training.engine import train

    base = tmp_path_factory.mktemp("mislabelled")
    root = write_dataset(base / "data", per_class=30)
    swap_labels(root)
    run = train(
        root,
        tiny_model_config(),
        tiny_train_config(epochs=8, validation_split=0.3, test_split=0.3),
        workspace=Workspace(RunStore(base / "models"), base / "cache"),
    )
    issues = run_label_issues(run, cache=base / "cache")
    assert len(issues) >= 2
    # The cross-validated tab reads a pass saved with the run; this one lists the same images, as a
    # pass over every image would list these among others (a real pass: test_crossval.py).
    saved = CrossValidatedIssues(issues, folds=2, epochs=1, seed=7, num_images=90, created="2026-01-01T00:00:00")
    (run.path / CROSS_VALIDATED_FILE).write_text(json.dumps(saved.to_dict()))
    return {"run": run, "root": root, "models": base / "models"}


@pytest.fixture
def datasets(tmp_path) -> Path:
    return tmp_path / "datasets"


@pytest.fixture
def app(app_cache, tmp_path, datasets, monkeypatch):
    """A fresh session of the whole app with its own run store and datasets folder."""
    monkeypatch.setenv("CNNLAB_CACHE_DIR", str(app_cache))
    monkeypatch.setenv("CNNLAB_MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("CNNLAB_DATASETS_DIR", str(datasets))
    st.cache_resource.clear()
    return start_app()


def file_hashes(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*.*")}


def check(at: AppTest) -> AppTest:
    assert not at.exception, [e.value for e in at.exception]
    return at


def editor(at: AppTest, gallery: str):
    """The fixer's data_editor of a gallery (its key ends with which images it shows and a counter)."""
    found = [e for e in at.data_editor if e.key and e.key.startswith(f"fix-{gallery}-")]
    assert len(found) == 1, [e.key for e in at.data_editor]
    return found[0]


def change_rows(at: AppTest, gallery: str, changes: dict[str, dict]) -> AppTest:
    """Edit rows of a gallery's fixer (by image path) as its widget would, then add them to the pending edits."""
    table = editor(at, gallery)
    paths = table.value["path"].tolist()
    at.session_state[table.key] = {
        "edited_rows": {paths.index(path): cells for path, cells in changes.items()},
        "added_rows": [],
        "deleted_rows": [],
    }
    check(at.run())
    stage = at.button(key=f"stage-{gallery}")
    assert stage.label == f"Add {len(changes)} change{'s' * (len(changes) > 1)} to the pending edits"
    return check(stage.click().run())


def pending_lines(at: AppTest) -> list[str]:
    return [m.value for m in at.markdown if m.value.startswith("`")]


def undo(at: AppTest, panel: str, line: str) -> AppTest:
    """Press the undo button beside a pending edit."""
    index = pending_lines(at).index(line)
    buttons = [
        b for b in at.button if b.key and b.key.startswith(f"undo-{panel}-") and not b.key.startswith("undo-all")
    ]
    return check(buttons[index].click().run())


def the_dataset(datasets: Path) -> versions.Dataset:
    (dataset,) = versions.list_datasets(datasets)
    return dataset


def test_the_data_grid_relabels_to_a_new_class_and_excludes_then_saves_version_2(app, tmp_path, datasets):
    from cnnlab_ui.state import DatasetChoice

    root = write_dataset(tmp_path / "pets", per_class=4)  # 12 images: one page of the grid
    before = file_hashes(root)
    app.session_state["dataset"] = DatasetChoice(str(root), "pets")
    at = open_page(app, "pages/data.py")
    assert len(at.image) == 12 and not at.data_editor  # viewing: thumbnails
    assert the_dataset(datasets).version_numbers() == [1]  # the Data page shows version 1: the folder as it is
    check(at.toggle(key="fixing-data").set_value(True).run())
    assert not at.image
    table = editor(at, "data")
    assert len(table.value) == 12 and all(table.value["image"].str.startswith("data:image/jpeg;base64,"))
    assert set(table.value["label"]) == {"cats", "dogs", "owls"}

    at.text_input(key="new-class-name-data").set_value("hamsters")
    check(at.button(key="FormSubmitter:new-class-data-Add class").click().run())
    change_rows(
        at,
        "data",
        {
            "cats/cats_000.png": {"label": "dogs"},
            "cats/cats_001.png": {"label": "hamsters"},
            "dogs/dogs_002.png": {"exclude": True, "reason": "blurry"},
        },
    )
    assert sorted(pending_lines(at)) == [  # in the grid's order
        "`cats/cats_000.png`: cats → **dogs**",
        "`cats/cats_001.png`: cats → **hamsters** (new class)",
        "`dogs/dogs_002.png`: excluded (blurry)",
    ]
    rows = editor(at, "data").value.set_index("path")  # the editor shows the pending edits
    assert rows.loc["cats/cats_001.png", "label"] == "hamsters" and rows.loc["dogs/dogs_002.png", "exclude"]
    undo(at, "data", "`cats/cats_000.png`: cats → **dogs**")
    assert len(pending_lines(at)) == 2
    assert editor(at, "data").value.set_index("path").loc["cats/cats_000.png", "label"] == "cats"

    check(at.button(key="save-data").click().run())
    assert any(s.value == "Saved version 2 (from version 1): 1 relabelled, 1 excluded." for s in at.success)
    assert not pending_lines(at)
    dataset = the_dataset(datasets)
    assert dataset.version_numbers() == [1, 2]
    first, second = dataset.manifest(1), dataset.manifest(2)
    assert second.parent == 1 and second.classes == ("cats", "dogs", "hamsters", "owls")
    assert second.entry("cats/cats_001.png").label == "hamsters"
    assert second.entry("cats/cats_000.png").label == "cats"
    assert (second.entry("dogs/dogs_002.png").excluded, second.entry("dogs/dogs_002.png").reason) == (True, "blurry")
    assert not any(e.excluded for e in first.entries)
    assert edits.diff(dataset, 1, 2).summary == "1 relabelled, 1 excluded"
    assert file_hashes(root) == before  # the user's files are never changed


GALLERIES = ["confusion-cell", "mistakes", "label-issues", "label-issues-cv"]


def open_gallery(at: AppTest, gallery: str, run) -> list[str]:
    """Open a gallery of the Evaluate page with its fixer on; the images it lists."""
    if gallery == "confusion-cell":
        mistakes = json.loads((run.path / "evaluation.json").read_text())["predictions"]
        names = run.class_names
        wrong = next(p for p in mistakes if p["true_label"] != p["predicted_label"])
        cell = names.index(wrong["true_label"]) * len(names) + names.index(wrong["predicted_label"])
        selection = {"points": [{"point_index": cell}], "point_indices": [cell], "box": [], "lasso": []}
        # What the chart's widget makes of the browser's click (its own deserializer).
        at.session_state["confusion"] = PlotlyChartSelectionSerde().deserialize(json.dumps({"selection": selection}))
        check(at.run())
        assert any(h.value.startswith(f"True {wrong['true_label']}, predicted") for h in at.subheader)
    if gallery == "label-issues":
        check(at.toggle(key="find_label_issues").set_value(True).run())
    check(at.toggle(key=f"fixing-{gallery}").set_value(True).run())
    return editor(at, gallery).value["path"].tolist()


@pytest.mark.parametrize("gallery", GALLERIES)
def test_an_evaluate_gallery_relabels_and_excludes_the_runs_dataset_then_saves_version_2(
    gallery, app, mislabelled_run, datasets, monkeypatch
):
    monkeypatch.setenv("CNNLAB_MODELS_DIR", str(mislabelled_run["models"]))
    root, run = mislabelled_run["root"], mislabelled_run["run"]
    before = file_hashes(root)
    at = open_page(app, "pages/evaluate.py")
    assert not datasets.exists()  # nothing is versioned until Fix labels is on
    paths = open_gallery(at, gallery, run)
    assert paths
    first, last = paths[0], paths[-1]  # the same image when the gallery has one
    labels = editor(at, gallery).value.set_index("path")["label"]
    target = next(c for c in run.class_names if c != labels[first])
    relabel = f"`{first}`: {labels[first]} → **{target}**"
    change_rows(at, gallery, {first: {"label": target, "exclude": True, "reason": "unsure"}})
    assert pending_lines(at) == [relabel, f"`{first}`: excluded (unsure)"]
    undo(at, "evaluate", f"`{first}`: excluded (unsure)")
    assert pending_lines(at) == [relabel]
    change_rows(at, gallery, {last: {"exclude": True, "reason": "not an animal"}})
    assert pending_lines(at) == [relabel, f"`{last}`: excluded (not an animal)"]

    check(at.button(key="save-evaluate").click().run())
    assert any(s.value == "Saved version 2 (from version 1): 1 relabelled, 1 excluded." for s in at.success)
    dataset = the_dataset(datasets)
    assert dataset.source == root and dataset.version_numbers() == [1, 2]
    assert dataset.manifest(2).entry(first).label == target
    assert dataset.manifest(1).entry(first).label == labels[first]
    assert [(e.path, e.reason) for e in dataset.manifest(2).entries if e.excluded] == [(last, "not an animal")]
    assert not any(e.excluded for e in dataset.manifest(1).entries)
    assert file_hashes(root) == before
    # Fixes made later in this session go to the version just saved, so the first fix is kept.
    assert any(c.value.startswith(f"Edits to version 2 of {dataset.name}") for c in at.caption)


def test_evaluate_edits_apply_to_the_runs_version_and_say_when_newer_ones_exist(
    app, app_cache, mislabelled_run, datasets, monkeypatch
):
    from cnnlab.runs.dataset import run_dataset

    monkeypatch.setenv("CNNLAB_MODELS_DIR", str(mislabelled_run["models"]))
    run = mislabelled_run["run"]
    dataset, version = run_dataset(run, datasets, cache=app_cache)
    assert version == 1 and dataset.manifest(1).source_fingerprint == run.record.dataset.fingerprint
    assert sorted(e.path for e in dataset.manifest(1).entries if e.split == "test") == sorted(run.split()["test"])
    other = run.split()["train"][0]
    edits.save_version(dataset, [edits.Exclude(other, "made elsewhere")])  # version 2, which the run never saw

    at = open_page(app, "pages/evaluate.py")
    paths = open_gallery(at, "mistakes", run)
    note = f"Edits to version 1 of {dataset.name} (version 2 is the newest); the image files are never changed."
    assert note in [c.value for c in at.caption]
    given = editor(at, "mistakes").value.set_index("path").loc[paths[0], "label"]
    change_rows(at, "mistakes", {paths[0]: {"label": next(c for c in run.class_names if c != given)}})
    assert len(pending_lines(at)) == 1
    check(at.button(key="undo-all-evaluate").click().run())
    assert not pending_lines(at)
    change_rows(at, "mistakes", {paths[0]: {"exclude": True, "reason": "not an animal"}})
    assert pending_lines(at) == [f"`{paths[0]}`: excluded (not an animal)"]
    assert [i.value for i in at.info] == [
        "These edits apply to version 1, the one this run trained on. Version 2 is the newest: version 3 will be "
        "version 1 with these edits, without what version 2 changed."
    ]
    check(at.button(key="save-evaluate").click().run())
    third = dataset.manifest(3)
    assert third.parent == 1 and third.entry(paths[0]).reason == "not an animal"
    assert not third.entry(other).excluded  # version 1 with the edit, not version 2's


@pytest.mark.skipif(
    "dataset_version" not in inspect.signature(training_plan).parameters,
    reason="training on a dataset version comes with the engine branch (train/training_plan dataset_version=)",
)
def test_retrain_on_the_corrected_version_trains_the_runs_settings_on_it(
    app, app_cache, mislabelled_run, datasets, monkeypatch
):
    from cnnlab.runs.dataset import run_dataset

    monkeypatch.setenv("CNNLAB_MODELS_DIR", str(mislabelled_run["models"]))
    run = mislabelled_run["run"]
    at = open_page(app, "pages/evaluate.py")
    paths = open_gallery(at, "label-issues", run)
    assert not any(b.key == "retrain" for b in at.button)  # nothing saved yet
    labels = editor(at, "label-issues").value.set_index("path")["label"]
    target = next(c for c in run.class_names if c != labels[paths[0]])
    change_rows(at, "label-issues", {paths[0]: {"label": target}})
    check(at.button(key="save-evaluate").click().run())
    check(at.button(key="retrain").click().run())
    job = wait_for_job(at, "job")
    assert job.status == "completed", job.error
    retrained = job.result
    assert (retrained.record.dataset.version, retrained.record.dataset.versions_folder) == (
        2,
        str(the_dataset(datasets).folder),
    )
    assert run_dataset(retrained, datasets, cache=app_cache) == (the_dataset(datasets), 2)  # from its record
    assert retrained.model_config() == run.model_config()
    assert retrained.train_config().epochs == run.train_config().epochs
