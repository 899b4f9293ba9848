"""Hyperparameter sweeps: an Optuna study over chosen config fields, where every trial is a run.

A search space names the `ModelConfig` / `TrainConfig` fields to search (an int or float range, or
a list of choices), the fields held fixed, and the objective (`val_accuracy` is maximised,
`val_loss` minimised). Every trial is an ordinary `cnnlab.train.train` run tagged
`{"sweep": {"study", "trial"}}`, so the Runs, Evaluate and Predict pages work on it. After each
epoch the objective goes to the pruner, which can stop a hopeless trial early (its run is then
marked "pruned"). Studies live in any SQLAlchemy database: SQLite in the models folder by default,
PostgreSQL for a team, where every process started with the same study name and storage adds its
trials to the same study. Workers that die are handled by Optuna itself: a running trial sends
heartbeats, and one silent for longer than the grace period is failed by the next worker to start
a trial and retried (`FaultTolerance`). With team tracking every trial is also a team run.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import random
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from cnnlab.checks import check_range
from cnnlab.runs import Run, RunStore

if TYPE_CHECKING:
    from cnnlab.model import ModelConfig
    from cnnlab.tracking import TrackingConfig
    from cnnlab.train import TrainConfig

OBJECTIVES = {"val_accuracy": "maximize", "val_loss": "minimize"}
SPACE_KEYS = ("objective", "params", "fixed")
RANGE_KEYS = ("low", "high", "log")
SPACE_ATTR = "cnnlab_space"
# Every combination of range ends and choices is checked against the configs up to this many.
MAX_CHECKED_COMBINATIONS = 4096
STORAGE_ATTEMPTS = 6

TrialCallback = Callable[[dict[str, Any]], None]
EpochCallback = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class FaultTolerance:
    """Optuna's handling of dead workers: heartbeats every `heartbeat_interval` s; a trial silent for
    `grace_period` s is failed and retried up to `max_retry` times (as a new trial with its parameters)."""

    heartbeat_interval: int = 10
    grace_period: int = 30
    max_retry: int = 3

    def __post_init__(self) -> None:
        check_range("heartbeat_interval", self.heartbeat_interval, 1, 3600, int)
        check_range("grace_period", self.grace_period, 1, 86400, int)
        check_range("max_retry", self.max_retry, 0, 100, int)
        if self.grace_period <= self.heartbeat_interval:
            raise ValueError(
                f"grace_period must be longer than heartbeat_interval ({self.heartbeat_interval} s), or live trials "
                f"would be failed between two heartbeats. Received: grace_period={self.grace_period}"
            )


@lru_cache(maxsize=1)
def _field_kinds() -> dict[str, tuple[str, str]]:
    """Every searchable field: name -> (owner "model" | "train", kind "int" | "float" | "bool" | "str" | "size")."""
    from cnnlab.model import ModelConfig
    from cnnlab.train import TrainConfig

    kinds: dict[str, tuple[str, str]] = {}
    for owner, config_cls in (("model", ModelConfig), ("train", TrainConfig)):
        for f in fields(config_cls):
            default = f.default
            kind = "size" if f.name == "image_size" else type(default).__name__
            kinds[f.name] = (owner, kind)
    return kinds


@dataclass(frozen=True)
class SweepSpace:
    """A validated search space (build it with `load_space` or `space_from_dict`).

    `params` maps a field to a range `{"low", "high", "log"}` or a list of choices; `fixed` maps
    fields to constant values; every other field keeps its config default.
    """

    objective: str
    params: dict[str, Any]
    fixed: dict[str, Any] = field(default_factory=dict)

    @property
    def direction(self) -> Literal["minimize", "maximize"]:
        """The Optuna direction: "maximize" for val_accuracy, "minimize" for val_loss."""
        return "maximize" if OBJECTIVES[self.objective] == "maximize" else "minimize"

    def to_dict(self) -> dict[str, Any]:
        """The space in the sweep file format (JSON-ready)."""
        return json.loads(json.dumps({"objective": self.objective, "params": self.params, "fixed": self.fixed}))

    def default_study_name(self, dataset_key: str = "") -> str:
        """'sweep-<hash>' of the space (and `dataset_key`), the same on every machine."""
        text = json.dumps(self.to_dict(), sort_keys=True) + dataset_key
        return "sweep-" + hashlib.sha256(text.encode()).hexdigest()[:10]

    def suggest(self, trial) -> dict[str, Any]:
        """Ask an Optuna trial for one value of each searched field."""
        kinds = _field_kinds()
        values: dict[str, Any] = {}
        for name, spec in self.params.items():
            if isinstance(spec, list):
                values[name] = trial.suggest_categorical(name, spec)
            elif kinds[name][1] == "float":
                values[name] = trial.suggest_float(name, spec["low"], spec["high"], log=spec["log"])
            else:
                values[name] = trial.suggest_int(name, spec["low"], spec["high"], log=spec["log"])
        return values

    def configs(self, values: dict[str, Any]) -> tuple[ModelConfig, TrainConfig]:
        """The `(ModelConfig, TrainConfig)` for one set of searched values (plus the fixed ones)."""
        from cnnlab.model import ModelConfig
        from cnnlab.train import TrainConfig

        merged = {**self.fixed, **values}
        kinds = _field_kinds()
        model_part = {k: v for k, v in merged.items() if kinds[k][0] == "model"}
        train_part = {k: v for k, v in merged.items() if kinds[k][0] == "train"}
        train_config = TrainConfig(**train_part)
        if train_config.validation_split <= 0:
            raise ValueError(
                f"A sweep measures {self.objective} on the validation split, so validation_split must be "
                f"above 0. Received: validation_split={train_config.validation_split}"
            )
        return ModelConfig(**model_part), train_config


@dataclass(frozen=True)
class SweepResult:
    """What a sweep found: the best trial's run and value, every trial, and parameter importances.

    `trials` covers the whole study (trials added by other processes included); `trials_run` is
    how many this call ran. `best_*` are None when no trial completed.
    """

    study: str
    storage: str
    objective: str
    direction: str
    best_run_dir: Path | None
    best_run_id: str | None
    best_value: float | None
    best_params: dict[str, Any]
    trials: list[dict[str, Any]]
    importances: dict[str, float]
    trials_run: int

    def trials_frame(self):
        """A pandas DataFrame: number, state, value, run_id and one params_<field> column per field."""
        import pandas as pd

        names = sorted({name for t in self.trials for name in t["params"]})
        rows = [
            {
                "number": t["number"],
                "state": t["state"],
                "value": t["value"],
                "run_id": t["run_id"],
                **{f"params_{name}": t["params"].get(name) for name in names},
            }
            for t in self.trials
        ]
        return pd.DataFrame(rows, columns=["number", "state", "value", "run_id", *[f"params_{n}" for n in names]])


# ------------------------------------------------------------------------------- the space


def load_space(path: str | Path) -> SweepSpace:
    """Read and validate a sweep space file (YAML or JSON)."""
    import yaml

    path = Path(path)
    source = f"Sweep space file {str(path)!r}"
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = "not found" if isinstance(exc, FileNotFoundError) else f"unreadable ({type(exc).__name__})"
        raise ValueError(
            f"{source} is {reason}; give a readable YAML or JSON file. Received: space={str(path)!r}"
        ) from None
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"{source} is not valid JSON (line {exc.lineno}: {exc.msg}). Received: space={str(path)!r}"
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise ValueError(f"{source} is not valid YAML ({where}{problem}). Received: space={str(path)!r}") from None
    return _parse(data, source)


def space_from_dict(d: dict[str, Any]) -> SweepSpace:
    """Validate a space given as a dict in the sweep file format."""
    return _parse(d, "Sweep space")


def _parse(data: Any, source: str) -> SweepSpace:
    if not isinstance(data, dict):
        raise ValueError(
            f"{source} must be a mapping with 'objective', 'params' and 'fixed'. Received: space={_short(data)}"
        )
    unknown = [k for k in data if k not in SPACE_KEYS]
    if unknown:
        raise ValueError(
            f"{source}: unknown top-level key; expected {', '.join(SPACE_KEYS)}. Received: {unknown[0]}={_short(data[unknown[0]])}"
        )
    objective = data.get("objective", "val_accuracy")
    if objective not in OBJECTIVES:
        raise ValueError(
            f"{source}: objective must be one of {', '.join(OBJECTIVES)}. Received: objective={objective!r}"
        )
    params_raw, fixed_raw = data.get("params"), data.get("fixed") or {}
    if not isinstance(params_raw, dict) or not params_raw:
        raise ValueError(
            f"{source}: 'params' must map at least one field to a range {{low, high}} or a list of choices. "
            f"Received: params={_short(params_raw)}"
        )
    if not isinstance(fixed_raw, dict):
        raise ValueError(f"{source}: 'fixed' must map fields to values. Received: fixed={_short(fixed_raw)}")
    for section, names in (("params", params_raw), ("fixed", fixed_raw)):
        for name in names:
            if name not in _field_kinds():
                raise ValueError(
                    f"{source}: unknown field {name!r} in {section}; use ModelConfig or TrainConfig field names "
                    f"such as conv_blocks, learning_rate or epochs. Received: {section}.{name}={_short(names[name])}"
                )
    both = [name for name in params_raw if name in fixed_raw]
    if both:
        raise ValueError(
            f"{source}: {both[0]} is in both params and fixed; search it or fix it, not both. "
            f"Received: fixed.{both[0]}={_short(fixed_raw[both[0]])}"
        )
    params = {name: _parse_param(name, spec, source) for name, spec in params_raw.items()}
    fixed = {name: _parse_fixed(name, value, source) for name, value in fixed_raw.items()}
    space = SweepSpace(objective=objective, params=params, fixed=fixed)
    _check_configs(space, source)
    return space


def _parse_param(name: str, spec: Any, source: str) -> Any:
    kind = _field_kinds()[name][1]
    where = f"params.{name}"
    if isinstance(spec, list):
        if not spec:
            raise ValueError(f"{source}: {where} lists no choices; give at least one value. Received: {where}=[]")
        choices = [_typed(name, kind, value, source, where) for value in spec]
        if len({json.dumps(c) for c in choices}) < len(choices):
            raise ValueError(
                f"{source}: {where} lists a choice twice; list each value once. Received: {where}={spec!r}"
            )
        return choices
    if not isinstance(spec, dict):
        raise ValueError(
            f"{source}: {where} must be a range {{low, high, log}} or a list of choices. Received: {where}={_short(spec)}"
        )
    if kind not in ("int", "float", "size"):
        raise ValueError(
            f"{source}: {where} is a {kind} field, so give a list of choices instead of a range. "
            f"Received: {where}={_short(spec)}"
        )
    extra = [k for k in spec if k not in RANGE_KEYS]
    if extra or "low" not in spec or "high" not in spec:
        raise ValueError(
            f"{source}: a range needs 'low' and 'high' (and optionally 'log: true'), nothing else. "
            f"Received: {where}={_short(spec)}"
        )
    low = _typed(name, kind, spec["low"], source, f"{where}.low")
    high = _typed(name, kind, spec["high"], source, f"{where}.high")
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise ValueError(f"{source}: {where}.log must be true or false. Received: {where}.log={log!r}")
    if low > high:
        raise ValueError(f"{source}: {where} has low above high; swap them. Received: {where}={_short(spec)}")
    if log and low <= 0:
        raise ValueError(f"{source}: a log range needs low above 0. Received: {where}.low={low!r}")
    return {"low": low, "high": high, "log": log}


def _parse_fixed(name: str, value: Any, source: str) -> Any:
    kind = _field_kinds()[name][1]
    if kind == "size" and isinstance(value, list):
        return [_typed(name, "int", v, source, f"fixed.{name}") for v in value]
    return _typed(name, kind, value, source, f"fixed.{name}")


def _typed(name: str, kind: str, value: Any, source: str, where: str) -> Any:
    """`value` as the field's type: ints stay ints, numbers (or numeric text like 1e-4) become floats."""
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind in ("int", "size") and is_number and isinstance(value, int):
        return value
    if kind == "float":
        if is_number and math.isfinite(value):
            return float(value)
        if isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                number = math.nan
            if math.isfinite(number):
                return number
    if kind == "bool" and isinstance(value, bool):
        return value
    if kind == "str" and isinstance(value, str):
        return value
    expected = {
        "int": "a whole number",
        "size": "a whole number (square side)",
        "float": "a number",
        "bool": "true or false",
        "str": "a string",
    }[kind]
    raise ValueError(f"{source}: {name} takes {expected}. Received: {where}={_short(value)}")


