"""The built-in sample: deterministic PNG class folders, validated arguments, atomic caching."""

import hashlib
import threading

import numpy as np
import pytest
from PIL import Image

from cnnlab.data import sample
from cnnlab.data.sample import SAMPLE_CLASSES, draw_sample_image, sample_dir, write_sample


def _files(root):
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def test_writes_class_folders_of_rgb_pngs(tmp_path):
    root = write_sample(tmp_path / "s", num_per_class=3)
    assert root == tmp_path / "s"
    assert sorted(p.name for p in root.iterdir()) == sorted(SAMPLE_CLASSES)
    assert len(SAMPLE_CLASSES) >= 5
    for name in SAMPLE_CLASSES:
        files = sorted((root / name).iterdir())
        assert [f.name for f in files] == [f"{name}_{i:04d}.png" for i in range(3)]
        for f in files:
            with Image.open(f) as img:
                assert (img.format, img.mode, img.size) == ("PNG", "RGB", (64, 64))


def test_same_seed_gives_identical_bytes(tmp_path):
    a = write_sample(tmp_path / "a", num_per_class=2, seed=7)
    b = write_sample(tmp_path / "b", num_per_class=2, seed=7)
    assert _files(a) == _files(b)
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in _files(a))


def test_different_seed_gives_different_images(tmp_path):
    a = write_sample(tmp_path / "a", num_per_class=2, seed=0)
    b = write_sample(tmp_path / "b", num_per_class=2, seed=1)
    assert all((a / f).read_bytes() != (b / f).read_bytes() for f in _files(a))


def test_images_do_not_depend_on_how_many_are_written(tmp_path):
    small = write_sample(tmp_path / "small", num_per_class=1)
    large = write_sample(tmp_path / "large", num_per_class=3)
    assert all((small / f).read_bytes() == (large / f).read_bytes() for f in _files(small))


def test_images_vary_within_a_class(tmp_path):
    root = write_sample(tmp_path / "s", num_per_class=4, image_size=32)
    pixels = [np.asarray(Image.open(p), dtype=np.int16) for p in sorted((root / "star").iterdir())]
    assert pixels[0].shape == (32, 32, 3)
    assert all(np.abs(pixels[0] - other).mean() > 10 for other in pixels[1:])


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"num_per_class": 0}, "num_per_class"),
        ({"num_per_class": 2.5}, "num_per_class"),
        ({"num_per_class": True}, "num_per_class"),
        ({"seed": -1}, "seed"),
        ({"seed": "0"}, "seed"),
        ({"image_size": 8}, "image_size"),
        ({"image_size": (64, 64)}, "image_size"),
    ],
)
def test_bad_arguments_raise(tmp_path, kwargs, name):
    with pytest.raises(ValueError, match=rf"^{name} must be .*Received: {name}=") as info:
        write_sample(tmp_path / "s", **kwargs)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "s").exists()


def test_refuses_a_folder_that_already_has_files(tmp_path):
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "mine.txt").write_text("keep")
    with pytest.raises(ValueError, match="new or empty folder.*Received: out_dir="):
        write_sample(tmp_path / "s", num_per_class=1)
    assert _files(tmp_path / "s") == ["mine.txt"]


def test_unknown_shape_raises():
    with pytest.raises(ValueError, match="Received: name='hexagram'"):
        draw_sample_image("hexagram", np.random.default_rng(0))


def test_sample_dir_generates_once_in_the_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(sample, "DEFAULT_NUM_PER_CLASS", 2)
    root = sample_dir(tmp_path)
    assert root == tmp_path / "sample-v1-seed0"
    assert len(_files(root)) == 2 * len(SAMPLE_CLASSES)
    stamp = (root / "circle" / "circle_0000.png").stat().st_mtime_ns
    assert sample_dir(tmp_path) == root
    assert (root / "circle" / "circle_0000.png").stat().st_mtime_ns == stamp
    assert [p.name for p in tmp_path.iterdir()] == ["sample-v1-seed0"]  # no temporary folders left


def test_concurrent_sample_dir_calls_agree(tmp_path, monkeypatch):
    monkeypatch.setattr(sample, "DEFAULT_NUM_PER_CLASS", 3)
    results, errors = [], []

    def call():
        try:
            results.append(sample_dir(tmp_path))
        except Exception as exc:  # noqa: BLE001 - surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert results == [tmp_path / "sample-v1-seed0"] * 3
    assert [p.name for p in tmp_path.iterdir()] == ["sample-v1-seed0"]
    assert len(_files(tmp_path / "sample-v1-seed0")) == 3 * len(SAMPLE_CLASSES)


def test_version_1_images_stay_the_same():
    """The demo model was trained on sample v1: a change to what is drawn needs a new SAMPLE_VERSION."""
    digest = hashlib.sha256()
    for class_index, name in enumerate(SAMPLE_CLASSES):
        for i in range(6):
            image = draw_sample_image(name, np.random.default_rng([sample.DEFAULT_SEED, class_index, i]))
            digest.update(np.asarray(image).tobytes())
    assert sample.SAMPLE_VERSION == 1
    assert digest.hexdigest()[:16] == "368aba4d7e6b935e"
