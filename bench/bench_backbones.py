"""Backbones against the default CNN: training speed and memory at the image size each needs.

Each model trains in a fresh process on random images (what is measured is compute, not
learning): a warm-up epoch, then three timed epochs of the head phase (backbone frozen) and,
for backbones, three of fine-tuning (top 20 layers trainable, as `--fine-tune-layers 20`). It
prints the median images per second of each phase, the peak growth of resident memory during
training against `estimate_training_bytes` (what the Train page shows and hosted mode checks),
and each speed as a ratio to the default CNN's. Measures and prints; asserts nothing.
Backbones use random weights: ImageNet weights cannot be downloaded on these machines, which
changes no timing or memory figure, but means no accuracy figure is measured here.

    python -m bench.bench_backbones
"""

from __future__ import annotations

import json

from bench.child import run_child

BATCH = 16
STEPS = 4  # batches per timed epoch
# (label, model-config fields): the default CNN at its 64 px, each backbone at the 224 px its
# ImageNet weights were trained at, and the small MobileNet at a cheaper 96 px.
CONFIGS = [
    ("default CNN @64", {}),
    ("mobilenet_v3_small @224", {"backbone": "mobilenet_v3_small", "image_size": [224, 224]}),
    ("mobilenet_v3_large @224", {"backbone": "mobilenet_v3_large", "image_size": [224, 224]}),
    ("efficientnet_b0 @224", {"backbone": "efficientnet_b0", "image_size": [224, 224]}),
    ("mobilenet_v3_small @96", {"backbone": "mobilenet_v3_small", "image_size": [96, 96]}),
]

CHILD = """
import json, resource, sys, time
import numpy as np
from bench.child import resident_bytes
from cnnlab.model import ModelConfig, build_model, compile_model, estimate_training_bytes, find_backbone
from cnnlab.model import unfreeze_top_layers
fields, batch, steps = json.loads(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
config = ModelConfig.from_dict({**ModelConfig().to_dict(), "backbone_weights": "none", **fields})
model = build_model(config, 5)
x = np.random.default_rng(0).integers(0, 256, (steps * batch, *config.image_size, 3)).astype("float32")
y = np.arange(steps * batch) % 5
model.predict(x[:1], verbose=0)
before = resident_bytes()

def speed():
    model.fit(x[:batch], y[:batch], batch_size=batch, epochs=1, verbose=0)  # builds the train step
    times = []
    for _ in range(3):
        started = time.perf_counter()
        model.fit(x, y, batch_size=batch, epochs=1, verbose=0)
        times.append(time.perf_counter() - started)
    return len(x) / float(np.median(times))

result = {"head": speed(), "fine_tune": None}
backbone = find_backbone(model)
if backbone is not None:
    unfreeze_top_layers(backbone, 20)
    compile_model(model, config, config.learning_rate * 0.1)
    result["fine_tune"] = speed()
result["measured"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
result["estimate"] = estimate_training_bytes(config, 5, batch)
result["params"] = model.count_params()
print(json.dumps(result))
"""


def measure(fields: dict) -> dict:
    """One config's figures, from a fresh process started in the repository root."""
    return run_child(CHILD, json.dumps(fields), str(BATCH), str(STEPS))


def main() -> None:
    from bench.machine import machine

    print(f"machine: {machine()}")
    print(f"batch {BATCH}, {STEPS * BATCH} random images per timed epoch, median of 3 epochs; backbones random-weight")
    results = {label: measure(fields) for label, fields in CONFIGS}
    base = results[CONFIGS[0][0]]["head"]
    for label, r in results.items():
        tune = (
            "" if r["fine_tune"] is None else f", fine-tune {r['fine_tune']:6.1f} img/s ({r['fine_tune'] / base:.2f}x)"
        )
        print(
            f"{label:<24} {r['params']:>9,} weights: head {r['head']:6.1f} img/s ({r['head'] / base:.2f}x){tune}; "
            f"memory growth {r['measured'] / 2**20:5.0f} MB, estimate {r['estimate'] / 2**20:5.0f} MB "
            f"({r['measured'] / r['estimate']:.2f} of it)"
        )


if __name__ == "__main__":
    main()
