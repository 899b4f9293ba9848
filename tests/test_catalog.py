"""Catalog downloads, end to end against a local HTTP server serving small archives in the real formats.

The catalog's entries carry the real checksums; each test swaps in an entry whose checksums and
sizes describe the fabricated files, so the real download, verification and conversion code runs.
"""

import gzip
import http.server
import io
import os
import pickle
import re
import tarfile
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from e2e_server import free_port
from PIL import Image

from cnnlab.data import catalog
from cnnlab.data.catalog import CATALOG, dataset_folder, download, fetch
from helpers import QuietHandler, digits, mnist_npz, publish


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
    images, labels = digits(per_class=3)
    entry = publish(monkeypatch, www, "mnist", [mnist_npz(images, labels)], max_per_class=2)
    seen: list[tuple[int, int]] = []
    root = download(
        "mnist", tmp_path / "cache", on_progress=lambda done, total: seen.append((done, total)), base_url=base_url
    )

    assert root == dataset_folder("mnist", tmp_path / "cache")
    assert _class_counts(root) == {str(d): 2 for d in range(10)}
    first_seven = np.flatnonzero(labels == 7)[0]
    png = Image.open(root / "7" / f"7_{first_seven:05d}.png")
    assert png.mode == "L" and png.size == (28, 28)
    assert np.array_equal(np.asarray(png), images[first_seven])
    assert seen[0] == (0, entry.size_bytes) and seen[-1] == (entry.size_bytes, entry.size_bytes)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert list((root.parent / "downloads").iterdir()) == []  # the archive goes once converted

    requests = len(QuietHandler.requests)
    assert download("mnist", tmp_path / "cache", base_url=base_url) == root
    assert len(QuietHandler.requests) == requests  # cached: nothing downloaded again


def test_fashion_mnist_reads_the_four_idx_files(server, monkeypatch, tmp_path):
    base_url, www = server
    images, labels = digits(per_class=2)
    files = [_idx(labels[:10], 2049), _idx(images[:10], 2051), _idx(labels[10:], 2049), _idx(images[10:], 2051)]
    publish(monkeypatch, www, "fashion_mnist", files)
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
    publish(monkeypatch, www, "cifar10", [_tar_gz(members)])
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
    publish(monkeypatch, www, "cifar10", [_tar_gz(members)])
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
    entry = publish(monkeypatch, www, "cats_vs_dogs", [buffer.getvalue()], sha256=(None,))
    root = download("cats_vs_dogs", tmp_path / "cache", base_url=base_url)
    assert _class_counts(root) == {"cats": 4, "dogs": 4}
    assert sorted(p.name for p in (root / "cats").iterdir()) == [
        "train_cat.0.jpg",
        "train_cat.1.jpg",
        "validation_cat.0.jpg",
        "validation_cat.1.jpg",
    ]
    assert Image.open(root / "dogs" / "train_dog.0.jpg").format == "JPEG"
    assert entry.sha256 == (None,)


def test_flowers_keeps_its_five_folders(server, monkeypatch, tmp_path):
    base_url, www = server
    members = {"flower_photos/LICENSE.txt": b"credits"}
    for i, name in enumerate(catalog.FLOWER_CLASSES):
        members[f"flower_photos/{name}/{i}_a.jpg"] = _jpeg((50 * i, 100, 100))
    publish(monkeypatch, www, "flowers", [_tar_gz(members)])
    root = download("flowers", tmp_path / "cache", base_url=base_url)
    assert _class_counts(root) == {name: 1 for name in catalog.FLOWER_CLASSES}


def _assert_nothing_left(cache: Path, name: str) -> None:
    assert not dataset_folder(name, cache).exists()
    leftovers = [p.name for p in (cache / "catalog").rglob("*") if p.is_file()]
    assert leftovers == []


