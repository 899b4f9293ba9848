"""Team tracking: each run's copy on an MLflow tracking server, made whole and kept unique.

The local run store stays the source of truth; the server holds a copy that teammates read
(`cnnlab.team`): parameters (every model and training setting), per-epoch metrics with
`step=epoch`, tags (user, host, dataset and its version, sweep, status, ...), the test metrics and the
run's files (with the manifest of the dataset version it trained on, under `dataset/`).
A run's copy is found again by its `cnnlab.key` tag, a random key kept in the run record
(`RunRecord.team`, a `TeamCopy`), so publishing a run again completes its copy instead of
making a second one. `cnnlab.team.publisher` publishes a training live; `sync_runs` publishes later
whatever could not be published then.

MLflow (`mlflow-skinny`, the `team` extra) is imported by the functions here only when a tracking
URI is configured, never on import of `cnnlab`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import secrets
import socket
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from cnnlab import __version__
from cnnlab.common.checks import one_line
from cnnlab.data import versions
from cnnlab.runs.record import RunRecord, TeamCopy
from cnnlab.runs.store import EVALUATION_FILE, MODEL_FILE, RUN_FILE, SPLIT_FILE, Run, RunStore

KEY_TAG = "cnnlab.key"
STUDY_TAG = "cnnlab.sweep.study"
TRIAL_TAG = "cnnlab.sweep.trial"
STATUS_TAG = "cnnlab.status"
DATASET_NAME_TAG = "cnnlab.dataset_name"
DATASET_VERSION_TAG = "cnnlab.dataset_version"
# The artifact folder that holds the manifest of the dataset version a run trained on.
MANIFEST_ARTIFACTS = "dataset"
EPOCH_METRICS = ("loss", "accuracy", "val_loss", "val_accuracy", "learning_rate", "seconds", "images_per_s")
FINAL_METRICS = ("test_accuracy", "test_loss", "best_val_accuracy", "best_val_loss", "train_images_per_s")
ARTIFACTS = (MODEL_FILE, RUN_FILE, EVALUATION_FILE, SPLIT_FILE)
# MLflow's run statuses; "pruned", "stopped" and "interrupted" runs ended early, so KILLED.
MLFLOW_STATUS = {
    "running": "RUNNING",
    "completed": "FINISHED",
    "failed": "FAILED",
    "stopped": "KILLED",
    "pruned": "KILLED",
    "interrupted": "KILLED",
}
# Short on purpose: a server that does not answer must never hold a training or a page up.
REQUEST_TIMEOUT_S = 10
MAX_RETRIES = 0
MAX_TAG_CHARS = 5000
BATCH = 1000  # MLflow's limit of metrics per log_batch call


@dataclass(frozen=True)
class TrackingConfig:
    """Where runs are published: an MLflow tracking URI, the experiment, and who publishes."""

    uri: str
    experiment: str = "cnnlab"
    user: str = "unknown"

    def __post_init__(self) -> None:
        for name in ("uri", "experiment", "user"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip() or len(value) > 500:
                raise ValueError(
                    f"Team tracking needs a non-empty {name} of at most 500 characters (the tracking URI is set by "
                    f"CNNLAB_TRACKING_URI or --tracking-uri). Received: {name}={value!r}"
                )


class TrackingError(ValueError):
    """The tracking server could not be reached or refused a request (one line, with what to do)."""


@lru_cache(maxsize=8)
def client(uri: str):
    """An `MlflowClient` for `uri`, with short request timeouts and no retries (set once per process).

    Values the operator set for MLFLOW_HTTP_REQUEST_TIMEOUT / _MAX_RETRIES are kept.
    """
    from mlflow import environment_variables as mlflow_env
    from mlflow.tracking import MlflowClient

    defaults = {
        mlflow_env.MLFLOW_HTTP_REQUEST_TIMEOUT: REQUEST_TIMEOUT_S,
        mlflow_env.MLFLOW_HTTP_REQUEST_MAX_RETRIES: MAX_RETRIES,
        # Standard output is the CLI's (`--json`), and progress bars are noise in a log.
        mlflow_env.MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT: True,
        mlflow_env.MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR: False,
    }
    for variable, value in defaults.items():
        if not variable.is_set():
            variable.set(value)
    return MlflowClient(tracking_uri=uri)


def unreachable(config: TrackingConfig, exc: BaseException) -> TrackingError:
    """The one-line error for a failed request to the tracking server."""
    reason = "no answer" if is_connection_error(exc) else one_line(exc)
    return TrackingError(
        f"The team tracking server did not answer or refused the request ({reason[:160]}); check that it is "
        f"running and that CNNLAB_TRACKING_URI is right. Received: tracking_uri={config.uri!r}"
    )


def experiment_id(config: TrackingConfig, create: bool = True) -> str | None:
    """The experiment's id, created on first use (None when it does not exist and `create` is False)."""
    from mlflow.exceptions import MlflowException

    known = _experiment_ids.get((config.uri, config.experiment))
    if known is not None:
        return known
    mlflow = client(config.uri)
    found = mlflow.get_experiment_by_name(config.experiment)
    if found is None and create:
        with contextlib.suppress(MlflowException):  # another machine may create it first
            mlflow.create_experiment(config.experiment)
        found = mlflow.get_experiment_by_name(config.experiment)
    if found is None:
        return None
    _experiment_ids[(config.uri, config.experiment)] = found.experiment_id
    return found.experiment_id


