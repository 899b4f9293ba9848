"""Command line: `python -m cnnlab {sample,scan,dataset,train,resume,evaluate,predict,runs,register,serve,...}`.

Bad input exits with status 2 and one line on standard error; `--json` makes the last line of
standard output one JSON object. Progress goes to standard error, so standard output stays clean.
Ctrl-C stops a training or sweep after its batch, reports it and exits with status 130; a second
Ctrl-C aborts at once (the run keeps its last complete epoch, and `resume` continues it).
The settings are read from the environment once, here, and passed to each command; each command's
arguments and action live in its own module (`cnnlab.cli.train` for `train`).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from typing import Any

from cnnlab.cli import (
    benchmark,
    compare,
    dataset,
    download,
    evaluate,
    explain,
    export,
    inspect,
    label_issues,
    lr_find,
    predict,
    register,
    report,
    resume,
    runs,
    sample,
    scan,
    serve,
    sweep,
    train,
)
from cnnlab.cli.options import Parser, UsageError
from cnnlab.common.checks import one_line
from cnnlab.settings import load_settings

# In the order `--help` lists them.
COMMANDS = {
    command.name: command
    for command in (
        sample.COMMAND,
        download.COMMAND,
        scan.COMMAND,
        dataset.COMMAND,
        train.COMMAND,
        resume.COMMAND,
        lr_find.COMMAND,
        evaluate.COMMAND,
        predict.COMMAND,
        label_issues.COMMAND,
        runs.COMMAND,
        runs.SYNC,
        compare.COMMAND,
        export.COMMAND,
        benchmark.COMMAND,
        report.COMMAND,
        register.COMMAND,
        register.REGISTRY,
        serve.COMMAND,
        inspect.COMMAND,
        explain.COMMAND,
        sweep.COMMAND,
    )
}
TENSORFLOW_COMMANDS = frozenset(name for name, command in COMMANDS.items() if command.tensorflow)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every subcommand."""
    parser = Parser(prog="python -m cnnlab", description="CNN Lab: train and explore CNN image classifiers.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for command in COMMANDS.values():
        p = sub.add_parser(command.name, help=command.help, description=command.help)
        p.add_argument("--json", action="store_true", help="print one JSON object as the last line of output")
        command.add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line (`python -m cnnlab` and the `cnnlab` console script); returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    # TensorFlow's C++ start-up chatter would bury the progress lines; errors still show.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        args = _parse(argv)
        settings = load_settings()
        if args.command in TENSORFLOW_COMMANDS or getattr(args, "tensorflow", False):  # or a sub-command needs it
            _import_tensorflow_quietly()
        result = COMMANDS[args.command].run(args, settings)
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
