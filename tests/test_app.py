"""Every page of the Streamlit app, driven with streamlit.testing.v1.AppTest (no browser)."""

import io
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import digits, image_bytes, mnist_npz, publish
from PIL import Image
from streamlit.testing.v1 import AppTest

from cnnlab.runs import RunStore
from cnnlab.sample import SAMPLE_CLASSES
from tests.e2e_server import free_port

APP = str(Path(__file__).resolve().parent.parent / "streamlit_app.py")
PAGES = [
    "pages/home.py",
    "pages/data.py",
    "pages/train.py",
    "pages/evaluate.py",
    "pages/predict.py",
    "pages/runs.py",
    "pages/sweep.py",
]
TIMEOUT = 180


@pytest.fixture
def app(app_cache, isolated_dirs, monkeypatch):
    """A fresh session of the whole app (navigation included) with an empty run store."""
    monkeypatch.setenv("CNNLAB_CACHE_DIR", str(app_cache))
    monkeypatch.setenv("CNNLAB_MODELS_DIR", str(isolated_dirs[1]))
    return start_app()


def start_app() -> AppTest:
    """A new browser session of the whole app, run once."""
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def open_page(at: AppTest, page: str) -> AppTest:
    at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def wait_for_job(at: AppTest, key: str, timeout: float = TIMEOUT):
    job = at.session_state[key]
    deadline = time.monotonic() + timeout
    while not job.done and time.monotonic() < deadline:
        time.sleep(0.2)
    assert job.done, f"job still {job.status} after {timeout}s"
    return job


def tiny_training(at: AppTest, epochs: int) -> None:
    at.sidebar.select_slider(key="image_size").set_value(32)
    at.sidebar.slider(key="conv_blocks").set_value(1)
    at.sidebar.select_slider(key="filters").set_value(8)
    at.sidebar.select_slider(key="dense_units").set_value(16)
    at.sidebar.number_input(key="epochs").set_value(epochs)
    at.sidebar.number_input(key="patience").set_value(0)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    next(b for b in at.button if b.label == "Start training").click().run()