_experiment_ids: dict[tuple[str, str], str] = {}


def team_key(run: Run) -> str:
    """The run's key on the server, made (and saved in its record) the first time it is published."""
    team = run.record.team or TeamCopy()
    if not team.key:
        team = dataclasses.replace(team, key=secrets.token_hex(12), run_id=None, published=False)
        run.update(team=team)
    return str(team.key)


def mark(run: Run, key: str, team_run_id: str | None, published: bool) -> None:
    """Record the run's team copy in its run.json."""
    run.update(team=TeamCopy(key, team_run_id, published))


def params_of(record: RunRecord) -> dict[str, str]:
    """Every model and training setting, as MLflow parameters (strings; lists as JSON)."""
    return {
        name: json.dumps(value) if isinstance(value, (list, tuple)) else str(value)
        for name, value in record.configs().items()
    }


def tags_of(record: RunRecord, config: TrackingConfig, key: str, status: str) -> dict[str, str]:
    """Who trained it where, on what data, in which sweep, and its CNN Lab status."""
    dataset, sweep = record.dataset, record.sweep
    tags = {
        KEY_TAG: key,
        "mlflow.user": config.user,
        "mlflow.source.name": "cnnlab",
        "cnnlab.user": config.user,
        "cnnlab.host": record.host or socket.gethostname(),
        "cnnlab.local_run_id": record.id,
        "cnnlab.version": __version__,
        "cnnlab.dataset": dataset.builtin or Path(dataset.path).name,
        "cnnlab.fingerprint": dataset.fingerprint or "",
        "cnnlab.num_images": "" if dataset.num_images is None else str(dataset.num_images),
        "cnnlab.class_names": json.dumps(list(record.class_names))[:MAX_TAG_CHARS],
        STATUS_TAG: status,
    }
    if sweep is not None:
        tags[STUDY_TAG] = sweep.study
        tags[TRIAL_TAG] = str(sweep.trial)
        if sweep.retry_of is not None:
            tags["cnnlab.sweep.retry_of"] = str(sweep.retry_of)
    if record.parent:
        tags["cnnlab.parent_run"] = record.parent
    if dataset.version is not None:
        tags[DATASET_NAME_TAG] = dataset.name or ""
        tags[DATASET_VERSION_TAG] = str(dataset.version)
    return tags


def manifest_file(record: RunRecord) -> Path | None:
    """The manifest of the dataset version the run trained on, when it is on this machine."""
    dataset = record.dataset
    if dataset.version is None or not dataset.versions_folder:
        return None
    path = versions.manifest_path(versions.Dataset(Path(dataset.versions_folder), dataset.name or ""), dataset.version)
    return path if path.is_file() else None


