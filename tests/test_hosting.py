"""Hosted-mode housekeeping: ended sessions lose their uploads and runs; live ones keep them."""

import io
import os
import re
import stat
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from cnnlab.runs import heartbeat
from cnnlab.runs.record import DatasetInfo, RunRecord
from cnnlab.runs.store import RunStore
from cnnlab.server import hosting
from cnnlab.settings import check_upload_size, load_settings
from helpers import REPO_ROOT


def make_run(store: RunStore, owner: str | None):
    run = store.create(RunRecord(owner=owner), {"train": [], "validation": [], "test": []})
    run.update(status="completed")
    return run


def test_ended_sessions_are_cleaned_and_live_ones_kept(tmp_path):
    cache, store = tmp_path / "cache", RunStore(tmp_path / "models")
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


def test_an_ended_visitors_datasets_go_with_them_and_a_live_ones_stay(tmp_path):
    from cnnlab.data import versions

    cache, store, datasets = tmp_path / "cache", RunStore(tmp_path / "models"), tmp_path / "datasets"
    for session in ("alive", "gone", "datasets-only"):
        versions.new_dataset("mine", ["a", "b"], hosting.visitor_datasets_dir(datasets, session))
        hosting.touch_session(cache, session)
    old = time.time() - 7200
    for session in ("gone", "datasets-only"):  # one with nothing else left on the server
        os.utime(cache / hosting.HEARTBEATS / session, (old, old))

    assert hosting.cleanup_ended_sessions(cache, store, max_idle_s=3600, datasets=datasets) == ["datasets-only", "gone"]
    assert [p.name for p in (datasets / hosting.VISITORS).iterdir()] == ["alive"]


def test_an_ended_sessions_decoded_images_go_with_its_upload(tmp_path):
    from cnnlab import data
    from helpers import write_dataset

    cache = tmp_path / "cache"
    mine = write_dataset(hosting.uploads_dir(cache, "alive") / "abc" / "pets", per_class=3)
    theirs = write_dataset(hosting.uploads_dir(cache, "gone") / "def" / "zoo", classes=("owls", "dogs"), per_class=4)
    for root in (mine, theirs):
        data.prepare(data.scan(root, cache=cache), (16, 16), cache=cache)
    hosting.touch_session(cache, "alive")
    kept = sorted((cache / "prepared").glob(f"{data.scan(mine, cache=cache).fingerprint}-*.npy"))
    assert len(kept) == 1 and len(list((cache / "prepared").glob("*.npy"))) == 2

    hosting.cleanup_ended_sessions(cache, RunStore(tmp_path / "models"))

    assert sorted((cache / "prepared").glob("*.npy")) == kept
    assert not hosting.uploads_dir(cache, "gone").exists()


def test_a_running_training_keeps_its_idle_visitor_until_it_dies(tmp_path):
    cache, store = tmp_path / "cache", RunStore(tmp_path / "models")
    upload = hosting.uploads_dir(cache, "tab-closed") / "abc"
    upload.mkdir(parents=True)
    done = make_run(store, "tab-closed")
    training = store.create(RunRecord(owner="tab-closed"), {"train": [], "validation": [], "test": []})
    assert training.status == "running"
    assert hosting.cleanup_ended_sessions(cache, store) == []  # no heartbeat from a tab, but a training
    assert {r.id for r in store.list()} == {done.id, training.id} and upload.is_dir()

    stale = time.time() - 2 * heartbeat.STALE_S  # the training process died (the server restarted)
    os.utime(training.path / heartbeat.HEARTBEAT_FILE, (stale, stale))
    assert hosting.cleanup_ended_sessions(cache, store) == ["tab-closed"]
    assert store.list() == [] and not upload.exists()


