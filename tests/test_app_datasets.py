"""The Data page's dataset versions, driven with AppTest: a dataset made from class names, images
added by upload and by the camera, the versions table, their difference, export and training on
one; hosted, the disk budget and visitors who never see each other's datasets."""

import hashlib
import io
import os
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from cnnlab.data import edits, versions
from cnnlab.server import hosting
from cnnlab.settings import load_settings
from helpers import class_image, copied_models, image_bytes, open_page, start_app, tiny_sweep, write_dataset


@pytest.fixture
def hosted(app, monkeypatch):
    """Hosted mode on: each new session is a visitor of their own."""
    monkeypatch.setenv("CNNLAB_HOSTED", "1")
    details = st.get_option("client.showErrorDetails")
    yield
    st.set_option("client.showErrorDetails", details)  # the hosted app sets it for the whole server


def photo(seed: int, fmt: str = "JPEG", size=(24, 24)) -> bytes:
    return image_bytes(class_image((120, 80, 40), np.random.default_rng(seed), size), fmt)


def make_dataset(at: AppTest, name: str, classes: str) -> AppTest:
    at.radio(key="dataset-source").set_value("New dataset").run()
    at.text_input(key="new-dataset-name").input(name)
    at.text_input(key="new-classes").input(classes)
    at.button[0].click().run()  # the form's submit button, the page's only button then
    assert not at.exception, [e.value for e in at.exception]
    return at


def upload(at: AppTest, label: str, files: list[tuple[str, bytes]]) -> AppTest:
    at.selectbox(key="add-class").set_value(label).run()
    at.file_uploader(key="add-files").set_value([(name, data, "image/png") for name, data in files]).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def shoot(at: AppTest, data: bytes, name: str = "image.jpg") -> AppTest:
    at.camera_input(key="add-camera").set_value((name, data, "image/jpeg")).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def datasets_folder(at: AppTest) -> Path:
    """This session's datasets folder (hosted: the visitor's own)."""
    config = load_settings(os.environ)
    if config.hosted:
        return hosting.visitor_datasets_dir(config.datasets_dir, at.session_state["visitor"])
    return config.datasets_dir


def test_a_dataset_made_from_class_names_grows_by_upload_and_camera_shot_by_shot(app):
    at = make_dataset(open_page(app, "pages/data.py"), "pets", "cats, dogs")
    assert at.subheader[0].value == "pets (made in CNN Lab)" and not at.error
    assert "Add images to at least two classes" in at.info[0].value and "cats 0, dogs 0" in at.info[0].value

    upload(at, "cats", [("a.png", photo(1, "PNG")), ("b.png", photo(2, "PNG")), ("bad.png", b"not an image")])
    assert [e.value for e in at.error] == [
        "'bad.png' is not an image and cannot be read; replace it with a valid JPEG or PNG. Received: file='bad.png'"
    ]
    assert at.success[0].value == "Added 2 images as version 2."
    assert "cats 2, dogs 0" in at.info[0].value

    at.selectbox(key="add-class").set_value("dogs").run()
    for shot in range(3):  # photo after photo into the chosen class, each saved as it is taken
        shoot(at, photo(10 + shot))
        assert at.success[0].value == f"Added 1 image as version {3 + shot}."
        assert metrics(at)["Images"] == str(3 + shot) and metrics(at)["Classes"] == "2"
        strip = [caption for image in at.image for caption in image.captions][: 3 + shot]
        assert strip == ["cats", "cats"] + ["dogs"] * (shot + 1)  # the latest images added, before the grid
    at.run()  # the camera keeps its last photo across reruns: it is not added again
    assert metrics(at)["Images"] == "5" and at.selectbox(key="dataset-version").options[0] == "latest (version 5)"
    shoot(at, photo(10))  # the same picture again is in the dataset already
    assert [e.value for e in at.error] == ["'image.jpg' is already in the dataset (class 'dogs')."]
    assert metrics(at)["Images"] == "5"

    dataset = versions.open_dataset("pets", datasets_folder(at))
    assert dataset.manifest().counts == {"cats": 2, "dogs": 3}
    assert [m.change for m in dataset.manifests()][1:] == ["2 added"] + ["1 added"] * 3


