"""Predictions you can trust, in the app: the unfamiliar-image flag and test-time augmentation on the
Predict and Evaluate pages."""

import numpy as np

from cnnlab.analysis.novelty import NOVELTY_FILE
from helpers import copied_models, image_bytes, open_page, random_images


def copied_run(trained_run, tmp_path, monkeypatch):
    """The shared run copied into this test's models folder (the pages keep their files in it); its folder."""
    monkeypatch.setenv("CNNLAB_MODELS_DIR", str(copied_models(trained_run["run"], tmp_path / "models")))
    return tmp_path / "models" / trained_run["run"].id


def test_predict_flags_noise_as_unlike_the_training_images_and_tta_switches_on(app, trained_run, tmp_path, monkeypatch):
    run_dir = copied_run(trained_run, tmp_path, monkeypatch)
    at = open_page(app, "pages/predict.py")
    own = (trained_run["data_dir"] / "owls" / "owls_001.png").read_bytes()
    noise = image_bytes(random_images(1, seed=3)[0])
    at.file_uploader(key="image-upload").set_value(
        [("own.png", own, "image/png"), ("noise.png", noise, "image/png")]
    ).run()
    assert not at.exception, [e.value for e in at.exception]
    assert (run_dir / NOVELTY_FILE).is_file()  # fitted once, kept with the run
    warnings = [w.value for w in at.warning]
    assert any(
        w.startswith("**Unlike the training images**: farther from them than 95% of validation") for w in warnings
    )
    assert "unlike_training" in at.dataframe[0].value.columns
    assert at.dataframe[0].value.set_index("image").loc["noise.png", "unlike_training"]
    tta = at.toggle(key="predict-tta")
    assert "only copy is the image itself" in tta.help  # the shared run trained without augmentation
    tta.set_value(True).run()
    assert not at.exception, [e.value for e in at.exception]
    assert any(m.value.startswith("**own.png**: ") for m in at.markdown)


def test_evaluate_shows_accuracy_with_and_without_tta_and_how_well_the_flag_separates(
    app, trained_run, tmp_path, monkeypatch
):
    copied_run(trained_run, tmp_path, monkeypatch)
    at = open_page(app, "pages/evaluate.py")
    at.toggle(key="evaluate-tta").set_value(True).run()
    assert not at.exception, [e.value for e in at.exception]
    labels = [m.label for m in at.metric]
    assert "Test accuracy without TTA" in labels and "Test accuracy with TTA" in labels
    assert any("model passes per image" in c.value or "only copy is the image itself" in c.value for c in at.caption)
    at.toggle(key="novelty-check").set_value(True).run()
    assert not at.exception, [e.value for e in at.exception]
    table = next(d.value for d in at.dataframe if "auroc" in d.value.columns)
    assert table["images"].tolist()[-1] == "uniform noise"
    assert np.all(table["flagged"].between(0, 1))