def test_a_visitors_store_holds_only_their_runs_and_the_demo(tmp_path):
    from cnnlab.settings import DEMO_RUN_DIR

    models = tmp_path / "models"
    host_run, theirs = make_run(RunStore(models), None), make_run(RunStore(models), "s2")
    mine = RunStore(models, demo=DEMO_RUN_DIR, owner="s1")
    own = make_run(mine, None)  # a new run in a visitor's store is theirs, whatever the record said
    assert own.record.owner == "s1"
    listed = mine.list()
    assert {r.id for r in listed if not r.is_demo} == {own.id} and any(r.is_demo for r in listed)
    for other in (host_run, theirs):
        for act in (lambda ref: mine.get(ref), lambda ref: mine.delete(ref), lambda ref: mine.rename(ref, "x")):
            with pytest.raises(ValueError, match="No run found"):
                act(other.id)
        with pytest.raises(ValueError, match="No run found"):
            mine.get(other.path)  # by folder path too
    assert {r.id for r in RunStore(models).list()} == {host_run.id, theirs.id, own.id}


def test_a_resume_from_a_visitors_page_cannot_reach_another_run(tmp_path):
    from cnnlab.runs.workspace import Workspace
    from cnnlab.server import jobs

    models = tmp_path / "models"
    host_run = make_run(RunStore(models), None)
    settings = jobs.JobSettings(Workspace(RunStore(models, owner="s1"), tmp_path / "cache", owner="s1"))
    with pytest.raises(ValueError, match="No run found"):
        jobs.resume_job(host_run.id, settings)


def test_queued_jobs_and_label_checks_keep_their_visitor(tmp_path):
    cache, store = tmp_path / "cache", RunStore(tmp_path / "models")
    datasets = tmp_path / "datasets"
    for session in ("queued", "gone"):
        (hosting.uploads_dir(cache, session) / "abc").mkdir(parents=True)
        (hosting.visitor_datasets_dir(datasets, session) / "shots" / "versions").mkdir(parents=True)
        make_run(store, session)
    old = time.time() + 2 * 3600  # both idle for two hours, no training running
    ended = hosting.cleanup_ended_sessions(cache, store, now=old, busy={"queued"}, datasets=datasets)
    assert ended == ["gone"]
    assert [r.record.owner for r in store.list()] == ["queued"]
    assert hosting.uploads_dir(cache, "queued").is_dir() and not hosting.uploads_dir(cache, "gone").exists()
    assert hosting.visitor_datasets_dir(datasets, "queued").is_dir()
    assert not hosting.visitor_datasets_dir(datasets, "gone").exists()


