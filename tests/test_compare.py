"""Two runs compared on their shared test images: the library, the Runs page section and `runs compare`."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
import streamlit as st

from cnnlab.analysis.compare import compare_runs
from cnnlab.analysis.evaluate import saved_evaluation
from cnnlab.cli import main
from helpers import open_page, start_app, tiny_model_config, tiny_train_config, write_dataset


@pytest.fixture(scope="module")
def relabelled(trained_run, tmp_path_factory):
    """The shared tiny run (`before`, copied into a store of this module's own) and a run trained longer on
    a copy of its dataset where a test cat and a test dog changed places (`after`): each file keeps its
    name, so both runs split alike, and its content now sits in the other class, as a relabelling does."""
    from cnnlab.runs.store import RunStore
    from cnnlab.runs.workspace import Workspace
    from cnnlab.training.engine import train

    base = tmp_path_factory.mktemp("compare")
    store = RunStore(base / "models")
    shutil.copytree(trained_run["run"].path, store.root / trained_run["run"].id)
    before = store.get(trained_run["run"].id)
    data_dir = shutil.copytree(trained_run["data_dir"], base / "relabelled")
    test = before.split()["test"]
    cat, dog = (next(p for p in test if p.startswith(f"{name}/")) for name in ("cats", "dogs"))
    cat_bytes = (data_dir / cat).read_bytes()
    (data_dir / cat).write_bytes((data_dir / dog).read_bytes())
    (data_dir / dog).write_bytes(cat_bytes)
    after = train(
        data_dir,
        tiny_model_config(learning_rate=0.01),
        tiny_train_config(epochs=4),
        workspace=Workspace(store, base / "cache"),
        name="relabelled run",
    )
    return {"before": before, "after": after, "store": store, "cache": base / "cache", "moved": {cat: dog, dog: cat}}


def test_the_shared_test_images_are_matched_by_content_and_scored_against_the_newer_labels(relabelled):
    before, after, cache = relabelled["before"], relabelled["after"], relabelled["cache"]
    comparison = compare_runs(before, after, cache=cache)

    # The shared images, found here by reading each run's test files and hashing them.
    def test_contents(run):
        root = run.dataset_root(cache)
        return {(root / rel).read_bytes(): rel for rel in run.split()["test"]}

    old, new = test_contents(before), test_contents(after)
    shared = {new[content]: old[content] for content in new.keys() & old.keys()}
    assert comparison.num_shared == len(shared) > 0
    assert dict(zip(comparison.images["path"], comparison.images["path_before"], strict=True)) == shared
    assert comparison.num_only_before == len(old) - len(shared)
    assert comparison.num_only_after == len(new) - len(shared)

    # Labels: the newer run's class folder; predictions: each run's saved evaluation.
    predicted_before = _predictions(before)
    predicted_after = _predictions(after)
    rows = comparison.images.set_index("path")
    for path, path_before in shared.items():
        assert rows.loc[path, "label"] == path.split("/")[0]
        assert rows.loc[path, "label_before"] == path_before.split("/")[0]
        assert rows.loc[path, "predicted_before"] == predicted_before[path_before]
        assert rows.loc[path, "predicted_after"] == predicted_after[path]
    # The two images that changed class are matched across their two paths.
    assert {p: q for p, q in shared.items() if p != q} == relabelled["moved"]
    assert comparison.num_relabelled == 2

    # Accuracies by hand, against the newer labels for both runs.
    right_before = {p for p, q in shared.items() if predicted_before[q] == p.split("/")[0]}
    right_after = {p for p in shared if predicted_after[p] == p.split("/")[0]}
    assert comparison.accuracy_before == pytest.approx(len(right_before) / len(shared))
    assert comparison.accuracy_after == pytest.approx(len(right_after) / len(shared))
    assert set(comparison.fixed["path"]) == right_after - right_before
    assert set(comparison.broken["path"]) == right_before - right_after

    # Per class: recall on the class's shared images, and the flips counted per class.
    table = comparison.per_class.set_index("class")
    assert list(table.index) == after.class_names
    for name in after.class_names:
        members = {p for p in shared if p.split("/")[0] == name}
        assert table.loc[name, "support"] == len(members)
        if members:
            assert table.loc[name, "recall_before"] == pytest.approx(len(members & right_before) / len(members))
            assert table.loc[name, "recall_after"] == pytest.approx(len(members & right_after) / len(members))
            assert table.loc[name, "change"] == pytest.approx(
                table.loc[name, "recall_after"] - table.loc[name, "recall_before"]
            )
        assert table.loc[name, "fixed"] == len(members & (right_after - right_before))
        assert table.loc[name, "broken"] == len(members & (right_before - right_after))
    assert table["fixed"].sum() == len(comparison.fixed) and table["broken"].sum() == len(comparison.broken)

    result = comparison.to_dict()
    assert result["labels_from"] == after.id and result["num_shared"] == len(shared)
    assert json.loads(json.dumps(result, default=str))["accuracy_after"] == pytest.approx(comparison.accuracy_after)


def test_predictions_are_made_again_without_a_saved_evaluation(relabelled, tmp_path):
    from cnnlab.runs.store import RunStore

    shutil.copytree(relabelled["before"].path, tmp_path / "models" / "unsaved")
    (tmp_path / "models" / "unsaved" / "evaluation.json").unlink()
    unsaved = RunStore(tmp_path / "models").get("unsaved")
    made = compare_runs(unsaved, relabelled["after"], cache=relabelled["cache"])
    reused = compare_runs(relabelled["before"], relabelled["after"], cache=relabelled["cache"])
    pd.testing.assert_frame_equal(made.images, reused.images)
    assert saved_evaluation(unsaved) is None  # comparing never writes a run's evaluation


def test_runs_without_a_class_in_common_are_refused(relabelled, tmp_path, make_dataset):
    from cnnlab.runs.store import RunStore
    from cnnlab.runs.workspace import Workspace
    from cnnlab.training.engine import train

    other = train(
        make_dataset(classes=("apples", "pears"), per_class=6),
        tiny_model_config(),
        tiny_train_config(epochs=1),
        workspace=Workspace(RunStore(tmp_path / "models"), relabelled["cache"]),
    )
    with pytest.raises(ValueError, match=r"no class in common.*Received: classes=\['cats', 'dogs', 'owls'\]"):
        compare_runs(relabelled["before"], other, cache=relabelled["cache"])


def test_runs_that_share_no_test_image_are_refused_with_the_reason(relabelled, trained_run, tmp_path):
    from cnnlab.runs.store import RunStore

    # The same classes, other images: a dataset drawn with another seed.
    other_data = write_dataset(tmp_path / "other", seed=5)
    run_dir = shutil.copytree(trained_run["run"].path, tmp_path / "models" / "elsewhere")
    record = json.loads((run_dir / "run.json").read_text())
    record["dataset"]["path"] = str(other_data)
    (run_dir / "run.json").write_text(json.dumps(record))
    (run_dir / "evaluation.json").unlink()
    elsewhere = RunStore(tmp_path / "models").get("elsewhere")
    with pytest.raises(ValueError, match=r"different datasets \('data' and 'other'\).*Received: runs="):
        compare_runs(relabelled["before"], elsewhere, cache=relabelled["cache"])


def test_a_run_without_test_images_is_refused_with_the_reason(relabelled, tmp_path):
    from cnnlab.runs.store import RunStore

    run_dir = shutil.copytree(relabelled["before"].path, tmp_path / "models" / "untested")
    split = json.loads((run_dir / "split.json").read_text())
    (run_dir / "split.json").write_text(json.dumps({**split, "test": []}))
    untested = RunStore(tmp_path / "models").get("untested")
    with pytest.raises(ValueError, match=r"Run 'shared tiny run' has no test images here.*Received: runs=untested, "):
        compare_runs(untested, relabelled["after"], cache=relabelled["cache"])


def test_the_recall_chart_draws_both_runs_per_class_and_refuses_another_table():
    from cnnlab.charts import recall_change_figure

    per_class = pd.DataFrame(
        {
            "class": ["a", "b"],
            "support": [2, 0],
            "recall_before": [0.5, float("nan")],
            "recall_after": [1.0, float("nan")],
        }
    )
    figure = recall_change_figure(per_class, "before: x", "after: y")
    assert [(t.name, list(t.y), list(t.text)) for t in figure.data] == [
        ("before: x", [0.5, pytest.approx(float("nan"), nan_ok=True)], ["50%", ""]),
        ("after: y", [1.0, pytest.approx(float("nan"), nan_ok=True)], ["100%", ""]),
    ]
    with pytest.raises(ValueError, match=r"Received: missing=\['recall_after', 'support'\]"):
        recall_change_figure(per_class[["class", "recall_before"]], "x", "y")


def test_the_runs_page_compares_two_runs_on_their_shared_test_images(relabelled, app_cache, monkeypatch):
    monkeypatch.setenv("CNNLAB_CACHE_DIR", str(app_cache))
    monkeypatch.setenv("CNNLAB_MODELS_DIR", str(relabelled["store"].root))
    st.cache_resource.clear()  # the settings an earlier test's "person" left on this server
    at = open_page(start_app(), "pages/runs.py")
    # The newer run is "after" (its labels are scored), the older "before".
    assert at.selectbox(key="shared-after").value == relabelled["after"].id
    assert at.selectbox(key="shared-before").value == relabelled["before"].id
    at.toggle(key="shared-show").set_value(True).run()
    assert not at.exception, [e.value for e in at.exception]

    expected = compare_runs(relabelled["before"], relabelled["after"], cache=relabelled["cache"])
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Shared test images"] == str(expected.num_shared)
    assert metrics["Accuracy before"] == f"{expected.accuracy_before:.1%}"
    assert metrics["Accuracy after"] == f"{expected.accuracy_after:.1%}"
    assert any("scored against the labels of the newer run, 'relabelled run'" in c.value for c in at.caption)
    chart = next(c for c in at.get("plotly_chart") if c.proto.id.endswith("shared-recall"))
    bars = json.loads(chart.proto.spec)["data"]
    assert [b["x"] for b in bars] == [relabelled["after"].class_names] * 2
    table = next(d.value for d in at.dataframe if "recall_before" in d.value)
    pd.testing.assert_frame_equal(table, expected.per_class, check_dtype=False)
    # The relabelled shared images (old label → new), then those that flipped each way, with both predictions.
    captions = [c for image in at.image for c in image.captions]
    images = expected.images
    changed = images[images["label"] != images["label_before"]]
    assert len(changed) == expected.num_relabelled > 0
    shown = pd.concat([changed, expected.fixed, expected.broken])
    assert captions == [
        f"{f'{r.label_before} → ' if r.label_before != r.label else ''}{r.label} · predicted {r.predicted_before}, "
        f"then {r.predicted_after}"
        for r in shown.itertuples()
    ]

    # The same run on both sides is a message, not a comparison.
    at.selectbox(key="shared-before").set_value(relabelled["after"].id).run()
    assert not at.exception and any("two different runs" in i.value for i in at.info)


def test_runs_compare_on_the_command_line(relabelled, monkeypatch, capsys):
    monkeypatch.setenv("CNNLAB_CACHE_DIR", str(relabelled["cache"]))
    monkeypatch.setenv("CNNLAB_MODELS_DIR", str(relabelled["store"].root))
    before, after = relabelled["before"], relabelled["after"]
    expected = compare_runs(before, after, cache=relabelled["cache"])

    assert main(["compare", before.id, after.name, "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["before"] == before.id and result["after"] == after.id and result["labels_from"] == after.id
    assert result["num_shared"] == expected.num_shared and result["num_relabelled"] == 2
    assert result["accuracy_after"] == pytest.approx(expected.accuracy_after)
    assert [r["path"] for r in result["fixed"]] == list(expected.fixed["path"])
    assert "file" not in (result["fixed"] or result["broken"] or [{}])[0]  # no server path in the output

    assert main(["compare", before.id, after.id]) == 0
    out = capsys.readouterr().out
    assert f"accuracy before {expected.accuracy_before:.1%}  after {expected.accuracy_after:.1%}" in out
    assert f"wrong -> right: {len(expected.fixed)}" in out

    assert main(["compare", before.id, "no-such-run"]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and error.startswith("error: ") and "Received:" in error


def _predictions(run) -> dict[str, str]:
    rows = saved_evaluation(run).predictions
    return dict(zip(rows["path"], rows["predicted_label"], strict=True))


@pytest.fixture(scope="module")
def two_versions(tmp_path_factory):
    """Two runs of one class folder, 'pets': `before` on its version 1, `after` on version 2, where a test
    cat of version 1 is relabelled a dog (`edits.save_version`), as the app's fixers save it."""
    from cnnlab.data import edits, versions
    from cnnlab.runs.store import RunStore
    from cnnlab.runs.workspace import Workspace
    from cnnlab.training.engine import train

    base = tmp_path_factory.mktemp("versions")
    root = write_dataset(base / "pets", per_class=20)
    workspace = Workspace(RunStore(base / "models"), base / "cache", datasets=base / "datasets")
    before = train(
        root, tiny_model_config(), tiny_train_config(), workspace=workspace, name="before", dataset_version=1
    )
    cat = next(p for p in before.split()["test"] if p.startswith("cats/"))
    edits.save_version(versions.open_dataset(root, base / "datasets"), [edits.Relabel(cat, "dogs")])
    after = train(
        root,
        tiny_model_config(learning_rate=0.01),
        tiny_train_config(epochs=3),
        workspace=workspace,
        name="after",
        dataset_version=2,
    )
    return {"before": before, "after": after, "workspace": workspace, "cat": cat, "base": base}


def test_runs_on_two_versions_compare_on_their_shared_test_images_and_name_the_versions(two_versions):
    before, after, cat = two_versions["before"], two_versions["after"], two_versions["cat"]
    comparison = compare_runs(before, after, cache=two_versions["workspace"].cache)

    # A version keeps each image's split: every test image is shared, under its own path.
    test = before.split()["test"]
    assert sorted(after.split()["test"]) == sorted(test)
    assert comparison.num_shared == len(test) and comparison.num_only_before == comparison.num_only_after == 0
    assert list(comparison.images["path"]) == sorted(test) == list(comparison.images["path_before"])
    rows = comparison.images.set_index("path")
    assert comparison.num_relabelled == 1 and (rows.loc[cat, "label"], rows.loc[cat, "label_before"]) == (
        "dogs",
        "cats",
    )
    assert comparison.label_source == "the labels of 'pets' version 2 (the newer run's, 'after')"
    assert (comparison.before_dataset, comparison.before_source) == ("'pets' version 1", "'pets' version 1")
    result = comparison.to_dict()
    assert (result["dataset_before"], result["dataset_after"]) == ("'pets' version 1", "'pets' version 2")

    # Both scored against version 2's labels; the flips by hand from each run's saved predictions.
    label = {p: ("dogs" if p == cat else p.split("/")[0]) for p in test}
    predicted_before, predicted_after = _predictions(before), _predictions(after)
    right_before = {p for p in test if predicted_before[p] == label[p]}
    right_after = {p for p in test if predicted_after[p] == label[p]}
    assert list(rows["label"]) == [label[p] for p in rows.index]
    assert comparison.accuracy_before == pytest.approx(len(right_before) / len(test))
    assert comparison.accuracy_after == pytest.approx(len(right_after) / len(test))
    assert set(comparison.fixed["path"]) == right_after - right_before
    assert set(comparison.broken["path"]) == right_before - right_after


def test_runs_of_two_datasets_made_in_the_app_are_refused_by_name(two_versions):
    from cnnlab.data import edits, versions
    from cnnlab.training.engine import train

    base, workspace = two_versions["base"], two_versions["workspace"]
    zoo = versions.new_dataset("zoo", ["cats", "dogs", "owls"], base / "datasets")
    other = write_dataset(base / "other", per_class=8, seed=5)  # the same classes, other images
    edits.save_version(zoo, [edits.Add(f.read_bytes(), f.name, f.parent.name) for f in sorted(other.glob("*/*.png"))])
    elsewhere = train("zoo", tiny_model_config(), tiny_train_config(epochs=1), workspace=workspace)
    assert elsewhere.record.dataset.name == "zoo"
    with pytest.raises(ValueError, match=r"different datasets \('pets' and 'zoo'\).*Received: runs="):
        compare_runs(two_versions["before"], elsewhere, cache=workspace.cache)
