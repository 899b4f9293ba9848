"""`cnnlab dataset`: every sub-command, its --json result, its one-line refusals, and a class folder
that no edit ever writes to."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from cnnlab.cli import main
from cnnlab.runs.store import RunStore
from helpers import TINY, class_image, image_bytes, last_json, one_line_error, tree_hashes, write_dataset


@pytest.fixture(autouse=True)
def datasets_dir(isolated_dirs, tmp_path, monkeypatch) -> Path:
    """The command line reads its folders from the environment: point them at this test's own."""
    cache, models = isolated_dirs
    monkeypatch.setenv("CNNLAB_CACHE_DIR", str(cache))
    monkeypatch.setenv("CNNLAB_MODELS_DIR", str(models))
    monkeypatch.setenv("CNNLAB_DATASETS_DIR", str(tmp_path / "datasets"))
    return tmp_path / "datasets"


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return write_dataset(tmp_path / "pets", per_class=6)


def photo(tmp_path: Path, name: str, seed: int) -> Path:
    """A new PNG file, outside any dataset."""
    path = tmp_path / "photos" / name
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(image_bytes(class_image((90, 160, 30), np.random.default_rng(seed))))
    return path


def run_json(capsys, *argv: str) -> dict:
    assert main([*argv, "--json"]) == 0
    return last_json(capsys)


def test_a_dataset_made_from_class_names_grows_by_added_images(tmp_path, capsys, datasets_dir):
    made = run_json(capsys, "dataset", "new", "birds", "--classes", "robin, wren", "--test-split", "0.2")
    assert (made["dataset"], made["version"], made["classes"], made["source"]) == ("birds", 1, ["robin", "wren"], None)
    first = json.loads((datasets_dir / "birds" / "versions" / "v0001.json").read_text())
    assert (first["validation_split"], first["test_split"], first["seed"]) == (0.15, 0.2, 1337)

    good = [photo(tmp_path, f"robin{i}.png", seed=i) for i in range(3)]
    added = run_json(capsys, "dataset", "add", "birds", "robin", *map(str, good))
    assert (added["version"], added["parent"], added["change"]) == (2, 1, "3 added")
    assert added["counts"] == {"robin": 3, "wren": 0} and added["refused"] == []
    assert len(list((datasets_dir / "birds" / ".added").iterdir())) == 3

    again = run_json(capsys, "dataset", "add", "birds", "owl", str(photo(tmp_path, "owl.png", seed=9)), "--new-class")
    assert again["version"] == 3 and again["counts"] == {"owl": 1, "robin": 3, "wren": 0}

    rows = run_json(capsys, "dataset", "versions", "birds")["versions"]
    assert [(r["version"], r["parent"], r["num_images"], r["change"]) for r in rows] == [
        (1, None, 0, "made with classes robin, wren"),
        (2, 1, 3, "3 added"),
        (3, 2, 4, "1 added"),
    ]
    listed = run_json(capsys, "dataset", "list")["datasets"]
    assert [(d["dataset"], d["latest"], d["num_images"]) for d in listed] == [("birds", 3, 4)]


def test_add_leaves_out_refused_files_with_a_reason_each_and_saves_the_others(tmp_path, capsys, datasets_dir):
    assert main(["dataset", "new", "birds", "--classes", "robin,wren"]) == 0
    first = photo(tmp_path, "robin.png", seed=1)
    assert main(["dataset", "add", "birds", "robin", str(first)]) == 0
    capsys.readouterr()
    broken = tmp_path / "photos" / "broken.png"
    broken.write_bytes(b"not a png")
    fresh = photo(tmp_path, "wren.png", seed=2)
    argv = [str(fresh), str(broken), str(first), str(fresh), str(tmp_path / "missing.png")]

    assert main(["dataset", "add", "birds", "wren", *argv]) == 0
    captured = capsys.readouterr()
    warnings = captured.err.strip().splitlines()
    assert len(warnings) == 4 and all(w.startswith("warning: not added: ") for w in warnings)
    assert "not an image" in warnings[0] and "in the dataset already as '.added/" in warnings[1]
    assert "given before" in warnings[2] and "No such file" in warnings[3]
    assert "Saved version 3 of 'birds' (from version 2): 1 added (4 refused, named above)" in captured.out

    assert main(["dataset", "add", "birds", "wren", str(broken), str(first), "--json"]) == 2
    line = one_line_error(capsys)
    assert line.startswith("error: No image could be added, so nothing was saved: ")
    assert "broken.png" in line and "robin.png" in line and line.endswith("Received: images=2")
    assert run_json(capsys, "dataset", "versions", "birds")["versions"][-1]["version"] == 3


