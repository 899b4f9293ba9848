"""The model registry: a run's pyfunc model registered as a version of a named model, its aliases
(`champion`, `staging`...) moved between versions, and the versions listed with where they came from.

MLflow's own registry does the work, on the team's tracking server or, for one person, on a local
SQLite store in the models folder (`Settings.registry_uri`). Each registration is an MLflow run of
its own experiment (`<experiment>-models`, so the team's list of trainings holds trainings only)
whose artifact `model` is the pyfunc model (`cnnlab.deploy.mlflow_model`); the version's tags say
which CNN Lab run it is, its dataset (and version) and test accuracy. MLflow is imported inside
the functions only.
"""

from __future__ import annotations

import contextlib
import importlib.util
import math
import re
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cnnlab.common.checks import one_line
from cnnlab.runs.store import Run
from cnnlab.team.tracking import TrackingConfig, client, is_connection_error

RUN_TAG = "cnnlab.run_id"
RUN_NAME_TAG = "cnnlab.run_name"
DATASET_TAG = "cnnlab.dataset"
DATASET_VERSION_TAG = "cnnlab.dataset_version"
TEST_ACCURACY_TAG = "cnnlab.test_accuracy"
ARTIFACT = "model"
# Letters, digits and . _ - : a name that goes into `models:/NAME@ALIAS` and a search filter unquoted.
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
ALIAS = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,99}")
INSTALL = "install it with `pip install mlflow==3.17.2` (the `dev` extra has it)"


def require_mlflow(uri: str | None = None) -> None:
    """A one-line ValueError when MLflow (or, for a local SQLite registry, its database layer) is missing;
    a local registry's folder is made here."""
    if importlib.util.find_spec("mlflow") is None:
        raise ValueError(f"Registering and serving models needs MLflow, which is not installed; {INSTALL}.")
    if uri is not None and uri.startswith("sqlite:") and importlib.util.find_spec("alembic") is None:
        raise ValueError(
            "A local model registry (SQLite) needs the full MLflow package, not mlflow-skinny; "
            f"{INSTALL}, or set CNNLAB_TRACKING_URI to a team server. Received: tracking_uri={uri!r}"
        )
    local = _local_artifacts(uri) if uri else None
    if local is not None:
        local.parent.mkdir(parents=True, exist_ok=True)


def check_name(name: str) -> str:
    """A registered model's name, checked: 1-100 letters, digits, '.', '_' or '-', starting with a letter or digit."""
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise ValueError(
            "A model name is 1 to 100 letters, digits, '.', '_' or '-', starting with a letter or digit. "
            f"Received: name={name!r}"
        )
    return name


def check_alias(alias: str) -> str:
    """An alias, checked: letters, digits, '_' and '-', not starting with a digit, not `latest` nor `v<number>`."""
    if not isinstance(alias, str) or not ALIAS.fullmatch(alias) or alias == "latest" or re.fullmatch(r"v\d+", alias):
        raise ValueError(
            "An alias is 1 to 100 letters, digits, '_' or '-', starting with a letter or '_', and not "
            f"'latest' or 'v<number>' (MLflow's own names). Received: alias={alias!r}"
        )
    return alias


