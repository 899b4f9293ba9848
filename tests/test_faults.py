"""Fault injection: trainings, resumes, exports and upload extractions killed with SIGKILL at random
moments (a fixed seed picks the moment of progress and the part of the time after it; each
failure names both), then everything left behind checked.

After every kill: the clean-up removes the dead writer's temporaries and nothing else; every run
folder lists and its files read whole; every model saved loads; every decoded-image array loads;
every export folder is complete; every extracted upload scans. At the end interrupted runs resume
to completion.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import os
import random
import shutil
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import forked
from cnnlab.common.files import _TEMPORARY, remove_stale_temporaries
from cnnlab.data import scan
from cnnlab.data.archive import dataset_root
from cnnlab.deploy.export import read_export
from cnnlab.runs.store import RunStore
from helpers import write_dataset

pytestmark = pytest.mark.slow

SEED = 20261207
KILLS = {"train": 13, "resume": 9, "export": 8, "upload": 8}
TRIES = 3  # a program that ends before its kill runs again (a loaded machine's timings wander)
TINY = [
    "--image-size", "16", "--conv-blocks", "1", "--filters", "4", "--dense-units", "8", "--flip", "none",
    "--rotation", "0", "--batch-size", "8", "--patience", "0", "--epochs", "4",
]  # fmt: skip
UPLOAD = """
import sys
from pathlib import Path
from cnnlab.data import archive
archive.open_upload(Path(sys.argv[1]).read_bytes(), "pets.zip", Path(sys.argv[2]))
print("extracted", flush=True)
"""


def command(phase: str, data: Path, target: str, zip_path: Path, uploads: Path) -> list[str]:
    """The command line of one phase after `python` (as a person or the app would start it)."""
    if phase == "train":
        return ["-m", "cnnlab", "train", str(data), *TINY]
    if phase == "resume":
        return ["-m", "cnnlab", "resume", target]
    if phase == "export":
        return ["-m", "cnnlab", "export", target, "--format", "savedmodel"]
    return ["-c", UPLOAD, str(zip_path), str(uploads)]


Events = dict[str, Callable[[str], bool]]


def run_killed(argv: list[str], env: dict[str, str], output: Path, events: Events, kill: float | None) -> dict | None:
    """Run `python *argv` (forked with TensorFlow imported: the kills land in the work, not in the
    import), watching `events` (checks of its output so far). With `kill`, SIGKILL it that many
    seconds after its one event first holds and return None; otherwise, or if it ends first, return
    the seconds from each event to its end (a run not to be killed must end cleanly)."""
    program = forked.start(argv, output, env=env, merge=True)
    began, held = time.monotonic(), {}
    while program.poll() is None:
        now = time.monotonic()
        assert now - began < 600, (argv, program.output()[-2000:])
        held |= {name: now for name, holds in events.items() if name not in held and holds(program.output())}
        if kill is not None and held and now - min(held.values()) >= kill:
            program.kill()
            return None
        time.sleep(0.01)
    if kill is None:
        assert program.poll() == 0, program.output()[-2000:]
    return {name: time.monotonic() - at for name, at in held.items()}


def appeared(folder: Path) -> Callable[[str], bool]:
    """True once something new is in `folder` (a run folder, an export's or extraction's temporary)."""
    before = set(folder.iterdir()) if folder.is_dir() else set()
    return lambda output: folder.is_dir() and bool(set(folder.iterdir()) - before)


def printed(text: str) -> Callable[[str], bool]:
    return lambda output: text in output


def events(phase: str, models: Path, run_id: str, uploads: Path) -> Events:
    """The moments of a phase's progress to kill it after: it starts writing (its run folder made or
    claimed, an export's or extraction's temporary), an epoch printed."""
    if phase == "train":
        return {"it started writing": appeared(models)} | {f"epoch {k}": printed(f"epoch {k}/") for k in (1, 2, 3)}
    if phase == "resume":
        return {"it started writing": printed(""), "epoch 1": printed("epoch 1/")}
    return {"it started writing": appeared(models / run_id / "exports" if phase == "export" else uploads)}


def kill_point(phase: str, rng: random.Random, options: Events, windows: dict[str, float]) -> tuple[Events, float, str]:
    """Where to kill a phase: after one of its events, a random part of the time an uninterrupted
    run went on after it (`windows`, measured on this machine: a fixed delay would miss the work on
    a fast one); and a label for the failure message."""
    name = rng.choice(sorted(options))
    delay = rng.uniform(0.0, 1.0) * windows[name]
    return {name: options[name]}, delay, f"{phase}: {delay:.2f}s after {name}"


def contents(folder: Path) -> dict[str, bytes]:
    """Every file under `folder`, by its path there, as a digest of its bytes."""
    return {
        p.relative_to(folder).as_posix(): hashlib.blake2b(p.read_bytes(), digest_size=16).digest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def check_left_behind(models: Path, cache: Path, uploads: Path, checked: dict[Path, dict[str, bytes]]) -> list:
    """Everything a killed process left is either whole or a temporary the clean-up removes; returns the runs.

    `checked` holds the contents of each run folder as it was when last read whole: a folder with the
    same bytes now reads the same way, so only the folders that changed are loaded again."""
    remove_stale_temporaries(models)
    remove_stale_temporaries(cache)
    remove_stale_temporaries(uploads)
    for root in (models, cache, uploads):
        leftovers = [p for p in root.rglob(".*") if _TEMPORARY.match(p.name)]
        assert leftovers == [], f"temporaries of a dead writer left: {leftovers}"
    runs = RunStore(models).list()
    folders = (
        sorted(p.name for p in models.iterdir() if p.is_dir() and not p.name.startswith(".")) if models.is_dir() else []
    )
    assert sorted(r.id for r in runs) == folders  # no half-made run folder
    for run in runs:
        now = contents(run.path)
        if checked.get(run.path) == now:
            continue
        for name in ("run.json", "split.json", "evaluation.json"):
            if (run.path / name).exists():
                json.loads((run.path / name).read_text())
        assert run.status in ("completed", "interrupted", "failed", "stopped"), run.status
        if run.model_path.exists():
            run.load_model()
        for export in (run.path / "exports").glob("[!.]*") if (run.path / "exports").is_dir() else []:
            assert read_export(export)["format"] == "savedmodel" and (export / "saved_model").is_dir(), export
        checked[run.path] = now
    for array in (cache / "prepared").glob("[!.]*.npy") if (cache / "prepared").is_dir() else []:
        assert np.load(array, mmap_mode="r").ndim == 4
    for extracted in uploads.glob("[!.]*") if uploads.is_dir() else []:
        scan(dataset_root(extracted))
    return runs


def test_killed_anywhere_nothing_is_lost_or_half_written(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    data = write_dataset(tmp_path / "pets", per_class=16, size=(16, 16))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for path in sorted(data.rglob("*.png")):
            zf.write(path, f"pets/{path.relative_to(data)}")
    zip_path = tmp_path / "pets.zip"
    zip_path.write_bytes(buffer.getvalue())
    models, cache, uploads = tmp_path / "models", tmp_path / "cache", tmp_path / "uploads"
    checked: dict[Path, dict[str, bytes]] = {}
    (tmp_path / "logs").mkdir()
    logs = (tmp_path / "logs" / f"{n:02d}" for n in itertools.count())
    env = {
        **os.environ,
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "CNNLAB_MODELS_DIR": str(models),
        "CNNLAB_CACHE_DIR": str(cache),
    }
    # One uninterrupted run of each phase but resume leaves a run to export and resume, an upload
    # checked whole, and how long each went on after each of its events (resume's: the training's).
    windows = {
        "train": run_killed(
            command("train", data, "", zip_path, uploads), env, next(logs), events("train", models, "", uploads), None
        )
    }
    completed = RunStore(models).list()[0].id
    for phase in ("export", "upload"):
        windows[phase] = run_killed(
            command(phase, data, completed, zip_path, uploads),
            env,
            next(logs),
            events(phase, models, completed, uploads),
            None,
        )
    windows["resume"] = dict(windows["train"])
    check_left_behind(models, cache, uploads, checked)
    for extracted in list(uploads.iterdir()):
        shutil.rmtree(extracted)  # each killed upload extracts afresh
    killed_at: list[str] = []
    for phase in ("train", "resume", "export", "upload"):
        for _ in range(KILLS[phase]):
            for _try in range(TRIES):
                target = completed
                if phase == "resume":
                    # One killed in its first epoch has no checkpoint and resumes from scratch.
                    interrupted = [r for r in RunStore(models).list() if r.status == "interrupted"]
                    assert interrupted, killed_at
                    target = rng.choice(interrupted).id
                event, delay, label = kill_point(phase, rng, events(phase, models, target, uploads), windows[phase])
                ran = run_killed(command(phase, data, target, zip_path, uploads), env, next(logs), event, delay)
                check_left_behind(models, cache, uploads, checked)
                for extracted in list(uploads.glob("[!.]*")):
                    shutil.rmtree(extracted)
                if ran is None:
                    killed_at.append(label)
                    break
                # It ended before its kill, faster than the measured run: draw again from its own time.
                windows[phase] |= {name: min(windows[phase][name], seconds) for name, seconds in ran.items()}
    assert len(killed_at) >= 30, killed_at
    # Runs the kills interrupted resume to completion (three of them, for time; the resume phase
    # above started the others, from whatever its own kills left).
    for run in [r for r in RunStore(models).list() if r.status == "interrupted"][:3]:
        run_killed(command("resume", data, run.id, zip_path, uploads), env, next(logs), {}, None)
        assert RunStore(models).get(run.id).status == "completed", killed_at
