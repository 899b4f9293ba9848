"""Settings from the environment, and the allowed-folder check for server datasets."""

from pathlib import Path

import pytest

from cnnlab.settings import check_data_folder, load_settings


def test_defaults_are_local_mode():
    s = load_settings({})
    assert not s.hosted
    assert s.max_concurrent_trainings == 1
    assert s.data_roots == ()
    assert s.models_dir.name == "models"
    assert s.datasets_url is None
    assert s.max_training_mb is None


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
    with pytest.raises(ValueError, match="Server folders are disabled"):
        check_data_folder(tmp_path, s)


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
    with pytest.raises(ValueError, match=r"names no user.*Received: folder='~nosuchuser-cnnlab/x'"):
        check_data_folder("~nosuchuser-cnnlab/x", s)


def test_team_tracking_is_off_unless_a_uri_is_set():
    import getpass

    from cnnlab.tracking import TrackingConfig

    assert load_settings({}).tracking is None
    s = load_settings(
        {"CNNLAB_TRACKING_URI": " http://mlflow.team:5000 ", "CNNLAB_EXPERIMENT": "cats", "CNNLAB_USER": "ann"}
    )
    assert s.tracking == TrackingConfig("http://mlflow.team:5000", "cats", "ann")
    assert load_settings({"CNNLAB_TRACKING_URI": "http://h:5000"}).tracking == TrackingConfig(
        "http://h:5000", "cnnlab", getpass.getuser()
    )
