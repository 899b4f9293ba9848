"""Training memory: `cnnlab.model.estimate_training_bytes` against the memory a real training takes.

Each row trains in a fresh process, so no peak carries over from another row: the model is built
and run on one image, then fitted for STEPS batches of random images, streamed through the
config's augmentation as `cnnlab.training.engine` streams them. For a backbone, "head" fits the new head on
the frozen backbone; "fine-tune N" fits the head phase, then unfreezes the backbone's top N layers
(as `--fine-tune-layers N`), recompiles at a tenth of the rate and fits again, as a training with
fine-tuning does in one process. Each epoch ends with a validation pass over one batch, as
`cnnlab.training.engine`'s do. The measured figure is the peak growth of resident memory during
the fit(s) (peak RSS minus RSS before the first fit), against the estimate the Train page shows
and hosted mode checks (`check_trainable`, CNNLAB_MAX_TRAINING_MB). The estimate should err on the
high side (measured/estimate below 1). Backbones use random weights (no network here): the memory
is the same with ImageNet weights. Measures and prints; asserts nothing.

    python -m bench.bench_memory
"""

from __future__ import annotations

import json
import os

from bench.child import run_child

STEPS = 3  # batches per phase: the first one reaches the peak, the others show it holds
BACKBONE_SIZE = [224, 224]  # what ImageNet weights were trained at
# (label, model-config fields, batch size, fine-tune layers)
CONFIGS = [
    ("default CNN (64 px, 3 blocks from 32, flatten, dense 128)", {}, 32, 0),
    ("default CNN at 128 px", {"image_size": [128, 128]}, 32, 0),
    (
        "224 px, 1 block of 32, global average",
        {"image_size": [224, 224], "conv_blocks": 1, "head": "global_average"},
        32,
        0,
    ),
    (
        "128 px, 2 blocks from 64, global average",
        {"image_size": [128, 128], "conv_blocks": 2, "filters": 64, "head": "global_average"},
        64,
        0,
    ),
    *(
        (f"{name} 224 px, {phase}", {"backbone": name, "image_size": BACKBONE_SIZE}, 32, layers)
        for name in ("mobilenet_v3_small", "mobilenet_v3_large", "efficientnet_b0")
        for phase, layers in (("head", 0), ("fine-tune 20", 20), ("fine-tune all", 300))
    ),
]

CHILD = """
import json, resource, sys
import numpy as np
from bench.child import resident_bytes
import tensorflow as tf
from cnnlab.model.augment import augmentation_model
from cnnlab.model import ModelConfig, build_model, compile_model, find_backbone, unfreeze_top_layers
fields, batch, layers, steps = json.loads(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
config = ModelConfig.from_dict({**ModelConfig().to_dict(), "backbone_weights": "none", **fields})
model = build_model(config, 5)
shape = (steps * batch, *config.image_size, config.channels)
x = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
y = (np.arange(steps * batch) % 5).astype(np.int32)
augment = augmentation_model(config) or (lambda images, training: images)
batches = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch)
validation = batches.take(1).map(lambda i, l: (tf.cast(i, tf.float32), l))
batches = batches.map(lambda i, l: (augment(tf.cast(i, tf.float32), training=True), l)).prefetch(tf.data.AUTOTUNE)
model.predict(x[:1], verbose=0)
before = resident_bytes()
model.fit(batches, validation_data=validation, epochs=1, verbose=0)
if layers:
    unfreeze_top_layers(find_backbone(model), layers)
    compile_model(model, config, config.learning_rate * 0.1)
    model.fit(batches, validation_data=validation, epochs=1, verbose=0)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"measured": peak - before}))
"""


def measure(fields: dict, batch: int, layers: int) -> int:
    """The peak growth of resident memory of one config's training, in a fresh process."""
    return run_child(CHILD, json.dumps(fields), str(batch), str(layers), str(STEPS))["measured"]


def estimate(fields: dict, batch: int, layers: int) -> int:
    """The estimate for this config's last phase, in bytes (what `check_trainable` compares with the limit)."""
    from cnnlab.model import ModelConfig, estimate_training_bytes

    config = ModelConfig.from_dict({**ModelConfig().to_dict(), "backbone_weights": "none", **fields})
    return estimate_training_bytes(config, 5, batch, layers)


def main() -> None:
    from bench.machine import machine

    print(f"machine: {machine()}, load average {' '.join(f'{v:.1f}' for v in os.getloadavg())}")
    print(f"{STEPS} batches per phase, one fresh process per row; float32; backbones with random weights")
    ratios = []
    for label, fields, batch, layers in CONFIGS:
        measured, estimated = measure(fields, batch, layers), estimate(fields, batch, layers)
        ratios.append(measured / estimated)
        print(
            f"{label:<58} batch {batch:>3}: measured growth {measured / 2**20:6.0f} MB, "
            f"estimate {estimated / 2**20:6.0f} MB, measured/estimate {measured / estimated:.2f}",
            flush=True,
        )
    print(f"measured/estimate: min {min(ratios):.2f}, max {max(ratios):.2f} (below 1.0: the estimate errs high)")
    print(f"load average after: {' '.join(f'{v:.1f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
