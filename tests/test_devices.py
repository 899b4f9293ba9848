"""Which devices train: one device without a strategy here, and a MirroredStrategy over two logical
CPU devices (the CPU split before TensorFlow starts, so in a process of its own) that trains,
predicts, stops and resumes to the uninterrupted result, and continues."""

import json
import os
from pathlib import Path

import pytest

import forked
from cnnlab.runs.record import RunRecord, read_record
from cnnlab.runs.workspace import Workspace
from cnnlab.settings import load_settings
from cnnlab.training.devices import Devices, choose_devices, per_device_batch, short_name, strategy_for
from cnnlab.training.plan import training_plan
from helpers import tiny_model_config, tiny_train_config, write_dataset

REPO_ROOT = Path(__file__).resolve().parent.parent

# Run in a process of its own (forked from one that imported TensorFlow but never ran it): the CPU
# must be split into two logical devices before TensorFlow initialises its devices, which any
# earlier training in the test process has done.
MIRRORED_SCRIPT = r"""
import json, sys, threading
from pathlib import Path

import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
)
sys.path.insert(0, sys.argv[2])  # the tests folder, for helpers

from cnnlab.deploy.prediction import predict
from cnnlab.runs.store import RunStore
from cnnlab.runs.workspace import Workspace
from cnnlab.training.engine import train
from cnnlab.training.hooks import TrainingHooks
from cnnlab.training.plan import training_plan
from cnnlab.training.resuming import continue_training, resume
from helpers import tiny_model_config, tiny_train_config

base = Path(sys.argv[1])
data_dir = base / "data"
model, config = tiny_model_config(dropout=0.25, flip="horizontal"), tiny_train_config(epochs=2, batch_size=8)
workspace = Workspace(RunStore(base / "models"), base / "cache", devices=("/cpu:0", "/cpu:1"))
plan = training_plan(data_dir, model, config, workspace=workspace)
whole = train(data_dir, model, config, workspace=workspace, precision=plan.precision)

stop = threading.Event()
stopped = train(
    data_dir,
    model,
    config,
    workspace=workspace,
    hooks=TrainingHooks(on_batch=lambda p: stop.set() if (p["epoch"], p["batch"]) == (2, 2) else None, stop_event=stop),
)
stopped_status = stopped.status
resumed = resume(stopped.id, workspace=workspace)
image = next((data_dir / "owls").iterdir())
child = continue_training(whole.id, 1, workspace=workspace)
found = predict(resumed.load_model(), resumed.class_names, resumed.model_config(), [image])[0]


def curves(run):
    return [[row.epoch, row.loss, row.val_loss, row.accuracy] for row in run.history]


print(json.dumps({
    "plan": plan.describe(),
    "devices": resumed.record.to_dict()["devices"],
    "whole_status": whole.status,
    "stopped_status": stopped_status,
    "resumed_status": resumed.status,
    "whole": curves(whole),
    "resumed": curves(resumed),
    "whole_test": whole.record.metrics.test_accuracy,
    "resumed_test": resumed.record.metrics.test_accuracy,
    "label": found.label,
    "child": [child.status, [row.epoch for row in child.history], child.record.to_dict()["devices"]["strategy"]],
}))
"""


@pytest.mark.slow
def test_a_mirrored_training_on_two_cpu_devices_trains_predicts_resumes_and_continues(tmp_path):
    write_dataset(tmp_path / "data", per_class=12)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = forked.run(["-c", MIRRORED_SCRIPT, str(tmp_path), str(REPO_ROOT / "tests")], tmp_path / "mirrored", env=env)
    assert done.poll() == 0, done.errors()[-3000:]
    result = json.loads(done.output().strip().splitlines()[-1])

    assert "Devices: 2 devices (/CPU:0, /CPU:1), MirroredStrategy, 4 images per device (batches of 8)" in result["plan"]
    assert result["devices"] == {
        "names": ["/CPU:0", "/CPU:1"],
        "strategy": "MirroredStrategy",
        "batch_size": 8,
        "per_device_batch": 4,
    }
    assert result["whole_status"] == "completed" and result["resumed_status"] == "completed"
    assert result["stopped_status"] == "stopped"
    # Stopped in epoch 2 and resumed under the strategy: each epoch once, as the uninterrupted run trained it.
    assert [row[0] for row in result["resumed"]] == [1, 2]
    assert sum(result["resumed"], []) == pytest.approx(sum(result["whole"], []), rel=1e-5)
    assert result["resumed_test"] == pytest.approx(result["whole_test"])
    assert result["label"] in ("cats", "dogs", "owls")
    assert result["child"] == ["completed", [3], "MirroredStrategy"]  # continued one more epoch under the strategy


def test_with_one_device_the_plan_says_so_and_no_strategy_is_used(tmp_path, run_store, cache_dir):
    import tensorflow as tf

    devices = choose_devices(32)
    assert devices == Devices(("/CPU:0",), "default", 32, 32)  # this machine has no GPU
    assert strategy_for(devices) is tf.distribute.get_strategy()
    assert not tf.distribute.has_strategy()
    data_dir = write_dataset(tmp_path / "data", per_class=6)
    plan = training_plan(data_dir, tiny_model_config(), tiny_train_config(), workspace=Workspace(run_store, cache_dir))
    assert "Devices: 1 device (/CPU:0), no distribution strategy, 8 images per batch" in plan.describe()


def test_a_trained_run_records_its_one_device(trained_run):
    assert trained_run["run"].record.devices == Devices(("/CPU:0",), "default", 8, 8)


def test_one_named_device_trains_alone_and_a_missing_one_is_refused():
    assert choose_devices(16, ("cpu:0",)) == Devices(("/CPU:0",), "OneDeviceStrategy", 16, 16)
    assert "1 device (/CPU:0), OneDeviceStrategy" in choose_devices(16, ("/device:CPU:0",)).describe()
    with pytest.raises(ValueError, match=r"Device /GPU:3 is not on this machine, which has /CPU:0.*Received: devices="):
        choose_devices(16, ("/GPU:3",))


def test_a_batch_that_does_not_split_evenly_is_refused():
    assert per_device_batch(32, 2) == 16
    with pytest.raises(
        ValueError, match=r"batch of 30 images does not split evenly over 4 devices.*such as 28.*batch_size=30$"
    ):
        per_device_batch(30, 4)


def test_device_names_in_any_spelling_and_the_setting():
    assert [short_name(n) for n in ("/gpu:1", "GPU:0", "/device:CPU:2", " cpu:0 ")] == [
        "/GPU:1",
        "/GPU:0",
        "/CPU:2",
        "/CPU:0",
    ]
    with pytest.raises(ValueError, match=r"CPU or GPU and its number.*Received: device='tpu:0'"):
        short_name("tpu:0")
    assert load_settings({"CNNLAB_DEVICES": "/gpu:0, /gpu:1"}).devices == ("/GPU:0", "/GPU:1")
    assert load_settings({}).devices == ()
    with pytest.raises(ValueError, match=r"CNNLAB_DEVICES must list devices.*Received: CNNLAB_DEVICES='gpu0'"):
        load_settings({"CNNLAB_DEVICES": "gpu0"})


def test_records_from_before_devices_read_with_none():
    assert read_record({"id": "old", "status": "completed"}).devices is None
    record = RunRecord(devices=Devices(("/GPU:0", "/GPU:1"), "MirroredStrategy", 64, 32))
    assert read_record(record.to_dict()).devices == record.devices
