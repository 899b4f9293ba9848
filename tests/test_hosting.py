"""Hosted-mode housekeeping: ended sessions lose their uploads and runs; live ones keep them."""

import os
import time

import pytest

from cnnlab import hosting
from cnnlab.runs import RunStore
from cnnlab.settings import check_upload_size, load_settings


def make_run(store: RunStore, owner: str | None):
    run = store.create(
        {"owner": owner, "model_config": {}, "train_config": {}}, {"train": [], "validation": [], "test": []}
    )
    run.update(status="completed")
    return run


def test_ended_sessions_are_cleaned_and_live_ones_kept(tmp_path):
    cache, store = tmp_path / "cache", RunStore(tmp_path / "models", include_demo=False)
    for session in ("alive", "gone"):
        upload = hosting.uploads_dir(cache, session) / "abc"
        upload.mkdir(parents=True)
        (upload / "x.png").write_bytes(b"x")
        hosting.touch_session(cache, session)
    old = time.time() - 7200
    os.utime(cache / hosting.HEARTBEATS / "gone", (old, old))
    mine, theirs, shared = make_run(store, "alive"), make_run(store, "gone"), make_run(store, None)
    orphan = make_run(store, "server-restarted")  # no heartbeat at all

    ended = hosting.cleanup_ended_sessions(cache, store, max_idle_s=3600)

    assert ended == ["gone", "server-restarted"]
    remaining = {r.id for r in store.list()}
    assert remaining == {mine.id, shared.id}
    assert theirs.id not in remaining and orphan.id not in remaining
    assert hosting.uploads_dir(cache, "alive").exists()
    assert not hosting.uploads_dir(cache, "gone").exists()


def test_an_ended_sessions_decoded_images_go_with_its_upload(tmp_path):
    from conftest import write_dataset

    from cnnlab import data

    cache = tmp_path / "cache"
    mine = write_dataset(hosting.uploads_dir(cache, "alive") / "abc" / "pets", per_class=3)
    theirs = write_dataset(hosting.uploads_dir(cache, "gone") / "def" / "zoo", classes=("owls", "dogs"), per_class=4)
    for root in (mine, theirs):
        data.prepare(data.scan(root, cache=cache), (16, 16), cache=cache)
    hosting.touch_session(cache, "alive")
    kept = sorted((cache / "prepared").glob(f"{data.scan(mine, cache=cache).fingerprint}-*.npy"))
    assert len(kept) == 1 and len(list((cache / "prepared").glob("*.npy"))) == 2

    hosting.cleanup_ended_sessions(cache, RunStore(tmp_path / "models", include_demo=False))

    assert sorted((cache / "prepared").glob("*.npy")) == kept
    assert not hosting.uploads_dir(cache, "gone").exists()


def test_a_run_still_training_is_not_deleted(tmp_path):
    cache, store = tmp_path / "cache", RunStore(tmp_path / "models", include_demo=False)
    run = store.create(
        {"owner": "gone", "model_config": {}, "train_config": {}}, {"train": [], "validation": [], "test": []}
    )
    assert run.status == "running"
    hosting.cleanup_ended_sessions(cache, store)
    assert [r.id for r in store.list()] == [run.id]


def test_a_visitor_message_names_files_within_the_upload_and_no_server_path(tmp_path):
    uploads = hosting.uploads_dir(tmp_path / "cache", "s1")
    text = (
        f"'x.png' cannot be read. Received: file='{uploads}/0123abcd/pets/cats/x.png'; "
        f"[Errno 2] No such file: '{tmp_path}/cache/prepared/a.npy'; see http://example.org/a/b; "
        "train / val, 1/2, and/or"
    )
    message = hosting.visitor_message(text, uploads)
    assert message == (
        "'x.png' cannot be read. Received: file='pets/cats/x.png'; [Errno 2] No such file: 'a.npy'; "
        "see http://example.org/a/b; train / val, 1/2, and/or"
    )
    long = hosting.visitor_message("Received: member='" + "a/" * 5000 + "x.png'", uploads)
    assert len(long) <= hosting.MESSAGE_LIMIT and long.endswith("a/x.png'") and "..." in long


