"""Catalog downloads, end to end against a local HTTP server serving small archives in the real formats.

The catalog's entries carry the real checksums; each test swaps in an entry whose checksums and
sizes describe the fabricated files, so the real download, verification and conversion code runs.
"""

import dataclasses
import gzip
import hashlib
import http.server
import io
import os
import pickle
import re
import socket
import tarfile
import threading
import zipfile
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnlab import catalog
from cnnlab.catalog import CATALOG, dataset_folder, download


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    requests: list[str] = []

    def log_message(self, format, *args):  # keep test output clean
        pass

    def do_GET(self):
        _QuietHandler.requests.append(self.path)
        super().do_GET()


@pytest.fixture
def server(tmp_path, monkeypatch):
    """A localhost HTTP server over `tmp_path/www`; yields (base_url, folder)."""
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    root = tmp_path / "www"
    root.mkdir()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietHandler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    _QuietHandler.requests = []
    yield f"http://127.0.0.1:{httpd.server_address[1]}", root
    httpd.shutdown()
    httpd.server_close()


def _publish(monkeypatch, folder: Path, name: str, files: list[bytes], **changes) -> catalog.CatalogEntry:
    """Serve `files` under the entry's file names and point the entry's checksums at them."""
    entry = CATALOG[name]
    for file_name, data in zip(entry.file_names, files):
        (folder / file_name).write_bytes(data)
    fields = {
        "file_sizes": tuple(len(d) for d in files),
        "sha256": tuple(hashlib.sha256(d).hexdigest() for d in files),
        **changes,
    }
    replaced = dataclasses.replace(entry, **fields)
    monkeypatch.setitem(CATALOG, name, replaced)
    return replaced


