"""Settings from the environment, and the allowed-folder check for server datasets."""

from pathlib import Path

import pytest

from cnnlab import data
from cnnlab.model import check_trainable
from cnnlab.runs.workspace import Workspace
from cnnlab.settings import check_data_folder, load_settings
from cnnlab.training.engine import TrainConfig, train
from helpers import tiny_model_config


def test_defaults_are_local_mode():
    s = load_settings({})
    assert not s.hosted
    assert s.max_concurrent_trainings == 1
    assert s.data_roots == ()
    assert s.models_dir.name == "models"
    assert s.datasets_dir == s.models_dir.parent / "datasets"
    assert s.datasets_url is None
    assert s.max_training_mb is None
    assert s.max_session_mb is None and s.max_cache_mb is None and s.max_dataset_pixels is None


def test_environment_overrides(tmp_path):
    env = {
        "CNNLAB_MODELS_DIR": str(tmp_path / "m"),
        "CNNLAB_CACHE_DIR": str(tmp_path / "c"),
        "CNNLAB_DATA_ROOTS": str(tmp_path),
        "CNNLAB_MAX_CONCURRENT_TRAININGS": "3",
        "CNNLAB_MAX_UPLOAD_MB": "10",
        "CNNLAB_DATASETS_URL": "http://mirror.local/keras ",
        "CNNLAB_MAX_TRAINING_MB": "4096",
    }
    s = load_settings(env)
    assert s.models_dir == tmp_path / "m"
    assert s.cache_dir == tmp_path / "c"
    assert s.data_roots == (tmp_path.resolve(),)
    assert s.max_concurrent_trainings == 3
    assert s.max_upload_mb == 10
    assert s.datasets_url == "http://mirror.local/keras"
    assert s.max_training_mb == 4096
    assert s.datasets_dir == tmp_path / "datasets"  # beside the models folder
    assert load_settings({**env, "CNNLAB_DATASETS_DIR": str(tmp_path / "d")}).datasets_dir == tmp_path / "d"


def test_hosted_mode_disables_server_folders_and_caps_uploads(tmp_path):
    s = load_settings(
        {
            "CNNLAB_HOSTED": "true",
            "CNNLAB_DATA_ROOTS": str(tmp_path),
            "CNNLAB_MAX_UPLOAD_MB": "500",
            "CNNLAB_MAX_CONCURRENT_TRAININGS": "3",
        }
    )
    assert s.hosted
    assert s.data_roots == ()
    assert s.max_upload_mb == 50
    assert s.max_extracted_bytes == 500 * 2**20
    assert s.max_concurrent_trainings == 1
    assert s.max_training_mb == 1024
    assert (s.max_session_mb, s.max_cache_mb, s.max_dataset_pixels) == (300, 2048, 200_000_000)
    with pytest.raises(ValueError, match="Server folders are disabled"):
        check_data_folder(tmp_path, s)


def test_disk_and_decode_budgets_are_settings():
    hosted = load_settings(
        {
            "CNNLAB_HOSTED": "1",
            "CNNLAB_MAX_SESSION_MB": "50",
            "CNNLAB_MAX_CACHE_MB": "500",
            "CNNLAB_MAX_DATASET_MEGAPIXELS": "20",
        }
    )
    assert (hosted.max_session_mb, hosted.max_cache_mb, hosted.max_dataset_pixels) == (50, 500, 20_000_000)
    local = load_settings({"CNNLAB_MAX_SESSION_MB": "50", "CNNLAB_MAX_CACHE_MB": "500"})
    assert local.max_session_mb is None  # visitors' budgets are a hosted matter
    assert local.max_cache_mb == 500
    with pytest.raises(ValueError, match=r"Received: CNNLAB_MAX_SESSION_MB='0'"):
        load_settings({"CNNLAB_HOSTED": "1", "CNNLAB_MAX_SESSION_MB": "0"})


