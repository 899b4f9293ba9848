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
from e2e_server import free_port
from PIL import Image
from streamlit.testing.v1 import AppTest

from cnnlab.data.sample import SAMPLE_CLASSES
from cnnlab.runs.store import RunStore
from cnnlab.settings import DEMO_RUN_DIR
from helpers import (
    APP,
    APP_TIMEOUT,
    copied_models,
    digits,
    image_bytes,
    imagenet_unreachable,
    mnist_npz,
    open_page,
    publish,
    relocated_run,
    start_app,
    tiny_sweep,
    tiny_training,
    wait_for_epochs,
    wait_for_job,
)

PAGES = [
    "pages/home.py",
    "pages/data.py",
    "pages/train.py",
    "pages/evaluate.py",
    "pages/predict.py",
    "pages/inspect.py",
    "pages/runs.py",
    "pages/sweep.py",
]


def test_the_home_page_renders_without_importing_tensorflow(app_cache, tmp_path):
    """The first page must be fast: a fresh process renders it without loading TensorFlow.

    With the server's warm-up off, so that this checks the page's own script: with it on, the warm-up's
    thread imports TensorFlow once the page has run (tests/test_warmup.py checks which thread does)."""
    code = (
        "import sys; from streamlit.testing.v1 import AppTest; "
        f"at = AppTest.from_file({APP!r}, default_timeout=60).run(); "
        "assert not at.exception, [e.value for e in at.exception]; "
        "print(at.title[0].value, sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))"
    )
    env = {
        **os.environ,
        "CNNLAB_CACHE_DIR": str(app_cache),
        "CNNLAB_MODELS_DIR": str(tmp_path / "models"),
        "CNNLAB_WARM_UP": "0",
    }
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "CNN Lab []"


@pytest.mark.parametrize("source", ["environment", "secrets"])
def test_a_bad_setting_is_one_line_on_the_page(source, app_cache, tmp_path, monkeypatch):
    monkeypatch.setenv("CNNLAB_CACHE_DIR", str(app_cache))
    monkeypatch.setenv("CNNLAB_MODELS_DIR", str(tmp_path / "models"))
    at = AppTest.from_file(APP, default_timeout=APP_TIMEOUT)
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


def test_the_data_page_lists_a_file_name_that_is_not_utf8_among_the_skipped(app, tmp_path):
    from cnnlab_ui.state import DatasetChoice

    root = tmp_path / "odd"
    for name, color in (("cats", (200, 40, 40)), ("dogs", (40, 200, 40))):
        (root / name).mkdir(parents=True)
        for i in range(3):
            (root / name / f"{i}.png").write_bytes(image_bytes(np.full((12, 12, 3), color, np.uint8)))
    with open(os.path.join(os.fsencode(root / "cats"), b"caf\xe9.png"), "wb") as fh:  # from a Windows zip
        fh.write((root / "cats" / "0.png").read_bytes())
    app.session_state["dataset"] = DatasetChoice(str(root), "odd names")
    at = open_page(app, "pages/data.py")
    assert {m.label: m.value for m in at.metric}["Skipped files"] == "1"
    assert at.dataframe[0].value.to_dict("records") == [
        {"file": "cats/caf\\xe9.png", "reason": "file name is not valid UTF-8 (shown with \\x escapes); rename it"}
    ]
    # The grid shows each image once (the Duplicates tab shows the copies among them again).
    (grid,) = [tab for tab in at.tabs if tab.label == "Images"]
    assert sorted(caption for image in grid.image for caption in image.captions) == ["cats"] * 3 + ["dogs"] * 3


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