def file_hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()
    }


def test_a_folders_versions_are_listed_compared_exported_and_one_is_picked_for_training(app, tmp_path):
    from cnnlab_ui.datasets import zip_bytes
    from cnnlab_ui.state import DatasetChoice

    root = write_dataset(tmp_path / "pets", classes=("cats", "dogs"), per_class=4)
    before = file_hashes(root)
    app.session_state["dataset"] = DatasetChoice(str(root), "Folder: pets")
    at = open_page(app, "pages/data.py")
    assert metrics(at)["Images"] == "8" and metrics(at)["Train / val / test"] == "4/2/2"
    upload(at, "dogs", [("new.png", photo(5, "PNG"))])  # version 2, kept beside the folder, not in it
    assert at.success[0].value == "Added 1 image as version 2." and metrics(at)["Images"] == "9"
    dataset = versions.open_dataset(root, datasets_folder(at))
    edits.save_version(
        dataset, [edits.Relabel("cats/cats_000.png", "dogs"), edits.Exclude("dogs/dogs_001.png", "blurry")]
    )
    at.run()  # version 3, as a gallery would save it

    assert metrics(at)["Images"] == "8" and metrics(at)["Skipped files"] == "1"
    table = next(d.value for d in at.dataframe if "change" in d.value.columns)
    assert table[["version", "parent", "images", "change"]].to_dict("records") == [
        {"version": 3, "parent": "2", "images": 8, "change": "1 relabelled, 1 excluded"},
        {"version": 2, "parent": "1", "images": 9, "change": "1 added"},
        {"version": 1, "parent": "", "images": 8, "change": "the class folder as it was"},
    ]
    assert table["per class"].tolist() == ["cats 3, dogs 5", "cats 4, dogs 5", "cats 4, dogs 4"]

    at.selectbox(key="diff-new").set_value(3)
    at.selectbox(key="diff-old").set_value(1).run()
    assert [c.value for c in at.caption if c.value.startswith("From")] == [
        "From version 1 to version 3: 1 relabelled, 1 excluded, 1 added."
    ]
    assert [m.value for m in at.markdown if m.value.startswith("**")] == [
        "**Relabelled: 1**",
        "**Excluded: 1**",
        "**Added: 1**",
    ]
    captions = [caption for image in at.image for caption in image.captions]
    start = captions.index("cats → dogs")  # after the strip of the image added in this session
    assert captions[start : start + 3] == ["cats → dogs", "blurry", "dogs"]

    at.selectbox(key="version-action").set_value(2).run()
    assert at.get("download_button")[0].proto.label == "Export version 2 as a zip"
    with zipfile.ZipFile(io.BytesIO(zip_bytes(dataset, 2))) as zf:  # what the button serves when pressed
        names = sorted(zf.namelist())
    assert len(names) == 9 and sum(n.startswith("dogs/") for n in names) == 5 and "cats/cats_000.png" in names

    at.button(key="train-version").click().run()
    assert at.session_state["dataset"].version == 2 and at.selectbox(key="dataset-version").value == 2
    assert metrics(at)["Images"] == "9"  # the page shows the version chosen for training
    assert [(link.proto.page, link.proto.label) for link in at.get("page_link")] == [
        ("train", "Open the Train page: it trains on version 2")
    ]
    assert file_hashes(root) == before  # the user's folder is never written to


