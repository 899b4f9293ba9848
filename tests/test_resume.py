"""Resume and continue: a stopped or killed run trains on as if it never stopped; a completed run
trains more epochs as a new run. Compared against uninterrupted runs with the same seed (CPU)."""

import json
import os
import threading
import time

import pytest

import forked
from cnnlab.cli import main
from cnnlab.runs.record import RunRecord
from cnnlab.runs.store import RunStore
from cnnlab.runs.workspace import Workspace
from cnnlab.training.checkpoint import read_state
from cnnlab.training.engine import train
from cnnlab.training.hooks import TrainingHooks
from cnnlab.training.resuming import continue_training, resume
from helpers import dead_pid, durably_replaced, small_cnn, tiny_model_config, tiny_train_config

METRICS = ("loss", "accuracy", "val_loss", "val_accuracy")
# Dropout and a random flip, so the layers' random generators are part of what must be restored.
RANDOM_MODEL = {"dropout": 0.25, "flip": "horizontal"}


def curves(run) -> list[tuple]:
    """Each epoch's number and metrics, the figures that must match between two runs."""
    return [(row["epoch"], *(row[k] for k in METRICS)) for row in run.epoch_rows()]


def outcome(run) -> tuple:
    metrics = run.record.metrics
    return metrics.test_accuracy, metrics.test_loss, run.record.best_epoch, run.status


def test_a_checkpoint_commits_only_weights_already_on_disk(tmp_path, disk_calls):
    from cnnlab.training.checkpoint import save_state

    folder, model = tmp_path / "checkpoint", small_cnn(3)
    for epoch in (1, 2):
        save_state(folder, model, epoch, best_epoch=1, best_loss=0.5)
        weights = durably_replaced(disk_calls, folder / f"epoch-{epoch:04d}.weights.h5")
        commit = durably_replaced(disk_calls, folder / "state.json")
        assert weights < commit  # state.json, the commit point, names weights that are on disk
        del disk_calls[:]
    assert read_state(folder)["weights"] == "epoch-0002.weights.h5"


@pytest.mark.slow
def test_a_stopped_run_resumes_to_the_same_result_as_one_that_never_stopped(make_dataset, run_store, cache_dir):
    data_dir, store = make_dataset(per_class=8), run_store
    config = tiny_train_config(epochs=5, patience=2)
    whole = train(data_dir, tiny_model_config(**RANDOM_MODEL), config, workspace=Workspace(store, cache_dir))

    stop = threading.Event()
    stopped = train(
        data_dir,
        tiny_model_config(**RANDOM_MODEL),
        config,
        workspace=Workspace(store, cache_dir),
        hooks=TrainingHooks(
            on_batch=lambda p: stop.set() if (p["epoch"], p["batch"]) == (3, 2) else None,  # mid-epoch 3
            stop_event=stop,
        ),
    )
    assert stopped.status == "stopped" and [row.epoch for row in stopped.history] == [1, 2, 3]
    assert stopped.history[-1].partial and read_state(stopped.checkpoint_dir)["epoch"] == 2

    replayed: list[dict] = []
    resumed = resume(stopped.id, workspace=Workspace(store, cache_dir), hooks=TrainingHooks(on_epoch=replayed.append))
    assert [row["epoch"] for row in replayed] == [1, 2, 3, 4, 5]  # the kept epochs first, then the new ones
    assert resumed.id == stopped.id and resumed.path == stopped.path  # in place
    assert curves(resumed) == curves(whole)  # each epoch once, the half-trained epoch 3 trained again
    assert outcome(resumed) == outcome(whole)
    # Once completed, only the last epoch's state is kept (what continuing needs).
    state = read_state(resumed.checkpoint_dir)
    assert state["epoch"] == 5 and state["best_weights"] is None
    assert sorted(p.name for p in resumed.checkpoint_dir.iterdir()) == ["epoch-0005.weights.h5", "state.json"]
    with pytest.raises(ValueError, match=r"is completed and cannot be resumed; train more epochs.*Received: run="):
        resume(resumed.id, workspace=Workspace(store, cache_dir))


