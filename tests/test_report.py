"""The one-file report: self-contained, escaped, with the run's figures, images and export checks."""

import json
import os
import re
import shutil

import pytest

pytest.importorskip("keras")

from cnnlab.cli import main
from cnnlab.deploy.benchmark import benchmark_run
from cnnlab.deploy.export import export_run
from cnnlab.deploy.report import write_report
from cnnlab.runs.store import RunStore
from helpers import copied_models

HOSTILE_NAME = 'tiny <b>run</b> & "co"'
INTENDED = '<script>alert("intended")</script>\nSorting three kinds of test pictures.'
EXTERNAL = re.compile(r"<(?:script|link|img|iframe)\b[^>]*\b(?:src|href)\s*=\s*[\"']?(?:https?:)?//", re.I)


@pytest.fixture(scope="module")
def report(trained_run, tmp_path_factory):
    """A copy of the shared run with a dynamic-range export and a benchmark, renamed hostilely, and its report."""
    base = tmp_path_factory.mktemp("report")
    store = RunStore(copied_models(trained_run["run"], base / "models"))
    run = store.rename(trained_run["run"].id, HOSTILE_NAME)
    cache = trained_run["cache"]
    export_run(run, "tflite", cache=cache, quantize="dynamic")
    benchmark_run(run, "keras,tflite-int8", cache=cache, repeats=2, warmup=1)
    out = write_report(run, base / "out" / "report.html", cache=cache, intended_use=INTENDED, limitations="")
    return {"run": run, "path": out, "text": out.read_text(encoding="utf-8"), "base": base}


def test_one_self_contained_file(report):
    import plotly.offline

    assert sorted(p.name for p in report["path"].parent.iterdir()) == ["report.html"]
    text = report["text"]
    assert EXTERNAL.search(text) is None
    assert "<link" not in text
    # Plotly's library is inlined exactly once, whatever the number of figures.
    assert text.count(plotly.offline.get_plotlyjs()[:500]) == 1
    assert text.count('class="plotly-graph-div"') == 3  # class counts, training curves, confusion matrix
    assert text.count("Plotly.newPlot") == 3


def test_images_are_embedded(report, trained_run):
    text = report["text"]
    evaluation_mistakes = json.loads((trained_run["run"].path / "evaluation.json").read_text())["predictions"]
    wrong = [p for p in evaluation_mistakes if not p["correct"]]
    assert text.count('<img src="data:image/png;base64,') >= min(len(wrong), 12) > 0
    assert "(image not here)" not in text


def test_user_text_is_escaped(report):
    text = report["text"]
    assert "tiny &lt;b&gt;run&lt;/b&gt; &amp; &quot;co&quot;" in text and HOSTILE_NAME not in text
    assert "&lt;script&gt;alert(&quot;intended&quot;)&lt;/script&gt;<br>Sorting three" in text
    assert "<script>alert" not in text
    assert "Not stated." in text  # the empty limitations


def test_every_section_is_there(report, trained_run):
    text = report["text"]
    for heading in ("Model card", "Dataset", "Settings", "Training curves", "Test results", "Likely label errors"):
        assert f"<h2>{heading}</h2>" in text
    for name in trained_run["run"].class_names:
        assert f"<td>{name}</td>" in text
    assert "<th>learning_rate</th>" in text and "<th>batch_size</th>" in text
    assert "Computed for this report" in text
    # The export's check and the cached benchmark.
    assert "<td>dynamic</td>" in text and "<td>tflite-int8</td>" in text
    # No server path of the dataset or the run.
    assert str(trained_run["data_dir"]) not in text and str(report["base"]) not in text


def test_cli_writes_the_report_and_refuses_bad_input(report, trained_run, tmp_path, monkeypatch, capsys):
    run = report["run"]
    monkeypatch.setenv("CNNLAB_MODELS_DIR", str(run.path.parent))
    monkeypatch.setenv("CNNLAB_CACHE_DIR", str(trained_run["cache"]))
    out = tmp_path / "card.html"
    args = ["report", run.id, "--out", str(out), "--limitations", "Only <32 px> shapes", "--json"]
    assert main(args) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["report"] == str(out) and result["bytes"] == out.stat().st_size
    assert "Only &lt;32 px&gt; shapes" in out.read_text(encoding="utf-8")
    assert main(["report", run.id, "--out", str(tmp_path / "card.pdf")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        len(err) == 1
        and err[0].startswith("error: ")
        and err[0].endswith(f"Received: out={str(tmp_path / 'card.pdf')!r}")
    )
    assert not (tmp_path / "card.pdf").exists()


def test_opens_offline_in_chromium_with_its_charts(report):
    from e2e_server import find_chromium, launch_chromium

    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _cannot_run("the Python package 'playwright' is not installed (pip install -r requirements-dev.txt).")
    if find_chromium() is None:
        _cannot_run("no Chromium found (apt-get install chromium); the report was not opened in a browser.")
    errors, requests = [], []
    with sync_playwright() as p:
        browser = launch_chromium(p)
        context = browser.new_context(offline=True, viewport={"width": 1200, "height": 1600})
        page = context.new_page()
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("request", lambda r: requests.append(r.url))
        page.goto(report["path"].as_uri())
        page.wait_for_selector(".plotly .main-svg", timeout=30_000)
        page.wait_for_function("document.querySelectorAll('.js-plotly-plot').length === 3", timeout=30_000)
        num_svgs = page.locator(".js-plotly-plot .main-svg").count()
        heatmap = page.locator(".js-plotly-plot .heatmaplayer image, .js-plotly-plot .heatmaplayer path").count()
        images = page.evaluate("[...document.images].map((i) => i.complete && i.naturalWidth > 0)")
        browser.close()
    assert errors == []
    assert num_svgs >= 3 and heatmap >= 1
    assert images and all(images)
    # Nothing but the file itself (and its data URIs) was asked for.
    assert all(url.startswith(("file://", "data:")) for url in requests), requests


def _cannot_run(reason: str) -> None:
    reason = f"BROWSER TEST NOT RUN: {reason}"
    if os.environ.get("CNNLAB_REQUIRE_BROWSER", "").strip() == "1":
        pytest.fail(f"{reason} (CNNLAB_REQUIRE_BROWSER=1 requires it)")
    pytest.skip(reason)


def test_a_run_whose_images_are_gone_still_gets_its_report(trained_run, tmp_path):
    run_dir = tmp_path / "models" / trained_run["run"].id
    shutil.copytree(trained_run["run"].path, run_dir)
    record = json.loads((run_dir / "run.json").read_text())
    record["dataset"]["path"] = str(tmp_path / "gone")
    (run_dir / "run.json").write_text(json.dumps(record))
    run = RunStore(tmp_path / "models").get(run_dir.name)
    text = write_report(run, tmp_path / "r.html", cache=trained_run["cache"]).read_text(encoding="utf-8")
    assert "(image not here)" in text and '<img src="data:image' not in text
    assert 'Likely label errors</h2><p class="muted">Not computed: the run\'s images could not be opened' in text
    assert str(tmp_path) not in text  # no folder of this machine
    assert text.count('class="plotly-graph-div"') == 3