def test_a_hosted_visitors_added_images_count_against_their_budget(hosted, monkeypatch):
    monkeypatch.setenv("CNNLAB_MAX_SESSION_MB", "3")
    at = open_page(start_app(), "pages/data.py")
    assert at.get("progress")[0].proto.text.endswith("datasets 0 bytes).")  # looking at the sample costs nothing
    at = make_dataset(at, "noise", "a, b")
    big = [photo(seed, "PNG", size=(500, 500)) for seed in range(4)]  # about 0.65 MB each: noisy pixels
    upload(at, "a", [("one.png", big[0]), ("two.png", big[1])])
    assert at.success[0].value == "Added 2 images as version 2." and not at.error, [e.value for e in at.error]
    assert re.search(r"datasets 1\.\d MB\)\.$", at.get("progress")[0].proto.text)

    upload(at, "b", [("three.png", big[2]), ("four.png", big[3])])
    assert not at.success and len(at.error) == 1
    assert re.match(r"Adding these images would store 2\.\d MB for this dataset, over the 2 MB", at.error[0].value)
    assert "/" not in at.error[0].value.split("Received")[0]  # no server path
    dataset = versions.open_dataset("noise", datasets_folder(at))
    assert dataset.latest() == 2 and len(list((dataset.folder / ".added").iterdir())) == 2  # nothing stored


def test_two_hosted_visitors_never_see_each_others_datasets_or_edits(hosted):
    first, second = (open_page(start_app(), "pages/data.py") for _ in range(2))
    assert datasets_folder(first) != datasets_folder(second)
    make_dataset(first, "mine", "x, y")
    upload(first, "x", [("x.png", photo(1, "PNG"))])
    first.radio(key="dataset-source").set_value("Built-in sample").run()
    next(b for b in first.button if b.label == "Use the built-in sample").click().run()
    upload(first, "circle", [("c.png", photo(2, "PNG"))])  # an edit of the sample: the first visitor's own
    assert first.selectbox(key="dataset-version").options[0] == "latest (version 2)"

    second.radio(key="dataset-source").set_value("Your datasets").run()
    assert "You have made no dataset yet" in "".join(c.value for c in second.caption)
    second.radio(key="dataset-source").set_value("Built-in sample").run()
    assert second.selectbox(key="dataset-version").options == ["latest (version 1)", "version 1"]
    (sample,) = versions.list_datasets(datasets_folder(second))  # the sample's versions only, unedited
    assert sample.source is not None and sample.latest() == 1
    assert [(d.name, d.latest()) for d in versions.list_datasets(datasets_folder(first))] == [
        ("mine", 2),
        (sample.name, 2),
    ]


def test_the_train_page_trains_on_the_version_picked_on_the_data_page(app, tmp_path):
    from cnnlab_ui.state import DatasetChoice
    from helpers import tiny_training, wait_for_job

    root = write_dataset(tmp_path / "pets", classes=("cats", "dogs"), per_class=10)
    app.session_state["dataset"] = DatasetChoice(str(root), "Folder: pets")
    at = upload(open_page(app, "pages/data.py"), "dogs", [("new.png", photo(5, "PNG"))])  # version 2
    at.selectbox(key="version-action").set_value(1).run()
    at.button(key="train-version").click().run()
    at = open_page(at, "pages/train.py")
    assert at.caption[0].value.startswith("Dataset: **Folder: pets**, version 1, with 20 images in 2 classes")
    tiny_training(at, epochs=1)
    job = wait_for_job(at, "job")
    assert job.status == "completed", job.error
    assert (job.result.record.dataset.name, job.result.record.dataset.version) == ("pets", 1)


