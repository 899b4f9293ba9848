"""Atomic writes: whole files and folders or nothing."""

import json

import pytest

from cnnlab.files import build_folder, write_json


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


def test_build_folder_keeps_a_copy_another_process_finished_first(tmp_path):
    target = tmp_path / "data"

    def fill(folder):
        (folder / "mine.txt").write_text("mine")
        target.mkdir()  # another process renames its copy into place meanwhile
        (target / "theirs.txt").write_text("theirs")

    assert build_folder(target, fill) == target
    assert [p.name for p in target.iterdir()] == ["theirs.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["data"]
