"""`register RUN --name NAME [--alias A]`: register a run's model in the model registry; `registry NAME`:
list a registered model's versions, and with `--alias A --version N` point an alias at a version."""

from __future__ import annotations

import argparse
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from cnnlab.cli.options import Command, open_run
from cnnlab.cli.progress import pct, say
from cnnlab.settings import Settings


def registry_from(args: argparse.Namespace, settings: Settings):
    """The registry's connection: `--tracking-uri` (and `--experiment`, `--user`) over the settings, whose
    default is the team server when one is set, else the SQLite registry in the models folder."""
    chosen = {"tracking_uri": args.tracking_uri, "experiment": args.experiment, "user": args.user}
    return replace(settings, **{k: v for k, v in chosen.items() if v}).registry


def add_registry_options(parser: argparse.ArgumentParser) -> None:
    """Where the model registry is: the team options, whose tracking URI defaults to the local registry."""
    parser.add_argument(
        "--tracking-uri",
        help="MLflow tracking URI of the model registry (default: CNNLAB_TRACKING_URI, else the SQLite registry "
        "in the models folder)",
    )
    parser.add_argument(
        "--experiment", help="MLflow experiment; registrations go to EXPERIMENT-models (default cnnlab)"
    )
    parser.add_argument("--user", help="your name on the team server (default: CNNLAB_USER or your login name)")


def add_register_arguments(parser: argparse.ArgumentParser) -> None:
    """The run, the model's name, an alias, and where the registry is."""
    parser.add_argument("run", help="run id, name or folder (or a team run id)")
    parser.add_argument("--name", required=True, help="the registered model's name (made on first use)")
    parser.add_argument("--alias", help="point this alias (e.g. champion) at the new version")
    add_registry_options(parser)


def register(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    """Register the run's model as a new version and print it."""
    from cnnlab.deploy.registry import register_run, require_mlflow

    config = registry_from(args, settings)
    require_mlflow(config.uri)
    run = open_run(args, settings)  # a local run, or with a team server a teammate's run by team run id
    say(args, f"Registering run {run.id} as a new version of {args.name} in {config.uri} ...")
    row = register_run(config, run, args.name, args.alias, cache=settings.cache_dir)
    aliases = f" (alias {', '.join(row['aliases'])})" if row["aliases"] else ""
    say(
        args,
        f"Registered {args.name} version {row['version']}{aliases}: serve it with "
        f"`python -m cnnlab serve models:/{args.name}@{row['aliases'][0] if row['aliases'] else 'ALIAS'}`",
    )
    return {"tracking_uri": config.uri, **row}


def add_registry_arguments(parser: argparse.ArgumentParser) -> None:
    """The model's name, an alias to move and its version, and where the registry is."""
    parser.add_argument("name", help="the registered model's name")
    parser.add_argument("--alias", help="point this alias at --version (moving it from the version it named)")
    parser.add_argument("--version", type=int, help="the version --alias names")
    add_registry_options(parser)


def registry(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    """Move an alias if asked, then print one line per version, newest first."""
    from cnnlab.deploy.registry import model_versions, set_alias

    if (args.alias is None) != (args.version is None):
        raise ValueError(
            "Give --alias and --version together to point an alias at a version, or neither to list the versions. "
            f"Received: alias={args.alias!r}, version={args.version!r}"
        )
    config = registry_from(args, settings)
    if args.alias is not None:
        set_alias(config, args.name, args.alias, args.version)
        say(args, f"{args.name}@{args.alias} is now version {args.version}.")
    rows = model_versions(config, args.name)
    if not args.json:
        for row in rows:
            created = datetime.fromtimestamp(row["created"] / 1000, UTC).strftime("%Y-%m-%d %H:%M")
            version = f" v{row['dataset_version']}" if row["dataset_version"] else ""
            print(
                f"version {row['version']:<4} {created}  run {row['run_id'] or '?':<28} "
                f"{((row['dataset'] or '?')[:20] + version):<25} test acc {pct(row['test_accuracy'])}  "
                f"{' '.join('@' + a for a in row['aliases'])}"
            )
    return {"tracking_uri": config.uri, "name": args.name, "versions": rows}


COMMAND = Command(
    "register",
    "register a run's model in the model registry (MLflow; local SQLite or the team server), optionally as an alias",
    add_register_arguments,
    register,
    tensorflow=True,
)
REGISTRY = Command(
    "registry",
    "list a registered model's versions (run, dataset, test accuracy, aliases); --alias A --version N moves an alias",
    add_registry_arguments,
    registry,
)
