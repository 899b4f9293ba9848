"""Likely label errors: confident learning in NumPy, equal to cleanlab's, and swapped labels found."""

import numpy as np
import pytest

from cnnlab.analysis.label_issues import (
    ISSUE_COLUMNS,
    find_label_issues,
    issues_table,
    run_label_issues,
    write_issues_csv,
)
from cnnlab.runs.workspace import Workspace
from cnnlab.training.engine import train
from helpers import swap_labels, tiny_model_config, tiny_train_config, write_dataset


def test_confident_learning_on_a_hand_made_example():
    labels = np.array([0, 0, 0, 1, 1, 1])
    probs = np.array(
        [
            [0.9, 0.1],
            [0.8, 0.2],
            [0.2, 0.8],  # labelled 0, confidently 1: an issue
            [0.1, 0.9],
            [0.3, 0.7],
            [0.55, 0.45],  # labelled 1, predicted 0 but 0.55 is under class 0's threshold (0.633)
        ]
    )
    assert find_label_issues(labels, probs).tolist() == [2]
    probs[5] = [0.95, 0.05]  # now confidently 0, and less likely its label than image 2
    assert find_label_issues(labels, probs).tolist() == [5, 2]
    table = issues_table(labels, probs, ["cat", "dog"], [f"{i}.png" for i in range(6)], ["test"] * 6)
    assert list(table.columns) == list(ISSUE_COLUMNS)
    assert table.iloc[0].to_dict() == pytest.approx(
        {
            "path": "5.png",
            "split": "test",
            "given_label": "dog",
            "suggested_label": "cat",
            "given_label_probability": 0.05,
            "suggested_probability": 0.95,
        }
    )
    with pytest.raises(ValueError, match=r"Received: pred_probs.shape=\(6, 2\), labels.shape=\(5,\)"):
        find_label_issues(labels[:5], probs)


def test_the_issue_table_is_written_as_csv_and_read_back_equal(tmp_path):
    import pandas as pd

    labels, probs = np.array([0, 0, 1, 1]), np.array([[0.9, 0.1], [0.1, 0.9], [0.2, 0.8], [0.7, 0.3]])
    table = issues_table(labels, probs, ["cat", "dog"], [f"{i}.png" for i in range(4)], ["validation"] * 4)
    target = write_issues_csv(table, tmp_path / "issues.csv")
    assert target == tmp_path / "issues.csv" and [p.name for p in tmp_path.iterdir()] == ["issues.csv"]
    pd.testing.assert_frame_equal(pd.read_csv(target), table.reset_index(drop=True), check_dtype=False)


def test_the_ranking_equals_cleanlabs_find_label_issues():
    cleanlab_filter = pytest.importorskip("cleanlab.filter")
    rng = np.random.default_rng(0)
    for _ in range(50):
        n, k = int(rng.integers(20, 200)), int(rng.integers(2, 8))
        true = rng.integers(0, k, n)
        logits = rng.normal(0, 2, (n, k))
        logits[np.arange(n), true] += 2
        probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        labels = np.where(rng.random(n) < 0.15, rng.integers(0, k, n), true)
        if len(set(labels.tolist())) < k:
            continue
        expected = cleanlab_filter.find_label_issues(
            labels, probs, filter_by="confident_learning", return_indices_ranked_by="self_confidence"
        )
        assert find_label_issues(labels, probs).tolist() == expected.tolist()


@pytest.mark.slow
def test_swapped_labels_are_ranked_near_the_top(tmp_path, run_store, cache_dir):
    root = write_dataset(tmp_path / "data", per_class=30)
    swapped = swap_labels(root)
    before = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.png"))
    run = train(
        root,
        tiny_model_config(),
        tiny_train_config(epochs=8, validation_split=0.3, test_split=0.3),  # 4 left one swap unflagged
        workspace=Workspace(run_store, cache_dir),
    )
    held_out = set(run.split()["validation"]) | set(run.split()["test"])
    checked = [rel for rel in swapped if rel in held_out]
    assert checked, "no swapped image landed in the validation or test split"
    issues = run_label_issues(run, cache=cache_dir)
    top = issues["path"].tolist()[: len(checked) + 2]
    assert set(checked) <= set(top)
    row = issues.set_index("path").loc[checked[0]]
    assert row["given_label"] == checked[0].split("/")[0] and row["suggested_label"] != row["given_label"]
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*.png")) == before  # nothing moved
