"""The command line: exit codes, one-line errors and the --json contract."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from e2e_server import free_port

from cnnlab.cli import main
from cnnlab.runs.store import RunStore
from helpers import TINY, digits, last_json, mnist_npz, one_line_error, publish, relocated_run, write_dataset

# What the generated `cnnlab` console script runs (`[project.scripts] cnnlab = "cnnlab.cli:main"`).
CONSOLE_SCRIPT = [sys.executable, "-c", "import sys; from cnnlab.cli import main; sys.exit(main())"]
ENTRY_POINTS = {"python -m cnnlab": [sys.executable, "-m", "cnnlab"], "cnnlab": CONSOLE_SCRIPT}


@pytest.fixture(autouse=True)
def cli_environment(isolated_dirs, monkeypatch):
    """The command line reads its settings from the environment: point it at this test's folders."""
    cache, models = isolated_dirs
    monkeypatch.setenv("CNNLAB_CACHE_DIR", str(cache))
    monkeypatch.setenv("CNNLAB_MODELS_DIR", str(models))


def test_scan_json_reports_classes_counts_and_skips(tmp_path, capsys):
    root = write_dataset(tmp_path / "data", per_class=5)
    (root / "cats" / "broken.jpg").write_bytes(b"this is not a jpeg")
    assert main(["scan", str(root), "--json"]) == 0
    report = last_json(capsys)
    assert report["classes"] == ["cats", "dogs", "owls"]
    assert report["counts"] == {"cats": 5, "dogs": 5, "owls": 5}
    assert report["skipped"] == [{"path": "cats/broken.jpg", "reason": report["skipped"][0]["reason"]}]
    assert "not an image" in report["skipped"][0]["reason"]


