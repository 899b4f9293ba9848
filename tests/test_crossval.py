"""The cross-validated label check: stratified folds, swapped training labels found, stop, refusals."""

import threading

import numpy as np
import pandas as pd
import pytest

from cnnlab.analysis.crossval import CROSS_VALIDATED_FILE, cross_validated_issues, saved_issues, stratified_folds
from cnnlab.analysis.label_issues import run_label_issues
from cnnlab.runs.record import RunRecord
from cnnlab.runs.store import RunStore
from cnnlab.runs.workspace import Workspace
from cnnlab.settings import DEMO_RUN_DIR
from cnnlab.training.engine import train
from cnnlab.training.hooks import TrainingHooks
from helpers import swap_labels, tiny_model_config, tiny_train_config, write_dataset


def test_folds_are_stratified_and_a_function_of_the_seed():
    labels = np.array([0] * 10 + [1] * 7 + [2] * 3)
    folds = stratified_folds(labels, 3, seed=5)
    assert folds.tolist() == stratified_folds(labels, 3, seed=5).tolist()
    assert folds.tolist() != stratified_folds(labels, 3, seed=6).tolist()
    for label, size in ((0, 10), (1, 7), (2, 3)):
        counts = np.bincount(folds[labels == label], minlength=3)
        assert counts.sum() == size and counts.max() - counts.min() <= 1


@pytest.mark.slow
def test_swapped_training_labels_are_found_only_by_the_cross_validated_pass(tmp_path, run_store, cache_dir):
    root = write_dataset(tmp_path / "data", per_class=12, size=(16, 16))
    swapped = swap_labels(root)
    before = sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))
    run = train(
        root,
        tiny_model_config(image_size=(16, 16), learning_rate=0.01),
        tiny_train_config(epochs=3, validation_split=0.2, test_split=0.2),
        workspace=Workspace(run_store, cache_dir),
    )
    in_training = [rel for rel in swapped if rel in set(run.split()["train"])]
    assert len(in_training) >= 2, "the seed no longer puts swapped images in the training split"

    # The run's own validation and test predictions never see a training image.
    assert not set(in_training) & set(run_label_issues(run, cache=cache_dir)["path"])

    epochs, batches = [], []
    result = cross_validated_issues(
        run,
        folds=3,
        workspace=Workspace(run_store, cache_dir),
        hooks=TrainingHooks(on_epoch=epochs.append, on_batch=batches.append),
    )
    assert (result.status, result.folds, result.epochs, result.num_images) == ("completed", 3, 3, 36)
    top = result.issues["path"].tolist()[: len(in_training) + 2]
    assert set(in_training) <= set(top)
    flagged = result.issues.set_index("path").loc[in_training]
    assert set(flagged["split"]) == {"train"}
    assert all(flagged["suggested_label"] != flagged["given_label"])
    assert [row["fold"] for row in epochs] == [1, 1, 1, 2, 2, 2, 3, 3, 3]
    fractions = [b["fraction"] for b in batches]
    assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0)

    saved = saved_issues(run)  # what the Evaluate page shows after a reload
    assert saved is not None and saved.created == result.created
    pd.testing.assert_frame_equal(saved.issues, result.issues, check_dtype=False)
    assert not [p.name for p in run.path.iterdir() if "crossval" in p.name]  # the fold runs are gone
    assert [r.id for r in run_store.list()] == [run.id]  # no fold joined the runs list
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*")) == before  # nothing moved


def test_a_stopped_pass_saves_nothing_and_leaves_no_fold_behind(trained_run, run_store):
    run, stop = trained_run["run"], threading.Event()
    listing = sorted(p.name for p in run.path.iterdir())
    result = cross_validated_issues(
        run,
        folds=2,
        epochs=1,
        workspace=Workspace(run_store, trained_run["cache"]),
        hooks=TrainingHooks(on_batch=lambda _: stop.set(), stop_event=stop),
    )
    assert result.status == "stopped" and result.issues.empty
    assert sorted(p.name for p in run.path.iterdir()) == listing  # no result file, no temporary fold run
    assert CROSS_VALIDATED_FILE not in listing


def test_bad_folds_epochs_and_the_demo_run_are_refused(trained_run, run_store):
    run, workspace = trained_run["run"], Workspace(run_store, trained_run["cache"])
    with pytest.raises(ValueError, match=r"Received: folds=1$"):
        cross_validated_issues(run, folds=1, workspace=workspace)
    with pytest.raises(ValueError, match=r"Received: epochs=0$"):
        cross_validated_issues(run, folds=2, epochs=0, workspace=workspace)
    with pytest.raises(ValueError, match=r"at least two images per fold; use fewer folds. Received: folds=10$"):
        cross_validated_issues(_run_with_images(run, run_store, 19), folds=10, workspace=workspace)
    demo = RunStore(DEMO_RUN_DIR.parent, demo=DEMO_RUN_DIR).get(DEMO_RUN_DIR)
    with pytest.raises(ValueError, match=r"demo model.*Received: run="):
        cross_validated_issues(demo, workspace=workspace)


def _run_with_images(run, store, count):
    """A finished run with `run`'s settings and dataset whose split holds only its first `count` images."""
    images = [rel for part in run.split().values() for rel in part][:count]
    recorded = run.record
    copy = store.create(
        RunRecord(
            model_config=recorded.model_config,
            train_config=recorded.train_config,
            class_names=recorded.class_names,
            dataset=recorded.dataset,
        ),
        {"train": images, "validation": [], "test": []},
    )
    copy.update(status="completed")
    return copy
