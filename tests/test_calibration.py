"""Calibration and ROC: exact figures on hand-made arrays, temperature scaling on a tiny trained model made
over-confident, macro AUC against scikit-learn, and the temperature carried by the run into predict,
`evaluate --json` and the export manifest."""

import json

import numpy as np
import pytest

from cnnlab import data
from cnnlab.analysis.calibration import (
    brier_score,
    calibration_of,
    expected_calibration_error,
    fit_temperature,
    reliability,
    scale_probabilities,
    threshold_curve,
    threshold_summary,
)
from cnnlab.analysis.evaluate import evaluate_run, open_split, probabilities, saved_evaluation
from cnnlab.analysis.roc import macro_auc, one_vs_rest, roc_curve
from cnnlab.cli import main
from cnnlab.deploy.prediction import predict
from cnnlab.runs.store import RunStore
from helpers import last_json, random_images, relocated_run, small_cnn

# Four predictions: two at 95% (one right), one at 55% and one at 65% (both right).
CONFIDENCE = np.array([0.95, 0.95, 0.55, 0.65])
CORRECT = np.array([True, False, True, True])


def test_ece_and_reliability_bins_are_exact():
    bins = reliability(CONFIDENCE, CORRECT)
    assert bins.count.tolist() == [0, 0, 0, 0, 0, 1, 1, 0, 0, 2]
    assert bins.accuracy[9] == 0.5 and bins.confidence[9] == pytest.approx(0.95)
    assert np.isnan(bins.accuracy[0])
    # (2 images * |0.5 - 0.95| + |1 - 0.55| + |1 - 0.65|) / 4
    assert bins.ece == pytest.approx((2 * 0.45 + 0.45 + 0.35) / 4)
    assert expected_calibration_error(CONFIDENCE, CORRECT, num_bins=1) == pytest.approx(abs(0.75 - 0.775))
    # A bin is (lower, upper]: exactly 0.6 belongs to the sixth bin, not the seventh.
    assert reliability(np.array([0.6, 0.7, 0.0, 1.0]), np.ones(4, bool)).count.tolist() == [
        1,
        0,
        0,
        0,
        0,
        1,
        1,
        0,
        0,
        1,
    ]


def test_brier_score_is_exact():
    probs = np.array([[0.8, 0.2], [0.4, 0.6]])
    # (0.2² + 0.2²) for the right one, (0.6² + 0.6²) for the wrong one, averaged.
    assert brier_score(probs, np.array([0, 0])) == pytest.approx((0.08 + 0.72) / 2)
    assert brier_score(np.eye(3), np.arange(3)) == 0.0


def test_a_perfectly_calibrated_model_keeps_a_temperature_near_one():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(20000, 4)) * 2
    probs = scale_probabilities(np.exp(logits), 1.0)
    labels = np.array([rng.choice(4, p=p) for p in probs])
    assert fit_temperature(probs, labels) == pytest.approx(1.0, abs=0.05)
    # The same model with its logits tripled: the fitted temperature takes it back.
    sharp = scale_probabilities(probs, 1 / 3)
    assert fit_temperature(sharp, labels) == pytest.approx(3.0, rel=0.05)


def test_one_sigmoid_unit_is_scaled_on_its_logit():
    p = np.array([0.1, 0.5, 0.9, 0.999])
    scaled = scale_probabilities(np.stack([1 - p, p], axis=1), 2.0)[:, 1]
    logit = np.log(p / (1 - p))
    np.testing.assert_allclose(scaled, 1 / (1 + np.exp(-logit / 2.0)), rtol=1e-9)


def test_temperature_scaling_lowers_the_ece_of_an_over_confident_tiny_model_and_keeps_its_answers(trained_run):
    run = trained_run["run"]
    with open_split(run, cache=trained_run["cache"]) as (prepared, parts):
        indices = np.concatenate([parts["train"], parts["validation"], parts["test"]])
        probs = probabilities(run.load_model(), data.make_dataset(prepared, indices, 32))
        labels = prepared.labels[indices].copy()
    rng = np.random.default_rng(0)
    noisy = rng.random(len(labels)) < 0.3  # a third of the labels wrong: the model cannot be this sure
    labels[noisy] = (labels[noisy] + 1) % 3
    over_confident = scale_probabilities(probs, 0.1)  # logits times ten
    fit, test = np.arange(len(labels)) % 2 == 0, np.arange(len(labels)) % 2 == 1
    temperature = fit_temperature(over_confident[fit], labels[fit])
    assert temperature > 1
    found = calibration_of(over_confident[test], labels[test], temperature)
    assert found.ece_calibrated < found.ece and found.brier_calibrated < found.brier
    calibrated = scale_probabilities(over_confident, temperature)
    assert (calibrated.argmax(axis=1) == over_confident.argmax(axis=1)).all()