def test_train_evaluate_predict_and_runs_json(tmp_path, capsys):
    root = write_dataset(tmp_path / "data")
    assert main(["train", str(root), *TINY, "--name", "cli run", "--json"]) == 0
    result = last_json(capsys)
    assert result["epochs_run"] == 2 and result["status"] == "completed"
    for key in ("run_dir", "val_accuracy", "test_accuracy", "test_balanced_accuracy", "test_macro_f1"):
        assert result[key] is not None, key
    assert result["train_images_per_s"] is not None
    assert 0.0 <= result["test_accuracy"] <= 1.0

    assert main(["evaluate", "cli run", "--json"]) == 0
    evaluation = last_json(capsys)
    assert evaluation["accuracy"] == pytest.approx(result["test_accuracy"])
    assert len(evaluation["confusion"]) == 3

    good = root / "dogs" / "dogs_000.png"
    bad = tmp_path / "notes.png"
    bad.write_text("just text")
    assert main(["predict", result["run_dir"], str(good), str(bad), "--json"]) == 0
    predictions = last_json(capsys)["predictions"]
    assert predictions[0]["label"] in ("cats", "dogs", "owls")
    assert sum(predictions[0]["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
    assert "not an image" in predictions[1]["error"]

    assert main(["runs", "--json"]) == 0
    assert [r["name"] for r in last_json(capsys)["runs"] if r["id"] != "demo"] == ["cli run"]


def test_lr_find_json_prints_a_suggestion_inside_the_range(tmp_path, capsys):
    root = write_dataset(tmp_path / "data", per_class=10)
    argv = ["lr-find", str(root), *TINY, "--min-lr", "1e-5", "--max-lr", "0.5", "--steps", "20", "--json"]
    assert main(argv) == 0
    result = last_json(capsys)
    assert 1e-5 <= result["suggested_learning_rate"] <= 0.5
    assert len(result["learning_rates"]) == len(result["smoothed_losses"]) <= 20


def test_label_issues_json_writes_a_csv_and_moves_nothing(trained_run, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CNNLAB_MODELS_DIR", str(trained_run["base"] / "models"))
    monkeypatch.setenv("CNNLAB_CACHE_DIR", str(trained_run["base"] / "cache"))
    before = sorted(trained_run["data_dir"].rglob("*"))
    target = tmp_path / "issues.csv"
    assert main(["label-issues", trained_run["run"].id, "--csv", str(target), "--json"]) == 0
    result = last_json(capsys)
    assert result["csv"] == str(target) and result["num_issues"] == len(result["issues"])
    header = target.read_text().splitlines()[0]
    assert header == "path,split,given_label,suggested_label,given_label_probability,suggested_probability"
    assert sorted(trained_run["data_dir"].rglob("*")) == before


def test_label_issues_cross_validate_json_checks_every_image(trained_run, tmp_path, capsys, monkeypatch):
    models = tmp_path / "models"
    run_dir = relocated_run(trained_run["run"], tmp_path / "data", models)  # the pass saves into the run folder
    monkeypatch.setenv("CNNLAB_MODELS_DIR", str(models))
    monkeypatch.setenv("CNNLAB_CACHE_DIR", str(tmp_path / "cache"))
    before = sorted((tmp_path / "data").rglob("*"))
    argv = ["label-issues", run_dir.name, "--cross-validate", "2", "--epochs", "1", "--json"]
    assert main(argv) == 0
    result = last_json(capsys)
    assert (result["source"], result["status"], result["folds"], result["epochs"]) == (
        "cross_validated",
        "completed",
        2,
        1,
    )
    assert result["num_images"] == sum(len(part) for part in trained_run["run"].split().values())
    assert result["csv"] == str(run_dir / "label_issues_cv.csv") and result["num_issues"] == len(result["issues"])
    rows = Path(result["csv"]).read_text().splitlines()
    assert rows[0] == "path,split,given_label,suggested_label,given_label_probability,suggested_probability"
    assert len(rows) == 1 + result["num_issues"]
    assert json.loads((run_dir / "label_issues_cv.json").read_text())["issues"] == result["issues"]
    assert sorted((tmp_path / "data").rglob("*")) == before

    assert main(["label-issues", run_dir.name, "--cross-validate", "1"]) == 2
    assert one_line_error(capsys).endswith("Received: folds=1")
    assert main(["label-issues", run_dir.name, "--epochs", "3"]) == 2
    assert one_line_error(capsys).endswith("add --cross-validate K or leave it out. Received: epochs=3")


def test_train_into_a_chosen_run_folder_once(tmp_path, capsys):
    root = write_dataset(tmp_path / "data", per_class=8)
    target = tmp_path / "elsewhere" / "my-run"
    assert main(["train", str(root), *TINY, "--run-dir", str(target), "--json"]) == 0
    assert last_json(capsys)["run_dir"] == str(target) and (target / "model.keras").exists()
    assert main(["train", str(root), *TINY, "--run-dir", str(target)]) == 2
    assert "must be a new folder name" in one_line_error(capsys)


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["scan", "/no/such/folder"], "Dataset folder not found"),
        (["train", "/no/such/folder"], "Dataset folder not found"),
        (["train", "--dropout", "5"], "dropout must be a float from 0.0 to 0.9"),
        (["train", "--epochs", "many"], "invalid int value"),
        (["train", "--optimizer", "adamw"], "invalid choice"),
        (["evaluate", "no-such-run"], "No run found"),
        (["frobnicate"], "invalid choice"),
        (["scan", "~nosuchuser-cnnlab/data"], "names no user on this machine"),
        (["download", "mnist", "--base-url", "notaurl"], "check the address"),
    ],
)
def test_bad_input_exits_2_with_one_line(argv, expected, capsys):
    assert main(argv) == 2
    assert expected in one_line_error(capsys)


def test_a_usage_error_names_what_was_received(capsys):
    assert main(["train", "--epochs", "many"]) == 2
    assert one_line_error(capsys).endswith("Received: args='train --epochs many'")


