"""Many hosted visitors at once against one hosted server process: time, wait for the training slot, memory.

This process is the server: hosted mode (`CNNLAB_HOSTED=1`, one training at a time server-wide),
one fresh models folder, cache and datasets folder for everyone. Each visitor is a session of the
whole app (`streamlit_app.py` in AppTest, a new visitor id each), driven from a thread of its own:

- Data page: upload a zip of tiny PNGs (3 classes of 8, 16x16, its own images);
- Train page: a tiny model (32 px, one conv block of 8 filters, `--epochs`), then wait for it;
- Predict page: one image of their dataset, through their new run;
- Runs page: the runs the visitor is shown.

AppTest keeps one global runtime per process, so the sessions' script runs take turns (a lock);
their trainings run at the same time in the server's job threads, where the limit admits one and
the others wait in the queue, as in a `streamlit run` server. A thread samples the RSS of this
process and its children (the zip extractions) every 0.2 s; the peak reported is that or the
process's own high-water mark (`ru_maxrss`), whichever is higher.

Prints the total time, each visitor's wait for the training slot and the peak RSS; with
`--json`, one JSON object as the last line, with each visitor's outcome (tests/test_load.py
checks it). Measures and asserts nothing.

    python -m bench.bench_hosted_load [--visitors 20] [--epochs 1] [--json]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import statistics
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from bench.bench_server import MemorySampler, gb
from bench.machine import machine

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the app-session helpers the tests drive the app with

CLASSES = ("cats", "dogs", "owls")
PER_CLASS = 8
SIDE = 16
HOSTED_BUDGET_GB = 2.7  # the most memory Community Cloud gives an app (1 GB guaranteed)


def png(color: int, rng: np.random.Generator) -> bytes:
    pixels = np.clip(color + rng.integers(-40, 41, (SIDE, SIDE, 3)), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


def visitor_zip(seed: int) -> tuple[bytes, bytes]:
    """A visitor's dataset as a zip (each class its own shade of noise), and one more image to predict."""
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for k, name in enumerate(CLASSES):
            for i in range(PER_CLASS):
                zf.writestr(f"{name}/{name}_{i}.png", png(40 + 80 * k, rng))
    return buffer.getvalue(), png(40, rng)


class Visitor(threading.Thread):
    """One visitor's whole visit, in a thread; `outcome` holds what happened and when."""

    def __init__(self, number: int, epochs: int, turns: threading.Lock) -> None:
        super().__init__(name=f"visitor-{number}")
        self.number, self.epochs, self.turns = number, epochs, turns
        self.outcome: dict[str, Any] = {"visitor": number}

    def page(self, act) -> Any:
        """Run one page interaction in this visitor's turn."""
        with self.turns:
            return act()

    def run(self) -> None:
        try:
            self.visit()
        except Exception as exc:  # noqa: BLE001 - reported in the outcome, for the test to show
            self.outcome["exception"] = f"{type(exc).__name__}: {exc}"

    def visit(self) -> None:
        from helpers import open_page, start_app, tiny_training

        archive, image = visitor_zip(self.number)
        began = time.monotonic()
        at = self.page(start_app)
        self.outcome["id"] = at.session_state["visitor"]

        def upload():
            open_page(at, "pages/data.py").radio(key="dataset-source").set_value("Upload a zip").run()
            at.file_uploader(key="zip-upload").set_value((f"v{self.number}.zip", archive, "application/zip")).run()

        self.page(upload)
        self.outcome["upload_errors"] = [e.value for e in at.error]
        self.page(lambda: tiny_training(open_page(at, "pages/train.py"), self.epochs))
        job = at.session_state.get("job")
        if job is None:
            self.outcome.update(status="refused", refusal=[e.value for e in at.error])
            return
        queued = time.monotonic() - (time.time() - job.created)  # when Start made the job, on the job's clock
        while not job.done:
            time.sleep(0.1)
        self.outcome.update(
            status=job.status,
            error=job.error,
            run=job.run_id,
            slot=(job.started, job.finished),  # when it held the training slot (None: never started)
            wait_s=(job.started or job.finished) - queued,
            train_s=job.finished - (job.started or job.finished),
        )

        def predict():
            open_page(open_page(at, "pages/train.py"), "pages/predict.py")  # the Train page selects the new run
            at.file_uploader(key="image-upload").set_value([("probe.png", image, "image/png")]).run()

        self.page(predict)
        self.outcome["predict_run"] = at.session_state.get("run_id")
        self.outcome["prediction"] = next((m.value for m in at.markdown if m.value.startswith("**probe.png**")), None)
        self.outcome["listed"] = self.page(lambda: open_page(at, "pages/runs.py")).dataframe[0].value["id"].tolist()
        self.outcome["visit_s"] = time.monotonic() - began


