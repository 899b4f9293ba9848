"""Evaluation: exact metrics from hand-made probabilities, and a trained run's cached test evaluation."""

import dataclasses
import json
import math
import shutil
import warnings

import numpy as np
import pytest

from cnnlab import data
from cnnlab.analysis.evaluate import (
    Evaluation,
    evaluate_probabilities,
    evaluate_run,
    mistake_captions,
    open_split,
    reported_confidence,
)
from cnnlab.data import prepcache
from cnnlab.runs.store import Run, RunStore
from helpers import relocated_run, write_dataset

CLASSES = ["cat", "dog", "owl"]
LABELS = [0, 0, 0, 1, 1, 2, 2, 2]
PROBS = np.array(
    [
        [0.7, 0.2, 0.1],  # cat -> cat
        [0.3, 0.6, 0.1],  # cat -> dog
        [0.5, 0.1, 0.4],  # cat -> cat
        [0.1, 0.8, 0.1],  # dog -> dog
        [0.5, 0.3, 0.2],  # dog -> cat
        [0.1, 0.1, 0.8],  # owl -> owl
        [0.6, 0.2, 0.2],  # owl -> cat
        [0.2, 0.2, 0.6],  # owl -> owl
    ]
)
PATHS = [f"img{i}.png" for i in range(8)]


def test_three_class_metrics_are_exact():
    ev = evaluate_probabilities(PROBS, LABELS, CLASSES, PATHS)
    assert ev.confusion.tolist() == [[2, 1, 0], [1, 1, 0], [1, 0, 2]]
    assert ev.accuracy == pytest.approx(5 / 8)
    true_p = [0.7, 0.3, 0.5, 0.8, 0.3, 0.8, 0.2, 0.6]
    assert ev.loss == pytest.approx(-sum(math.log(p) for p in true_p) / 8)
    table = ev.per_class.set_index("class")
    assert table["precision"].tolist() == pytest.approx([2 / 4, 1 / 2, 2 / 2])
    assert table["recall"].tolist() == pytest.approx([2 / 3, 1 / 2, 2 / 3])
    assert table["f1"].tolist() == pytest.approx([4 / 7, 1 / 2, 4 / 5])
    assert table["support"].tolist() == [3, 2, 3]
    # One-vs-rest, averaged over the classes (scikit-learn's macro OvR AUC is the same, tests/test_calibration.py).
    # Pairs of a class's image and another's ranked right by the class's probability (ties half):
    # cat 5 + 3 + 3.5 of 15, dog 6 + 5 of 12, owl 5 + 3.5 + 5 of 15.
    cat, dog, owl = 11.5 / 15, 11 / 12, 13.5 / 15
    assert ev.roc_auc == pytest.approx((cat + dog + owl) / 3) and len(ev.roc) == 3
    assert ev.balanced_accuracy == pytest.approx((2 / 3 + 1 / 2 + 2 / 3) / 3)
    assert ev.macro_f1 == pytest.approx((4 / 7 + 1 / 2 + 4 / 5) / 3)
    assert ev.to_dict()["balanced_accuracy"] == ev.balanced_accuracy and ev.to_dict()["macro_f1"] == ev.macro_f1
    top = ev.top_confusions()
    # Three mistakes, one image each: ordered by count, then true and predicted class.
    assert list(zip(top["true_label"], top["predicted_label"], top["count"], strict=True)) == [
        ("cat", "dog", 1),
        ("dog", "cat", 1),
        ("owl", "cat", 1),
    ]
    assert top["share"].tolist() == pytest.approx([1 / 3, 1 / 2, 1 / 3])

    p = ev.predictions
    assert p["path"].tolist() == PATHS
    assert p["true_label"].tolist() == ["cat"] * 3 + ["dog"] * 2 + ["owl"] * 3
    assert p["predicted_label"].tolist() == ["cat", "dog", "cat", "dog", "cat", "owl", "cat", "owl"]
    assert p["confidence"].tolist() == pytest.approx([0.7, 0.6, 0.5, 0.8, 0.5, 0.8, 0.6, 0.6])
    assert p["correct"].tolist() == [True, False, True, True, False, True, False, True]
    mistakes = ev.most_confident_mistakes()
    assert set(mistakes["path"].tolist()[:2]) == {"img1.png", "img6.png"}  # confidence 0.6 each
    assert mistakes["path"].tolist()[-1] == "img4.png"
    assert ev.cell("owl", "cat")["path"].tolist() == ["img6.png"]
    assert ev.cell("dog", "owl").empty


