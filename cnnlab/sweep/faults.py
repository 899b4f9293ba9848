"""Workers that die: Optuna's own heartbeats fail their trials and retry them.

A running trial's worker records a heartbeat every `heartbeat_interval` seconds in the study's
database. The next worker to start a trial fails any trial silent for longer than
`grace_period` and, through `RetryHeartbeatStaleTrialCallback`, adds a new trial with the same
parameters (the retry), which the next free worker runs. With team tracking, the dead trial's
team run, left "running" by its worker, is marked failed too.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cnnlab.common.checks import check_range, one_line

if TYPE_CHECKING:
    from cnnlab.team.tracking import TrackingConfig


@dataclass(frozen=True)
class FaultTolerance:
    """Heartbeats every `heartbeat_interval` s; a trial silent for `grace_period` s is failed and
    retried up to `max_retry` times (as a new trial with its parameters)."""

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


def fault_handling(fault_tolerance: FaultTolerance, tracking: TrackingConfig | None) -> dict[str, Any]:
    """RDBStorage's heartbeat arguments for `fault_tolerance`, the retry callback included."""
    import optuna
    from optuna.storages import RetryHeartbeatStaleTrialCallback

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # stable since Optuna 2.8
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


def retry_of(trial) -> int | None:
    """The number of the trial that `trial` retries, or None; call it when the trial starts.

    A retry starts with a copy of the failed trial's user attributes, so the first trial of a
    series leaves its number there (Optuna's own record of it is not readable from a live trial).
    """
    first = trial.user_attrs.get("first_number")
    if first is None:
        trial.set_user_attr("first_number", trial.number)
    return first


def _fail_team_runs(tracking: TrackingConfig, study_name: str, number: int) -> None:
    from cnnlab.team.tracking import fail_trial_runs

    try:
        fail_trial_runs(tracking, study_name, number)
    except Exception as exc:  # noqa: BLE001 - best effort: the team server being down must not stop the sweep
        logging.getLogger(__name__).warning(
            "Could not mark trial %s of study %r failed on the team server %s (%s); it stays 'running' there.",
            number,
            study_name,
            tracking.uri,
            one_line(exc)[:300],
        )