def test_edits_of_a_class_folder_make_versions_and_never_touch_its_files(folder, tmp_path, capsys, datasets_dir):
    user_files = tree_hashes(folder)
    relabelled = run_json(
        capsys,
        "dataset",
        "relabel",
        str(folder),
        "cats/cats_000.png",
        str(folder / "cats/cats_001.png"),
        "--to",
        "dogs",
    )
    assert (relabelled["version"], relabelled["parent"], relabelled["change"]) == (2, 1, "2 relabelled")
    assert relabelled["counts"] == {"cats": 4, "dogs": 8, "owls": 6} and relabelled["source"] == str(folder)
    excluded = run_json(capsys, "dataset", "exclude", str(folder), "owls/owls_002.png", "--reason", "blurry")
    assert (excluded["version"], excluded["change"], excluded["counts"]["owls"]) == (3, "1 excluded", 5)
    restored = run_json(capsys, "dataset", "restore", str(folder), "owls/owls_002.png")
    assert (restored["version"], restored["change"], restored["counts"]["owls"]) == (4, "1 restored", 6)
    moved = run_json(capsys, "dataset", "relabel", str(folder), "owls/owls_003.png", "--to", "bats", "--new-class")
    assert moved["version"] == 5 and moved["counts"]["bats"] == 1

    change = run_json(capsys, "dataset", "diff", str(folder), "1", "v3")
    assert change["summary"] == "2 relabelled, 1 excluded"
    assert change["relabelled"] == [
        {"path": "cats/cats_000.png", "old": "cats", "new": "dogs"},
        {"path": "cats/cats_001.png", "old": "cats", "new": "dogs"},
    ]
    assert (change["excluded"], change["restored"], change["added"], change["removed"]) == (
        ["owls/owls_002.png"], [], [], []
    )  # fmt: skip
    assert run_json(capsys, "dataset", "diff", str(folder), "3", "4")["restored"] == ["owls/owls_002.png"]

    out = tmp_path / "out" / "pets-v3.zip"
    exported = run_json(capsys, "dataset", "export", str(folder), "--version", "3", "--out", str(out))
    assert (exported["version"], exported["num_images"], exported["zip"]) == (3, 17, str(out))
    with zipfile.ZipFile(out) as zf:
        names = set(zf.namelist())
    assert len(names) == 17 and "dogs/cats_000.png" in names and "owls/owls_002.png" not in names

    assert tree_hashes(folder) == user_files
    assert [d.name for d in datasets_dir.iterdir()] == [next(datasets_dir.iterdir()).name]  # one dataset, kept apart
    listed = run_json(capsys, "dataset", "list")["datasets"]
    assert [(d["dataset"], d["source"], d["latest"]) for d in listed] == [("pets", str(folder), 5)]


