"""Hosted-demo readiness: start-up speed and the server's peak memory over the whole demo flow.

Starts the real server (`streamlit run streamlit_app.py`, hosted mode by default) with a fresh run
store and a fresh cache, then in headless Chromium: opens the home page (time from a healthy
server to the title 'CNN Lab' shown, target < 2 s), goes to Train, trains the default model on
the built-in sample with default settings except the epochs (lowered with the Epochs widget to
keep the run a few minutes long), then goes to Predict and predicts one uploaded sample image.
A thread sums the resident memory (RSS) of the server's process tree from /proc every 0.2 s; the
peak is printed per phase and overall (target < 1.2 GB). Around each training in the server, the
same training runs from the command line (`python -m cnnlab train`, the same cache and epochs, the
browser still open on the Train page): `--rounds N` alternates N trainings in the app with N + 1
from the command line, and the app's training throughput is printed as a ratio to the command
line's (medians over all epochs, and per round; target >= 0.95), with the CPU seconds the server
and the browser spent. `--unwatched` leaves the Train page for a blank one while the app trains,
which measures the server alone. `--first-page` stops once the Train page shows its model summary
(the first-visit times only); `--no-warm-up` starts the server with CNNLAB_WARM_UP=0 (no start-up
warm-up), to compare; `--read-s S` stays S seconds on the home page before going to Train, as a
person reading it would (default 0: straight on). Measures and prints; asserts nothing.

    python -m bench.bench_server [--epochs 2] [--rounds 1] [--unwatched] [--not-hosted] [--cache DIR]
                                 [--first-page] [--no-warm-up] [--read-s S]
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from bench.child import resident_bytes
from bench.machine import machine
from cnnlab.runs.store import RunStore
from tests.e2e_server import StreamlitServer, find_chromium, launch_chromium

HOME_TARGET_S = 2.0
MEMORY_TARGET_BYTES = 1.2e9
TRAIN_TIMEOUT_MS = 30 * 60 * 1000
PAGE_TIMEOUT_MS = 120 * 1000


def process_tree(root: int) -> list[int]:
    """`root` and all its descendants, from /proc/<pid>/stat parent ids."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                # The command name may hold spaces; the fields after its closing ')' are fixed.
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        parents.setdefault(ppid, []).append(int(entry))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(parents.get(pid, []))
    return tree


def tree_rss(root: int) -> int:
    """Summed resident memory, in bytes, of `root` and its descendants (0 once they are gone)."""
    total = 0
    for pid in process_tree(root):
        try:
            total += resident_bytes(pid)
        except (OSError, IndexError, ValueError):
            continue
    return total


class MemorySampler:
    """Samples a process tree's RSS every `interval` seconds in a thread; tracks the peak per phase."""

    def __init__(self, pid: int, interval: float = 0.2) -> None:
        self.pid, self.interval = pid, interval
        self.phase = "start-up"
        self.peaks: dict[str, int] = {}
        self.last = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="rss-sampler", daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.last = tree_rss(self.pid)
            self.peaks[self.phase] = max(self.peaks.get(self.phase, 0), self.last)
            self._stop.wait(self.interval)

    def start(self) -> MemorySampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak(self) -> int:
        return max(self.peaks.values(), default=0)


def tree_cpu(root: int, exclude: int | None = None) -> float:
    """CPU seconds (user + system) used so far by `root` and its descendants, less `exclude`'s tree."""
    return sum(tree_cpu_by_command(root, exclude).values())


def tree_cpu_by_command(root: int, exclude: int | None = None) -> Counter[str]:
    """`tree_cpu` per command name (chrome, node, python...), to see who spends it."""
    skip = set(process_tree(exclude)) if exclude is not None else set()
    seconds: Counter[str] = Counter()
    for pid in process_tree(root):
        if pid in skip:
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                command, rest = f.read().split("(", 1)[1].rsplit(")", 1)
            fields = rest.split()
            ticks = int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            continue
        seconds[command.split("-")[0]] += ticks / os.sysconf("SC_CLK_TCK")
    return seconds


def gb(num_bytes: float) -> str:
    return f"{num_bytes / 1e9:.2f} GB"


