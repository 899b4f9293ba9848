"""Serving: a request to MLflow's scoring server (`mlflow models serve --env-manager local`, what
`cnnlab serve` runs) against CNN Lab's in-process `predict` of the same image plus the HTTP round trip
of an empty request.

The demo run saved as a pyfunc model (`cnnlab.deploy.serving.served_model`) and served on 127.0.0.1;
built-in sample PNG files. One client with a kept-alive connection (as a `requests.Session` or a
browser would), JSON as `dataframe_split`, interleaved repeats, medians:
- one image served, against in-process `predict` on its bytes, against an empty request (GET `/ping`,
  and a POST of zero rows, MLflow's request parsing included): target served <= 3x (predict + empty);
- 32 images in one request (one model batch) against 32 in-process and against 32 one-image requests.
Measures and prints; asserts nothing.

    python -m bench.bench_serve [--repeats 30] [--port P] [--cache DIR]
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from bench.bench_predict import seconds
from bench.machine import machine
from cnnlab.data.sample import sample_dir
from cnnlab.deploy.prediction import predict
from cnnlab.deploy.serving import serve_command, serve_environment, served_model
from cnnlab.runs.store import RunStore
from cnnlab.settings import DEMO_RUN_DIR, Settings

BATCH = 32


def ms(values: list[float]) -> float:
    return statistics.median(values) * 1000


class Client:
    """One kept-alive HTTP connection to the scoring server."""

    def __init__(self, port: int) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

    def post(self, files: list[bytes]) -> dict:
        rows = [[base64.b64encode(f).decode("ascii")] for f in files]
        body = json.dumps({"dataframe_split": {"columns": ["image"], "data": rows}})
        self.connection.request("POST", "/invocations", body, {"Content-Type": "application/json"})
        response = self.connection.getresponse()
        answer = json.loads(response.read())
        if response.status != 200:
            raise RuntimeError(f"status {response.status}: {answer}")
        return answer

    def ping(self) -> None:
        self.connection.request("GET", "/ping")
        self.connection.getresponse().read()


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_healthy(port: int, process: subprocess.Popen, timeout: float = 300) -> float:
    """Seconds until /ping answers."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}")
        try:
            Client(port).ping()
            return time.monotonic() - start
        except OSError:
            time.sleep(0.2)
    raise TimeoutError("the server did not answer")


def main() -> None:
    """Start the server, measure, print, stop it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--port", type=int, help="port on 127.0.0.1 (default: a free one)")
    parser.add_argument("--cache", type=Path, default=Settings().cache_dir, help="cache folder (default: %(default)s)")
    args = parser.parse_args()
    args.port = args.port or free_port()
    run = RunStore(DEMO_RUN_DIR.parent, demo=DEMO_RUN_DIR).get(DEMO_RUN_DIR.name)
    model, config, names = run.load_model(), run.model_config(), run.class_names
    files = sorted(sample_dir(args.cache).rglob("*.png"))
    files = [files[i] for i in np.linspace(0, len(files) - 1, max(args.repeats, BATCH)).astype(int)]
    sources = [f.read_bytes() for f in files]

    with tempfile.TemporaryDirectory(prefix="bench-serve-") as folder:
        started = time.monotonic()
        served = served_model(run, Path(folder))
        saved_s = time.monotonic() - started
        process = subprocess.Popen(
            serve_command(served, "127.0.0.1", args.port),
            env=serve_environment(None),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            ready_s = wait_healthy(args.port, process)
            figures = measure(Client(args.port), model, names, config, sources, args.repeats)
        finally:
            process.terminate()
            process.wait(timeout=30)

    print(f"machine: {machine()}")
    print(f"model: the demo model ({config.image_size[0]}x{config.image_size[1]} RGB), built-in sample PNG files")
    print(f"pyfunc model saved in {saved_s:.1f} s; server answering {ready_s:.1f} s after its start")
    print(f"one image, {args.repeats} interleaved repeats, medians:")
    for label, values in figures.items():
        if not label.startswith(str(BATCH)):
            print(f"  {label:<52} {ms(values):8.2f} ms")
    served_ms = ms(figures["served request, one image"])
    for empty in ("empty round trip (GET /ping)", "empty round trip (POST of zero rows)"):
        bound = ms(figures["in-process predict, one image"]) + ms(figures[empty])
        ratio = served_ms / bound
        print(
            f"  served / (in-process + empty {empty.removeprefix('empty round trip ')}): {ratio:.2f}x "
            f"(target <= 3x: {'met' if ratio <= 3 else 'NOT met'})"
        )
    print(f"{BATCH} images, medians of {max(3, args.repeats // 5)}:")
    for label, values in figures.items():
        if label.startswith(str(BATCH)):
            print(f"  {label:<52} {ms(values):8.1f} ms  ({BATCH / statistics.median(values):5.0f} img/s)")


def measure(client: Client, model, names, config, sources: list[bytes], repeats: int) -> dict[str, list[float]]:
    """Every figure's times, interleaved."""
    one: dict[str, Callable[[int], object]] = {
        "served request, one image": lambda i: client.post([sources[i]]),
        "in-process predict, one image": lambda i: predict(model, names, config, [sources[i]]),
        "empty round trip (GET /ping)": lambda i: client.ping(),
        "empty round trip (POST of zero rows)": lambda i: client.post([]),
    }
    batch = sources[:BATCH]
    many: dict[str, Callable[[], object]] = {
        f"{BATCH} images served in one request": lambda: client.post(batch),
        f"{BATCH} images in-process predict": lambda: predict(model, names, config, batch),
        f"{BATCH} one-image requests, one after another": lambda: [client.post([s]) for s in batch],
    }
    for call in one.values():  # first calls trace the model's functions and open the connection
        call(0), call(1)
    for call in many.values():
        call()
    times: dict[str, list[float]] = {label: [] for label in [*one, *many]}
    for i in range(repeats):
        for label, call in one.items():
            times[label].append(seconds(lambda call=call, i=i: call(i)))
    for _ in range(max(3, repeats // 5)):
        for label, batch_call in many.items():
            times[label].append(seconds(batch_call))
    return times


if __name__ == "__main__":
    main()
