"""Training memory: `cnnlab.model.estimate_training_bytes` against the memory a real step takes.

For each config, a fresh process builds the model, then fits three batches of random images;
the growth of its resident memory (peak RSS during the fit minus RSS before it) is compared with
the estimate the Train page shows and hosted mode checks (CNNLAB_MAX_TRAINING_MB). The estimate
should err on the high side. Measures and prints; asserts nothing.

    python -m bench.bench_memory
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

CONFIGS = [
    ({}, 32),
    ({"image_size": [128, 128]}, 32),
    ({"image_size": [224, 224], "conv_blocks": 1, "filters": 32, "head": "global_average"}, 32),
    ({"image_size": [128, 128], "conv_blocks": 2, "filters": 64, "head": "global_average"}, 64),
]

CHILD = """
import json, os, resource, sys
import numpy as np
from cnnlab.model import ModelConfig, build_model, estimate_training_bytes
fields, batch = json.loads(sys.argv[1]), int(sys.argv[2])
config = ModelConfig.from_dict({**ModelConfig().to_dict(), **fields})
model = build_model(config, 5)
x = np.random.default_rng(0).integers(0, 256, (3 * batch, *config.image_size, 3)).astype("float32")
y = np.arange(3 * batch) % 5
model.predict(x[:1], verbose=0)
before = int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
model.fit(x, y, batch_size=batch, epochs=1, verbose=0)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"estimate": estimate_training_bytes(config, 5, batch), "measured": peak - before}))
"""


def main() -> None:
    from bench.machine import machine

    print(f"machine: {machine()}")
    env = {
        **os.environ,
        "TF_CPP_MIN_LOG_LEVEL": "3",
    }
    ratios = []
    for fields, batch in CONFIGS:
        out = subprocess.run(
            [sys.executable, "-c", CHILD, json.dumps(fields), str(batch)],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
        result = json.loads(out.stdout.strip().splitlines()[-1])
        ratio = result["measured"] / result["estimate"]
        ratios.append(ratio)
        print(
            f"{json.dumps(fields) if fields else 'default':<90} batch {batch:>3}: estimate {result['estimate'] / 2**20:6.0f} MB, "
            f"measured growth {result['measured'] / 2**20:6.0f} MB ({ratio:.2f} of the estimate)"
        )
    print(f"measured/estimate: min {min(ratios):.2f}, max {max(ratios):.2f} (below 1.0: the estimate errs high)")


if __name__ == "__main__":
    main()