def test_continuing_trains_on_from_the_final_weights_and_optimizer_state(make_dataset, run_store, cache_dir):
    data_dir, store, model = make_dataset(per_class=8), run_store, tiny_model_config(**RANDOM_MODEL)
    whole = train(data_dir, model, tiny_train_config(epochs=4), workspace=Workspace(store, cache_dir))
    parent = train(data_dir, model, tiny_train_config(epochs=2), workspace=Workspace(store, cache_dir))

    child = continue_training(parent.id, 2, workspace=Workspace(store, cache_dir))

    assert child.id != parent.id and child.status == "completed"
    assert child.record.parent == parent.id and child.record.initial_epoch == 2
    assert child.split() == parent.split() and child.record.dataset == parent.record.dataset
    assert child.train_config().epochs == 4
    # Training on from epoch 2 with the optimizer's state is training 4 epochs in one go.
    assert curves(child) == curves(whole)[2:]
    assert len(parent.history) == 2 and store.get(parent.id).status == "completed"  # the parent is untouched


def test_only_a_completed_run_with_a_training_state_can_be_continued(trained_run, run_store, cache_dir):
    store = run_store
    parent = trained_run["run"]
    recorded = parent.record
    copied = RunRecord(
        model_config=recorded.model_config,
        train_config=recorded.train_config,
        class_names=recorded.class_names,
        dataset=recorded.dataset,
    )
    stopped = store.create(copied, parent.split())  # like the parent, but without its checkpoint
    stopped.update(status="stopped")
    with pytest.raises(ValueError, match=r"only a completed run can be continued, resume it instead"):
        continue_training(stopped.id, 2, workspace=Workspace(store, cache_dir))
    stopped.update(status="completed")
    with pytest.raises(ValueError, match=r"kept no training state to continue from.*Received: run="):
        continue_training(stopped.id, 2, workspace=Workspace(store, cache_dir))


def test_a_run_killed_after_its_training_ended_but_before_it_was_marked_completed_resumes_to_its_result(
    make_dataset, run_store, cache_dir
):
    """Its checkpoint had already given up the best epoch's copy (the saved model holds it)."""
    workspace = Workspace(run_store, cache_dir)
    whole = train(make_dataset(per_class=8), tiny_model_config(), tiny_train_config(epochs=3), workspace=workspace)
    assert read_state(whole.checkpoint_dir)["best_weights"] is None
    record = whole.record
    whole.update(status="running", pid=dead_pid())  # as its process, killed there, left it
    assert run_store.get(whole.id).status == "interrupted"

    resumed = resume(whole.id, workspace=workspace)
    assert resumed.status == "completed" and [row.epoch for row in resumed.history] == [1, 2, 3]
    assert resumed.record.best_epoch == record.best_epoch
    assert resumed.record.metrics.test_accuracy == record.metrics.test_accuracy
    assert resumed.record.metrics.test_loss == pytest.approx(record.metrics.test_loss, rel=1e-6)


KILLABLE = """
import sys, time
from pathlib import Path
from helpers import tiny_model_config, tiny_train_config
from cnnlab.runs.store import RunStore
from cnnlab.training.engine import train
from cnnlab.runs.workspace import Workspace
from cnnlab.training.hooks import TrainingHooks

data_dir, models, cache, run_id, marker = sys.argv[1:6]

def on_batch(progress):
    if marker != "-" and (progress["epoch"], progress["batch"]) == (3, 2):
        Path(marker).touch()  # in the middle of epoch 3: the test kills the process now
        time.sleep(600)

train(data_dir, tiny_model_config(dropout=0.25, flip="horizontal"), tiny_train_config(epochs=8, patience=3),
      workspace=Workspace(RunStore(models), Path(cache)), run_id=run_id, hooks=TrainingHooks(on_batch=on_batch))
"""


