"""Command line: `python -m cnnlab {sample,scan,train,resume,evaluate,predict,runs,inspect,...}`.

Bad input exits with status 2 and one line on standard error; `--json` makes the last line of
standard output one JSON object. Progress goes to standard error, so standard output stays clean.
Ctrl-C stops a training or sweep after its batch, reports it and exits with status 130; a second
Ctrl-C aborts at once (the run keeps its last complete epoch, and `resume` continues it).
The settings are read from the environment once, here, and passed to each command.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import threading
from collections.abc import Callable
from dataclasses import MISSING, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from cnnlab.common import background
from cnnlab.common.checks import one_line
from cnnlab.data.images import COLOR_MODES, RESIZE_MODES
from cnnlab.data.imbalance import CLASS_WEIGHTS
from cnnlab.model import FLIPS, HEADS, OPTIMIZERS, POOLINGS, ModelConfig
from cnnlab.model.backbones import BACKBONE_NAMES
from cnnlab.model.precision import PRECISIONS
from cnnlab.settings import DEMO_RUN_DIR, Settings, load_settings
from cnnlab.training.schedules import LR_SCHEDULES

if TYPE_CHECKING:
    import pandas as pd

    from cnnlab.model.precision import Precision
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


class UsageError(ValueError):
    """A bad command line; shown as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line instead of usage + message
        command = self.prog.removeprefix("python -m cnnlab").strip()
        raise UsageError(f"{message} (see `{' '.join(['python -m cnnlab', command, '--help']).replace('  ', ' ')}`)")


def _image_size(text: str) -> tuple[int, int]:
    parts = text.lower().replace(",", "x").split("x")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N or HxW, e.g. 64 or 64x48; got {text!r}") from None
    return (values[0], values[0]) if len(values) == 1 else tuple(values)  # type: ignore[return-value]


def _add_config_options(parser: argparse.ArgumentParser, config_cls: type, skip: tuple[str, ...] = ()) -> None:
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


