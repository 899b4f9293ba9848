"""Team tracking on an MLflow server: each run's copy published live and kept unique, and the
team's runs listed, charted and opened here from any machine. MLflow is imported only when used."""

from typing import TYPE_CHECKING

from cnnlab.common.exports import lazy_exports

if TYPE_CHECKING:  # what type checkers and readers see; at run time each name is imported on first use
    from cnnlab.team.remote import open_team_run, team_history, team_runs, team_store
    from cnnlab.team.tracking import TrackingConfig, TrackingError

__all__ = ["TrackingConfig", "TrackingError", "open_team_run", "team_history", "team_runs", "team_store"]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "open_team_run": "remote",
        "team_history": "remote",
        "team_runs": "remote",
        "team_store": "remote",
        "TrackingConfig": "tracking",
        "TrackingError": "tracking",
    },
)
