"""Team tracking on an MLflow server: each run's copy published live and kept unique, and the
team's runs listed, charted and opened here from any machine. MLflow is imported only when used."""

from cnnlab.team.remote import open_team_run, team_history, team_runs, team_store
from cnnlab.team.tracking import TrackingConfig, TrackingError

__all__ = ["TrackingConfig", "TrackingError", "open_team_run", "team_history", "team_runs", "team_store"]
