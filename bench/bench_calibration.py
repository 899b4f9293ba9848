"""Calibration's cost: what measuring it (ECE, Brier, reliability, ROC curves) and fitting the temperature add
to an evaluation, side by side with the model's own pass.

With the demo model on its built-in sample split (360 validation and 360 test images, 64x64, 5 classes):
- the model's pass over the test images (`probabilities`, warm: the first call's tracing left out);
- `evaluate_probabilities` with the temperature (every metric, calibration and ROC curves included),
  and of it `calibration_of` and `one_vs_rest` alone;
- `fit_temperature` on the validation probabilities, and the validation pass it needs, once per
  model at the end of training (against the demo's recorded training time).
Then the same calculations on random probabilities of 20,000 images and 100 classes, the largest
evaluation the app expects. Medians of `--repeats`. Measures and prints; asserts nothing.

    python -m bench.bench_calibration [--repeats 7] [--cache DIR]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from bench.machine import machine
from cnnlab import data
from cnnlab.analysis.calibration import calibration_of, fit_temperature
from cnnlab.analysis.evaluate import evaluate_probabilities, open_split, probabilities
from cnnlab.analysis.roc import one_vs_rest
from cnnlab.runs.store import RunStore
from cnnlab.settings import DEMO_RUN_DIR, Settings


def median_s(call: Callable[[], object], repeats: int) -> float:
    """Median wall seconds of `repeats` calls."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    """Time the demo's evaluation parts, then the large random case, and print them."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--cache", type=Path, default=Settings().cache_dir, help="cache folder (default: %(default)s)")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    run = RunStore(DEMO_RUN_DIR.parent, demo=DEMO_RUN_DIR).get("demo")
    model, names = run.load_model(), run.class_names
    with open_split(run, cache=args.cache) as (prepared, parts):
        test, validation = parts["test"], parts["validation"]
        probabilities(model, data.make_dataset(prepared, test, 64))  # traces the predict function once
        model_pass = median_s(lambda: probabilities(model, data.make_dataset(prepared, test, 64)), args.repeats)
        validation_pass = median_s(
            lambda: probabilities(model, data.make_dataset(prepared, validation, 64)), args.repeats
        )
        probs = probabilities(model, data.make_dataset(prepared, test, 64))
        val_probs = probabilities(model, data.make_dataset(prepared, validation, 64))
        labels, val_labels = prepared.labels[test], prepared.labels[validation]
        paths = [prepared.report.files[i] for i in test]
    temperature = fit_temperature(val_probs, val_labels)
    rows = {
        "model pass over the test images": model_pass,
        "evaluate_probabilities (all metrics, calibration, ROC)": median_s(
            lambda: evaluate_probabilities(probs, labels, names, paths, temperature), args.repeats
        ),
        "  of it calibration_of": median_s(lambda: calibration_of(probs, labels, temperature), args.repeats),
        "  of it one_vs_rest (ROC curves, AUC)": median_s(lambda: one_vs_rest(probs, labels, names), args.repeats),
        "fit_temperature (validation probabilities)": median_s(
            lambda: fit_temperature(val_probs, val_labels), args.repeats
        ),
        "validation pass (once per model)": validation_pass,
    }
    print(f"\nDemo model, {len(test)} test and {len(validation)} validation images, {len(names)} classes:")
    for name, value in rows.items():
        print(f"  {name:56s} {value * 1000:9.2f} ms  ({value / model_pass:6.1%} of the test pass)")
    print(
        f"  validation pass against the demo's recorded training ({run.record.duration_s} s): "
        f"{validation_pass / (run.record.duration_s or 1):.2%}"
    )

    rng = np.random.default_rng(0)
    n, k = 20_000, 100
    big = rng.dirichlet(np.full(k, 0.1), size=n)
    big_labels = rng.integers(0, k, n)
    big_names = [f"class{i}" for i in range(k)]
    big_paths = [f"{i}.png" for i in range(n)]
    print(
        f"\nRandom probabilities, {n} images, {k} classes (a model pass over them: about "
        f"{model_pass / len(test) * n:.0f} s at the demo model's rate):"
    )
    repeats = max(1, args.repeats // 2)
    for name, call in {
        "evaluate_probabilities (all metrics, calibration, ROC)": lambda: evaluate_probabilities(
            big, big_labels, big_names, big_paths, 1.5
        ),
        "  of it calibration_of": lambda: calibration_of(big, big_labels, 1.5),
        "  of it one_vs_rest (ROC curves, AUC)": lambda: one_vs_rest(big, big_labels, big_names),
        "fit_temperature": lambda: fit_temperature(big, big_labels),
    }.items():
        print(f"  {name:56s} {median_s(call, repeats) * 1000:9.1f} ms")


if __name__ == "__main__":
    main()
