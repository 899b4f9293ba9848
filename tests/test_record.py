"""The run record: every run.json written so far reads as typed data, round-trips, and a bad one is refused.

`tests/records/` holds run.json files exactly as CNN Lab wrote them before the record was typed
(commit 6e744f7, the schema's version 1): a completed hosted run with class weights (and the same
run mid-training, still "running"), one continued from it (`parent`), a stopped run and the same
run resumed to completion, a failed run, a fine-tuned backbone run (`phase`, `fine_tune`), a run
with an image that failed to decode, a sweep trial published to a team server and a teammate's
copy of it opened from there (`team.opened`). The shipped demo is older still.
"""

import json
import shutil
from pathlib import Path

import pytest

from cnnlab.data import SkippedFile
from cnnlab.model import ModelConfig
from cnnlab.model.precision import Precision
from cnnlab.runs.record import (
    SCHEMA_VERSION,
    DatasetInfo,
    FineTuning,
    HistoryRow,
    Metrics,
    RunRecord,
    SweepTrial,
    TeamCopy,
    read_record,
)
from cnnlab.runs.store import RunStore
from cnnlab.settings import DEMO_RUN_DIR
from cnnlab.training.config import TrainConfig

RECORDS = Path(__file__).resolve().parent / "records"
WRITTEN = sorted(p.stem for p in RECORDS.glob("*.json"))
EMPTY_SPLIT = {"train": [], "validation": [], "test": []}


def written(name: str) -> dict:
    return json.loads((RECORDS / f"{name}.json").read_text())


def demo() -> dict:
    return json.loads((DEMO_RUN_DIR / "run.json").read_text())


def test_the_fixtures_are_the_records_the_tests_name():
    assert WRITTEN == [
        "completed",
        "continued",
        "failed",
        "fine_tuned",
        "resumed",
        "running",
        "stopped",
        "sweep_trial",
        "team_copy",
        "unreadable",
    ]


@pytest.mark.parametrize("name", ["demo", *WRITTEN])
def test_every_record_written_so_far_reads_typed_and_round_trips(name):
    data = demo() if name == "demo" else written(name)
    record = read_record(data)
    assert "schema_version" not in data  # all written before the schema had a number
    assert record.id == data["id"] and record.name == data["name"] and record.status == data["status"]
    assert isinstance(record.dataset, DatasetInfo) and record.dataset.path == data["dataset"]["path"]
    assert isinstance(record.metrics, Metrics) and isinstance(record.class_names, tuple)
    assert all(isinstance(row, HistoryRow) and row.extra == {} for row in record.history)
    assert [row.to_dict() for row in record.history] == data["history"]  # rows come back key for key
    assert record.precision is None or isinstance(record.precision, Precision)
    assert isinstance(ModelConfig.from_dict(dict(record.model_config)), ModelConfig)
    assert isinstance(TrainConfig.from_dict(dict(record.train_config)), TrainConfig)

    again = record.to_dict()
    assert again["schema_version"] == SCHEMA_VERSION
    assert read_record(json.loads(json.dumps(again))) == record
    # Writing adds the fields an older record lacked, and changes nothing it had, but for the parts
    # that now say their defaults.
    said = {key for key in data if data[key] != again[key]}
    assert said <= {"dataset", "sweep", "team"}
    for key in said:
        assert {k: v for k, v in again[key].items() if k in data[key]} == data[key]


def test_the_demo_from_before_precision_weights_and_phases_gets_defaults():
    record = read_record(demo())
    assert record.precision is None and record.class_weights is None and record.phase is None
    assert record.fine_tune is None and record.team is None and record.sweep is None and record.parent is None
    assert record.metrics.test_accuracy == 0.975 and record.metrics.test_balanced_accuracy is None
    assert record.dataset.builtin == "sample" and record.dataset.num_unreadable == 0 and record.dataset.unreadable == ()
    assert record.dataset.name is None and record.dataset.version is None and record.dataset.versions_folder == ""
    assert record.history[0] == HistoryRow(
        epoch=1,
        loss=1.5014853477478027,
        accuracy=0.3017857074737549,
        val_loss=1.2455804347991943,
        val_accuracy=0.4166666567325592,
        learning_rate=0.0010000000474974513,
        seconds=4.246,
        images_per_s=437.2,
        partial=False,
    )
    assert record.history[0].images_seen is None and record.history[0].phase is None
    assert record.best_epoch == 9 and record.num_train == 1680 and record.duration_s == 46.57


