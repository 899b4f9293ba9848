"""`cnnlab explain`: heatmap and overlay PNGs per method, the randomisation check, and one-line refusals."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from cnnlab.analysis.saliency import METHODS, NOTES
from cnnlab.cli import main
from helpers import last_json, one_line_error


@pytest.fixture
def run_dir(trained_run, monkeypatch) -> str:
    """The shared tiny run's models folder as the command line's, and the run's id."""
    monkeypatch.setenv("CNNLAB_MODELS_DIR", str(trained_run["base"] / "models"))
    monkeypatch.setenv("CNNLAB_CACHE_DIR", str(trained_run["cache"]))
    return trained_run["run"].id


@pytest.fixture
def image(trained_run):
    return next((trained_run["data_dir"] / "dogs").iterdir())


def test_explain_all_writes_each_methods_pngs_and_says_what_each_measures(run_dir, image, tmp_path, capsys):
    out = tmp_path / "maps"
    assert main(["explain", run_dir, str(image), "--method", "all", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert all(NOTES[m] in printed for m in METHODS) and "explained class" in printed
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"{image.stem}_{m}_{kind}.png" for m in METHODS for kind in ("heatmap", "overlay")
    )
    with Image.open(out / f"{image.stem}_occlusion_overlay.png") as png:
        assert png.size == (32, 32) and png.mode == "RGB"


def test_explain_json_with_a_chosen_class_and_the_sanity_check(run_dir, image, tmp_path, capsys):
    args = ["explain", "--json", run_dir, str(image), "--method", "smoothgrad", "--method", "gradcam"]
    assert main([*args, "--class", "owls", "--out", str(tmp_path), "--sanity"]) == 0
    result = last_json(capsys)
    assert result["class"] == "owls"
    assert [e["method"] for e in result["explanations"]] == ["gradcam", "smoothgrad"]
    assert all((tmp_path / e["overlay"]).is_file() and e["note"] for e in result["explanations"])
    steps = result["sanity"]["steps"]
    assert steps and all(set(step["correlations"]) == {"gradcam", "smoothgrad"} for step in steps)
    assert all(-1.0 <= c <= 1.0 for step in steps for c in step["correlations"].values())
    assert set(result["sanity"]["verdicts"]) == {"gradcam", "smoothgrad"}


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        (["--method", "lime"], "invalid choice: 'lime'"),
        (["--class", "zebras"], "Received: class_name='zebras'"),
    ],
)
def test_bad_method_or_class_is_one_error_line_and_status_2(run_dir, image, tmp_path, capsys, extra, says):
    assert main(["explain", run_dir, str(image), *extra, "--out", str(tmp_path / "maps")]) == 2
    line = one_line_error(capsys)
    assert line.startswith("error: ") and says in line and "Received: " in line
    assert not (tmp_path / "maps").exists()


def test_a_missing_or_unreadable_image_is_one_error_line(run_dir, tmp_path, capsys):
    assert main(["explain", run_dir, str(tmp_path / "nope.png"), "--out", str(tmp_path)]) == 2
    assert one_line_error(capsys).endswith(f"Received: image={str(tmp_path / 'nope.png')!r}")
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    assert main(["explain", run_dir, str(text), "--out", str(tmp_path)]) == 2
    assert one_line_error(capsys).startswith("error: ")


def test_explain_leaves_the_runs_model_untouched(run_dir, image, trained_run, tmp_path, capsys):
    before = trained_run["run"].model_path.read_bytes()
    assert (
        main(["explain", run_dir, str(image), "--method", "integrated_gradients", "--out", str(tmp_path), "--sanity"])
        == 0
    )
    assert trained_run["run"].model_path.read_bytes() == before
    assert np.isfinite(last_line_number(capsys.readouterr().out))


def last_line_number(printed: str) -> float:
    """The last rank correlation printed by the sanity check."""
    return float(
        next(line for line in reversed(printed.splitlines()) if "rank correlation by step" in line).split()[-1]
    )