def test_macro_auc_agrees_with_scikit_learn_and_curves_run_corner_to_corner():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(3)
    probs = rng.dirichlet(np.ones(5), size=300).round(2)  # rounded: many tied scores
    probs /= probs.sum(axis=1, keepdims=True)
    labels = np.arange(300) % 5
    curves = one_vs_rest(probs, labels, list("abcde"))
    assert macro_auc(curves) == pytest.approx(roc_auc_score(labels, probs, multi_class="ovr", average="macro"))
    for c, curve in enumerate(curves):
        assert curve.auc == pytest.approx(roc_auc_score(labels == c, probs[:, c]))
        assert (curve.fpr[0], curve.tpr[0], curve.fpr[-1], curve.tpr[-1]) == (0.0, 0.0, 1.0, 1.0)
        fpr, tpr = roc_curve(probs[:, c], labels == c)
        assert np.trapezoid(tpr, fpr) == pytest.approx(curve.auc)


def test_threshold_view_gives_accuracy_and_coverage_in_one_sentence():
    curve = threshold_curve(CONFIDENCE, CORRECT, num_points=11)
    assert curve.coverage[[0, 6, 9, 10]].tolist() == [1.0, 0.75, 0.5, 0.0]
    assert curve.accuracy[6] == pytest.approx(2 / 3) and curve.accuracy[9] == 0.5 and np.isnan(curve.accuracy[10])
    assert threshold_summary(CONFIDENCE, CORRECT, 0.6) == (
        "At 60% confidence or more, the model is 67% right on 75% of the test images (3 of 4)."
    )
    assert threshold_summary(CONFIDENCE, CORRECT, 1.0).startswith("No test image")


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: threshold_summary(CONFIDENCE, CORRECT, 1.5), r"from 0 to 1 .*Received: threshold=1\.5$"),
        (lambda: threshold_summary(CONFIDENCE, CORRECT, True), r"Received: threshold=True$"),
        (
            lambda: fit_temperature(np.zeros((0, 3)), np.zeros(0, dtype=int)),
            r"is the split empty\? Received: probs\.shape=\(0, 3\), labels\.shape=\(0,\)$",
        ),
        (lambda: reliability(np.zeros(0), np.zeros(0)), r"Received: confidence\.shape=\(0,\), correct\.shape=\(0,\)$"),
        (lambda: scale_probabilities(np.eye(2), 0), r"positive number .*Received: temperature=0$"),
        (lambda: brier_score(np.eye(2), np.array([0, 2])), r"from 0 to 1\. Received: labels=\[0, 2\]$"),
    ],
)
def test_bad_input_is_one_line_ending_in_received(call, message):
    with pytest.raises(ValueError, match=message) as caught:
        call()
    assert "\n" not in str(caught.value)


def test_training_fits_a_temperature_that_predict_applies_and_says_so(calibrated_run):
    run = calibrated_run["run"]
    scaling = run.record.calibration
    assert scaling is not None and scaling.num_images == len(run.split()["validation"]) and scaling.temperature > 0
    evaluation = saved_evaluation(run)
    assert evaluation.calibration.temperature == run.temperature
    assert evaluation.calibration.ece_calibrated is not None
    model, image = run.load_model(), calibrated_run["data_dir"] / "owls" / "owls_003.png"
    raw = predict(model, run.class_names, run.model_config(), [image])[0]
    calibrated = predict(model, run.class_names, run.model_config(), [image], temperature=run.temperature)[0]
    assert not raw.calibrated and calibrated.calibrated and calibrated.to_dict()["calibrated"] is True
    assert calibrated.label == raw.label
    raw_probs = np.array([[dict(raw.ranked)[c] for c in run.class_names]])
    expected = scale_probabilities(raw_probs, run.temperature)[0]
    assert [dict(calibrated.ranked)[c] for c in run.class_names] == pytest.approx(expected.tolist(), abs=1e-6)


def test_a_model_right_on_every_validation_image_fits_no_temperature(calibrated_run):
    from cnnlab.analysis.evaluate import fit_temperature_on

    run = calibrated_run["run"]
    model = run.load_model()
    with open_split(run, cache=calibrated_run["cache"]) as (prepared, parts):
        validation = parts["validation"]
        probs = probabilities(model, data.make_dataset(prepared, validation, 32))
        right = validation[probs.argmax(axis=1) == prepared.labels[validation]]
        wrong = validation[probs.argmax(axis=1) != prepared.labels[validation]]
        assert len(right) and len(wrong)
        assert fit_temperature_on(model, prepared, right) is None  # the fit would make every prediction certain
        assert fit_temperature_on(model, prepared, validation).temperature == run.temperature
    assert fit_temperature(np.array([[0.6, 0.4], [0.3, 0.7]]), np.array([0, 1])) == pytest.approx(0.05, rel=1e-3)


