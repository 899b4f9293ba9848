"""Duplicates and leakage: planted copies of every kind found, distinct pictures never joined (the
built-in sample's look-alikes included, and no chains of look-alikes), the flags, the one-click
exclusion as a new version, the cache, the command line and bad inputs."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnlab.cli import main
from cnnlab.data import duplicates, edits, versions
from cnnlab.data.duplicates import DuplicateGroup, DuplicateReport, find_duplicates, prepare
from cnnlab.data.sample import write_sample
from helpers import NEAR_KINDS, altered_copy, image_bytes, last_json, one_line_error, scene_image, tree_hashes

CLASSES = ("cats", "dogs", "owls")
PER_CLASS = 20


def planted_folder(root: Path) -> list[tuple[str, str]]:
    """PER_CLASS distinct pictures per class, and copies of some: one of each kind in the same class
    (exact, re-encoded, resized, cropped, recoloured), a resized one under another class, and five
    more exact or re-encoded ones (so that some land in another split than their original).
    Returns the planted pairs (original, copy) as manifest paths."""
    rng = np.random.default_rng(7)
    pictures = {}
    for label in CLASSES:
        (root / label).mkdir(parents=True)
        for j in range(PER_CLASS):
            pictures[f"{label}/{label}_{j:02d}.png"] = picture = scene_image(rng, (64, 64))
            (root / label / f"{label}_{j:02d}.png").write_bytes(image_bytes(picture))
    copies = [(f"cats/cats_{i:02d}.png", "cats", kind) for i, kind in enumerate(("exact", *NEAR_KINDS))]
    copies.append(("dogs/dogs_00.png", "owls", "resized"))
    copies += [(f"owls/owls_{i:02d}.png", "owls", ("exact", "reencoded")[i % 2]) for i in range(5)]
    planted = []
    for original, label, kind in copies:
        data, suffix = altered_copy(pictures[original], kind)
        copy = f"{label}/{Path(original).stem}-{kind}{suffix}"
        (root / copy).write_bytes(data)
        planted.append((original, copy))
    return planted


@pytest.fixture
def folder(tmp_path: Path) -> tuple[Path, list[tuple[str, str]]]:
    root = tmp_path / "pets"
    return root, planted_folder(root)


def open_folder(root: Path, tmp_path: Path, cache: Path) -> versions.Dataset:
    return versions.open_dataset(root, tmp_path / "datasets", cache=cache)


def group_of(report: DuplicateReport) -> dict[str, DuplicateGroup]:
    return {path: group for group in report.groups for path in group.paths}


def test_planted_copies_of_every_kind_are_found_and_distinct_pictures_never_joined(folder, tmp_path, cache_dir):
    root, planted = folder
    dataset = open_folder(root, tmp_path, cache_dir)
    manifest = dataset.manifest()
    report = find_duplicates(dataset, cache=cache_dir)

    groups = group_of(report)
    found = [original in groups and groups[original] is groups.get(copy) for original, copy in planted]
    assert sum(found) / len(planted) >= 0.95, [pair for pair, hit in zip(planted, found, strict=True) if not hit]
    picture = {copy: original for original, copy in planted}
    for group in report.groups:  # precision: every group is one picture and its copies
        assert len({picture.get(path, path) for path in group.paths}) == 1, group.paths
    assert report.num_images == len(manifest.included) == len(CLASSES) * PER_CLASS + len(planted)

    assert groups["cats/cats_00.png"].kind == "exact"
    for original, copy in planted[1:5]:
        assert groups[copy].kind == "near", (original, copy)
    conflicting = groups["owls/dogs_00-resized.png"]
    assert conflicting.conflict and conflicting.labels == ("dogs", "owls")
    assert [g.paths for g in report.conflicts] == [conflicting.paths]

    # Each group's labels and splits are the manifest's; it leaks when it spans train and evaluation.
    for group in report.groups:
        entries = [manifest.entry(path) for path in group.paths]
        assert group.labels == tuple(e.label for e in entries)
        assert group.splits == tuple(e.split for e in entries)
    leaking = {
        (original, copy)
        for original, copy in planted
        if {manifest.entry(original).split, manifest.entry(copy).split} & {"train"}
        and {manifest.entry(original).split, manifest.entry(copy).split} - {"train"}
    }
    assert leaking, "the fixture should put some copies across splits"
    assert {g.paths for g in report.leaks} == {groups[original].paths for original, _ in leaking}
    assert report.groups[: len(report.leaks)] == report.leaks  # leaks listed first
    assert report.leaked_test_paths == {
        path for original, copy in leaking for path in (original, copy) if manifest.entry(path).split == "test"
    }
    assert report.to_dict() == {
        "num_images": report.num_images,
        "groups": [g.to_dict() for g in report.groups],
        "num_leaks": len(report.leaks),
        "num_conflicts": 1,
    }
    assert set(report.groups[0].to_dict()) == {"paths", "labels", "splits", "kind", "leak", "conflict"}


def test_the_built_in_samples_pictures_alike_in_layout_are_not_duplicates(tmp_path, cache_dir):
    # The built-in sample's first 40 pictures of each class: all distinct, many alike in layout (a big
    # light circle on a dark background) and with close hashes; a check without their fine detail
    # made 10 near groups of them.
    root = write_sample(tmp_path / "sample", num_per_class=40)
    report = find_duplicates(open_folder(root, tmp_path, cache_dir), cache=cache_dir)
    assert report.num_images == 200
    assert report.groups == ()


def crop_left(picture: Image.Image) -> Image.Image:
    """The picture with a tenth of its width cut off its left edge."""
    width, height = picture.size
    return picture.crop((round(width * 0.1), 0, width, height))


def test_a_group_never_joins_two_pictures_that_do_not_match(tmp_path, cache_dir):
    # B is A with a tenth cut off its left edge and C is B with another tenth cut off: A matches B and
    # B matches C, but A and C (a fifth cut off) do not match, so no group may hold both.
    a = Image.fromarray(scene_image(np.random.default_rng(1), (96, 96)))
    pictures = {"a": a, "b": crop_left(a), "c": crop_left(crop_left(a))}

    def groups(names: str) -> list[tuple[str, ...]]:
        root = tmp_path / names
        (root / "chain").mkdir(parents=True)
        for name in names:
            (root / "chain" / f"{name}.png").write_bytes(image_bytes(np.asarray(pictures[name])))
        (root / "other").mkdir()  # a dataset needs two classes
        (root / "other" / "x.png").write_bytes(image_bytes(scene_image(np.random.default_rng(2), (96, 96))))
        return [
            group.paths for group in find_duplicates(open_folder(root, tmp_path, cache_dir), cache=cache_dir).groups
        ]

    assert groups("ab") == [("chain/a.png", "chain/b.png")]
    assert groups("bc") == [("chain/b.png", "chain/c.png")]
    assert groups("ac") == []
    together = groups("abc")
    assert len(together) == 1 and together[0] in {("chain/a.png", "chain/b.png"), ("chain/b.png", "chain/c.png")}


def test_excluding_all_but_one_of_each_group_is_a_new_version_and_leaves_the_files_alone(folder, tmp_path, cache_dir):
    root, _planted = folder
    dataset = open_folder(root, tmp_path, cache_dir)
    before = tree_hashes(root)
    report = find_duplicates(dataset, cache=cache_dir)
    exclusions = report.exclusions()
    assert len(exclusions) == sum(len(g.paths) - 1 for g in report.groups)
    saved = edits.save_version(dataset, exclusions)

    assert (saved.version, saved.parent) == (2, 1)
    for group in report.groups:
        kept = [path for path in group.paths if not saved.entry(path).excluded]
        assert kept == [group.keep]
        if "train" in group.splits:
            assert saved.entry(group.keep).split == "train"  # a leak is fixed by keeping the training copy
        for path in group.paths:
            if path != group.keep:
                assert saved.entry(path).reason == f"duplicate of {group.keep}"
    assert find_duplicates(dataset, cache=cache_dir).groups == ()
    assert len(dataset.manifest(1).included) == len(saved.included) + len(exclusions)  # version 1 unchanged
    assert tree_hashes(root) == before

    # Only some groups: those only.
    first = edits.save_version(dataset, report.exclusions(report.conflicts), parent=1)
    assert {e.path for e in first.entries if e.excluded} == {e.path for e in report.exclusions(report.conflicts)}


def test_keep_prefers_a_training_image_then_the_largest_file_then_the_first_path():
    group = DuplicateGroup("near", ("a.png", "b.png", "c.png"), ("x", "x", "y"), ("test", "train", "train"), (9, 5, 5))
    assert group.keep == "b.png" and group.leak and group.conflict
    assert DuplicateGroup("exact", ("a.png", "b.png"), ("x", "x"), ("test", "validation"), (5, 9)).keep == "b.png"
    plain = DuplicateGroup("exact", ("a.png", "b.png"), ("x", "x"), ("validation", "test"), (5, 5))
    assert plain.keep == "a.png" and not plain.leak and not plain.conflict
    report = DuplicateReport((group, plain), num_images=5)
    assert report.leaked_test_paths == {"a.png"}
    assert [(e.path, e.reason) for e in report.exclusions()] == [
        ("a.png", "duplicate of b.png"),
        ("c.png", "duplicate of b.png"),
        ("b.png", "duplicate of a.png"),
    ]


def test_a_second_look_decodes_nothing_even_at_another_version(folder, tmp_path, cache_dir):
    root, planted = folder
    dataset = open_folder(root, tmp_path, cache_dir)
    first = find_duplicates(dataset, cache=cache_dir)
    assert first.decoded == len({e.sha256 for e in dataset.manifest().included}) < first.num_images

    # Overwrite every image with noise of the same size and time: the version still takes the files
    # as its own, so only the cache can give the same answer; decoding them would find no picture.
    for path in root.rglob("*.*"):
        stat = path.stat()
        path.write_bytes(os.urandom(stat.st_size))
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    again = find_duplicates(dataset, cache=cache_dir)
    assert (again.groups, again.num_images, again.decoded) == (first.groups, first.num_images, 0)
    edits.save_version(dataset, [edits.Exclude(planted[0][1])])
    other = find_duplicates(dataset, cache=cache_dir)
    assert other.decoded == 0 and len(other.groups) == len(first.groups) - 1

    uncached = find_duplicates(dataset, 1)  # no cache: every file is decoded, and none is readable
    assert (uncached.groups, uncached.num_images, uncached.decoded) == ((), 0, first.decoded)


def pairs_files(cache: Path) -> dict[str, int]:
    """The kept pairs of each set of images looked at, by file name, with each file's inode (a file
    found again keeps it; one written again, atomically, gets a new one)."""
    return {p.name: p.stat().st_ino for p in cache.rglob("pairs/*.npz")}


def test_the_pairs_among_a_set_of_images_are_kept_for_any_version_or_dataset_with_those_images(
    folder, tmp_path, cache_dir
):
    root, planted = folder
    first = find_duplicates(open_folder(root, tmp_path, cache_dir), cache=cache_dir)
    kept = pairs_files(cache_dir)
    assert len(kept) == 1

    shutil.copytree(root, tmp_path / "copied")  # another dataset (another visitor's) with the same images
    other = find_duplicates(
        versions.open_dataset(tmp_path / "copied", tmp_path / "others", cache=cache_dir), cache=cache_dir
    )
    assert other.groups == first.groups and pairs_files(cache_dir) == kept  # read, not found again

    dataset = open_folder(root, tmp_path, cache_dir)
    edits.save_version(dataset, [edits.Exclude(planted[1][1])])  # a re-encoded copy out: pairs of their own
    fewer = find_duplicates(dataset, cache=cache_dir)
    assert len(fewer.groups) == len(first.groups) - 1 and len(pairs_files(cache_dir)) == 2

    for path in cache_dir.rglob("pairs/*.npz"):
        path.write_bytes(b"damaged")  # a damaged file is found again, and written again whole
    assert find_duplicates(dataset, 1, cache=cache_dir).groups == first.groups
    assert len(pairs_files(cache_dir)) == 2 and pairs_files(cache_dir) != kept


def test_the_pairs_of_the_sets_looked_at_least_recently_are_given_up_first(folder, tmp_path, cache_dir, monkeypatch):
    monkeypatch.setattr(duplicates, "KEPT_PAIRS", 2)
    root, planted = folder
    dataset = open_folder(root, tmp_path, cache_dir)
    find_duplicates(dataset, cache=cache_dir)
    first = set(pairs_files(cache_dir))
    edits.save_version(dataset, [edits.Exclude(planted[1][1])])
    find_duplicates(dataset, cache=cache_dir)
    find_duplicates(dataset, 1, cache=cache_dir)  # version 1 again: its pairs are now the last used
    edits.save_version(dataset, [edits.Exclude(planted[2][1])])
    find_duplicates(dataset, cache=cache_dir)  # a third set: version 2's pairs are given up
    kept = set(pairs_files(cache_dir))
    assert len(kept) == 2 and first < kept


def test_images_prepared_ahead_are_neither_decoded_nor_compared_again(folder, tmp_path, cache_dir):
    """What the hosted warm-up does for the built-in sample, before any visitor makes a version of it."""
    root, _planted = folder
    prepare(sorted(root.rglob("*.*")), cache_dir)
    prepared = pairs_files(cache_dir)
    report = find_duplicates(open_folder(root, tmp_path, cache_dir), cache=cache_dir)
    assert report.decoded == 0 and report.groups and pairs_files(cache_dir) == prepared


def test_unreadable_and_changed_images_are_left_out(folder, tmp_path, cache_dir):
    root, _planted = folder
    cut = image_bytes(scene_image(np.random.default_rng(99), (64, 64)))[:300]  # a header, no whole picture
    (root / "dogs" / "cut.png").write_bytes(cut)
    (root / "owls" / "cut-copy.png").write_bytes(cut)
    dataset = open_folder(root, tmp_path, cache_dir)
    assert {"dogs/cut.png", "owls/cut-copy.png"} <= {e.path for e in dataset.manifest().included}
    (root / "cats" / "cats_00.png").write_bytes(image_bytes(scene_image(np.random.default_rng(5), (64, 64))))

    report = find_duplicates(dataset, cache=cache_dir)
    paths = {path for group in report.groups for path in group.paths}
    assert not paths & {"dogs/cut.png", "owls/cut-copy.png", "cats/cats_00.png"}
    assert "cats/cats_00-exact.png" not in paths  # its original changed since the version was saved
    assert report.num_images == len(dataset.manifest().included) - 3


def test_a_runs_features_confirm_near_pairs_they_cover(folder, tmp_path, cache_dir):
    root, planted = folder
    dataset = open_folder(root, tmp_path, cache_dir)
    plain = find_duplicates(dataset, cache=cache_dir)
    resized_original, resized_copy = planted[2]
    assert group_of(plain)[resized_original] is group_of(plain)[resized_copy]

    same = {e.path: np.ones(4, dtype=np.float32) for e in dataset.manifest().included}
    assert find_duplicates(dataset, cache=cache_dir, features=same).groups == plain.groups
    different = {**same, resized_copy: np.array([1, -1, 1, -1], dtype=np.float32)}
    checked = find_duplicates(dataset, cache=cache_dir, features=different)
    assert resized_copy not in group_of(checked)
    assert len(checked.groups) == len(plain.groups) - 1
    exact_original, exact_copy = planted[0]  # exact copies are the same content: features do not matter
    exact = find_duplicates(dataset, cache=cache_dir, features={**same, exact_copy: -np.ones(4)})
    assert group_of(exact)[exact_original] is group_of(exact)[exact_copy]
    partial = {resized_copy: different[resized_copy]}  # features of one image only: no say
    assert find_duplicates(dataset, cache=cache_dir, features=partial).groups == plain.groups


def test_a_dataset_of_one_image_is_a_one_line_error(tmp_path, cache_dir):
    dataset = versions.new_dataset("solo", ["a", "b"], tmp_path / "datasets")
    with pytest.raises(ValueError, match=r"at least 2 included images.*Received: num_images=0$"):
        find_duplicates(dataset, cache=cache_dir)
    edits.save_version(dataset, [edits.Add(image_bytes(scene_image(np.random.default_rng(0))), "one.png", "a")])
    with pytest.raises(ValueError, match=r"Received: num_images=1$"):
        find_duplicates(dataset, cache=cache_dir)
    with pytest.raises(ValueError, match=r"has no version 7.*Received: version=7"):
        find_duplicates(dataset, 7, cache=cache_dir)


@pytest.fixture
def cli_dirs(isolated_dirs, tmp_path, monkeypatch) -> Path:
    """The command line reads its folders from the environment: point them at this test's own."""
    cache, models = isolated_dirs
    monkeypatch.setenv("CNNLAB_CACHE_DIR", str(cache))
    monkeypatch.setenv("CNNLAB_MODELS_DIR", str(models))
    monkeypatch.setenv("CNNLAB_DATASETS_DIR", str(tmp_path / "datasets"))
    return cache


