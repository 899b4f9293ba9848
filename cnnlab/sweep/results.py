"""What a sweep found: the study's trials, its best trial's run, and parameter importances."""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cnnlab.runs.store import RunStore
from cnnlab.sweep.storage import default_storage, open_storage

if TYPE_CHECKING:
    from cnnlab.sweep.space import SweepSpace


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


def trial_dict(trial) -> dict[str, Any]:
    """One Optuna trial as a plain dict: number, state, value, params and the id of its run."""
    return {
        "number": trial.number,
        "state": trial.state.name.lower(),
        "value": trial.value,
        "params": dict(trial.params),
        "run_id": trial.user_attrs.get("run_id"),
    }


def sweep_result(
    study, storage: str, space: SweepSpace, trials_run: int, to_dict=trial_dict, importances: bool = True
) -> SweepResult:
    """The `SweepResult` of a study as it stands, `trials_run` of its trials run by this process.

    `to_dict` turns each trial into its dict; `importances=False` skips computing them.
    """
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
        trials=[to_dict(t) for t in all_trials],
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


def study_importances(study_name: str, store: RunStore, storage: str | None = None) -> dict[str, float]:
    """Parameter importances of a stored study ({} when it is missing or too small)."""
    import optuna

    url = storage or default_storage(store)
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        return {}
    try:
        study = optuna.load_study(study_name=study_name, storage=open_storage(url))
    except KeyError:
        return {}
    return _importances(study)