@pytest.mark.slow
def test_training_from_the_train_page_saves_a_run_then_predict_and_runs_use_it(app, isolated_dirs):
    at = open_page(app, "pages/train.py")
    tiny_training(at, epochs=2)
    job = wait_for_job(at, "job")
    assert job.status == "completed", job.error
    at.run()
    assert not at.exception
    assert any("completed after 2 epochs" in s.value for s in at.success)
    runs = RunStore(isolated_dirs[1]).list()
    assert len(runs) == 1 and len(runs[0].history) == 2 and runs[0].status == "completed"

    at = open_page(at, "pages/predict.py")
    sample = Path(at.session_state["dataset"].path) / "star"
    png = next(sample.iterdir()).read_bytes()
    at.file_uploader(key="image-upload").set_value(
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
    shown_while_training = at.selectbox(key="picked_run").value
    job = wait_for_job(at, "job")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert shown_while_training != job.result.id
    assert at.selectbox(key="picked_run").value == job.result.id


def test_stop_ends_training_as_a_stopped_run(app, isolated_dirs):
    at = open_page(app, "pages/train.py")
    tiny_training(at, epochs=60)
    job = at.session_state["job"]
    deadline = time.monotonic() + APP_TIMEOUT
    while len(job.history) < 1 and time.monotonic() < deadline:
        time.sleep(0.2)
    at.run()
    at.button(key="stop-job").click().run()
    job = wait_for_job(at, "job", timeout=60)
    assert job.status == "stopped"
    run = RunStore(isolated_dirs[1]).list()[0]
    assert run.status == "stopped" and 1 <= len(run.history) < 60
    assert run.model_path.exists()


def test_a_reloaded_tab_finds_the_running_training_its_stop_and_its_settings(app, isolated_dirs):
    at = open_page(app, "pages/train.py")
    tiny_training(at, epochs=60)
    job = at.session_state["job"]
    wait_for_epochs(job, 1)

    reloaded = open_page(start_app(), "pages/train.py")  # a reload starts a new session on the same server
    assert reloaded.session_state["job"] is job
    assert reloaded.sidebar.number_input(key="epochs").value == 60  # the sidebar settings came back
    assert next(b for b in reloaded.button if b.label == "Start training").disabled
    next(b for b in reloaded.button if b.label == "Stop").click().run()
    assert wait_for_job(reloaded, "job", timeout=60).status == "stopped"
    run = RunStore(isolated_dirs[1]).get(job.run_id)
    assert run.status == "stopped" and run.model_path.exists()


@pytest.mark.slow
def test_the_runs_page_resumes_a_stopped_run_and_trains_a_completed_one_more(app, isolated_dirs):
    store = RunStore(isolated_dirs[1])
    at = open_page(app, "pages/train.py")
    tiny_training(at, epochs=3)
    job = at.session_state["job"]
    wait_for_epochs(job, 1)
    job.stop()
    stopped = wait_for_job(at, "job").result
    assert stopped.status == "stopped" and len(stopped.history) < 3

    at = open_page(at, "pages/runs.py")
    at.selectbox(key="manage-run").set_value(stopped.id).run()
    next(b for b in at.button if b.label == "Resume").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.session_state["job"].run_id == stopped.id  # shown on the Train page
    assert wait_for_job(at, "job").status == "completed"
    resumed = store.get(stopped.id)
    assert resumed.status == "completed" and [row.epoch for row in resumed.history] == [1, 2, 3]

    at = open_page(at, "pages/runs.py")
    at.selectbox(key="manage-run").set_value(stopped.id).run()
    at.number_input(key="more-epochs").set_value(1).run()
    next(b for b in at.button if b.label == "Train 1 more epoch").click().run()
    assert not at.exception, [e.value for e in at.exception]
    child = store.get(wait_for_job(at, "job").run_id)
    assert child.status == "completed" and child.record.parent == stopped.id
    assert [row.epoch for row in child.history] == [4]


def test_predict_rejects_a_non_image_with_a_message(app, trained_run, tmp_path, monkeypatch):
    monkeypatch.setenv("CNNLAB_MODELS_DIR", str(copied_models(trained_run["run"], tmp_path / "models")))
    at = open_page(app, "pages/predict.py")
    at.file_uploader(key="image-upload").set_value(("fake.png", b"definitely text", "image/png")).run()
    assert not at.exception
    assert len(at.error) == 1 and "fake.png" in at.error[0].value and "not an image" in at.error[0].value
    good = image_bytes(np.full((32, 32, 3), 200, np.uint8))
    at.file_uploader(key="image-upload").set_value(("good.png", good, "image/png")).run()
    assert not at.error and any(m.value.startswith("**good.png**") for m in at.markdown)


def test_classes_named_like_the_predict_tables_columns_overwrite_none_of_them(app, isolated_dirs, tmp_path):
    from cnnlab.runs.workspace import Workspace
    from cnnlab.training.engine import train
    from helpers import tiny_model_config, tiny_train_config, write_dataset

    classes = ("confidence", "image", "label")
    root = write_dataset(tmp_path / "named", classes=classes, per_class=6)
    store = RunStore(isolated_dirs[1])
    train(root, tiny_model_config(), tiny_train_config(epochs=1), workspace=Workspace(store, tmp_path / "cache"))
    at = open_page(app, "pages/predict.py")
    uploads = [(f"{c}.png", (root / c / f"{c}_000.png").read_bytes(), "image/png") for c in classes]
    at.file_uploader(key="image-upload").set_value(uploads).run()
    assert not at.exception, [e.value for e in at.exception]
    table = at.dataframe[0].value
    assert list(table.columns) == [
        "image",
        "label",
        "confidence",
        "unlike_training",
        "P(confidence)",
        "P(image)",
        "P(label)",
    ]
    assert table["image"].tolist() == ["confidence.png", "image.png", "label.png"]
    assert set(table["label"]) <= set(classes)
    probabilities = table[["P(confidence)", "P(image)", "P(label)"]].to_numpy()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(table["confidence"], probabilities.max(axis=1))


@pytest.mark.slow
def test_a_sweep_from_the_sweep_page_saves_tagged_runs(app, isolated_dirs):
    at = open_page(app, "pages/sweep.py")
    tiny_sweep(at, trials=2, conv_blocks=(1, 2))
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    at.button(key="start-sweep").click().run()
    job = wait_for_job(at, "sweep_job", timeout=300)
    assert job.status == "completed", job.error
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("Best trial" in s.value for s in at.success)
    runs = RunStore(isolated_dirs[1]).list()
    assert len(runs) == 2 and all(r.record.sweep.study == job.result.study for r in runs)
    at = open_page(at, "pages/runs.py")
    assert at.selectbox(key="runs-filter").options[1].startswith("Sweep:")


def test_a_one_class_zip_gets_a_message_and_the_dataset_stays(app, tmp_path):
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for i in range(3):
            zf.writestr(f"only/cat_{i}.png", image_bytes(np.full((16, 16, 3), 40 * i, np.uint8)))
    at = open_page(app, "pages/data.py")
    at.radio(key="dataset-source").set_value("Upload a zip").run()
    at.file_uploader(key="zip-upload").set_value(("one.zip", buf.getvalue(), "application/zip")).run()
    assert not at.exception, [e.value for e in at.exception]
    assert len(at.error) == 1 and "at least two classes" in at.error[0].value
    assert at.subheader[0].value == "Built-in sample (shapes)"
    assert not open_page(at, "pages/train.py").error


def download_from_data_page(at: AppTest, title: str) -> AppTest:
    # The app cache is shared by the session's app tests: start without an earlier test's download.
    shutil.rmtree(Path(os.environ["CNNLAB_CACHE_DIR"]) / "catalog", ignore_errors=True)
    at = open_page(at, "pages/data.py")
    at.radio(key="dataset-source").set_value("Download a dataset").run()
    at.selectbox(key="catalog-dataset").set_value("mnist").run()
    assert at.button(key="download-dataset").label == f"Download {title}"
    at.button(key="download-dataset").click().run()
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
    assert {m.label: m.value for m in at.metric}["Images"] == "30"


def test_a_model_too_big_for_the_server_is_a_message(app):
    at = open_page(app, "pages/train.py")
    at.sidebar.select_slider(key="image_size").set_value(224)
    at.sidebar.slider(key="conv_blocks").set_value(1)
    at.sidebar.select_slider(key="filters").set_value(128)
    at.sidebar.select_slider(key="dense_units").set_value(512)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert len(at.error) == 1 and "weights, over the" in at.error[0].value
    assert "start-training" not in [b.key for b in at.button]


@pytest.mark.slow
def test_a_sweep_stopped_before_any_trial_ends_says_so(app):
    at = open_page(app, "pages/sweep.py")
    at.sidebar.number_input(key="sweep-epochs").set_value(50)
    at.run()
    at.button(key="start-sweep").click().run()
    job = at.session_state["sweep_job"]
    deadline = time.monotonic() + APP_TIMEOUT
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


def test_evaluate_says_how_many_test_images_are_missing(app, trained_run, tmp_path, monkeypatch):
    # A run id of its own: the page caches evaluations by run id and model file time.
    run_dir = relocated_run(trained_run["run"], tmp_path / "data", tmp_path / "models", run_id="missing-images")
    (run_dir / "evaluation.json").unlink()
    test_files = json.loads((run_dir / "split.json").read_text())["test"]
    for rel in test_files[:2]:
        (tmp_path / "data" / rel).unlink()
    monkeypatch.setenv("CNNLAB_MODELS_DIR", str(tmp_path / "models"))
    at = open_page(app, "pages/evaluate.py")
    assert at.warning[0].value.startswith(f"2 of {len(test_files)} test images are missing")
    assert {m.label: m.value for m in at.metric}["Test images"] == str(len(test_files) - 2)


def test_runs_with_the_same_name_keep_their_own_learning_curves(app, trained_run, tmp_path, monkeypatch):
    source = trained_run["run"].path
    for run_id in ("20260101-000000-aaaa", "20260102-000000-bbbb"):
        shutil.copytree(source, tmp_path / "models" / run_id)
    monkeypatch.setenv("CNNLAB_MODELS_DIR", str(tmp_path / "models"))
    at = open_page(app, "pages/runs.py")
    figure = json.loads(next(c for c in at.get("plotly_chart") if c.proto.id.endswith("cmp-acc")).proto.spec)
    validation = {t["legendgroup"]: t["name"] for t in figure["data"] if t["name"].endswith("(validation)")}
    assert validation["20260101-000000-aaaa"] == "shared tiny run · 20260101-000000-aaaa (validation)"
    assert validation["20260102-000000-bbbb"] == "shared tiny run · 20260102-000000-bbbb (validation)"


def test_predict_says_a_damaged_model_is_unreadable(app, trained_run, tmp_path, monkeypatch):
    shutil.copytree(trained_run["run"].path, tmp_path / "models" / "damaged")
    (tmp_path / "models" / "damaged" / "model.keras").write_bytes(b"garbage")
    monkeypatch.setenv("CNNLAB_MODELS_DIR", str(tmp_path / "models"))
    app.session_state["run_id"] = "damaged"
    at = open_page(app, "pages/predict.py")
    assert at.selectbox(key="picked_run").value == "damaged"
    assert len(at.error) == 1 and "is unreadable" in at.error[0].value


def test_the_train_page_previews_augmentation_and_a_preset_fills_in_the_sliders(app):
    at = open_page(app, "pages/train.py")
    assert any(c.value.startswith("Devices: 1 device (/CPU:0), no distribution strategy") for c in at.caption)
    captions = [caption for image in at.image for caption in image.captions]
    assert captions[0].startswith("original: ") and captions[1:] == [f"augmented {i}" for i in range(1, 9)]
    assert at.sidebar.selectbox(key="flip").value == "none" and at.sidebar.slider(key="rotation").value == 0.0
    at.sidebar.selectbox(key="augmentation_preset").set_value("photos: flips and rotation").run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.sidebar.selectbox(key="flip").value == "horizontal" and at.sidebar.slider(key="rotation").value == 0.1
    assert any("never when left and right" in c.value for c in at.sidebar.caption)
    at.number_input(key="preview_image").set_value(5).run()
    assert not at.exception
    assert [c for image in at.image for c in image.captions][0] != captions[0]  # another training image


def test_the_learning_rate_finder_draws_its_curve_and_one_click_uses_the_suggestion(app):
    at = open_page(app, "pages/train.py")
    at.sidebar.select_slider(key="image_size").set_value(32)
    at.sidebar.slider(key="conv_blocks").set_value(1)
    at.sidebar.select_slider(key="filters").set_value(8)
    at.run()
    next(b for b in at.button if b.label == "Find a learning rate").click().run()
    assert not at.exception, [e.value for e in at.exception]
    chart = next(c for c in at.get("plotly_chart") if "Loss as the learning rate grows" in c.proto.spec)
    assert chart is not None
    use = next(b for b in at.button if b.label.startswith("Use the suggested rate"))
    suggested = float(use.label.split("(")[1].rstrip(")"))
    use.click().run()
    assert not at.exception
    chosen = at.sidebar.select_slider(key="learning_rate").value
    assert abs(np.log10(chosen) - np.log10(suggested)) < 0.3  # the nearest rate on the slider


def test_evaluate_and_runs_show_balanced_accuracy_macro_f1_confusions_and_label_issues(app, trained_run, monkeypatch):
    monkeypatch.setenv("CNNLAB_MODELS_DIR", str(trained_run["base"] / "models"))
    at = open_page(app, "pages/evaluate.py")
    labels = [m.label for m in at.metric]
    assert labels[:3] == ["Test accuracy", "Balanced accuracy", "Macro F1"]
    assert list(at.dataframe[0].value.columns) == ["true_label", "predicted_label", "count", "share"]
    at.toggle(key="find_label_issues").set_value(True).run()
    assert not at.exception, [e.value for e in at.exception]
    found = [c for image in at.image for c in image.captions if c.startswith("given ")]
    assert found or any("No likely label error" in s.value for s in at.success)
    at = open_page(at, "pages/runs.py")
    assert {"test_balanced_accuracy", "test_macro_f1"} <= set(at.dataframe[0].value.columns)


def test_evaluate_shows_calibration_a_threshold_sentence_and_roc_for_three_classes(app, calibrated_run, monkeypatch):
    monkeypatch.setenv("CNNLAB_MODELS_DIR", str(calibrated_run["base"] / "models"))
    from cnnlab.analysis.evaluate import saved_evaluation

    at = open_page(app, "pages/evaluate.py")
    metrics = {m.label: m.value for m in at.metric}
    assert float(metrics["Macro ROC AUC"]) == pytest.approx(saved_evaluation(calibrated_run["run"]).roc_auc, abs=1e-3)
    assert not any("n/a" in str(value) for value in metrics.values())
    assert {"ECE", "Brier score", "Temperature", "ECE once calibrated"} <= metrics.keys()
    assert float(metrics["Temperature"]) == pytest.approx(calibrated_run["run"].temperature, abs=0.01)
    titles = [json.loads(chart.proto.spec)["layout"]["title"]["text"] for chart in at.get("plotly_chart")]
    assert (
        any(t.startswith("Reliability diagram") for t in titles) and "ROC curves, each class against the rest" in titles
    )
    roc = next(json.loads(c.proto.spec) for c in at.get("plotly_chart") if "ROC" in c.proto.spec)
    assert len([t for t in roc["data"] if t["name"] != "Chance"]) == 3
    at.slider(key="confidence-threshold").set_value(0).run()
    assert not at.exception, [e.value for e in at.exception]
    total = len(calibrated_run["run"].split()["test"])
    assert any(f"on 100% of the test images ({total} of {total})" in m.value for m in at.markdown)


def test_an_evaluation_saved_before_calibration_without_its_dataset_says_to_evaluate_again(
    app, trained_run, tmp_path, monkeypatch
):
    run_dir = tmp_path / "models" / "before-calibration"  # an id of its own: the page caches evaluations by id
    shutil.copytree(trained_run["run"].path, run_dir)
    saved = json.loads((run_dir / "evaluation.json").read_text())
    for key in ("ece", "brier", "temperature", "ece_calibrated", "brier_calibrated", "roc_curves"):
        del saved[key]
    (run_dir / "evaluation.json").write_text(json.dumps(saved))
    record = json.loads((run_dir / "run.json").read_text())
    record["dataset"]["path"] = str(tmp_path / "moved-away")
    del record["calibration"]
    record["id"] = run_dir.name
    (run_dir / "run.json").write_text(json.dumps(record))
    monkeypatch.setenv("CNNLAB_MODELS_DIR", str(tmp_path / "models"))
    at = open_page(app, "pages/evaluate.py")
    assert any("saved before calibration was measured" in i.value for i in at.info)
    assert any("saved before ROC curves were kept" in i.value for i in at.info)
    assert at.metric[0].label == "Test accuracy" and "ECE" not in [m.label for m in at.metric]
    at = open_page(at, "pages/predict.py")
    assert any(c.value.startswith("Confidences are the model's own, not calibrated") for c in at.caption)


def test_predict_says_its_confidences_are_calibrated(app, calibrated_run, monkeypatch):
    monkeypatch.setenv("CNNLAB_MODELS_DIR", str(calibrated_run["base"] / "models"))
    at = open_page(app, "pages/predict.py")
    temperature = f"{calibrated_run['run'].temperature:.2f}"
    assert any(c.value.startswith("Confidences are calibrated") and temperature in c.value for c in at.caption)


def test_evaluate_checks_every_image_by_a_cross_validated_pass_in_the_background(
    app, trained_run, isolated_dirs, tmp_path
):
    from cnnlab.server import jobs

    run_dir = relocated_run(trained_run["run"], tmp_path / "data", isolated_dirs[1])  # the pass saves into it
    at = open_page(app, "pages/evaluate.py")
    assert at.selectbox(key="picked_run").value == run_dir.name
    assert not any("cross-validated pass over all" in c.value for c in at.caption)  # none made yet
    at.number_input(key="cv_folds").set_value(2)
    at.number_input(key="cv_epochs").set_value(1).run()
    at.button(key="start-label-check").click().run()
    assert not at.exception, [e.value for e in at.exception]
    job = next(j for j in jobs.visible_jobs(None, jobs.LABEL_CHECK) if j.info["run_id"] == run_dir.name)
    assert job.info == {"run_id": run_dir.name, "folds": 2, "epochs": 1}
    deadline = time.monotonic() + APP_TIMEOUT
    while not job.done and time.monotonic() < deadline:
        time.sleep(0.2)
    assert job.status == "completed", job.error

    at = open_page(start_app(), "pages/evaluate.py")  # a reload shows the saved pass
    images = sum(len(part) for part in trained_run["run"].split().values())
    assert any(f"2-fold cross-validated pass over all {images} images" in c.value for c in at.caption)
    found = [c for image in at.image for c in image.captions if c.startswith("given ")]
    assert found or any("No likely label error" in s.value for s in at.success)
    assert (run_dir / "label_issues_cv.json").is_file()


def chart_titles(at: AppTest) -> list[str]:
    return [json.loads(chart.proto.spec)["layout"]["title"]["text"] for chart in at.get("plotly_chart")]


def test_inspect_shows_the_demo_run_inside_for_a_dataset_image_then_an_upload(app, app_cache, isolated_dirs):
    from cnnlab.analysis import inspect
    from cnnlab.data.images import load_array

    at = open_page(app, "pages/inspect.py")
    assert at.selectbox(key="picked_run").value == "demo"
    assert chart_titles(at)[0].startswith("conv_1: output 64x64x32, values ")
    assert at.subheader[1].value == "What channel 0 of conv_1 responds to"
    demo = next(run for run in RunStore(isolated_dirs[1], demo=DEMO_RUN_DIR).list() if run.is_demo)
    png = sorted((demo.dataset_root(app_cache) / "star").iterdir())[3].read_bytes()
    at.radio(key="source").set_value("Upload").run()
    at.file_uploader[0].set_value(("mine.png", png, "image/png")).run()
    at.selectbox(key="layer").set_value("conv_2").run()
    at.number_input(key="channel-conv_2").set_value(5).run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    maps = inspect.feature_maps(demo.load_model(), load_array(png, (64, 64), "rgb", "stretch"), ["conv_2"])
    low, high = maps[1].value_range
    titles = chart_titles(at)
    assert titles[0] == f"conv_2: output 32x32x64, values {low:.3g} to {high:.3g}"  # the uploaded image's maps
    assert titles[1].startswith("conv_2 channel 5") and titles[2].startswith("conv_2 filter 5:")
    assert at.subheader[1].value == "What channel 5 of conv_2 responds to"
    captions = [caption for image in at.image for caption in image.captions]
    assert len(captions) == 10 and all(c.split(":")[0] in SAMPLE_CLASSES for c in captions[:9])
    assert captions[9] == "after 40 gradient steps"
    (reached,) = at.metric
    assert reached.label == "Mean activation reached" and "from grey noise" in reached.delta

    at.file_uploader[0].set_value(("notes.png", b"not a picture", "image/png")).run()
    assert not at.exception and len(at.error) == 1 and "notes.png" in at.error[0].value


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


def test_imagenet_weights_offline_fail_on_the_train_page_with_one_line(app, isolated_dirs, monkeypatch):
    imagenet_unreachable(monkeypatch)
    at = open_page(app, "pages/train.py")
    backbone_training(at, "imagenet", fine_tune=False)
    job = wait_for_job(at, "job")
    at.run()
    assert job.status == "failed"
    assert len(at.error) == 1 and "Could not download the ImageNet weights" in at.error[0].value
    assert RunStore(isolated_dirs[1]).list() == []
    assert not isolated_dirs[1].exists() or not any(isolated_dirs[1].iterdir())


@pytest.mark.slow
def test_a_backbone_trains_its_head_then_fine_tunes_on_the_train_page(app):
    at = open_page(app, "pages/train.py")
    backbone_training(at, "none", fine_tune=True)
    job = wait_for_job(at, "job", timeout=2 * APP_TIMEOUT)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert job.status == "completed", job.error
    assert [row.phase for row in job.result.history] == ["head", "fine_tune"]
    assert job.info["epochs"] == 2