def open_page(page, title: str) -> None:
    """Click a sidebar page link and wait for the page's title."""
    page.locator('[data-testid="stSidebarNav"]').get_by_role("link", name=title, exact=True).click()
    page.get_by_role("heading", name=title, exact=True).wait_for(timeout=PAGE_TIMEOUT_MS)


def cli_training(cache: Path, run_dir: Path, epochs: int) -> list[dict]:
    """The same training from the command line, in its own process; its per-epoch history rows."""
    env = {**os.environ, "CNNLAB_CACHE_DIR": str(cache), "CNNLAB_MODELS_DIR": str(run_dir.parent)}
    command = [sys.executable, "-m", "cnnlab", "train", "--epochs", str(epochs), "--run-dir", str(run_dir), "--json"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(command, env=env, check=True, capture_output=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    print(f"CLI training ({epochs} epochs): {cpu:.1f} CPU s")
    return RunStore(run_dir.parent).get(run_dir.name).epoch_rows()


def throughput(history: list[dict]) -> tuple[float, float]:
    """Median seconds per epoch and median training images per second."""
    return statistics.median(r["seconds"] for r in history), statistics.median(r["images_per_s"] for r in history)


def set_epochs(page, epochs: int) -> None:
    """Type `epochs` into the Train page's Epochs widget and wait for the page to take it."""
    field = page.get_by_label("Epochs", exact=True)
    field.fill(str(epochs))
    field.press("Enter")
    page.wait_for_function(f"() => document.querySelector('input[aria-label=\"Epochs\"]').value === '{epochs}'")


def compare_with_cli(
    page, server: StreamlitServer, sampler: MemorySampler, epochs: int, cache: Path, rounds: int, unwatched: bool
) -> None:
    """Train `rounds` times from the command line and in the app, alternating, then once more from
    the command line; print each side's throughput and the ratio, with the CPU each process spent."""
    cli_runs = server.models_dir.parent / "cli-runs"
    cli: list[list[dict]] = []
    app: list[list[dict]] = []
    spent: Counter[str] = Counter()
    for number in range(rounds + 1):
        sampler.phase = "cli training"
        before = tree_cpu(os.getpid(), exclude=server.pid), time.monotonic()
        cli.append(cli_training(cache, cli_runs / f"cli-{number}", epochs))
        idle_cpu, idle_s = tree_cpu(os.getpid(), exclude=server.pid) - before[0], time.monotonic() - before[1]
        print(f"  CPU s of the browser and Playwright meanwhile (Train page idle): {idle_cpu:.1f} in {idle_s:.0f} s")
        if number < rounds:
            sampler.phase = f"training {number + 1}"
            app.append(app_training(page, server, epochs, unwatched, spent))
            print(f"  server RSS after app training {number + 1}: {gb(sampler.last)}")
    print(
        f"CPU s during the app's trainings ({spent['wall s']:.0f} s): server {spent['server']:.1f}; browser and "
        "Playwright by command: "
        + ", ".join(
            f"{name} {sec:.1f}" for name, sec in spent.most_common() if sec >= 0.1 and name not in ("wall s", "server")
        )
    )
    for name, runs in (("CLI", cli), ("app", app)):
        for history in runs:
            print(f"img/s per epoch, {name}: " + " ".join(f"{row['images_per_s']:.0f}" for row in history))
    (app_s, app_ips), (cli_s, cli_ips) = throughput(sum(app, [])), throughput(sum(cli, []))
    print(f"training in the app ({rounds} x {epochs} epochs):      median {app_s:.2f} s/epoch, {app_ips:.0f} img/s")
    print(f"training from the CLI ({rounds + 1} x {epochs} epochs): median {cli_s:.2f} s/epoch, {cli_ips:.0f} img/s")
    pairs = [
        throughput(run)[1] / statistics.mean(throughput(c)[1] for c in cli[i : i + 2]) for i, run in enumerate(app)
    ]
    print("app/CLI per round (against the CLI runs either side): " + " ".join(f"{r:.3f}" for r in pairs))
    print(
        f"app/CLI training throughput: {app_ips / cli_ips:.3f} by img/s, {cli_s / app_s:.3f} by s/epoch "
        f"(medians over all epochs; target >= 0.95){' - page left unwatched' if unwatched else ''}"
    )


def app_training(page, server: StreamlitServer, epochs: int, unwatched: bool, spent: Counter[str]) -> list[dict]:
    """One training started with the Train page's button; its history rows. Adds the CPU seconds
    the server and the browser's processes spent meanwhile to `spent`."""
    store = RunStore(server.models_dir)
    known = {run.id for run in store.list()}
    server_cpu, browser_cpu = tree_cpu(server.pid), tree_cpu_by_command(os.getpid(), exclude=server.pid)
    start = time.monotonic()
    page.get_by_role("button", name="Start training", exact=True).click()
    wait_quietly(page.get_by_text(re.compile(r"Epoch 1 of")), PAGE_TIMEOUT_MS / 1000)
    address = page.url  # to come back to (the browser's cookie keeps the hosted visitor's id)
    if unwatched:
        page.goto("about:blank")
    (run_id,) = {run.id for run in store.list()} - known
    wait_for_run(store, run_id, TRAIN_TIMEOUT_MS / 1000)
    here = tree_cpu_by_command(os.getpid(), exclude=server.pid) - browser_cpu
    here.update({"wall s": time.monotonic() - start, "server": tree_cpu(server.pid) - server_cpu})
    print(f"  app run {run_id}: " + ", ".join(f"{name} {sec:.1f}" for name, sec in here.most_common() if sec >= 0.1))
    spent.update(here)
    if unwatched:
        page.goto(address)
        set_epochs(page, epochs)
    else:
        done = rf"Run {run_id} (completed|stopped) after"
        wait_quietly(page.locator('[data-testid="stAlert"]').filter(has_text=re.compile(done)), PAGE_TIMEOUT_MS / 1000)
    return store.get(run_id).epoch_rows()


def demo_flow(page, server: StreamlitServer, sampler: MemorySampler, cache: Path, args) -> dict[str, float]:
    """Drive the demo in the browser; return the seconds each phase took."""
    epochs, rounds, unwatched = args.epochs, args.rounds, args.unwatched
    seconds: dict[str, float] = {}

    sampler.phase = "home"
    start = time.monotonic()
    page.goto(server.url)
    page.get_by_role("heading", name="CNN Lab", exact=True).wait_for(timeout=PAGE_TIMEOUT_MS)
    seconds["home: healthy -> title shown"] = time.monotonic() - server.healthy_at
    seconds["home: goto -> title shown"] = time.monotonic() - start
    start = time.monotonic()
    page.reload()
    page.get_by_role("heading", name="CNN Lab", exact=True).wait_for(timeout=PAGE_TIMEOUT_MS)
    seconds["home: reload (warm) -> title shown"] = time.monotonic() - start
    time.sleep(args.read_s)

    sampler.phase = "train page"
    start = time.monotonic()
    open_page(page, "Train")
    page.get_by_text(re.compile(r"Model summary: \d+ layers")).wait_for(timeout=PAGE_TIMEOUT_MS)
    seconds["train page: click -> model summary shown (sample generated, TF imported)"] = time.monotonic() - start
    if args.first_page:
        return seconds
    set_epochs(page, epochs)
    start = time.monotonic()
    compare_with_cli(page, server, sampler, epochs, cache, rounds, unwatched)
    seconds[f"training: {rounds} round(s) of CLI then app, then CLI ({epochs} epochs each)"] = time.monotonic() - start

    sampler.phase = "predict"
    start = time.monotonic()
    open_page(page, "Predict")
    image = sorted((cache / "sample-v1-seed0" / "star").glob("*.png"))[0]
    page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(image)
    maps = page.locator('[data-testid="stPlotlyChart"]').filter(has_text="SmoothGrad").locator(".main-svg").first
    maps.wait_for(timeout=PAGE_TIMEOUT_MS)
    seconds["predict: click -> label and the four maps shown (model loaded)"] = time.monotonic() - start
    print("prediction:", page.get_by_text(re.compile(rf"{re.escape(image.name)}: ")).first.inner_text())
    sampler.phase = "after"
    return seconds


def wait_quietly(locator, timeout_s: float) -> None:
    """Wait for `locator` by asking once a second, as a person glancing at the page would, so the
    waiting itself takes as little CPU as it can from the training being measured."""
    poll_until(locator.count, timeout_s, f"nothing matched {locator}")


def wait_for_run(store: RunStore, run_id: str, timeout_s: float) -> None:
    """Wait for a run to leave "running", asking its record once a second."""
    poll_until(lambda: store.get(run_id).status != "running", timeout_s, f"run {run_id} did not end")


def poll_until(done: Callable[[], object], timeout_s: float, failure: str) -> None:
    """Call `done` once a second until it is true; TimeoutError("`failure` in N s") after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not done():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{failure} in {timeout_s:.0f} s")
        time.sleep(1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--epochs", type=int, default=2, help="epochs typed into the Epochs widget (default 2; the app's default is 10)"
    )
    parser.add_argument(
        "--rounds", type=int, default=1, help="trainings in the app, each between two from the command line (default 1)"
    )
    parser.add_argument(
        "--unwatched",
        action="store_true",
        help="leave the Train page for a blank one once the training runs, to measure the server alone",
    )
    parser.add_argument("--not-hosted", action="store_true", help="run without CNNLAB_HOSTED=1")
    parser.add_argument(
        "--first-page", action="store_true", help="stop once the Train page shows its model summary (no training)"
    )
    parser.add_argument("--no-warm-up", action="store_true", help="start the server with CNNLAB_WARM_UP=0")
    parser.add_argument(
        "--read-s", type=float, default=0.0, help="seconds on the home page before going to Train (default 0)"
    )
    parser.add_argument(
        "--cache", type=Path, help="reuse this cache folder (default: a fresh one, so the sample is generated)"
    )
    args = parser.parse_args()
    chromium = find_chromium()
    if chromium is None:
        sys.exit("No Chromium found (apt-get install chromium).")
    from playwright.sync_api import sync_playwright

    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory(prefix="bench-server-") as tmp, sync_playwright() as p:
        cache = args.cache or Path(tmp) / "cache"
        browser = launch_chromium(p, chromium)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        env = {} if args.not_hosted else {"CNNLAB_HOSTED": "1"}
        if args.no_warm_up:
            env["CNNLAB_WARM_UP"] = "0"
        server = StreamlitServer(Path(tmp) / "models", cache, env=env, log_path=Path(tmp) / "server.log")
        server.start()
        sampler = MemorySampler(server.pid).start()
        try:
            idle = tree_rss(server.pid)
            seconds = {
                "server: launch -> healthy": server.healthy_at - server.started_at,
                **demo_flow(page, server, sampler, cache, args),
            }
        except Exception:
            print(f"----- server log -----\n{server.log()}", file=sys.stderr)
            raise
        finally:
            sampler.stop()
            server.stop()
            browser.close()

    print(
        f"server: streamlit run streamlit_app.py, {'not ' if args.not_hosted else ''}hosted, fresh models dir, {'given' if args.cache else 'fresh'} cache, "
        f"warm-up {'off' if args.no_warm_up else 'on'}, {args.read_s:g} s on the home page before Train"
    )
    print(
        f"flow: home -> Train (default model and settings, epochs lowered to {args.epochs} via the widget) -> Predict one image"
    )
    for name, value in seconds.items():
        print(f"{name:<75} {value:7.2f} s")
    home = seconds["home: healthy -> title shown"]
    print(
        f"home page after healthy: {home:.2f} s (target < {HOME_TARGET_S:.0f} s: {'met' if home < HOME_TARGET_S else 'NOT met'})"
    )
    print(f"server RSS when healthy: {gb(idle)}")
    for phase, peak in sampler.peaks.items():
        print(f"peak RSS during {phase:<12} {gb(peak)}")
    print(
        f"peak RSS overall: {gb(sampler.peak)} (target < {gb(MEMORY_TARGET_BYTES)}: {'met' if sampler.peak < MEMORY_TARGET_BYTES else 'NOT met'})"
    )


if __name__ == "__main__":
    main()
