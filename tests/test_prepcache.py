"""The prepared-image cache: leases keep arrays in use, the least recently used go first."""

import os
import subprocess
import sys
import time

import pytest

from cnnlab import data
from cnnlab.data import prepcache


def _array(cache, name: str, size: int, used_s_ago: float):
    path = prepcache.folder(cache) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(size))
    when = time.time() - used_s_ago
    os.utime(path, (when, when))
    return path


def test_eviction_removes_the_least_recently_used_arrays_nobody_holds(cache_dir):
    oldest = _array(cache_dir, "a.npy", 400, 300)
    leased = _array(cache_dir, "b.npy", 400, 200)
    newest = _array(cache_dir, "c.npy", 400, 100)
    writing = _array(cache_dir, ".d.npy.0123abcd-123-abc.tmp.npy", 400, 400)
    with prepcache.lease(leased):
        assert leased.name in prepcache.in_use(cache_dir)
        left = prepcache.evict(cache_dir, max_bytes=1000, needed=300)
    assert left == 800 and not oldest.exists()  # still over: what is left is all in use or being written
    assert leased.exists() and writing.exists()  # in use, being written: never evicted
    assert not newest.exists()  # the next oldest went to make room
    assert prepcache.in_use(cache_dir) == set()  # the lease ended with its block


def test_a_leased_array_is_not_evicted_and_the_new_one_is_refused_with_a_reason(cache_dir):
    busy = _array(cache_dir, "busy.npy", 900, 1000)
    with prepcache.lease(busy), pytest.raises(ValueError, match="full with datasets other trainings are using now"):
        prepcache.make_room(cache_dir, needed=200, max_bytes=1000)
    assert busy.exists()
    with pytest.raises(ValueError, match="more than the server's whole .* cache"):
        prepcache.make_room(cache_dir, needed=2000, max_bytes=1000)
    prepcache.make_room(cache_dir, needed=200, max_bytes=1000)  # the lease is over: now it may go
    assert not busy.exists()


def test_a_lease_of_a_killed_process_no_longer_counts(cache_dir):
    array = _array(cache_dir, "x.npy", 10, 0)
    code = (
        "import os, sys; from pathlib import Path; from cnnlab.data import prepcache; "
        f"held = prepcache.lease(Path({str(array)!r})); held.__enter__(); os._exit(0)"  # killed: never released
    )
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert len(list(array.parent.glob(".x.npy.*.lease"))) == 1
    assert prepcache.in_use(cache_dir) == set()
    assert list(array.parent.glob("*.lease")) == []  # the stale lease is removed


def test_a_lease_from_another_machine_counts_until_left_alone_for_a_day(cache_dir):
    """Its process cannot be checked from here; its pid (dead here) says nothing there."""
    from cnnlab.common.files import FOREIGN_MAX_AGE_S, HOST_ID

    array = _array(cache_dir, "shared.npy", 10, 0)
    other = "ffffffff" if HOST_ID != "ffffffff" else "eeeeeeee"
    token = array.with_name(f".shared.npy.{other}-999999999-ab12{prepcache.LEASE_SUFFIX}")
    token.touch()
    assert prepcache.in_use(cache_dir) == {"shared.npy"}
    assert prepcache.evict(cache_dir, max_bytes=0) == 10 and array.exists()
    long_ago = time.time() - FOREIGN_MAX_AGE_S - 60
    os.utime(token, (long_ago, long_ago))
    assert prepcache.in_use(cache_dir) == set() and not token.exists()


def test_prepare_evicts_to_fit_the_budget_and_keeps_what_training_uses(make_dataset, cache_dir):
    first = data.scan(make_dataset(per_class=4), cache=cache_dir)
    second = data.scan(make_dataset(per_class=5, seed=1), cache=cache_dir)
    with data.open_prepared(first, (64, 64), cache=cache_dir, max_cache_mb=1) as kept:
        assert kept.images.shape == (12, 64, 64, 3)  # 0.15 MB, leased while this block runs
        data.prepare(second, (128, 128), cache=cache_dir, max_cache_mb=1)  # 0.7 MB: both fit in 1 MB
        with pytest.raises(ValueError, match="full with datasets other trainings are using now"):
            data.prepare(second, (144, 144), cache=cache_dir, max_cache_mb=1)  # 0.93 MB: only with the first gone
        assert kept.cache_path.exists() and kept.images.sum() > 0
    data.prepare(second, (144, 144), cache=cache_dir, max_cache_mb=1)  # the training is over: now it fits
    names = sorted(p.name for p in prepcache.folder(cache_dir).iterdir())
    assert names == [f"{second.fingerprint}-144x144-rgb-stretch-v{data.CACHE_VERSION}.npy"]


