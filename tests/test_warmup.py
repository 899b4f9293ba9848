"""The server's start-up warm-up (cnnlab.server.warmup): once per process, after the first page,
leaving the sample, its version and TensorFlow ready for the Train page; off with CNNLAB_WARM_UP=0."""

import json
import os
import subprocess
import sys
import threading

import pytest

from cnnlab.data.sample import DEFAULT_NUM_PER_CLASS, SAMPLE_CLASSES, sample_dir
from cnnlab.settings import load_settings
from helpers import APP, REPO_ROOT

# Run in a fresh process with the warm-up on: the home page first, recording which thread first
# imports TensorFlow; then the warm-up's outcome; then the Train page of the same session.
APP_WITH_WARM_UP = """
import gc, json, sys, threading
from importlib.abc import MetaPathFinder

class FirstImport(MetaPathFinder):
    thread = None
    def find_spec(self, name, path=None, target=None):
        if name == "tensorflow" and FirstImport.thread is None:
            FirstImport.thread = threading.current_thread().name
        return None

sys.meta_path.insert(0, FirstImport())
from streamlit.testing.v1 import AppTest
from cnnlab.server import warmup

at = AppTest.from_file(sys.argv[1], default_timeout=300).run()
assert not at.exception, [e.value for e in at.exception]
home = {"title": at.title[0].value}
future = warmup.warm_up_future()
again = warmup.start_warm_up(*[__import__("pathlib").Path(p) for p in sys.argv[2:4]], None)
steps = future.result(timeout=600)
at.switch_page("pages/train.py").run()
assert not at.exception, [e.value for e in at.exception]
print(json.dumps({
    **home,
    "tensorflow_first_imported_by": FirstImport.thread,
    "same_future": again is future,
    "steps": sorted(steps),
    "frozen": gc.get_freeze_count(),
    "summary": [e.label for e in at.expander if e.label.startswith("Model summary")],
}))
"""


