"""Team tracking: what publishing to an MLflow server costs a training, and a simulated team sweep.

1. Overhead: the default model on the built-in sample, trained with and without a real local
   `mlflow server`, interleaved (A B A B ...) in one process after one unmeasured warm-up run of
   each side (the first publishing run imports MLflow). Prints each side's median wall-to-wall
   seconds per training (the final upload included) and median seconds per epoch, and the ratios
   (goal: under 2% slower).
2. Team: `--workers` processes of `python -m cnnlab sweep` (tiny trials) on one PostgreSQL study,
   all publishing to the same server: trials per minute, and whether any trial was lost,
   duplicated or left stuck, and whether each trial is exactly one team run.

    python -m bench.bench_team [--epochs 3] [--repeats 2] [--workers 8] [--trials 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
# The test servers and the sweep worker launcher, as the tests import them.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from team_servers import MlflowServer, PostgresServer

from bench.machine import machine
from cnnlab.data.sample import sample_dir
from cnnlab.model import ModelConfig
from cnnlab.runs.store import RunStore
from cnnlab.runs.workspace import Workspace
from cnnlab.team.tracking import STUDY_TAG, TRIAL_TAG, TrackingConfig, client, experiment_id
from cnnlab.training.engine import TrainConfig, train
from helpers import machine_settings, sweep_worker

TINY_SPACE = {
    "objective": "val_accuracy",
    "params": {"learning_rate": {"low": 0.001, "high": 0.03, "log": True}, "dense_units": [8, 16]},
    "fixed": {"epochs": 1, "image_size": 32, "conv_blocks": 1, "filters": 4, "flip": "none", "rotation": 0.0},
}


def timed_training(
    store: RunStore, cache: Path, train_config: TrainConfig, tracking: TrackingConfig | None
) -> tuple[float, list[float]]:
    """Wall seconds of one whole `train` call, and its epochs' seconds after the first."""
    started = time.perf_counter()
    run = train(sample_dir(cache), ModelConfig(), train_config, workspace=Workspace(store, cache, tracking=tracking))
    wall = time.perf_counter() - started
    if tracking is not None and not (run.record.team and run.record.team.published):
        raise RuntimeError(f"run {run.id} was not published: the benchmark needs a reachable server")
    return wall, [row.seconds for row in run.history[1:]]


def overhead(server: MlflowServer, epochs: int, repeats: int, tmp: Path) -> None:
    """Print the publishing overhead on the default model."""
    tracking = TrackingConfig(server.url, "bench-overhead", "bench")
    store = RunStore(tmp / "overhead")
    train_config = TrainConfig(epochs=epochs, patience=0)
    cache = tmp / "cache"
    timed_training(store, cache, TrainConfig(epochs=1, patience=0), None)  # warm-up: caches, graph tracing
    timed_training(store, cache, TrainConfig(epochs=1, patience=0), tracking)  # warm-up: MLflow imported
    walls: dict[str, list[float]] = {"without": [], "with": []}
    epoch_s: dict[str, list[float]] = {"without": [], "with": []}
    for _ in range(repeats):
        for side, config in (("without", None), ("with", tracking)):
            wall, epochs_s = timed_training(store, cache, train_config, config)
            walls[side].append(wall)
            epoch_s[side].extend(epochs_s)
    print(
        f"overhead: default ModelConfig on the built-in sample, {epochs} epochs per training, {repeats} interleaved pairs"
    )
    for side in ("without", "with"):
        print(
            f"  {side:<7} tracking server: trainings {', '.join(f'{w:.1f}' for w in walls[side])} s; "
            f"median {statistics.median(walls[side]):.2f} s per training, "
            f"{statistics.median(epoch_s[side]):.3f} s per epoch (epoch 1 of each dropped)"
        )
    wall_ratio = statistics.median(walls["with"]) / statistics.median(walls["without"])
    epoch_ratio = statistics.median(epoch_s["with"]) / statistics.median(epoch_s["without"])
    print(f"  ratio with/without: {wall_ratio:.3f} per training, {epoch_ratio:.3f} per epoch (goal < 1.02)")


