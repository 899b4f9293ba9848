"""The training engine: a real tiny training from a folder to a saved, evaluated run."""

import json
import os
import shutil
import threading

import numpy as np
import pytest

from cnnlab.analysis.evaluate import evaluate_run
from cnnlab.runs.store import RunStore
from cnnlab.runs.workspace import Workspace
from cnnlab.training.engine import TrainConfig, train
from cnnlab.training.hooks import TrainingHooks
from helpers import tiny_model_config, tiny_train_config, validation_loss

HISTORY_KEYS = {"epoch", "loss", "accuracy", "val_loss", "val_accuracy", "learning_rate", "seconds", "images_per_s"}


def test_a_two_epoch_run_is_completed_saved_and_evaluated(trained_run):
    run = trained_run["run"]
    assert run.status == "completed"
    assert run.name == "shared tiny run"
    assert run.class_names == ["cats", "dogs", "owls"]
    history = run.epoch_rows()
    assert [row["epoch"] for row in history] == [1, 2]
    for row in history:
        assert set(row) >= HISTORY_KEYS
        assert all(np.isfinite(row[k]) for k in HISTORY_KEYS)
        assert 0.0 <= row["accuracy"] <= 1.0 and 0.0 <= row["val_accuracy"] <= 1.0
        assert row["learning_rate"] == pytest.approx(1e-3)
        assert row["seconds"] > 0 and row["images_per_s"] > 0
        assert row["images_seen"] == 42 and row["partial"] is False  # every training image, every epoch
    assert run.model_path.exists()
    assert (run.path / "evaluation.json").exists()
    metrics = run.record.metrics
    assert 0.0 <= metrics.test_accuracy <= 1.0 and np.isfinite(metrics.test_loss)
    assert metrics.best_val_loss == min(row["val_loss"] for row in history)
    assert metrics.best_val_accuracy == max(row["val_accuracy"] for row in history)
    assert run.record.best_epoch in (1, 2)
    assert run.record.duration_s > 0

    # What is on disk says the same as the object in memory.
    on_disk = json.loads((run.path / "run.json").read_text())
    assert on_disk["status"] == "completed" and on_disk["history"] == history
    assert on_disk["name"] == "shared tiny run"
    assert on_disk["dataset"]["num_images"] == 60
    assert on_disk["dataset"]["counts"] == {"cats": 20, "dogs": 20, "owls": 20}
    # Without a datasets folder, the folder trains as it is: no dataset version.
    assert (on_disk["dataset"]["name"], on_disk["dataset"]["version"], on_disk["dataset"]["versions_folder"]) == (
        None,
        None,
        "",
    )
    assert on_disk["train_config"] == tiny_train_config().to_dict()
    assert on_disk["model_config"] == tiny_model_config().to_dict()
    split = run.split()
    assert [len(split[k]) for k in ("train", "validation", "test")] == [42, 9, 9]
    assert not set(split["train"]) & set(split["test"])

    model = run.load_model()
    assert model.output_shape == (None, 3)


def test_callbacks_report_every_epoch_and_batch(trained_run):
    epochs, batches = trained_run["epochs"], trained_run["batches"]
    assert [row["epoch"] for row in epochs] == [1, 2]
    assert epochs == trained_run["run"].epoch_rows()
    steps = int(np.ceil(42 / 8))
    assert len(batches) == 2 * steps
    assert [(b["epoch"], b["batch"]) for b in batches[:2]] == [(1, 1), (1, 2)]
    assert batches[-1]["epoch"] == 2 and batches[-1]["batch"] == steps
    assert batches[-1]["fraction"] == pytest.approx(1.0)
    assert all(b["steps"] == steps and b["eta_s"] >= 0 for b in batches)
    fractions = [b["fraction"] for b in batches]
    assert fractions == sorted(fractions)


@pytest.mark.slow
def test_same_seed_same_history(make_dataset, run_store, cache_dir):
    root = make_dataset(per_class=12)
    config = tiny_model_config(dropout=0.2, flip="horizontal", rotation=0.1, batch_norm=True)
    first = train(root, config, tiny_train_config(seed=11), workspace=Workspace(run_store, cache_dir))
    second = train(root, config, tiny_train_config(seed=11), workspace=Workspace(run_store, cache_dir))
    other = train(root, config, tiny_train_config(seed=12), workspace=Workspace(run_store, cache_dir))

    def losses(run):
        return [(row.loss, row.val_loss, row.accuracy) for row in run.history]

    assert losses(first) == losses(second)
    assert first.record.metrics.test_loss == second.record.metrics.test_loss
    assert first.split() == second.split()
    assert losses(other) != losses(first)
    assert len(run_store.list()) == 3


