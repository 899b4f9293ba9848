"""Hosted-mode housekeeping: ended sessions lose their uploads and runs; live ones keep them."""

import os
import time

from cnnlab import hosting
from cnnlab.runs import RunStore
from cnnlab.settings import check_upload_size, load_settings

import pytest


def make_run(store: RunStore, owner: str | None):
    run = store.create({"owner": owner, "model_config": {}, "train_config": {}}, {"train": [], "validation": [], "test": []})
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


def test_a_run_still_training_is_not_deleted(tmp_path):
    cache, store = tmp_path / "cache", RunStore(tmp_path / "models", include_demo=False)
    run = store.create({"owner": "gone", "model_config": {}, "train_config": {}}, {"train": [], "validation": [], "test": []})
    assert run.status == "running"
    hosting.cleanup_ended_sessions(cache, store)
    assert [r.id for r in store.list()] == [run.id]


def test_hosted_upload_cap_is_a_clear_message():
    hosted = load_settings({"CNNLAB_HOSTED": "1"})
    check_upload_size("small.zip", 10 * 2**20, hosted)
    with pytest.raises(ValueError, match=r"'big.zip' is 60.0 MB, over the 50 MB upload limit.*Received: size="):
        check_upload_size("big.zip", 60 * 2**20, hosted)
