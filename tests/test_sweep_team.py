"""A team sweep as a distributed engine: workers of one PostgreSQL study, publishing to one MLflow server.

One worker is killed with SIGKILL in the middle of a trial; Optuna's heartbeats let the other
worker fail that trial and retry it, and every trial that ran to its end is exactly one team run.
Both servers are real and local (tests/team_servers.py); without PostgreSQL or mlflow the test is
skipped loudly, unless CI requires them (CNNLAB_REQUIRE_POSTGRES=1, CNNLAB_REQUIRE_MLFLOW=1).
"""

import json
import os
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from cnnlab.sweep import follow_study
from cnnlab.team.tracking import STATUS_TAG, STUDY_TAG, TRIAL_TAG, TrackingConfig, client, experiment_id
from helpers import machine_settings, sweep_worker, tiny_space, write_dataset

SPACE = tiny_space({"learning_rate": {"low": 0.001, "high": 0.03, "log": True}, "dense_units": [4, 8, 16]}, epochs=10)


def worker(tmp_path: Path, name: str, storage: str, study: str, tracking: TrackingConfig, trials: int):
    """`python -m cnnlab sweep` (of the space in tmp_path) as one machine of the team: its own folders and user name."""
    settings = machine_settings(tmp_path / name, TrackingConfig(tracking.uri, tracking.experiment, name))
    options = ("--trials", str(trials), "--storage", storage, "--study", study)
    faults = ("--heartbeat-interval", "1", "--grace-period", "3")
    return sweep_worker(tmp_path / "data", tmp_path / "space.json", settings, *options, *faults, "--json", cwd=tmp_path)


def training_run(process: subprocess.Popen, models: Path, timeout: float = 300) -> dict:
    """The first run record in `models` that is training (its folder exists, status "running")."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the worker ended before training: {process.communicate()[1][-3000:]}")
        for record_file in models.glob("*/run.json"):
            try:
                record = json.loads(record_file.read_text())
            except ValueError:
                continue
            if record.get("status") == "running":
                return record
        time.sleep(0.1)
    raise TimeoutError(f"no training started in {models} within {timeout:.0f}s")


def team_run_training(tracking: TrackingConfig, user: str, timeout: float = 120) -> None:
    """Wait until `user`'s trial is a running team run on the server (published as it trains)."""
    deadline = time.monotonic() + timeout
    query = f"tags.`cnnlab.user` = '{user}' and attributes.status = 'RUNNING'"
    while time.monotonic() < deadline:
        exp = experiment_id(tracking, create=False)
        if exp is not None and client(tracking.uri).search_runs([exp], filter_string=query):
            return
        time.sleep(0.2)
    raise TimeoutError(f"{user}'s trial did not appear on the team server within {timeout:.0f}s")


@pytest.mark.slow
def test_a_killed_workers_trial_fails_is_retried_and_every_finished_trial_is_one_team_run(
    postgres_url, mlflow_server, tmp_path
):
    import optuna
    from optuna.trial import TrialState

    write_dataset(tmp_path / "data", per_class=16)
    (tmp_path / "space.json").write_text(json.dumps(SPACE.to_dict()))
    study = f"team-kill-{os.getpid()}-{tmp_path.name}"
    tracking = TrackingConfig(mlflow_server.url, study, "tester")
    victim = worker(tmp_path, "victim", postgres_url, study, tracking, trials=2)
    survivor = worker(tmp_path, "survivor", postgres_url, study, tracking, trials=4)
    try:
        killed_record = training_run(victim, tmp_path / "victim" / "models")
        team_run_training(tracking, "victim")
        assert victim.poll() is None, "the victim's trial ended before it could be killed"
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait(timeout=30)
        out, err = survivor.communicate(timeout=600)
        assert survivor.returncode == 0, err[-3000:]
    finally:
        for process in (victim, survivor):
            if process.poll() is None:
                process.kill()
                process.wait()
    assert victim.returncode == -signal.SIGKILL
    killed = killed_record["sweep"]["trial"]

    trials = {t.number: t for t in optuna.load_study(study_name=study, storage=postgres_url).get_trials()}
    assert trials[killed].state == TrialState.FAIL
    retries = [t for t in trials.values() if t.system_attrs.get("failed_trial") == killed]
    assert len(retries) == 1 and retries[0].state in (TrialState.COMPLETE, TrialState.PRUNED)
    assert retries[0].params == trials[killed].params
    assert not [t.number for t in trials.values() if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    assert json.loads(out.strip().splitlines()[-1])["trials"] == len(trials)

    team_runs = client(tracking.uri).search_runs(
        [experiment_id(tracking)], filter_string=f"tags.`{STUDY_TAG}` = '{study}'"
    )
    per_trial = Counter(int(r.data.tags[TRIAL_TAG]) for r in team_runs)
    finished = [n for n, t in trials.items() if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert {n: per_trial[n] for n in finished} == dict.fromkeys(finished, 1)
    assert per_trial[killed] == 1
    for team_run in team_runs:
        number = int(team_run.data.tags[TRIAL_TAG])
        if number == killed:  # published while it trained, then failed by the survivor's stale-trial callback
            assert team_run.data.tags["cnnlab.user"] == "victim"
            assert team_run.info.status == "FAILED" and team_run.data.tags[STATUS_TAG] == "failed"
        else:
            assert team_run.info.status in ("FINISHED", "KILLED") and team_run.data.tags["cnnlab.user"] == "survivor"
    retried = next(r for r in team_runs if int(r.data.tags[TRIAL_TAG]) == retries[0].number)
    assert retried.data.tags["cnnlab.sweep.retry_of"] == str(killed)

    # What the Sweep page shows when it follows the study from another machine.
    followed = {t["number"]: t for t in follow_study(study, postgres_url).trials}
    assert followed[killed]["state"] == "fail" and followed[retries[0].number]["retry_of"] == killed
    for number in finished:
        assert followed[number]["user"] == "survivor" and followed[number]["host"]
        assert followed[number]["team_run_id"] == next(
            r.info.run_id for r in team_runs if int(r.data.tags[TRIAL_TAG]) == number
        )
