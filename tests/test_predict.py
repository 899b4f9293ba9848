"""Prediction from bytes, paths and PIL images, one or many, with the training normalisation."""

import numpy as np
import pytest
from PIL import Image

from cnnlab.analysis.evaluate import evaluate_run
from cnnlab.data.images import ImageError
from cnnlab.deploy.prediction import predict


@pytest.fixture
def model_and_run(trained_run):
    run = trained_run["run"]
    return run.load_model(), run


def test_sources_of_every_kind_give_the_same_ranked_result(model_and_run, trained_run):
    model, run = model_and_run
    path = trained_run["data_dir"] / "owls" / "owls_003.png"
    sources = [path, str(path), path.read_bytes(), Image.open(path)]
    results = predict(model, run.class_names, run.model_config(), sources)
    assert len(results) == 4
    first = results[0]
    assert [c for c, _ in first.ranked] and sorted(c for c, _ in first.ranked) == sorted(run.class_names)
    probs = [p for _, p in first.ranked]
    assert probs == sorted(probs, reverse=True) and sum(probs) == pytest.approx(1.0, abs=1e-5)
    assert first.label == first.ranked[0][0] and first.confidence == probs[0]
    for other in results[1:]:
        assert other.label == first.label
        assert other.confidence == pytest.approx(first.confidence, abs=1e-6)
    assert first.image.shape == (32, 32, 3) and first.image.dtype == np.uint8


def test_predictions_match_the_evaluation_pipeline(model_and_run, trained_run, cache_dir):
    """No train/serve skew: predicting test files one by one agrees with the cached tf.data path."""
    model, run = model_and_run
    evaluation = evaluate_run(run, cache=cache_dir)
    table = evaluation.predictions
    files = [trained_run["data_dir"] / p for p in table["path"]]
    results = predict(model, run.class_names, run.model_config(), files)
    assert [r.label for r in results] == table["predicted_label"].tolist()
    assert np.allclose([r.confidence for r in results], table["confidence"], atol=1e-5)


def test_bad_input_raises_or_is_reported_per_file(model_and_run, trained_run, tmp_path):
    model, run = model_and_run
    good = (trained_run["data_dir"] / "cats" / "cats_000.png").read_bytes()
    with pytest.raises(ImageError, match=r"'notes.png' is not an image.*Received: file='notes.png'"):
        predict(model, run.class_names, run.model_config(), [good, b"plain text"], names=["good.png", "notes.png"])
    results = predict(
        model,
        run.class_names,
        run.model_config(),
        [b"plain text", good, good[:60]],
        names=["notes.png", "good.png", "cut.png"],
        errors="report",
    )
    assert [r.error is None for r in results] == [False, True, False]
    assert "not an image" in results[0].error
    assert "truncated or corrupt" in results[2].error
    assert results[1].label in run.class_names
    assert results[0].to_dict() == {"name": "notes.png", "error": results[0].error}


def test_decompression_bomb_is_refused(model_and_run):
    model, run = model_and_run
    import io

    buf = io.BytesIO()
    Image.new("L", (8000, 6000)).save(buf, "PNG")  # 48 MP: over the 40 MP cap, tiny on disk
    results = predict(model, run.class_names, run.model_config(), [buf.getvalue()], names=["bomb.png"], errors="report")
    assert "safety cap" in results[0].error


def test_bad_errors_argument(model_and_run):
    model, run = model_and_run
    with pytest.raises(ValueError, match="Received: errors='ignore'"):
        predict(model, run.class_names, run.model_config(), [], errors="ignore")


@pytest.mark.parametrize("count", [1, 7, 40])
def test_one_image_and_batches_give_model_predict_probabilities(model_and_run, trained_run, count):
    """Small batches take predict_on_batch, large ones model.predict: both agree with model.predict."""
    model, run = model_and_run
    files = sorted(trained_run["data_dir"].rglob("*.png"))[:count]
    results = predict(model, run.class_names, run.model_config(), files)
    expected = model.predict(np.stack([r.image for r in results]), verbose=0)
    got = np.array([[dict(r.ranked)[name] for name in run.class_names] for r in results])
    assert got.shape == (count, 3)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)


def test_names_must_match_the_sources_one_for_one(model_and_run, trained_run):
    model, run = model_and_run
    paths = sorted((trained_run["data_dir"] / "owls").glob("*.png"))[:3]
    with pytest.raises(ValueError, match=r"one name per image.*Received: len\(sources\)=3, len\(names\)=2$"):
        predict(model, run.class_names, run.model_config(), paths, names=["a.png", "b.png"])
