"""A run's one-file report: a self-contained HTML model card that opens offline.

Everything is inside the file: Plotly's JavaScript once in the head (each figure then refers to
it), the images as base64 PNG data URIs, no address outside the file. Every piece of text that a
person or a folder chose (run name, class names, file names, settings, intended use,
limitations) is HTML-escaped. The figures are the app's own (`cnnlab.charts`), the metrics the
run's test evaluation (`cnnlab.analysis.evaluate_run`, saved at the end of training).
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from cnnlab.common.files import atomic_write

NUM_THUMBNAILS = 12
THUMBNAIL_SIDE = 96
# Label-issue tables the CLI keeps beside a run, the cross-validated one (a stronger check) first.
LABEL_ISSUE_FILES = ("label_issues_cv.csv", "label_issues.csv")

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; color: #222; padding: 0 1rem; }
h1 { margin-bottom: 0.2rem; } h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2rem; margin-top: 2rem; }
table { border-collapse: collapse; margin: 0.5rem 0; font-size: 0.9rem; }
th, td { border: 1px solid #ddd; padding: 0.25rem 0.5rem; text-align: left; }
th { background: #f4f4f4; } .muted { color: #666; } .card { background: #f8f8f8; padding: 0.5rem 1rem; }
.thumbs { display: flex; flex-wrap: wrap; gap: 0.75rem; } .thumbs figure { margin: 0; width: 120px; }
.thumbs img { width: 96px; height: 96px; object-fit: contain; image-rendering: pixelated; border: 1px solid #ccc; }
.thumbs figcaption { font-size: 0.75rem; word-break: break-all; }
"""


def write_report(
    run, out: Path, *, cache: Path, intended_use: str = "", limitations: str = "", max_cache_mb: int | None = None
) -> Path:
    """Write `report_html` to `out` (atomically, its folder made if need be) and return `out`."""
    out = Path(out)
    if out.suffix.lower() not in (".html", ".htm"):
        raise ValueError(f"The report is an HTML file; give a path ending in .html. Received: out={str(out)!r}")
    text = report_html(run, cache=cache, intended_use=intended_use, limitations=limitations, max_cache_mb=max_cache_mb)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(out) as fh:
        fh.write(text)
    return out


def report_html(
    run, *, cache: Path, intended_use: str = "", limitations: str = "", max_cache_mb: int | None = None
) -> str:
    """The whole report of `run` as one HTML document.

    It holds the model card (`intended_use` and `limitations`, as given; "Not stated" when empty),
    the dataset (class counts, version, skipped files and why), every setting, the training
    curves, the test results (confusion matrix, per-class metrics, most confident mistakes as
    thumbnails), likely label errors (the table the CLI saved beside the run, else computed now
    from one pass over the validation and test images; the report says which), the export checks
    and the cached benchmark. Images show only where the run's dataset is on this machine.
    """
    import plotly.offline

    from cnnlab.analysis.evaluate import evaluate_run

    for name, value in (("intended_use", intended_use), ("limitations", limitations)):
        if not isinstance(value, str):
            raise ValueError(f"{name} must be text (it may be empty). Received: {name}={value!r}")
    evaluation = evaluate_run(run, cache=cache, max_cache_mb=max_cache_mb)
    sections = [
        _summary(run, evaluation),
        _model_card(evaluation, intended_use, limitations),
        _dataset(run),
        _settings(run),
        _curves(run),
        _test_results(run, evaluation, cache),
        _label_issues(run, cache),
        _exports(run, cache),
    ]
    title = f"Model report: {run.name}"
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{_esc(title)}</title><style>{_STYLE}</style>"
        f'<script type="text/javascript">{plotly.offline.get_plotlyjs()}</script></head>\n<body>\n'
        f"<h1>{_esc(title)}</h1>\n" + "\n".join(sections) + f'\n<p class="muted">Written by CNN Lab on '
        f"{datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}.</p>\n</body></html>\n"
    )


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _figure(fig) -> str:
    import plotly.io as pio

    # The library itself is in the head, once; each figure carries only its data.
    return pio.to_html(fig, include_plotlyjs=False, full_html=False, config={"displaylogo": False})


def _table(frame: pd.DataFrame, float_format: str = "{:.3f}") -> str:
    if frame.empty:
        return '<p class="muted">None.</p>'
    return frame.to_html(index=False, escape=True, border=0, na_rep="", float_format=float_format.format)


