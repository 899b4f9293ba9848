"""Test-time augmentation: only the run's own label-safe transforms, nothing changed when off; and the
command line's `--tta` and unfamiliar-image flag."""

import shutil

import numpy as np
import pytest

from cnnlab.analysis.evaluate import class_probabilities, evaluate_run
from cnnlab.analysis.tta import apply_transform, evaluate_tta, tta_transforms
from cnnlab.cli import main
from cnnlab.deploy.prediction import predict
from cnnlab.runs.store import RunStore
from helpers import last_json, one_line_error, random_images, tiny_model_config


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({}, ("identity",)),
        ({"flip": "horizontal"}, ("identity", "flip_horizontal")),
        ({"flip": "vertical"}, ("identity", "flip_vertical")),
        ({"flip": "horizontal_and_vertical", "rotation": 0.2}, ("identity", "flip_horizontal", "flip_vertical")),
        ({"zoom": 0.2, "translation": 0.1}, ("identity", "zoom_in", "shift_left", "shift_right")),
        ({"contrast": 0.3, "rotation": 0.1}, ("identity",)),
    ],
)
def test_only_the_transforms_the_run_trained_with_are_used(settings, expected):
    assert tta_transforms(tiny_model_config(**settings)) == expected


def test_the_default_augmentation_gets_no_flip():
    from cnnlab.model import ModelConfig

    names = tta_transforms(ModelConfig())
    assert names[0] == "identity" and not any(n.startswith("flip") for n in names)


def test_transforms_keep_the_shape_and_move_pixels_as_named():
    config = tiny_model_config(flip="horizontal_and_vertical", zoom=0.25, translation=0.1)
    batch = random_images(3)
    for name in tta_transforms(config):
        out = apply_transform(batch, name, config)
        assert out.shape == batch.shape and out.dtype == np.float32
    assert np.array_equal(apply_transform(batch, "identity", config), batch)
    assert np.array_equal(apply_transform(batch, "flip_horizontal", config), batch[:, :, ::-1])
    assert np.array_equal(apply_transform(batch, "flip_vertical", config), batch[:, ::-1])
    right = apply_transform(batch, "shift_right", config)
    assert np.array_equal(right[:, :, 2:], batch[:, :, :-2])  # half the trained range: 32 px x 0.1 / 2, rounded
    left = apply_transform(batch, "shift_left", config)
    assert np.array_equal(left[:, :, :-2], batch[:, :, 2:])
    with pytest.raises(ValueError, match=r"Unknown transform.*Received: name='rotate'$"):
        apply_transform(batch, "rotate", config)


def test_with_tta_off_predictions_are_unchanged_and_a_run_without_augmentation_gets_the_image_alone(trained_run):
    run = trained_run["run"]
    model, config = run.load_model(), run.model_config()
    files = sorted(trained_run["data_dir"].rglob("*.png"))[:5]
    plain = predict(model, run.class_names, config, files)
    expected = class_probabilities(model.predict_on_batch(np.stack([r.image for r in plain]).astype(np.float32)))
    assert np.allclose([[dict(r.ranked)[c] for c in run.class_names] for r in plain], expected, atol=1e-6)
    with_tta = predict(model, run.class_names, config, files, tta=True)
    assert [r.ranked for r in with_tta] == [r.ranked for r in plain]


def test_a_run_trained_with_a_horizontal_flip_averages_the_image_and_its_mirror(deep_run, trained_run):
    run, model = deep_run
    config = run.model_config()
    files = sorted(trained_run["data_dir"].rglob("*.png"))[:4]
    results = predict(model, run.class_names, config, files, tta=True)
    batch = np.stack([r.image for r in results]).astype(np.float32)
    mirrored = np.ascontiguousarray(batch[:, :, ::-1])
    expected = (
        class_probabilities(model.predict_on_batch(batch)) + class_probabilities(model.predict_on_batch(mirrored))
    ) / 2
    assert np.allclose([[dict(r.ranked)[c] for c in run.class_names] for r in results], expected, atol=1e-5)


@pytest.fixture
def run_dir(trained_run, tmp_path, monkeypatch):
    """A copy of the shared run in this test's models folder, which the command line reads."""
    source = trained_run["run"]
    models = tmp_path / "models"
    shutil.copytree(source.path, models / source.id)
    monkeypatch.setenv("CNNLAB_MODELS_DIR", str(models))
    monkeypatch.setenv("CNNLAB_CACHE_DIR", str(tmp_path / "cache"))
    return models / source.id


def test_evaluate_tta_compares_with_and_without(run_dir, tmp_path, capsys):
    run = RunStore(run_dir.parent).get(run_dir.name)
    tta = evaluate_tta(run, cache=tmp_path / "cache")
    assert tta.transforms == ("identity",) and tta.num_images == len(run.split()["test"])
    assert tta.accuracy_tta == tta.accuracy == pytest.approx(evaluate_run(run, cache=tmp_path / "cache").accuracy)
    assert main(["evaluate", run.id, "--tta", "--json"]) == 0
    result = last_json(capsys)
    assert result["test_accuracy_tta"] == pytest.approx(result["accuracy"]) and result["tta_transforms"] == ["identity"]
    assert main(["evaluate", run.id, "--tta"]) == 0
    assert "test accuracy with TTA" in capsys.readouterr().out


def test_predict_json_carries_the_flag_and_tta_works(run_dir, trained_run, tmp_path, capsys):
    image = sorted((trained_run["data_dir"] / "owls").glob("*.png"))[0]
    noise = tmp_path / "noise.png"
    from helpers import image_bytes

    noise.write_bytes(image_bytes(random_images(1)[0]))
    assert main(["predict", run_dir.name, str(image), str(noise), "--json", "--tta"]) == 0
    result = last_json(capsys)
    assert result["tta_transforms"] == ["identity"]
    own, strange = (p["novelty"] for p in result["predictions"])
    assert set(own) == {"unlike_training", "score", "threshold", "explanation"}
    assert strange["unlike_training"] is True and strange["score"] > own["score"]
    assert main(["predict", run_dir.name, str(noise)]) == 0
    assert "[unlike the training images: farther from them than 95% of validation images are]" in (
        capsys.readouterr().out
    )


def test_predict_without_the_dataset_warns_and_still_predicts(trained_run, tmp_path, capsys, monkeypatch):
    from helpers import relocated_run

    run_dir = relocated_run(trained_run["run"], tmp_path / "data", tmp_path / "models")
    image = tmp_path / "one.png"
    shutil.copy(sorted((tmp_path / "data" / "owls").glob("*.png"))[0], image)
    shutil.rmtree(tmp_path / "data")
    assert main(["predict", str(run_dir), str(image), "--json"]) == 0
    captured = capsys.readouterr()
    assert captured.err.startswith("warning: no unfamiliar-image flag: ")
    assert "Received: " in captured.err
    assert last_json_of(captured.out)["predictions"][0]["novelty"] is None


def test_a_missing_image_is_one_line(run_dir, capsys):
    assert main(["predict", run_dir.name, "nowhere.png", "--tta"]) == 2
    assert one_line_error(capsys).endswith("Received: image='nowhere.png'")


def last_json_of(out: str) -> dict:
    import json

    return json.loads(out.strip().splitlines()[-1])
