"""The pages' export extras: a quantised export and the benchmark table on Runs, the report on Evaluate."""

import pytest

from cnnlab.server.jobs import holding_slot
from helpers import copied_models, open_page

pytest.importorskip("keras")


@pytest.fixture
def copied(app, trained_run, tmp_path, monkeypatch):
    """The app over a copy of the shared run (the pages write exports and the benchmark into it)."""
    monkeypatch.setenv("CNNLAB_MODELS_DIR", str(copied_models(trained_run["run"], tmp_path / "models")))
    monkeypatch.setenv("CNNLAB_CACHE_DIR", str(trained_run["cache"]))
    return tmp_path / "models" / trained_run["run"].id


@pytest.mark.slow
def test_runs_page_exports_int8_and_benchmarks_every_format(app, copied):
    from cnnlab.deploy.benchmark import BENCHMARK_FORMATS

    at = open_page(app, "pages/runs.py")
    assert any("Not benchmarked yet" in c.value for c in at.caption)
    assert "export-quantize" not in [r.key for r in at.radio]
    next(r for r in at.radio if r.label == "Format").set_value("tflite").run()
    at.radio(key="export-quantize").set_value("int8").run()
    next(b for b in at.button if b.label == "Export and check").click().run()
    assert not at.exception, [e.value for e in at.exception]
    successes = [s.value for s in at.success if "Exported to" in s.value]
    assert len(successes) == 1, [e.value for e in at.error]
    assert "within 0.1 for int8; same top class on " in successes[0]
    assert len(list((copied / "exports").glob("tflite-int8-*/model.tflite"))) == 1
    # While the server's one slot is taken (a training), the benchmark waits its turn instead of timing it.
    with holding_slot(1, "a training"):
        at.button(key="benchmark-exports").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert [e.value for e in at.error if e.value.startswith("The server is busy: 1 job(s) running")], at.error
    assert not (copied / "benchmark.json").exists() and not [d for d in at.dataframe if "ms_per_image" in d.value]
    at.button(key="benchmark-exports").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert list(_benchmark_table(at)["format"]) == list(BENCHMARK_FORMATS)
    # Shown again from the saved result, without running it.
    at = open_page(at, "pages/runs.py")
    assert list(_benchmark_table(at)["format"]) == list(BENCHMARK_FORMATS)


def _benchmark_table(at):
    return next(d.value for d in at.dataframe if "ms_per_image" in d.value.columns)


def test_evaluate_page_builds_the_report_for_download(app, copied):
    at = open_page(app, "pages/evaluate.py")
    assert not at.get("download_button")
    at.text_area(key="report-intended-use").input("Teaching <shapes>").run()
    at.button(key="build-report").click().run()
    assert not at.exception, [e.value for e in at.exception]
    (button,) = at.get("download_button")
    assert button.proto.label == "Download the report (HTML)"
    # Changing a field asks for a new build rather than offering the old file.
    at.text_area(key="report-limitations").input("Not for photos").run()
    assert not at.get("download_button")