@pytest.mark.parametrize("value", ["0", "-2", "many"])
def test_bad_numbers_are_clear_errors(value):
    with pytest.raises(
        ValueError,
        match=r"CNNLAB_MAX_CONCURRENT_TRAININGS must be a whole number.*Received: CNNLAB_MAX_CONCURRENT_TRAININGS=",
    ):
        load_settings({"CNNLAB_MAX_CONCURRENT_TRAININGS": value})


def test_server_folder_must_be_inside_a_root(tmp_path):
    allowed = tmp_path / "allowed"
    (allowed / "cats").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    s = load_settings({"CNNLAB_DATA_ROOTS": str(allowed)})
    assert check_data_folder(allowed, s) == allowed.resolve()
    assert check_data_folder(allowed / "cats", s) == (allowed / "cats").resolve()
    with pytest.raises(ValueError, match="outside the allowed data folders"):
        check_data_folder(outside, s)
    with pytest.raises(ValueError, match="outside the allowed data folders"):
        check_data_folder(allowed / ".." / "outside", s)
    with pytest.raises(ValueError, match="Folder not found"):
        check_data_folder(allowed / "missing", s)
    assert isinstance(check_data_folder(str(allowed), s), Path)
    (allowed / "escape").symlink_to(outside, target_is_directory=True)
    with pytest.raises(ValueError, match="outside the allowed data folders"):
        check_data_folder(allowed / "escape", s)
    with pytest.raises(ValueError, match=r"names no user.*Received: folder='~nosuchuser-cnnlab/x'"):
        check_data_folder("~nosuchuser-cnnlab/x", s)


@pytest.mark.parametrize("name", ["CNNLAB_MODELS_DIR", "CNNLAB_CACHE_DIR", "CNNLAB_DATA_ROOTS"])
def test_a_folder_naming_no_user_is_a_one_line_error(name):
    with pytest.raises(ValueError, match=rf"names no user on this machine.*Received: {name}='~nosuchuser/x'$"):
        load_settings({name: "~nosuchuser/x"})


def test_settings_in_the_shell_change_no_library_call(make_dataset, tmp_path, monkeypatch, run_store, cache_dir):
    """Only the CLI and the app read the environment; the library takes what it needs as arguments."""
    shell = tmp_path / "shell"
    monkeypatch.setenv("CNNLAB_HOSTED", "1")
    monkeypatch.setenv("CNNLAB_MAX_TRAINING_MB", "64")
    monkeypatch.setenv("CNNLAB_MODELS_DIR", str(shell / "models"))
    monkeypatch.setenv("CNNLAB_CACHE_DIR", str(shell / "cache"))
    config, big_batch = tiny_model_config(), TrainConfig(epochs=1, batch_size=512, patience=0)
    assert check_trainable(config, 2, big_batch.batch_size) > 64  # what hosted mode would refuse

    root = make_dataset(classes=("a", "b"), per_class=6)
    data.scan(root)  # no cache folder given: none is written
    run = train(root, config, big_batch, workspace=Workspace(run_store, cache_dir))
    assert run.status == "completed" and run.path.parent == run_store.root
    assert [r.id for r in run_store.list()] == [run.id]
    assert list((cache_dir / "prepared").glob("*.npy")) and list((cache_dir / "scans").glob("*.json"))
    assert not shell.exists()


def test_team_tracking_is_off_unless_a_uri_is_set():
    import getpass

    from cnnlab.team.tracking import TrackingConfig

    assert load_settings({}).tracking is None
    s = load_settings(
        {"CNNLAB_TRACKING_URI": " http://mlflow.team:5000 ", "CNNLAB_EXPERIMENT": "cats", "CNNLAB_USER": "ann"}
    )
    assert s.tracking == TrackingConfig("http://mlflow.team:5000", "cats", "ann")
    assert load_settings({"CNNLAB_TRACKING_URI": "http://h:5000"}).tracking == TrackingConfig(
        "http://h:5000", "cnnlab", getpass.getuser()
    )
