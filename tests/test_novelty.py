"""The unfamiliar-image flag: a reference fitted on a run's features, cached, that flags strangers."""

import shutil
from pathlib import Path

import numpy as np
import pytest

from cnnlab.analysis.embedding import run_embedding
from cnnlab.analysis.novelty import (
    MAX_REFERENCE,
    NOVELTY_FILE,
    QUANTILE,
    fit_reference,
    flag_images,
    knn_distance,
    run_reference,
    unit_rows,
)
from cnnlab.analysis.novelty_check import (
    NOISE_IMAGES,
    SAMPLE_IMAGES,
    SEPARATION_COLUMNS,
    TEST_IMAGES,
    noise_images,
    novelty_separation,
)
from cnnlab.runs.store import Run, RunStore
from helpers import write_dataset


@pytest.fixture
def run_copy(trained_run, tmp_path):
    """A copy of the shared run (its folder gets the cached files), with its own cache."""
    source = trained_run["run"]
    shutil.copytree(source.path, tmp_path / "models" / source.id)
    return RunStore(tmp_path / "models").get(source.id), tmp_path / "cache"


def test_the_threshold_lets_the_chosen_share_of_validation_images_pass():
    rng = np.random.default_rng(0)
    around = np.eye(16)[0]  # every training and validation image's features point about one way
    train, validation = around + 0.3 * rng.normal(size=(400, 16)), around + 0.3 * rng.normal(size=(200, 16))
    reference = fit_reference(train, validation)
    passed = np.mean(reference.scores(validation) <= reference.threshold)
    assert passed == pytest.approx(QUANTILE, abs=0.01)
    assert reference.calibrated_on == "validation" and reference.num_calibration == 200
    far = np.eye(16)[1] + 0.3 * rng.normal(size=(50, 16))  # another direction altogether
    assert np.mean(reference.scores(far) > reference.threshold) > 0.9


def test_without_validation_images_the_training_images_calibrate_each_without_itself():
    rng = np.random.default_rng(1)
    train = rng.normal(size=(100, 8))
    reference = fit_reference(train, np.zeros((0, 8)))
    assert reference.calibrated_on == "train" and reference.num_calibration == 100
    assert reference.threshold > 0.05  # an image's own distance (0) was left out
    assert np.mean(knn_distance(unit_rows(train), reference.features, 5, skip_self=True) <= reference.threshold) >= 0.95


def test_a_large_training_split_is_capped_and_the_cap_is_said():
    rng = np.random.default_rng(2)
    reference = fit_reference(rng.normal(size=(MAX_REFERENCE + 10, 4)), rng.normal(size=(20, 4)))
    assert len(reference.features) == MAX_REFERENCE and reference.num_train == MAX_REFERENCE + 10
    assert reference.capped


def test_too_few_training_images_is_a_one_line_error():
    with pytest.raises(ValueError, match=r"at least 2 training images.*Received: num_train=1$"):
        fit_reference(np.ones((1, 4)), np.ones((3, 4)))


def test_cosine_distances_of_unit_rows():
    reference = unit_rows(np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]))
    assert np.allclose(knn_distance(unit_rows(np.array([[2.0, 0.0]])), reference, 1), [0.0])
    assert np.allclose(knn_distance(unit_rows(np.array([[1.0, 1.0]])), reference, 2), [1 - np.sqrt(0.5)])


def test_noise_is_flagged_far_more_often_than_the_runs_own_test_images(run_copy):
    run, cache = run_copy
    reference = run_reference(run, cache=cache)
    embedding = run_embedding(run, cache=cache)
    splits = np.asarray(embedding.splits)
    validation = reference.scores(embedding.features[splits == "validation"])
    assert np.mean(validation <= reference.threshold) >= 0.85  # 95% of 9 validation images, by construction
    model = run.load_model()
    test_images = [_image(run, p) for p in np.asarray(embedding.paths)[splits == "test"]]
    own = flag_images(model, reference, test_images)
    noise = flag_images(model, reference, list(noise_images(40, run.model_config(), np.random.default_rng(0))))
    own_rate, noise_rate = np.mean([f.novel for f in own]), np.mean([f.novel for f in noise])
    assert noise_rate >= 0.8 and noise_rate > own_rate + 0.5
    flag = noise[0] if noise[0].novel else next(f for f in noise if f.novel)
    assert flag.explanation == "unlike the training images: farther from them than 95% of validation images are"
    assert flag.to_dict()["unlike_training"] is True


def test_images_of_a_very_different_dataset_are_flagged(run_copy, tmp_path):
    run, cache = run_copy
    reference = run_reference(run, cache=cache)
    strangers = write_dataset(tmp_path / "other", classes=("grey", "teal"), per_class=15, seed=5)
    from cnnlab.data.images import load_array

    config = run.model_config()
    arrays = [load_array(p, config.image_size) for p in sorted(strangers.rglob("*.png"))]
    flags = flag_images(run.load_model(), reference, arrays)
    assert np.mean([f.novel for f in flags]) >= 0.5


def test_the_reference_is_kept_with_the_run_and_not_fitted_again(run_copy):
    run, cache = run_copy
    first = run_reference(run, cache=cache)
    stored = run.path / NOVELTY_FILE
    written = stored.stat().st_mtime_ns
    second = run_reference(run, cache=cache)
    assert stored.stat().st_mtime_ns == written
    assert second.threshold == first.threshold and np.array_equal(second.features, first.features)
    stored.write_bytes(b"damaged")  # an unreadable file is fitted again, not an error
    assert run_reference(run, cache=cache).threshold == first.threshold


def test_the_separation_table_shows_strangers_apart_from_test_images(run_copy):
    run, cache = run_copy
    table = novelty_separation(run, cache=cache, num_images=30)
    assert list(table.columns) == list(SEPARATION_COLUMNS)
    assert table["images"].tolist() == [TEST_IMAGES, SAMPLE_IMAGES, NOISE_IMAGES]
    assert table["count"].tolist()[1:] == [30, 30]
    noise = table.set_index("images").loc[NOISE_IMAGES]
    assert noise["auroc"] > 0.9 and noise["flagged"] > table["flagged"].iloc[0]
    with pytest.raises(ValueError, match=r"Received: num_images=0$"):
        novelty_separation(run, cache=cache, num_images=0)


def _image(run, rel):
    from cnnlab.data.images import load_array

    return load_array(Path(run.record.dataset.path) / rel, run.model_config().image_size)


def test_a_read_only_runs_reference_is_kept_under_the_cache_not_in_its_folder(run_copy):
    run, cache = run_copy
    read_only = Run(run.path, run.record, is_demo=True)  # as the shipped demo run is
    before = sorted(p.name for p in run.path.iterdir())
    reference = run_reference(read_only, cache=cache)
    assert sorted(p.name for p in run.path.iterdir()) == before
    assert (cache / "embeddings" / f"{run.id}-{NOVELTY_FILE}").is_file()
    assert run_reference(read_only, cache=cache).threshold == reference.threshold