def test_stop_request_ends_training_after_the_current_batch(make_dataset, run_store, cache_dir):
    root = make_dataset()
    stop = threading.Event()
    seen = []

    def on_batch(progress):
        seen.append((progress["epoch"], progress["batch"], stop.is_set()))
        if progress["epoch"] == 2 and progress["batch"] == 2:
            stop.set()

    run = train(
        root,
        tiny_model_config(),
        tiny_train_config(epochs=5, batch_size=4),
        workspace=Workspace(run_store, cache_dir),
        hooks=TrainingHooks(on_batch=on_batch, stop_event=stop),
    )

    after_stop = [s for s in seen if s[2]]
    assert after_stop == []  # not a single batch ran once the stop was asked for
    assert seen[-1][:2] == (2, 2)
    assert run.status == "stopped"
    assert [row.epoch for row in run.history] == [1, 2]
    assert run.history[1].partial is True and not run.history[0].partial
    assert run.model_path.exists()
    assert run.load_model().output_shape == (None, 3)
    assert run.record.metrics.test_accuracy is not None
    assert run_store.get(run.id).status == "stopped"


def test_a_stopped_epoch_counts_the_images_it_trained_on(make_dataset, run_store, cache_dir):
    stop = threading.Event()

    def on_batch(progress):
        if progress["batch"] == 2:
            stop.set()

    config = tiny_train_config(epochs=3, batch_size=8)
    run = train(
        make_dataset(),
        tiny_model_config(),
        config,
        workspace=Workspace(run_store, cache_dir),
        hooks=TrainingHooks(on_batch=on_batch, stop_event=stop),
    )
    # 42 training images in batches of 8 are six steps (the last of 2 images); two full batches ran.
    (row,) = run.history
    assert row.partial is True and row.images_seen == 2 * config.batch_size


def test_stop_asked_for_in_the_epoch_report_starts_no_new_epoch(make_dataset, run_store, cache_dir):
    stop = threading.Event()
    batches = []
    run = train(
        make_dataset(classes=("a", "b"), per_class=8),
        tiny_model_config(),
        tiny_train_config(epochs=4),
        workspace=Workspace(run_store, cache_dir),
        hooks=TrainingHooks(on_epoch=lambda row: stop.set(), on_batch=batches.append, stop_event=stop),
    )
    assert run.status == "stopped"
    assert [row.epoch for row in run.history] == [1]
    assert {b["epoch"] for b in batches} == {1}
    # The saved model is the finished epoch's: it scores that epoch's validation loss again.
    assert validation_loss(run, cache_dir) == pytest.approx(run.history[0].val_loss, rel=1e-4)


def test_stop_before_the_start_trains_nothing(make_dataset, run_store, cache_dir):
    stop = threading.Event()
    stop.set()
    run = train(
        make_dataset(classes=("a", "b"), per_class=6),
        tiny_model_config(),
        tiny_train_config(),
        workspace=Workspace(run_store, cache_dir),
        hooks=TrainingHooks(stop_event=stop),
    )
    assert run.status == "stopped" and run.history == ()
    assert not run.model_path.exists()
    with pytest.raises(ValueError, match="has no saved model yet"):
        run.load_model()


def test_a_failure_inside_training_marks_the_run_failed(make_dataset, run_store, cache_dir):
    root = make_dataset(classes=("a", "b"), per_class=6)

    def on_batch(progress):
        if progress["epoch"] == 2:
            raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        train(
            root,
            tiny_model_config(),
            tiny_train_config(),
            workspace=Workspace(run_store, cache_dir),
            hooks=TrainingHooks(on_batch=on_batch),
        )
    (run,) = run_store.list()
    assert run.status == "failed"
    assert run.record.error == "RuntimeError: disk on fire"
    assert run.record.duration_s >= 0
    assert len(run.history) == 1
    # The finished epoch's model is kept: it scores that epoch's validation loss again.
    assert validation_loss(run, cache_dir) == pytest.approx(run.history[0].val_loss, rel=1e-4)


def test_a_file_name_that_is_not_utf8_leaves_the_rest_of_the_dataset_trainable(make_dataset, run_store, cache_dir):
    root = make_dataset(classes=("a", "b"), per_class=6)
    bad = os.path.join(os.fsencode(root / "a"), b"caf\xe9.png")  # as unzipping a Windows zip leaves it
    shutil.copyfile(root / "a" / "a_000.png", bad)
    run = train(root, tiny_model_config(), tiny_train_config(epochs=1), workspace=Workspace(run_store, cache_dir))
    assert run.status == "completed"
    (again,) = run_store.list()  # run.json and split.json read back whole
    assert sorted(f for part in again.split().values() for f in part) == sorted(
        f"{c}/{c}_{i:03d}.png" for c in "ab" for i in range(6)
    )
    assert evaluate_run(again, cache=cache_dir).confusion.shape == (2, 2)