def _check_configs(space: SweepSpace, source: str) -> None:
    """Build the configs for the range ends and choices, so a bad value fails now, not mid-sweep."""
    candidates = {
        name: spec if isinstance(spec, list) else [spec["low"], spec["high"]] for name, spec in space.params.items()
    }
    first = {name: values[0] for name, values in candidates.items()}
    assignments: list[dict[str, Any]] = [first]
    for name, values in candidates.items():
        assignments += [{**first, name: value} for value in values[1:]]
    if math.prod(len(v) for v in candidates.values()) <= MAX_CHECKED_COMBINATIONS:
        names = list(candidates)
        assignments += [dict(zip(names, combo, strict=True)) for combo in itertools.product(*candidates.values())]
    for assignment in assignments:
        try:
            space.configs(assignment)
        except (ValueError, TypeError) as exc:
            raise ValueError(
                f"{source}: {_blame(exc, space, assignment)} is rejected: {' '.join(str(exc).split())}"
            ) from None


def _blame(exc: Exception, space: SweepSpace, values: dict[str, Any]) -> str:
    text = str(exc)
    name = text.rsplit("Received: ", 1)[-1].split("=", 1)[0].strip() if "Received: " in text else ""
    if name in space.fixed:
        return f"fixed.{name}"
    if name in values:
        return f"params.{name}={values[name]!r}"
    return "the combination " + ", ".join(f"{k}={v!r}" for k, v in values.items())


