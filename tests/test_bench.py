"""The benchmarks still run: the cheaper ones with tiny arguments, each checked for the figures it
prints (their values are the benchmark's business, not a test's; see bench/README.md). Each runs as
`python -m bench.NAME`, forked with TensorFlow already imported (tests/forked.py)."""

import re

import pytest

import forked
from cnnlab.settings import DEMO_RUN_DIR
from helpers import cache_with_sample

pytestmark = pytest.mark.slow

# bench module -> (tiny arguments, a line that shows it measured what it is for)
RUNS = {
    "bench_prepare": (["--files", "12", "--repeats", "1", "--size", "32"], r"cnnlab prepare, first time: +\d+\.\d+ s"),
    "bench_batch": (
        ["--sizes", "20", "40", "--repeats", "1", "--batch-size", "8"],
        r"growth from 20 to 40 images: [+-]\d+ MB",
    ),
    "bench_predict": (["--repeats", "2", "--images", "16"], r"16 images: cnnlab predict on PNG bytes +\d+ img/s"),
    "bench_inspect": (["--repeats", "1"], r"feature maps, all layers, median of 1: +\d+\.\d+ s"),
    "bench_calibration": (["--repeats", "1"], r"of it calibration_of +\d+\.\d+ ms"),
    "bench_explain": (["--repeats", "1"], r"all four, one image: +median of 1 \d+\.\d+ s"),
    "bench_embedding": (["--images", "120", "--repeats", "1"], r"features / validation pass: \d+\.\d+x"),
    "bench_train": (
        ["--epochs", "2", "--repeats", "1", "--per-class", "40"],
        r"throughput ratio cnnlab/plain: \d+\.\d+",
    ),
    "bench_retrain": (
        ["--trainings", "2", "--epochs", "1", "--per-class", "40"],
        r"given back RSS after each training \(MB\): \d+ \d+;",
    ),
    "bench_versions": (["--images", "200", "--repeats", "2", "--k", "5"], r"beside the version before it: +\d+\.\d+ s"),
    "bench_serve": (["--repeats", "2"], r"served / \(in-process \+ empty \(GET /ping\)\): \d+\.\d+x"),
    "bench_trust": (["--repeats", "1"], r"evaluate_tta on \d+ test images: accuracy \d\.\d+ plain"),
    "bench_exports": (["--repeats", "2", "--formats", "keras,tflite-int8"], r"tflite-int8 +\d+\.\d+ +\d\.\d+"),
    "bench_duplicates": (
        ["--images", "300", "--sample-per-class", "20"],
        r"find_duplicates, again \(decoded 0, hashes cached\): \d+\.\d+ s",
    ),
}
TAKES_CACHE = {
    "bench_batch",
    "bench_calibration",
    "bench_exports",
    "bench_predict",
    "bench_inspect",
    "bench_train",
    "bench_retrain",
    "bench_serve",
    "bench_trust",
}


@pytest.fixture(scope="module")
def bench_cache(tmp_path_factory):
    """One cache folder for these runs, holding a copy of the built-in sample drawn once for the whole
    test run (`helpers.cache_with_sample`)."""
    return cache_with_sample(tmp_path_factory, "bench-cache")


@pytest.mark.parametrize("name", sorted(RUNS))
def test_benchmark_runs_and_prints_its_figures(name, bench_cache, tmp_path):
    args, figure = RUNS[name]
    demo = demo_files()
    cache = ["--cache", str(bench_cache)] if name in TAKES_CACHE else []
    done = forked.run(["-m", f"bench.{name}", *args, *cache], tmp_path / name)
    stdout = done.output()
    assert done.poll() == 0, done.errors()[-3000:]
    assert stdout.startswith("machine: ") or "\nmachine: " in stdout, stdout[-3000:]
    assert re.search(figure, stdout), stdout[-3000:]
    # The demo run is the repository's and read-only: what a benchmark computes from it goes to the cache.
    assert demo_files() == demo


def demo_files() -> dict[str, int]:
    """The demo run folder's files and when each was last written."""
    return {p.name: p.stat().st_mtime_ns for p in DEMO_RUN_DIR.iterdir()}


def test_a_slice_of_under_two_images_per_class_is_refused_before_any_drawing(tmp_path):
    from bench.subset import sample_slice

    with pytest.raises(ValueError, match=r"at least 2 images per class; pass --per-class 2 or more.*per_class=1$"):
        sample_slice(tmp_path, 1)
    assert list(tmp_path.iterdir()) == []