def team(server: MlflowServer, workers: int, trials: int, tmp: Path) -> None:
    """Print trials per minute of a simulated team, and whether every trial was run and published once."""
    import optuna
    from optuna.trial import TrialState

    from cnnlab.data.sample import write_sample

    data_dir = write_sample(tmp / "team-data", num_per_class=20)
    space = tmp / "space.json"
    space.write_text(json.dumps(TINY_SPACE))
    postgres = PostgresServer(max_connections=4 * workers + 20).start()
    study = f"bench-team-{os.getpid()}"
    tracking = TrackingConfig(server.url, study, "bench")
    processes: list[subprocess.Popen] = []
    try:
        started = time.monotonic()
        processes = [_worker(tmp, i, data_dir, space, postgres.url, study, tracking, trials) for i in range(workers)]
        failures = [p for p in processes if p.wait(timeout=1800) != 0]
        elapsed = time.monotonic() - started
        found = optuna.load_study(study_name=study, storage=postgres.url).get_trials()
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
        postgres.stop()
    done = [t for t in found if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    stuck = [t.number for t in found if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    seconds = (max(t.datetime_complete for t in done) - min(t.datetime_start for t in done)).total_seconds()
    team_runs = client(server.url).search_runs(
        [experiment_id(tracking)], filter_string=f"tags.`{STUDY_TAG}` = '{study}'"
    )
    per_trial = Counter(int(r.data.tags[TRIAL_TAG]) for r in team_runs)
    one_each = all(per_trial[t.number] == 1 for t in done) and sum(per_trial.values()) == len(done)
    print(f"team: {workers} worker processes x {trials} tiny trials, one PostgreSQL study, one tracking server")
    print(
        f"  wall {elapsed:.0f} s from launch to the last exit (TensorFlow start-up included); {len(failures)} worker(s) failed"
    )
    print(
        f"  trials: {len(found)} recorded of {workers * trials} asked, states {dict(Counter(t.state.name for t in found))}, "
        f"numbers unique: {len({t.number for t in found}) == len(found)}, stuck: {stuck or 'none'}"
    )
    print(
        f"  {len(done)} trials in {seconds:.0f} s from the first trial's start to the last one's end: {len(done) / seconds * 60:.1f} trials/minute"
    )
    running = sum(r.info.status == "RUNNING" for r in team_runs)
    print(f"  team runs: {len(team_runs)}, exactly one per finished trial: {one_each}, still running: {running}")


def _worker(
    tmp: Path, index: int, data_dir: Path, space: Path, storage: str, study: str, tracking: TrackingConfig, trials: int
):
    """One team member's `python -m cnnlab sweep` worker (its own folders and user name), logging to a file."""
    name = f"worker{index}"
    settings = machine_settings(tmp / name, TrackingConfig(tracking.uri, tracking.experiment, name))
    options = ("--trials", str(trials), "--storage", storage, "--study", study)
    log = open(tmp / f"{name}.log", "w")  # noqa: SIM115 - the child writes it until it exits
    return sweep_worker(data_dir, space, settings, *options, cwd=tmp, stdout=log, stderr=subprocess.STDOUT)


def main() -> None:
    """Start a tracking server, run both measurements, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--trials", type=int, default=2, help="trials per worker")
    parser.add_argument("--skip-overhead", action="store_true")
    parser.add_argument("--skip-team", action="store_true")
    args = parser.parse_args()
    print(f"machine: {machine()}, load average {os.getloadavg()[0]:.1f} at start")
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        with MlflowServer(tmp / "mlflow") as server:
            print(
                f"tracking server: mlflow server (SQLite store) on 127.0.0.1, same machine, started in {server.healthy_at - server.started_at:.0f} s"
            )
            if not args.skip_overhead:
                overhead(server, args.epochs, args.repeats, tmp)
            if not args.skip_team:
                team(server, args.workers, args.trials, tmp)
    print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
