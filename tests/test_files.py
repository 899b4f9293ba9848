"""Atomic writes: whole files and folders or nothing."""

import json

import pytest

from cnnlab.common.files import atomic_path, atomic_write, build_folder, write_json
from helpers import dead_pid, durably_replaced, synced


def test_write_json_replaces_the_file_whole_and_leaves_no_temporaries(tmp_path):
    path = tmp_path / "run.json"
    write_json(path, {"a": 1})
    write_json(path, {"a": 2, "when": tmp_path})  # non-JSON values are written as text
    assert json.loads(path.read_text()) == {"a": 2, "when": str(tmp_path)}
    assert [p.name for p in tmp_path.iterdir()] == ["run.json"]


def test_write_json_that_fails_keeps_the_old_file(tmp_path):
    path = tmp_path / "run.json"
    write_json(path, {"a": 1})
    with pytest.raises(ValueError):
        write_json(path, {"a": float("nan"), "loop": _circular()})
    assert json.loads(path.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["run.json"]


def _circular() -> dict:
    d: dict = {}
    d["self"] = d
    return d


def test_every_atomic_write_reaches_the_disk_before_its_name_does(tmp_path, disk_calls):
    write_json(tmp_path / "run.json", {"a": 1})
    with atomic_write(tmp_path / "table.csv") as fh:
        fh.write("a,b\n")
    with atomic_path(tmp_path / "model.weights.h5") as tmp:
        tmp.write_bytes(b"weights")
    for name in ("run.json", "table.csv", "model.weights.h5"):
        durably_replaced(disk_calls, tmp_path / name)
    target = build_folder(tmp_path / "run", lambda folder: write_json(folder / "split.json", []))
    assert disk_calls[-2:] == [("replace", target), synced(tmp_path)]


def test_build_folder_renames_a_filled_folder_into_place(tmp_path):
    target = build_folder(tmp_path / "cache" / "data", lambda folder: (folder / "x.txt").write_text("x"))
    assert (target / "x.txt").read_text() == "x"
    assert sorted(p.name for p in target.parent.iterdir()) == ["data"]


def test_build_folder_that_fails_leaves_nothing(tmp_path):
    def fill(folder):
        (folder / "half.txt").write_text("half")
        raise ValueError("converter broke")

    with pytest.raises(ValueError, match="converter broke"):
        build_folder(tmp_path / "data", fill)
    assert list(tmp_path.iterdir()) == []


def test_a_shared_cache_folder_keeps_the_copy_another_process_finished_first(tmp_path):
    target = tmp_path / "data"

    def fill(folder):
        (folder / "mine.txt").write_text("mine")
        target.mkdir()  # another process renames its copy into place meanwhile
        (target / "theirs.txt").write_text("theirs")

    assert build_folder(target, fill, keep_existing=True) == target
    assert [p.name for p in target.iterdir()] == ["theirs.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["data"]


def test_a_folder_that_must_be_new_fails_when_another_writer_got_there_first(tmp_path):
    target = tmp_path / "run"

    def fill(folder):
        (folder / "mine.txt").write_text("mine")
        target.mkdir()
        (target / "theirs.txt").write_text("theirs")

    with pytest.raises(OSError):
        build_folder(target, fill)
    assert [p.name for p in target.iterdir()] == ["theirs.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["run"]


def test_atomic_write_replaces_the_file_whole(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("old")
    with atomic_write(path) as fh:
        fh.write("new é")
        assert path.read_text() == "old"  # readers see the old file until the block ends
    assert path.read_text(encoding="utf-8") == "new é"
    with atomic_write(path, "wb") as fh:
        fh.write(b"\x00\x01")
    assert path.read_bytes() == b"\x00\x01"
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


@pytest.mark.parametrize("existed", [False, True])
def test_a_write_that_fails_midway_leaves_neither_a_new_target_nor_a_temporary(tmp_path, existed):
    path = tmp_path / "cache.npy"
    if existed:
        path.write_bytes(b"whole old file")
    with pytest.raises(RuntimeError, match="disk full"), atomic_write(path, "wb") as fh:
        fh.write(b"half of the new file")
        raise RuntimeError("disk full")
    assert [p.name for p in tmp_path.iterdir()] == (["cache.npy"] if existed else [])
    assert not existed or path.read_bytes() == b"whole old file"


def test_atomic_path_gives_writers_a_file_name_with_the_target_s_suffix(tmp_path):
    path = tmp_path / "model.keras"  # Keras refuses to save to a name that does not end in .keras
    with pytest.raises(ValueError, match="could not save"), atomic_path(path) as tmp:
        assert tmp.parent == tmp_path and tmp.suffix == ".keras" and tmp.name.startswith(".")
        tmp.write_bytes(b"half")
        raise ValueError("could not save")
    assert list(tmp_path.iterdir()) == []
    with atomic_path(path) as tmp:
        tmp.write_bytes(b"whole")
    assert path.read_bytes() == b"whole" and [p.name for p in tmp_path.iterdir()] == ["model.keras"]


def test_temporaries_are_named_for_their_writer_and_removed_once_stale(tmp_path):
    import os
    import subprocess
    import sys
    import time

    from cnnlab.common.files import FOREIGN_MAX_AGE_S, HOST_ID, remove_stale_temporaries, temporary_name, writer_tag

    dead = dead_pid()  # a killed writer's process
    nested = tmp_path / "uploads" / "session"
    nested.mkdir(parents=True)
    live = temporary_name(tmp_path / "model.keras")  # this process, just now: a live writer's
    live.write_bytes(b"x")
    assert live.name.startswith(f".model.keras.{HOST_ID}-{os.getpid()}-") and live.name.endswith(".tmp")
    killed = nested / f".abc123.{writer_tag(dead)}-xyz.tmp"  # a killed extraction's folder
    (killed / "cats").mkdir(parents=True)
    other_host = "ffffffff" if HOST_ID != "ffffffff" else "eeeeeeee"
    elsewhere = tmp_path / f".data.npy.{other_host}-{dead}-k3j2h1.tmp.npy"  # a machine sharing the folder
    elsewhere.write_bytes(b"x")
    users_own = tmp_path / ".notes.k3j2h1.tmp"  # not a name CNN Lab gives: never touched, however old
    users_own.write_text("{}")
    writer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])  # a long-running writer
    working = tmp_path / f".fold-3.{writer_tag(writer.pid)}-abc.tmp"  # e.g. a cross-validation fold's scratch
    working.mkdir()
    hours_ago = time.time() - 7200
    for path in (working, elsewhere, users_own):
        os.utime(path, (hours_ago, hours_ago))  # age alone condemns none of them
    keep = [tmp_path / ".hidden", tmp_path / "run.tmp", nested / "abc123"]
    for path in keep:
        path.mkdir()

    try:
        assert remove_stale_temporaries(tmp_path) == [killed]
        assert live.exists() and working.exists() and elsewhere.exists() and users_own.exists()
        assert all(p.exists() for p in keep)
    finally:
        writer.kill()
        writer.wait()
    assert remove_stale_temporaries(tmp_path) == [working]  # its writer is gone now
    long_ago = time.time() - FOREIGN_MAX_AGE_S - 60  # the other machine's writer left it a day ago
    os.utime(elsewhere, (long_ago, long_ago))
    os.utime(users_own, (long_ago, long_ago))
    assert remove_stale_temporaries(tmp_path) == [elsewhere]
    assert live.exists() and users_own.exists()


def test_atomic_writers_name_their_temporaries_so_the_clean_up_finds_them(tmp_path):
    from cnnlab.common.files import _TEMPORARY, remove_stale_temporaries

    seen = []
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "a.npy") as tmp:
        seen.append(tmp.name)
        raise RuntimeError
    build_folder(tmp_path / "data", lambda folder: seen.append(folder.name))
    assert len(seen) == 2 and all(_TEMPORARY.match(name) for name in seen)
    assert remove_stale_temporaries(tmp_path) == [] and sorted(p.name for p in tmp_path.iterdir()) == ["data"]