def test_busy_owners_are_the_owners_of_unfinished_jobs():
    import threading

    from cnnlab.server import jobs

    release = threading.Event()
    job = jobs.Job(lambda job: release.wait(30), label="check", owner="v-busy", run_id="busy-owner-test").start()
    try:
        assert "v-busy" in jobs.busy_owners()
    finally:
        release.set()
    deadline = time.time() + 30
    while not job.done and time.time() < deadline:
        time.sleep(0.05)
    assert "v-busy" not in jobs.busy_owners()


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
    from cnnlab.common.files import writer_tag
    from cnnlab.data import prepcache

    cache, models = tmp_path / "cache", tmp_path / "models"
    dead = writer_tag(999999999)  # a process of this machine that is gone
    killed = [
        prepcache.folder(cache) / f".key.npy.{dead}-abc.tmp.npy",  # a preparation
        hosting.uploads_dir(cache, "s1") / f".0123abcd.{dead}-abc.tmp",  # an extraction
        models / "run1" / "exports" / f".savedmodel-1.{dead}-abc.tmp",  # an export
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
    from helpers import write_dataset

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
    from cnnlab import data
    from cnnlab.server import quota
    from helpers import tiny_model_config, write_dataset

    cache = tmp_path / "cache"
    mine = write_dataset(hosting.uploads_dir(cache, "s1") / "aaa", per_class=4)
    sample_like = write_dataset(tmp_path / "shared", per_class=6, seed=3)
    config = tiny_model_config()
    arrays = {}
    for root in (mine, sample_like):
        report = data.scan(root, cache=cache)
        arrays[root] = data.prepare(report, config.image_size, cache=cache).cache_path
        run = run_store.create(
            RunRecord(
                owner="s1",
                model_config=config.to_dict(),
                dataset=DatasetInfo(path=str(report.root), fingerprint=report.fingerprint),
            ),
            {"train": [], "validation": [], "test": []},
        )
        run.update(status="completed")
    other = run_store.create(RunRecord(owner="s2"), {"train": [], "validation": [], "test": []})

    usage = quota.session_usage(cache, run_store, "s1", budget_mb=1)

    uploads = sum(p.stat().st_size for p in mine.rglob("*") if p.is_file())
    assert usage.uploads == uploads
    assert usage.decoded == arrays[mine].stat().st_size  # not the shared dataset's
    assert arrays[sample_like].stat().st_size > usage.decoded
    runs = [r for r in run_store.list() if r.record.owner == "s1"]
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
    st.cache_resource.clear()  # a fresh server: no settings or dataset an earlier test's "person" left on it
    details = st.get_option("client.showErrorDetails")
    yield isolated_dirs[1]
    st.set_option("client.showErrorDetails", details)  # the hosted app sets it for the whole server


def test_a_hosted_visitor_sees_no_traceback_or_path_of_an_unexpected_error(hosted, tmp_path, monkeypatch, capfd):
    from helpers import APP, APP_TIMEOUT

    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the cache folder should be")  # a server fault no page expects
    monkeypatch.setenv("CNNLAB_CACHE_DIR", str(blocker / "cache"))
    shown = {}
    for mode in ("local", "hosted"):
        monkeypatch.setenv("CNNLAB_HOSTED", "1" if mode == "hosted" else "0")
        capfd.readouterr()
        at = AppTest.from_file(APP, default_timeout=APP_TIMEOUT).run().switch_page("pages/data.py").run()
        assert len(at.exception) == 1
        shown[mode] = at.exception[0]
        assert "NotADirectoryError" in "".join(capfd.readouterr())  # the server log keeps the whole error
    assert str(blocker) in shown["local"].message and str(REPO_ROOT) in "".join(shown["local"].stack_trace)
    assert shown["hosted"].stack_trace == []
    assert "redacted" in shown["hosted"].message and "/" not in shown["hosted"].message
    assert shown["hosted"].proto.type == "NotADirectoryError"


def test_a_visitors_id_is_kept_by_their_browser_and_a_shared_address_hands_it_to_nobody(hosted):
    from helpers import APP, APP_TIMEOUT, start_app

    first = start_app()
    visitor = first.session_state["visitor"]
    assert dict(first.query_params) == {}  # nothing in the address to copy
    (script,) = [h.value for h in first.html if "document.cookie" in h.value]  # the browser keeps it instead
    assert f"cnnlab_visitor={visitor}; path=/;" in script and "samesite=strict" in script
    assert any("belong to this browser" in c.value for c in first.caption)  # the home page says so

    # Someone opening an address that names the visitor (as addresses once did) is someone else.
    shared = AppTest.from_file(APP, default_timeout=APP_TIMEOUT)
    shared.query_params["visitor"] = visitor
    shared.run()
    assert not shared.exception and shared.session_state["visitor"] != visitor


def test_hosted_data_page_offers_no_server_folder(hosted):
    from helpers import open_page, start_app

    at = open_page(start_app(), "pages/data.py")
    assert "Server folder" not in at.radio(key="dataset-source").options
    assert "Upload a zip" in at.radio(key="dataset-source").options


def test_hosted_oversized_upload_gets_a_message(hosted, monkeypatch):
    from helpers import open_page, start_app

    monkeypatch.setenv("CNNLAB_MAX_UPLOAD_MB", "1")
    at = open_page(start_app(), "pages/data.py")
    at.radio(key="dataset-source").set_value("Upload a zip").run()
    at.file_uploader(key="zip-upload").set_value(("big.zip", os.urandom(3 * 2**19), "application/zip")).run()
    assert not at.exception, [e.value for e in at.exception]
    assert len(at.error) == 1 and "'big.zip' is 1.5 MB, over the 1 MB upload limit" in at.error[0].value
    assert at.subheader[0].value == "Built-in sample (shapes)"  # the session keeps its dataset


@pytest.mark.slow
def test_a_second_training_waits_its_turn_and_sessions_see_only_their_runs(hosted):
    from helpers import open_page, start_app, tiny_training, wait_for_job

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
    assert first_run.record.owner == first.session_state["visitor"] and "visitor" not in first.query_params
    for at, mine, theirs in ((first, first_run, second_run), (second, second_run, first_run)):
        listed = open_page(at, "pages/runs.py").dataframe[0].value["id"].tolist()
        assert mine.id in listed and theirs.id not in listed
        assert "demo" in listed


def test_hosted_train_page_refuses_a_step_too_big_for_the_server(hosted):
    from helpers import open_page, start_app

    at = open_page(start_app(), "pages/train.py")
    at.sidebar.select_slider(key="image_size").set_value(224)
    at.sidebar.slider(key="conv_blocks").set_value(1)
    at.sidebar.select_slider(key="filters").set_value(128)
    at.sidebar.radio(key="head").set_value("global_average")
    at.sidebar.select_slider(key="batch_size").set_value(128)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert len(at.error) == 1 and "MB per step" in at.error[0].value
    assert "start-training" not in [b.key for b in at.button]


@pytest.mark.slow
def test_a_visitor_keeps_identity_training_and_settings_across_a_reload_and_strangers_see_none(hosted):
    from streamlit.testing.v1 import AppTest

    from helpers import APP, APP_TIMEOUT, open_page, start_app, tiny_training, wait_for_epochs, wait_for_job

    def reload(visitor: str) -> AppTest:
        # A reloaded page's new session gets the visitor's id from their browser's cookie, which AppTest
        # cannot send: it is given as that session's own (test_e2e_reload.py sends the real cookie).
        at = AppTest.from_file(APP, default_timeout=APP_TIMEOUT)
        at.session_state["visitor"] = visitor
        return at.run()

    first = open_page(start_app(), "pages/train.py")
    visitor = first.session_state["visitor"]
    assert re.fullmatch(r"[0-9a-f]{16}", visitor)
    tiny_training(first, epochs=60)
    job = first.session_state["job"]
    wait_for_epochs(job, 1)

    stranger = open_page(start_app(), "pages/train.py")
    assert stranger.session_state["visitor"] != visitor and "job" not in stranger.session_state
    assert not [b for b in stranger.button if b.label == "Stop"]
    assert stranger.sidebar.number_input(key="epochs").value == 10  # the defaults, not the other visitor's
    assert job.run_id not in open_page(stranger, "pages/runs.py").dataframe[0].value["id"].tolist()

    reloaded = open_page(reload(visitor), "pages/train.py")
    assert reloaded.session_state["visitor"] == visitor and reloaded.session_state["job"] is job
    assert reloaded.sidebar.number_input(key="epochs").value == 60
    next(b for b in reloaded.button if b.label == "Stop").click().run()
    assert wait_for_job(reloaded, "job", timeout=60).status == "stopped"
    listed = open_page(reloaded, "pages/runs.py").dataframe[0].value
    assert listed.set_index("id").loc[job.run_id, "status"] == "stopped"


# ------------------------------------------------------ hostile uploads through the Data page


def disk(cache) -> dict[str, int]:
    """Every file under the cache with its size, except the sessions' heartbeats."""
    return {
        str(p.relative_to(cache)): p.stat().st_size
        for p in cache.rglob("*")
        if p.is_file() and p.relative_to(cache).parts[0] != hosting.HEARTBEATS
    }


def zip_of(members: dict, compression=zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as zf:
        for name, content in members.items():
            zf.writestr(name, content)
    return buffer.getvalue()


def noise_png(size: int, seed: int) -> bytes:
    from helpers import image_bytes

    return image_bytes(np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8))


def noise_dataset(seed: int, per_class: int = 10, size: int = 80) -> bytes:
    """A zip of three classes of noise images (incompressible: about 19 KB each at 80 px)."""
    return zip_of(
        {
            f"{c}/{c}_{i}.png": noise_png(size, seed * 1000 + k * 100 + i)
            for k, c in enumerate(("cats", "dogs", "owls"))
            for i in range(per_class)
        }
    )


def hostile_zips() -> dict[str, tuple[bytes, str]]:
    """Each refusal the Data page must give, as (zip, part of the message)."""
    symlink = zipfile.ZipInfo("cats/link.png")
    symlink.external_attr = (stat.S_IFLNK | 0o777) << 16
    good = {"cats/a.png": noise_png(16, 1), "dogs/b.png": noise_png(16, 2)}
    encrypted = bytearray(zip_of(good))
    for signature, flag_offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        at = encrypted.find(signature)
        while at != -1:
            encrypted[at + flag_offset] |= 0x1
            at = encrypted.find(signature, at + 4)
    corrupt = bytearray(zip_of({"cats/a.png": b"A" * 5000, "dogs/b.png": noise_png(16, 2)}))
    start = corrupt.index(b"cats/a.png") + len("cats/a.png")
    corrupt[start + 5 : start + 25] = bytes(20)
    forged = bytearray(zip_of({"cats/a.png": os.urandom(2 << 20), "dogs/b.png": b"b"}, zipfile.ZIP_STORED))
    for signature, size_offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        at = forged.find(signature)
        forged[at + size_offset : at + size_offset + 4] = (100).to_bytes(4, "little")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr(symlink, "/etc/passwd")
        zf.writestr("cats/a.png", noise_png(16, 3))
    return {
        "not a zip": (os.urandom(4000), "not a readable zip"),
        "too many members": (zip_of({f"cats/{i}.png": b"" for i in range(20_001)}), "more than the limit of 20000"),
        "over the budget": (
            zip_of({f"cats/{i}.png": bytes((1 << 20) - 1) for i in range(40)}),
            "left of your disk budget",
        ),
        "499 members of 1 MiB": (
            zip_of({f"cats/{i}.png": bytes((1 << 20) - 1) for i in range(499)}),
            "left of your disk budget",
        ),
        "many small members": (
            zip_of({f"cats/{i}.png": bytes((1 << 20) - 1) for i in range(9)}),
            "times overall",
        ),
        "one member ratio": (zip_of({"cats/zeros.png": bytes(2 << 20), **good}), "zip bomb"),
        "deep path": (zip_of({"a/" * 40 + "x.png": b"x", **good}), "41 levels deep"),
        "long name": (zip_of({"cats/" + "n" * 5000 + ".png": b"x", **good}), "name over 255 bytes"),
        "path traversal": (zip_of({"../../evil.png": b"x", **good}), "outside its own folder"),
        "absolute path": (zip_of({"/etc/evil.png": b"x", **good}), "outside its own folder"),
        "symlink member": (buffer.getvalue(), "symbolic link"),
        "encrypted": (bytes(encrypted), "password-protected"),
        "corrupt member": (bytes(corrupt), "corrupt"),
        "forged sizes": (bytes(forged), "corrupt|limit"),
        "non-image files": (zip_of({"cats/a.txt": b"meow", "dogs/b.csv": b"1,2"}), "at least two classes"),
        "one class only": (
            zip_of({"cats/a.png": noise_png(16, 4), "cats/b.png": noise_png(16, 5)}),
            "at least two classes",
        ),
        "decode budget": (
            zip_of({"cats/a.png": image_bytes_flat(4000), "dogs/b.png": image_bytes_flat(4000)}),
            "megapixels",
        ),
    }


def image_bytes_flat(side: int) -> bytes:
    from helpers import image_bytes

    return image_bytes(np.full((side, side, 3), 200, dtype=np.uint8))


ABSOLUTE_PATH = re.compile(r"(?<![\w.~:/-])/[\w.-]+/")


@pytest.mark.slow
def test_every_hostile_upload_is_refused_briefly_without_a_server_path_and_leaves_nothing(
    hosted, monkeypatch, app_cache
):
    from helpers import open_page, start_app

    monkeypatch.setenv("CNNLAB_MAX_UPLOAD_MB", "5")  # a 50 MB cap on what a zip may expand to
    monkeypatch.setenv("CNNLAB_MAX_SESSION_MB", "30")  # tighter than the cap: the budget speaks first
    monkeypatch.setenv("CNNLAB_MAX_DATASET_MEGAPIXELS", "20")
    at = open_page(start_app(), "pages/data.py")
    at.radio(key="dataset-source").set_value("Upload a zip").run()
    uploads = hosting.uploads_dir(app_cache, at.session_state["visitor"])
    forbidden = [str(app_cache), str(hosted), str(uploads), "/uploads/", "/prepared/", str(Path.home())]
    before = disk(app_cache)

    for case, (content, expected) in hostile_zips().items():
        at.file_uploader(key="zip-upload").set_value((f"{case}.zip", content, "application/zip")).run()
        assert not at.exception, (case, [e.value for e in at.exception])
        errors = [e.value for e in at.error]
        assert len(errors) == 1 and re.search(expected, errors[0]), (case, errors)
        message = errors[0]
        assert len(message) <= 300, (case, len(message), message)
        assert not any(f in message for f in forbidden) and not ABSOLUTE_PATH.search(message), (case, message)
        assert disk(app_cache) == before, case  # nothing extracted, decoded or cached stayed behind
        assert at.subheader[0].value == "Built-in sample (shapes)", case

    at.file_uploader(key="zip-upload").set_value(
        ("fine.zip", noise_dataset(seed=7, per_class=3, size=16), "application/zip")
    ).run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert at.subheader[0].value == "Upload: fine.zip"
    added = set(disk(app_cache)) - set(before)
    # The upload itself, its scan, and what the Data page's look for copies keeps by content.
    assert added and all(p.startswith(("uploads/", "scans/", "image-hashes/")) for p in added)


def upload(at, name: str, content: bytes):
    at.file_uploader(key="zip-upload").set_value((name, content, "application/zip")).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


@pytest.mark.slow
def test_a_visitor_who_fills_their_budget_leaves_another_free_to_upload_and_train(hosted, monkeypatch, app_cache):
    from helpers import open_page, start_app, tiny_training, wait_for_job

    monkeypatch.setenv("CNNLAB_MAX_SESSION_MB", "4")
    first, second = (open_page(start_app(), "pages/data.py") for _ in range(2))
    for at in (first, second):
        at.radio(key="dataset-source").set_value("Upload a zip").run()
    # About 2.2 MB each: one fits a 4 MB budget with a tiny training (1.3 MB of model and
    # checkpoints at their peak), two do not.
    one, two = noise_dataset(seed=1, per_class=40), noise_dataset(seed=2, per_class=40)

    upload(first, "one.zip", one)
    assert first.subheader[0].value == "Upload: one.zip" and not first.error
    bar = first.get("progress")[0].proto
    assert (
        re.search(r"2\.\d MB of your 4\.0 MB disk budget used \(uploads 2\.\d MB", bar.text) and 50 <= bar.value <= 60
    )
    before = disk(app_cache)
    upload(first, "two.zip", two)
    assert len(first.error) == 1 and "left of your disk budget; delete uploads (Data page)" in first.error[0].value
    assert disk(app_cache) == before and first.subheader[0].value == "Upload: one.zip"

    upload(second, "two.zip", two)  # the other visitor's budget is their own
    assert not second.error and second.subheader[0].value == "Upload: two.zip"
    open_page(second, "pages/train.py")
    tiny_training(second, epochs=1)
    job = wait_for_job(second, "job")
    assert job.status == "completed" and job.result.model_path.exists(), job.error
    second.sidebar.select_slider(key="image_size").set_value(224).run()  # 4.5 MB of decoded images, a bigger model
    second.button(key="start-training").click().run()
    assert len(second.error) == 1 and re.match(
        r"This training needs about \d+\.\d MB but 0\.\d MB is left", second.error[0].value
    )
    assert "choose a smaller image size" in second.error[0].value and second.session_state["job"] is job
    assert job.result.record.dataset.path.startswith(
        str(hosting.uploads_dir(app_cache, second.session_state["visitor"]).resolve())
    )

    # The first visitor makes room as the message says: another dataset, then delete the old upload.
    first.radio(key="dataset-source").set_value("Built-in sample").run()
    next(b for b in first.button if b.label == "Use the built-in sample").click().run()
    first.button(key="delete-uploads").click().run()
    assert not first.exception, [e.value for e in first.exception]
    assert not list(hosting.uploads_dir(app_cache, first.session_state["visitor"]).glob("*"))
    assert "(uploads 0 bytes," in first.get("progress")[0].proto.text
    first.radio(key="dataset-source").set_value("Upload a zip").run()
    upload(first, "two.zip", two)
    assert not first.error and first.subheader[0].value == "Upload: two.zip"


def test_a_training_stopped_before_its_first_epoch_says_so_and_selects_nothing(hosted, app_cache):
    from cnnlab.runs.store import RunStore
    from cnnlab.runs.workspace import Workspace
    from cnnlab.server import jobs
    from cnnlab.training.plan import training_plan
    from helpers import open_page, start_app, tiny_model_config, tiny_train_config, wait_for_job

    at = start_app()
    settings = jobs.JobSettings(Workspace(RunStore(hosted), app_cache))
    plan = training_plan(
        at.session_state["dataset"].path if "dataset" in at.session_state else str(sample_path(app_cache)),
        tiny_model_config(),
        tiny_train_config(epochs=3),
        workspace=settings.workspace,
    )
    job = jobs.training_job(plan, settings, tags={"owner": at.session_state["visitor"]})
    at.session_state["job"] = job.start()
    deadline = time.monotonic() + 60
    while job.status == "queued" and time.monotonic() < deadline:
        time.sleep(0.01)
    job.stop()  # Stop pressed while the data was being prepared (a job stopped before it starts is cancelled)
    wait_for_job(at, "job")
    assert job.status == "stopped" and job.result is not None and not job.result.model_path.exists()

    at = open_page(at, "pages/train.py")
    assert not at.success and len(at.warning) == 1
    assert "stopped before its first epoch ended, so no model was saved and nothing was selected" in at.warning[0].value
    assert not any("best weights were kept" in c.value for c in at.caption)
    at = open_page(at, "pages/evaluate.py")
    assert at.session_state["run_id"] != job.result.id  # Evaluate opens another run (the demo) and says which


def sample_path(cache):
    from cnnlab.data.sample import sample_dir

    return sample_dir(cache)


def test_a_killed_preparation_leaves_a_temporary_that_the_next_start_removes(make_dataset, tmp_path):
    import signal
    import subprocess
    import sys

    cache = tmp_path / "cache"
    root = make_dataset(per_class=40)
    code = (
        "from cnnlab import data; import sys; "
        f"data.prepare(data.scan({str(root)!r}), (512, 512), cache=__import__('pathlib').Path({str(cache)!r}))"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    worker = subprocess.Popen([sys.executable, "-c", code], env=env)
    deadline = time.monotonic() + 120
    while not list((cache / "prepared").glob(".*.tmp.npy")) and time.monotonic() < deadline:
        time.sleep(0.01)
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    left = list((cache / "prepared").glob(".*.tmp.npy"))
    finished = [p for p in (cache / "prepared").glob("*.npy") if not p.name.startswith(".")]
    assert len(left) == 1 and not finished  # killed mid-way

    app = str(Path(__file__).resolve().parent.parent / "streamlit_app.py")
    start = (
        "from streamlit.testing.v1 import AppTest; "
        f"at = AppTest.from_file({app!r}, default_timeout=120).run(); assert not at.exception"
    )
    env.update({"CNNLAB_CACHE_DIR": str(cache), "CNNLAB_MODELS_DIR": str(tmp_path / "models")})
    done = subprocess.run([sys.executable, "-c", start], env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    assert not left[0].exists()


def test_a_server_folder_never_follows_a_link_out_of_the_data_roots(app_cache, isolated_dirs, tmp_path, monkeypatch):
    from helpers import open_page, start_app, write_dataset

    roots = tmp_path / "roots"
    secret = write_dataset(tmp_path / "secret", classes=("private",), per_class=2)
    pets = write_dataset(roots / "pets", classes=("cats", "dogs"), per_class=3)
    (pets / "stolen").symlink_to(secret / "private", target_is_directory=True)
    (roots / "escape").symlink_to(secret, target_is_directory=True)
    monkeypatch.setenv("CNNLAB_CACHE_DIR", str(app_cache))
    monkeypatch.setenv("CNNLAB_MODELS_DIR", str(isolated_dirs[1]))
    monkeypatch.setenv("CNNLAB_DATA_ROOTS", str(roots))
    at = open_page(start_app(), "pages/data.py")
    at.radio(key="dataset-source").set_value("Server folder").run()

    at.text_input[0].set_value(str(roots / "escape")).run()
    next(b for b in at.button if b.label == "Use this folder").click().run()
    assert len(at.error) == 1 and "outside the allowed data folders" in at.error[0].value

    at.text_input[0].set_value(str(pets)).run()
    next(b for b in at.button if b.label == "Use this folder").click().run()
    assert not at.error and at.subheader[0].value == f"Folder: {pets}"
    assert int({m.label: m.value for m in at.metric}["Classes"]) == 2
    skipped = at.dataframe[0].value
    assert skipped.to_dict("records") == [
        {"file": "stolen", "reason": "symbolic link to outside the dataset folder (not followed)"}
    ]


def test_a_corrupt_image_in_an_upload_is_found_when_training_and_listed_on_both_pages(hosted):
    from helpers import open_page, start_app, tiny_training, wait_for_job

    members = {f"{c}/{c}_{i}.png": noise_png(16, k * 10 + i) for k, c in enumerate(("cats", "dogs")) for i in range(6)}
    whole = noise_png(16, 99)
    members["cats/cut.png"] = whole[: len(whole) // 2]  # a whole header, half its pixel data
    at = open_page(start_app(), "pages/data.py")
    at.radio(key="dataset-source").set_value("Upload a zip").run()
    upload(at, "cut.zip", zip_of(members))
    assert not at.error and at.subheader[0].value == "Upload: cut.zip"
    metrics = {m.label: m.value for m in at.metric}
    assert (metrics["Images"], metrics["Skipped files"]) == ("13", "0")  # accepted from the headers

    open_page(at, "pages/train.py")
    tiny_training(at, epochs=1)
    job = wait_for_job(at, "job")
    at.run()
    assert job.status == "completed", job.error
    assert "cats/cut.png" not in [p for part in job.result.split().values() for p in part]
    assert any(w.value.startswith("1 file(s) could not be decoded") for w in at.warning)
    left_out = next(d.value for d in at.dataframe if "reason" in d.value.columns).to_dict("records")
    assert [r["path"] for r in left_out] == ["cats/cut.png"]
    assert left_out[0]["reason"].startswith("is truncated or corrupt")

    open_page(at, "pages/data.py")
    metrics = {m.label: m.value for m in at.metric}
    assert (metrics["Images"], metrics["Skipped files"]) == ("12", "1")
    assert at.dataframe[0].value.to_dict("records") == [{"file": "cats/cut.png", "reason": left_out[0]["reason"]}]


def test_a_sweep_whose_trials_would_overfill_the_disk_budget_is_refused_before_it_starts(hosted, monkeypatch):
    from helpers import open_page, start_app, wait_for_job

    monkeypatch.setenv("CNNLAB_MAX_SESSION_MB", "60")
    at = open_page(start_app(), "pages/sweep.py")
    at.sidebar.number_input(key="sweep-trials").set_value(8).run()
    # Up to 3 conv blocks: one block at 64 px is a 17 MB model, and its run folder peaks at 10 times that.
    at.button(key="start-sweep").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert len(at.error) == 1, [e.value for e in at.error]
    message = at.error[0].value
    assert re.match(r"A sweep of 8 trials needs about \S+ [MG]B but 60\.0 MB is left", message), message
    assert "choose fewer trials or smaller image sizes" in message and not ABSOLUTE_PATH.search(message)
    assert "sweep_job" not in at.session_state

    at.sidebar.number_input(key="sweep-trials").set_value(1)
    at.select_slider(key="range-conv_blocks").set_value((3, 3)).run()  # a 4.6 MB model, 46 MB at its peak: it fits
    at.button(key="start-sweep").click().run()
    assert not at.error, [e.value for e in at.error]
    at.session_state["sweep_job"].stop()
    assert wait_for_job(at, "sweep_job").status in ("stopped", "completed")