def test_checksum_mismatch_is_refused_and_deleted(server, monkeypatch, tmp_path):
    base_url, www = server
    images, labels = digits()
    publish(monkeypatch, www, "mnist", [mnist_npz(images, labels)], sha256=("0" * 64,))
    with pytest.raises(ValueError, match=r"does not match its published SHA-256 checksum.*Received: file=") as info:
        download("mnist", tmp_path / "cache", base_url=base_url)
    assert "\n" not in str(info.value)
    _assert_nothing_left(tmp_path / "cache", "mnist")


def test_size_mismatch_is_refused_when_no_checksum_is_published(server, monkeypatch, tmp_path):
    base_url, www = server
    publish(monkeypatch, www, "cats_vs_dogs", [b"PK not really"], sha256=(None,), file_sizes=(5,))
    with pytest.raises(ValueError, match="does not match its published size"):
        download("cats_vs_dogs", tmp_path / "cache", base_url=base_url)
    _assert_nothing_left(tmp_path / "cache", "cats_vs_dogs")


def test_a_verified_but_unreadable_archive_leaves_nothing(server, monkeypatch, tmp_path):
    base_url, www = server
    publish(monkeypatch, www, "mnist", [b"this is not an npz file"])
    with pytest.raises(ValueError, match="could not be converted"):
        download("mnist", tmp_path / "cache", base_url=base_url)
    assert not dataset_folder("mnist", tmp_path / "cache").exists()
    assert not [p for p in (tmp_path / "cache" / "catalog").iterdir() if p.name.startswith(".")]


def test_offline_gives_one_clear_line(tmp_path, monkeypatch):
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    with pytest.raises(ValueError) as info:  # nobody listens on a free port: the connection is refused
        download("mnist", tmp_path / "cache", base_url=f"http://127.0.0.1:{free_port()}")
    message = str(info.value)
    assert message.startswith("Could not download MNIST digits: no network connection (connection refused).")
    assert message.endswith("Received: name='mnist'") and "\n" not in message
    _assert_nothing_left(tmp_path / "cache", "mnist")


def test_http_errors_are_reported(server, tmp_path):
    base_url, _ = server  # nothing published: 404
    with pytest.raises(ValueError, match="HTTP 404"):
        download("flowers", tmp_path / "cache", base_url=base_url)
    _assert_nothing_left(tmp_path / "cache", "flowers")


def test_a_verified_file_already_downloaded_is_not_fetched_again(server, monkeypatch, tmp_path):
    base_url, www = server
    images, labels = digits()
    entry = publish(monkeypatch, www, "mnist", [mnist_npz(images, labels)])
    downloads = tmp_path / "cache" / "catalog" / "downloads"
    downloads.mkdir(parents=True)
    (downloads / f"mnist-{entry.file_names[0]}").write_bytes((www / entry.file_names[0]).read_bytes())
    root = download("mnist", tmp_path / "cache", base_url=base_url)
    assert sum(_class_counts(root).values()) == len(labels)
    assert QuietHandler.requests == []


class _StallingHandler(http.server.BaseHTTPRequestHandler):
    """Promises a large file, sends a few bytes, then goes silent."""

    def log_message(self, format, *args):
        pass

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "100000")
        self.end_headers()
        self.wfile.write(b"x" * 10)
        self.wfile.flush()
        time.sleep(2)


def test_a_stalled_download_gives_up_with_one_line(monkeypatch, tmp_path):
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setattr(fetch, "STALL_S", 0.5)
    monkeypatch.setattr(fetch, "POLL_S", 0.05)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _StallingHandler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        with pytest.raises(ValueError, match=r"no data arrived for 0.5 s.*Received: name='mnist'") as info:
            download("mnist", tmp_path / "cache", base_url=f"http://127.0.0.1:{httpd.server_address[1]}")
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert "\n" not in str(info.value)
    _assert_nothing_left(tmp_path / "cache", "mnist")


def test_unknown_dataset_name(tmp_path):
    with pytest.raises(ValueError, match=r"Unknown name.*Received: name='imagenet'"):
        download("imagenet", tmp_path)