def test_tidy_removes_killed_work_and_keeps_the_cache_in_its_budget(tmp_path):
    from cnnlab import prepcache

    cache, models = tmp_path / "cache", tmp_path / "models"
    killed = [
        prepcache.folder(cache) / ".key.npy.999999999-abc.tmp.npy",  # a preparation
        hosting.uploads_dir(cache, "s1") / ".0123abcd.999999999-abc.tmp",  # an extraction
        models / "run1" / "exports" / ".savedmodel-1.999999999-abc.tmp",  # an export
    ]
    for path in killed:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    for name, age in (("old.npy", 300), ("new.npy", 100)):
        array = prepcache.folder(cache) / name
        array.write_bytes(bytes(2 * 2**20))
        os.utime(array, (time.time() - age, time.time() - age))

    removed = hosting.tidy(cache, models, max_cache_mb=3)

    assert sorted(removed) == sorted(killed) and not any(p.exists() for p in killed)
    assert sorted(p.name for p in prepcache.folder(cache).iterdir()) == ["new.npy"]


def test_a_visitor_deletes_their_other_uploads_with_what_was_decoded_from_them(tmp_path):
    from cnnlab import data
    from conftest import write_dataset

    cache = tmp_path / "cache"
    uploads = hosting.uploads_dir(cache, "s1")
    kept = write_dataset(uploads / "aaa" / "pets", per_class=3)
    gone = write_dataset(uploads / "bbb", classes=("owls", "dogs"), per_class=3)
    for root in (kept, gone):
        data.prepare(data.scan(root, cache=cache), (16, 16), cache=cache)

    assert hosting.forget_uploads(cache, "s1", keep=kept) == 1

    assert [p.name for p in uploads.iterdir()] == ["aaa"]
    fingerprint = data.scan(kept, cache=cache).fingerprint
    assert [p.name.split("-")[0] for p in (cache / "prepared").glob("*.npy")] == [fingerprint]


def test_a_visitors_usage_counts_their_uploads_runs_and_what_was_decoded_for_them(tmp_path, run_store):
    from cnnlab import data, quota
    from conftest import tiny_model_config, write_dataset

    cache = tmp_path / "cache"
    mine = write_dataset(hosting.uploads_dir(cache, "s1") / "aaa", per_class=4)
    sample_like = write_dataset(tmp_path / "shared", per_class=6, seed=3)
    config = tiny_model_config()
    arrays = {}
    for root in (mine, sample_like):
        report = data.scan(root, cache=cache)
        arrays[root] = data.prepare(report, config.image_size, cache=cache).cache_path
        run = run_store.create(
            {
                "owner": "s1",
                "model_config": config.to_dict(),
                "dataset": {"path": str(report.root), "fingerprint": report.fingerprint},
            },
            {"train": [], "validation": [], "test": []},
        )
        run.update(status="completed")
    other = run_store.create({"owner": "s2", "model_config": {}}, {"train": [], "validation": [], "test": []})

    usage = quota.session_usage(cache, run_store, "s1", budget_mb=1)

    uploads = sum(p.stat().st_size for p in mine.rglob("*") if p.is_file())
    assert usage.uploads == uploads
    assert usage.decoded == arrays[mine].stat().st_size  # not the shared dataset's
    assert arrays[sample_like].stat().st_size > usage.decoded
    runs = [r for r in run_store.list() if r.record["owner"] == "s1"]
    assert usage.runs == sum(p.stat().st_size for r in runs for p in r.path.rglob("*") if p.is_file())
    assert other.path.exists() and usage.total == usage.uploads + usage.decoded + usage.runs
    assert "of your 1.0 MB disk budget used" in usage.describe()
    quota.check_room(usage, usage.room, "This")
    with pytest.raises(ValueError, match=r"This training needs about .* delete runs you no longer need \(Runs page\)"):
        quota.check_room(usage, usage.room + 1, "This training")