def test_the_command_line_lists_the_groups_and_prints_them_as_json(folder, tmp_path, capsys, cli_dirs):
    root, _planted = folder
    assert main(["dataset", "duplicates", str(root)]) == 0
    lines = capsys.readouterr().out.splitlines()
    dataset = open_folder(root, tmp_path, cli_dirs)
    report = find_duplicates(dataset, cache=cli_dirs)
    assert report.decoded == 0  # the command line kept the hashes in the same cache
    assert lines[0] == (
        f"Version 1 of 'pets' ({report.num_images} images): {len(report.groups)} duplicate group(s), "
        f"{len(report.leaks)} leaking across splits, 1 with two labels"
    )
    assert any("[conflict]" in line and "owls/dogs_00-resized.png (owls, " in line for line in lines)
    assert sum(line.startswith("  exact") or line.startswith("  near") for line in lines) == len(report.groups)

    assert main(["dataset", "duplicates", str(root), "--version", "1", "--json"]) == 0
    result = last_json(capsys)
    assert result == {"dataset": "pets", "version": 1, **report.to_dict()}
    assert set(result) == {"dataset", "version", "num_images", "groups", "num_leaks", "num_conflicts"}


def test_the_command_line_refuses_in_one_line(tmp_path, capsys, cli_dirs):
    assert main(["dataset", "new", "solo", "--classes", "a,b"]) == 0
    capsys.readouterr()
    assert main(["dataset", "duplicates", "solo"]) == 2
    assert one_line_error(capsys).endswith("Received: num_images=0")
    assert main(["dataset", "duplicates", "solo", "--version", "3"]) == 2
    assert one_line_error(capsys).endswith("Received: version=3")