def _version_report(dataset, version=None):
    from cnnlab.data import versions

    return versions.version_data(dataset, version).report


def test_a_version_that_differs_by_k_images_decodes_only_those_k(make_dataset, cache_dir, tmp_path):
    import numpy as np

    from cnnlab.data import edits, images, versions
    from cnnlab.data.edits import Add, Exclude, Relabel
    from helpers import class_image, image_bytes

    folder = make_dataset(per_class=6)
    dataset = versions.open_dataset(folder, tmp_path / "datasets")
    v1 = data.prepare(_version_report(dataset), (16, 16), cache=cache_dir)
    assert v1.decoded == 18 and not v1.from_cache
    rows = {sha: v1.images[i] for i, sha in enumerate(v1.report.hashes)}

    edits.save_version(dataset, [Relabel("cats/cats_000.png", "dogs"), Exclude("owls/owls_001.png")])
    v2 = data.prepare(_version_report(dataset), (16, 16), cache=cache_dir)
    assert v2.decoded == 0 and not v2.from_cache and v2.cache_path != v1.cache_path  # a new array, copied
    assert v2.report.counts == {"cats": 5, "dogs": 7, "owls": 5}
    assert v2.labels[v2.report.files.index("cats/cats_000.png")] == v2.report.class_names.index("dogs")
    for i, sha in enumerate(v2.report.hashes):
        assert np.array_equal(v2.images[i], rows[sha])

    pngs = [image_bytes(class_image((90, 90, 90), np.random.default_rng(seed), (20, 20))) for seed in (1, 2)]
    edits.save_version(dataset, [Add(png, f"{i}.png", "owls") for i, png in enumerate(pngs)])
    v3 = data.prepare(_version_report(dataset), (16, 16), cache=cache_dir)
    assert v3.decoded == 2 and len(v3.report.files) == 19
    for i, (rel, sha) in enumerate(zip(v3.report.files, v3.report.hashes, strict=True)):
        expected = rows[sha] if sha in rows else images.load_array(v3.report.path_of(rel), (16, 16), "rgb", "stretch")
        assert np.array_equal(v3.images[i], expected)

    again = data.prepare(_version_report(dataset), (16, 16), cache=cache_dir)
    assert again.from_cache and again.decoded == 0
    other_size = data.prepare(_version_report(dataset), (12, 12), cache=cache_dir)
    assert other_size.decoded == 19  # rows are copied only between arrays of the same settings
    unversioned = data.prepare(data.scan(folder, cache=cache_dir), (16, 16), cache=cache_dir)
    assert unversioned.decoded == 18  # a folder as it is names no image by content: nothing to copy from


def test_a_donor_whose_room_the_new_array_needs_is_evicted_and_everything_decoded(make_dataset, cache_dir, tmp_path):
    from cnnlab.data import edits, versions
    from cnnlab.data.edits import Relabel

    dataset = versions.open_dataset(make_dataset(per_class=15), tmp_path / "datasets")
    first = data.prepare(_version_report(dataset), (80, 80), cache=cache_dir, max_cache_mb=1)  # 0.86 MB
    edits.save_version(dataset, [Relabel("cats/cats_000.png", "dogs")])
    second = data.prepare(_version_report(dataset), (80, 80), cache=cache_dir, max_cache_mb=1)
    assert second.decoded == 45 and not first.cache_path.exists()  # two do not fit in 1 MB
    assert not prepcache.rows_path(first.cache_path).exists()  # the list of its rows went with it
    assert prepcache.rows_path(second.cache_path).read_text().split() == list(second.report.hashes)
