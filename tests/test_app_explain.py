"""The Predict page's explanations: four maps on one scale, another class on demand, and both sanity checks."""

from __future__ import annotations

import numpy as np

from cnnlab.analysis.saliency import METHODS, NOTES
from helpers import copied_models, image_bytes, open_page


def test_predict_shows_the_four_maps_and_runs_both_sanity_checks(app, trained_run, monkeypatch, tmp_path):
    monkeypatch.setenv("CNNLAB_MODELS_DIR", str(copied_models(trained_run["run"], tmp_path / "models")))
    monkeypatch.setenv("CNNLAB_CACHE_DIR", str(trained_run["cache"]))
    at = open_page(app, "pages/predict.py")
    upload = image_bytes(np.full((32, 32, 3), (40, 200, 40), np.uint8))
    at.file_uploader(key="image-upload").set_value(("green.png", upload, "image/png")).run()
    assert not at.exception, [e.value for e in at.exception]
    captions = " ".join(c.value for c in at.caption)
    assert all(NOTES[m] in captions for m in METHODS)
    predicted = at.selectbox(key="explain-class-0").value
    other = next(c for c in trained_run["run"].class_names if c != predicted)
    at.selectbox(key="explain-class-0").set_value(other).run()
    assert not at.exception, [e.value for e in at.exception]

    at.button(key="randomise-0").click().run()
    assert not at.exception, [e.value for e in at.exception]
    verdicts = [m.value for m in at.markdown if "rank correlation" in m.value]
    assert len(verdicts) == len(METHODS)

    at.button(key="saw-run").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert [m.label for m in at.metric] == ["Accuracy", "Map's region hidden", "Random region hidden"]
    assert not at.error


def test_only_the_first_image_is_explained_until_another_is_asked_for(app, trained_run, monkeypatch, tmp_path):
    monkeypatch.setenv("CNNLAB_MODELS_DIR", str(copied_models(trained_run["run"], tmp_path / "models")))
    monkeypatch.setenv("CNNLAB_CACHE_DIR", str(trained_run["cache"]))
    at = open_page(app, "pages/predict.py")
    uploads = [
        (f"{name}.png", image_bytes(np.full((32, 32, 3), colour, np.uint8)), "image/png")
        for name, colour in [("green", (40, 200, 40)), ("red", (200, 40, 40))]
    ]
    at.file_uploader(key="image-upload").set_value(uploads).run()
    assert not at.exception, [e.value for e in at.exception]

    def explained() -> int:
        return sum(NOTES[METHODS[1]] in c.value for c in at.caption)  # METHODS[0] is also the masking check's default

    assert [at.toggle(key=f"explain-{i}").value for i in range(2)] == [True, False]
    assert explained() == 1
    at.toggle(key="explain-1").set_value(True).run()
    assert not at.exception, [e.value for e in at.exception]
    assert explained() == 2