def test_balanced_accuracy_and_macro_f1_see_an_ignored_class():
    labels = [0] * 9 + [1]
    probs = np.array([[0.9, 0.1]] * 10)  # always the large class
    ev = evaluate_probabilities(probs, labels, ["common", "rare"], [f"{i}.png" for i in range(10)])
    assert ev.accuracy == pytest.approx(0.9)
    assert ev.balanced_accuracy == pytest.approx(0.5)
    assert ev.macro_f1 == pytest.approx((2 * 0.9 / 1.9 + 0.0) / 2)
    assert ev.top_confusions().to_dict(orient="records") == [
        {"true_label": "rare", "predicted_label": "common", "count": 1, "share": 1.0}
    ]


def test_two_class_roc_auc_counts_ties_as_half():
    scores = np.array([0.1, 0.4, 0.35, 0.8, 0.35, 0.9])
    labels = [0, 0, 1, 1, 0, 1]
    probs = np.stack([1 - scores, scores], axis=1)
    ev = evaluate_probabilities(probs, labels, ["neg", "pos"], [str(i) for i in range(6)])
    # Positive-negative pairs ranked right: 0.35 beats 0.1, ties 0.35 (half), loses to 0.4; 0.8 and 0.9 beat all.
    assert ev.roc_auc == pytest.approx(7.5 / 9)
    assert ev.confusion.tolist() == [[3, 0], [1, 2]]
    assert ev.accuracy == pytest.approx(5 / 6)
    expected_loss = -np.mean(np.log([0.9, 0.6, 0.35, 0.8, 0.65, 0.9]))
    assert ev.loss == pytest.approx(expected_loss)
    one_class = evaluate_probabilities(probs[:2], [0, 0], ["neg", "pos"], ["a", "b"])
    assert one_class.roc_auc is None  # undefined without both classes


