"""The Predict page's explanations: four maps on one scale, another class on demand, and both sanity checks."""

from __future__ import annotations

import numpy as np

from cnnlab.analysis.saliency import METHODS, NOTES
from helpers import image_bytes, open_page


def test_predict_shows_the_four_maps_and_runs_both_sanity_checks(app, trained_run, monkeypatch):
    monkeypatch.setenv("CNNLAB_MODELS_DIR", str(trained_run["base"] / "models"))
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