def test_an_evaluation_saved_before_calibration_is_measured_again_and_the_temperature_saved(calibrated_run, tmp_path):
    run_dir = relocated_run(calibrated_run["run"], tmp_path / "data", tmp_path / "models")
    record = json.loads((run_dir / "run.json").read_text())
    del record["calibration"]
    (run_dir / "run.json").write_text(json.dumps(record))
    old = json.loads((run_dir / "evaluation.json").read_text())
    for key in ("ece", "brier", "temperature", "ece_calibrated", "brier_calibrated", "roc_curves"):
        del old[key]
    (run_dir / "evaluation.json").write_text(json.dumps(old))
    run = RunStore(tmp_path / "models").get(run_dir.name)
    assert run.temperature is None and saved_evaluation(run).calibration is None

    evaluation = evaluate_run(run, cache=calibrated_run["cache"])
    assert evaluation.calibration is not None and len(evaluation.roc) == 3
    again = RunStore(tmp_path / "models").get(run_dir.name)
    assert again.temperature == pytest.approx(calibrated_run["run"].temperature)
    assert saved_evaluation(again).calibration == evaluation.calibration

    # Without its dataset an old evaluation still opens, without calibration (the page says to evaluate again).
    (run_dir / "evaluation.json").write_text(json.dumps(old))
    record["dataset"]["path"] = str(tmp_path / "gone")
    (run_dir / "run.json").write_text(json.dumps(record))
    gone = evaluate_run(RunStore(tmp_path / "models").get(run_dir.name), cache=calibrated_run["cache"])
    assert gone.calibration is None and gone.accuracy == old["accuracy"]


def test_evaluate_and_predict_json_carry_the_calibration(calibrated_run, capsys, monkeypatch):
    monkeypatch.setenv("CNNLAB_CACHE_DIR", str(calibrated_run["cache"]))
    monkeypatch.setenv("CNNLAB_MODELS_DIR", str(calibrated_run["base"] / "models"))
    run = calibrated_run["run"]
    assert main(["evaluate", run.id, "--json"]) == 0
    result = last_json(capsys)
    assert {"ece", "brier", "temperature", "ece_calibrated"} <= result.keys()
    assert result["temperature"] == run.temperature and 0 <= result["ece"] <= 1 and 0 <= result["brier"] <= 2
    assert result["roc_auc"] is not None and "roc_curves" not in result
    assert main(["evaluate", run.id]) == 0
    assert "calibration error (ECE)" in capsys.readouterr().out

    image = calibrated_run["data_dir"] / "cats" / "cats_000.png"
    assert main(["predict", run.id, str(image), "--json"]) == 0
    result = last_json(capsys)
    assert result["temperature"] == run.temperature and result["predictions"][0]["calibrated"] is True


def test_the_export_manifest_records_the_temperature_and_how_to_apply_it(tmp_path):
    from cnnlab.deploy.export import export_model, read_export

    model, images = small_cnn(3, (32, 32, 3)), random_images(2)
    calibrated = export_model(model, ["a", "b", "c"], tmp_path / "calibrated", "keras", images, temperature=1.7)
    manifest = read_export(calibrated)
    assert manifest["temperature"] == 1.7 and "softmax(log(outputs) / temperature)" in manifest["calibration"]
    assert read_export(export_model(model, ["a", "b", "c"], tmp_path / "raw", "keras", images))["temperature"] is None
    with pytest.raises(ValueError, match=r"Received: temperature=-1$"):
        export_model(model, ["a", "b", "c"], tmp_path / "bad", "keras", images, temperature=-1)


def test_the_figures_draw_counts_per_bin_a_threshold_line_and_one_curve_per_class():
    import plotly.io as pio

    from cnnlab import charts

    before = reliability(CONFIDENCE, CORRECT)
    figure = charts.reliability_figure(before, reliability(CONFIDENCE * 0.8, CORRECT))
    bars, diagonal, calibrated = figure.data
    assert [t for t in bars.text if t] == ["1", "1", "2"] and bars.y[9] == 0.5
    assert diagonal.name == "Perfectly calibrated" and calibrated.name.startswith("Calibrated (ECE ")
    assert len(charts.reliability_figure(before).data) == 2

    threshold = charts.threshold_figure(threshold_curve(CONFIDENCE, CORRECT), 0.9)
    assert [t.name for t in threshold.data] == ["Accuracy of those kept", "Share of images kept (coverage)"]
    assert threshold.layout.shapes[0].x0 == 0.9

    probs = np.array([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.3, 0.3, 0.4], [0.5, 0.4, 0.1]])
    curves = one_vs_rest(probs, np.array([0, 1, 2, 1]), ["a", "b", "c"])
    roc = charts.roc_figure(curves)
    assert [t.name for t in roc.data] == [f"{c.class_name} (AUC {c.auc:.3f})" for c in curves] + ["Chance"]
    for fig in (figure, threshold, roc):
        assert fig.layout.title.text and fig.layout.template == pio.templates[charts.TEMPLATE]