def test_text_output_names_versions_changes_and_where_the_zip_went(folder, tmp_path, capsys):
    assert main(["dataset", "relabel", str(folder), "cats/cats_000.png", "--to", "owls"]) == 0
    assert capsys.readouterr().out.strip() == "Saved version 2 of 'pets' (from version 1): 1 relabelled"
    assert main(["dataset", "versions", str(folder)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == f"Dataset 'pets' ({folder}):"
    assert lines[1].startswith("  v1    from -") and lines[1].endswith(
        "18 images: cats 6, dogs 6, owls 6  | the class folder as it was"
    )
    assert lines[2].startswith("  v2    from v1") and lines[2].endswith("cats 5, dogs 6, owls 7  | 1 relabelled")
    assert main(["dataset", "diff", str(folder), "1", "2"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "Dataset 'pets', version 1 -> 2: 1 relabelled",
        "  relabelled cats/cats_000.png: cats -> owls",
    ]
    assert main(["dataset", "export", str(folder), "--out", str(tmp_path / "v2.zip")]) == 0
    assert (
        capsys.readouterr().out.strip()
        == f"Exported version 2 of 'pets' (18 images in 3 classes) to {tmp_path / 'v2.zip'}"
    )


def test_json_may_come_before_or_after_the_sub_command(folder, capsys):
    assert main(["dataset", "--json", "versions", str(folder)]) == 0
    assert last_json(capsys)["versions"][0]["version"] == 1
    assert main(["dataset", "versions", str(folder), "--json"]) == 0
    assert last_json(capsys)["versions"][0]["version"] == 1


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["diff", "{folder}", "1", "7"], "has no version 7; its versions are 1. Received: version=7"),
        (["export", "{folder}", "--version", "4", "--out", "x.zip"], "has no version 4"),
        (["diff", "{folder}", "1", "latest"], "expected a version number such as 3 or v3; got 'latest'"),
        (["relabel", "{folder}", "cats/cats_000.png", "--to", "cows"], "or ask for a new class (--new-class)"),
        (["add", "{folder}", "cows", "{photo}"], "or ask for a new class (--new-class)"),
        (["relabel", "{folder}", "cats/nope.png", "--to", "dogs"], "No image at that path in version 1"),
        (["exclude", "{folder}", "/elsewhere/cats_000.png"], "Received: image='/elsewhere/cats_000.png'"),
        (["restore", "{folder}", "cats/cats_000.png"], "is not excluded, so there is nothing to restore"),
        (["relabel", "{folder}", "cats/cats_000.png", "--to", "cats"], "is already labelled 'cats'; choose another"),
        (["relabel", "{folder}", "cats/cats_000.png", "dogs/x.png", "--to", "owls"], "Received: image='dogs/x.png'"),
        (["new", "my pets", "--classes", "a,b"], "A dataset name is 1-64 letters"),
        (["new", "pets", "--classes", "a,a"], "Give one or more class names, each once"),
        (["new", "pets", "--classes", "a,b", "--test-split", "0.9"], "test_split"),
        (["versions", "no-such-dataset"], "No such dataset folder or dataset name"),
        (["versions", "/no/such/folder"], "Dataset folder not found"),
        (["versions", "~nosuchuser-cnnlab/pets"], "names no user on this machine"),
        (["relabel", "{folder}", "cats/cats_000.png"], "the following arguments are required: --to"),
        ([], "the following arguments are required: subcommand"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_saves_nothing(argv, expected, folder, tmp_path, capsys, datasets_dir):
    assert main(["dataset", "versions", str(folder)]) == 0  # version 1 of the folder exists
    capsys.readouterr()
    given = {"{folder}": str(folder), "{photo}": str(photo(tmp_path, "cow.png", seed=3))}
    assert main(["dataset", *(given.get(a, a) for a in argv)]) == 2
    assert expected in one_line_error(capsys)
    assert sorted(p.name for p in datasets_dir.rglob("v*.json")) == ["v0001.json"]


def test_a_made_dataset_name_is_refused_twice_and_a_path_names_the_folder(folder, capsys, datasets_dir):
    assert main(["dataset", "new", "pets", "--classes", "a,b"]) == 0
    assert main(["dataset", "new", "pets", "--classes", "a,b"]) == 2
    assert "exists already" in one_line_error(capsys)
    # "pets" is the dataset made above; the folder called pets is named by its path.
    assert run_json(capsys, "dataset", "versions", "pets")["source"] is None
    assert run_json(capsys, "dataset", "versions", str(folder))["source"] == str(folder)


def test_scan_makes_no_version(folder, capsys, datasets_dir):
    assert main(["scan", str(folder), "--json"]) == 0
    assert last_json(capsys)["num_images"] == 18
    assert not datasets_dir.exists()


def test_train_on_a_chosen_version_records_it_and_runs_shows_it(folder, capsys, isolated_dirs):
    assert main(["dataset", "relabel", str(folder), "cats/cats_000.png", "--to", "dogs"]) == 0
    assert main(["train", str(folder), *TINY, "--dataset-version", "1", "--name", "on v1", "--json"]) == 0
    on_first = last_json(capsys)["run_id"]
    assert main(["train", str(folder), *TINY, "--name", "on latest", "--json"]) == 0
    on_latest = last_json(capsys)["run_id"]

    store = RunStore(isolated_dirs[1])
    first, latest = store.get(on_first).record.dataset, store.get(on_latest).record.dataset
    assert (first.name, first.version, latest.name, latest.version) == ("pets", 1, "pets", 2)
    rows = run_json(capsys, "runs")["runs"]
    assert {r["name"]: r["dataset_version"] for r in rows if r["id"] in (on_first, on_latest)} == {
        "on v1": 1,
        "on latest": 2,
    }
    assert main(["runs"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(on_first in line and "pets v1" in line for line in lines)
    assert any(on_latest in line and "pets v2" in line for line in lines)

    assert main(["train", str(folder), *TINY, "--dataset-version", "9"]) == 2
    assert "has no version 9" in one_line_error(capsys)


def test_continuing_a_run_takes_no_dataset_version(capsys):
    assert main(["train", "--continue-from", "demo", "--epochs", "1", "--dataset-version", "2"]) == 2
    assert one_line_error(capsys).endswith("Received: options=['epochs', 'dataset_version']")
