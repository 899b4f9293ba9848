"""The run store: atomic folders, crash-proof listing, interrupted runs, rename, delete and look-up."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cnnlab.runs import heartbeat
from cnnlab.runs.record import DatasetInfo, HistoryRow, Metrics, RunRecord, SweepTrial
from cnnlab.runs.store import RunStore
from helpers import dead_pid

REPO_ROOT = Path(__file__).resolve().parent.parent
EMPTY_SPLIT = {"train": [], "validation": [], "test": []}


def make_run(store: RunStore, **record):
    return store.create(RunRecord(**record), EMPTY_SPLIT)


def test_create_writes_a_complete_run_folder(tmp_path):
    store = RunStore(tmp_path / "models")
    split = {"train": ["a/1.png"], "validation": ["b/2.png"], "test": ["a/3.png"]}
    run = store.create(RunRecord(name="first", model_config={"filters": 4}), split)
    assert run.path.parent == tmp_path / "models" and run.id == run.path.name
    record = json.loads((run.path / "run.json").read_text())
    assert record["id"] == run.id and record["name"] == "first"
    assert record["status"] == "running" and run.status == "running"  # this process is the writer
    assert record["pid"] == os.getpid() and record["host"] == socket.gethostname()
    assert record["created"].endswith("+00:00")
    assert record["history"] == [] and record["metrics"] == {} and record["error"] is None
    assert "python" in record["versions"]
    assert run.split() == split
    assert sorted(p.name for p in run.path.iterdir()) == ["heartbeat", "run.json", "split.json"]
    assert [p.name for p in (tmp_path / "models").iterdir()] == [run.id]  # no staging folder left


def test_a_run_without_a_name_is_named_by_its_id(tmp_path):
    run = make_run(RunStore(tmp_path), name="")
    assert run.name == run.id
    assert json.loads((run.path / "run.json").read_text())["name"] == run.id


def test_update_and_history_are_written_atomically(tmp_path):
    run = make_run(RunStore(tmp_path))
    run.append_history(HistoryRow(epoch=1, loss=1.0))
    run.append_history(HistoryRow(epoch=2, loss=0.5))
    run.update(status="completed")
    again = RunStore(tmp_path).get(run.id)
    assert [row.epoch for row in again.history] == [1, 2]
    assert again.status == "completed"
    assert sorted(p.name for p in run.path.iterdir()) == [
        ".run.lock",
        "heartbeat",
        "run.json",
        "split.json",
    ]  # no temp files


def test_a_running_run_whose_writer_is_gone_is_interrupted(tmp_path):
    store = RunStore(tmp_path)
    run = make_run(store)  # its heartbeat is fresh: created just now
    run.update(pid=dead_pid())
    assert store.get(run.id).status == "interrupted"
    run.update(pid=None)
    assert store.get(run.id).status == "interrupted"
    run.update(pid=0)  # not "every process in my group"
    assert store.get(run.id).status == "interrupted"
    run.update(host="another-machine", pid=dead_pid())
    assert store.get(run.id).status == "running"  # another machine's pid cannot be checked: the heartbeat decides
    run.update(host=socket.gethostname(), status="completed")
    assert store.get(run.id).status == "completed"


def age_heartbeat(run, seconds: float) -> None:
    beat = run.path / heartbeat.HEARTBEAT_FILE
    then = time.time() - seconds
    os.utime(beat, (then, then))


def test_a_stale_heartbeat_is_interrupted_whatever_pid_and_host_it_recorded(tmp_path):
    store = RunStore(tmp_path)
    unrelated = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        run = make_run(store, name="orphan")
        run.update(pid=unrelated.pid)  # a live process that is not the training (a reused pid)
        assert store.get(run.id).status == "running"
        age_heartbeat(run, heartbeat.STALE_S + 5)
        assert store.get(run.id).status == "interrupted"
        assert store.get(run.id).summary()["status"] == "interrupted"
        run.update(host="a-container-that-was-recreated")
        assert store.get(run.id).status == "interrupted"
        store.rename(run.id, "renamed orphan")  # no longer locked as "still training"
        store.delete(run.id)
        assert store.list() == []
    finally:
        unrelated.kill()
        unrelated.wait()


def test_a_record_without_a_heartbeat_is_interrupted(tmp_path):
    store = RunStore(tmp_path)
    run = make_run(store)
    (run.path / heartbeat.HEARTBEAT_FILE).unlink()  # a run written before heartbeats existed
    assert store.get(run.id).status == "interrupted"


def test_a_training_beats_while_it_runs_and_stops_beating_after(tmp_path):
    store = RunStore(tmp_path)
    run = make_run(store)
    age_heartbeat(run, heartbeat.STALE_S + 5)
    with heartbeat.beating(run.path, every_s=0.05):
        assert store.get(run.id).status == "running"  # beaten on entry
        age_heartbeat(run, heartbeat.STALE_S + 5)
        deadline = time.monotonic() + 10
        while heartbeat.age_s(run.path) > 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert heartbeat.age_s(run.path) < 1  # beaten again by the timer thread
    age_heartbeat(run, 10)
    time.sleep(0.2)
    assert heartbeat.age_s(run.path) >= 10  # no beat after the block


def test_listing_skips_leftovers_and_broken_folders(tmp_path):
    root = tmp_path / "models"
    store = RunStore(root)
    good = make_run(store, name="good")
    # Leftovers of interrupted writes: a staging folder, a half-deleted run, temp files in a run.
    staging = root / f".{good.id}.x1y2"
    staging.mkdir()
    (staging / "run.json").write_text(json.dumps({"id": "staging", "created": "2999"}))
    shutil.copytree(good.path, root / ".deleted-old-abc123")
    (good.path / ".run.json.abc.tmp").write_text('{"half": ')
    (good.path / ".model.keras.1234.keras").write_bytes(b"PK\x03")
    # Folders that are not runs.
    (root / "empty").mkdir()
    (root / "garbage").mkdir()
    (root / "garbage" / "run.json").write_text("{not json")
    (root / "binary").mkdir()
    (root / "binary" / "run.json").write_bytes(b"\xff\xfe\x00")
    (root / "a-list").mkdir()
    (root / "a-list" / "run.json").write_text("[1, 2]")
    (root / "notes.txt").write_text("hi")

    listed = store.list()
    assert [r.id for r in listed] == [good.id]
    assert listed[0].summary()["name"] == "good"
    assert store.get(good.id).name == "good"


def test_list_is_newest_first_and_filters_by_owner_and_sweep(tmp_path):
    store = RunStore(tmp_path)
    old = make_run(store, name="old", owner="alice")
    mid = make_run(store, name="mid", owner=None, sweep=SweepTrial("s1", 0))
    new = make_run(store, name="new", owner="bob")
    for run, created in (
        (old, "2024-01-01T00:00:00+00:00"),
        (mid, "2024-06-01T00:00:00+00:00"),
        (new, "2025-01-01T00:00:00+00:00"),
    ):
        run.update(created=created)
    assert [r.name for r in store.list()] == ["new", "mid", "old"]
    # A visitor's view holds their own runs only, not those without an owner (issue 27, item 1).
    assert [r.name for r in RunStore(tmp_path, owner="alice").list()] == ["old"]
    assert [r.name for r in store.list(sweep="s1")] == ["mid"]
    assert RunStore(tmp_path / "does-not-exist").list() == []


def test_get_by_id_name_and_path(tmp_path):
    store = RunStore(tmp_path / "models")
    run = make_run(store, name="My run")
    assert store.get(run.id).path == run.path
    assert store.get("My run").path == run.path
    assert store.get(run.path).path == run.path
    assert store.get(str(run.path)).path == run.path
    with pytest.raises(ValueError, match=r"No run found.*Received: run='nope'"):
        store.get("nope")


def test_rename(tmp_path):
    store = RunStore(tmp_path)
    run = make_run(store, name="before", status="completed")
    renamed = store.rename(run.id, "  after  ")
    assert renamed.name == "after"
    assert store.get("after").id == run.id
    with pytest.raises(ValueError, match="No run found"):
        store.get("before")
    for bad in ("", "   ", "x" * 81):
        with pytest.raises(ValueError, match=r"1 to 80 characters.*Received: name="):
            store.rename(run.id, bad)
    assert store.get(run.id).name == "after"


def test_delete_removes_the_folder(tmp_path):
    store = RunStore(tmp_path)
    keep, drop = make_run(store, name="keep", status="completed"), make_run(store, name="drop", status="completed")
    store.delete("drop")
    assert not drop.path.exists()
    assert [r.name for r in store.list()] == ["keep"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [keep.id]  # no trash left behind
    with pytest.raises(ValueError, match="No run found"):
        store.delete("drop")


def test_the_demo_run_is_listed_but_cannot_be_deleted(tmp_path):
    demo_store = RunStore(tmp_path / "shipped")
    demo = make_run(demo_store, name="Demo model")
    demo.update(status="completed")
    store = RunStore(tmp_path / "models", demo=demo.path)
    mine = make_run(store, name="mine")
    assert {r.name for r in store.list()} == {"Demo model", "mine"}
    assert store.get("Demo model").is_demo and not mine.is_demo
    assert [r.name for r in RunStore(tmp_path / "models").list()] == ["mine"]
    with pytest.raises(ValueError, match=r"demo model is part of the app and cannot be deleted.*Received: run="):
        store.delete("Demo model")
    with pytest.raises(ValueError, match=r"demo model is part of the app and cannot be renamed"):
        store.rename("Demo model", "mine now")
    assert demo.path.is_dir() and store.get(demo.id).name == "Demo model"


def test_summary_row(tmp_path):
    run = make_run(
        RunStore(tmp_path),
        name="r",
        model_config={"image_size": [32, 48], "filters": 4, "conv_blocks": 1},
        train_config={"batch_size": 8, "epochs": 2},
        dataset=DatasetInfo(path="/data/flowers"),
    )
    run.update(status="completed", metrics=Metrics(test_accuracy=0.5, best_val_accuracy=0.75), history=(HistoryRow(1),))
    row = run.summary()
    assert row["image_size"] == "32x48" and row["dataset"] == "flowers"
    assert row["epochs_run"] == 1 and row["test_accuracy"] == 0.5 and row["best_val_accuracy"] == 0.75
    assert row["batch_size"] == 8 and row["filters"] == 4 and row["status"] == "completed"


KILL_SCRIPT = """
import sys
from pathlib import Path
from cnnlab.model import ModelConfig
from cnnlab.runs.store import RunStore
from cnnlab.runs.workspace import Workspace
from cnnlab.training.engine import TrainConfig, train

