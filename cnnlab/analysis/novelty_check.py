"""How well a run's unfamiliar-image flag (`cnnlab.analysis.novelty`) tells its own test images from
images it has never seen the like of.

Two kinds of stranger are made on the spot, at the model's input size: images of another dataset
(the built-in sample's shapes, or, for a run trained on the sample, smooth random blobs) and uniform
noise. For each set: how many images, the fraction flagged, and the AUROC of the novelty score
against the run's test images (1.0: every stranger scores above every test image; 0.5: no better
than chance).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from PIL import Image

from cnnlab.analysis.embedding import run_embedding
from cnnlab.analysis.novelty import image_features, run_reference
from cnnlab.analysis.roc import roc_auc
from cnnlab.data import images
from cnnlab.runs.store import Run

if TYPE_CHECKING:
    from cnnlab.model import ModelConfig

SEPARATION_COLUMNS = ("images", "count", "flagged", "auroc")
NUM_STRANGERS = 100
TEST_IMAGES = "this run's test images"
SAMPLE_IMAGES = "the built-in sample (shapes)"
BLOB_IMAGES = "smooth random blobs"
NOISE_IMAGES = "uniform noise"


def novelty_separation(run: Run, *, cache: Path, num_images: int = NUM_STRANGERS, seed: int = 0) -> pd.DataFrame:
    """One row per set of images (`SEPARATION_COLUMNS`): the run's test images (its validation images
    when it has no test split), then `num_images` of another dataset and `num_images` of noise."""
    if isinstance(num_images, bool) or not isinstance(num_images, int) or not 1 <= num_images <= 1000:
        raise ValueError(f"num_images must be a whole number from 1 to 1000. Received: num_images={num_images!r}")
    reference = run_reference(run, cache=cache)
    embedding = run_embedding(run, cache=cache)
    splits = np.asarray(embedding.splits, dtype=object)
    part = "test" if (splits == "test").any() else "validation"
    own = reference.scores(embedding.features[splits == part])
    if not len(own):
        raise ValueError(
            "This run has neither test nor validation images to compare strangers with; train with a "
            f"validation or test split. Received: run={run.id!r}"
        )
    config = run.model_config()
    rng = np.random.default_rng(seed)
    on_sample = run.record.dataset.builtin == "sample"
    strangers = {
        BLOB_IMAGES if on_sample else SAMPLE_IMAGES: (blob_images if on_sample else sample_images)(
            num_images, config, rng
        ),
        NOISE_IMAGES: noise_images(num_images, config, rng),
    }
    model = run.load_model()
    rows: list[tuple[str, int, float, float | None]] = [
        (
            TEST_IMAGES if part == "test" else "this run's validation images",
            len(own),
            _flagged(own, reference.threshold),
            None,
        )
    ]
    for name, batch in strangers.items():
        scores = reference.scores(image_features(model, batch))
        both = np.concatenate([own, scores])
        labels = np.concatenate([np.zeros(len(own), np.int64), np.ones(len(scores), np.int64)])
        rows.append((name, len(scores), _flagged(scores, reference.threshold), roc_auc(both, labels == 1)))
    return pd.DataFrame(rows, columns=list(SEPARATION_COLUMNS))


def _flagged(scores: np.ndarray, threshold: float) -> float:
    return float(np.mean(scores > threshold))


def sample_images(n: int, config: ModelConfig, rng: np.random.Generator) -> np.ndarray:
    """`n` built-in sample images (every shape in turn) at the model's input size, uint8 (n, H, W, C)."""
    from cnnlab.data.sample import SAMPLE_CLASSES, draw_sample_image

    drawn = [draw_sample_image(SAMPLE_CLASSES[i % len(SAMPLE_CLASSES)], rng) for i in range(n)]
    return _as_input(drawn, config)


def blob_images(n: int, config: ModelConfig, rng: np.random.Generator) -> np.ndarray:
    """`n` images of smooth random colour blobs (a coarse random grid enlarged), uint8 (n, H, W, C)."""
    coarse = rng.integers(0, 256, (n, 4, 4, 3), dtype=np.uint8)
    return _as_input([Image.fromarray(c).resize((64, 64), Image.Resampling.BICUBIC) for c in coarse], config)


def noise_images(n: int, config: ModelConfig, rng: np.random.Generator) -> np.ndarray:
    """`n` images of uniform noise at the model's input size, uint8 (n, H, W, C)."""
    return rng.integers(0, 256, (n, *config.image_size, config.channels), dtype=np.uint8)


def _as_input(pictures: list[Image.Image], config: ModelConfig) -> np.ndarray:
    return np.stack([images.normalize(p, config.image_size, config.color_mode, config.resize_mode) for p in pictures])
