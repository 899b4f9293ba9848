"""The model registry and the pyfunc model: a run registered on a real `mlflow server` (and, from the
command line, in the local SQLite registry of the models folder), aliases moved and seen by another
client, and the pyfunc model loaded in-process predicting exactly as `predict` does."""

from __future__ import annotations

import os

import numpy as np
import pytest

from cnnlab.cli import main
from cnnlab.deploy.mlflow_model import encode_images, output_columns
from cnnlab.deploy.prediction import predict
from cnnlab.team.tracking import TrackingConfig
from helpers import class_image, copied_models, image_bytes, last_json, one_line_error, open_page


@pytest.fixture
def config(mlflow_server, request) -> TrackingConfig:
    """The shared server, an experiment of the test's own."""
    return TrackingConfig(mlflow_server.url, f"{request.node.name[:50]}-{os.getpid()}", "tester")


@pytest.mark.slow
def test_register_list_and_move_an_alias_seen_by_another_client(config, trained_run):
    from mlflow.tracking import MlflowClient

    from cnnlab.deploy.registry import model_versions, register_run, resolve, set_alias

    run = trained_run["run"]
    name = f"tiny-{os.getpid()}"
    first = register_run(config, run, name, "champion", cache=trained_run["cache"])
    second = register_run(config, run, name, cache=trained_run["cache"])
    assert (first["version"], second["version"]) == (1, 2)
    rows = model_versions(config, name)
    assert [r["version"] for r in rows] == [2, 1]
    assert rows[1]["aliases"] == ["champion"] and rows[0]["aliases"] == []
    assert rows[0]["run_id"] == run.id and rows[0]["run_name"] == run.name
    assert rows[0]["dataset"] == "data"  # the class folder's name (`write_dataset` into `data`)
    assert rows[0]["test_accuracy"] == pytest.approx(run.record.metrics.test_accuracy)
    assert resolve(config, f"models:/{name}@champion")["version"] == 1

    set_alias(config, name, "champion", 2)
    other = MlflowClient(tracking_uri=config.uri)  # another process's view: nothing cached
    assert other.get_model_version_by_alias(name, "champion").version == "2"
    assert other.get_model_version(name, "2").tags["cnnlab.run_id"] == run.id
    with pytest.raises(ValueError, match=r"has no version 9 .*Received: version=9"):
        set_alias(config, name, "champion", 9)
    with pytest.raises(ValueError, match=r"has no alias 'staging'"):
        resolve(config, f"models:/{name}@staging")
    with pytest.raises(ValueError, match=r"No registered model named 'nothing-here'"):
        model_versions(config, "nothing-here")


@pytest.mark.parametrize(
    ("name", "alias", "error"),
    [("has space", None, "model name"), ("ok", "latest", "alias"), ("ok", "v3", "alias"), ("/x", None, "model name")],
)
def test_bad_names_and_aliases_are_refused_before_any_request(trained_run, name, alias, error):
    from cnnlab.deploy.registry import register_run

    unreachable = TrackingConfig("http://127.0.0.1:9", "x", "tester")
    with pytest.raises(ValueError, match=rf"An? {error}.*Received: "):
        register_run(unreachable, trained_run["run"], name, alias, cache=trained_run["cache"])


def test_pyfunc_model_predicts_as_predict_does(calibrated_run, tmp_path):
    """The folder `cnnlab serve RUN` serves, loaded in-process by MLflow: the same labels and probabilities,
    calibrated by the run's temperature as `cnnlab predict` calibrates them."""
    import mlflow.pyfunc

    from cnnlab.analysis.novelty import flag_images, run_reference
    from cnnlab.deploy.serving import served_model
    from cnnlab.runs.store import RunStore

    # A copy: saving the model fits the unfamiliar-image flag's reference, kept beside the run.
    shared = calibrated_run["run"]
    run = RunStore(copied_models(shared, tmp_path / "models")).get(shared.id)
    folder = served_model(run, tmp_path / "cache")
    assert served_model(run, tmp_path / "cache") == folder  # made once
    rng = np.random.default_rng(5)
    files = [image_bytes(class_image((30, 200, 30), rng, (40, 40))), image_bytes(class_image((9, 9, 9), rng), "JPEG")]
    model = mlflow.pyfunc.load_model(str(folder))
    frame = model.predict(encode_images([*files, b"nope"]))
    assert list(frame.columns) == output_columns(run.class_names)
    expected = predict(
        run.load_model(), run.class_names, run.model_config(), files, errors="report", temperature=run.temperature
    )
    assert run.temperature is not None and all(mine.calibrated for mine in expected)
    for (_, row), mine in zip(frame.iloc[:2].iterrows(), expected, strict=True):
        assert row["label"] == mine.label and row["error"] is None
        assert [row[f"P({c})"] for c, _ in mine.ranked] == pytest.approx([p for _, p in mine.ranked], abs=1e-6)
    assert frame.iloc[2]["label"] is None and "not an image" in frame.iloc[2]["error"]
    assert frame.iloc[2]["unlike_training"] is None
    # The unfamiliar-image flag travels with the model: the same flags as in-process.
    flags = flag_images(run.load_model(), run_reference(run, cache=tmp_path / "cache"), [m.image for m in expected])
    assert list(frame.iloc[:2]["unlike_training"]) == [f.novel for f in flags]
    assert list(frame.iloc[:2]["novelty_score"]) == pytest.approx([f.score for f in flags], abs=1e-5)
    assert model.metadata.get_input_schema().input_names() == ["image"]


