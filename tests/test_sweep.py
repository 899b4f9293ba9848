"""Sweeps: the space file is validated strictly, every trial is a tagged run, pruning and stopping work."""

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from cnnlab.cli import main
from cnnlab.runs.record import SweepTrial
from cnnlab.runs.store import RunStore
from cnnlab.runs.workspace import Workspace
from cnnlab.server import jobs
from cnnlab.sweep import (
    SweepConfig,
    default_storage,
    load_space,
    masked_url,
    run_sweep,
    space_from_dict,
    study_importances,
)
from cnnlab.training.hooks import TrainingHooks
from helpers import made_dataset, tiny_space

REPO_ROOT = Path(__file__).resolve().parent.parent

# ------------------------------------------------------------------------------------ the space


def test_a_space_file_in_yaml_is_read_and_normalised(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text(
        "objective: val_loss\n"
        "params:\n"
        "  conv_blocks: {low: 1, high: 3}\n"
        "  learning_rate: {low: 1e-4, high: 0.01, log: true}\n"  # YAML reads 1e-4 as text
        "  dropout: {low: 0, high: 0.5}\n"
        "  optimizer: [adam, sgd]\n"
        "  batch_norm: [true, false]\n"
        "fixed:\n"
        "  epochs: 3\n"
        "  image_size: [32, 32]\n"
    )
    space = load_space(path)
    assert space.objective == "val_loss" and space.direction == "minimize"
    assert space.params["conv_blocks"] == {"low": 1, "high": 3, "log": False}
    assert space.params["learning_rate"] == {"low": 1e-4, "high": 0.01, "log": True}
    assert space.params["dropout"] == {"low": 0.0, "high": 0.5, "log": False}
    assert isinstance(space.params["dropout"]["low"], float)
    assert space.params["optimizer"] == ["adam", "sgd"] and space.params["batch_norm"] == [True, False]
    assert space.fixed == {"epochs": 3, "image_size": [32, 32]}
    assert space_from_dict(space.to_dict()) == space


def test_json_space_and_default_objective_and_stable_study_names(tmp_path):
    path = tmp_path / "space.json"
    path.write_text(json.dumps({"params": {"filters": [4, 8]}, "fixed": {"epochs": 1}}))
    space = load_space(path)
    assert space.objective == "val_accuracy" and space.direction == "maximize"
    name = space.default_study_name()
    assert name.startswith("sweep-") and name == load_space(path).default_study_name()
    assert name != space_from_dict({"params": {"filters": [4, 16]}}).default_study_name()
    assert name != space.default_study_name("another dataset")


BAD_SPACES = [
    (
        {"params": {"conv_blockz": {"low": 1, "high": 2}}},
        r"unknown field 'conv_blockz' in params.*Received: params\.conv_blockz=",
    ),
    (
        {"params": {"filters": [4]}, "fixed": {"colour": "rgb"}},
        r"unknown field 'colour' in fixed.*Received: fixed\.colour=",
    ),
    (
        {"params": {"filters": [4, 8]}, "fixed": {"filters": 4}},
        r"filters is in both params and fixed.*Received: fixed\.filters=4",
    ),
    (
        {"params": {"conv_blocks": {"low": 3, "high": 1}}},
        r"params\.conv_blocks has low above high.*Received: params\.conv_blocks=",
    ),
    ({"params": {"optimizer": []}}, r"params\.optimizer lists no choices.*Received: params\.optimizer=\[\]"),
    ({"params": {"optimizer": ["adam", "adam"]}}, r"lists a choice twice"),
    (
        {"params": {"optimizer": ["adam", "adagrad"]}},
        r"params\.optimizer='adagrad' is rejected: Unknown optimizer.*Received: optimizer='adagrad'",
    ),
    (
        {"params": {"learning_rate": [0.001, 5.0]}},
        r"params\.learning_rate=5\.0 is rejected.*Received: learning_rate=5\.0",
    ),
    (
        {"params": {"conv_blocks": {"low": 1, "high": 6}}, "fixed": {"image_size": 32}},
        r"params\.conv_blocks=6 is rejected: 6 pooling blocks shrink a 32x32 image",
    ),
    (
        {"params": {"image_size": [16, 64]}, "fixed": {"conv_blocks": 5}},
        r"is rejected: 5 pooling blocks shrink a 16x16 image",
    ),
    (
        {"params": {"filters": [4]}, "fixed": {"epochs": 0}},
        r"fixed\.epochs is rejected: epochs must be.*Received: epochs=0",
    ),
    (
        {"params": {"filters": [4]}, "fixed": {"validation_split": 0.0}},
        r"validation_split must be above 0.*Received: validation_split=0\.0",
    ),
    (
        {"params": {"filters": [4]}, "objective": "accuracy"},
        r"objective must be one of val_accuracy, val_loss.*Received: objective='accuracy'",
    ),
    ({"params": {}}, r"'params' must map at least one field.*Received: params=\{\}"),
    ({"params": {"filters": [4]}, "trials": 3}, r"unknown top-level key.*Received: trials=3"),
    ({"params": {"optimizer": {"low": 1, "high": 2}}}, r"params\.optimizer is a str field, so give a list of choices"),
    ({"params": {"batch_norm": ["yes", "no"]}}, r"batch_norm takes true or false.*Received: params\.batch_norm='yes'"),
    (
        {"params": {"conv_blocks": {"low": 1.5, "high": 3}}},
        r"conv_blocks takes a whole number.*Received: params\.conv_blocks\.low=1\.5",
    ),
    (
        {"params": {"learning_rate": {"low": 0, "high": 0.1, "log": True}}},
        r"a log range needs low above 0.*Received: params\.learning_rate\.low=0\.0",
    ),
    (
        {"params": {"dropout": {"low": 0.1, "high": 0.2, "step": 0.1}}},
        r"a range needs 'low' and 'high'.*Received: params\.dropout=",
    ),
    ({"params": {"filters": [[4, 8]]}}, r"filters takes a whole number.*Received: params\.filters=\[4, 8\]"),
    (["not", "a", "mapping"], r"must be a mapping.*Received: space="),
]


@pytest.mark.parametrize("data, pattern", BAD_SPACES)
def test_a_bad_space_is_one_clear_line(data, pattern):
    with pytest.raises(ValueError, match=pattern) as info:
        space_from_dict(data)
    message = str(info.value)
    assert "\n" not in message and "Received: " in message and message.startswith("Sweep space")


@pytest.mark.parametrize(
    "name, text, pattern",
    [
        ("space.yaml", "params:\n  filters: [4, 8\n", r"space\.yaml' is not valid YAML \(line \d+: .*Received: space="),
        ("space.json", '{"params": {"filters": [4, 8]', r"space\.json' is not valid JSON \(line 1: .*Received: space="),
        ("space.yml", "params: {conv_blockz: [1, 2]}\n", r"space\.yml': unknown field 'conv_blockz' in params"),
        ("space.yaml", "", r"space\.yaml' must be a mapping.*Received: space=None"),
    ],
)
def test_a_bad_space_file_names_the_file(tmp_path, name, text, pattern):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ValueError, match=pattern):
        load_space(path)


