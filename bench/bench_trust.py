"""Predictions you can trust, on the shipped demo run (the default CNN trained on the built-in sample,
with horizontal flips and rotation): what the unfamiliar-image flag and test-time augmentation cost,
and how well the flag separates images it has never seen the like of.

- flag, first: `run_reference` with nothing stored (the embedding pass over the sample's 2,400
  images, then the fit); cached: `run_reference` again; per image: `flag_images` on one image and on
  32 (the extra feature pass a prediction pays);
- separation: `novelty_separation` (the sample's test images against smooth random blobs and noise);
- TTA: `predict` of 1 and 32 images without and with `tta` (interleaved, medians of `--repeats`), and
  `evaluate_tta` on the demo's test split (its own timing of the plain and the TTA passes).
The sample is generated and decoded before anything is timed. Measures and prints; asserts nothing.

    python -m bench.bench_trust [--repeats 5] [--cache FOLDER]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from bench.machine import machine


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--cache", type=Path, default=None, help="a cache folder holding the sample (default: a new one)"
    )
    args = parser.parse_args(argv)

    from cnnlab.analysis.embedding import EMBEDDINGS_DIR
    from cnnlab.analysis.evaluate import open_split
    from cnnlab.analysis.novelty import flag_images, run_reference
    from cnnlab.analysis.novelty_check import novelty_separation, sample_images
    from cnnlab.analysis.tta import evaluate_tta, tta_transforms
    from cnnlab.deploy.prediction import predict
    from cnnlab.runs.store import RunStore
    from cnnlab.settings import DEMO_RUN_DIR

    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory() as tmp:
        cache = args.cache or Path(tmp) / "cache"
        run = next(r for r in RunStore(Path(tmp) / "models", demo=DEMO_RUN_DIR).list() if r.is_demo)
        config = run.model_config()
        with open_split(run, cache=cache):  # generates and decodes the sample, untimed
            pass
        for stored in (cache / EMBEDDINGS_DIR).glob(f"{run.id}*.npz"):  # the demo's embedding and reference
            stored.unlink()
        began = time.perf_counter()
        reference = run_reference(run, cache=cache)
        first = time.perf_counter() - began
        cached = _median(args.repeats, lambda: run_reference(run, cache=cache))
        print(
            f"flag: first fit {first:.2f} s (embedding pass over {reference.num_train} training images and the rest), "
            f"cached {cached * 1000:.1f} ms; reference {reference.features.shape} float32, threshold "
            f"{reference.threshold:.4f} from {reference.num_calibration} {reference.calibrated_on} images"
        )
        model = run.load_model()
        images = list(sample_images(32, config, np.random.default_rng(1)))
        for count in (1, 32):
            seconds = _median(args.repeats, lambda n=count: flag_images(model, reference, images[:n]))
            print(f"flag of {count} image(s): {seconds * 1000:.1f} ms")

        began = time.perf_counter()
        table = novelty_separation(run, cache=cache)
        print(f"separation ({time.perf_counter() - began:.2f} s):")
        print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))

        names = tta_transforms(config)
        print(f"TTA transforms for the demo run: {', '.join(names)} ({len(names)})")
        pictures = [Image.fromarray(a) for a in images]  # what `predict` takes, as an upload opens
        for count in (1, 32):
            plain, tta = [], []
            for _ in range(args.repeats):  # interleaved
                plain.append(_timed(lambda n=count: predict(model, run.class_names, config, pictures[:n])))
                tta.append(_timed(lambda n=count: predict(model, run.class_names, config, pictures[:n], tta=True)))
            p, t = statistics.median(plain), statistics.median(tta)
            print(f"predict {count} image(s): {p * 1000:.1f} ms plain, {t * 1000:.1f} ms with TTA ({t / p:.2f}x)")
        result = evaluate_tta(run, cache=cache)
        print(
            f"evaluate_tta on {result.num_images} test images: accuracy {result.accuracy:.4f} plain, "
            f"{result.accuracy_tta:.4f} with TTA; loss {result.loss:.4f} / {result.loss_tta:.4f}; "
            f"{result.seconds:.2f} s / {result.seconds_tta:.2f} s ({result.seconds_tta / result.seconds:.2f}x)"
        )


def _timed(call) -> float:
    began = time.perf_counter()
    call()
    return time.perf_counter() - began


def _median(repeats: int, call) -> float:
    call()  # warm: the first call traces the model
    return statistics.median(_timed(call) for _ in range(repeats))


if __name__ == "__main__":
    main()