def test_a_predict_page_photo_is_added_to_the_runs_dataset_under_a_chosen_class(
    app, trained_run, tmp_path, monkeypatch
):
    monkeypatch.setenv("CNNLAB_MODELS_DIR", str(copied_models(trained_run["run"], tmp_path / "models")))
    monkeypatch.setenv("CNNLAB_DATASETS_DIR", str(tmp_path / "datasets"))
    root = trained_run["data_dir"]
    before = file_hashes(root)
    at = open_page(app, "pages/predict.py")
    at.radio(key="image-source").set_value("Camera").run()
    shot = image_bytes(class_image((40, 200, 40), np.random.default_rng(7)))
    at.camera_input[0].set_value(("image.jpg", shot, "image/jpeg")).run()
    assert not at.exception, [e.value for e in at.exception]
    predicted = next(m.value for m in at.markdown if m.value.startswith("**image.jpg**")).split(": ")[1].split(" (")[0]
    at.toggle(key="add-toggle-0").set_value(True).run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.selectbox(key="add-to-class-0").value == predicted  # the predicted class first
    assert at.selectbox(key="add-to-class-0").options == ["cats", "dogs", "owls"]
    (adds,) = [c.value for c in at.caption if c.value.startswith("Adds to ")]
    assert adds.startswith("Adds to data, the dataset this run trained on (version 1), after its")

    at.selectbox(key="add-to-class-0").set_value("owls").run()
    at.button(key="add-to-0").click().run()
    assert not at.exception and not at.error, [e.value for e in [*at.exception, *at.error]]
    assert at.success[0].value == "Added 1 image as version 2."
    (adds,) = [c.value for c in at.caption if c.value.startswith("Adds to ")]
    assert "after its latest version (2)" in adds
    dataset = versions.open_dataset(root, tmp_path / "datasets")
    assert dataset.manifest(2).counts == {**dataset.manifest(1).counts, "owls": 21}
    (added,) = [e for e in dataset.manifest(2).entries if e.path.startswith(".added/")]
    assert added.label == "owls" and added.sha256 == hashlib.sha256(shot).hexdigest()

    at.button(key="add-to-0").click().run()  # the same photo again is in the dataset already
    assert [e.value for e in at.error] == ["'image.jpg' is already in the dataset (class 'owls')."]
    assert not at.success and dataset.latest() == 2
    assert file_hashes(root) == before  # the user's folder is never written to


@pytest.mark.slow
def test_a_hosted_visitors_predict_page_image_counts_against_their_budget(hosted, monkeypatch):
    monkeypatch.setenv("CNNLAB_MAX_SESSION_MB", "1")
    at = open_page(start_app(), "pages/predict.py")  # the demo run, trained on the built-in sample
    big = photo(1, "PNG", size=(800, 800))  # about 1.7 MB: noisy pixels
    at.file_uploader(key="image-upload").set_value(("big.png", big, "image/png")).run()
    at.toggle(key="add-toggle-0").set_value(True).run()
    at.button(key="add-to-0").click().run()
    assert not at.exception and not at.success, [e.value for e in at.exception]
    assert len(at.error) == 1
    assert re.match(r"Adding these images would store 1\.\d MB for this dataset, over the 1 MB", at.error[0].value)
    (sample,) = versions.list_datasets(datasets_folder(at))  # the visitor's own versions of the sample
    assert sample.source is not None and sample.latest() == 1


def test_the_learning_rate_finder_and_a_sweep_use_the_version_chosen_of_a_made_dataset(
    app, tmp_path, monkeypatch, isolated_dirs
):
    from cnnlab.runs.store import RunStore
    from cnnlab_ui.state import DatasetChoice
    from helpers import made_dataset, wait_for_job

    monkeypatch.setenv("CNNLAB_DATASETS_DIR", str(tmp_path / "datasets"))
    made_dataset(tmp_path / "datasets")  # version 2 can be trained on, the latest (3) cannot
    app.session_state["dataset"] = DatasetChoice("shots", "shots (made in CNN Lab)", version=2)
    at = open_page(app, "pages/train.py")
    assert at.caption[0].value.startswith("Dataset: **shots (made in CNN Lab)**, version 2, with 32 images")
    at.sidebar.select_slider(key="image_size").set_value(32)
    at.sidebar.slider(key="conv_blocks").set_value(1)
    at.sidebar.select_slider(key="filters").set_value(8)
    at.run()
    next(b for b in at.button if b.label == "Find a learning rate").click().run()
    assert not at.exception and not at.error, [e.value for e in [*at.exception, *at.error]]
    assert any("Loss as the learning rate grows" in c.proto.spec for c in at.get("plotly_chart"))

    at = open_page(at, "pages/sweep.py")
    assert at.caption[1].value.startswith("Every trial trains on **shots (made in CNN Lab)**, version 2, with 32")
    tiny_sweep(at, trials=1, conv_blocks=(1, 1))
    at.button(key="start-sweep").click().run()
    job = wait_for_job(at, "sweep_job", timeout=300)
    assert job.status == "completed", job.error
    (run,) = RunStore(isolated_dirs[1]).list()
    assert (run.record.dataset.name, run.record.dataset.version) == ("shots", 2)