def epoch_metrics(row: dict[str, Any]) -> list[tuple[str, float, int]]:
    """One epoch's (key, value, step) metrics, step being the 1-based epoch; undefined values left out.

    A stopped epoch's partial row has none: resuming trains that epoch again, and a metric once
    sent cannot be taken back, so the team copy holds complete epochs only, each once.
    """
    if row.get("partial"):
        return []
    return [
        (key, float(row[key]), int(row["epoch"]))
        for key in EPOCH_METRICS
        if isinstance(row.get(key), (int, float)) and math.isfinite(row[key])
    ]


def logged_steps(config: TrackingConfig, team_run_id: str) -> set[tuple[str, int]]:
    """The (metric, step) pairs of epoch metrics the team copy already holds."""
    mlflow = client(config.uri)
    return {(key, m.step) for key in EPOCH_METRICS for m in mlflow.get_metric_history(team_run_id, key)}


def log_metrics(config: TrackingConfig, team_run_id: str, metrics: Iterable[tuple[str, float, int]]) -> None:
    """Send (key, value, step) metrics in batches of at most MLflow's limit."""
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    batch = [Metric(key, value, now, step) for key, value, step in metrics]
    for start in range(0, len(batch), BATCH):
        client(config.uri).log_batch(team_run_id, metrics=batch[start : start + BATCH])


def find_team_run(config: TrackingConfig, key: str) -> str | None:
    """The team run id holding the run with `key`, if the server has one."""
    found = client(config.uri).search_runs(
        [experiment_id(config)], filter_string=f"tags.`{KEY_TAG}` = '{key}'", max_results=1
    )
    return found[0].info.run_id if found else None


def start_team_run(config: TrackingConfig, record: RunRecord, key: str) -> str:
    """Find the run's team copy by key or create it, with its parameters and tags; returns its id."""
    from mlflow.entities import Param, RunTag

    mlflow = client(config.uri)
    team_run_id = find_team_run(config, key)
    tags = tags_of(record, config, key, "running")
    if team_run_id is None:
        created = mlflow.create_run(experiment_id(config), run_name=record.name, tags=tags)
        team_run_id = created.info.run_id
        params = [Param(name, value) for name, value in params_of(record).items()]
        mlflow.log_batch(team_run_id, params=params)
    else:  # a run published before (resumed, or a sync of a half-published run): running again
        mlflow.update_run(team_run_id, status="RUNNING")
        mlflow.log_batch(team_run_id, tags=[RunTag(name, value) for name, value in tags.items()])
    return team_run_id


def publish_run(
    config: TrackingConfig, run: Run, key: str, team_run_id: str | None = None, logged: set | None = None
) -> str:
    """Make the run's team copy whole: parameters, every epoch, test metrics, files, tags and status.

    Idempotent: what the copy already has is not sent again (`logged` lists the (metric, step)
    pairs already sent by a live publisher; otherwise the server is asked). Returns the team run id.
    """
    from mlflow.entities import Param, RunTag

    mlflow = client(config.uri)
    team_run_id = team_run_id or find_team_run(config, key) or start_team_run(config, run.record, key)
    existing = mlflow.get_run(team_run_id).data
    params = [Param(name, value) for name, value in params_of(run.record).items() if name not in existing.params]
    if params:
        mlflow.log_batch(team_run_id, params=params)
    log_metrics(config, team_run_id, _missing_metrics(config, run, team_run_id, existing.metrics, logged))
    for name in ARTIFACTS:
        if (run.path / name).is_file():
            mlflow.log_artifact(team_run_id, str(run.path / name))
    manifest = manifest_file(run.record)
    if manifest is not None:
        mlflow.log_artifact(team_run_id, str(manifest), MANIFEST_ARTIFACTS)
    status = run.status
    tags = tags_of(run.record, config, key, status)
    mlflow.log_batch(team_run_id, tags=[RunTag(name, value) for name, value in tags.items()])
    if status != "running":
        mlflow.set_terminated(team_run_id, MLFLOW_STATUS.get(status, "FAILED"))
    return team_run_id