def _npz(images: np.ndarray, labels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    half = len(labels) // 2
    np.savez(buffer, x_train=images[:half], y_train=labels[:half], x_test=images[half:], y_test=labels[half:])
    return buffer.getvalue()


def _digits(per_class: int = 3) -> tuple[np.ndarray, np.ndarray]:
    labels = np.tile(np.arange(10, dtype=np.uint8), per_class)
    images = np.random.default_rng(0).integers(0, 256, size=(len(labels), 28, 28), dtype=np.uint8)
    return images, labels


def _idx(array: np.ndarray, magic: int) -> bytes:
    header = magic.to_bytes(4, "big") + len(array).to_bytes(4, "big")
    if array.ndim == 3:
        header += array.shape[1].to_bytes(4, "big") + array.shape[2].to_bytes(4, "big")
    return gzip.compress(header + array.astype(np.uint8).tobytes())


def _jpeg(color: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (20, 16), color).save(buffer, format="JPEG")
    return buffer.getvalue()


def _tar_gz(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _cifar_batch(rng: np.random.Generator, n: int) -> tuple[bytes, np.ndarray, list[int]]:
    data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
    labels = [i % 10 for i in range(n)]
    # Protocol 2, bytes keys: the shape of the real Python 2 pickles.
    batch = pickle.dumps({b"batch_label": b"x", b"labels": labels, b"data": data, b"filenames": []}, protocol=2)
    return batch, data, labels


def _class_counts(root: Path) -> dict[str, int]:
    return {p.name: len(list(p.iterdir())) for p in sorted(root.iterdir())}


def test_catalog_entries_are_complete():
    assert set(CATALOG) == {"cats_vs_dogs", "flowers", "mnist", "fashion_mnist", "cifar10"}
    for entry in CATALOG.values():
        assert len(entry.urls) == len(entry.file_sizes) == len(entry.sha256) >= 1
        assert all(url.startswith("https://") for url in entry.urls)
        assert all(s is None or re.fullmatch(r"[0-9a-f]{64}", s) for s in entry.sha256)
        assert entry.size_bytes == sum(entry.file_sizes) > 0
        assert entry.num_classes == len(set(entry.class_names)) >= 2
        assert entry.file_format in catalog.CONVERTERS
        assert entry.title and entry.description and entry.license
        assert all("/" not in c for c in entry.class_names)


def test_mnist_downloads_verifies_converts_and_caches(server, monkeypatch, tmp_path):
    base_url, www = server
    images, labels = _digits(per_class=3)
    entry = _publish(monkeypatch, www, "mnist", [_npz(images, labels)], max_per_class=2)
    seen: list[tuple[int, int]] = []
    root = download("mnist", tmp_path / "cache", on_progress=lambda done, total: seen.append((done, total)), base_url=base_url)

    assert root == dataset_folder("mnist", tmp_path / "cache")
    assert _class_counts(root) == {str(d): 2 for d in range(10)}
    first_seven = np.flatnonzero(labels == 7)[0]
    png = Image.open(root / "7" / f"7_{first_seven:05d}.png")
    assert png.mode == "L" and png.size == (28, 28)
    assert np.array_equal(np.asarray(png), images[first_seven])
    assert seen[0] == (0, entry.size_bytes) and seen[-1] == (entry.size_bytes, entry.size_bytes)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert list((root.parent / "downloads").iterdir()) == []  # the archive goes once converted

    requests = len(_QuietHandler.requests)
    assert download("mnist", tmp_path / "cache", base_url=base_url) == root
    assert len(_QuietHandler.requests) == requests  # cached: nothing downloaded again


def test_fashion_mnist_reads_the_four_idx_files(server, monkeypatch, tmp_path):
    base_url, www = server
    images, labels = _digits(per_class=2)
    files = [_idx(labels[:10], 2049), _idx(images[:10], 2051), _idx(labels[10:], 2049), _idx(images[10:], 2051)]
    _publish(monkeypatch, www, "fashion_mnist", files)
    root = download("fashion_mnist", tmp_path / "cache", base_url=base_url)
    assert _class_counts(root) == {name: 2 for name in sorted(catalog.FASHION_CLASSES)}
    assert np.array_equal(np.asarray(Image.open(root / "sandal" / "sandal_00015.png")), images[15])


def test_cifar10_reads_the_python_batches(server, monkeypatch, tmp_path):
    base_url, www = server
    rng = np.random.default_rng(1)
    members, first = {}, None
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch, data, _ = _cifar_batch(rng, 10)
        members[f"cifar-10-batches-py/{name}"] = batch
        first = data if first is None else first
    members["cifar-10-batches-py/readme.html"] = b"<html></html>"
    _publish(monkeypatch, www, "cifar10", [_tar_gz(members)])
    root = download("cifar10", tmp_path / "cache", base_url=base_url)
    assert _class_counts(root) == {name: 6 for name in sorted(catalog.CIFAR10_CLASSES)}
    png = Image.open(root / "bird" / "bird_00002.png")
    assert png.mode == "RGB" and png.size == (32, 32)
    assert np.array_equal(np.asarray(png), first[2].reshape(3, 32, 32).transpose(1, 2, 0))


def test_cifar10_refuses_pickles_that_run_code(server, monkeypatch, tmp_path):
    base_url, www = server

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    members = {f"cifar-10-batches-py/data_batch_{i}": pickle.dumps(Evil(), protocol=2) for i in range(1, 6)}
    _publish(monkeypatch, www, "cifar10", [_tar_gz(members)])
    with pytest.raises(ValueError, match="could not be converted"):
        download("cifar10", tmp_path / "cache", base_url=base_url)
    assert not dataset_folder("cifar10", tmp_path / "cache").exists()


def test_cats_vs_dogs_merges_train_and_validation(server, monkeypatch, tmp_path):
    base_url, www = server
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for split in ("train", "validation"):
            for animal, color in (("cats", (200, 120, 40)), ("dogs", (40, 90, 200))):
                for i in range(2):
                    zf.writestr(f"cats_and_dogs_filtered/{split}/{animal}/{animal[:-1]}.{i}.jpg", _jpeg(color))
        zf.writestr("cats_and_dogs_filtered/vectorize.py", b"print('not an image')")
    # This entry has no published SHA-256: the fabricated file is checked by its size.
    entry = _publish(monkeypatch, www, "cats_vs_dogs", [buffer.getvalue()], sha256=(None,))
    root = download("cats_vs_dogs", tmp_path / "cache", base_url=base_url)
    assert _class_counts(root) == {"cats": 4, "dogs": 4}
    assert sorted(p.name for p in (root / "cats").iterdir()) == [
        "train_cat.0.jpg", "train_cat.1.jpg", "validation_cat.0.jpg", "validation_cat.1.jpg"
    ]
    assert Image.open(root / "dogs" / "train_dog.0.jpg").format == "JPEG"
    assert entry.sha256 == (None,)


def test_flowers_keeps_its_five_folders(server, monkeypatch, tmp_path):
    base_url, www = server
    members = {"flower_photos/LICENSE.txt": b"credits"}
    for i, name in enumerate(catalog.FLOWER_CLASSES):
        members[f"flower_photos/{name}/{i}_a.jpg"] = _jpeg((50 * i, 100, 100))
    _publish(monkeypatch, www, "flowers", [_tar_gz(members)])
    root = download("flowers", tmp_path / "cache", base_url=base_url)
    assert _class_counts(root) == {name: 1 for name in catalog.FLOWER_CLASSES}


def _assert_nothing_left(cache: Path, name: str) -> None:
    assert not dataset_folder(name, cache).exists()
    leftovers = [p.name for p in (cache / "catalog").rglob("*") if p.is_file()]
    assert leftovers == []


def test_checksum_mismatch_is_refused_and_deleted(server, monkeypatch, tmp_path):
    base_url, www = server
    images, labels = _digits()
    _publish(monkeypatch, www, "mnist", [_npz(images, labels)], sha256=("0" * 64,))
    with pytest.raises(ValueError, match=r"does not match its published SHA-256 checksum.*Received: sha256=") as info:
        download("mnist", tmp_path / "cache", base_url=base_url)
    assert "\n" not in str(info.value)
    _assert_nothing_left(tmp_path / "cache", "mnist")


def test_size_mismatch_is_refused_when_no_checksum_is_published(server, monkeypatch, tmp_path):
    base_url, www = server
    _publish(monkeypatch, www, "cats_vs_dogs", [b"PK not really"], sha256=(None,), file_sizes=(5,))
    with pytest.raises(ValueError, match="does not match its published size"):
        download("cats_vs_dogs", tmp_path / "cache", base_url=base_url)
    _assert_nothing_left(tmp_path / "cache", "cats_vs_dogs")


def test_a_verified_but_unreadable_archive_leaves_nothing(server, monkeypatch, tmp_path):
    base_url, www = server
    _publish(monkeypatch, www, "mnist", [b"this is not an npz file"])
    with pytest.raises(ValueError, match="could not be converted"):
        download("mnist", tmp_path / "cache", base_url=base_url)
    assert not dataset_folder("mnist", tmp_path / "cache").exists()
    assert not [p for p in (tmp_path / "cache" / "catalog").iterdir() if p.name.startswith(".")]


def test_offline_gives_one_clear_line(tmp_path, monkeypatch):
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    with socket.socket() as s:  # a port nobody listens on: the connection is refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ValueError) as info:
        download("mnist", tmp_path / "cache", base_url=f"http://127.0.0.1:{port}")
    message = str(info.value)
    assert message.startswith("Could not download MNIST digits: no network connection (connection refused).")
    assert message.endswith("Received: name='mnist'") and "\n" not in message
    _assert_nothing_left(tmp_path / "cache", "mnist")


def test_http_errors_are_reported(server, tmp_path):
    base_url, _ = server  # nothing published: 404
    with pytest.raises(ValueError, match="HTTP 404"):
        download("flowers", tmp_path / "cache", base_url=base_url)
    _assert_nothing_left(tmp_path / "cache", "flowers")


def test_unknown_dataset_name(tmp_path):
    with pytest.raises(ValueError, match=r"Unknown name.*Received: name='imagenet'"):
        download("imagenet", tmp_path)
