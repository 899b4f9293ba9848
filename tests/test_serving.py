"""Serving with MLflow's scoring server: a run registered as `champion` on a real `mlflow server`, then
served by `python -m cnnlab serve models:/NAME@champion` (which runs `mlflow models serve --env-manager
local`) on 127.0.0.1 and queried over HTTP as a client would, its answers compared with CNN Lab's own
in-process `predict`. The model server starts once for the module."""

from __future__ import annotations

import base64
import io
import json
import os
import signal
import sys
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from e2e_server import ServerProcess
from PIL import Image

from cnnlab.analysis.novelty import flag_images, run_reference
from cnnlab.deploy.prediction import predict
from cnnlab.runs.store import RunStore
from cnnlab.team.tracking import TrackingConfig
from helpers import class_image, copied_models, image_bytes

REPO_ROOT = Path(__file__).resolve().parent.parent
NAME = "served-tiny"
pytestmark = pytest.mark.slow  # the model server takes about half a minute to start


class ModelServer(ServerProcess):
    """`python -m cnnlab serve MODEL` with its own models and cache folders; MLflow's `/health` answers an empty line."""

    name = "cnnlab-serve"

    def __init__(self, model: str, tracking_uri: str, home: Path, **options) -> None:
        options.setdefault("health_timeout", 240.0)  # TensorFlow and the model load first: slow on a busy machine
        super().__init__(log_path=home / "serve.log", **options)
        self.model, self.tracking_uri, self.home = model, tracking_uri, home

    @property
    def cwd(self) -> Path:
        return self.home

    def environment(self) -> dict[str, str]:
        return {
            **super().environment(),
            "PYTHONPATH": str(REPO_ROOT),
            "CNNLAB_MODELS_DIR": str(self.home / "models"),
            "CNNLAB_CACHE_DIR": str(self.home / "cache"),
        }

    def command(self) -> list[str]:
        return [sys.executable, "-m", "cnnlab", "serve", self.model, "--port", str(self.port)]

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False


class RegistryModelServer(ModelServer):
    def command(self) -> list[str]:
        return [*super().command(), "--tracking-uri", self.tracking_uri]


@pytest.fixture(scope="module")
def served(mlflow_server, trained_run, tmp_path_factory):
    """The shared tiny run registered as NAME@champion and served from the registry; yields the server and run."""
    from cnnlab.deploy.registry import register_run

    home = tmp_path_factory.mktemp("serve")
    # A copy: registering fits the unfamiliar-image flag's reference, kept beside the run.
    run = RunStore(copied_models(trained_run["run"], home / "runs")).get(trained_run["run"].id)
    config = TrackingConfig(mlflow_server.url, f"serving-{os.getpid()}", "tester")
    version = register_run(config, run, NAME, "champion", cache=home / "cache")
    (home / "models").mkdir()
    server = RegistryModelServer(f"models:/{NAME}@champion", mlflow_server.url, home)
    server.start()
    try:
        yield {"server": server, "run": run, "version": version, "model": run.load_model(), "cache": home / "cache"}
    finally:
        server.stop()


def invoke(server: ModelServer, body: bytes | dict) -> tuple[int, dict]:
    """POST to /invocations; (status, JSON answer)."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(f"{server.url}/invocations", data, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def split_request(files: list[bytes]) -> dict:
    return {"dataframe_split": {"columns": ["image"], "data": [[base64.b64encode(f).decode()] for f in files]}}


def sample_files() -> tuple[bytes, bytes]:
    rng = np.random.default_rng(3)
    return image_bytes(class_image((200, 40, 40), rng, (48, 40))), image_bytes(
        class_image((40, 40, 200), rng, (30, 50)), "JPEG", quality=90
    )


def test_served_predictions_equal_in_process_predict(served):
    png, jpeg = sample_files()
    status, answer = invoke(served["server"], split_request([png, jpeg]))
    assert status == 200
    run = served["run"]
    expected = predict(
        served["model"], run.class_names, run.model_config(), [png, jpeg], errors="report", temperature=run.temperature
    )
    rows = answer["predictions"]
    assert len(rows) == 2
    reference = run_reference(run, cache=served["cache"])
    flags = flag_images(served["model"], reference, [m.image for m in expected])
    for row, mine, flag in zip(rows, expected, flags, strict=True):
        assert row["error"] is None
        assert row["label"] == mine.label
        assert row["confidence"] == pytest.approx(mine.confidence, abs=1e-6)
        assert {c: row[f"P({c})"] for c in run.class_names} == pytest.approx(dict(mine.ranked), abs=1e-6)
        assert row["unlike_training"] == flag.novel and row["novelty_score"] == pytest.approx(flag.score, abs=1e-5)


def test_records_format_gives_the_same_answer(served):
    png, _ = sample_files()
    records = {"dataframe_records": [{"image": base64.b64encode(png).decode()}]}
    assert invoke(served["server"], records) == invoke(served["server"], split_request([png]))


def test_malformed_request_is_a_4xx_with_mlflows_message(served):
    status, answer = invoke(served["server"], b'{"rows": [1, 2]}')
    assert 400 <= status < 500
    assert answer["error_code"] == "BAD_REQUEST"
    assert "dataframe_split" in answer["message"].splitlines()[0]
    status, answer = invoke(served["server"], {"dataframe_split": {"columns": ["picture"], "data": [["x"]]}})
    assert 400 <= status < 500
    assert "image" in answer["message"]


def test_bad_images_get_an_error_row_and_the_rest_are_predicted(served):
    png, _ = sample_files()
    huge = io.BytesIO()
    Image.new("1", (8000, 6000)).save(huge, "PNG")  # 48 megapixels: over the decompression-bomb guard
    status, answer = invoke(served["server"], split_request([b"plain text, not a picture", png, huge.getvalue()]))
    assert status == 200
    not_image, good, too_big = answer["predictions"]
    assert "not an image" in not_image["error"] and not_image["label"] is None
    assert good["error"] is None and good["label"] in served["run"].class_names
    assert "decompression bomb" in too_big["error"] and too_big["confidence"] is None
    status, answer = invoke(served["server"], {"dataframe_split": {"columns": ["image"], "data": [["not base64!"]]}})
    assert status == 200 and "not valid base64" in answer["predictions"][0]["error"]


def test_ctrl_c_stops_the_server_cleanly(served):
    """Last: Ctrl-C (SIGINT to the process group, as a terminal sends it) stops `cnnlab serve` and MLflow's
    server with status 0, no traceback."""
    server = served["server"]
    os.killpg(server.pid, signal.SIGINT)
    assert server.process.wait(timeout=60) == 0
    log = server.log()
    assert "Stopped serving." in log
    assert "Traceback" not in log
    assert not server.healthy()
