"""Following a shared study from any machine: every worker's trials, running ones included."""

from __future__ import annotations

from typing import Any

from cnnlab.sweep.results import SweepResult, sweep_result, trial_dict
from cnnlab.sweep.space import space_from_dict
from cnnlab.sweep.storage import SPACE_ATTR, open_storage


def worker_trial_dict(trial) -> dict[str, Any]:
    """A trial with who ran it where, its team run, and which trial it retries."""
    return {
        **trial_dict(trial),
        "user": trial.user_attrs.get("user"),
        "host": trial.user_attrs.get("host"),
        "team_run_id": trial.user_attrs.get("team_run_id"),
        "retry_of": trial.system_attrs.get("failed_trial"),
    }


def follow_study(study_name: str, storage: str) -> SweepResult:
    """A shared study as it stands now: trials carry `user`, `host`, `team_run_id` and `retry_of`.

    Importances are left out (too slow to compute on every poll).
    """
    import optuna

    try:
        study = optuna.load_study(study_name=study_name, storage=open_storage(storage))
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
    return sweep_result(study, storage, space, 0, to_dict=worker_trial_dict, importances=False)
