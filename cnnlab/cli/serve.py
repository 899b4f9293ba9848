"""`serve RUN|models:/NAME@ALIAS`: serve a model over HTTP with MLflow's scoring server, in the foreground."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from cnnlab.cli.options import Command, open_run
from cnnlab.cli.register import add_registry_options, registry_from
from cnnlab.deploy.serving import DEFAULT_HOST, DEFAULT_PORT
from cnnlab.settings import Settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The model, where to listen, and where the registry is."""
    parser.add_argument("model", help="a run id, name or folder, or a registered model as models:/NAME@ALIAS")
    parser.add_argument("--host", default=DEFAULT_HOST, help=f"address to listen on (default {DEFAULT_HOST})")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port to listen on (default {DEFAULT_PORT})")
    add_registry_options(parser)


def run(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    """Serve until Ctrl-C; a run is saved as a pyfunc model in the cache first."""
    from cnnlab.deploy.registry import require_mlflow, resolve
    from cnnlab.deploy.serving import serve, serve_command, served_model

    config = registry_from(args, settings)
    serve_command("", args.host, args.port)  # the port checked before any slow work
    if args.model.startswith("models:/"):
        require_mlflow(config.uri)
        version = resolve(config, args.model)
        model: Any = args.model
        what = f"{args.model} (version {version['version']}, run {version['run_id']})"
    else:
        require_mlflow()
        args.run = args.model
        found = open_run(args, settings)
        model = served_model(found, settings.cache_dir)
        what = f"run {found.id}"
    print(
        f"Serving {what} at http://{args.host}:{args.port}/invocations (MLflow's scoring server; Ctrl-C stops it)",
        file=sys.stderr,
    )
    status = serve(model, args.host, args.port, tracking_uri=config.uri)
    print("Stopped serving." if status == 0 else f"The server exited with status {status}.", file=sys.stderr)
    if status != 0:
        raise ValueError(
            f"MLflow's scoring server stopped with status {status} (its output above says why; a port in use is "
            f"the usual cause: choose another with --port). Received: port={args.port}"
        )
    return {"model": str(model), "host": args.host, "port": args.port}


COMMAND = Command(
    "serve",
    "serve a run's or a registered model over HTTP with MLflow's scoring server (Ctrl-C stops it)",
    add_arguments,
    run,
)