def test_json_has_no_nan_when_there_is_no_test_split(tmp_path, capsys):
    root = write_dataset(tmp_path / "data", per_class=8)
    assert main(["train", str(root), *TINY, "--test-split", "0", "--json"]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert "NaN" not in line and json.loads(line)["test_accuracy"] is None


def test_a_missing_file_is_one_line_not_a_traceback(trained_run, tmp_path, capsys):
    broken = tmp_path / "broken-run"
    shutil.copytree(trained_run["run"].path, broken)
    (broken / "evaluation.json").unlink()
    (broken / "split.json").unlink()  # as if deleted by hand
    assert main(["evaluate", str(broken)]) == 2
    line = one_line_error(capsys)
    assert "No such file or directory" in line and "split.json" in line


def test_one_class_is_a_clear_error(tmp_path, capsys):
    root = write_dataset(tmp_path / "data", classes=("cats",), per_class=3)
    assert main(["scan", str(root)]) == 2
    assert "at least two classes" in one_line_error(capsys)


def test_predict_unreadable_image_only_exits_2(trained_run, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CNNLAB_MODELS_DIR", str(trained_run["base"] / "models"))
    bad = tmp_path / "fake.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    assert main(["predict", trained_run["run"].id, str(bad)]) == 2
    assert "fake.png" in one_line_error(capsys)


def test_download_fetches_converts_and_prints_the_folder(server, monkeypatch, tmp_path, capsys):
    base_url, www = server
    publish(monkeypatch, www, "mnist", [mnist_npz(*digits(per_class=2))])
    assert main(["download", "mnist", "--cache", str(tmp_path / "cache"), "--base-url", base_url, "--json"]) == 0
    result = last_json(capsys)
    assert result["name"] == "mnist"
    assert main(["scan", result["data_dir"], "--json"]) == 0
    assert last_json(capsys)["counts"] == {str(d): 2 for d in range(10)}


def test_download_uses_the_configured_mirror(server, monkeypatch, tmp_path, capsys):
    base_url, www = server
    publish(monkeypatch, www, "mnist", [mnist_npz(*digits(per_class=2))])
    monkeypatch.setenv("CNNLAB_DATASETS_URL", base_url)
    assert main(["download", "mnist", "--cache", str(tmp_path / "cache"), "--json"]) == 0
    assert last_json(capsys)["name"] == "mnist"


def test_download_offline_exits_2_with_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    offline = f"http://127.0.0.1:{free_port()}"  # nobody listens there
    assert main(["download", "cifar10", "--cache", str(tmp_path), "--base-url", offline]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1
    assert captured.err.startswith("error: Could not download CIFAR-10") and "no network connection" in captured.err


def test_python_m_cnnlab_runs_as_a_program(tmp_path):
    """The real entry point: exit status 2 and one line on stderr, no traceback."""
    done = subprocess.run(
        [sys.executable, "-m", "cnnlab", "scan", str(tmp_path / "missing"), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert (
        done.stderr.strip().startswith("error: Dataset folder not found") and len(done.stderr.strip().splitlines()) == 1
    )


@pytest.mark.slow
def test_a_program_that_loads_tensorflow_still_errs_in_one_line(trained_run, tmp_path):
    """TensorFlow's C++ start-up lines would otherwise come before the error on stderr."""
    bad = tmp_path / "fake.png"
    bad.write_text("not a picture")
    env = {**os.environ, "CNNLAB_MODELS_DIR": str(trained_run["base"] / "models")}
    done = subprocess.run(
        [sys.executable, "-m", "cnnlab", "predict", trained_run["run"].id, str(bad)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert done.returncode == 2
    assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1, done.stderr
    assert "fake.png" in done.stderr


@pytest.mark.parametrize("name", ["CNNLAB_MODELS_DIR", "CNNLAB_CACHE_DIR", "CNNLAB_DATA_ROOTS"])
def test_a_setting_naming_no_user_is_one_line_exit_2(name, tmp_path):
    env = {**os.environ, name: "~nosuchuser/x"}
    done = subprocess.run(
        [sys.executable, "-m", "cnnlab", "runs"], capture_output=True, text=True, timeout=120, env=env
    )
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.strip().endswith(f"Received: {name}='~nosuchuser/x'")


@pytest.mark.parametrize("entry", ENTRY_POINTS)
@pytest.mark.slow
def test_both_entry_points_keep_tensorflow_quiet(entry, trained_run, tmp_path):
    """The console script sets up the process like `python -m cnnlab`: TensorFlow's C++ log lines
    (a TFLite conversion prints a dozen) stay hidden whether or not the shell quiets them."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["CNNLAB_MODELS_DIR"] = str(trained_run["base"] / "models")
    out = tmp_path / "export"
    done = subprocess.run(
        [*ENTRY_POINTS[entry], "export", trained_run["run"].id, "--format", "tflite", "--out", str(out), "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1])["export_dir"] == str(out)
    assert not re.findall(r"^[IWE]\d{4} .*$", done.stderr, re.MULTILINE)


@pytest.mark.parametrize("fmt", ["keras", "savedmodel", "tflite"])
def test_export_json_round_trips_each_format(trained_run, tmp_path, capsys, monkeypatch, fmt):
    from cnnlab.deploy.export import read_export

    monkeypatch.setenv("CNNLAB_MODELS_DIR", str(trained_run["base"] / "models"))
    out = tmp_path / f"export-{fmt}"
    assert main(["export", trained_run["run"].id, "--format", fmt, "--out", str(out), "--json"]) == 0
    result = last_json(capsys)
    assert result["export_dir"] == str(out) and result["class_names"] == ["cats", "dogs", "owls"]
    assert result["max_abs_diff"] <= 1e-4
    assert read_export(out)["format"] == fmt
    assert main(["export", trained_run["run"].id, "--format", fmt, "--out", str(out)]) == 2
    one_line_error(capsys)


def test_train_says_and_records_the_device_and_precision(tmp_path, capsys):
    root = write_dataset(tmp_path / "data", per_class=6)
    assert main(["train", str(root), *TINY, "--precision", "mixed_bfloat16", "--json"]) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out.strip().splitlines()[-1])
    assert result["precision"] == "mixed_bfloat16" and result["device"].startswith(("CPU: ", "GPU: "))
    assert f"Training on {result['device']} in mixed_bfloat16 (chosen" in captured.err
    assert (result["devices"], result["strategy"], result["per_device_batch"]) == (["/CPU:0"], "default", 8)
    assert "Devices: 1 device (/CPU:0), no distribution strategy, 8 images per batch" in captured.err
    assert re.search(
        r"^Model summary: \d+ layers, [\d,]+ parameters, about [\d,]+ MB per training step$", captured.err, re.M
    )
    run_dir = Path(result["run_dir"])
    assert RunStore(run_dir.parent).get(run_dir.name).record.precision.policy == "mixed_bfloat16"
    assert main(["train", str(root), "--precision", "half"]) == 2
    assert "invalid choice: 'half'" in capsys.readouterr().err


def test_evaluate_warns_how_many_test_images_are_missing(trained_run, tmp_path, capsys):
    run_dir = relocated_run(trained_run["run"], tmp_path / "data", tmp_path / "models")
    (run_dir / "evaluation.json").unlink()
    test_files = json.loads((run_dir / "split.json").read_text())["test"]
    (tmp_path / "data" / test_files[0]).unlink()
    assert main(["evaluate", str(run_dir)]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("test accuracy ")
    assert captured.err.startswith(f"warning: 1 of {len(test_files)} test images are missing")


def test_a_damaged_model_is_one_line_saying_it_is_unreadable(trained_run, tmp_path, capsys):
    run_dir = tmp_path / "damaged"
    shutil.copytree(trained_run["run"].path, run_dir)
    (run_dir / "evaluation.json").unlink()
    (run_dir / "model.keras").write_bytes(b"garbage")
    assert main(["evaluate", str(run_dir)]) == 2
    assert "model file of run 'shared tiny run' is unreadable" in one_line_error(capsys)


def test_inspect_writes_feature_map_and_filter_pngs(trained_run, tmp_path, capsys, monkeypatch):
    from PIL import Image

    monkeypatch.setenv("CNNLAB_MODELS_DIR", str(trained_run["base"] / "models"))
    image = next((trained_run["data_dir"] / "dogs").iterdir())
    out = tmp_path / "inspect"
    assert main(["inspect", trained_run["run"].id, str(image), "--out", str(out), "--json"]) == 0
    result = last_json(capsys)
    names = ["input.png", "conv_1-feature-maps.png", "conv_1-filters.png", "relu_1-feature-maps.png"]
    names.append("pool_1-feature-maps.png")
    assert [os.path.basename(f) for f in result["files"]] == names
    assert sorted(p.name for p in out.iterdir()) == sorted(names)
    assert [(layer["name"], layer["output_shape"]) for layer in result["layers"]] == [
        ("conv_1", [32, 32, 4]),
        ("relu_1", [32, 32, 4]),
        ("pool_1", [16, 16, 4]),
    ]
    maps = np.asarray(Image.open(out / "pool_1-feature-maps.png"))
    assert maps.shape == (2 * 32 + 2, 2 * 32 + 2)  # 4 channels of 16x16 enlarged 2x, in a 2x2 grid
    assert (
        main(["inspect", trained_run["run"].id, str(image), "--layer", "conv_1", "--out", str(tmp_path / "one")]) == 0
    )
    printed = capsys.readouterr().out
    assert "Wrote 3 PNG files" in printed and "conv_1-filters.png" in printed
    assert main(["inspect", trained_run["run"].id, str(image), "--layer", "dense", "--out", str(out)]) == 2
    assert "Received: layer='dense'" in one_line_error(capsys)