def register_run(
    config: TrackingConfig, run: Run, name: str, alias: str | None = None, *, cache: Path
) -> dict[str, Any]:
    """Register the run's model as a new version of `name` (the model is made on first use) and point
    `alias` at it; returns the version's row (as `model_versions` lists it). `cache` is where a
    read-only run's unfamiliar-image reference is kept (`save_pyfunc`)."""
    from mlflow.entities import Metric, RunTag

    from cnnlab.deploy.mlflow_model import save_pyfunc

    check_name(name)
    if alias is not None:
        check_alias(alias)
    require_mlflow(config.uri)
    if run.status != "completed" or not run.model_path.is_file():
        raise ValueError(
            f"Only a completed run with a saved model can be registered; run '{run.name}' is {run.status}. "
            f"Received: run={run.id!r}"
        )
    tags = _version_tags(run)
    with tempfile.TemporaryDirectory(prefix="cnnlab-register-") as folder:
        local = save_pyfunc(run, Path(folder) / ARTIFACT, cache=cache)
        with _requests(config, name):
            mlflow = client(config.uri)
            registration = mlflow.create_run(
                _experiment(config), run_name=f"{name} from {run.name}", tags={**tags, "mlflow.user": config.user}
            )
            run_id = registration.info.run_id
            mlflow.log_artifacts(run_id, str(local), ARTIFACT)
            accuracy = run.record.metrics.test_accuracy
            if isinstance(accuracy, float) and math.isfinite(accuracy):
                mlflow.log_batch(run_id, metrics=[Metric("test_accuracy", accuracy, int(time.time() * 1000), 0)])
            mlflow.log_batch(run_id, tags=[RunTag("cnnlab.registered_model", name)])
            mlflow.set_terminated(run_id)
    with _requests(config, name):
        _create_model(config, name)
        source = f"{registration.info.artifact_uri.rstrip('/')}/{ARTIFACT}"
        version = mlflow.create_model_version(name, source, run_id=run_id, tags=tags)
        if alias is not None:
            mlflow.set_registered_model_alias(name, alias, version.version)
    return next(row for row in model_versions(config, name) if row["version"] == int(version.version))


def model_versions(config: TrackingConfig, name: str) -> list[dict[str, Any]]:
    """Every version of `name`, newest first: `version`, `run_id` (CNN Lab's), `run_name`, `dataset`,
    `dataset_version`, `test_accuracy`, `aliases`, `created` (ms since the epoch) and `source`."""
    check_name(name)
    require_mlflow(config.uri)
    with _requests(config, name):
        mlflow = client(config.uri)
        aliases = mlflow.get_registered_model(name).aliases
        found = mlflow.search_model_versions(f"name = '{name}'")
    by_version: dict[int, list[str]] = {}
    for alias, number in aliases.items():
        by_version.setdefault(int(number), []).append(alias)
    rows = [_row(version, sorted(by_version.get(int(version.version), []))) for version in found]
    return sorted(rows, key=lambda row: -row["version"])


def set_alias(config: TrackingConfig, name: str, alias: str, version: int) -> None:
    """Point `alias` of model `name` at `version` (moving it from the version it named before)."""
    check_name(name)
    check_alias(alias)
    require_mlflow(config.uri)
    with _requests(config, name):
        mlflow = client(config.uri)
        known = {int(v.version) for v in mlflow.search_model_versions(f"name = '{name}'")}
        if version not in known:
            listed = ", ".join(str(v) for v in sorted(known)) or "none"
            raise ValueError(
                f"Model {name!r} has no version {version} (its versions: {listed}); list them with "
                f"`python -m cnnlab registry {name}`. Received: version={version}"
            )
        mlflow.set_registered_model_alias(name, alias, str(version))


def resolve(config: TrackingConfig, uri: str) -> dict[str, Any]:
    """The version a `models:/NAME@ALIAS` (or `models:/NAME/VERSION`) URI names, as `model_versions` lists it;
    a one-line ValueError when the registry has no such model, alias or version."""
    match = re.fullmatch(r"models:/([^/@]+)(?:@([^/@]+)|/(\d+))", uri)
    if match is None:
        raise ValueError(
            f"A registered model is named as models:/NAME@ALIAS or models:/NAME/VERSION. Received: model={uri!r}"
        )
    name, alias, number = match.groups()
    require_mlflow(config.uri)
    with _requests(config, name):
        mlflow = client(config.uri)
        if alias is not None:
            aliases = mlflow.get_registered_model(name).aliases
            if alias not in aliases:
                known = ", ".join(sorted(aliases)) or "none"
                raise ValueError(
                    f"Model {name!r} has no alias {alias!r} (its aliases: {known}); set one with "
                    f"`python -m cnnlab registry {name} --alias {alias} --version N`. Received: model={uri!r}"
                )
            number = aliases[alias]
    return next(row for row in model_versions(config, name) if row["version"] == int(number))