def hosted_load(visitors: int, epochs: int, work: Path) -> dict[str, Any]:
    """Run `visitors` visits at once against this process as a hosted server on folders under `work`."""
    os.environ.update(
        CNNLAB_HOSTED="1",
        CNNLAB_MODELS_DIR=str(work / "models"),
        CNNLAB_CACHE_DIR=str(work / "cache"),
        CNNLAB_DATASETS_DIR=str(work / "datasets"),
        TF_CPP_MIN_LOG_LEVEL="3",
    )
    from helpers import scan_components_once

    scan_components_once()  # once per server, as `streamlit run` does, not once per AppTest session
    sampler = MemorySampler(os.getpid()).start()
    turns = threading.Lock()
    started = time.monotonic()
    crowd = [Visitor(i, epochs, turns) for i in range(visitors)]
    for visitor in crowd:
        visitor.start()
    for visitor in crowd:
        visitor.join()
    total = time.monotonic() - started
    sampler.stop()
    from cnnlab.runs.store import RunStore

    owners = {r.id: r.record.owner for r in RunStore(work / "models").list()}
    return {
        "visitors": [v.outcome for v in crowd],
        "total_s": total,
        # The sampled peak of the process and its children, or the process's own high-water mark if higher.
        "peak_rss": max(sampler.peak, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024),
        "run_owners": owners,
        "budget_gb": HOSTED_BUDGET_GB,
    }


def report(result: dict[str, Any]) -> None:
    outcomes = result["visitors"]
    waits = sorted(o["wait_s"] for o in outcomes if "wait_s" in o)
    statuses = [o.get("status", o.get("exception", "?")) for o in outcomes]
    print(
        f"visitors: {len(outcomes)}; outcomes: {', '.join(f'{s} {statuses.count(s)}' for s in sorted(set(statuses)))}"
    )
    print(f"total time, first visit to last: {result['total_s']:.1f} s")
    if waits:
        print(
            f"wait for the training slot (s): median {statistics.median(waits):.1f}, max {waits[-1]:.1f}; "
            f"each: {' '.join(f'{w:.1f}' for w in waits)}"
        )
        trains = [o["train_s"] for o in outcomes if "train_s" in o]
        print(f"training (s): median {statistics.median(trains):.1f}, max {max(trains):.1f}")
        visits = [o["visit_s"] for o in outcomes if "visit_s" in o]
        print(f"whole visit (s): median {statistics.median(visits):.1f}, max {max(visits):.1f}")
    print(
        f"peak RSS of the server (process and children): {gb(result['peak_rss'])} (hosted budget {HOSTED_BUDGET_GB} GB)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--visitors", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="print every visitor's outcome as JSON last")
    args = parser.parse_args()
    print(f"machine: {machine()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="cnnlab-load-") as work:
        result = hosted_load(args.visitors, args.epochs, Path(work))
    report(result)
    if args.json:
        print(json.dumps(result, default=str))


if __name__ == "__main__":
    main()
