"""What every command shares: the parser that fails in one line, each command's registration, the
options made from config fields and the team tracking options, and what they resolve to."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import MISSING, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from cnnlab.data.images import COLOR_MODES, RESIZE_MODES
from cnnlab.data.imbalance import CLASS_WEIGHTS
from cnnlab.model import FLIPS, HEADS, OPTIMIZERS, POOLINGS
from cnnlab.model.backbones import BACKBONE_NAMES
from cnnlab.model.precision import PRECISIONS
from cnnlab.settings import DEMO_RUN_DIR, Settings
from cnnlab.training.schedules import LR_SCHEDULES

if TYPE_CHECKING:
    from cnnlab.runs.store import Run, RunStore
    from cnnlab.runs.workspace import Workspace
    from cnnlab.team.tracking import TrackingConfig

CHOICES = {
    "color_mode": COLOR_MODES,
    "resize_mode": RESIZE_MODES,
    "backbone": BACKBONE_NAMES,
    "pooling": POOLINGS,
    "head": HEADS,
    "flip": FLIPS,
    "optimizer": OPTIMIZERS,
    "class_weight": CLASS_WEIGHTS,
    "lr_schedule": LR_SCHEDULES,
    "precision": PRECISIONS,
}


@dataclass(frozen=True)
class Command:
    """One subcommand: its name and help line, what adds its arguments, and its action.

    `run(args, settings)` returns the command's JSON result; with `tensorflow`, TensorFlow is
    imported (quietly) before it runs.
    """

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace, Settings], dict[str, Any]]
    tensorflow: bool = False


class UsageError(ValueError):
    """A bad command line; shown as one line, exit status 2."""


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (a UsageError) instead of usage + message."""

    def error(self, message: str) -> NoReturn:
        command = self.prog.removeprefix("python -m cnnlab").strip()
        raise UsageError(f"{message} (see `{' '.join(['python -m cnnlab', command, '--help']).replace('  ', ' ')}`)")


def _image_size(text: str) -> tuple[int, int]:
    parts = text.lower().replace(",", "x").split("x")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N or HxW, e.g. 64 or 64x48; got {text!r}") from None
    return (values[0], values[0]) if len(values) == 1 else tuple(values)  # type: ignore[return-value]


def version_number(text: str) -> int:
    """A dataset version as typed: `3` or `v3`."""
    digits = text.strip().lower().removeprefix("v")
    if not digits.isdigit():
        raise argparse.ArgumentTypeError(f"expected a version number such as 3 or v3; got {text!r}")
    return int(digits)


def add_dataset_options(parser: argparse.ArgumentParser, what: str = "train on") -> None:
    """The dataset (a class folder or a made dataset's name; default: the built-in sample) and its version."""
    parser.add_argument(
        "data_dir", type=Path, nargs="?", help="class folder, or the name of a dataset made with `dataset new`"
    )
    parser.add_argument(
        "--dataset-version",
        type=version_number,
        metavar="V",
        help=f"the dataset version to {what} (default: the latest; see `python -m cnnlab dataset versions`)",
    )


def add_config_options(parser: argparse.ArgumentParser, config_cls: type, skip: tuple[str, ...] = ()) -> None:
    """One option per config field, named after it (`image_size` -> `--image-size`)."""
    for f in fields(config_cls):
        if f.name in skip:
            continue
        flag = "--" + f.name.replace("_", "-")
        default: Any = f.default if f.default is not MISSING else None
        if f.name == "image_size":
            parser.add_argument(flag, type=_image_size, default=None, help=f"N or HxW (default {default[0]})")
        elif isinstance(default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=f"(default {default})")
        else:
            parser.add_argument(
                flag, type=type(default), choices=CHOICES.get(f.name), default=None, help=f"(default {default})"
            )


def config_from(args: argparse.Namespace, config_cls: type):
    """The config made of the options given (the others keep the config's defaults)."""
    chosen = {f.name: getattr(args, f.name) for f in fields(config_cls) if getattr(args, f.name, None) is not None}
    return config_cls(**chosen)


def add_tracking_options(parser: argparse.ArgumentParser) -> None:
    """The team tracking settings, overriding CNNLAB_TRACKING_URI, CNNLAB_EXPERIMENT and CNNLAB_USER."""
    parser.add_argument("--tracking-uri", help="MLflow tracking URI of the team server (default: CNNLAB_TRACKING_URI)")
    parser.add_argument("--experiment", help="MLflow experiment (default: CNNLAB_EXPERIMENT or cnnlab)")
    parser.add_argument("--user", help="your name on the team server (default: CNNLAB_USER or your login name)")


def tracking_from(args: argparse.Namespace, settings: Settings):
    """The team tracking config from the settings and the command line, or None when no URI is set."""
    from dataclasses import replace

    chosen = {"tracking_uri": args.tracking_uri, "experiment": args.experiment, "user": args.user}
    return replace(settings, **{k: v for k, v in chosen.items() if v}).tracking


def require_tracking(args: argparse.Namespace, settings: Settings):
    """The team tracking config, or a one-line ValueError saying how to set one."""
    config = tracking_from(args, settings)
    if config is None:
        raise ValueError(
            f"No team tracking server is configured; set CNNLAB_TRACKING_URI or pass --tracking-uri "
            f"(see the README's Team setup). Received: tracking_uri={args.tracking_uri}"
        )
    return config


def run_store(settings: Settings, root: Path | None = None) -> RunStore:
    """The runs in the models folder (or in `root`), with the demo model shipped with CNN Lab."""
    from cnnlab.runs.store import RunStore

    return RunStore(root or settings.models_dir, demo=DEMO_RUN_DIR)


def workspace_from(
    settings: Settings, store: RunStore | None = None, tracking: TrackingConfig | None = None
) -> Workspace:
    """What a command's trainings work with: the models folder (or `store`), the cache and budgets, `tracking`,
    and the datasets folder, so that every training on a class folder trains on (and records) a version of it."""
    from cnnlab.runs.workspace import Workspace

    return Workspace(
        store=store if store is not None else run_store(settings),
        cache=settings.cache_dir,
        max_training_mb=settings.max_training_mb,
        max_cache_mb=settings.max_cache_mb,
        tracking=tracking,
        datasets=settings.datasets_dir,
        devices=settings.devices,
    )


def open_run(args: argparse.Namespace, settings: Settings) -> Run:
    """A local run by id, name or folder; else, with team tracking, a teammate's run by team run id."""
    try:
        return run_store(settings).get(args.run)
    except ValueError:
        config = tracking_from(args, settings)
        if config is None:
            raise
    from cnnlab.team.remote import open_team_run, team_store

    return open_team_run(config, args.run, team_store(settings.cache_dir))
