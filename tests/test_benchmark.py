"""Benchmarking a run's export formats: one row per format, cached beside the run by its model's hash."""

import json

import pytest

pytest.importorskip("keras")

from cnnlab.cli import main
from cnnlab.deploy.benchmark import (
    BENCHMARK_FORMATS,
    benchmark_path,
    benchmark_run,
    benchmark_table,
    cached_benchmark,
    parse_formats,
)
from cnnlab.deploy.export import onnx_available
from cnnlab.runs.store import RunStore
from helpers import copied_models


@pytest.fixture(scope="module")
def copied_run(trained_run, tmp_path_factory):
    """A copy of the shared run: the benchmark is written into its folder."""
    models = copied_models(trained_run["run"], tmp_path_factory.mktemp("bench") / "models")
    return RunStore(models).get(trained_run["run"].id)


@pytest.fixture(scope="module")
def result(copied_run, trained_run):
    return benchmark_run(copied_run, cache=trained_run["cache"], repeats=3, warmup=1)


def test_one_row_per_format_with_its_figures(result, copied_run):
    rows = {row["format"]: row for row in result["rows"]}
    assert list(rows) == list(BENCHMARK_FORMATS)
    assert result["num_test_images"] == len(copied_run.split()["test"]) > 0
    runnable = [f for f in BENCHMARK_FORMATS if f != "onnx" or onnx_available()]
    for name in runnable:
        row = rows[name]
        assert row["size_mb"] > 0 and row["ms_per_image"] > 0, name
        assert 0.0 <= row["test_accuracy"] <= 1.0 and 0.9 <= row["agreement"] <= 1.0, name
        assert row["note"] is None
    # Keras agrees with itself, and its accuracy is the run's evaluated test accuracy.
    assert rows["keras"]["agreement"] == 1.0
    assert rows["keras"]["test_accuracy"] == pytest.approx(copied_run.record.metrics.test_accuracy)
    assert rows["tflite-int8"]["size_mb"] < rows["tflite"]["size_mb"]
    assert list(benchmark_table(result).columns) == [
        "format",
        "size_mb",
        "test_accuracy",
        "agreement",
        "ms_per_image",
        "note",
    ]


def test_result_is_cached_for_this_model_only(result, copied_run, trained_run):
    assert benchmark_path(copied_run, trained_run["cache"]) == copied_run.path / "benchmark.json"
    assert cached_benchmark(copied_run, cache=trained_run["cache"]) == json.loads(json.dumps(result))
    # The shared run's folder got nothing.
    assert not (trained_run["run"].path / "benchmark.json").exists()
    stored = json.loads((copied_run.path / "benchmark.json").read_text())
    stored["model_sha256"] = "0" * 64  # as if the model were retrained since
    (copied_run.path / "benchmark.json").write_text(json.dumps(stored))
    assert cached_benchmark(copied_run, cache=trained_run["cache"]) is None


def test_bad_formats_raise():
    assert parse_formats("keras, tflite-int8,keras") == ("keras", "tflite-int8")
    with pytest.raises(ValueError, match=r"expected one of keras, .*, savedmodel\. Received: format='coreml'$"):
        parse_formats("keras,coreml")
    with pytest.raises(ValueError, match=r"at least one format.*Received: formats=''$"):
        parse_formats("")


def test_cli_json_and_bad_input(copied_run, trained_run, monkeypatch, capsys):
    monkeypatch.setenv("CNNLAB_MODELS_DIR", str(copied_run.path.parent))
    monkeypatch.setenv("CNNLAB_CACHE_DIR", str(trained_run["cache"]))
    assert main(["benchmark", copied_run.id, "--formats", "keras,tflite-dynamic", "--repeats", "2", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [row["format"] for row in result["rows"]] == ["keras", "tflite-dynamic"]
    assert all(row["ms_per_image"] > 0 for row in result["rows"])
    assert main(["benchmark", copied_run.id, "--formats", "keras,tflite-int4"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and err[0].endswith("Received: format='tflite-int4'")
