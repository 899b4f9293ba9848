"""Team sweeps: two worker processes share one study, on SQLite and on a real PostgreSQL server.

The PostgreSQL server is started by the session fixture `postgres_url` (tests/team_servers.py) from
Debian's `postgresql` package, on a free port of 127.0.0.1 with its data and socket in a temporary
folder. Without the package the test is skipped with a loud reason, unless CNNLAB_REQUIRE_POSTGRES=1
(as in CI), which makes it a failure.
"""

import json
from collections import Counter

import pytest

from cnnlab.runs.store import RunStore
from helpers import sweep_worker, tiny_space, write_dataset

SPACE = tiny_space({"learning_rate": {"low": 0.001, "high": 0.03, "log": True}, "batch_norm": [True, False]}, epochs=1)


@pytest.fixture(params=["sqlite", "postgresql"])
def storage_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'team.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.mark.slow
def test_two_workers_add_up_their_trials_in_one_study(storage_url, tmp_path):
    import optuna
    from optuna.trial import TrialState

    data_dir = write_dataset(tmp_path / "data")
    space_file = tmp_path / "space.json"
    space_file.write_text(json.dumps(SPACE.to_dict()))
    models = tmp_path / "team-models"
    study = f"team-{tmp_path.name}"
    settings = {"CNNLAB_MODELS_DIR": str(models), "CNNLAB_CACHE_DIR": str(tmp_path / "cache")}
    options = ("--trials", "2", "--storage", storage_url, "--study", study, "--json")
    workers = [sweep_worker(data_dir, space_file, settings, *options, cwd=tmp_path) for _ in range(2)]
    outputs = []
    try:
        for worker in workers:
            out, err = worker.communicate(timeout=300)
            assert worker.returncode == 0, err[-3000:]
            outputs.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()

    for summary in outputs:
        assert summary["study"] == study and summary["trials_run"] == 2 and summary["objective"] == "val_accuracy"
        assert summary["storage"] == storage_url  # no password in these URLs to hide
    assert max(summary["trials"] for summary in outputs) == 4

    loaded = optuna.load_study(study_name=study, storage=storage_url)
    trials = loaded.get_trials(deepcopy=False)
    assert len(trials) == 4
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    assert sorted(t.number for t in trials) == [0, 1, 2, 3]

    runs = RunStore(models).list(sweep=study)
    assert len(runs) == 4
    assert sorted(run.record.sweep.trial for run in runs) == [0, 1, 2, 3]
    assert {t.user_attrs["run_id"] for t in trials} == {run.id for run in runs}
    assert sorted(Counter(run.record.pid for run in runs).values()) == [2, 2]  # two trials per worker
    best = loaded.best_trial
    assert any(summary["best_value"] == best.value for summary in outputs)
