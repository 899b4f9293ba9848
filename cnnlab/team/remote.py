"""The team's runs on the tracking server: list them, read their curves, open a teammate's model.

Every run of the experiment from every machine is a row (`team_runs`); its per-epoch curve comes
from the metric history (`team_history`). Opening a run (`open_team_run`) downloads its files once
into a read-only folder of the cache, a run folder like any other, so Evaluate and Predict work
on it; its dataset is found on this machine by fingerprint, or its dataset version by content
(`attach_dataset`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cnnlab import data
from cnnlab.common.checks import one_line
from cnnlab.common.files import build_folder, write_json
from cnnlab.data import versions
from cnnlab.runs.record import TeamCopy, read_record
from cnnlab.runs.store import MODEL_FILE, RUN_FILE, Run, RunStore
from cnnlab.team.tracking import (
    ARTIFACTS,
    EPOCH_METRICS,
    STATUS_TAG,
    STUDY_TAG,
    TRIAL_TAG,
    TrackingConfig,
    client,
    experiment_id,
    is_connection_error,
    unreachable,
)

TEAM_RUNS_FOLDER = "team-runs"
PAGE_SIZE = 1000


def team_runs(config: TrackingConfig) -> list[dict[str, Any]]:
    """Every run of the experiment, newest first, one flat row each plus its `params`.

    Rows: `id` (the team run id), `name`, `user`, `host`, `status`, `dataset`, `fingerprint`,
    `sweep`, `trial`, `created`, `best_val_accuracy`, `test_accuracy`, `local_run_id`, `params`.
    """
    with _requests(config):
        return [_row(team_run) for team_run in _search(config)]


def _search(config: TrackingConfig):
    exp = experiment_id(config, create=False)
    if exp is None:
        return
    token = None
    while True:
        page = client(config.uri).search_runs(
            [exp], max_results=PAGE_SIZE, order_by=["attributes.start_time DESC"], page_token=token
        )
        yield from page
        token = page.token
        if not token:
            return


def _row(team_run) -> dict[str, Any]:
    tags, metrics = team_run.data.tags, team_run.data.metrics
    trial = tags.get(TRIAL_TAG)
    return {
        "id": team_run.info.run_id,
        "name": team_run.info.run_name,
        "user": tags.get("cnnlab.user") or tags.get("mlflow.user"),
        "host": tags.get("cnnlab.host"),
        "status": tags.get(STATUS_TAG) or team_run.info.status.lower(),
        "dataset": tags.get("cnnlab.dataset"),
        "fingerprint": tags.get("cnnlab.fingerprint"),
        "sweep": tags.get(STUDY_TAG),
        "trial": int(trial) if trial and trial.isdigit() else None,
        "created": datetime.fromtimestamp(team_run.info.start_time / 1000, UTC).isoformat(timespec="seconds"),
        "best_val_accuracy": metrics.get("best_val_accuracy"),
        "test_accuracy": metrics.get("test_accuracy"),
        "local_run_id": tags.get("cnnlab.local_run_id"),
        "params": {name: _value(text) for name, text in sorted(team_run.data.params.items())},
    }


def _value(text: str) -> Any:
    """A parameter back in its type: numbers, booleans and lists (sent as JSON) are parsed, other text kept."""
    if text in ("True", "False"):
        return text == "True"
    try:
        return json.loads(text)
    except ValueError:
        return text


def team_history(config: TrackingConfig, team_run_id: str) -> list[dict[str, Any]]:
    """A team run's per-epoch rows (`epoch`, `loss`, `accuracy`, `val_loss`, ...) from its metric history."""
    rows: dict[int, dict[str, Any]] = {}
    with _requests(config, team_run_id):
        for key in EPOCH_METRICS:
            for metric in client(config.uri).get_metric_history(team_run_id, key):
                rows.setdefault(metric.step, {"epoch": metric.step})[key] = metric.value
    return [rows[step] for step in sorted(rows)]


def team_store(cache_dir: Path) -> RunStore:
    """The folder of teammates' runs opened on this machine (read-only copies, one per team run id)."""
    return RunStore(cache_dir / TEAM_RUNS_FOLDER)


