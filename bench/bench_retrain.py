"""Memory of one process that trains again and again, as the app's server and a sweep worker do.

Two fresh processes, one after the other: each trains the default model on the built-in sample
`--trainings` times as the app does (`cnnlab.server.jobs.training_job`: a job thread per training, then
the next), and reads its resident memory after each training and its peak at the end. "kept" replaces both functions of
`cnnlab.training.memory` with no-ops, as before they existed: every traced training step stays pinned by
TensorFlow's gradient registry, and what the job threads freed stays in their malloc arenas;
"given back" is the code as it is. Prints the RSS after each training, the median growth per
training after the first, and the peak. Measures and prints; asserts nothing. The Streamlit
server, with its many more threads, is measured by `bench_server.py`.

    python -m bench.bench_retrain [--trainings 5] [--epochs 2] [--per-class N] [--cache DIR]
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from bench.child import run_child
from bench.machine import machine
from bench.subset import sample_slice
from cnnlab.settings import Settings

CHILD = """
import gc, json, resource, sys, tempfile, threading, time
from pathlib import Path
from bench.child import resident_bytes
from cnnlab.training import memory
from cnnlab.server.jobs import JobSettings, training_job
from cnnlab.model import ModelConfig
from cnnlab.runs.store import RunStore
from cnnlab.runs.workspace import Workspace
from cnnlab.training.engine import TrainConfig
from cnnlab.training.plan import training_plan

give_back, trainings, epochs, cache, data = sys.argv[1] == "1", int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4]), Path(sys.argv[5])
if not give_back:
    memory.release_training_graphs = lambda: 0
    memory.give_back_freed_memory = lambda: False

settings = JobSettings(Workspace(RunStore(tempfile.mkdtemp()), cache))
plan = training_plan(data, ModelConfig(), TrainConfig(epochs=epochs), workspace=settings.workspace)
after = []
for _ in range(trainings):
    job = training_job(plan, settings).start()
    # Until the job's thread has ended: it gives memory back after it marks the job done.
    while not job.done or any(thread.name == "cnnlab-_run" for thread in threading.enumerate()):
        time.sleep(0.2)
    if job.status != "completed":
        raise SystemExit(f"training {job.status}: {job.error}")
    gc.collect()
    after.append(resident_bytes() / 2**20)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
print(json.dumps({"after": after, "peak": peak}))
"""


def main() -> None:
    """Run both sides and print their memory."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trainings", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--cache", type=Path, default=Settings().cache_dir, help="cache folder (default: %(default)s)")
    parser.add_argument(
        "--per-class", type=int, help="images per class of the sample (default: all 480; the tests use fewer)"
    )
    args = parser.parse_args()
    data = sample_slice(args.cache, args.per_class)  # written once, before either side measures
    print(f"machine: {machine()}")
    part = f" ({args.per_class} images per class)" if args.per_class else ""
    print(f"{args.trainings} trainings of the default model on the built-in sample{part}, {args.epochs} epochs each")
    for label, give_back in (("kept", "0"), ("given back", "1")):
        result = run_child(CHILD, give_back, str(args.trainings), str(args.epochs), str(args.cache), str(data))
        after = result["after"]
        growth = statistics.median(b - a for a, b in zip(after, after[1:], strict=False)) if len(after) > 1 else 0.0
        print(
            f"{label:10s} RSS after each training (MB): {' '.join(f'{mb:.0f}' for mb in after)}; "
            f"median growth per training {growth:+.1f} MB; peak {result['peak']:.0f} MB"
        )


if __name__ == "__main__":
    main()
