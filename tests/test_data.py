"""A folder dataset: scan, stratified split, the decoded-image cache and the tf.data pipeline."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from cnnlab import data
from cnnlab.data import images
from helpers import class_image, image_bytes, write_dataset


def skipped_reasons(report) -> dict[str, str]:
    return {s.path: s.reason for s in report.skipped}


def rgb(seed=0, size=(16, 16)) -> bytes:
    return image_bytes(class_image((120, 120, 120), np.random.default_rng(seed), size))


# ----------------------------------------------------------------------------------------- scan


def test_scan_finds_sorted_classes_and_every_image(make_dataset):
    root = make_dataset(classes=("owls", "cats", "dogs"), per_class=5)
    report = data.scan(root)
    assert report.class_names == ("cats", "dogs", "owls")
    assert report.num_classes == 3
    assert report.counts == {"cats": 5, "dogs": 5, "owls": 5}
    assert len(report.files) == len(report.labels) == len(report.sizes) == 15
    for rel, label in zip(report.files, report.labels, strict=True):
        assert rel.split("/")[0] == report.class_names[label]
    assert set(report.sizes) == {(32, 32)}
    assert report.skipped == () and report.empty_classes == ()
    assert report.root == root.resolve()
    summary = report.to_dict()
    assert summary["num_images"] == 15 and summary["classes"] == ["cats", "dogs", "owls"]
    assert report.size_stats() == {
        "min_width": 32,
        "median_width": 32.0,
        "max_width": 32,
        "min_height": 32,
        "median_height": 32.0,
        "max_height": 32,
    }


def test_nested_folders_belong_to_their_class_and_extensions_ignore_case(tmp_path):
    root = tmp_path / "data"
    for name in ("a", "b"):
        (root / name / "deep" / "deeper").mkdir(parents=True)
    (root / "a" / "one.JPG").write_bytes(image_bytes(class_image((9, 9, 9), np.random.default_rng(0)), "JPEG"))
    (root / "a" / "deep" / "two.Png").write_bytes(rgb(1))
    (root / "a" / "deep" / "deeper" / "three.jpeg").write_bytes(
        image_bytes(class_image((9, 9, 9), np.random.default_rng(2)), "JPEG")
    )
    (root / "b" / "deep" / "deeper" / "four.PNG").write_bytes(rgb(3))
    report = data.scan(root)
    assert report.class_names == ("a", "b")
    found = dict(zip(report.files, report.labels, strict=True))
    assert found == {"a/deep/deeper/three.jpeg": 0, "a/deep/two.Png": 0, "a/one.JPG": 0, "b/deep/deeper/four.PNG": 1}
    assert report.skipped == ()


def test_every_skip_reason_is_reported(tmp_path, cache_dir):
    root = write_dataset(tmp_path / "data", classes=("cats", "dogs"), per_class=3)
    cats = root / "cats"
    (cats / "zero.png").write_bytes(b"")
    (cats / "notes.jpg").write_text("not really a picture")
    good = (cats / "cats_000.png").read_bytes()
    (cats / "cut.png").write_bytes(good[: len(good) // 2])
    photo = image_bytes(class_image((90, 90, 90), np.random.default_rng(1), (64, 64)), "JPEG")
    (cats / "cut.jpeg").write_bytes(photo[: len(photo) * 3 // 4])
    (cats / "huge.png").write_bytes(rgb(size=(80, 80)))  # 6400 pixels, over the cap passed below
    (cats / "readme.txt").write_text("hello")
    (cats / "icon.ico").write_bytes(b"\0\0\1\0")
    (cats / ".hidden.png").write_bytes(good)
    (cats / ".ipynb_checkpoints").mkdir()
    (cats / ".ipynb_checkpoints" / "ghost.png").write_bytes(good)
    (root / ".git").mkdir()
    (root / ".git" / "stray.png").write_bytes(good)
    (root / "labels.csv").write_text("a,b\n")
    image = Image.new("RGB", (8, 8))
    image.save(cats / "frame.png", "PPM")  # a PPM with a PNG name

    scanned = data.scan(root, max_pixels=5000, cache=cache_dir)
    # Truncated pixel data passes the header check; decoding finds it, and later scans remember it.
    assert {"cats/cut.png", "cats/cut.jpeg"} <= set(scanned.files)
    prepared = data.prepare(scanned, (16, 16), cache=cache_dir)
    report = data.scan(root, max_pixels=5000, cache=cache_dir)
    assert report == prepared.report

    reasons = skipped_reasons(report)
    assert reasons["cats/zero.png"] == "empty file (0 bytes)"
    assert reasons["cats/notes.jpg"].startswith("is not an image")
    assert reasons["cats/cut.png"].startswith("is truncated or corrupt")
    assert reasons["cats/cut.jpeg"].startswith("is truncated or corrupt")
    assert "over the 5,000-pixel safety cap" in reasons["cats/huge.png"]
    assert reasons["cats/readme.txt"] == "unsupported file type '.txt'"
    assert reasons["cats/icon.ico"] == "unsupported file type '.ico'"
    assert reasons["cats/.hidden.png"] == "hidden file"
    assert "not supported" in reasons["cats/frame.png"]
    assert reasons["labels.csv"] == "file outside any class folder"
    assert len(reasons) == 10
    assert all("Received" not in r and "\n" not in r for r in reasons.values())
    # Hidden folders are not data at all: neither classes, nor images, nor skips.
    assert report.class_names == ("cats", "dogs")
    assert not any("ipynb" in f or ".git" in f for f in report.files + tuple(reasons))
    assert report.counts == {"cats": 3, "dogs": 3}
    assert report.to_dict()["skipped"][0] == {"path": "cats/.hidden.png", "reason": "hidden file"}


def not_utf8(folder, name: bytes) -> bytes:
    """The path of `name` (bytes that are not UTF-8, as unzipping a Windows zip leaves) inside `folder`."""
    return os.path.join(os.fsencode(folder), name)


def test_a_file_name_that_is_not_utf8_is_skipped_alone_with_its_reason(tmp_path, cache_dir):
    root = write_dataset(tmp_path / "data", classes=("cats", "dogs"), per_class=3)
    with open(not_utf8(root / "cats", b"caf\xe9.png"), "wb") as fh:
        fh.write(rgb())
    os.mkdir(not_utf8(root, b"r\xe9sum\xe9s"))  # a class folder
    with open(not_utf8(root, b"r\xe9sum\xe9s/one.png"), "wb") as fh:
        fh.write(rgb())
    with open(not_utf8(root, b"notes-\xff.txt"), "wb") as fh:
        fh.write(b"outside the classes")

    report = data.scan(root, cache=cache_dir)

    assert report.class_names == ("cats", "dogs") and report.counts == {"cats": 3, "dogs": 3}
    named = "name is not valid UTF-8 (shown with \\x escapes); rename it"
    assert skipped_reasons(report) == {
        "cats/caf\\xe9.png": f"file {named}",
        "r\\xe9sum\\xe9s": f"folder {named}",
        "notes-\\xff.txt": "file outside any class folder",
    }
    json.dumps(report.to_dict(), ensure_ascii=False).encode("utf-8")  # what the app and the CLI write
    assert data.scan(root, cache=cache_dir) == report  # from the scan cache
    prepared = data.prepare(report, (16, 16), cache=cache_dir)
    assert prepared.report == report and prepared.images.shape == (6, 16, 16, 3)


def test_a_dataset_folder_whose_path_is_not_utf8_is_a_value_error(tmp_path):
    write_dataset(tmp_path / "data", classes=("cats", "dogs"), per_class=2)
    os.rename(tmp_path / "data", not_utf8(tmp_path, b"d\xe4ta"))
    with pytest.raises(ValueError, match=r"path is not valid UTF-8.*Received: data_dir='.*/d\\\\xe4ta'"):
        data.scan(os.fsdecode(not_utf8(tmp_path, b"d\xe4ta")))


def test_empty_class_folder_is_reported_not_a_class(tmp_path):
    root = write_dataset(tmp_path / "data", classes=("a", "c"), per_class=2)
    (root / "b").mkdir()
    (root / "d").mkdir()
    (root / "d" / "broken.png").write_bytes(b"\x89PNG broken")
    report = data.scan(root)
    assert report.class_names == ("a", "c")
    assert report.empty_classes == ("b", "d")
    assert report.labels == (0, 0, 1, 1)  # renumbered: no phantom output for the empty classes
    assert any("Empty class folders ignored: b, d" in note for note in data.report_warnings(report))


def test_fewer_than_two_usable_classes_is_a_value_error(tmp_path):
    root = write_dataset(tmp_path / "data", classes=("only",), per_class=3)
    (root / "other").mkdir()
    (root / "other" / "x.png").write_bytes(b"")
    with pytest.raises(ValueError, match=r"at least two classes.*Received: classes=only=3, skipped=1"):
        data.scan(root)
    with pytest.raises(ValueError, match=r"at least two classes.*Received: classes=none"):
        data.scan(tmp_path / "data" / "other")


def test_symbolic_links_are_never_followed_out_of_the_dataset(tmp_path):
    secret = write_dataset(tmp_path / "elsewhere", classes=("private",), per_class=2)
    root = write_dataset(tmp_path / "data", classes=("cats", "dogs"), per_class=2)
    (root / "stolen").symlink_to(secret / "private", target_is_directory=True)  # a class folder
    (root / "cats" / "more").symlink_to(secret / "private", target_is_directory=True)  # a sub-folder
    (root / "dogs" / "x.png").symlink_to(secret / "private" / "private_000.png")  # a file
    (root / "alias").symlink_to(root / "cats", target_is_directory=True)  # inside: a class like any other

    report = data.scan(root)

    outside = "symbolic link to outside the dataset folder (not followed)"
    links = ("stolen", "cats/more", "alias/more", "dogs/x.png")
    assert skipped_reasons(report) == dict.fromkeys(links, outside)
    assert report.class_names == ("alias", "cats", "dogs")
    assert not any("private" in f for f in report.files)


def test_a_decode_budget_refuses_from_the_headers_before_decoding(tmp_path, cache_dir):
    root = write_dataset(tmp_path / "data", classes=("cats", "dogs"), per_class=2, size=(16, 16))
    # The start of a 3000x3000 PNG: its header opens, decoding would fail, the budget refuses first.
    (root / "cats" / "huge.png").write_bytes(image_bytes(np.zeros((3000, 3000, 3), dtype=np.uint8))[:200])
    with pytest.raises(
        ValueError, match=r"add up to over 9 megapixels.*longest side of \d+ px.*Received: megapixels>=9"
    ):
        data.scan(root, cache=cache_dir, max_total_pixels=5_000_000)
    assert not (cache_dir / "scans").exists()  # a refused dataset leaves no cache entry
    report = data.scan(root, cache=cache_dir, max_total_pixels=10_000_000)
    assert "cats/huge.png" in report.files  # within the budget, and its header is whole
    prepared = data.prepare(report, (16, 16), cache=cache_dir)
    assert skipped_reasons(prepared.report)["cats/huge.png"].startswith("is truncated or corrupt")


def test_a_header_past_the_first_read_is_still_found(tmp_path):
    root = write_dataset(tmp_path / "data", classes=("a", "b"), per_class=2)
    profiled = root / "a" / "profiled.jpg"
    Image.new("RGB", (40, 30), (9, 9, 9)).save(profiled, icc_profile=bytes(3 * data.HEADER_BYTES // 2))
    head = profiled.read_bytes()[: data.HEADER_BYTES]
    with pytest.raises(ValueError):  # the frame header is not in the first read
        images.header_size(head)
    report = data.scan(root)
    assert dict(zip(report.files, report.sizes, strict=True))["a/profiled.jpg"] == (40, 30)


def test_missing_folder_is_a_value_error(tmp_path):
    with pytest.raises(ValueError, match=r"Dataset folder not found.*Received: data_dir="):
        data.scan(tmp_path / "nope")
    (tmp_path / "file.png").write_bytes(rgb())
    with pytest.raises(ValueError, match="Dataset folder not found"):
        data.scan(tmp_path / "file.png")


def test_scan_cache_is_reused_and_a_changed_file_is_checked_again(make_dataset, cache_dir):
    root = make_dataset(classes=("a", "b"), per_class=3)
    target = root / "a" / "a_001.png"
    first = data.scan(root, cache=cache_dir)
    assert "a/a_001.png" in first.files
    assert len(list((cache_dir / "scans").glob("*.json"))) == 1

    # Same name, size and modification time, but now garbage: a second scan trusts the cache.
    stat = target.stat()
    target.write_bytes(b"\0" * stat.st_size)
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    again = data.scan(root, cache=cache_dir)
    assert again.files == first.files and again.skipped == ()

    # A real change (new modification time) is checked again and found.
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    changed = data.scan(root, cache=cache_dir)
    assert "a/a_001.png" not in changed.files
    assert skipped_reasons(changed)["a/a_001.png"].startswith("is not an image")
    assert changed.fingerprint != first.fingerprint


def test_a_damaged_scan_cache_is_recomputed(make_dataset, cache_dir):
    root = make_dataset(classes=("a", "b"), per_class=2)
    first = data.scan(root, cache=cache_dir)
    (entry,) = (cache_dir / "scans").glob("*.json")
    entry.write_text("{not json")
    assert data.scan(root, cache=cache_dir) == first


# ---------------------------------------------------------------------------------------- split


def test_split_is_stratified_disjoint_and_complete():
    labels = np.repeat([0, 1, 2], [20, 40, 100])
    parts = data.split(labels, validation_split=0.15, test_split=0.15, seed=3)
    assert set(parts) == {"train", "validation", "test"}
    everything = np.concatenate(list(parts.values()))
    assert sorted(everything.tolist()) == list(range(len(labels)))  # complete and disjoint
    for label, n in ((0, 20), (1, 40), (2, 100)):
        counts = {name: int(np.sum(labels[idx] == label)) for name, idx in parts.items()}
        assert counts["test"] == pytest.approx(0.15 * n, abs=1)
        assert counts["validation"] == pytest.approx(0.15 * n, abs=1)
        assert counts["train"] == pytest.approx(0.70 * n, abs=2)
    assert all(idx.dtype == np.int64 and np.all(np.diff(idx) > 0) for idx in parts.values())


def test_split_is_reproducible_by_seed():
    labels = np.repeat([0, 1], 30)
    first, again = data.split(labels, seed=5), data.split(labels, seed=5)
    other = data.split(labels, seed=6)
    for name in first:
        np.testing.assert_array_equal(first[name], again[name])
    assert any(not np.array_equal(first[name], other[name]) for name in first)


def test_small_classes_keep_a_training_image():
    parts = data.split([0, 1, 1], validation_split=0.3, test_split=0.3, seed=0)
    assert 0 in parts["train"].tolist()
    assert sorted(np.concatenate(list(parts.values())).tolist()) == [0, 1, 2]
    assert all(len(part) == 0 for part in data.split([]).values())
    no_holdout = data.split([0, 0, 1, 1], validation_split=0.0, test_split=0.0)
    assert no_holdout["train"].tolist() == [0, 1, 2, 3]
    assert len(no_holdout["validation"]) == len(no_holdout["test"]) == 0


@pytest.mark.parametrize(
    "validation_split, test_split, field",
    [
        (-0.1, 0.15, "validation_split"),
        (0.15, 0.95, "test_split"),
        ("0.2", 0.1, "validation_split"),
        (0.5, 0.45, "validation_split"),
    ],
)
def test_bad_fractions_are_value_errors(validation_split, test_split, field):
    with pytest.raises(ValueError, match=f"Received: {field}="):
        data.split([0, 1, 0, 1], validation_split, test_split)


# -------------------------------------------------------------------------------------- prepare


def test_prepare_decodes_once_into_a_memory_mapped_cache(make_dataset, cache_dir):
    root = make_dataset(per_class=4)
    report = data.scan(root)
    prepared = data.prepare(report, (16, 24), cache=cache_dir)
    assert not prepared.from_cache
    assert isinstance(prepared.images, np.memmap)  # streamed from disk, not loaded into RAM
    assert prepared.images.shape == (12, 16, 24, 3) and prepared.images.dtype == np.uint8
    assert prepared.labels.dtype == np.int32 and prepared.labels.tolist() == list(report.labels)
    assert prepared.cache_path.parent == cache_dir / "prepared"
    assert prepared.cache_path.exists()
    assert [p.name for p in prepared.cache_path.parent.iterdir()] == [prepared.cache_path.name]  # no temporaries
    # Row i is file i, decoded exactly as a single image would be.
    from cnnlab.data.images import load_array

    for i in (0, 5, 11):
        np.testing.assert_array_equal(prepared.images[i], load_array(report.root / report.files[i], (16, 24)))

    again = data.prepare(report, (16, 24), cache=cache_dir)
    assert again.from_cache and again.cache_path == prepared.cache_path
    np.testing.assert_array_equal(np.asarray(again.images), np.asarray(prepared.images))

    gray = data.prepare(report, (16, 24), color_mode="grayscale", cache=cache_dir)
    padded = data.prepare(report, (20, 20), resize_mode="pad", cache=cache_dir)
    turned = data.prepare(report, (24, 16), cache=cache_dir)
    assert not gray.from_cache and gray.images.shape == (12, 16, 24, 1)
    assert not padded.from_cache and padded.images.shape == (12, 20, 20, 3)
    assert not turned.from_cache and turned.images.shape == (12, 24, 16, 3)
    assert len({prepared.cache_path, gray.cache_path, padded.cache_path, turned.cache_path}) == 4


def truncate(path, keep: float = 0.5) -> None:
    content = path.read_bytes()
    path.write_bytes(content[: int(len(content) * keep)])


def test_a_file_that_fails_to_decode_is_left_out_with_its_reason_and_remembered(make_dataset, cache_dir):
    root = make_dataset(classes=("a", "b", "c"), per_class=4)
    truncate(root / "a" / "a_001.png")
    truncate(root / "c" / "c_002.png", 0.7)
    report = data.scan(root, cache=cache_dir)
    assert len(report.files) == 12 and report.skipped == ()  # the headers are whole

    prepared = data.prepare(report, (16, 16), cache=cache_dir)
    assert not prepared.from_cache
    gone = {"a/a_001.png", "c/c_002.png"}
    assert {s.path for s in prepared.unreadable} == gone
    assert all(s.reason.startswith("is truncated or corrupt") for s in prepared.unreadable)
    kept = [rel for rel in report.files if rel not in gone]
    assert prepared.report.files == tuple(kept) and skipped_reasons(prepared.report).keys() == gone
    assert prepared.images.shape == (10, 16, 16, 3) and prepared.labels.tolist() == list(prepared.report.labels)
    from cnnlab.data.images import load_array

    for i, rel in enumerate(kept):  # row i is still file i of the report: no gap, no shift
        np.testing.assert_array_equal(prepared.images[i], load_array(root / rel, (16, 16)))
    assert [p.name for p in prepared.cache_path.parent.iterdir()] == [prepared.cache_path.name]  # no temporaries

    # Later scans skip them, with the same fingerprint as the prepared array: nothing is decoded again.
    again = data.scan(root, cache=cache_dir)
    assert again == prepared.report
    reused = data.prepare(again, (16, 16), cache=cache_dir)
    assert reused.from_cache and reused.cache_path == prepared.cache_path
    assert reused.unreadable == prepared.unreadable  # still said, though known before decoding
    # A report that does not know yet (a scan without the cache) gets the same array.
    assert data.prepare(data.scan(root), (16, 16), cache=cache_dir).cache_path == prepared.cache_path


def test_a_class_whose_every_image_fails_to_decode_is_refused_when_preparing(make_dataset, cache_dir):
    root = make_dataset(classes=("a", "b", "c"), per_class=2)
    for path in (root / "b").iterdir():
        truncate(path)
    report = data.scan(root, cache=cache_dir)
    three = data.prepare(report, (16, 16), cache=cache_dir)
    assert three.report.class_names == ("a", "c") and three.report.empty_classes == ("b",)
    assert three.labels.tolist() == [0, 0, 1, 1]  # renumbered: no phantom output for "b"
    truncate(root / "c" / "c_000.png")
    truncate(root / "c" / "c_001.png")
    with pytest.raises(ValueError, match=r"at least two classes.*Received: classes=a=2, skipped=4"):
        data.prepare(data.scan(root, cache=cache_dir), (16, 16), cache=cache_dir)
    assert list((cache_dir / "prepared").glob("*.tmp*")) == []
    with pytest.raises(ValueError, match="at least two classes"):  # known from now on, without decoding
        data.scan(root, cache=cache_dir)


def test_parallel_decoding_matches_inline(make_dataset, monkeypatch, tmp_path):
    root = make_dataset(per_class=6)
    report = data.scan(root)
    inline = data.prepare(report, (24, 24), cache=tmp_path / "inline")
    monkeypatch.setattr("cnnlab.data.prepared.PARALLEL_MIN_FILES", 0)
    parallel_report = data.scan(root, cache=tmp_path / "parallel")
    assert parallel_report == report
    parallel = data.prepare(parallel_report, (24, 24), cache=tmp_path / "parallel")
    assert not parallel.from_cache
    np.testing.assert_array_equal(np.asarray(parallel.images), np.asarray(inline.images))


def test_prepare_rejects_bad_settings(make_dataset, cache_dir):
    report = data.scan(make_dataset(classes=("a", "b"), per_class=2))
    with pytest.raises(ValueError, match="Received: image_size="):
        data.prepare(report, (4, 4), cache=cache_dir)
    with pytest.raises(ValueError, match="Received: color_mode="):
        data.prepare(report, (16, 16), color_mode="cmyk", cache=cache_dir)
    with pytest.raises(ValueError, match="Received: resize_mode="):
        data.prepare(report, (16, 16), resize_mode="zoom", cache=cache_dir)


# --------------------------------------------------------------------------------------- tf.data


def batches_of(ds):
    return [(x.numpy(), y.numpy()) for x, y in ds]


def test_make_dataset_yields_uint8_batches_with_labels(make_dataset, cache_dir):
    report = data.scan(make_dataset(per_class=5))
    prepared = data.prepare(report, (16, 16), cache=cache_dir)
    indices = np.array([0, 3, 7, 8, 14, 2, 9])
    batches = batches_of(data.make_dataset(prepared, indices, batch_size=3))
    assert [x.shape for x, _ in batches] == [(3, 16, 16, 3), (3, 16, 16, 3), (1, 16, 16, 3)]
    assert all(x.dtype == np.uint8 and y.dtype == np.int32 for x, y in batches)
    images = np.concatenate([x for x, _ in batches])
    labels = np.concatenate([y for _, y in batches])
    np.testing.assert_array_equal(images, np.asarray(prepared.images)[indices])
    np.testing.assert_array_equal(labels, np.asarray(report.labels)[indices])


def test_shuffle_depends_on_the_seed(make_dataset, cache_dir):
    prepared = data.prepare(data.scan(make_dataset(per_class=8)), (16, 16), cache=cache_dir)
    indices = np.arange(24)

    def order(seed):
        batches = batches_of(data.make_dataset(prepared, indices, 5, shuffle=True, seed=seed, epochs=range(1)))
        return np.concatenate([x for x, _ in batches]), np.concatenate([y for _, y in batches])

    (images_a, labels_a), (images_b, labels_b), (images_c, _) = order(1), order(1), order(2)
    np.testing.assert_array_equal(images_a, images_b)
    np.testing.assert_array_equal(labels_a, labels_b)
    assert not np.array_equal(images_a, images_c)
    plain = np.asarray(prepared.images)
    assert not np.array_equal(images_a, plain)  # shuffled ...
    position = {plain[i].tobytes(): i for i in range(len(plain))}
    seen = [position[image.tobytes()] for image in images_a]
    assert sorted(seen) == list(range(24))  # ... yet every image exactly once
    np.testing.assert_array_equal(labels_a, prepared.labels[seen])  # labels travel with their images


def test_each_epoch_has_its_own_order_that_a_resumed_training_sees_again(make_dataset, cache_dir):
    prepared = data.prepare(data.scan(make_dataset(per_class=4)), (16, 16), cache=cache_dir)
    indices = np.arange(3, 12)

    def labels(epochs: range) -> list[np.ndarray]:
        batches = batches_of(data.make_dataset(prepared, indices, 4, shuffle=True, seed=5, epochs=epochs))
        return [y for _, y in batches]

    whole, resumed = labels(range(4)), labels(range(2, 4))
    assert [len(y) for y in whole] == [4, 4, 1] * 4  # batches never straddle two epochs
    assert all(np.array_equal(a, b) for a, b in zip(whole[6:], resumed, strict=True))
    orders = [data.epoch_order(indices, 5, epoch) for epoch in range(4)]
    assert all(sorted(order) == list(indices) for order in orders)
    assert len({order.tobytes() for order in orders}) == 4  # a new order every epoch
    np.testing.assert_array_equal(np.concatenate(whole), np.concatenate([prepared.labels[o] for o in orders]))
    with pytest.raises(ValueError, match=r"needs the range of epochs.*Received: epochs=None"):
        data.make_dataset(prepared, indices, 4, shuffle=True)