def test_a_training_whose_loss_is_nan_from_the_start_fails_saying_to_lower_the_learning_rate(
    make_dataset, run_store, cache_dir
):
    root = make_dataset(per_class=10)
    # Far too fast for float16 activations: the very first epoch overflows.
    config = tiny_model_config(optimizer="rmsprop", learning_rate=1.0, filters=32, dense_units=256)
    with pytest.raises(
        ValueError, match=r"not a number \(NaN\).*lower learning rate, such as 0.1\. Received: learning_rate=1$"
    ):
        train(
            root,
            config,
            tiny_train_config(epochs=3, precision="mixed_float16"),
            workspace=Workspace(run_store, cache_dir),
        )
    (run,) = run_store.list()
    assert run.status == "failed" and run.record.error.startswith("ValueError: The loss was not a number")
    assert "\n" not in run.record.error and not run.model_path.exists()
    assert len(run.history) == 1 and np.isnan(run.history[0].loss)  # stopped at the first diverged epoch


def test_two_classes_train_a_sigmoid_model_with_early_stopping(make_dataset, run_store, cache_dir):
    root = make_dataset(classes=("cats", "dogs"), per_class=12)
    config = tiny_model_config(color_mode="grayscale")
    run = train(root, config, tiny_train_config(epochs=2, patience=1), workspace=Workspace(run_store, cache_dir))
    assert run.status == "completed"
    model = run.load_model()
    assert model.input_shape == (None, 32, 32, 1) and model.output_shape == (None, 1)
    assert 1 <= len(run.history) <= 2
    evaluation = evaluate_run(run, cache=cache_dir)
    assert evaluation.accuracy == run.record.metrics.test_accuracy
    assert evaluation.confusion.shape == (2, 2) and 0.0 <= evaluation.roc_auc <= 1.0


@pytest.mark.parametrize(
    "field, value",
    [
        ("epochs", 0),
        ("batch_size", 2000),
        ("patience", -1),
        ("seed", -5),
        ("validation_split", 1.5),
        ("test_split", "x"),
    ],
)
def test_train_config_validation(field, value):
    with pytest.raises(ValueError, match=f"Received: {field}="):
        TrainConfig(**{field: value})


def test_train_config_round_trip():
    config = TrainConfig(epochs=3, batch_size=16, seed=4)
    assert TrainConfig.from_dict({**config.to_dict(), "unknown": 1}) == config


def test_a_bad_dataset_fails_before_any_run_is_created(tmp_path, run_store, cache_dir):
    with pytest.raises(ValueError, match="Dataset folder not found"):
        train(tmp_path / "missing", tiny_model_config(), tiny_train_config(), workspace=Workspace(run_store, cache_dir))
    with pytest.raises(ValueError, match=r"needs the folder of dataset versions .* Received: dataset_version=2$"):
        train(tmp_path, tiny_model_config(), workspace=Workspace(run_store, cache_dir), dataset_version=2)
    assert run_store.list() == []


def test_a_run_on_the_built_in_sample_finds_it_again_on_another_machine(make_dataset, isolated_dirs):
    from cnnlab.data.sample import sample_dir

    cache, models = isolated_dirs
    elsewhere = make_dataset("elsewhere/sample-v1-seed0", per_class=10)  # named like the sample folder
    store = RunStore(models)
    run = train(elsewhere, tiny_model_config(), tiny_train_config(), workspace=Workspace(store, cache), run_id="demo")
    assert run.path == models / "demo"
    assert run.record.dataset.builtin == "sample"

    # On another machine the recorded folder is gone; the sample is made again in that machine's cache.
    elsewhere.rename(elsewhere.with_name("moved"))
    regenerated = make_dataset("regenerated", per_class=10).rename(cache / "sample-v1-seed0")
    assert RunStore(models).get("demo").dataset_root(cache) == regenerated == sample_dir(cache)
    again = evaluate_run(run, cache=cache, refresh=True)
    assert again.accuracy == pytest.approx(run.record.metrics.test_accuracy)
    assert again.warnings == []  # the same images, though written again with new file times


def test_a_run_elsewhere_is_not_tagged_as_the_sample(trained_run):
    assert trained_run["run"].record.dataset.builtin is None


def test_a_run_folder_name_must_be_new(make_dataset, run_store, cache_dir):
    data_dir = make_dataset(per_class=6)
    config, one_epoch = tiny_model_config(), tiny_train_config(epochs=1)
    train(data_dir, config, one_epoch, workspace=Workspace(run_store, cache_dir), run_id="mine")
    with pytest.raises(ValueError, match="must be a new folder name.*Received: run_id='mine'"):
        train(data_dir, config, one_epoch, workspace=Workspace(run_store, cache_dir), run_id="mine")
    with pytest.raises(ValueError, match="Received: run_id='../escape'"):
        train(data_dir, config, one_epoch, workspace=Workspace(run_store, cache_dir), run_id="../escape")