def _row(version, aliases: list[str]) -> dict[str, Any]:
    tags = version.tags or {}
    accuracy = tags.get(TEST_ACCURACY_TAG)
    dataset_version = tags.get(DATASET_VERSION_TAG)
    return {
        "name": version.name,
        "version": int(version.version),
        "aliases": aliases,
        "run_id": tags.get(RUN_TAG),
        "run_name": tags.get(RUN_NAME_TAG),
        "dataset": tags.get(DATASET_TAG),
        "dataset_version": int(dataset_version) if dataset_version and dataset_version.isdigit() else None,
        "test_accuracy": float(accuracy) if accuracy else None,
        "created": version.creation_timestamp,
        "source": version.source,
    }


def _version_tags(run: Run) -> dict[str, str]:
    dataset, accuracy = run.record.dataset, run.record.metrics.test_accuracy
    tags = {
        RUN_TAG: run.id,
        RUN_NAME_TAG: run.name,
        DATASET_TAG: dataset.builtin or dataset.name or Path(dataset.path).name,
    }
    if dataset.version is not None:
        tags[DATASET_VERSION_TAG] = str(dataset.version)
    if isinstance(accuracy, float) and math.isfinite(accuracy):
        tags[TEST_ACCURACY_TAG] = repr(accuracy)
    return tags


def _experiment(config: TrackingConfig) -> str:
    """The registrations' experiment, made on first use; a local SQLite registry keeps its artifacts beside
    its database (MLflow would otherwise put them in `./mlruns` of whatever folder the command runs in)."""
    from mlflow.exceptions import MlflowException

    mlflow, name = client(config.uri), f"{config.experiment}-models"
    found = mlflow.get_experiment_by_name(name)
    if found is None:
        location = _local_artifacts(config.uri)
        with contextlib.suppress(MlflowException):  # made by another process first
            mlflow.create_experiment(name, artifact_location=location.as_uri() if location else None)
        found = mlflow.get_experiment_by_name(name)
    return found.experiment_id


def _local_artifacts(uri: str) -> Path | None:
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri.removeprefix("sqlite:///")).parent / "artifacts"


def _create_model(config: TrackingConfig, name: str) -> None:
    from mlflow.exceptions import MlflowException

    mlflow = client(config.uri)
    try:
        mlflow.get_registered_model(name)
    except MlflowException as exc:
        if "RESOURCE_DOES_NOT_EXIST" not in str(exc) and exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        with contextlib.suppress(MlflowException):  # registered by another process first
            mlflow.create_registered_model(name, tags={"cnnlab": "true"})


@contextlib.contextmanager
def _requests(config: TrackingConfig, name: str) -> Iterator[None]:
    """Turn a failed registry request into a one-line ValueError: the server down, or no such model."""
    from mlflow.exceptions import MlflowException

    from cnnlab.deploy.mlflow_model import quiet_mlflow

    try:
        with quiet_mlflow():
            yield
    except (MlflowException, OSError) as exc:
        if is_connection_error(exc):
            raise ValueError(
                f"The model registry did not answer ({one_line(exc)[:120]}); check that the tracking server is "
                f"running and that CNNLAB_TRACKING_URI is right. Received: tracking_uri={config.uri!r}"
            ) from None
        if getattr(exc, "error_code", None) == "RESOURCE_DOES_NOT_EXIST" or "RESOURCE_DOES_NOT_EXIST" in str(exc):
            raise ValueError(
                f"No registered model named {name!r} here; register a run with `python -m cnnlab register RUN "
                f"--name {name}`. Received: name={name!r}"
            ) from None
        raise ValueError(
            f"The model registry refused the request ({one_line(exc)[:200]}). Received: tracking_uri={config.uri!r}"
        ) from None
