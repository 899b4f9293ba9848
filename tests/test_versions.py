"""Dataset versions and edits: manifests that never change, an overlay that never touches the user's
files, splits that stay put across versions, and every refusal of a bad edit."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import numpy as np
import pytest

from cnnlab.data import edits, versions
from cnnlab.data.edits import Add, Exclude, Relabel, Restore
from helpers import CLASS_COLORS, class_image, image_bytes, tree_hashes, write_dataset


def new_png(seed: int, color=(120, 120, 0)) -> bytes:
    return image_bytes(class_image(color, np.random.default_rng(seed)))


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return write_dataset(tmp_path / "pets", per_class=10)


def test_version_1_is_the_folder_split_as_a_training_splits_it(folder: Path, tmp_path: Path) -> None:
    from cnnlab.data import scan, split

    dataset = versions.open_dataset(folder, tmp_path / "datasets", validation_split=0.2, test_split=0.2, seed=7)
    manifest = dataset.manifest()
    report = scan(folder)
    assert manifest.version == 1 and manifest.parent is None
    assert [e.path for e in manifest.entries] == list(report.files)
    assert manifest.counts == {"cats": 10, "dogs": 10, "owls": 10}
    expected = split(report.labels, 0.2, 0.2, 7)
    data = versions.version_data(dataset)
    for part in versions.PARTS:
        assert data.parts()[part].tolist() == expected[part].tolist()
    # Opening again changes nothing: same version, same split.
    again = versions.open_dataset(folder, tmp_path / "datasets")
    assert again.latest() == 1 and again.manifest() == manifest


def test_two_programs_opening_a_folder_at_once_share_its_version_instead_of_failing(
    folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The loser of the race read "no version yet" just before the winner saved version 1.
    winner = versions.open_dataset(folder, tmp_path / "datasets")
    real_latest = versions.Dataset.latest
    stale = [0]
    monkeypatch.setattr(versions.Dataset, "latest", lambda self: stale.pop() if stale else real_latest(self))
    loser = versions.open_dataset(folder, tmp_path / "datasets")
    assert loser.version_numbers() == [1] and loser.manifest() == winner.manifest()
    # Had the folder changed in between, the loser records the change as the next version.
    (folder / "cats" / "extra.png").write_bytes(new_png(5, CLASS_COLORS["cats"]))
    stale.append(0)
    changed = versions.open_dataset(folder, tmp_path / "datasets")
    assert changed.version_numbers() == [1, 2] and changed.manifest().parent == 1


def test_edits_make_a_new_version_and_leave_files_and_older_versions_alone(folder: Path, tmp_path: Path) -> None:
    dataset = versions.open_dataset(folder, tmp_path / "datasets")
    user_files = tree_hashes(folder)
    v1_bytes = versions.manifest_path(dataset, 1).read_bytes()
    v2 = edits.save_version(
        dataset,
        [
            Relabel("cats/cats_000.png", "dogs"),
            Relabel("cats/cats_001.png", "owls"),
            Exclude("dogs/dogs_003.png", "blurry"),
        ],
    )
    assert (v2.version, v2.parent, v2.change) == (2, 1, "2 relabelled, 1 excluded")
    assert v2.counts == {"cats": 8, "dogs": 10, "owls": 11}
    v2_bytes = versions.manifest_path(dataset, 2).read_bytes()
    v3 = edits.save_version(dataset, [Add(new_png(1), "new.png", "cats")], parent=2)
    assert (v3.version, v3.parent, v3.change) == (3, 2, "1 added")
    assert versions.manifest_path(dataset, 1).read_bytes() == v1_bytes
    assert versions.manifest_path(dataset, 2).read_bytes() == v2_bytes
    assert tree_hashes(folder) == user_files
    added = [e for e in v3.entries if e.path.startswith(".added/")]
    assert len(added) == 1 and dataset.image_path(added[0].path).read_bytes() == new_png(1)


def test_an_image_keeps_its_split_in_every_version_and_a_new_one_follows_its_hash(folder: Path, tmp_path: Path) -> None:
    dataset = versions.open_dataset(folder, tmp_path / "datasets")
    v1 = {e.path: e.split for e in dataset.manifest(1).entries}
    pngs = [new_png(seed) for seed in range(12)]
    edits.save_version(
        dataset, [Relabel("owls/owls_004.png", "cats"), *[Add(p, f"{i}.png", "dogs") for i, p in enumerate(pngs)]]
    )
    v2 = dataset.manifest(2)
    for entry in v2.entries:
        if entry.path in v1:
            assert entry.split == v1[entry.path]
        else:
            assert entry.split == versions.hash_part(entry.sha256, v2.validation_split, v2.test_split)
    # The same image added to another dataset lands in the same part.
    other = versions.new_dataset("other", ["dogs", "x"], tmp_path / "datasets")
    again = edits.save_version(other, [Add(pngs[0], "a.png", "dogs")])
    sha = hashlib.sha256(pngs[0]).hexdigest()
    assert {e.split for e in again.entries if e.sha256 == sha} == {e.split for e in v2.entries if e.sha256 == sha}


def test_a_changed_folder_makes_a_new_version_that_keeps_the_edits(folder: Path, tmp_path: Path) -> None:
    dataset = versions.open_dataset(folder, tmp_path / "datasets")
    edits.save_version(dataset, [Relabel("cats/cats_000.png", "dogs")])
    (folder / "owls" / "owls_009.png").unlink()
    (folder / "cats" / "extra.png").write_bytes(new_png(5, CLASS_COLORS["cats"]))
    dataset = versions.open_dataset(folder, tmp_path / "datasets")
    v3 = dataset.manifest()
    assert (v3.version, v3.parent) == (3, 2)
    assert v3.change == "the class folder changed: 1 added, 0 changed, 1 removed"
    assert v3.entry("cats/cats_000.png").label == "dogs"
    assert v3.counts == {"cats": 10, "dogs": 11, "owls": 9}


def test_version_data_skips_files_gone_since_and_trains_on_added_images(folder: Path, tmp_path: Path) -> None:
    dataset = versions.open_dataset(folder, tmp_path / "datasets")
    edits.save_version(dataset, [Add(new_png(3), "shot.png", "owls"), Exclude("cats/cats_002.png")])
    (folder / "dogs" / "dogs_005.png").unlink()
    data = versions.version_data(dataset)
    reasons = {s.path: s.reason for s in data.report.skipped}
    assert reasons["dogs/dogs_005.png"] == "file gone since version 2 was saved"
    assert reasons["cats/cats_002.png"] == "excluded: excluded by hand"
    added = next(f for f in data.report.files if f.startswith(".added/"))
    assert data.report.path_of(added).read_bytes() == new_png(3)
    assert data.report.counts == {"cats": 9, "dogs": 9, "owls": 11}
    assert sum(len(v) for v in data.parts().values()) == 29


def test_relabel_keeps_the_images_and_changes_the_fingerprint(folder: Path, tmp_path: Path) -> None:
    dataset = versions.open_dataset(folder, tmp_path / "datasets")
    edits.save_version(dataset, [Relabel("cats/cats_000.png", "dogs")])
    one, two = versions.version_data(dataset, 1).report, versions.version_data(dataset, 2).report
    assert one.files == two.files and one.hashes == two.hashes
    assert one.fingerprint != two.fingerprint


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (Relabel("cats/cats_000.png", "cats"), "already labelled 'cats'"),
        (Relabel("cats/cats_000.png", "dgos"), "There is no class 'dgos'"),
        (Relabel("cats/nope.png", "dogs"), "No image at that path in version 1"),
        (Exclude("nope.png"), "No image at that path"),
        (Restore("cats/cats_000.png"), "is not excluded"),
        (Add(b"not an image", "x.png", "cats"), "not an image"),
        (Relabel("cats/cats_000.png", "a/b", new_class=True), "class name is 1-64 characters"),
    ],
)
def test_bad_edits_are_refused_with_one_line_and_nothing_saved(
    folder: Path, tmp_path: Path, edit, message: str
) -> None:
    dataset = versions.open_dataset(folder, tmp_path / "datasets")
    with pytest.raises(ValueError, match=message) as info:
        edits.save_version(dataset, [edit])
    assert "\n" not in str(info.value) and "Received: " in str(info.value)
    assert dataset.latest() == 1 and not (dataset.folder / ".added").exists()


def test_a_new_class_needs_asking_for(folder: Path, tmp_path: Path) -> None:
    dataset = versions.open_dataset(folder, tmp_path / "datasets")
    v2 = edits.save_version(dataset, [Relabel("cats/cats_000.png", "birds", new_class=True)])
    assert v2.classes == ("birds", "cats", "dogs", "owls") and v2.counts["birds"] == 1


def test_the_same_image_is_not_added_twice_and_the_budget_is_kept(tmp_path: Path) -> None:
    dataset = versions.new_dataset("shots", ["a", "b"], tmp_path / "datasets")
    edits.save_version(dataset, [Add(new_png(1), "1.png", "a")])
    with pytest.raises(ValueError, match="already in the dataset"):
        edits.save_version(dataset, [Add(new_png(1), "again.png", "b")])
    rng = np.random.default_rng(0)
    big = [image_bytes(rng.integers(0, 256, (400, 400, 3), dtype=np.uint8)) for _ in range(3)]  # ~0.5 MB each
    with pytest.raises(ValueError, match="over the 1 MB this server allows"):
        edits.save_version(dataset, [Add(data, f"{i}.png", "a") for i, data in enumerate(big)], max_added_mb=1)
    assert dataset.latest() == 2


def test_a_dataset_made_in_the_app_trains_from_its_added_images(tmp_path: Path) -> None:
    dataset = versions.new_dataset("shots", ["red", "blue"], tmp_path / "datasets")
    adds = [Add(new_png(i, (200, 0, 0)), f"r{i}.png", "red") for i in range(4)]
    adds += [Add(new_png(10 + i, (0, 0, 200)), f"b{i}.png", "blue") for i in range(4)]
    edits.save_version(dataset, adds)
    reopened = versions.open_dataset("shots", tmp_path / "datasets")
    data = versions.version_data(reopened)
    assert data.report.counts == {"blue": 4, "red": 4}
    assert all(data.report.path_of(f).is_file() for f in data.report.files)
    assert [d.name for d in versions.list_datasets(tmp_path / "datasets")] == ["shots"]


def test_diff_and_export(folder: Path, tmp_path: Path) -> None:
    dataset = versions.open_dataset(folder, tmp_path / "datasets")
    edits.save_version(
        dataset, [Relabel("cats/cats_000.png", "dogs"), Exclude("owls/owls_001.png"), Add(new_png(2), "n.png", "owls")]
    )
    change = edits.diff(dataset, 1, 2)
    assert change.relabelled == (("cats/cats_000.png", "cats", "dogs"),)
    assert change.excluded == ("owls/owls_001.png",) and len(change.added) == 1
    assert change.summary == "1 relabelled, 1 excluded, 1 added"
    out = edits.export_zip(dataset, tmp_path / "out" / "v2.zip", version=2)
    with zipfile.ZipFile(out) as zf:
        names = zf.namelist()
    assert "dogs/cats_000.png" in names and "owls/owls_001.png" not in names and len(names) == 30


def test_unknown_version_and_dataset_are_one_line_errors(folder: Path, tmp_path: Path) -> None:
    dataset = versions.open_dataset(folder, tmp_path / "datasets")
    with pytest.raises(ValueError, match=r"has no version 9; its versions are 1\. Received: version=9"):
        dataset.manifest(9)
    with pytest.raises(ValueError, match="No such dataset folder or dataset name"):
        versions.open_dataset("missing", tmp_path / "datasets")
    with pytest.raises(ValueError, match="Dataset folder not found"):  # a path, not a name: the scan says so
        versions.open_dataset(tmp_path / "missing", tmp_path / "datasets")
    with pytest.raises(ValueError, match="exists already"):
        versions.new_dataset("x", ["a", "b"], tmp_path / "datasets")
        versions.new_dataset("x", ["a", "b"], tmp_path / "datasets")


# Training on versions: a workspace with a datasets folder trains on a version and records it.


def versioned(run_store, cache_dir, tmp_path: Path):
    from cnnlab.runs.workspace import Workspace

    return Workspace(run_store, cache_dir, datasets=tmp_path / "datasets")


@pytest.mark.slow
def test_a_training_records_its_version_and_one_version_always_splits_the_same(
    folder: Path, tmp_path: Path, run_store, cache_dir
) -> None:
    from cnnlab.training.engine import train
    from cnnlab.training.plan import training_plan
    from helpers import tiny_model_config, tiny_train_config

    workspace = versioned(run_store, cache_dir, tmp_path)
    first = train(folder, tiny_model_config(), tiny_train_config(epochs=1, test_split=0.2), workspace=workspace)
    dataset = versions.open_dataset(folder, tmp_path / "datasets")
    info = first.record.dataset
    assert (info.name, info.version, info.versions_folder) == ("pets", 1, str(dataset.folder))
    assert info.path == str(folder.resolve()) and info.counts == {"cats": 10, "dogs": 10, "owls": 10}
    by_part = {part: sorted(e.path for e in dataset.manifest(1).entries if e.split == part) for part in versions.PARTS}
    assert {part: sorted(paths) for part, paths in first.split().items()} == by_part

    # Other fractions do not move a version's split: the record says the fractions that made it.
    config = tiny_train_config(epochs=1, validation_split=0.3, test_split=0.3)
    second = train(folder, tiny_model_config(), config, workspace=workspace)
    assert second.split() == first.split()
    assert (second.record.train_config["validation_split"], second.record.train_config["test_split"]) == (0.15, 0.2)

    edits.save_version(dataset, [Relabel("cats/cats_000.png", "dogs"), Exclude("owls/owls_002.png")])
    plan = training_plan(folder, tiny_model_config(), config, workspace=workspace)
    assert plan.dataset_version == 2 and plan.counts == {"cats": 9, "dogs": 11, "owls": 9}
    assert plan.describe()[0] == "Dataset version 2: 29 images (cats 9, dogs 11, owls 9)"
    # The relabelled version's images were all decoded for version 1: training on it decodes none.
    from cnnlab import data

    report = versions.version_data(dataset, 2).report
    assert data.prepare(report, (32, 32), cache=cache_dir).decoded == 0
    third = train(folder, tiny_model_config(), config, workspace=workspace, dataset_version=plan.dataset_version)
    assert third.record.dataset.version == 2 and third.record.dataset.counts == plan.counts
    relabelled = next(part for part, paths in third.split().items() if "cats/cats_000.png" in paths)
    assert "cats/cats_000.png" in first.split()[relabelled]  # same part as in version 1
    assert "owls/owls_002.png" not in sum(third.split().values(), [])
    older = train(folder, tiny_model_config(), config, workspace=workspace, dataset_version=1)
    assert older.record.dataset.version == 1 and older.split() == first.split()


@pytest.mark.slow
def test_a_run_on_a_version_with_an_added_image_evaluates_resumes_continues_and_exports(
    folder: Path, tmp_path: Path, run_store, cache_dir
) -> None:
    import shutil
    import threading

    from cnnlab.analysis.evaluate import evaluate_run, open_split
    from cnnlab.training.engine import train
    from cnnlab.training.hooks import TrainingHooks
    from cnnlab.training.resuming import continue_training, resume
    from helpers import tiny_model_config, tiny_train_config

    workspace = versioned(run_store, cache_dir, tmp_path)
    dataset = versions.open_dataset(folder, tmp_path / "datasets")
    shots = [new_png(seed, CLASS_COLORS["owls"]) for seed in range(6)]
    edits.save_version(
        dataset, [*[Add(p, f"{i}.png", "owls") for i, p in enumerate(shots)], Relabel("cats/cats_001.png", "dogs")]
    )
    stop = threading.Event()
    at_epoch_2 = TrainingHooks(on_batch=lambda p: stop.set() if p["epoch"] == 2 else None, stop_event=stop)
    run = train(folder, tiny_model_config(), tiny_train_config(epochs=2), workspace=workspace, hooks=at_epoch_2)
    assert run.status == "stopped"
    added = sorted(p for paths in run.split().values() for p in paths if p.startswith(".added/"))
    assert len(added) == 6 and run.record.dataset.version == 2
    assert run.image_path(added[0], cache_dir).read_bytes() in shots  # where export reads its check images

    with open_split(run, cache=cache_dir) as (prepared, parts):
        assert {k: len(v) for k, v in parts.items()} == {k: len(v) for k, v in run.split().items()}
        index = prepared.report.files.index("cats/cats_001.png")
        assert prepared.report.class_names[prepared.labels[index]] == "dogs"  # the version's label, not the folder's
    evaluation = evaluate_run(run, cache=cache_dir, refresh=True)
    assert evaluation.warnings == [] and len(evaluation.predictions) == len(run.split()["test"])

    resumed = resume(run.id, workspace=workspace)
    assert resumed.status == "completed" and [row.epoch for row in resumed.history] == [1, 2]
    assert resumed.record.dataset == run.record.dataset
    child = continue_training(run.id, 1, workspace=workspace)
    assert child.status == "completed" and child.record.dataset == run.record.dataset
    assert child.split() == run.split()

    # Without its versions folder (deleted, or a run trained elsewhere) the run's folder is scanned instead.
    shutil.rmtree(dataset.folder)
    fallback = evaluate_run(run, cache=cache_dir, refresh=True)
    assert fallback.dataset_changed and fallback.num_missing == sum(p in run.split()["test"] for p in added)


def test_a_dataset_made_in_the_app_trains_by_name_and_its_run_opens_again(tmp_path: Path, run_store, cache_dir) -> None:
    from cnnlab.analysis.evaluate import open_split
    from cnnlab.training.engine import train
    from helpers import tiny_model_config, tiny_train_config

    workspace = versioned(run_store, cache_dir, tmp_path)
    dataset = versions.new_dataset("shots", ["red", "blue"], tmp_path / "datasets")
    adds = [Add(new_png(i, (200, 0, 0)), f"r{i}.png", "red") for i in range(8)]
    edits.save_version(dataset, [*adds, *[Add(new_png(20 + i, (0, 0, 200)), f"b{i}.png", "blue") for i in range(8)]])
    run = train("shots", tiny_model_config(), tiny_train_config(epochs=1), workspace=workspace)
    info = run.record.dataset
    assert (info.name, info.version, info.path, info.versions_folder) == ("shots", 2, str(dataset.folder), info.path)
    with open_split(run, cache=cache_dir) as (prepared, parts):
        assert prepared.decoded == 0 and sum(len(p) for p in parts.values()) == 16


def test_a_made_datasets_name_wins_over_a_folder_of_that_name_where_the_program_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_dataset(tmp_path / "work" / "docs", classes=("cats", "dogs"), per_class=2)  # like the app's docs folder
    monkeypatch.chdir(tmp_path / "work")
    made = versions.new_dataset("docs", ["a", "b"], tmp_path / "datasets")
    assert versions.open_dataset("docs", tmp_path / "datasets") == made
    folder = versions.open_dataset("./docs", tmp_path / "datasets")
    assert folder.source == tmp_path / "work" / "docs" and folder.manifest().counts == {"cats": 2, "dogs": 2}