def _pairs(pairs: Mapping[str, Any]) -> str:
    rows = "".join(f"<tr><th>{_esc(k)}</th><td>{_esc(_plain(v))}</td></tr>" for k, v in pairs.items())
    return f"<table>{rows}</table>"


def _plain(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(_plain(v) for v in value)
    return "" if value is None else str(value)


def _paragraphs(text: str) -> str:
    text = text.strip()
    if not text:
        return '<p class="muted">Not stated.</p>'
    return "".join(f"<p>{_esc(part).replace(chr(10), '<br>')}</p>" for part in text.split("\n\n"))


def _summary(run, evaluation) -> str:
    metrics = {
        "run id": run.id,
        "created": run.record.created,
        "status": run.status,
        "classes": list(evaluation.class_names),
        "test images": len(evaluation.predictions),
        "test accuracy": evaluation.accuracy,
        "balanced accuracy": evaluation.balanced_accuracy,
        "macro F1": evaluation.macro_f1,
        "test loss": evaluation.loss,
    }
    if evaluation.roc_auc is not None:
        metrics["ROC AUC"] = evaluation.roc_auc
    if run.record.duration_s is not None:
        metrics["training time (s)"] = run.record.duration_s
    return _pairs(metrics)


def _model_card(evaluation, intended_use: str, limitations: str) -> str:
    caveats = list(evaluation.warnings)
    if evaluation.num_leaked_test_images:
        caveats.append(
            f"{evaluation.num_leaked_test_images} test images are copies of training images; without them the "
            f"test accuracy is {evaluation.accuracy_without_leaks:.1%}."
        )
    found = "".join(f"<li>{_esc(c)}</li>" for c in caveats) or "<li>None found.</li>"
    return (
        '<h2>Model card</h2><div class="card"><h3>Intended use</h3>'
        + _paragraphs(intended_use)
        + "<h3>Limitations</h3>"
        + _paragraphs(limitations)
        + f"<h3>Caveats found by CNN Lab</h3><ul>{found}</ul></div>"
    )


def _dataset(run) -> str:
    from cnnlab import charts

    info = run.record.dataset
    facts = {
        "dataset": info.name or (Path(info.path).name if info.path else "") or info.builtin or "unknown",
        "version": info.version if info.version is not None else "not recorded (an unversioned folder)",
        "images": info.num_images,
        "fingerprint": info.fingerprint,
        "skipped files": info.num_unreadable,
    }
    parts = ["<h2>Dataset</h2>", _pairs(facts)]
    if info.counts:
        counts = pd.DataFrame({"class": list(info.counts), "images": list(info.counts.values())})
        parts += [_figure(charts.class_counts_figure(dict(info.counts))), _table(counts)]
    if info.num_unreadable:
        skipped = pd.DataFrame([{"file": s.path, "reason": s.reason} for s in info.unreadable])
        more = info.num_unreadable - len(info.unreadable)
        parts += ["<h3>Skipped files</h3>", _table(skipped)]
        if more > 0:
            parts.append(f'<p class="muted">and {more} more not recorded.</p>')
    split = {part: len(paths) for part, paths in run.split().items()}
    parts.append("<h3>Split</h3>" + _pairs(split))
    return "".join(parts)


def _settings(run) -> str:
    return (
        "<h2>Settings</h2><h3>Model</h3>"
        + _pairs(dict(run.record.model_config))
        + "<h3>Training</h3>"
        + _pairs(dict(run.record.train_config))
    )


def _curves(run) -> str:
    from cnnlab import charts

    history = run.epoch_rows()
    if not history:
        return '<h2>Training curves</h2><p class="muted">No epochs recorded.</p>'
    return "<h2>Training curves</h2>" + _figure(charts.training_curves_figure(history))


def _test_results(run, evaluation, cache: Path) -> str:
    from cnnlab import charts
    from cnnlab.analysis.evaluate import mistake_captions

    parts = ["<h2>Test results</h2>"]
    if evaluation.predictions.empty:
        return parts[0] + '<p class="muted">This run has no test images.</p>'
    confusion = charts.confusion_figure(evaluation.confusion, list(evaluation.class_names))
    confusion.layout.title.text = "Confusion matrix"  # the app's title invites clicks that a report does not answer
    parts.append(_figure(confusion))
    parts += ["<h3>Per class</h3>", _table(evaluation.per_class)]
    parts += ["<h3>Most frequent confusions</h3>", _table(evaluation.top_confusions())]
    mistakes = evaluation.most_confident_mistakes(NUM_THUMBNAILS)
    captions = mistake_captions(mistakes)
    parts += ["<h3>Most confident mistakes</h3>", _thumbnails(run, list(mistakes["path"]), captions, cache)]
    return "".join(parts)


def _label_issues(run, cache: Path) -> str:
    head = "<h2>Likely label errors</h2>"
    for name in LABEL_ISSUE_FILES:
        if (run.path / name).is_file():
            table = pd.read_csv(run.path / name)
            source = f"From {name}, saved beside the run by `cnnlab label-issues`."
            break
    else:
        from cnnlab.analysis.label_issues import run_label_issues

        try:
            table = run_label_issues(run, cache=cache)
        except (ValueError, OSError):
            # The error names a folder on this machine, which a hosted visitor's report must not show.
            return head + (
                '<p class="muted">Not computed: the run\'s images could not be opened on this machine (its dataset '
                "folder is missing, or its classes changed).</p>"
            )
        source = "Computed for this report: the model's predictions on its validation and test images, by confident learning."
    shown = table.head(NUM_THUMBNAILS)
    captions = [f"{g} → {s}?" for g, s in zip(shown["given_label"], shown["suggested_label"], strict=True)]
    return (
        head
        + f'<p class="muted">{_esc(source)} {len(table)} found; the first {len(shown)} shown.</p>'
        + _thumbnails(run, list(shown["path"]), captions, cache)
        + _table(shown)
    )


def _exports(run, cache: Path) -> str:
    from cnnlab.deploy.benchmark import benchmark_table, cached_benchmark
    from cnnlab.deploy.export import EXPORT_FILE, exports_folder, read_export

    rows = []
    for folder in sorted(exports_folder(run, cache).glob(f"*/{EXPORT_FILE}")):
        manifest = read_export(folder.parent)
        quantization = manifest.get("quantization") or {}
        rows.append(
            {
                "export": folder.parent.name,
                "format": manifest["format"],
                "quantization": quantization.get("mode", "none"),
                "check images": manifest["num_check_images"],
                "max abs diff": manifest["max_abs_diff"],
                "tolerance": manifest["atol"],
                "top-1 agreement": quantization.get("top1_agreement"),
            }
        )
    parts = ["<h2>Exports</h2>"]
    if rows:
        parts += [
            "<p>Each export was loaded back and its predictions compared with the Keras model's.</p>",
            _table(pd.DataFrame(rows), "{:.3g}"),
        ]
    else:
        parts.append('<p class="muted">No exports yet (`cnnlab export`).</p>')
    benchmark = cached_benchmark(run, cache=cache)
    if benchmark is not None:
        parts += [
            f"<h3>Benchmark</h3><p>{benchmark['num_test_images']} test images; ms per image is the median of "
            f"{benchmark['repeats']} single-image calls ({_esc(benchmark['machine'])}).</p>",
            _table(benchmark_table(benchmark)),
        ]
    return "".join(parts)


def _thumbnails(run, paths: Sequence[str], captions: Sequence[str], cache: Path) -> str:
    if not paths:
        return '<p class="muted">None.</p>'
    figures = []
    for rel, caption in zip(paths, captions, strict=True):
        uri = _data_uri(run.image_path(rel, cache))
        picture = f'<img src="{uri}" alt="{_esc(rel)}">' if uri else '<p class="muted">(image not here)</p>'
        figures.append(f"<figure>{picture}<figcaption>{_esc(caption)}<br>{_esc(rel)}</figcaption></figure>")
    return f'<div class="thumbs">{"".join(figures)}</div>'


def _data_uri(path: Path) -> str | None:
    """A PNG thumbnail of the image as a data URI, or None when it cannot be read."""
    from cnnlab.data.images import ImageError, open_image

    try:
        image = open_image(path)
    except (ImageError, OSError):
        return None
    image.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
    buffer = io.BytesIO()
    image.convert("RGB" if image.mode not in ("L", "RGB") else image.mode).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