def _short(value: Any, limit: int = 80) -> str:
    text = " ".join(repr(value).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ---------------------------------------------------------------------------- the storage


def default_storage(store: RunStore | None = None) -> str:
    """The default study database: `sqlite:///<store root>/sweeps.db`."""
    root = (store or RunStore()).root.expanduser().resolve()
    return f"sqlite:///{root / 'sweeps.db'}"


def masked_url(url: str) -> str:
    """The storage URL with any password hidden, for messages and output."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - an unparsable URL has no password to find
        return url


def _open_storage(url: str, fault_handling: dict[str, Any] | None = None):
    """An Optuna RDBStorage, retried because workers starting together race to create the tables.

    `fault_handling` holds RDBStorage's heartbeat arguments (see `_fault_handling`).
    """
    import optuna
    from sqlalchemy import exc as sa_exc

    engine_kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    _create_sqlite_folder(url)
    for attempt in range(1, STORAGE_ATTEMPTS + 1):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeats are "experimental"
                return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, **(fault_handling or {}))
        except (sa_exc.ArgumentError, ImportError) as exc:
            raise ValueError(
                f"Not a usable SQLAlchemy storage URL ({_first_line(exc)}); use e.g. sqlite:///sweeps.db or "
                f"postgresql+psycopg2://user@host/db. Received: storage={masked_url(url)!r}"
            ) from None
        except (sa_exc.SQLAlchemyError, optuna.exceptions.StorageInternalError) as exc:
            if attempt == STORAGE_ATTEMPTS:
                raise ValueError(
                    f"Could not open the sweep storage ({_first_line(exc)}); check the URL and that the database "
                    f"is reachable. Received: storage={masked_url(url)!r}"
                ) from None
            time.sleep(random.uniform(0.2, 0.6) * attempt)
    raise AssertionError("unreachable")


def _create_sqlite_folder(url: str) -> None:
    """SQLite creates the database file but not its folder (a fresh models folder, say)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError:
        return  # reported with a clear message when the storage is opened
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0][:200] if lines else type(exc).__name__