def test_cli_registers_in_the_local_registry_of_the_models_folder(trained_run, tmp_path, monkeypatch, capsys):
    """No tracking server set: the registry is SQLite in the models folder, artifacts beside it."""
    import dataclasses
    import shutil

    from cnnlab.runs.store import RunStore

    models = tmp_path / "models"
    shutil.copytree(trained_run["run"].path, models / trained_run["run"].id)
    monkeypatch.setenv("CNNLAB_MODELS_DIR", str(models))
    monkeypatch.setenv("CNNLAB_CACHE_DIR", str(tmp_path / "cache"))
    run_id = trained_run["run"].id
    copy = RunStore(models).get(run_id)  # as if trained on version 3 of a dataset made in CNN Lab
    copy.update(dataset=dataclasses.replace(copy.record.dataset, name="shots", version=3))
    assert main(["register", run_id, "--name", "local-tiny", "--alias", "champion", "--json"]) == 0
    registered = last_json(capsys)
    assert registered["version"] == 1 and registered["aliases"] == ["champion"]
    assert (registered["dataset"], registered["dataset_version"]) == ("shots", 3)
    assert registered["tracking_uri"] == f"sqlite:///{models / 'registry' / 'mlflow.db'}"
    assert registered["source"].startswith((models / "registry" / "artifacts").as_uri())
    assert main(["register", run_id, "--name", "local-tiny", "--json"]) == 0
    capsys.readouterr()
    assert main(["registry", "local-tiny", "--alias", "champion", "--version", "2", "--json"]) == 0
    listed = last_json(capsys)
    assert [(r["version"], r["aliases"], r["run_id"]) for r in listed["versions"]] == [
        (2, ["champion"], run_id),
        (1, [], run_id),
    ]
    assert main(["registry", "local-tiny"]) == 0
    assert "@champion" in capsys.readouterr().out
    assert main(["registry", "local-tiny", "--alias", "champion"]) == 2
    assert "--alias and --version together" in one_line_error(capsys)
    assert main(["registry", "local-tiny", "--alias", "champion", "--version", "5"]) == 2
    assert "has no version 5" in one_line_error(capsys)
    assert main(["serve", "models:/local-tiny@nope"]) == 2
    assert "has no alias 'nope'" in one_line_error(capsys)
    assert main(["serve", run_id, "--port", "70000"]) == 2
    assert "port" in one_line_error(capsys)


def versions_shown(at):
    """The Register section's table of versions (the only one with an `aliases` column)."""
    return next(d.value for d in at.dataframe if "aliases" in d.value.columns)


def test_runs_page_registers_the_run_lists_versions_and_moves_an_alias(app, trained_run, tmp_path, monkeypatch):
    """The local registry (no team server): nothing is made by looking; two registrations, then the alias moved."""
    from cnnlab.deploy.registry import model_versions
    from cnnlab.settings import load_settings

    models = copied_models(trained_run["run"], tmp_path / "models")
    monkeypatch.setenv("CNNLAB_MODELS_DIR", str(models))
    run_id = trained_run["run"].id
    at = open_page(app, "pages/runs.py")
    at.selectbox(key="manage-run").set_value(run_id).run()
    at.text_input(key="registry-name").set_value("page-model").run()
    assert not at.exception and any("No model named 'page-model'" in c.value for c in at.caption)
    assert not (models / "registry").exists()

    register = next(b for b in at.button if b.label == "Register this run")
    register.click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert "page-model version 1 as @champion" in at.success[0].value
    at.text_input(key="registry-alias").set_value("").run()
    next(b for b in at.button if b.label == "Register this run").click().run()
    assert "page-model version 2." in at.success[0].value
    shown = versions_shown(at)
    assert list(shown["version"]) == [2, 1] and list(shown["aliases"]) == ["", "@champion"]

    at.selectbox(key="registry-move-version").set_value(2).run()
    next(b for b in at.button if b.label == "Point the alias at this version").click().run()
    assert not at.exception and not at.error
    registry = load_settings({"CNNLAB_MODELS_DIR": str(models)}).registry
    assert [r["aliases"] for r in model_versions(registry, "page-model")] == [["champion"], []]
    assert list(versions_shown(at)["aliases"]) == ["@champion", ""]


@pytest.mark.slow
def test_without_mlflow_the_commands_say_how_to_get_it_in_one_line(tmp_path):
    """MLflow made unimportable, as where it is not installed, in programs forked from one that
    imported TensorFlow and CNN Lab's commands but never MLflow (`forked`)."""
    import forked

    code = "import sys; sys.modules['mlflow'] = None\nfrom cnnlab.cli import main\nsys.exit(main(sys.argv[1:]))"
    env = {**os.environ, "CNNLAB_MODELS_DIR": str(tmp_path)}
    for args in (["registry", "shapes"], ["serve", "models:/shapes@champion"], ["register", "demo", "--name", "x"]):
        done = forked.run(["-c", code, *args], tmp_path / args[0], env=env, timeout=120)
        assert done.poll() == 2, done.errors()
        lines = done.errors().strip().splitlines()
        assert len(lines) == 1 and "needs MLflow, which is not installed" in lines[0] and "pip install" in lines[0]