model_config = ModelConfig(image_size=(32, 32), conv_blocks=1, filters=4, dense_units=8, dropout=0.0, flip="none", rotation=0.0)
train(sys.argv[1], model_config, TrainConfig(epochs=1000, batch_size=8, patience=0), workspace=Workspace(RunStore(sys.argv[2]), Path(sys.argv[3])), name="doomed")
"""


@pytest.mark.slow
def test_a_killed_training_is_listed_as_interrupted_with_a_loadable_model(make_dataset, tmp_path):
    root = make_dataset(classes=("a", "b"), per_class=10)
    models = tmp_path / "killed-models"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    log = tmp_path / "writer.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", KILL_SCRIPT, str(root), str(models), str(tmp_path / "cache")],
            env=env,
            stdout=out,
            stderr=out,
        )
    store = RunStore(models)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            listed = store.list()  # listing while the writer works must never break
            if listed and listed[0].history:
                break
            time.sleep(0.05)
        else:
            pytest.fail(f"the training never recorded an epoch: {log.read_text()[-2000:]}")
        assert listed[0].status == "running"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()  # reaped: a zombie would still answer os.kill(pid, 0)

    (run,) = store.list()
    assert run.name == "doomed"
    assert run.status == "interrupted"
    assert run.record.status == "running"  # the record itself was never finished ...
    assert len(run.history) >= 1
    model = run.load_model()  # ... but the model saved after the first epoch is whole
    assert model.output_shape == (None, 1)
    assert store.get(run.id).summary()["status"] == "interrupted"


def test_a_run_still_training_cannot_be_renamed_or_deleted(tmp_path):
    store = RunStore(tmp_path)
    run = make_run(store, name="busy")  # created "running" by this (live) process
    with pytest.raises(ValueError, match=r"still training and cannot be renamed.*Received: run="):
        store.rename(run.id, "new name")
    with pytest.raises(ValueError, match=r"still training and cannot be deleted"):
        store.delete(run.id)
    run.update(status="stopped")
    store.rename(run.id, "new name")
    store.delete(run.id)
    assert store.list() == []


@pytest.mark.parametrize("damage", ["not a zip", "truncated", "no model inside"])
def test_a_damaged_model_file_is_unreadable_not_missing(trained_run, tmp_path, damage):
    import zipfile

    store = RunStore(tmp_path)
    shutil.copytree(trained_run["run"].path, tmp_path / "copy")
    model_file = tmp_path / "copy" / "model.keras"
    good = model_file.read_bytes()
    if damage == "not a zip":
        model_file.write_bytes(b"these are not the weights you are looking for")
    elif damage == "truncated":
        model_file.write_bytes(good[: len(good) // 2])
    else:
        with zipfile.ZipFile(model_file, "w") as zf:
            zf.writestr("notes.txt", "no config.json, no weights")
    with pytest.raises(
        ValueError, match=r"model file of run 'shared tiny run' is unreadable.*Received: run='copy'$"
    ) as info:
        store.get("copy").load_model()
    assert "\n" not in str(info.value) and str(tmp_path) not in str(info.value)


def test_an_update_from_an_older_copy_keeps_what_others_wrote_since(tmp_path):
    """Issue 27, item 7: a sync holds the record it read before a long upload, then marks the run published."""
    from cnnlab.team.tracking import mark

    run = make_run(RunStore(tmp_path))
    run.update(status="completed")
    syncing = RunStore(tmp_path).get(run.id)  # read before the upload
    RunStore(tmp_path).rename(run.id, "renamed meanwhile")  # another tab, during the upload
    mark(syncing, "key-1", "team-1", published=True)
    again = RunStore(tmp_path).get(run.id)
    assert again.name == "renamed meanwhile"
    assert again.record.team is not None and again.record.team.published


CLAIMER = """
import sys, time
from pathlib import Path
from cnnlab.runs.store import RunStore
run = RunStore(sys.argv[1]).get(sys.argv[2])
assert run.status == "interrupted"  # each process sees it free to resume...
Path(sys.argv[3]).touch()
while not Path(sys.argv[4]).exists():  # ...and both claim it at the same moment
    time.sleep(0.01)
