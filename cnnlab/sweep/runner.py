"""Running a sweep: an Optuna study over a search space, where every trial is a run.

Every trial is an ordinary `cnnlab.training.engine.train` run tagged `{"sweep": {"study", "trial"}}`, so
the Runs, Evaluate and Predict pages work on it. After each epoch the objective goes to the
pruner, which can stop a hopeless trial early (its run is then marked "pruned"). With team
tracking every trial is also a team run; a trial whose worker died is failed and retried
(`cnnlab.sweep.faults`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cnnlab.common.checks import short_repr
from cnnlab.runs.record import SweepTrial
from cnnlab.runs.store import Run, RunStore
from cnnlab.runs.workspace import Workspace
from cnnlab.sweep.faults import FaultTolerance, fault_handling, retry_of
from cnnlab.sweep.results import SweepResult, sweep_result, trial_dict
from cnnlab.sweep.space import SweepSpace
from cnnlab.sweep.storage import default_storage, open_study
from cnnlab.training import memory
from cnnlab.training.hooks import TrainingHooks
from cnnlab.training.source import training_data

if TYPE_CHECKING:
    from cnnlab.team.tracking import TrackingConfig

TrialCallback = Callable[[dict[str, Any]], None]


def default_pruner():
    """Median pruning: from the third trial on, after the second epoch (step = 0-based epoch)."""
    import optuna

    return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1)


@dataclass(frozen=True)
class SweepConfig:
    """How a sweep runs: `trials` more trials of the study (or until `timeout` seconds pass), where.

    `storage` is any SQLAlchemy URL (default `default_storage(store)`); processes started with the
    same `study_name` (default: one made from the space and the dataset) and `storage` share one
    study. `pruner` defaults to `default_pruner()`, `sampler` to Optuna's TPE sampler;
    `fault_tolerance` sets how a trial whose worker died is found, failed and retried.
    """

    trials: int
    timeout: float | None = None
    storage: str | None = None
    study_name: str | None = None
    fault_tolerance: FaultTolerance = FaultTolerance()
    pruner: Any = None
    sampler: Any = None

    def __post_init__(self) -> None:
        trials, timeout = self.trials, self.timeout
        if isinstance(trials, bool) or not isinstance(trials, int) or not 1 <= trials <= 100_000:
            raise ValueError(f"trials must be a whole number from 1 to 100000. Received: trials={trials!r}")
        if timeout is not None and (
            isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0
        ):
            raise ValueError(f"timeout must be a number of seconds above 0, or None. Received: timeout={timeout!r}")


def run_sweep(
    data_dir: str | Path,
    space: SweepSpace,
    config: SweepConfig,
    *,
    workspace: Workspace,
    hooks: TrainingHooks = TrainingHooks(),
    on_trial: TrialCallback | None = None,
    dataset_version: int | None = None,
) -> SweepResult:
    """Run `config.trials` more trials of the study (or until its timeout) and return the result.

    Every trial trains a run in the workspace's store tagged with the study and trial number, with
    the workspace passed on to `train`. With the workspace's `datasets` folder, every trial trains on
    one version of the dataset (`dataset_version`, default: the latest when the sweep starts), as
    `train` does; a class folder's version 1 is split by the space's fixed settings. `on_trial` gets each finished trial's dict (`number`,
    `state`, `value`, `params`, `run_id`), `hooks.on_epoch` each epoch's metrics row (with
    `trial`). Setting `hooks.stop_event` stops the current trial after its batch and ends the
    sweep. With the workspace's `tracking`, every trial is also published as a team run tagged
    with the study and trial.
    """
    if not isinstance(space, SweepSpace):
        raise ValueError(f"space must be a SweepSpace (see load_space). Received: space={short_repr(space)}")
    store, storage, study_name = workspace.store, config.storage, config.study_name
    source = training_data(data_dir, space.configs({})[1], workspace, dataset_version)
    report, version = source.report, source.version_number
    if study_name is None:
        # A version's trials are a study of their own: a relabelled version has the same classes and count.
        key = [report.class_names, len(report.files), *([version] if version is not None else [])]
        study_name = space.default_study_name(json.dumps(key))
    study_name = str(study_name).strip()
    if not 1 <= len(study_name) <= 200:
        raise ValueError(f"A study name must be 1 to 200 characters. Received: study_name={study_name!r}")
    if storage is None:
        store.root.mkdir(parents=True, exist_ok=True)
        storage = default_storage(store)
    study = open_study(
        storage,
        study_name,
        space,
        sampler=config.sampler,
        pruner=config.pruner if config.pruner is not None else default_pruner(),
        fault_handling=fault_handling(config.fault_tolerance, workspace.tracking),
    )
    ran: list[int] = []

    def objective(trial) -> float:
        ran.append(trial.number)
        return _run_trial(
            trial, data_dir, space, study_name=study_name, workspace=workspace, hooks=hooks, dataset_version=version
        )

    def after_trial(study, frozen) -> None:
        memory.give_back_freed_memory()  # a worker trains trial after trial in one process
        if on_trial is not None:
            on_trial(trial_dict(frozen))
        if hooks.stop_requested:
            study.stop()

    if not hooks.stop_requested:
        study.optimize(
            objective, n_trials=config.trials, timeout=config.timeout, callbacks=[after_trial], gc_after_trial=True
        )
    return sweep_result(study, storage, space, len(ran))


def _run_trial(
    trial,
    data_dir,
    space: SweepSpace,
    *,
    study_name: str,
    workspace: Workspace,
    hooks: TrainingHooks,
    dataset_version: int | None,
) -> float:
    import optuna

    from cnnlab.sweep.pruning import OptunaPruning
    from cnnlab.training.engine import train

    if hooks.stop_requested:  # asked to stop while this trial was sampled
        raise optuna.TrialPruned("Stopped before it started.")
    model_config, train_config = space.configs(space.suggest(trial))
    pruning = OptunaPruning(trial, space.objective)
    retried = retry_of(trial)
    on_epoch, store, tracking = hooks.on_epoch, workspace.store, workspace.tracking

    def epoch_row(row: dict[str, Any]) -> None:
        if on_epoch is not None:
            on_epoch({**row, "trial": trial.number})

    try:
        run = train(
            data_dir,
            model_config,
            train_config,
            workspace=workspace,
            hooks=replace(hooks, on_epoch=epoch_row, callbacks=(*hooks.callbacks, pruning)),
            name=f"{study_name} #{trial.number}",
            tags={"sweep": SweepTrial(study_name, trial.number, retried)},
            dataset_version=dataset_version,
        )
    except BaseException:
        found = _find_run(store, study_name, trial.number)
        if found is not None:
            trial.set_user_attr("run_id", found.id)
            trial.set_user_attr("run_dir", str(found.path))
        raise
    trial.set_user_attr("run_id", run.id)
    trial.set_user_attr("run_dir", str(run.path))
    trial.set_user_attr("epochs_run", len(run.history))
    trial.set_user_attr("host", run.record.host)
    if tracking is not None:
        trial.set_user_attr("user", tracking.user)
        trial.set_user_attr("team_run_id", run.record.team.run_id if run.record.team else None)
    if pruning.pruned_at is not None:
        run.update(status="pruned")
        _publish_status(tracking, run)
        raise optuna.TrialPruned(f"Pruned after epoch {pruning.pruned_at}.")
    if run.record.status == "stopped":
        trial.set_user_attr("stopped", True)
        raise optuna.TrialPruned("Stopped by request.")
    return _best_value(run, space)


def _publish_status(tracking: TrackingConfig | None, run: Run) -> None:
    """Tell the team server a published trial's new status (best effort, like all publishing)."""
    if tracking is None:
        return
    from cnnlab.team.tracking import publish_status

    try:
        publish_status(tracking, run)
    except Exception:  # noqa: BLE001 - `sync` corrects it later; the sweep goes on
        if run.record.team is not None:
            run.update(team=replace(run.record.team, published=False))


def _best_value(run: Run, space: SweepSpace) -> float:
    """The run's best objective over its epochs (NaN when it has none, which fails the trial)."""
    found = (row.metric(space.objective) for row in run.history)
    values = [v for v in found if v is not None and math.isfinite(v)]
    if not values:
        return math.nan
    return max(values) if space.direction == "maximize" else min(values)


def _find_run(store: RunStore, study_name: str, number: int) -> Run | None:
    for run in store.list(sweep=study_name):
        if run.record.sweep is not None and run.record.sweep.trial == number:
            return run
    return None