def test_the_home_page_renders_without_importing_tensorflow(app_cache, tmp_path):
    """The first page must be fast: a fresh process renders it without loading TensorFlow."""
    code = (
        "import sys; from streamlit.testing.v1 import AppTest; "
        f"at = AppTest.from_file({APP!r}, default_timeout=60).run(); "
        "assert not at.exception, [e.value for e in at.exception]; "
        "print(at.title[0].value, sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))"
    )
    env = {**os.environ, "CNNLAB_CACHE_DIR": str(app_cache), "CNNLAB_MODELS_DIR": str(tmp_path / "models")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "CNN Lab []"


@pytest.mark.parametrize("source", ["environment", "secrets"])
def test_a_bad_setting_is_one_line_on_the_page(source, app_cache, tmp_path, monkeypatch):
    monkeypatch.setenv("CNNLAB_CACHE_DIR", str(app_cache))
    monkeypatch.setenv("CNNLAB_MODELS_DIR", str(tmp_path / "models"))
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    if source == "secrets":  # a secret wins over the environment
        at.secrets["CNNLAB_MODELS_DIR"] = "~nosuchuser/x"
    else:
        monkeypatch.setenv("CNNLAB_MODELS_DIR", "~nosuchuser/x")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert len(at.error) == 1 and at.error[0].value.endswith("Received: CNNLAB_MODELS_DIR='~nosuchuser/x'")
    assert "names no user on this machine" in at.error[0].value


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_on_a_fresh_session(app, page):
    at = open_page(app, page)
    assert at.title[0].value == {"pages/home.py": "CNN Lab"}.get(page, Path(page).stem.capitalize())


def test_data_page_shows_the_sample_with_counts_and_a_labelled_grid(app):
    at = open_page(app, "pages/data.py")
    assert at.subheader[0].value == "Built-in sample (shapes)"
    metrics = {m.label: m.value for m in at.metric}
    assert int(metrics["Classes"]) == len(SAMPLE_CLASSES)
    assert int(metrics["Images"]) > 1000
    captions = [caption for image in at.image for caption in image.captions]
    assert len(captions) == 24 and set(captions) <= set(SAMPLE_CLASSES) and len(set(captions)) > 1


def test_the_data_grid_shows_16_bit_images(app, tmp_path):
    from cnnlab_ui.state import DatasetChoice

    for name, level in (("dark", 8000), ("bright", 60000)):
        (tmp_path / "deep" / name).mkdir(parents=True)
        for i in range(4):
            pixels = np.full((12, 16), level + 100 * i, np.uint16)
            Image.fromarray(pixels).save(tmp_path / "deep" / name / f"{i}.png")
    app.session_state["dataset"] = DatasetChoice(str(tmp_path / "deep"), "16-bit")
    at = open_page(app, "pages/data.py")
    captions = [caption for image in at.image for caption in image.captions]
    assert sorted(captions) == ["bright"] * 4 + ["dark"] * 4


def test_evaluate_says_which_images_are_gone_instead_of_failing(app, trained_run, tmp_path, monkeypatch):
    run_dir = tmp_path / "models" / trained_run["run"].id
    shutil.copytree(trained_run["run"].path, run_dir)
    saved = json.loads((run_dir / "evaluation.json").read_text())
    first = saved["predictions"][0]  # make one test image a mistake, so the page shows its thumbnail
    first["predicted_label"] = next(c for c in saved["class_names"] if c != first["true_label"])
    first["correct"] = False
    (run_dir / "evaluation.json").write_text(json.dumps(saved))
    record = json.loads((run_dir / "run.json").read_text())
    record["dataset"]["path"] = str(tmp_path / "moved-away")
    (run_dir / "run.json").write_text(json.dumps(record))
    monkeypatch.setenv("CNNLAB_MODELS_DIR", str(tmp_path / "models"))
    at = open_page(app, "pages/evaluate.py")
    assert any(f"{first['path']} is missing or unreadable now" in c.value for c in at.caption)


def test_training_from_the_train_page_saves_a_run_then_predict_and_runs_use_it(app, isolated_dirs):
    at = open_page(app, "pages/train.py")
    tiny_training(at, epochs=2)
    job = wait_for_job(at, "job")
    assert job.status == "completed", job.error
    at.run()
    assert not at.exception
    assert any("completed after 2 epochs" in s.value for s in at.success)
    runs = RunStore(isolated_dirs[1], include_demo=False).list()
    assert len(runs) == 1 and len(runs[0].history) == 2 and runs[0].status == "completed"

    at = open_page(at, "pages/predict.py")
    sample = Path(at.session_state["dataset"].path) / "star"
    png = next(sample.iterdir()).read_bytes()
    at.file_uploader[0].set_value(
        [("star.png", png, "image/png"), ("notes.png", b"hello, not an image", "image/png")]
    ).run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("notes.png" in e.value and "not an image" in e.value for e in at.error)
    labels = [m.value for m in at.markdown if m.value.startswith("**star.png**")]
    assert labels and any(name in labels[0] for name in SAMPLE_CLASSES)

    at = open_page(at, "pages/runs.py")
    assert runs[0].id in at.dataframe[0].value["id"].tolist()

    at = open_page(at, "pages/evaluate.py")
    assert at.metric[0].label == "Test accuracy"


def test_a_training_that_ends_while_on_another_page_is_selected_there(app, isolated_dirs):
    at = open_page(app, "pages/train.py")
    tiny_training(at, epochs=2)
    at = open_page(at, "pages/predict.py")  # the user leaves before the model exists
    shown_while_training = at.selectbox[0].value
    job = wait_for_job(at, "job")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert shown_while_training != job.result.id
    assert at.selectbox[0].value == job.result.id


def test_stop_ends_training_as_a_stopped_run(app, isolated_dirs):
    at = open_page(app, "pages/train.py")
    tiny_training(at, epochs=60)
    job = at.session_state["job"]
    deadline = time.monotonic() + TIMEOUT
    while len(job.history) < 1 and time.monotonic() < deadline:
        time.sleep(0.2)
    at.run()
    next(b for b in at.button if b.label == "Stop").click().run()
    job = wait_for_job(at, "job", timeout=60)
    assert job.status == "stopped"
    run = RunStore(isolated_dirs[1], include_demo=False).list()[0]
    assert run.status == "stopped" and 1 <= len(run.history) < 60
    assert run.model_path.exists()


def test_predict_rejects_a_non_image_with_a_message(app, trained_run, monkeypatch):
    monkeypatch.setenv("CNNLAB_MODELS_DIR", str(trained_run["base"] / "models"))
    at = open_page(app, "pages/predict.py")
    at.file_uploader[0].set_value(("fake.png", b"definitely text", "image/png")).run()
    assert not at.exception
    assert len(at.error) == 1 and "fake.png" in at.error[0].value and "not an image" in at.error[0].value
    good = image_bytes(np.full((32, 32, 3), 200, np.uint8))
    at.file_uploader[0].set_value(("good.png", good, "image/png")).run()
    assert not at.error and any(m.value.startswith("**good.png**") for m in at.markdown)


def test_a_sweep_from_the_sweep_page_saves_tagged_runs(app, isolated_dirs):
    at = open_page(app, "pages/sweep.py")
    at.sidebar.number_input[0].set_value(2)  # trials
    at.sidebar.number_input[2].set_value(1)  # epochs per trial
    at.checkbox(key="use-filters").uncheck()
    at.checkbox(key="use-learning_rate").uncheck()
    at.checkbox(key="use-image_size").check()
    at.run()
    at.select_slider(key="range-conv_blocks").set_value((1, 2))
    at.multiselect(key="choices-image_size").set_value([32])
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    next(b for b in at.button if b.label == "Start sweep").click().run()
    job = wait_for_job(at, "sweep_job", timeout=300)
    assert job.status == "completed", job.error
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("Best trial" in s.value for s in at.success)
    runs = RunStore(isolated_dirs[1], include_demo=False).list()
    assert len(runs) == 2 and all(r.record["sweep"]["study"] == job.result.study for r in runs)
    at = open_page(at, "pages/runs.py")
    assert at.selectbox[0].options[1].startswith("Sweep:")


def test_a_one_class_zip_gets_a_message_and_the_dataset_stays(app, tmp_path):
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for i in range(3):
            zf.writestr(f"only/cat_{i}.png", image_bytes(np.full((16, 16, 3), 40 * i, np.uint8)))
    at = open_page(app, "pages/data.py")
    at.radio[0].set_value("Upload a zip").run()
    at.file_uploader[0].set_value(("one.zip", buf.getvalue(), "application/zip")).run()
    assert not at.exception, [e.value for e in at.exception]
    assert len(at.error) == 1 and "at least two classes" in at.error[0].value
    assert at.subheader[0].value == "Built-in sample (shapes)"
    assert not open_page(at, "pages/train.py").error


def download_from_data_page(at: AppTest, title: str) -> AppTest:
    # The app cache is shared by the session's app tests: start without an earlier test's download.
    shutil.rmtree(Path(os.environ["CNNLAB_CACHE_DIR"]) / "catalog", ignore_errors=True)
    at = open_page(at, "pages/data.py")
    at.radio[0].set_value("Download a dataset").run()
    at.selectbox[0].set_value("mnist").run()
    next(b for b in at.button if b.label == f"Download {title}").click().run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_a_dataset_download_offline_is_a_message_and_the_app_stays_usable(app, monkeypatch):
    # A mirror address nobody answers at, as when offline.
    monkeypatch.setenv("CNNLAB_DATASETS_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    at = download_from_data_page(app, "MNIST digits")
    assert len(at.error) == 1 and "no network connection" in at.error[0].value
    assert at.subheader[0].value == "Built-in sample (shapes)"
    assert not open_page(at, "pages/train.py").error


def test_a_downloaded_dataset_becomes_the_sessions_dataset(app, server, monkeypatch):
    base_url, www = server
    publish(monkeypatch, www, "mnist", [mnist_npz(*digits(per_class=3))])
    monkeypatch.setenv("CNNLAB_DATASETS_URL", base_url)
    at = download_from_data_page(app, "MNIST digits")
    assert not at.error
    assert at.subheader[0].value == "MNIST digits"
    assert "30" in at.metric[0].value  # images


def test_a_model_too_big_for_the_server_is_a_message(app):
    at = open_page(app, "pages/train.py")
    at.sidebar.select_slider(key="image_size").set_value(224)
    at.sidebar.slider(key="conv_blocks").set_value(1)
    at.sidebar.select_slider(key="filters").set_value(128)
    at.sidebar.select_slider(key="dense_units").set_value(512)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert len(at.error) == 1 and "weights, over the" in at.error[0].value
    assert not [b for b in at.button if b.label == "Start training"]


def test_a_sweep_stopped_before_any_trial_ends_says_so(app):
    at = open_page(app, "pages/sweep.py")
    at.sidebar.number_input[2].set_value(50)  # epochs per trial
    at.run()
    next(b for b in at.button if b.label == "Start sweep").click().run()
    job = at.session_state["sweep_job"]
    deadline = time.monotonic() + TIMEOUT
    while not job.history and time.monotonic() < deadline:
        time.sleep(0.2)
    job.stop()  # one epoch into the first of 50
    job = wait_for_job(at, "sweep_job")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert job.status == "stopped" and job.result.best_value is None
    assert any("No trial completed" in i.value for i in at.info)


def test_reruns_leave_the_keras_session_of_a_running_training_alone(app, monkeypatch):
    import keras

    calls = []
    monkeypatch.setattr(keras.backend, "clear_session", lambda *args, **kwargs: calls.append(args))
    at = open_page(app, "pages/train.py")  # builds the model summary, so Keras is loaded
    at.run()
    assert "keras" in sys.modules and calls == []


def backbone_training(at: AppTest, weights: str, fine_tune: bool) -> None:
    at.sidebar.selectbox(key="backbone").set_value("mobilenet_v3_small").run()
    assert not at.exception, [e.value for e in at.exception]
    at.sidebar.select_slider(key="backbone_image_size").set_value(32)
    at.sidebar.radio(key="weights_source").set_value(weights)
    at.sidebar.number_input(key="epochs").set_value(1)
    at.sidebar.number_input(key="patience").set_value(0)
    at.sidebar.number_input(key="fine_tune_layers").set_value(5 if fine_tune else 0)
    at.sidebar.number_input(key="fine_tune_epochs").set_value(1 if fine_tune else 0)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    next(b for b in at.button if b.label == "Start training").click().run()


def test_a_backbone_replaces_the_conv_block_widgets(app):
    at = open_page(app, "pages/train.py")
    assert at.sidebar.slider(key="conv_blocks")
    at.sidebar.selectbox(key="backbone").set_value("efficientnet_b0").run()
    assert not at.exception, [e.value for e in at.exception]
    keys = {w.key for w in at.sidebar.select_slider} | {w.key for w in at.sidebar.slider}
    assert "conv_blocks" not in keys and "filters" not in keys and "image_size" not in keys
    size = at.sidebar.select_slider(key="backbone_image_size")
    assert size.value == 224 and min(int(o) for o in size.options) == 32
    assert "224" in size.help and "32" in size.help
    assert at.sidebar.radio(key="weights_source").options == [
        "ImageNet (downloaded once)",
        "Random (no download)",
        "A weights file",
    ]
    # image, the nested backbone, pooling, dropout, dense, predictions
    assert at.expander[0].label.startswith("Model summary: 6 layers")


def test_imagenet_weights_offline_fail_on_the_train_page_with_one_line(app, isolated_dirs):
    at = open_page(app, "pages/train.py")
    backbone_training(at, "imagenet", fine_tune=False)
    job = wait_for_job(at, "job")
    at.run()
    assert job.status == "failed"
    assert len(at.error) == 1 and "Could not download the ImageNet weights" in at.error[0].value
    assert RunStore(isolated_dirs[1], include_demo=False).list() == []
    assert not isolated_dirs[1].exists() or not any(isolated_dirs[1].iterdir())


@pytest.mark.slow
def test_a_backbone_trains_its_head_then_fine_tunes_on_the_train_page(app):
    at = open_page(app, "pages/train.py")
    backbone_training(at, "none", fine_tune=True)
    job = wait_for_job(at, "job", timeout=2 * TIMEOUT)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert job.status == "completed", job.error
    assert [row["phase"] for row in job.result.history] == ["head", "fine_tune"]
    assert job.info["epochs"] == 2