def test_a_missing_space_file(tmp_path):
    with pytest.raises(ValueError, match=r"Sweep space file '.*nope\.yaml' is not found.*Received: space="):
        load_space(tmp_path / "nope.yaml")


def test_cli_exits_2_with_one_line_for_a_bad_space_file(tmp_path, capsys, make_dataset):
    root = make_dataset(per_class=3)
    path = tmp_path / "space.yaml"
    path.write_text("params:\n  conv_blocks: {low: 3, high: 1}\n")
    assert main(["sweep", str(root), "--space", str(path), "--trials", "1", "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    err = captured.err.strip()
    assert len(err.splitlines()) == 1 and "params.conv_blocks has low above high" in err and "space.yaml" in err
    assert main(["sweep", str(root), "--trials", "1"]) == 2  # no --space
    assert "--space" in capsys.readouterr().err


def test_sweep_module_imports_no_heavy_libraries():
    code = "import sys, cnnlab.sweep, cnnlab.cli; print(sorted(m for m in ('optuna', 'tensorflow', 'keras', 'streamlit', 'pandas') if m in sys.modules))"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO_ROOT, timeout=120
    )
    assert done.stdout.strip() == "[]"


# ------------------------------------------------------------------------------------ the sweep


def test_arguments_are_checked_before_any_training(make_dataset, tmp_path, cache_dir):
    root = make_dataset(per_class=3)
    space = tiny_space({"filters": [4, 8]}, epochs=1)
    store = RunStore(tmp_path / "models")
    with pytest.raises(ValueError, match=r"trials must be a whole number.*Received: trials=0"):
        run_sweep(root, space, SweepConfig(trials=0), workspace=Workspace(store, cache_dir))
    with pytest.raises(ValueError, match=r"timeout must be.*Received: timeout=-1"):
        run_sweep(root, space, SweepConfig(trials=1, timeout=-1), workspace=Workspace(store, cache_dir))
    with pytest.raises(
        ValueError, match=r"Not a usable SQLAlchemy storage URL.*Received: storage='nosuchdb://u:\*\*\*@h/db'"
    ):
        run_sweep(
            root,
            space,
            SweepConfig(trials=1, storage="nosuchdb://u:secret@h/db"),
            workspace=Workspace(store, cache_dir),
        )
    with pytest.raises(ValueError, match=r"Dataset folder not found"):
        run_sweep(tmp_path / "missing", space, SweepConfig(trials=1), workspace=Workspace(store, cache_dir))
    assert masked_url("postgresql+psycopg2://me:pw@db:5432/sweeps") == "postgresql+psycopg2://me:***@db:5432/sweeps"
    assert store.list() == []


def test_a_stopped_sweep_runs_nothing_and_a_study_keeps_its_space(make_dataset, tmp_path, cache_dir):
    root = make_dataset(per_class=3)
    store = RunStore(tmp_path / "models")
    stop = threading.Event()
    stop.set()
    result = run_sweep(
        root,
        tiny_space({"filters": [4, 8]}, epochs=1),
        SweepConfig(trials=3, study_name="team"),
        workspace=Workspace(store, cache_dir),
        hooks=TrainingHooks(stop_event=stop),
    )
    assert result.trials == [] and result.trials_run == 0 and result.best_value is None and result.best_run_dir is None
    assert result.storage == f"sqlite:///{(tmp_path / 'models').resolve() / 'sweeps.db'}"
    assert result.importances == {} and list(result.trials_frame().columns) == ["number", "state", "value", "run_id"]
    with pytest.raises(
        ValueError, match=r"Study 'team' already exists with a different search space.*Received: study_name='team'"
    ):
        run_sweep(
            root,
            tiny_space({"filters": [4, 16]}, epochs=1),
            SweepConfig(trials=1, study_name="team"),
            workspace=Workspace(store, cache_dir),
        )
    assert store.list() == []


@pytest.mark.slow
def test_three_trials_are_three_tagged_runs_with_a_best_one(make_dataset, tmp_path, cache_dir):
    root = make_dataset()
    store = RunStore(tmp_path / "models")
    space = tiny_space(
        {"learning_rate": {"low": 0.003, "high": 0.03, "log": True}, "batch_norm": [True, False]}, epochs=2
    )
    seen, epochs = [], []
    result = run_sweep(
        root,
        space,
        SweepConfig(trials=3, study_name="three"),
        workspace=Workspace(store, cache_dir),
        on_trial=seen.append,
        hooks=TrainingHooks(on_epoch=epochs.append),
    )

    assert [t["number"] for t in result.trials] == [0, 1, 2] and result.trials_run == 3
    assert [t["number"] for t in seen] == [0, 1, 2] and all(t["state"] in ("complete", "pruned") for t in seen)
    assert {row["trial"] for row in epochs} == {0, 1, 2} and all("val_accuracy" in row for row in epochs)
    runs = {run.id: run for run in store.list(sweep="three")}
    assert len(runs) == 3 and len(store.list()) == 3
    assert sorted(run.record.sweep.trial for run in runs.values()) == [0, 1, 2]
    for trial in result.trials:
        run = runs[trial["run_id"]]
        assert run.record.sweep == SweepTrial("three", trial["number"])
        assert run.name == f"three #{trial['number']}" and run.model_path.exists()
        assert run.model_config().learning_rate == pytest.approx(trial["params"]["learning_rate"])
        assert run.status == ("pruned" if trial["state"] == "pruned" else "completed")
        if trial["state"] == "complete":
            assert trial["value"] == max(row.val_accuracy for row in run.history)

    complete = [t for t in result.trials if t["state"] == "complete"]
    assert len(complete) >= 2  # the default pruner never prunes the first two trials
    best = max(complete, key=lambda t: t["value"])
    assert result.best_value == best["value"] and result.best_params == best["params"]
    assert result.best_run_dir == runs[best["run_id"]].path and result.best_run_id == best["run_id"]
    assert set(result.importances) <= {"learning_rate", "batch_norm"} and result.importances
    frame = result.trials_frame()
    assert list(frame.columns) == ["number", "state", "value", "run_id", "params_batch_norm", "params_learning_rate"]
    assert len(frame) == 3 and set(frame["run_id"]) == set(runs)
    assert (tmp_path / "models" / "sweeps.db").is_file()
    assert study_importances("three", store) == result.importances
    assert study_importances("no-such-study", store) == {}
    assert study_importances("three", RunStore(tmp_path / "elsewhere")) == {}


def test_a_hopeless_trial_is_pruned_after_its_first_epoch(make_dataset, tmp_path, cache_dir):
    import optuna

    root = make_dataset()
    store = RunStore(tmp_path / "models")
    space = tiny_space({"learning_rate": [1.0], "optimizer": ["sgd"]}, epochs=3)
    result = run_sweep(
        root,
        space,
        SweepConfig(trials=1, study_name="hopeless", pruner=optuna.pruners.ThresholdPruner(lower=0.99)),
        workspace=Workspace(store, cache_dir),
    )
    (trial,) = result.trials
    assert trial["state"] == "pruned"
    run = store.get(trial["run_id"])
    assert run.status == "pruned" and run.record.status == "pruned"
    assert len(run.history) == 1 < run.train_config().epochs
    assert run.model_path.exists()  # the epoch it did train is still a usable run
    assert result.best_value is None and result.best_run_dir is None and result.best_params == {}
    assert result.importances == {}


def test_the_stop_event_ends_the_current_trial_and_the_sweep(make_dataset, tmp_path, cache_dir):
    root = make_dataset()
    store = RunStore(tmp_path / "models")
    stop = threading.Event()
    space = tiny_space({"filters": [4, 6]}, epochs=3)
    result = run_sweep(
        root,
        space,
        SweepConfig(trials=3, study_name="stopped"),
        workspace=Workspace(store, cache_dir),
        hooks=TrainingHooks(on_epoch=lambda row: stop.set(), stop_event=stop),
    )
    (trial,) = result.trials
    assert result.trials_run == 1 and trial["state"] == "pruned"
    run = store.get(trial["run_id"])
    assert run.status == "stopped" and len(run.history) < 3


@pytest.mark.parametrize("owner, study_name", [(None, "mine"), ("visitor1", None)])
def test_a_sweep_job_streams_trials_and_keeps_hosted_visitors_apart(
    make_dataset, tmp_path, cache_dir, owner, study_name
):
    root = make_dataset()
    store = RunStore(tmp_path / "models")
    space = tiny_space({"filters": [4, 6]}, epochs=1)
    job = jobs.sweep_job(
        root,
        space,
        SweepConfig(trials=1, timeout=None, storage=default_storage(store), study_name=study_name),
        jobs.JobSettings(Workspace(store, cache_dir, owner=owner)),
    )
    assert job.status == "queued" and job.info == {"objective": "val_accuracy"}
    result = job.target(job)  # the job's work, run here; tests/test_jobs.py covers the thread around it

    study = "mine" if owner is None else f"{space.default_study_name(str(root))}-visitor1"
    (run,) = store.list()
    assert result.study == study and run.record.sweep == SweepTrial(study, 0)
    assert run.record.owner == owner
    assert [item["run_id"] for item in job.items] == [run.id]
    assert [row["trial"] for row in job.history] == [0]


def test_every_trial_trains_on_the_version_chosen_of_a_dataset_made_in_the_app(tmp_path, cache_dir):
    made_dataset(tmp_path / "datasets")  # version 2 can be trained on, the latest (3) cannot
    store = RunStore(tmp_path / "models")
    workspace = Workspace(store, cache_dir, datasets=tmp_path / "datasets")
    space = tiny_space({"filters": [4, 6]}, epochs=1)
    result = run_sweep("shots", space, SweepConfig(trials=2), workspace=workspace, dataset_version=2)
    assert [t["state"] for t in result.trials] == ["complete", "complete"]
    assert [(r.record.dataset.name, r.record.dataset.version) for r in store.list()] == [("shots", 2)] * 2
    with pytest.raises(ValueError, match="at least two classes with usable images"):
        run_sweep("shots", space, SweepConfig(trials=1), workspace=workspace)
