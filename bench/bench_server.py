"""Hosted-demo readiness: start-up speed and the server's peak memory over the whole demo flow.

Starts the real server (`streamlit run streamlit_app.py`, hosted mode by default) with a fresh run
store and a fresh cache, then in headless Chromium: opens the home page (time from a healthy
server to the title 'CNN Lab' shown, target < 2 s), goes to Train, trains the default model on
the built-in sample with default settings except the epochs (lowered with the Epochs widget to
keep the run a few minutes long), then goes to Predict and predicts one uploaded sample image.
A thread sums the resident memory (RSS) of the server's process tree from /proc every 0.2 s; the
peak is printed per phase and overall (target < 1.2 GB). Around the training in the server, the
same training runs from the command line (`python -m cnnlab train`, the same cache and epochs, the
browser still open), once before and once after, and the server's training throughput is printed
as a ratio to the command line's (target >= 0.95). Measures and prints; asserts nothing.

    python -m bench.bench_server [--epochs 2] [--not-hosted] [--cache DIR]
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
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from bench.machine import machine
from cnnlab.runs import RunStore
from tests.e2e_server import StreamlitServer, find_chromium, launch_chromium

HOME_TARGET_S = 2.0
MEMORY_TARGET_BYTES = 1.2e9
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
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
            with open(f"/proc/{pid}/statm") as f:
                total += int(f.read().split()[1]) * PAGE_SIZE
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
    return RunStore(run_dir.parent, include_demo=False).get(run_dir.name).history


def throughput(history: list[dict]) -> tuple[float, float]:
    """Median seconds per epoch and median training images per second."""
    return statistics.median(r["seconds"] for r in history), statistics.median(r["images_per_s"] for r in history)


def demo_flow(page, server: StreamlitServer, sampler: MemorySampler, epochs: int, cache: Path) -> dict[str, float]:
    """Drive the demo in the browser; return the seconds each phase took."""
    seconds: dict[str, float] = {}
    cli_runs = server.models_dir.parent / "cli-runs"

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

    sampler.phase = "train page"
    start = time.monotonic()
    open_page(page, "Train")
    page.get_by_text(re.compile(r"Model summary: \d+ layers")).wait_for(timeout=PAGE_TIMEOUT_MS)
    seconds["train page: click -> model summary shown (sample generated, TF imported)"] = time.monotonic() - start
    epochs_field = page.get_by_label("Epochs", exact=True)
    epochs_field.fill(str(epochs))
    epochs_field.press("Enter")
    page.wait_for_function(f"() => document.querySelector('input[aria-label=\"Epochs\"]').value === '{epochs}'")

    sampler.phase = "cli training"
    idle = tree_cpu(os.getpid(), exclude=server.pid), time.monotonic()
    cli = cli_training(cache, cli_runs / "before", epochs)
    idle_cpu, idle_s = tree_cpu(os.getpid(), exclude=server.pid) - idle[0], time.monotonic() - idle[1]
    print(f"CPU s of the browser and Playwright, Train page open and idle: {idle_cpu:.1f} in {idle_s:.0f} s")
    sampler.phase = "training"
    cpu = tree_cpu(server.pid), tree_cpu(os.getpid(), exclude=server.pid)
    by_command = tree_cpu_by_command(os.getpid(), exclude=server.pid)
    start = time.monotonic()
    page.get_by_role("button", name="Start training", exact=True).click()
    done = page.locator('[data-testid="stAlert"]').filter(has_text=re.compile(r"Run .* (completed|stopped) after"))
    failed = page.locator('[data-testid="stAlert"]').filter(has_text=re.compile("error", re.I))
    wait_quietly(done.or_(failed), TRAIN_TIMEOUT_MS / 1000)
    seconds[f"training: start -> finished ({epochs} epochs)"] = time.monotonic() - start
    print(
        f"CPU s during the server's training: server {tree_cpu(server.pid) - cpu[0]:.1f}, "
        f"browser and Playwright {tree_cpu(os.getpid(), exclude=server.pid) - cpu[1]:.1f} "
        f"in {time.monotonic() - start:.0f} s"
    )
    spent = tree_cpu_by_command(os.getpid(), exclude=server.pid)
    spent.subtract(by_command)
    print("  of which, by command:", ", ".join(f"{name} {sec:.1f}" for name, sec in spent.most_common() if sec >= 0.1))
    message = done.or_(failed).first.locator('[data-testid="stMarkdownContainer"]').inner_text()
    print("training message:", " ".join(message.split()))
    history = RunStore(server.models_dir, include_demo=False).list()[0].history
    sampler.phase = "cli training"
    cli += cli_training(cache, cli_runs / "after", epochs)
    (server_s, server_ips), (cli_s, cli_ips) = throughput(history), throughput(cli)
    print(f"training in the server:        median {server_s:.2f} s/epoch, {server_ips:.0f} img/s")
    print(
        f"training from the CLI (before and after, {len(cli)} epochs): median {cli_s:.2f} s/epoch, {cli_ips:.0f} img/s"
    )
    print(
        f"server/CLI training throughput: {server_ips / cli_ips:.3f} by img/s, {cli_s / server_s:.3f} by s/epoch "
        "(target >= 0.95)"
    )

    sampler.phase = "predict"
    start = time.monotonic()
    open_page(page, "Predict")
    image = sorted((cache / "sample-v1-seed0" / "star").glob("*.png"))[0]
    page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(image)
    heatmap = page.locator('[data-testid="stImage"]').filter(has_text="Grad-CAM for").locator("img")
    heatmap.wait_for(timeout=PAGE_TIMEOUT_MS)
    seconds["predict: click -> label and Grad-CAM shown (model loaded)"] = time.monotonic() - start
    print("prediction:", page.get_by_text(re.compile(rf"{re.escape(image.name)}: ")).first.inner_text())
    sampler.phase = "after"
    return seconds


def wait_quietly(locator, timeout_s: float, every_s: float = 1.0) -> None:
    """Wait for `locator` by asking once a second, as a person glancing at the page would, so the
    waiting itself takes as little CPU as it can from the training being measured."""
    deadline = time.monotonic() + timeout_s
    while not locator.count():
        if time.monotonic() > deadline:
            raise TimeoutError(f"nothing matched {locator} in {timeout_s:.0f} s")
        time.sleep(every_s)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--epochs", type=int, default=2, help="epochs typed into the Epochs widget (default 2; the app's default is 10)"
    )
    parser.add_argument("--not-hosted", action="store_true", help="run without CNNLAB_HOSTED=1")
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
        server = StreamlitServer(Path(tmp) / "models", cache, env=env, log_path=Path(tmp) / "server.log")
        server.start()
        sampler = MemorySampler(server.pid).start()
        try:
            idle = tree_rss(server.pid)
            seconds = {
                "server: launch -> healthy": server.healthy_at - server.started_at,
                **demo_flow(page, server, sampler, args.epochs, cache),
            }
        except Exception:
            print(f"----- server log -----\n{server.log()}", file=sys.stderr)
            raise
        finally:
            sampler.stop()
            server.stop()
            browser.close()

    print(
        f"server: streamlit run streamlit_app.py, {'not ' if args.not_hosted else ''}hosted, fresh models dir, {'given' if args.cache else 'fresh'} cache"
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