def test_the_fields_of_each_kind_of_run_come_out_typed():
    completed = read_record(written("completed"))
    assert completed.owner == "visitor-1" and completed.class_weights == {"cats": 1.0, "dogs": 1.0, "owls": 1.0}
    assert completed.precision == Precision("float32", "float32", "chosen", "CPU: AMD EPYC, 2 cores")
    assert completed.class_names == ("cats", "dogs", "owls") and completed.dataset.counts == {
        "cats": 8,
        "dogs": 8,
        "owls": 8,
    }
    assert completed.best_epoch == 2 and completed.num_train == 18 and completed.pid == 18522

    continued = read_record(written("continued"))
    assert continued.parent == completed.id and continued.initial_epoch == 2 and continued.planned_epochs == 3
    assert [row.epoch for row in continued.history] == [3]

    tuned = read_record(written("fine_tuned"))
    assert tuned.phase == "fine_tune" and [row.phase for row in tuned.history] == ["head", "fine_tune"]
    assert isinstance(tuned.fine_tune, FineTuning) and tuned.fine_tune.start_epoch == 2
    assert tuned.fine_tune.learning_rate == pytest.approx(1e-4) and len(tuned.fine_tune.layers) == 4

    trial = read_record(written("sweep_trial"))
    assert trial.sweep == SweepTrial("study-one", 0) and trial.precision.policy == "mixed_bfloat16"
    assert trial.team == TeamCopy("93346ee71d106225ba015089", "b8fb4b783f9b4f839e1a813456e5b006", published=True)

    copy = read_record(written("team_copy"))
    assert copy.team == TeamCopy(trial.team.key, trial.team.run_id, published=True, opened=True)
    assert copy.id == trial.team.run_id and copy.history == trial.history

    stopped, resumed = read_record(written("stopped")), read_record(written("resumed"))
    assert stopped.status == "stopped" and stopped.metrics.test_accuracy is not None
    assert resumed.id == stopped.id and [row.epoch for row in resumed.history] == [1, 2, 3]

    failed = read_record(written("failed"))
    assert failed.status == "failed" and failed.error == "RuntimeError: disk on fire"
    assert failed.metrics == Metrics() and failed.best_epoch is None

    running = read_record(written("running"))
    assert running.status == "running" and running.metrics == Metrics() and running.duration_s is None

    unreadable = read_record(written("unreadable")).dataset
    assert unreadable.num_unreadable == 1
    assert unreadable.unreadable == (SkippedFile("cats/truncated.png", unreadable.unreadable[0].reason),)


def test_a_store_lists_and_opens_every_kind_of_run(tmp_path):
    models = tmp_path / "models"
    for name in WRITTEN:
        folder = models / name
        folder.mkdir(parents=True)
        shutil.copy(RECORDS / f"{name}.json", folder / "run.json")
    store = RunStore(models, demo=DEMO_RUN_DIR)
    runs = {run.path.name: run for run in store.list()}
    assert set(runs) == {*WRITTEN, "demo"}
    assert runs["running"].status == "interrupted"  # no heartbeat: its training is gone
    assert runs["demo"].is_demo and not runs["completed"].is_demo
    assert runs["team_copy"].is_team_copy and not runs["sweep_trial"].is_team_copy
    assert {r.path.name for r in store.list(sweep="study-one")} == {"team_copy", "sweep_trial"}
    assert "completed" in {r.path.name for r in RunStore(models, owner="visitor-1").list()}
    assert "completed" not in {r.path.name for r in RunStore(models, owner="visitor-2").list()}
    for run in runs.values():
        assert run.model_config() == ModelConfig.from_dict(dict(run.record.model_config))
        assert run.train_config() == TrainConfig.from_dict(dict(run.record.train_config))
        assert run.summary()["id"] == run.id
    assert runs["fine_tuned"].summary()["backbone"] == "mobilenet_v3_small"
    assert runs["demo"].summary()["image_size"] == "64x64" and runs["demo"].summary()["epochs"] == 10
    for ref, why in (("team_copy", "read-only here"), ("demo", "demo model is part of the app")):
        with pytest.raises(ValueError, match=why):
            store.rename(runs[ref].id, "renamed")
        with pytest.raises(ValueError, match=why):
            store.delete(runs[ref].id)
    assert "demo" not in {run.path.name for run in RunStore(models).list()}  # no demo unless given