def _missing_metrics(
    config: TrackingConfig, run: Run, team_run_id: str, latest: dict[str, float], logged: set | None
) -> Iterator[tuple[str, float, int]]:
    """The epoch and final metrics the team copy lacks."""
    if logged is None:
        logged = logged_steps(config, team_run_id)
    for row in run.epoch_rows():
        yield from (m for m in epoch_metrics(row) if (m[0], m[2]) not in logged)
    for key, value in run.record.metrics.to_dict().items():
        if (
            key in FINAL_METRICS
            and isinstance(value, (int, float))
            and math.isfinite(value)
            and latest.get(key) != value
        ):
            yield key, float(value), 0


def publish_status(config: TrackingConfig, run: Run) -> None:
    """Send a published run's changed status (a sweep marks a trial "pruned" after its training)."""
    from mlflow.entities import RunTag

    team = run.record.team
    if team is None or not team.published or not team.run_id:
        return  # not on the server yet: `sync` sends it whole, status included
    mlflow = client(config.uri)
    mlflow.log_batch(team.run_id, tags=[RunTag(STATUS_TAG, run.status)])
    mlflow.set_terminated(team.run_id, MLFLOW_STATUS.get(run.status, "FAILED"))


def fail_trial_runs(config: TrackingConfig, study: str, trial: int) -> int:
    """Mark a sweep trial's team runs that are still "running" as failed (their worker died); returns how many."""
    from mlflow.entities import RunTag

    mlflow = client(config.uri)
    query = f"{_tag_is(STUDY_TAG, study)} and {_tag_is(TRIAL_TAG, str(trial))} and attributes.status = 'RUNNING'"
    found = [
        team_run
        for team_run in mlflow.search_runs([experiment_id(config)], filter_string=query)
        if team_run.data.tags.get(STUDY_TAG) == study
    ]
    for team_run in found:
        mlflow.log_batch(team_run.info.run_id, tags=[RunTag(STATUS_TAG, "failed")])
        mlflow.set_terminated(team_run.info.run_id, "FAILED")
    return len(found)


def _tag_is(tag: str, value: str) -> str:
    """A clause of MLflow's search filter for runs whose `tag` is `value` (and rarely a few more: check
    the tags of what comes back).

    MLflow strips the quotes around a value and unescapes nothing inside them, so the value goes in
    the kind of quote it does not hold; one holding both kinds is matched with LIKE, each quote (and
    any backslash, an escape in some databases' LIKE) a one-character wildcard.
    """
    for quote in ("'", '"'):
        if quote not in value:
            return f"tags.`{tag}` = {quote}{value}{quote}"
    pattern = "".join("_" if char in "'\"\\" else char for char in value)
    return f"tags.`{tag}` LIKE '{pattern}'"


def sync_runs(config: TrackingConfig, store: RunStore) -> dict[str, Any]:
    """Publish every local run not yet on the server (whole, never twice); runs still training are left to their training.

    Returns `{"published": [ids], "up_to_date": n, "failed": [{"id", "error"}]}`; a server that
    does not answer at all is a `TrackingError`.
    """
    result: dict[str, Any] = {"published": [], "up_to_date": 0, "failed": []}
    for run in store.list():
        if run.is_demo or run.status == "running":
            continue
        if run.record.team is not None and run.record.team.published:
            result["up_to_date"] += 1
            continue
        key = team_key(run)
        try:
            team_run_id = publish_run(config, run, key, run.record.team.run_id if run.record.team else None)
        except Exception as exc:  # noqa: BLE001 - one run's failure is reported, the others go on
            if is_connection_error(exc):
                raise unreachable(config, exc) from None
            result["failed"].append({"id": run.id, "error": one_line(exc)[:300]})
            continue
        mark(run, key, team_run_id, published=True)
        result["published"].append(run.id)
    return result


def is_connection_error(exc: BaseException) -> bool:
    """Whether a request failed for want of an answer (server down, wrong address, time-out)."""
    text = str(exc)
    return any(sign in text for sign in ("Max retries exceeded", "Connection refused", "timed out", "ConnectionError"))