def _fault_handling(fault_tolerance: FaultTolerance, tracking: TrackingConfig | None) -> dict[str, Any]:
    """RDBStorage's heartbeat arguments: Optuna fails a dead worker's trial and retries it; with team
    tracking, that trial's team run (left "running" by its dead worker) is marked failed too."""
    from optuna.storages import RetryHeartbeatStaleTrialCallback

    retry = RetryHeartbeatStaleTrialCallback(max_retry=fault_tolerance.max_retry)

    def on_stale_trial(study, trial) -> None:
        retry(study, trial)
        if tracking is not None:
            _fail_team_runs(tracking, study.study_name, trial.number)

    return {
        "heartbeat_interval": fault_tolerance.heartbeat_interval,
        "grace_period": fault_tolerance.grace_period,
        "heartbeat_stale_trial_callback": on_stale_trial,
    }


def _fail_team_runs(tracking: TrackingConfig, study_name: str, number: int) -> None:
    from cnnlab.tracking import fail_trial_runs

    try:
        fail_trial_runs(tracking, study_name, number)
    except Exception:  # noqa: BLE001 - best effort: the team server being down must not stop the sweep
        return


def _open_study(storage_url: str, study_name: str, space: SweepSpace, sampler, pruner, fault_handling=None):
    """Create the study, or join it when another process already did (same space required)."""
    import optuna
    from sqlalchemy import exc as sa_exc

    for attempt in range(1, STORAGE_ATTEMPTS + 1):
        storage = _open_storage(storage_url, fault_handling)
        try:
            study = optuna.create_study(
                storage=storage,
                study_name=study_name,
                direction=space.direction,
                sampler=sampler,
                pruner=pruner,
                load_if_exists=True,
            )
            break
        except (sa_exc.SQLAlchemyError, optuna.exceptions.StorageInternalError):
            if attempt == STORAGE_ATTEMPTS:
                raise
            time.sleep(random.uniform(0.2, 0.6) * attempt)
    stored = study.user_attrs.get(SPACE_ATTR)
    if stored is None:
        study.set_user_attr(SPACE_ATTR, space.to_dict())
    elif json.dumps(stored, sort_keys=True) != json.dumps(space.to_dict(), sort_keys=True):
        raise ValueError(
            f"Study {study_name!r} already exists with a different search space; use the same space file "
            f"or a new study name. Received: study_name={study_name!r}"
        )
    if study.direction.name.lower() != space.direction:
        raise ValueError(
            f"Study {study_name!r} already exists and {study.direction.name.lower()}s its objective; "
            f"use a new study name for {space.objective}. Received: study_name={study_name!r}"
        )
    return study