def _config_from(args: argparse.Namespace, config_cls: type):
    chosen = {f.name: getattr(args, f.name) for f in fields(config_cls) if getattr(args, f.name, None) is not None}
    return config_cls(**chosen)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every subcommand."""
    from cnnlab.training.engine import TrainConfig

    parser = _Parser(prog="python -m cnnlab", description="CNN Lab: train and explore CNN image classifiers.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--json", action="store_true", help="print one JSON object as the last line of output")
        return p

    p = command("sample", "write the built-in sample dataset as class folders")
    p.add_argument("out_dir", type=Path)
    p.add_argument("--seed", type=int, default=0)
    p = command("download", "fetch a well-known dataset, verify it and convert it into class folders")
    p.add_argument("name", choices=_catalog_names())
    p.add_argument("--cache", type=Path, help="cache folder (default: CNNLAB_CACHE_DIR or ~/.cache/cnnlab)")
    p.add_argument(
        "--base-url", help="fetch the same file names from this server instead (a mirror; default: CNNLAB_DATASETS_URL)"
    )
    p = command("scan", "check a class-folder dataset and report what can be used")
    p.add_argument("data_dir", type=Path)
    p = command("train", "train a CNN (on the built-in sample when no folder is given)")
    p.add_argument("data_dir", type=Path, nargs="?")
    p.add_argument("--name", help="display name of the run")
    p.add_argument(
        "--run-dir", type=Path, help="new folder to save the run in (default: a new folder in the models folder)"
    )
    p.add_argument(
        "--continue-from",
        metavar="RUN",
        help="train --epochs more epochs of a completed run as a new run (its dataset, split and settings)",
    )
    _add_config_options(p, ModelConfig)
    _add_config_options(p, TrainConfig)
    _add_tracking_options(p)
    p = command("resume", "continue an interrupted or stopped run in place, from its last complete epoch")
    p.add_argument("run")
    _add_tracking_options(p)
    p = command("lr-find", "find a learning rate: a short run with a growing rate (on the built-in sample by default)")
    p.add_argument("data_dir", type=Path, nargs="?")
    p.add_argument("--min-lr", type=float, default=1e-6, help="first rate tried (default 1e-6)")
    p.add_argument("--max-lr", type=float, default=1.0, help="last rate tried (default 1)")
    p.add_argument("--steps", type=int, default=100, help="batches, one rate each (default 100)")
    _add_config_options(p, ModelConfig)
    _add_config_options(p, TrainConfig)
    p = command("evaluate", "evaluate a run (a local run, or a teammate's by team run id) on its held-out test split")
    p.add_argument("run")
    _add_tracking_options(p)
    p = command("predict", "predict the class of one or more images with a run's model (local or team run id)")
    p.add_argument("run")
    p.add_argument("images", nargs="+", type=Path)
    _add_tracking_options(p)
    p = command(
        "label-issues",
        "list a run's validation and test images (all its images with --cross-validate) most likely to carry a "
        "wrong label",
    )
    p.add_argument("run")
    p.add_argument(
        "--csv",
        type=Path,
        help="CSV file to write (default: label_issues.csv, or label_issues_cv.csv, in the run folder)",
    )
    p.add_argument(
        "--cross-validate",
        type=int,
        metavar="K",
        help="check every image: train K models with the run's settings, each predicting the fold it left out",
    )
    p.add_argument("--epochs", type=int, help="epochs of each fold's model (default: the run's own)")
    p = command("runs", "list saved runs (with --team: every run on the team tracking server)")
    p.add_argument("--team", action="store_true", help="list the team's runs from the tracking server")
    _add_tracking_options(p)
    p = command("sync", "publish every run not yet on the team tracking server (whole, never twice)")
    _add_tracking_options(p)
    p = command("export", "export a run's model (checked against the Keras model after writing)")
    p.add_argument("run")
    p.add_argument("--format", choices=_export_formats(), default="keras", help="onnx needs the onnx extra")
    p.add_argument("--out", type=Path, help="folder to create (default: inside the run folder)")
    p = command("inspect", "write a run's feature maps and filters for one image as PNG grids")
    p.add_argument("run")
    p.add_argument("image", type=Path)
    p.add_argument("--layer", help="a conv, pooling or activation layer (default: every one of them)")
    p.add_argument("--out", type=Path, required=True, help="folder for the PNG files (created when missing)")
    p = command("sweep", "search hyperparameters with Optuna; every trial is a saved run")
    p.add_argument("data_dir", type=Path, nargs="?", help="class-folder dataset (default: the built-in sample)")
    p.add_argument("--space", type=Path, required=True, help="YAML or JSON file: objective, params, fixed")
    p.add_argument("--trials", type=int, required=True, help="trials this process runs")
    p.add_argument("--timeout", type=float, help="stop starting trials after this many seconds")
    p.add_argument("--storage", help="SQLAlchemy URL of the study database (default: SQLite in the models folder)")
    p.add_argument("--study", help="study name; processes with the same name and storage share it")
    p.add_argument(
        "--heartbeat-interval", type=int, default=None, help="seconds between a running trial's heartbeats (default 10)"
    )
    p.add_argument(
        "--grace-period",
        type=int,
        default=None,
        help="seconds without a heartbeat after which a trial counts as failed and is retried (default 30)",
    )
    p.add_argument("--max-retry", type=int, default=None, help="retries of a trial whose worker died (default 3)")
    _add_tracking_options(p)
    return parser


def _add_tracking_options(parser: argparse.ArgumentParser) -> None:
    """The team tracking settings, overriding CNNLAB_TRACKING_URI, CNNLAB_EXPERIMENT and CNNLAB_USER."""
    parser.add_argument("--tracking-uri", help="MLflow tracking URI of the team server (default: CNNLAB_TRACKING_URI)")
    parser.add_argument("--experiment", help="MLflow experiment (default: CNNLAB_EXPERIMENT or cnnlab)")
    parser.add_argument("--user", help="your name on the team server (default: CNNLAB_USER or your login name)")


def _run_store(settings: Settings, root: Path | None = None) -> RunStore:
    """The runs in the models folder (or in `root`), with the demo model shipped with CNN Lab."""
    from cnnlab.runs.store import RunStore

    return RunStore(root or settings.models_dir, demo=DEMO_RUN_DIR)


def _tracking(args: argparse.Namespace, settings: Settings):
    """The team tracking config from the settings and the command line, or None when no URI is set."""
    from dataclasses import replace

    chosen = {"tracking_uri": args.tracking_uri, "experiment": args.experiment, "user": args.user}
    return replace(settings, **{k: v for k, v in chosen.items() if v}).tracking


def _workspace(settings: Settings, store: RunStore | None = None, tracking: TrackingConfig | None = None) -> Workspace:
    """What a command's trainings work with: the models folder (or `store`), the cache and budgets, `tracking`."""
    from cnnlab.runs.workspace import Workspace

    return Workspace(
        store=store if store is not None else _run_store(settings),
        cache=settings.cache_dir,
        max_training_mb=settings.max_training_mb,
        max_cache_mb=settings.max_cache_mb,
        tracking=tracking,
    )