def test_a_class_never_seen_or_predicted_scores_zero_without_warnings():
    probs = np.array([[0.9, 0.1, 0.0], [0.2, 0.8, 0.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ev = evaluate_probabilities(probs, [0, 1], CLASSES, ["a", "b"])
    row = ev.per_class.set_index("class").loc["owl"]
    assert (row["precision"], row["recall"], row["f1"], row["support"]) == (0.0, 0.0, 0.0, 0)
    assert ev.accuracy == 1.0
    assert ev.loss == pytest.approx(-(math.log(0.9) + math.log(0.8)) / 2)


def test_a_zero_probability_gives_a_finite_loss():
    ev = evaluate_probabilities(np.array([[1.0, 0.0]]), [1], ["a", "b"], ["x"])
    assert np.isfinite(ev.loss) and ev.loss > 10


def test_evaluation_round_trips_through_json():
    ev = evaluate_probabilities(PROBS, LABELS, CLASSES, PATHS)
    text = json.dumps(ev.to_dict())
    back = Evaluation.from_dict(json.loads(text))
    assert back.class_names == ev.class_names and back.accuracy == ev.accuracy and back.loss == ev.loss
    np.testing.assert_array_equal(back.confusion, ev.confusion)
    assert back.per_class.to_dict(orient="records") == ev.per_class.to_dict(orient="records")
    assert back.predictions.to_dict(orient="records") == ev.predictions.to_dict(orient="records")
    assert all(type(row["support"]) is int for row in json.loads(text)["per_class"])


@pytest.fixture
def run_copy(trained_run, tmp_path):
    """A private copy of the shared trained run, free to change."""
    source = trained_run["run"]
    store = RunStore(tmp_path / "runs")
    shutil.copytree(source.path, store.root / source.id)
    return store.get(source.id)


def test_evaluate_run_uses_the_test_split_and_caches_it(run_copy, cache_dir):
    run = run_copy
    saved = run.path / "evaluation.json"
    at_training = evaluate_run(run, cache=cache_dir)  # written when training finished
    test_files = run.split()["test"]
    assert len(at_training.predictions) == len(test_files) == 9
    assert sorted(at_training.predictions["path"]) == sorted(test_files)
    assert at_training.accuracy == pytest.approx(run.record.metrics.test_accuracy)
    assert int(at_training.confusion.sum()) == 9

    saved.unlink()
    fresh = evaluate_run(run, cache=cache_dir)  # recomputed from the saved model and the dataset
    assert saved.exists()
    assert fresh.accuracy == pytest.approx(at_training.accuracy)
    assert fresh.loss == pytest.approx(at_training.loss, rel=1e-5)
    np.testing.assert_array_equal(fresh.confusion, at_training.confusion)
    assert sorted(fresh.predictions["path"]) == sorted(test_files)

    record = json.loads(saved.read_text())
    record["accuracy"] = 0.123
    saved.write_text(json.dumps(record))
    assert evaluate_run(run, cache=cache_dir).accuracy == 0.123  # read back, not recomputed
    assert evaluate_run(run, cache=cache_dir, refresh=True).accuracy == pytest.approx(at_training.accuracy)
    assert json.loads(saved.read_text())["accuracy"] == pytest.approx(at_training.accuracy)


def test_evaluate_run_refuses_a_dataset_whose_classes_changed(run_copy, tmp_path, cache_dir):
    changed = tmp_path / "changed"
    shutil.copytree(run_copy.dataset_root(cache_dir), changed)
    write_dataset(changed, classes=("zebras",), per_class=3)
    run_copy.update(dataset=dataclasses.replace(run_copy.record.dataset, path=str(changed)))
    with pytest.raises(ValueError, match=r"classes changed.*Received: classes=\['cats', 'dogs', 'owls', 'zebras'\]"):
        evaluate_run(run_copy, cache=cache_dir, refresh=True)


def test_an_empty_test_split_round_trips_with_its_columns():
    empty = evaluate_probabilities(np.zeros((0, 3)), np.zeros(0, dtype=int), ["a", "b", "c"], [])
    again = Evaluation.from_dict(json.loads(json.dumps(empty.to_dict())))
    assert again.predictions.empty and list(again.predictions.columns) == list(empty.predictions.columns)
    assert again.most_confident_mistakes().empty and again.cell("a", "b").empty
    assert math.isnan(again.accuracy)


@pytest.fixture
def moved_run(trained_run, tmp_path):
    """A private copy of the shared trained run, pointing at a private copy of its dataset."""
    run_dir = relocated_run(trained_run["run"], tmp_path / "moved", tmp_path / "runs")
    return RunStore(run_dir.parent).get(run_dir.name)


def test_missing_test_images_are_counted_and_the_saved_evaluation_is_kept(moved_run, tmp_path, cache_dir):
    run, moved = moved_run, tmp_path / "moved"
    gone = run.split()["test"][:3]
    for rel in gone:
        (moved / rel).unlink()
    saved = (run.path / "evaluation.json").read_text()

    partial = evaluate_run(run, cache=cache_dir, refresh=True)
    assert (partial.num_missing, len(partial.predictions)) == (3, 6)
    assert not set(gone) & set(partial.predictions["path"])
    assert partial.warnings[0].startswith("3 of 9 test images are missing from the dataset folder")
    assert (run.path / "evaluation.json").read_text() == saved  # the run's own evaluation stays
    assert Evaluation.from_dict(json.loads(json.dumps(partial.to_dict()))).num_missing == 3


def test_a_dataset_changed_since_training_is_a_warning(moved_run, tmp_path, cache_dir):
    run, moved = moved_run, tmp_path / "moved"
    trained_on = run.split()["train"][0]
    (moved / trained_on).write_bytes((moved / run.split()["train"][1]).read_bytes())
    (run.path / "evaluation.json").unlink()

    ev = evaluate_run(run, cache=cache_dir)
    assert ev.num_missing == 0 and len(ev.predictions) == 9
    assert ev.dataset_changed
    assert len(ev.warnings) == 1 and "changed since this run was trained" in ev.warnings[0]
    assert not (run.path / "evaluation.json").exists()  # not the data it was trained on: not saved as its own


def test_an_unchanged_dataset_gives_no_warning(run_copy, cache_dir):
    ev = evaluate_run(run_copy, cache=cache_dir, refresh=True)
    assert (ev.num_missing, ev.dataset_changed, ev.warnings) == (0, False, [])


def test_the_images_of_a_runs_split_are_not_evicted_while_they_are_read(run_copy, make_dataset, cache_dir):
    other = data.scan(make_dataset(per_class=4, seed=5), cache=cache_dir)  # 12 images: 0.92 MB at 160 px
    with open_split(run_copy, cache=cache_dir) as (prepared, parts):
        assert prepcache.in_use(cache_dir) == {prepared.cache_path.name}  # 60 images at 32 px: 0.18 MB
        assert sorted(len(p) for p in parts.values()) == [9, 9, 42]
        with pytest.raises(ValueError, match="full with datasets other trainings are using now"):
            data.prepare(other, (160, 160), cache=cache_dir, max_cache_mb=1)  # fits only with the run's gone
        assert prepared.cache_path.exists() and prepared.images[parts["test"]].sum() > 0
    assert prepcache.in_use(cache_dir) == set()
    data.prepare(other, (160, 160), cache=cache_dir, max_cache_mb=1)  # read no more: now it may go
    assert not prepared.cache_path.exists()


@pytest.mark.parametrize("read", ["evaluate", "label issues"])
def test_evaluation_and_label_issues_hold_the_lease_while_the_model_reads(run_copy, cache_dir, monkeypatch, read):
    from cnnlab.analysis.label_issues import run_label_issues

    leased, load = [], Run.load_model
    monkeypatch.setattr(Run, "load_model", lambda run: leased.append(prepcache.in_use(cache_dir)) or load(run))
    if read == "evaluate":
        evaluate_run(run_copy, cache=cache_dir, refresh=True)
    else:
        run_label_issues(run_copy, cache=cache_dir)
    (array,) = prepcache.arrays(cache_dir)
    assert leased == [{array.path.name}]
    assert prepcache.in_use(cache_dir) == set()


def test_mistakes_rank_and_show_the_confidence_predict_reports_after_the_temperature():
    # Both are "a" taken for "b". The model is surer of the first (0.60 against 0.55), but a
    # temperature under 1 sharpens the second's flatter rest more: predict reports 0.70 against 0.75.
    probs = np.array([[0.39, 0.60, 0.01], [0.225, 0.55, 0.225]])
    ev = evaluate_probabilities(probs, [0, 0], ["a", "b", "c"], ["first.png", "second.png"], temperature=0.5)
    reported = reported_confidence(ev.predictions).tolist()
    assert reported == pytest.approx([0.36 / (0.36 + 0.1521 + 0.0001), 0.3025 / (0.3025 + 2 * 0.050625)], abs=1e-3)
    assert ev.most_confident_mistakes()["path"].tolist() == ["second.png", "first.png"]
    uncalibrated = evaluate_probabilities(probs, [0, 0], ["a", "b", "c"], ["first.png", "second.png"])
    assert uncalibrated.most_confident_mistakes()["path"].tolist() == ["first.png", "second.png"]
    # An evaluation saved before calibration has no calibrated figure: the model's own stands in.
    saved = ev.to_dict()
    for row in saved["predictions"]:
        del row["calibrated_confidence"]
    assert reported_confidence(Evaluation.from_dict(saved).predictions).tolist() == pytest.approx([0.60, 0.55])
    assert mistake_captions(ev.most_confident_mistakes()) == ["a → b (75%)", "a → b (70%)"]