# ------------------------------------------------------------------------------ the sweep


def default_pruner():
    """Median pruning: from the third trial on, after the second epoch (step = 0-based epoch)."""
    import optuna

    return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1)


def _pruning_callback(trial, objective: str):
    """A Keras callback that reports the objective to the trial and stops training when pruned."""
    import keras

    class OptunaPruning(keras.callbacks.Callback):
        """Reports `objective` after each epoch (step = 0-based epoch) and honours the pruner."""

        def __init__(self) -> None:
            super().__init__()
            self.pruned_at: int | None = None

        def on_epoch_end(self, epoch: int, logs=None) -> None:
            logs = logs or {}
            if objective not in logs:
                return
            trial.report(float(logs[objective]), epoch)
            if trial.should_prune():
                self.pruned_at = epoch + 1
                self.model.stop_training = True

    return OptunaPruning()


def run_sweep(
    data_dir: str | Path,
    space: SweepSpace,
    *,
    trials: int,
    timeout: float | None = None,
    storage: str | None = None,
    study_name: str | None = None,
    store: RunStore | None = None,
    stop_event: threading.Event | None = None,
    on_trial: TrialCallback | None = None,
    on_epoch: EpochCallback | None = None,
    tags: dict[str, Any] | None = None,
    pruner=None,
    sampler=None,
    tracking: TrackingConfig | None = None,
    fault_tolerance: FaultTolerance = FaultTolerance(),
) -> SweepResult:
    """Run `trials` more trials of the study (or until `timeout` seconds pass) and return the result.

    Every trial trains a run in `store` tagged with the study and trial number. `storage` is any
    SQLAlchemy URL (default `default_storage(store)`); processes started with the same
    `study_name` and `storage` share one study. `on_trial` gets each finished trial's dict
    (`number`, `state`, `value`, `params`, `run_id`), `on_epoch` each epoch's metrics row (with
    `trial`). Setting `stop_event` stops the current trial after its batch and ends the sweep.
    `pruner` defaults to `default_pruner()`, `sampler` to Optuna's TPE sampler. With `tracking`,
    every trial is also published as a team run tagged with the study and trial; `fault_tolerance`
    sets how a trial whose worker died is found, failed and retried.
    """
    from cnnlab import data

    if not isinstance(space, SweepSpace):
        raise ValueError(f"space must be a SweepSpace (see load_space). Received: space={_short(space)}")
    if isinstance(trials, bool) or not isinstance(trials, int) or not 1 <= trials <= 100_000:
        raise ValueError(f"trials must be a whole number from 1 to 100000. Received: trials={trials!r}")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0):
        raise ValueError(f"timeout must be a number of seconds above 0, or None. Received: timeout={timeout!r}")
    store = store or RunStore()
    report = data.scan(data_dir)
    if study_name is None:
        study_name = space.default_study_name(json.dumps([report.class_names, len(report.files)]))
    study_name = str(study_name).strip()
    if not 1 <= len(study_name) <= 200:
        raise ValueError(f"A study name must be 1 to 200 characters. Received: study_name={study_name!r}")
    if storage is None:
        store.root.mkdir(parents=True, exist_ok=True)
        storage = default_storage(store)
    study = _open_study(
        storage,
        study_name,
        space,
        sampler,
        pruner if pruner is not None else default_pruner(),
        _fault_handling(fault_tolerance, tracking),
    )
    ran: list[int] = []

    def objective(trial) -> float:
        ran.append(trial.number)
        return _run_trial(trial, data_dir, space, study_name, store, stop_event, on_epoch, tags, tracking)

    def after_trial(study, frozen) -> None:
        if on_trial is not None:
            on_trial(_trial_dict(frozen))
        if stop_event is not None and stop_event.is_set():
            study.stop()

    if stop_event is None or not stop_event.is_set():
        study.optimize(objective, n_trials=trials, timeout=timeout, callbacks=[after_trial], gc_after_trial=True)
    return _result(study, storage, space, len(ran))