try:
    run.claim()
    print("claimed", flush=True)
    time.sleep(4)  # a live writer, as a training is
except ValueError as exc:
    print("refused", str(exc).splitlines()[0], flush=True)
"""


@pytest.mark.slow
def test_two_processes_resuming_one_run_get_one_writer(tmp_path):
    """Issue 27, item 6: the status check and the claim are minutes apart in a resume; the claim decides."""
    run = make_run(RunStore(tmp_path / "models"))
    run.update(pid=dead_pid())  # its training died: interrupted
    go = tmp_path / "go"
    procs = []
    for i in range(2):
        ready = tmp_path / f"ready-{i}"
        cmd = [sys.executable, "-c", CLAIMER, str(tmp_path / "models"), run.id, str(ready), str(go)]
        procs.append((subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=REPO_ROOT), ready))
    deadline = time.time() + 120
    while not all(ready.exists() for _, ready in procs) and time.time() < deadline:
        time.sleep(0.05)
    go.touch()
    outputs = sorted(proc.communicate(timeout=120)[0].strip() for proc, _ in procs)
    assert outputs[0] == "claimed", outputs
    assert outputs[1].startswith("refused Run") and "was resumed meanwhile by another process" in outputs[1]


def test_a_writer_whose_run_was_taken_over_stops_writing(tmp_path):
    store = RunStore(tmp_path)
    slow = make_run(store)  # its training, starved long enough for its heartbeat to go stale
    stale = time.time() - 2 * heartbeat.STALE_S
    os.utime(slow.path / heartbeat.HEARTBEAT_FILE, (stale, stale))
    other = RunStore(tmp_path).get(slow.id)
    other.update(pid=dead_pid())  # as another process would see it: its own claim below records itself
    other.claim()
    other.update(host="another-machine")  # the new writer, elsewhere
    with pytest.raises(ValueError, match="is now written by another process"):
        slow.append_history(HistoryRow(epoch=1, loss=1.0))
    assert RunStore(tmp_path).get(slow.id).history == ()
