"""Twenty hosted visitors at once against one hosted server process (`bench/bench_hosted_load.py`,
run in a fresh process so that its memory is the server's alone): each uploads a zip, trains a
tiny model and predicts, under the server's limit of one training at a time.

Every training completes or is refused in one line, one at a time; each visitor predicts with
their own run and is shown only their runs and the demo; the server stays within the memory a
hosted app gets.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from helpers import REPO_ROOT

pytestmark = pytest.mark.slow

VISITORS = 20


def test_twenty_hosted_visitors_at_once_each_train_alone_see_only_their_runs_and_fit_the_memory(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "bench.bench_hosted_load", "--visitors", str(VISITORS), "--json"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    print("\n".join(done.stdout.splitlines()[:-1]))  # the figures, for the log
    result = json.loads(done.stdout.strip().splitlines()[-1])
    visitors = result["visitors"]

    assert len(visitors) == VISITORS and len({v["id"] for v in visitors}) == VISITORS
    for visitor in visitors:
        assert "exception" not in visitor, visitor
        assert visitor["upload_errors"] == [], visitor
        if visitor["status"] == "refused":
            (refusal,) = visitor["refusal"]
            assert "\n" not in refusal.strip(), visitor
            continue
        assert visitor["status"] == "completed", visitor
        assert visitor["predict_run"] == visitor["run"] and visitor["prediction"], visitor
        assert sorted(visitor["listed"]) == sorted([visitor["run"], "demo"]), visitor
        assert result["run_owners"][visitor["run"]] == visitor["id"]
    trained = [v for v in visitors if v["status"] == "completed"]
    assert trained and set(result["run_owners"]) == {v["run"] for v in trained}

    slots = sorted(tuple(v["slot"]) for v in trained)
    for (_, ended), (started, _) in zip(slots, slots[1:], strict=False):
        assert started >= ended, slots  # one training at a time, server-wide
    assert result["peak_rss"] < result["budget_gb"] * 1e9