def test_hosted_upload_cap_is_a_clear_message():
    hosted = load_settings({"CNNLAB_HOSTED": "1"})
    check_upload_size("small.zip", 10 * 2**20, hosted)
    with pytest.raises(ValueError, match=r"'big.zip' is 60.0 MB, over the 50 MB upload limit.*Received: size="):
        check_upload_size("big.zip", 60 * 2**20, hosted)


# ------------------------------------------------------------------ the app in hosted mode


@pytest.fixture
def hosted(app_cache, isolated_dirs, tmp_path, monkeypatch):
    """Hosted mode on, with a server data root configured (which hosted mode must ignore)."""
    monkeypatch.setenv("CNNLAB_CACHE_DIR", str(app_cache))
    monkeypatch.setenv("CNNLAB_MODELS_DIR", str(isolated_dirs[1]))
    monkeypatch.setenv("CNNLAB_HOSTED", "1")
    monkeypatch.setenv("CNNLAB_DATA_ROOTS", str(tmp_path))
    return isolated_dirs[1]


def test_hosted_data_page_offers_no_server_folder(hosted):
    from test_app import open_page, start_app

    at = open_page(start_app(), "pages/data.py")
    assert "Server folder" not in at.radio[0].options
    assert "Upload a zip" in at.radio[0].options


def test_hosted_oversized_upload_gets_a_message(hosted, monkeypatch):
    from test_app import open_page, start_app

    monkeypatch.setenv("CNNLAB_MAX_UPLOAD_MB", "1")
    at = open_page(start_app(), "pages/data.py")
    at.radio[0].set_value("Upload a zip").run()
    at.file_uploader[0].set_value(("big.zip", os.urandom(3 * 2**19), "application/zip")).run()
    assert not at.exception, [e.value for e in at.exception]
    assert len(at.error) == 1 and "'big.zip' is 1.5 MB, over the 1 MB upload limit" in at.error[0].value
    assert at.subheader[0].value == "Built-in sample (shapes)"  # the session keeps its dataset


def test_a_second_training_waits_its_turn_and_sessions_see_only_their_runs(hosted):
    from test_app import open_page, start_app, tiny_training, wait_for_job

    first, second = open_page(start_app(), "pages/train.py"), open_page(start_app(), "pages/train.py")
    tiny_training(first, epochs=60)
    job = first.session_state["job"]
    deadline = time.monotonic() + 120
    while job.status == "queued" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert job.status == "running"

    tiny_training(second, epochs=60)
    waiting = second.session_state["job"]
    while "Waiting for a free training slot" not in waiting.message and time.monotonic() < deadline:
        time.sleep(0.1)
    second.run()
    assert waiting.status == "queued"
    assert any("Waiting for a free training slot" in i.value for i in second.info)

    job.stop()
    assert wait_for_job(first, "job").status == "stopped"
    deadline = time.monotonic() + 60
    while waiting.status == "queued" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert waiting.status == "running"  # it started by itself once the slot was free
    waiting.stop()
    wait_for_job(second, "job")

    first_run, second_run = job.result, waiting.result
    assert first_run.record["owner"] == first.session_state["session_id"]
    for at, mine, theirs in ((first, first_run, second_run), (second, second_run, first_run)):
        listed = open_page(at, "pages/runs.py").dataframe[0].value["id"].tolist()
        assert mine.id in listed and theirs.id not in listed
        assert "demo" in listed


def test_hosted_train_page_refuses_a_step_too_big_for_the_server(hosted):
    from test_app import open_page, start_app

    at = open_page(start_app(), "pages/train.py")
    at.sidebar.select_slider(key="image_size").set_value(224)
    at.sidebar.slider(key="conv_blocks").set_value(1)
    at.sidebar.select_slider(key="filters").set_value(128)
    at.sidebar.radio(key="head").set_value("global_average")
    at.sidebar.select_slider(key="batch_size").set_value(128)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert len(at.error) == 1 and "MB per step" in at.error[0].value
    assert not [b for b in at.button if b.label == "Start training"]