def test_an_update_writes_the_typed_record_and_reads_back_the_same(tmp_path):
    store = RunStore(tmp_path)
    run = store.create(
        RunRecord(name="r", model_config={"image_size": (32, 32)}, sweep=SweepTrial("s", 1)), EMPTY_SPLIT
    )
    assert run.record.model_config == {"image_size": [32, 32]}  # as on disk: JSON has lists
    run.append_history(HistoryRow(epoch=1, loss=0.5, extra={"top5": 0.9}))
    run.update(status="completed", metrics=Metrics(test_accuracy=0.5), team=TeamCopy("k", None))
    on_disk = json.loads((run.path / "run.json").read_text())
    assert on_disk["schema_version"] == SCHEMA_VERSION and on_disk["sweep"] == {
        "study": "s",
        "trial": 1,
        "retry_of": None,
    }
    assert on_disk["history"] == [{"epoch": 1, "loss": 0.5, "seconds": 0.0, "partial": False, "top5": 0.9}]
    assert on_disk["metrics"] == {"test_accuracy": 0.5}
    assert store.get(run.id).record == run.record
    assert run.history[0].metric("top5") == 0.9 and run.history[0].metric("loss") == 0.5
    assert run.history[0].metric("val_loss") is None and run.history[0].metric("nothing") is None
    with pytest.raises(TypeError, match=r"must be a TeamCopy"):
        run.update(team={"key": "k"})  # a dict where a part of the record belongs is refused, not written
    assert store.get(run.id).record.team == TeamCopy("k", None)


def test_unknown_keys_are_ignored_except_in_history_rows():
    data = {**written("completed"), "from_the_future": 1}
    data["dataset"] = {**data["dataset"], "new_part": "x"}
    data["history"] = [{**row, "val_top5": 0.5} for row in data["history"]]
    record = read_record(data)
    again = record.to_dict()
    assert "from_the_future" not in again and "new_part" not in again["dataset"]
    assert [row.extra for row in record.history] == [{"val_top5": 0.5}] * 2
    assert [row["val_top5"] for row in again["history"]] == [0.5, 0.5]


BAD = [
    ("status", 3, r"status must be a string\. Received: status=3$"),
    ("pid", "18522", r"pid must be a whole number\. Received: pid='18522'$"),
    ("class_names", "cats", r"class_names must be a list\. Received: class_names='cats'$"),
    ("metrics", [0.5], r"metrics must be an object\. Received: metrics=\[0\.5\]$"),
    (
        "dataset",
        {"num_images": True},
        r"dataset\.num_images must be a whole number\. Received: dataset\.num_images=True$",
    ),
    ("history", [{"epoch": 1}, {"epoch": 2, "loss": "low"}], r"history\[1\]\.loss must be a number\. Received: "),
    ("sweep", {"trial": 0}, r"sweep\.study must be given\. Received: sweep\.study=None$"),
    ("team", {"published": "yes"}, r"team\.published must be true or false\. Received: team\.published='yes'$"),
    ("fine_tune", {"start_epoch": 2, "layers": [1]}, r"fine_tune\.layers\[0\] must be a string\. Received: "),
    ("precision", {"policy": "float32"}, r"precision\.requested must be given"),
    ("schema_version", SCHEMA_VERSION + 1, r"open it with a newer CNN Lab\. Received: schema_version=3$"),
]


@pytest.mark.parametrize(("key", "value", "message"), BAD, ids=[b[0] for b in BAD])
def test_a_value_of_the_wrong_type_is_a_one_line_error_and_the_store_skips_the_run(tmp_path, key, value, message):
    data = {**written("completed"), key: value}
    with pytest.raises(ValueError, match=message) as info:
        read_record(data)
    assert "\n" not in str(info.value)
    good = RunStore(tmp_path).create(RunRecord(name="good"), EMPTY_SPLIT)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "run.json").write_text(json.dumps(data))
    assert [run.id for run in RunStore(tmp_path).list()] == [good.id]


def test_a_record_that_is_not_an_object_is_refused():
    with pytest.raises(ValueError, match=r"must be a JSON object\. Received: record=\[1, 2\]$"):
        read_record([1, 2])