def _require_tracking(args: argparse.Namespace, settings: Settings):
    tracking = _tracking(args, settings)
    if tracking is None:
        raise ValueError(
            f"No team tracking server is configured; set CNNLAB_TRACKING_URI or pass --tracking-uri "
            f"(see the README's Team setup). Received: tracking_uri={args.tracking_uri}"
        )
    return tracking


def main(argv: list[str] | None = None) -> int:
    """Run the command line (`python -m cnnlab` and the `cnnlab` console script); returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    # TensorFlow's C++ start-up chatter would bury the progress lines; errors still show.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        args = _parse(argv)
        settings = load_settings()
        if args.command in TENSORFLOW_COMMANDS:
            _import_tensorflow_quietly()
        result = COMMANDS[args.command](args, settings)
    except ValueError as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 2
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"error: {exc.strerror or one_line(exc)}{where}; check the path and its permissions.", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    if args.json:
        print(json.dumps(_finite(result), default=str))
    return 130 if getattr(args, "interrupted", False) else 0


def _import_tensorflow_quietly() -> None:
    """Import TensorFlow with its C++ start-up log lines hidden.

    They go straight to file descriptor 2, whatever TF_CPP_MIN_LOG_LEVEL says, and would break
    the promise that an error is the only line on standard error. Anything after the import,
    TensorFlow's real errors included, still shows.
    """
    if "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            import keras  # noqa: F401  (imports TensorFlow, its backend)
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _parse(argv: list[str]) -> argparse.Namespace:
    try:
        return build_parser().parse_args(argv)
    except UsageError as exc:
        raise UsageError(f"{exc} Received: args={' '.join(argv)!r}") from None


def _finite(value: Any) -> Any:
    """JSON has no NaN: undefined figures (the accuracy of an empty test split) are printed as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def _sample(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    from cnnlab.data.sample import write_sample

    out = write_sample(args.out_dir, seed=args.seed)
    _say(args, f"Wrote the sample dataset to {out}")
    return {"data_dir": str(out)}


def _export_formats() -> tuple[str, ...]:
    from cnnlab.deploy.export import EXPORT_FORMATS

    return EXPORT_FORMATS


def _catalog_names() -> tuple[str, ...]:
    from cnnlab.data.catalog import CATALOG

    return tuple(CATALOG)


def _download(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    from cnnlab.data.catalog import CATALOG, download

    root = download(
        args.name,
        args.cache or settings.cache_dir,
        on_progress=_print_download,
        base_url=args.base_url or settings.datasets_url,
    )
    _say(args, f"{CATALOG[args.name].title} is ready at {root}")
    return {"name": args.name, "data_dir": str(root)}


def _scan(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    from cnnlab.data import scan

    report = scan(args.data_dir, cache=settings.cache_dir, max_total_pixels=settings.max_dataset_pixels).to_dict()
    if not args.json:
        print(f"{report['num_images']} usable images in {len(report['classes'])} classes at {report['root']}")
        for name, count in report["counts"].items():
            print(f"  {name:<24} {count}")
        for empty in report["empty_classes"]:
            print(f"  {empty:<24} 0 (empty class folder, ignored)")
        stats = report["size_stats"]
        if stats:
            print(
                f"image sizes: width {stats['min_width']}-{stats['max_width']} (median {stats['median_width']:g}), "
                f"height {stats['min_height']}-{stats['max_height']} (median {stats['median_height']:g})"
            )
        print(f"{len(report['skipped'])} skipped file(s)")
        for skipped in report["skipped"]:
            print(f"  {skipped['path']}: {skipped['reason']}")
    return report


def _train(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    from cnnlab.data.sample import sample_dir
    from cnnlab.runs.store import new_run_id
    from cnnlab.training.config import TrainConfig
    from cnnlab.training.engine import train
    from cnnlab.training.hooks import TrainingHooks
    from cnnlab.training.plan import training_plan

    if args.continue_from is not None:
        return _continue(args, settings)
    model_config = _config_from(args, ModelConfig)
    train_config = _config_from(args, TrainConfig)
    data_dir = args.data_dir or sample_dir(settings.cache_dir)
    store = _run_store(settings, args.run_dir.parent if args.run_dir else None)
    run_id = args.run_dir.name if args.run_dir else new_run_id()
    workspace = _workspace(settings, store, _tracking(args, settings))
    plan = training_plan(data_dir, model_config, train_config, workspace=workspace)
    plan.check()
    run = _interruptible(
        args,
        lambda stop: train(
            plan.data_dir,
            plan.model_config,
            plan.train_config,
            workspace=workspace,
            hooks=TrainingHooks(
                on_epoch=_print_epoch(plan.epochs),
                on_batch=_print_batch_after("\n".join(plan.describe())),
                on_download=_print_weights_download,
                stop_event=stop,
            ),
            name=args.name,
            run_id=run_id,
            precision=plan.precision,
        ),
        _resumable_at(store.root / run_id),
    )
    return _run_result(args, run)


def _continue(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    from cnnlab.runs.store import new_run_id
    from cnnlab.training.config import TrainConfig
    from cnnlab.training.hooks import TrainingHooks
    from cnnlab.training.resuming import continue_training

    given = [f for f in (*fields(ModelConfig), *fields(TrainConfig)) if getattr(args, f.name, None) is not None]
    if args.data_dir is not None or args.epochs is None or any(f.name != "epochs" for f in given):
        raise UsageError(
            "--continue-from takes the dataset and every setting from the run it continues: give only --epochs N "
            "(how many more), and --name or --run-dir if you like (see `python -m cnnlab train --help`). "
            f"Received: options={[f.name for f in given] + (['data_dir'] if args.data_dir else [])}"
        )
    store = _run_store(settings, args.run_dir.parent if args.run_dir else None)
    parent = _run_store(settings).get(args.continue_from)
    run_id = args.run_dir.name if args.run_dir else new_run_id()
    run = _interruptible(
        args,
        lambda stop: continue_training(
            parent.path,
            args.epochs,
            workspace=_workspace(settings, store, _tracking(args, settings)),
            hooks=TrainingHooks(
                on_epoch=_print_epoch(len(parent.history) + args.epochs),
                on_batch=_print_batch_after(_intro(parent.record.precision)),
                stop_event=stop,
            ),
            name=args.name,
            run_id=run_id,
        ),
        _resumable_at(store.root / run_id),
    )
    return {**_run_result(args, run), "parent": parent.id}


def _resume(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    from cnnlab.training.engine import run_epochs
    from cnnlab.training.hooks import TrainingHooks
    from cnnlab.training.resuming import resume

    workspace = _workspace(settings, tracking=_tracking(args, settings))
    run = workspace.store.get(args.run)
    _say(args, f"Resuming run {run.id} from {run.path}")
    run = _interruptible(
        args,
        lambda stop: resume(
            run.path,
            workspace=workspace,
            hooks=TrainingHooks(
                on_epoch=_print_epoch(run_epochs(run)),
                on_batch=_print_batch_after(_intro(run.record.precision)),
                stop_event=stop,
            ),
        ),
        _resumable_at(run.path),
    )
    return _run_result(args, run)


def _intro(precision: Precision | None) -> str:
    """The line that says where and in what precision a resumed or continued training runs, as recorded
    (a run recorded without one trained in float32)."""
    return precision.describe() if precision else "Training in float32"


def _resumable_at(folder: Path) -> str:
    return f"The run is in {folder} with its last complete epoch; continue it with `python -m cnnlab resume {folder}`."


def _run_result(args: argparse.Namespace, run) -> dict[str, Any]:
    """The JSON result of a training command, and its summary line (with how to resume a stopped run)."""
    record, metrics, precision = run.record, run.record.metrics, run.record.precision
    result = {
        "run_id": run.id,
        "run_dir": str(run.path),
        "status": run.status,
        "epochs_run": len(run.history),
        "val_accuracy": metrics.best_val_accuracy,
        "test_accuracy": metrics.test_accuracy,
        "test_balanced_accuracy": metrics.test_balanced_accuracy,
        "test_macro_f1": metrics.test_macro_f1,
        "train_images_per_s": metrics.train_images_per_s,
        "duration_s": record.duration_s,
        "team": dataclasses.asdict(record.team) if record.team else None,
        "precision": precision.policy if precision else None,
        "device": precision.device if precision else None,
    }
    resumable = f" Resume it with `python -m cnnlab resume {run.id}`." if run.status == "stopped" else ""
    _say(
        args,
        f"Run {run.id} {run.status}: test accuracy {_pct(result['test_accuracy'])}, saved in {run.path}.{resumable}",
    )
    return result


def _lr_find(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    from cnnlab.data.sample import sample_dir
    from cnnlab.training.engine import TrainConfig
    from cnnlab.training.lr_find import find_learning_rate

    result = find_learning_rate(
        args.data_dir or sample_dir(settings.cache_dir),
        _config_from(args, ModelConfig),
        _config_from(args, TrainConfig),
        workspace=_workspace(settings),
        min_lr=args.min_lr,
        max_lr=args.max_lr,
        num_steps=args.steps,
    )
    _say(
        args,
        f"Suggested learning rate: {result.suggested_learning_rate:.2g} "
        f"(tried {len(result.learning_rates)} rates from {result.min_lr:g} to {result.learning_rates[-1]:.2g})",
    )
    return result.to_dict()


def _label_issues(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    from cnnlab.analysis.label_issues import run_label_issues

    run = _run_store(settings).get(args.run)
    if args.cross_validate is not None:
        return _cross_validated_issues(args, settings, run)
    if args.epochs is not None:
        raise ValueError(
            f"--epochs sets the epochs of a cross-validated pass; add --cross-validate K or leave it out. "
            f"Received: epochs={args.epochs}"
        )
    table = run_label_issues(run, cache=settings.cache_dir)
    target = args.csv or run.path / "label_issues.csv"
    _write_issues(args, table, target)
    _say(args, f"{len(table)} likely label error(s) written to {target}; no image was moved or changed")
    return {
        "run_id": run.id,
        "source": "validation_test",
        "csv": str(target),
        "num_issues": len(table),
        "issues": table.to_dict(orient="records"),
    }


def _cross_validated_issues(args: argparse.Namespace, settings: Settings, run: Run) -> dict[str, Any]:
    """`label-issues --cross-validate K`: every image of the run checked by a K-fold pass, stoppable by Ctrl-C."""
    from cnnlab.analysis.crossval import cross_validated_issues
    from cnnlab.training.hooks import TrainingHooks

    result = _interruptible(
        args,
        lambda stop: cross_validated_issues(
            run,
            folds=args.cross_validate,
            epochs=args.epochs,
            workspace=_workspace(settings),
            hooks=TrainingHooks(on_epoch=_print_fold_epoch, on_batch=_print_batch, stop_event=stop),
        ),
        "Nothing was saved; run the command again to check the labels.",
    )
    summary = {"run_id": run.id, "source": "cross_validated", **result.to_dict()}
    if result.status == "stopped":
        _say(args, "Stopped before every fold was trained; nothing was ranked or saved.")
        return {**summary, "csv": None, "num_issues": None}
    target = args.csv or run.path / "label_issues_cv.csv"
    _write_issues(args, result.issues, target)
    _say(
        args,
        f"{len(result.issues)} likely label error(s) among all {result.num_images} images ({result.folds} folds of "
        f"{result.epochs} epoch(s)) written to {target}; no image was moved or changed",
    )
    return {**summary, "csv": str(target), "num_issues": len(result.issues)}


def _write_issues(args: argparse.Namespace, table: pd.DataFrame, target: Path) -> None:
    """Write the label-issue table as a CSV file, atomically, and print it unless the output is JSON."""
    from cnnlab.common.files import atomic_write

    with atomic_write(target) as fh:
        fh.write(table.to_csv(index=False))
    if not args.json:
        print(
            table.to_string(index=False, float_format=lambda v: f"{v:.3f}") if len(table) else "No likely label errors."
        )


def _interruptible(args: argparse.Namespace, work: Callable[[threading.Event], Any], aborted: str) -> Any:
    """Run `work(stop_event)` in the background so Ctrl-C asks it to stop cleanly instead of killing it.

    After a first Ctrl-C the work still finishes (a training evaluates its stopped run) and the
    command exits with status 130 (`args.interrupted`). A second Ctrl-C while it stops ends the
    process at once with status 130, printing `aborted` (where the work can be picked up again):
    TensorFlow would not stop a background thread, and the saved files are whole at any moment.
    """
    stop = threading.Event()
    future = background.submit(work, stop)
    try:
        try:
            return background.wait(future)
        except KeyboardInterrupt:
            # Everything from here on is covered by the outer handler: a second Ctrl-C may come at any moment.
            args.interrupted = True
            stop.set()
            print(
                "\nStopping after the current batch (the best weights are kept; Ctrl-C again to abort)...",
                file=sys.stderr,
            )
            return background.wait(future)
    except KeyboardInterrupt:
        print(f"\nAborted. {aborted}", file=sys.stderr)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(130)


def _print_epoch(epochs: int) -> Callable[[dict[str, Any]], None]:
    def show(row: dict[str, Any]) -> None:
        phase = "  (fine-tuning)" if row.get("phase") == "fine_tune" else ""
        print(
            f"\repoch {row['epoch']}/{epochs}{phase}  loss {row['loss']:.4f}  acc {row['accuracy']:.3f}  "
            f"val_loss {row.get('val_loss', float('nan')):.4f}  val_acc {row.get('val_accuracy', float('nan')):.3f}  "
            f"{row['seconds']:.1f}s  {row['images_per_s']:.0f} img/s",
            file=sys.stderr,
        )

    return show


def _print_batch_after(intro: str) -> Callable[[dict[str, Any]], None]:
    """Batch progress, preceded once by `intro` when the first batch is done (not before bad input is caught)."""
    pending = [intro]

    def show(progress: dict[str, Any]) -> None:
        if pending:
            print(pending.pop(), file=sys.stderr)
        _print_batch(progress)

    return show


def _print_fold_epoch(row: dict[str, Any]) -> None:
    print(
        f"fold {row['fold']} epoch {row['epoch']}  loss {row['loss']:.4f}  acc {row['accuracy']:.3f}", file=sys.stderr
    )


def _print_batch(progress: dict[str, Any]) -> None:
    fold = f"fold {progress['fold']}/{progress['folds']} " if "fold" in progress else ""
    if sys.stderr.isatty():
        print(
            f"\r{fold}epoch {progress['epoch']} batch {progress['batch']}/{progress['steps']}  "
            f"{progress['fraction']:.0%}  ETA {progress['eta_s']:.0f}s   ",
            end="",
            file=sys.stderr,
            flush=True,
        )


def _print_download(done: int, total: int) -> None:
    if sys.stderr.isatty():
        print(f"\rdownloading {done / 2**20:.1f} of {total / 2**20:.1f} MB   ", end="", file=sys.stderr, flush=True)


def _print_weights_download(done: int) -> None:
    if sys.stderr.isatty():
        print(f"\rdownloading ImageNet weights: {done / 2**20:.1f} MB   ", end="", file=sys.stderr, flush=True)


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def _evaluate(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    from cnnlab.analysis.evaluate import evaluate_run

    evaluation = evaluate_run(_open_run(args, settings), cache=settings.cache_dir, max_cache_mb=settings.max_cache_mb)
    for warning in evaluation.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if not args.json:
        print(f"test accuracy {_pct(evaluation.accuracy)}  test loss {evaluation.loss:.4f}")
        print(evaluation.per_class.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    result = evaluation.to_dict()
    result.pop("predictions")
    return result


def _open_run(args: argparse.Namespace, settings: Settings):
    """A local run by id, name or folder; else, with team tracking, a teammate's run by team run id."""
    try:
        return _run_store(settings).get(args.run)
    except ValueError:
        tracking = _tracking(args, settings)
        if tracking is None:
            raise
    from cnnlab.team.remote import open_team_run, team_store

    return open_team_run(tracking, args.run, team_store(settings.cache_dir))


def _predict(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    from cnnlab.deploy.prediction import predict

    run = _open_run(args, settings)
    missing = [str(p) for p in args.images if not p.is_file()]
    if missing:
        raise ValueError(f"Image file not found; check the path. Received: image={missing[0]!r}")
    results = predict(
        run.load_model(),
        run.class_names,
        run.model_config(),
        args.images,
        names=[str(p) for p in args.images],
        errors="report",
    )
    for r in results if not args.json else []:
        print(f"{r.name}: {r.error}" if r.error else f"{r.name}: {r.label} ({r.confidence:.1%})")
    failed = [r for r in results if r.error]
    if failed and len(failed) == len(results):
        raise ValueError(failed[0].error)
    return {"predictions": [r.to_dict() for r in results]}


def _runs(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    if args.team:
        return _team_runs(args, settings)
    rows = [run.summary() for run in _run_store(settings).list()]
    if not args.json:
        for row in rows:
            print(f"{row['id']:<28} {row['status']:<11} {row['name'][:30]:<30} test acc {_pct(row['test_accuracy'])}")
        if not rows:
            print("No runs yet: train one with `python -m cnnlab train`.")
    return {"runs": rows}


def _team_runs(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    from cnnlab.team.remote import team_runs

    tracking = _require_tracking(args, settings)
    rows = team_runs(tracking)
    if not args.json:
        for row in rows:
            print(
                f"{row['id']:<34} {row['status']:<11} {(row['user'] or '')[:12]:<12} {(row['name'] or '')[:30]:<30} "
                f"val acc {_pct(row['best_val_accuracy'])}  test acc {_pct(row['test_accuracy'])}"
            )
        if not rows:
            print(f"No runs in experiment {tracking.experiment!r} yet: train one with a tracking URI set.")
    return {"runs": rows}


def _sync(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    from cnnlab.team.tracking import sync_runs

    result = sync_runs(_require_tracking(args, settings), _run_store(settings))
    for failure in result["failed"]:
        print(f"warning: run {failure['id']} was not published: {failure['error']}", file=sys.stderr)
    _say(
        args,
        f"Published {len(result['published'])} run(s); {result['up_to_date']} already published; "
        f"{len(result['failed'])} failed.",
    )
    return result


def _sweep(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    from cnnlab.sweep import SweepConfig, load_space, masked_url, run_sweep
    from cnnlab.training.hooks import TrainingHooks

    space = load_space(args.space)  # a bad space file fails here, before anything heavy is imported
    config = SweepConfig(
        trials=args.trials,
        timeout=args.timeout,
        storage=args.storage,
        study_name=args.study,
        fault_tolerance=_fault_tolerance(args),
    )
    if args.data_dir is None:
        from cnnlab.data.sample import sample_dir

        data_dir = sample_dir(settings.cache_dir)
    else:
        data_dir = args.data_dir
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the trial lines below replace Optuna's log

    def show_trial(trial: dict[str, Any]) -> None:
        value = "n/a" if trial["value"] is None else f"{trial['value']:.4f}"
        print(
            f"trial {trial['number']} {trial['state']}: {space.objective} {value}  {trial['params']}  run {trial['run_id']}",
            file=sys.stderr,
        )

    def show_epoch(row: dict[str, Any]) -> None:
        print(
            f"trial {row['trial']} epoch {row['epoch']}  {space.objective} {row.get(space.objective, float('nan')):.4f}",
            file=sys.stderr,
        )

    result = _interruptible(
        args,
        lambda stop: run_sweep(
            data_dir,
            space,
            config,
            workspace=_workspace(settings, tracking=_tracking(args, settings)),
            hooks=TrainingHooks(on_epoch=show_epoch, stop_event=stop),
            on_trial=show_trial,
        ),
        "Every finished trial is saved in the study and its run; start the sweep again to run more trials.",
    )
    finished = [t for t in result.trials if t["state"] in ("complete", "pruned", "fail")]
    summary = {
        "study": result.study,
        "storage": masked_url(result.storage),
        "best_run_dir": str(result.best_run_dir) if result.best_run_dir else None,
        "best_value": result.best_value,
        "best_params": result.best_params,
        "trials": len(finished),
        "trials_run": result.trials_run,
        "objective": result.objective,
    }
    best = (
        "no completed trial yet"
        if result.best_value is None
        else f"best {result.objective} {result.best_value:.4f} with {result.best_params}, run {result.best_run_dir}"
    )
    _say(args, f"Study {result.study}: {len(finished)} finished trial(s), {best}")
    return summary


def _fault_tolerance(args: argparse.Namespace):
    from dataclasses import replace

    from cnnlab.sweep import FaultTolerance

    chosen = {
        "heartbeat_interval": args.heartbeat_interval,
        "grace_period": args.grace_period,
        "max_retry": args.max_retry,
    }
    return replace(FaultTolerance(), **{k: v for k, v in chosen.items() if v is not None})


def _export(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    from cnnlab.deploy.export import export_run, read_export

    folder = export_run(_run_store(settings).get(args.run), args.format, args.out, cache=settings.cache_dir)
    manifest = read_export(folder)
    _say(
        args, f"Exported {args.format} to {folder} (max difference from the Keras model {manifest['max_abs_diff']:.2g})"
    )
    return {
        "export_dir": str(folder),
        "format": args.format,
        "max_abs_diff": manifest["max_abs_diff"],
        "class_names": manifest["class_names"],
    }


def _inspect(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    from cnnlab.analysis import inspect
    from cnnlab.charts import grids
    from cnnlab.data.images import load_array

    run = _run_store(settings).get(args.run)
    if not args.image.is_file():
        raise ValueError(f"Image file not found; check the path. Received: image={str(args.image)!r}")
    config = run.model_config()
    image = load_array(args.image, config.image_size, config.color_mode, config.resize_mode)
    model = run.load_model()
    maps = inspect.feature_maps(model, image, [args.layer] if args.layer else None)
    args.out.mkdir(parents=True, exist_ok=True)
    view = grids.view_to_uint8(maps[0].values)
    written = [grids.write_png(args.out / "input.png", grids.enlarge(view, max(1, 256 // max(view.shape[:2]))))]
    for fmap in maps[1:]:
        stem = inspect.layer_file_name(fmap.layer.name)
        written.append(grids.write_png(args.out / f"{stem}-feature-maps.png", grids.feature_grid_png(fmap.values)))
        if fmap.layer.kind == "conv":
            weights = inspect.kernel(model, fmap.layer.name)
            written.append(grids.write_png(args.out / f"{stem}-filters.png", grids.filter_grid_png(weights)))
    _say(args, f"Wrote {len(written)} PNG files to {args.out}:")
    for path in written:
        _say(args, f"  {path.name}")
    layers = [
        {"name": m.layer.name, "kind": m.layer.kind, "output_shape": list(m.values.shape), "range": m.value_range}
        for m in maps[1:]
    ]
    return {"run_id": run.id, "out_dir": str(args.out), "files": [str(p) for p in written], "layers": layers}


def _say(args: argparse.Namespace, text: str) -> None:
    print(text, file=sys.stderr if args.json else sys.stdout)


TENSORFLOW_COMMANDS = frozenset(
    {"download", "train", "resume", "lr-find", "evaluate", "label-issues", "predict", "export", "sweep", "inspect"}
)
COMMANDS: dict[str, Callable[[argparse.Namespace, Settings], dict[str, Any]]] = {
    "sample": _sample,
    "download": _download,
    "scan": _scan,
    "train": _train,
    "resume": _resume,
    "lr-find": _lr_find,
    "label-issues": _label_issues,
    "evaluate": _evaluate,
    "predict": _predict,
    "runs": _runs,
    "sync": _sync,
    "sweep": _sweep,
    "export": _export,
    "inspect": _inspect,
}