@pytest.mark.slow
def test_the_warm_up_starts_after_the_home_page_once_per_process_and_readies_the_train_page(tmp_path):
    cache, models = tmp_path / "cache", tmp_path / "models"
    env = {
        **os.environ,
        "CNNLAB_WARM_UP": "1",
        "CNNLAB_CACHE_DIR": str(cache),
        "CNNLAB_MODELS_DIR": str(models),
        "CNNLAB_DATASETS_DIR": str(tmp_path / "datasets"),
    }
    command = [sys.executable, "-c", APP_WITH_WARM_UP, APP, str(cache), str(models)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900, env=env, cwd=REPO_ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["title"] == "CNN Lab"
    # The home page's own script imported no TensorFlow (had it, its thread would be the first to
    # ask for it): the warm-up's thread, started once the page had run, was.
    assert found["tensorflow_first_imported_by"] == "cnnlab-warm_up"
    assert found["same_future"], "a second start returns the process's one warm-up"
    assert found["steps"] == ["data", "freeze", "import", "plan", "preview"]
    # What TensorFlow, Keras and Streamlit made at import is out of the collector's walks.
    assert found["frozen"] > 100_000, found["frozen"]
    assert len(found["summary"]) == 1
    sample = cache / "sample-v1-seed0"
    for name in SAMPLE_CLASSES:
        assert len(list((sample / name).glob("*.png"))) == DEFAULT_NUM_PER_CLASS
    assert list((tmp_path / "datasets").rglob("v0001.json")), "the sample's version 1 is made, as a training makes it"
    assert [p.name for p in cache.iterdir() if p.name.startswith(".")] == [], "no temporary folder left behind"


@pytest.mark.slow
def test_a_hosted_warm_up_finds_the_samples_copies_once_for_every_visitors_version(tmp_path, monkeypatch):
    """Hosted, each visitor makes a version of the sample of their own: the warm-up's data process has
    drawn the sample and hashed and compared its images already (this process drew and decoded none
    of them), so no visitor's Data or Train page decodes or compares any."""
    from cnnlab.data import duplicates, sample, versions
    from cnnlab.data.duplicates import find_duplicates
    from cnnlab.server.warmup import warm_up

    here: list[str] = []
    monkeypatch.setattr(sample, "write_sample", lambda *args, **kwargs: here.append("drawn"))
    monkeypatch.setattr(duplicates, "thumbnail", lambda *args, **kwargs: here.append("decoded"))
    cache = tmp_path / "cache"
    steps = warm_up(cache, tmp_path / "models", None)
    assert sorted(steps) == ["data", "freeze", "import", "plan", "preview"]
    assert here == [], "the sample was drawn and hashed in the warm-up's data process, not in this one"
    kept = {p: p.stat().st_ino for p in cache.rglob("pairs/*.npz")}
    assert len(kept) == 1
    for visitor in ("first", "second"):
        dataset = versions.open_dataset(sample_dir(cache), tmp_path / visitor / "datasets", cache=cache)
        report = find_duplicates(dataset, cache=cache)
        assert report.decoded == 0 and report.num_images == DEFAULT_NUM_PER_CLASS * len(SAMPLE_CLASSES)
    assert {p: p.stat().st_ino for p in cache.rglob("pairs/*.npz")} == kept  # read, never compared again


def _no_interpreter(cache, duplicates):
    raise FileNotFoundError("no such file: python")


@pytest.mark.slow
@pytest.mark.parametrize(
    "start",
    [
        lambda cache, duplicates: subprocess.Popen(["false"]),
        _no_interpreter,
        lambda cache, duplicates: subprocess.Popen(["sleep", "600"]),
    ],
    ids=["fails", "does-not-start", "hangs"],
)
def test_when_its_data_process_fails_the_warm_up_does_that_work_itself(tmp_path, monkeypatch, start):
    from cnnlab.server import warmup

    monkeypatch.setattr(warmup, "_start_data_process", start)
    monkeypatch.setattr(warmup, "DATA_TIMEOUT_S", 2.0)
    cache = tmp_path / "cache"
    steps = warmup.warm_up(cache, tmp_path / "models", None)  # hosted: the sample's copies are looked for too
    assert sorted(steps) == ["data", "freeze", "import", "plan", "preview"]
    for name in SAMPLE_CLASSES:
        assert len(list((cache / "sample-v1-seed0" / name).glob("*.png"))) == DEFAULT_NUM_PER_CLASS
    assert len(list(cache.rglob("pairs/*.npz"))) == 1, "the sample's pairs are found, as the data process finds them"


@pytest.mark.slow
def test_a_page_asking_for_the_sample_during_its_generation_waits_for_that_one_copy(tmp_path):
    """Two callers at once (the warm-up and a page) generate the sample once: the second waits for the first's."""
    seen: set[str] = set()
    done = threading.Event()

    def watch() -> None:  # the temporary folders generation creates beside the sample, while it runs
        while not done.is_set():
            if tmp_path.is_dir():
                seen.update(p.name for p in tmp_path.iterdir() if p.name != "sample-v1-seed0")
            done.wait(0.05)

    watcher = threading.Thread(target=watch)
    watcher.start()
    results: list[object] = []
    callers = [threading.Thread(target=lambda: results.append(sample_dir(tmp_path))) for _ in range(2)]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join()
    done.set()
    watcher.join()
    assert results == [tmp_path / "sample-v1-seed0"] * 2
    assert len(seen) == 1, f"one generation, not one per caller: {sorted(seen)}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sample-v1-seed0"]
    for name in SAMPLE_CLASSES:
        assert len(list((tmp_path / "sample-v1-seed0" / name).glob("*.png"))) == DEFAULT_NUM_PER_CLASS


def test_the_warm_up_is_on_unless_the_setting_turns_it_off():
    assert load_settings({}).warm_up and load_settings({"CNNLAB_HOSTED": "1"}).warm_up
    for off in ("0", "false", "No", "off"):
        assert not load_settings({"CNNLAB_WARM_UP": off}).warm_up


def test_with_the_setting_off_the_app_starts_no_warm_up(app):
    """The tests' own setting (conftest): the app ran its home page in this process and started nothing."""
    from cnnlab.server import warmup

    assert not app.exception and app.title[0].value == "CNN Lab"
    assert warmup.warm_up_future() is None
