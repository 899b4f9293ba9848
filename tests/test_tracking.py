"""Team tracking against a real `mlflow server` on 127.0.0.1: publishing, the team view, sync.

Two "machines" are two models and cache folders with two user names, publishing to one server.
The server fixture (tests/team_servers.py) skips these tests loudly when mlflow is missing, or
fails them when CNNLAB_REQUIRE_MLFLOW=1 (as in CI).
"""

import dataclasses
import json
import logging
import os
import threading
from pathlib import Path

import numpy as np
import pytest
from e2e_server import free_port

import forked
from cnnlab.cli import main
from cnnlab.runs.store import RunStore
from cnnlab.team.tracking import EPOCH_METRICS, TrackingConfig, sync_runs
from helpers import (
    class_image,
    image_bytes,
    machine_settings,
    tiny_model_config,
    tiny_space,
    tiny_train_config,
    write_dataset,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
METRICS = ("loss", "accuracy", "val_loss", "val_accuracy")


@pytest.fixture
def experiment(request) -> str:
    """An experiment of its own for each test, on the shared server."""
    return f"{request.node.name[:60]}-{os.getpid()}"


def machine(tmp_path: Path, user: str, uri: str, experiment: str) -> dict:
    """A teammate's machine: its own models and cache folders, its user name, the team server."""
    home, tracking = tmp_path / user, TrackingConfig(uri, experiment, user)
    return {
        "env": machine_settings(home, tracking),
        "store": RunStore(home / "models"),
        "cache": home / "cache",
        "tracking": tracking,
    }


def train_on(
    box: dict, data_dir: Path, seed: int, epochs: int = 3, name: str | None = None, datasets: Path | None = None
):
    from cnnlab.runs.workspace import Workspace
    from cnnlab.training.engine import train

    return train(
        data_dir,
        tiny_model_config(),
        tiny_train_config(epochs=epochs, seed=seed),
        workspace=Workspace(box["store"], box["cache"], tracking=box["tracking"], datasets=datasets),
        name=name or f"run of {box['tracking'].user}",
    )


def cli_json(box: dict, monkeypatch, capsys, *args: str) -> dict:
    """Run `python -m cnnlab ARGS --json` on that machine (its environment) and return the JSON."""
    for name, value in box["env"].items():
        monkeypatch.setenv(name, value)
    capsys.readouterr()
    status = main([*args, "--json"])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    return json.loads(captured.out.strip().splitlines()[-1])


def same_curve(history: list[dict], rows: list[dict]) -> None:
    assert [row["epoch"] for row in rows] == [row["epoch"] for row in history]
    for local, remote in zip(history, rows, strict=True):
        for key in EPOCH_METRICS:
            assert remote[key] == pytest.approx(local[key], rel=1e-6), key


@pytest.mark.slow
def test_two_machines_see_each_others_runs_curves_and_models(mlflow_server, experiment, tmp_path, monkeypatch, capsys):
    from cnnlab.deploy.prediction import predict
    from cnnlab.team.remote import team_history

    data_dir = write_dataset(tmp_path / "data")
    alice = machine(tmp_path, "alice", mlflow_server.url, experiment)
    bob = machine(tmp_path, "bob", mlflow_server.url, experiment)
    runs = {"alice": train_on(alice, data_dir, seed=1), "bob": train_on(bob, data_dir, seed=2)}
    for run in runs.values():
        assert run.status == "completed"
        assert run.record.team.published is True and run.record.team.run_id

    for me, other in (("alice", "bob"), ("bob", "alice")):
        box = alice if me == "alice" else bob
        rows = cli_json(box, monkeypatch, capsys, "runs", "--team")["runs"]
        assert len(rows) == 2 and {row["user"] for row in rows} == {"alice", "bob"}
        theirs = next(row for row in rows if row["user"] == other)
        run = runs[other]
        assert theirs["id"] == run.record.team.run_id and theirs["local_run_id"] == run.id
        assert theirs["name"] == f"run of {other}" and theirs["status"] == "completed"
        assert theirs["host"] == run.record.host and theirs["dataset"] == "data"
        assert theirs["fingerprint"] == run.record.dataset.fingerprint
        assert theirs["best_val_accuracy"] == pytest.approx(run.record.metrics.best_val_accuracy)
        assert theirs["test_accuracy"] == pytest.approx(run.record.metrics.test_accuracy)
        assert theirs["params"] == {**run.record.model_config, **run.record.train_config}
        same_curve(run.epoch_rows(), team_history(box["tracking"], theirs["id"]))

    # Bob predicts with Alice's model, downloaded from the server by its team run id.
    image = tmp_path / "owl.png"
    image.write_bytes(image_bytes(class_image((40, 40, 200), np.random.default_rng(5))))
    team_id = runs["alice"].record.team.run_id
    predicted = cli_json(bob, monkeypatch, capsys, "predict", team_id, str(image))["predictions"][0]
    own = predict(runs["alice"].load_model(), runs["alice"].class_names, runs["alice"].model_config(), [image])[0]
    for label, probability in own.ranked:
        assert predicted["probabilities"][label] == pytest.approx(probability, abs=1e-5)
    copy = Path(bob["env"]["CNNLAB_CACHE_DIR"]) / "team-runs" / team_id / "model.keras"
    downloaded_at = copy.stat().st_mtime_ns
    evaluation = cli_json(bob, monkeypatch, capsys, "evaluate", team_id)
    assert evaluation["accuracy"] == pytest.approx(runs["alice"].record.metrics.test_accuracy)
    assert copy.stat().st_mtime_ns == downloaded_at  # opened once, then read from the cache
    assert [r.id for r in bob["store"].list()] == [runs["bob"].id]  # her run is a read-only copy in the cache


@pytest.mark.slow
def test_a_training_while_the_server_is_down_completes_and_sync_publishes_it_once(
    mlflow_server, experiment, tmp_path, caplog, monkeypatch, capsys
):
    from cnnlab.team.remote import team_history, team_runs
    from cnnlab.team.tracking import client

    box = machine(tmp_path, "carol", mlflow_server.url, experiment)
    data_dir = write_dataset(tmp_path / "data", per_class=12)
    mlflow_server.stop()
    try:
        with caplog.at_level(logging.WARNING, logger="cnnlab.team.tracking"):
            run = train_on(box, data_dir, seed=3, epochs=2, datasets=tmp_path / "datasets")  # on a dataset version
    finally:
        mlflow_server.start()
    assert run.status == "completed" and len(run.history) == 2
    assert run.record.team.published is False and run.record.team.run_id is None
    warnings = [r.getMessage() for r in caplog.records if r.name == "cnnlab.team.tracking"]
    assert len(warnings) == 1 and "python -m cnnlab sync" in warnings[0] and run.id in warnings[0]

    assert cli_json(box, monkeypatch, capsys, "sync")["published"] == [run.id]
    again = sync_runs(box["tracking"], box["store"])
    assert again["published"] == [] and again["up_to_date"] == 1
    # A record that lost its "published" mark is completed, not copied: still one run, no epoch twice.
    box["store"].get(run.id).update(team=dataclasses.replace(box["store"].get(run.id).record.team, published=False))
    assert sync_runs(box["tracking"], box["store"])["published"] == [run.id]
    rows = team_runs(box["tracking"])
    assert [row["local_run_id"] for row in rows] == [run.id]
    assert rows[0]["status"] == "completed" and rows[0]["user"] == "carol"
    assert rows[0]["id"] == box["store"].get(run.id).record.team.run_id
    same_curve(run.epoch_rows(), team_history(box["tracking"], rows[0]["id"]))
    # The version it trained on is tagged, and its manifest is one of the run's files.
    team_copy = client(box["tracking"].uri)
    tags = team_copy.get_run(rows[0]["id"]).data.tags
    assert (tags["cnnlab.dataset_name"], tags["cnnlab.dataset_version"]) == ("data", "1")
    assert [a.path for a in team_copy.list_artifacts(rows[0]["id"], "dataset")] == ["dataset/v0001.json"]


def metric_steps(tracking: TrackingConfig, team_run_id: str) -> dict[str, list[int]]:
    """Every step the server holds for each epoch metric, repeats included (the raw metric history)."""
    from cnnlab.team.tracking import client

    return {key: [m.step for m in client(tracking.uri).get_metric_history(team_run_id, key)] for key in METRICS}


@pytest.mark.slow
def test_a_resumed_run_stays_one_team_run_and_a_continued_run_is_a_new_one_with_its_parent(
    mlflow_server, experiment, tmp_path, monkeypatch, capsys
):
    from cnnlab.runs.workspace import Workspace
    from cnnlab.team.remote import team_history, team_runs
    from cnnlab.team.tracking import client
    from cnnlab.training.engine import train
    from cnnlab.training.hooks import TrainingHooks

    box = machine(tmp_path, "grace", mlflow_server.url, experiment)
    data_dir = write_dataset(tmp_path / "data", per_class=12)
    stop = threading.Event()
    stopped = train(
        data_dir,
        tiny_model_config(),
        tiny_train_config(epochs=4),
        workspace=Workspace(box["store"], box["cache"], tracking=box["tracking"]),
        hooks=TrainingHooks(
            on_batch=lambda p: stop.set() if (p["epoch"], p["batch"]) == (3, 2) else None,  # mid-epoch 3
            stop_event=stop,
        ),
    )
    assert stopped.status == "stopped" and stopped.history[-1].partial
    team_id = stopped.record.team.run_id
    assert client(mlflow_server.url).get_run(team_id).info.status == "KILLED"

    resumed = cli_json(box, monkeypatch, capsys, "resume", stopped.id)
    assert resumed["status"] == "completed" and resumed["team"]["run_id"] == team_id
    run = box["store"].get(stopped.id)
    assert [row.epoch for row in run.history] == [1, 2, 3, 4]
    rows = team_runs(box["tracking"])
    assert [(row["id"], row["status"]) for row in rows] == [(team_id, "completed")]  # one team run, not two
    assert metric_steps(box["tracking"], team_id) == dict.fromkeys(METRICS, [1, 2, 3, 4])  # each epoch once
    same_curve(run.epoch_rows(), team_history(box["tracking"], team_id))
    assert rows[0]["test_accuracy"] == pytest.approx(run.record.metrics.test_accuracy)

    continued = cli_json(box, monkeypatch, capsys, "train", "--continue-from", run.id, "--epochs", "2")
    child = box["store"].get(continued["run_id"])
    child_id = child.record.team.run_id
    assert child.status == "completed" and child.record.team.published is True and child_id != team_id
    assert {row["id"] for row in team_runs(box["tracking"])} == {team_id, child_id}
    tags = client(mlflow_server.url).get_run(child_id).data.tags
    assert tags["cnnlab.parent_run"] == run.id and tags["cnnlab.status"] == "completed"
    assert metric_steps(box["tracking"], child_id) == dict.fromkeys(METRICS, [5, 6])  # the continued epochs only
    same_curve(child.epoch_rows(), team_history(box["tracking"], child_id))
    assert metric_steps(box["tracking"], team_id) == dict.fromkeys(METRICS, [1, 2, 3, 4])  # the parent untouched


@pytest.mark.slow  # the team server's start, shared with the other team tests
def test_a_dead_workers_trial_runs_are_failed_whatever_quotes_the_study_name_holds(mlflow_server, experiment):
    from cnnlab.team.tracking import STUDY_TAG, TRIAL_TAG, client, experiment_id, fail_trial_runs

    config = TrackingConfig(mlflow_server.url, experiment, "tester")
    mlflow = client(config.uri)

    def team_run(study: str, trial: int = 0) -> str:
        tags = {STUDY_TAG: study, TRIAL_TAG: str(trial)}
        return mlflow.create_run(experiment_id(config), tags=tags).info.run_id  # "RUNNING" until ended

    studies = ["Anna's sweep", 'the "big" one', 'Anna\'s "big" one\\']
    dead = {study: team_run(study) for study in studies}
    alive = [team_run(studies[0], trial=1), team_run("Anna_s _big_ one_"), team_run("Anna")]
    for study in studies:
        assert fail_trial_runs(config, study, 0) == 1
        assert mlflow.get_run(dead[study]).info.status == "FAILED"
        assert mlflow.get_run(dead[study]).data.tags["cnnlab.status"] == "failed"
    assert [mlflow.get_run(run_id).info.status for run_id in alive] == ["RUNNING"] * 3


def test_a_dead_trial_the_team_server_cannot_fail_is_logged(caplog):
    from cnnlab.sweep.faults import _fail_team_runs

    config = TrackingConfig(f"http://127.0.0.1:{free_port()}", "nobody-listens", "tester")
    with caplog.at_level(logging.WARNING, logger="cnnlab.sweep.faults"):
        _fail_team_runs(config, "Anna's sweep", 3)  # best effort: no exception
    (record,) = caplog.records
    assert record.getMessage().startswith(
        f'Could not mark trial 3 of study "Anna\'s sweep" failed on the team server {config.uri} ('
    )


def test_team_commands_without_a_server_say_what_to_do(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("CNNLAB_TRACKING_URI", raising=False)
    assert main(["sync"]) == 2
    assert "CNNLAB_TRACKING_URI" in capsys.readouterr().err
    assert main(["runs", "--team"]) == 2
    assert "--tracking-uri" in capsys.readouterr().err
    pytest.importorskip("mlflow", reason="reaching a server needs the mlflow client (requirements-team.txt)")
    nobody = f"http://127.0.0.1:{free_port()}"
    assert main(["runs", "--team", "--tracking-uri", nobody]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "did not answer" in err[0] and nobody in err[0]


def test_a_teammates_run_on_a_dataset_version_finds_the_version_with_its_content_here(tmp_path):
    """Bob opens Alice's run, trained on her version 2 (a relabel) of a folder he has a copy of: no version
    of his has those labels until he saves the same relabel; then the copy evaluates on his version 2."""
    import shutil

    from cnnlab.analysis.evaluate import evaluate_run, run_report
    from cnnlab.data import edits, versions
    from cnnlab.runs.dataset import recorded_version
    from cnnlab.runs.workspace import Workspace
    from cnnlab.team.remote import attach_dataset, team_store
    from cnnlab.training.engine import train

    alice, bob = tmp_path / "alice", tmp_path / "bob"
    folder = write_dataset(alice / "data", per_class=10)
    relabel = [edits.Relabel("cats/cats_000.png", "dogs")]
    edits.save_version(versions.open_dataset(folder, alice / "datasets"), relabel)
    workspace = Workspace(RunStore(alice / "models"), alice / "cache", datasets=alice / "datasets")
    run = train(folder, tiny_model_config(), tiny_train_config(epochs=1), workspace=workspace, dataset_version=2)
    # Her run as it reaches Bob's team copies, her folders being on her machine only.
    copies = team_store(bob / "cache")
    shutil.copytree(run.path, copies.root / "teamrun1")
    mine = shutil.copytree(folder, bob / "data")
    shutil.rmtree(alice / "data")
    shutil.rmtree(alice / "datasets")
    copy = copies.get(copies.root / "teamrun1")
    before = copy.record.dataset

    assert attach_dataset(copy, [mine], bob / "cache", datasets=bob / "datasets") is None  # his version 1 only
    assert copies.get(copy.path).record.dataset == before
    edits.save_version(versions.open_dataset(mine, bob / "datasets"), relabel)
    assert attach_dataset(copy, [mine], bob / "cache", datasets=bob / "datasets") == mine
    copy = copies.get(copy.path)
    dataset, number = recorded_version(copy, bob / "cache")
    assert (dataset.source, dataset.folder.parent, number) == (mine, bob / "datasets", 2)
    assert (copy.record.dataset.path, copy.record.dataset.version, copy.record.dataset.fingerprint) == (
        str(mine),
        2,
        before.fingerprint,
    )
    report = run_report(copy, bob / "cache")
    assert report.class_names[report.labels[report.files.index("cats/cats_000.png")]] == "dogs"
    evaluation = evaluate_run(copy, cache=bob / "cache", refresh=True)
    assert not evaluation.warnings and evaluation.num_missing == 0 and not evaluation.dataset_changed
    assert evaluation.accuracy == pytest.approx(run.record.metrics.test_accuracy)


def test_training_without_a_tracking_uri_never_imports_mlflow(tmp_path):
    """In a program forked from one that imported TensorFlow and CNN Lab's commands (`forked`): had any
    of those imports pulled MLflow in, it would be listed too."""
    data_dir = write_dataset(tmp_path / "data", per_class=6)
    script = (
        "import sys; import cnnlab; from cnnlab.cli import main; "
        f"status = main(['train', {str(data_dir)!r}, '--epochs', '1', '--image-size', '32', '--conv-blocks', '1', "
        "'--filters', '4', '--dense-units', '8', '--flip', 'none', '--rotation', '0', '--batch-size', '8']); "
        "print(status, sorted(m for m in sys.modules if m.split('.')[0] == 'mlflow'))"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("CNNLAB_TRACKING")}
    env.update(
        TF_CPP_MIN_LOG_LEVEL="3",
        CNNLAB_MODELS_DIR=str(tmp_path / "models"),
        CNNLAB_CACHE_DIR=str(tmp_path / "cache"),
    )
    done = forked.run(["-c", script], tmp_path / "train", env=env, timeout=300)
    assert done.poll() == 0, done.errors()[-2000:]
    assert done.output().strip().splitlines()[-1] == "0 []"


@pytest.mark.slow
def test_runs_page_syncs_lists_the_team_and_opens_a_teammates_run(
    mlflow_server, experiment, tmp_path, app_cache, isolated_dirs, monkeypatch
):
    from streamlit.testing.v1 import AppTest

    from cnnlab.runs.workspace import Workspace
    from cnnlab.training.engine import train

    data_dir = write_dataset(tmp_path / "data")
    erin = machine(tmp_path, "erin", mlflow_server.url, experiment)
    theirs = train_on(erin, data_dir, seed=4, epochs=2)
    cache, models = isolated_dirs
    mine = train(
        data_dir, tiny_model_config(), tiny_train_config(), workspace=Workspace(RunStore(models), cache), name="mine"
    )
    settings = {
        "CNNLAB_TRACKING_URI": mlflow_server.url,
        "CNNLAB_EXPERIMENT": experiment,
        "CNNLAB_USER": "dave",
        "CNNLAB_MODELS_DIR": str(models),
        "CNNLAB_CACHE_DIR": str(app_cache),
    }
    for name, value in settings.items():
        monkeypatch.setenv(name, value)

    at = AppTest.from_file(str(REPO_ROOT / "streamlit_app.py"), default_timeout=180).run()
    at.switch_page("pages/runs.py").run()
    next(b for b in at.button if b.label == "Sync").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("Published 1 run(s)" in s.value for s in at.success)
    assert RunStore(models).get(mine.id).record.team.published is True

    at.toggle(key="team-view").set_value(True).run()
    assert not at.exception, [e.value for e in at.exception]
    table = at.dataframe[0].value
    assert sorted(table["user"]) == ["dave", "erin"] and sorted(table["name"]) == ["mine", "run of erin"]
    at.selectbox[0].set_value(theirs.record.team.run_id).run()
    next(b for b in at.button if b.label == "Open in Evaluate and Predict").click().run()
    assert not at.exception, [e.value for e in at.exception]
    accuracy = theirs.record.metrics.test_accuracy
    assert any(m.label == "Test accuracy" and m.value == f"{accuracy:.1%}" for m in at.metric)
    assert not at.info or all("not on this machine" not in i.value for i in at.info)  # dataset found by fingerprint


def team_id(run) -> str:
    return run.record.team.run_id


def chart(at, key: str) -> dict:
    """A Plotly chart of the page, by key, as its figure's JSON."""
    assert not at.exception, [e.value for e in at.exception]
    return json.loads(next(c for c in at.get("plotly_chart") if c.proto.id.endswith(f"-{key}")).proto.spec)


def overlaid(at) -> dict[str, str]:
    """The team view's accuracy overlay: each run's validation curve, team run id to legend name."""
    traces = chart(at, "team-acc")["data"]
    return {t["legendgroup"]: t["name"] for t in traces if t["name"].endswith("(validation)")}


@pytest.mark.slow
def test_team_view_filters_by_user_dataset_and_sweep_overlays_the_selection_and_keeps_teammates_runs_read_only(
    mlflow_server, experiment, tmp_path, app_cache, monkeypatch
):
    from streamlit.testing.v1 import AppTest

    from cnnlab.runs.workspace import Workspace
    from cnnlab.sweep import SweepConfig, run_sweep

    flowers = write_dataset(tmp_path / "flowers", per_class=10)
    birds = write_dataset(tmp_path / "birds", classes=("owls", "cats"), per_class=10)
    alice = machine(tmp_path, "alice", mlflow_server.url, experiment)
    bob = machine(tmp_path, "bob", mlflow_server.url, experiment)
    # Alice gives two runs the same name: each keeps its own curve in the overlay.
    a_flowers = train_on(alice, flowers, seed=1, epochs=2, name="baseline")
    a_birds = train_on(alice, birds, seed=2, epochs=2, name="baseline")
    b_birds = train_on(bob, birds, seed=3, epochs=2)
    study = f"team-view-{os.getpid()}"
    run_sweep(
        flowers,
        tiny_space({"dense_units": [4, 8]}, epochs=2),
        SweepConfig(trials=2, study_name=study),
        workspace=Workspace(bob["store"], bob["cache"], tracking=bob["tracking"]),
    )
    trials = {team_id(run) for run in bob["store"].list(sweep=study)}
    assert len(trials) == 2 and None not in trials
    everyone = {team_id(a_flowers), team_id(a_birds), team_id(b_birds), *trials}

    for name, value in {**alice["env"], "CNNLAB_CACHE_DIR": str(app_cache)}.items():
        monkeypatch.setenv(name, value)
    at = AppTest.from_file(str(REPO_ROOT / "streamlit_app.py"), default_timeout=180).run()
    at.switch_page("pages/runs.py").run()
    at.toggle(key="team-view").set_value(True).run()

    def shown() -> set[str]:
        assert not at.exception, [e.value for e in at.exception]
        (table,) = at.dataframe
        return set(table.value["id"])

    def only(**filters: list[str]) -> set[str]:
        for field in ("user", "dataset", "sweep"):
            at.multiselect(key=f"team-filter-{field}").set_value(filters.get(field, []))
        at.run()
        return shown()

    assert shown() == everyone and any(c.value.startswith("5 of 5 team runs") for c in at.caption)
    assert at.multiselect(key="team-filter-user").options == ["alice", "bob"]
    assert at.multiselect(key="team-filter-dataset").options == ["birds", "flowers"]
    assert at.multiselect(key="team-filter-sweep").options == [study]
    assert only(user=["alice"]) == {team_id(a_flowers), team_id(a_birds)}
    assert only(user=["bob"]) == {team_id(b_birds), *trials}
    assert only(user=["bob"], dataset=["flowers"]) == trials
    assert only(dataset=["flowers"]) == {team_id(a_flowers), *trials}
    assert only(dataset=["birds"], sweep=[study]) == set()
    assert only(sweep=[study]) == trials
    assert any(c.value.startswith("2 of 5 team runs") for c in at.caption)
    assert len(chart(at, "team-parcoords")["data"][0]["line"]["color"]) == 2  # one line per run shown

    # Three runs selected, two of them alike in name and user: three curves.
    assert only() == everyone
    picked = [team_id(a_flowers), team_id(a_birds), team_id(b_birds)]
    ids = list(at.dataframe[0].value["id"])
    at.session_state["team-table"] = {"selection": {"rows": [ids.index(i) for i in picked]}}
    at.run()
    curves = overlaid(at)
    assert sorted(curves) == sorted(picked) and len(set(curves.values())) == 3
    # A filter keeps what it still shows selected, and selects nothing else in place of what it hides.
    assert only(user=["bob"]) == {team_id(b_birds), *trials}
    assert list(overlaid(at)) == [team_id(b_birds)]

    # A teammate's run opens read-only; one's own opens as the local run it is.
    only()
    at.selectbox(key="team-run").set_value(team_id(b_birds)).run()
    assert any("bob's run is read-only here" in c.value for c in at.caption)
    at.button(key="open-team-run").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.selectbox(key="picked_run").value == team_id(b_birds)  # Evaluate, on the downloaded copy
    accuracy = b_birds.record.metrics.test_accuracy
    assert any(m.label == "Test accuracy" and m.value == f"{accuracy:.1%}" for m in at.metric)
    copies = RunStore(app_cache / "team-runs")
    for change in (lambda: copies.rename(team_id(b_birds), "mine now"), lambda: copies.delete(team_id(b_birds))):
        with pytest.raises(ValueError, match="read-only here"):
            change()
    at.switch_page("pages/runs.py").run()
    assert not at.exception, [e.value for e in at.exception]
    managed = at.selectbox(key="manage-run").options  # "name [status, test acc]": her two runs and the demo
    assert len(managed) == 3 and not [o for o in managed if not o.startswith(("baseline [", "Demo (shapes) (demo)"))]

    at.toggle(key="team-view").set_value(True).run()
    at.selectbox(key="team-run").set_value(team_id(a_flowers)).run()
    assert any(c.value.startswith("Your run") for c in at.caption)
    at.button(key="open-team-run").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.selectbox(key="picked_run").value == a_flowers.id
    assert not (app_cache / "team-runs" / team_id(a_flowers)).exists()  # nothing downloaded