def _run_trial(
    trial, data_dir, space: SweepSpace, study_name: str, store: RunStore, stop_event, on_epoch, tags, tracking=None
) -> float:
    import optuna

    from cnnlab.train import train

    if stop_event is not None and stop_event.is_set():  # asked to stop while this trial was sampled
        raise optuna.TrialPruned("Stopped before it started.")
    model_config, train_config = space.configs(space.suggest(trial))
    pruning = _pruning_callback(trial, space.objective)
    # A retry (of a trial whose worker died) starts with a copy of the failed trial's user attributes.
    retry_of = trial.user_attrs.get("first_number")
    if retry_of is None:
        trial.set_user_attr("first_number", trial.number)

    def epoch_row(row: dict[str, Any]) -> None:
        if on_epoch is not None:
            on_epoch({**row, "trial": trial.number})

    try:
        run = train(
            data_dir,
            model_config,
            train_config,
            store=store,
            on_epoch=epoch_row,
            stop_event=stop_event,
            name=f"{study_name} #{trial.number}",
            callbacks=[pruning],
            tags={
                **(tags or {}),
                "sweep": {
                    "study": study_name,
                    "trial": trial.number,
                    "retry_of": retry_of,
                },
            },
            tracking=tracking,
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
    trial.set_user_attr("host", run.record.get("host"))
    if tracking is not None:
        trial.set_user_attr("user", tracking.user)
        trial.set_user_attr("team_run_id", (run.record.get("team") or {}).get("run_id"))
    if pruning.pruned_at is not None:
        run.update(status="pruned")
        _publish_status(tracking, run)
        raise optuna.TrialPruned(f"Pruned after epoch {pruning.pruned_at}.")
    if run.record.get("status") == "stopped":
        trial.set_user_attr("stopped", True)
        raise optuna.TrialPruned("Stopped by request.")
    return _best_value(run, space)


def _publish_status(tracking: TrackingConfig | None, run: Run) -> None:
    """Tell the team server a published trial's new status (best effort, like all publishing)."""
    if tracking is None:
        return
    from cnnlab.tracking import publish_status

    try:
        publish_status(tracking, run)
    except Exception:  # noqa: BLE001 - `sync` corrects it later; the sweep goes on
        run.update(team={**run.record["team"], "published": False})


def _best_value(run: Run, space: SweepSpace) -> float:
    """The run's best objective over its epochs (NaN when it has none, which fails the trial)."""
    values = [float(row[space.objective]) for row in run.history if row.get(space.objective) is not None]
    values = [v for v in values if math.isfinite(v)]
    if not values:
        return math.nan
    return max(values) if space.direction == "maximize" else min(values)


def _find_run(store: RunStore, study_name: str, number: int) -> Run | None:
    for run in store.list(sweep=study_name):
        if (run.record.get("sweep") or {}).get("trial") == number:
            return run
    return None


def _trial_dict(trial) -> dict[str, Any]:
    return {
        "number": trial.number,
        "state": trial.state.name.lower(),
        "value": trial.value,
        "params": dict(trial.params),
        "run_id": trial.user_attrs.get("run_id"),
    }


def _worker_dict(trial) -> dict[str, Any]:
    """A trial with who ran it where, and which trial it retries, for following a shared study."""
    return {
        **_trial_dict(trial),
        "user": trial.user_attrs.get("user"),
        "host": trial.user_attrs.get("host"),
        "team_run_id": trial.user_attrs.get("team_run_id"),
        "retry_of": trial.system_attrs.get("failed_trial"),
    }


def follow_study(study_name: str, storage: str) -> SweepResult:
    """A shared study as it stands now, read from any machine: every worker's trials, running ones included.

    Trials carry `user`, `host`, `team_run_id` and `retry_of`; importances are left out (too slow to poll).
    """
    import optuna

    try:
        study = optuna.load_study(study_name=study_name, storage=_open_storage(storage))
    except KeyError:
        raise ValueError(
            f"No study of that name in the storage; check the name and the storage URL. Received: study_name={study_name!r}"
        ) from None
    if SPACE_ATTR not in study.user_attrs:
        raise ValueError(
            f"Study {study_name!r} was not made by a CNN Lab sweep (it has no search space); open it in "
            f"optuna-dashboard instead. Received: study_name={study_name!r}"
        )
    space = space_from_dict(study.user_attrs[SPACE_ATTR])
    return _result(study, storage, space, 0, trial_dict=_worker_dict, importances=False)


def _result(
    study, storage: str, space: SweepSpace, trials_run: int, trial_dict=_trial_dict, importances: bool = True
) -> SweepResult:
    from optuna.trial import TrialState

    all_trials = study.get_trials(deepcopy=False)
    complete = [t for t in all_trials if t.state == TrialState.COMPLETE]
    best = study.best_trial if complete else None
    run_dir = best.user_attrs.get("run_dir") if best is not None else None
    return SweepResult(
        study=study.study_name,
        storage=storage,
        objective=space.objective,
        direction=space.direction,
        best_run_dir=Path(run_dir) if run_dir else None,
        best_run_id=best.user_attrs.get("run_id") if best is not None else None,
        best_value=best.value if best is not None else None,
        best_params=dict(best.params) if best is not None else {},
        trials=[trial_dict(t) for t in all_trials],
        importances=_importances(study) if importances else {},
        trials_run=trials_run,
    )


def _importances(study) -> dict[str, float]:
    """Optuna's parameter importances, or {} with fewer than 2 complete trials or nothing varying."""
    import optuna
    from optuna.trial import TrialState

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(complete) < 2:
        return {}
    names = set.intersection(*(set(t.params) for t in complete))
    varying = sorted(n for n in names if len({json.dumps(t.params[n]) for t in complete}) > 1)
    if not varying:
        return {}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            found = optuna.importance.get_param_importances(study, params=varying)
    except (ValueError, RuntimeError):
        return {}
    return {name: float(value) for name, value in found.items()}


def study_importances(study_name: str, store: RunStore | None = None, storage: str | None = None) -> dict[str, float]:
    """Parameter importances of a stored study ({} when it is missing or too small)."""
    import optuna

    url = storage or default_storage(store)
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        return {}
    try:
        study = optuna.load_study(study_name=study_name, storage=_open_storage(url))
    except KeyError:
        return {}
    return _importances(study)