@pytest.mark.slow
def test_a_run_killed_in_epoch_3_of_8_resumes_to_the_uninterrupted_result(make_dataset, isolated_dirs, tmp_path):
    data_dir, (cache, models), marker = make_dataset(per_class=8), isolated_dirs, tmp_path / "in-epoch-3"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}

    def training(run_id: str, kill_marker: str) -> forked.Program:
        command = ["-c", KILLABLE, str(data_dir), str(models), str(cache), run_id, kill_marker]
        return forked.start(command, tmp_path / run_id, env=env)

    doomed = training("killed", str(marker))
    try:
        deadline = time.monotonic() + 300
        while not marker.exists() and doomed.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert marker.exists(), doomed.errors()[-2000:] if doomed.poll() is not None else "too slow"
    finally:
        doomed.kill()
    store = RunStore(models)
    killed = store.get("killed")
    assert killed.status == "interrupted" and [row.epoch for row in killed.history] == [1, 2]
    assert read_state(killed.checkpoint_dir)["epoch"] == 2

    done = forked.run(
        ["-m", "cnnlab", "resume", "killed", "--json"],
        tmp_path / "resume",
        env={**env, "CNNLAB_MODELS_DIR": str(models), "CNNLAB_CACHE_DIR": str(cache)},
    )
    assert done.poll() == 0, done.errors()[-2000:]
    result = json.loads(done.output().strip().splitlines()[-1])
    assert result["status"] == "completed" and result["epochs_run"] == 8 and result["run_id"] == "killed"

    whole = training("whole", "-")
    assert whole.wait(timeout=600) == 0, whole.errors()[-2000:]
    resumed, uninterrupted = store.get("killed"), store.get("whole")
    assert [row.epoch for row in resumed.history] == list(range(1, 9))  # each epoch exactly once
    assert curves(resumed) == curves(uninterrupted)
    assert outcome(resumed) == outcome(uninterrupted)
    assert resumed.load_model().count_params() == uninterrupted.load_model().count_params()


def test_resume_and_continue_from_the_command_line(trained_run, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CNNLAB_CACHE_DIR", str(trained_run["cache"]))
    monkeypatch.setenv("CNNLAB_MODELS_DIR", str(tmp_path / "models"))
    parent = trained_run["run"]
    child_dir = tmp_path / "more" / "child"
    assert main(["train", "--continue-from", str(parent.path), "--epochs", "1", "--run-dir", str(child_dir)]) == 0
    out = capsys.readouterr().out
    assert "Run child completed: test accuracy" in out
    child = RunStore(child_dir.parent).get("child")
    assert child.record.parent == parent.id and [row.epoch for row in child.history] == [3]

    for argv, expected in (
        (["train", "--continue-from", "child", "--epochs", "1", "--batch-size", "4"], "only --epochs N"),
        (["train", "--continue-from", "child"], "only --epochs N"),
        (["resume", str(parent.path)], "is completed and cannot be resumed; train more epochs"),
        (["resume", "no-such-run"], "No run found"),
    ):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and expected in err[0] and "Traceback" not in err[0], err


@pytest.mark.slow
def test_a_backbone_run_stopped_while_fine_tuning_resumes_and_continues_in_fine_tuning(
    make_dataset, run_store, cache_dir
):
    data_dir, store = make_dataset(per_class=6), run_store
    model = tiny_model_config(
        image_size=(32, 32), backbone="mobilenet_v3_small", backbone_weights="none", dense_units=0
    )
    config = tiny_train_config(epochs=1, fine_tune_layers=12, fine_tune_epochs=2)
    whole = train(data_dir, model, config, workspace=Workspace(store, cache_dir))
    stop = threading.Event()
    stopped = train(
        data_dir,
        model,
        config,
        workspace=Workspace(store, cache_dir),
        hooks=TrainingHooks(
            on_batch=lambda p: stop.set() if (p["epoch"], p["batch"]) == (3, 1) else None,  # mid fine-tuning
            stop_event=stop,
        ),
    )
    # Its checkpoint is of fine-tuning's first epoch: the resumed run starts inside fine-tuning.
    assert stopped.status == "stopped" and read_state(stopped.checkpoint_dir)["epoch"] == 2

    resumed = resume(stopped.id, workspace=Workspace(store, cache_dir))
    assert [row.phase for row in resumed.history] == ["head", "fine_tune", "fine_tune"]
    assert curves(resumed) == curves(whole) and outcome(resumed) == outcome(whole)

    child = continue_training(resumed.id, 1, workspace=Workspace(store, cache_dir))
    assert [(row.epoch, row.phase) for row in child.history] == [(4, "fine_tune")]
    assert child.record.fine_tune == resumed.record.fine_tune and child.status == "completed"