def open_team_run(config: TrackingConfig, team_run_id: str, store: RunStore) -> Run:
    """A teammate's run as a local, read-only run folder in `store`, downloaded the first time only."""
    folder = store.root / team_run_id
    if (folder / RUN_FILE).is_file() and (folder / MODEL_FILE).is_file():
        return store.get(folder)
    if not team_run_id.isalnum():
        raise ValueError(f"A team run id is letters and digits only. Received: run={team_run_id!r}")
    with _requests(config, team_run_id):
        info = client(config.uri).get_run(team_run_id)
        names = {item.path for item in client(config.uri).list_artifacts(team_run_id)}
    if info.info.status == "RUNNING":
        raise ValueError(
            f"Team run {team_run_id} is still training (or its machine stopped publishing); open it once it has "
            f"ended. Received: run={team_run_id!r}"
        )
    if not {RUN_FILE, MODEL_FILE} <= names:
        user = info.data.tags.get("cnnlab.user", "its owner")
        raise ValueError(
            f"Team run {team_run_id} has no model on the server yet; {user} can publish it whole with "
            f"`python -m cnnlab sync`. Received: run={team_run_id!r}"
        )

    def download(into: Path) -> None:
        for name in ARTIFACTS:
            if name in names:
                client(config.uri).download_artifacts(team_run_id, name, str(into))
        record = read_record(json.loads((into / RUN_FILE).read_text()))
        team = dataclasses.replace(record.team or TeamCopy(), run_id=team_run_id, published=True, opened=True)
        # Its id is the folder's name here, so the copy is found by its team run id.
        write_json(into / RUN_FILE, dataclasses.replace(record, id=team_run_id, team=team).to_dict())

    with _requests(config, team_run_id):
        build_folder(folder, download, keep_existing=True)  # two sessions may open it at once
    return store.get(folder)


def attach_dataset(
    run: Run, candidates: Iterable[str | Path], cache: Path, *, datasets: Path | None = None
) -> Path | None:
    """Point an opened team run at a dataset on this machine with the same content; returns it, or None.

    The run's own path comes first (a shared folder), then `candidates` (the session's dataset,
    the datasets of local runs). A run trained on a dataset version matches a version here, in
    `datasets`, with the same images (by content hash) and labels: a candidate's versions are opened
    as a training opens them, and the copy's record then names the matching version here (its
    number, folder and name), so that Evaluate reads that version's labels, exclusions and added
    images. Otherwise a folder (scanned with `cache`, only if its class folders match) must have the
    fingerprint the run recorded; the built-in sample is made the same on every machine.
    """
    dataset = run.record.dataset
    places = [run.dataset_root(cache), *map(Path, candidates)]
    if dataset.version is not None and datasets is not None:
        found = _same_version(run, places, cache, datasets)
        if found is not None:
            return found
    if dataset.builtin:
        return run.dataset_root(cache)
    for candidate in places:
        if not _same_classes(candidate, run.class_names):
            continue
        try:
            if data.scan(candidate, cache=cache).fingerprint != dataset.fingerprint:
                continue
        except (ValueError, OSError):
            continue
        if candidate != Path(dataset.path):
            run.update(dataset=dataclasses.replace(dataset, path=str(candidate)))
        return candidate
    return None


def _same_version(run: Run, places: list[Path], cache: Path, datasets: Path) -> Path | None:
    """The first of `places` (class folders, or names of datasets made here) with a version in `datasets`
    whose images and labels are those the run trained on (a version's fingerprint is made of its
    images' content hashes and labels, wherever its files are); the run's record is pointed at it."""
    info, config = run.record.dataset, run.train_config()
    for place in places:
        try:
            found = versions.open_dataset(
                place,
                datasets,
                cache=cache,
                validation_split=config.validation_split,
                test_split=config.test_split,
                seed=config.seed,
            )
        except (ValueError, OSError):
            continue
        for number in reversed(found.version_numbers()):
            if not set(run.class_names) <= set(found.manifest(number).classes):
                continue
            try:
                if versions.version_data(found, number, cache=cache).report.fingerprint != info.fingerprint:
                    continue
            except (ValueError, OSError):
                continue
            root = found.folder if found.source is None else found.source
            here = dataclasses.replace(
                info, path=str(root), name=found.name, version=number, versions_folder=str(found.folder)
            )
            run.update(dataset=here)
            return root
    return None


def _same_classes(folder: Path, class_names: list[str]) -> bool:
    try:
        return set(class_names) <= {p.name for p in folder.iterdir() if p.is_dir()}
    except OSError:
        return False


@contextlib.contextmanager
def _requests(config: TrackingConfig, team_run_id: str | None = None) -> Iterator[None]:
    """Turn a failed read into a one-line ValueError: the server down, or a team run id it does not know."""
    from mlflow.exceptions import MlflowException

    try:
        yield
    except (MlflowException, OSError) as exc:
        if is_connection_error(exc):
            raise unreachable(config, exc) from None
        if team_run_id is not None and "RESOURCE_DOES_NOT_EXIST" in str(exc):
            raise ValueError(
                f"No run with that id here or on the team server; list the team's runs with "
                f"`python -m cnnlab runs --team`. Received: run={team_run_id!r}"
            ) from None
        raise ValueError(
            f"The team tracking server refused the request ({one_line(exc)[:200]}). Received: tracking_uri={config.uri!r}"
        ) from None
