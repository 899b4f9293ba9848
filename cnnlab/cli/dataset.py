"""`dataset SUBCOMMAND`: make datasets, look at their versions, and export them; the edits that make
a new version (`add`, `relabel`, `exclude`, `restore`) are in `cnnlab.cli.dataset_edits`, and
`duplicates` in `cnnlab.cli.dataset_duplicates`.

DATASET is a class folder (its versions are kept in the datasets folder, never in it; version 1 is
made on first use) or the name of a dataset made with `dataset new`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cnnlab.cli import dataset_duplicates, dataset_edits, dataset_outliers
from cnnlab.cli.dataset_edits import add_dataset_argument, describe, open_versioned
from cnnlab.cli.options import Command, Parser, version_number
from cnnlab.cli.progress import say
from cnnlab.settings import Settings

if TYPE_CHECKING:
    from cnnlab.data.versions import Manifest


def _new_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="1-64 letters, digits, '-', '_' or '.'")
    parser.add_argument("--classes", required=True, help="class names, comma-separated: A,B[,...]")
    parser.add_argument("--validation-split", type=float, help="fraction of the images to validate on (default 0.15)")
    parser.add_argument("--test-split", type=float, help="fraction of the images to test on (default 0.15)")
    parser.add_argument("--seed", type=int, help="seed of the split (default 1337)")


def new(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    """Make an empty dataset with these classes, as its version 1."""
    from cnnlab.data.versions import new_dataset

    classes = [c for c in args.classes.split(",") if c.strip()]
    split = {k: getattr(args, k) for k in ("validation_split", "test_split", "seed") if getattr(args, k) is not None}
    dataset = new_dataset(args.name, classes, settings.datasets_dir, **split)
    manifest = dataset.manifest()
    say(
        args,
        f"Made dataset '{dataset.name}' (version 1) with classes {', '.join(manifest.classes)} in {dataset.folder}; "
        f"add images with `cnnlab dataset add {dataset.name} CLASS IMAGE...`",
    )
    return {**describe(dataset), "version": manifest.version, "classes": list(manifest.classes)}


def list_(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    """One line per dataset in the datasets folder: its name, latest version, images and where its files are."""
    from cnnlab.data.versions import list_datasets

    rows = []
    for dataset in list_datasets(settings.datasets_dir):
        manifest = dataset.manifest() if dataset.latest() else None
        rows.append(
            {
                **describe(dataset),
                "latest": dataset.latest(),
                "num_images": len(manifest.included) if manifest else 0,
                "counts": manifest.counts if manifest else {},
            }
        )
    if not args.json:
        for row in rows:
            where = row["source"] or "made in CNN Lab"
            print(f"{row['dataset'][:30]:<30} v{row['latest']:<4} {row['num_images']:>7} images  {where}")
        if not rows:
            print(
                f"No datasets in {settings.datasets_dir} yet: make one with `cnnlab dataset new NAME --classes A,B`, "
                f"or edit a class folder with `cnnlab dataset relabel` or `exclude`."
            )
    return {"datasets_dir": str(settings.datasets_dir), "datasets": rows}


def versions(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    """One line per version, oldest first: number, parent, date, counts and change log."""
    dataset = open_versioned(args.dataset, settings)
    rows = [_version_row(m) for m in dataset.manifests()]
    if not args.json:
        print(f"Dataset '{dataset.name}' ({dataset.source or dataset.folder}):")
        for row in rows:
            parent = f"v{row['parent']}" if row["parent"] else "-"
            counts = ", ".join(f"{name} {n}" for name, n in row["counts"].items())
            excluded = f" ({row['num_excluded']} excluded)" if row["num_excluded"] else ""
            print(
                f"  v{row['version']:<4} from {parent:<5} {row['created']}  {row['num_images']} images{excluded}: "
                f"{counts}  | {row['change']}"
            )
    return {**describe(dataset), "versions": rows}


def _diff_arguments(parser: argparse.ArgumentParser) -> None:
    add_dataset_argument(parser)
    parser.add_argument("old", type=version_number, metavar="V1")
    parser.add_argument("new", type=version_number, metavar="V2")


def diff(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    """What changed from version V1 to V2: relabelled (old -> new class), excluded, restored, added, removed."""
    from cnnlab.data.edits import diff as version_diff

    dataset = open_versioned(args.dataset, settings)
    change = version_diff(dataset, args.old, args.new)
    if not args.json:
        print(f"Dataset '{dataset.name}', version {change.old} -> {change.new}: {change.summary}")
        for path, old, new in change.relabelled:
            print(f"  relabelled {path}: {old} -> {new}")
        for kind in ("excluded", "restored", "added", "removed"):
            for path in getattr(change, kind):
                print(f"  {kind:<10} {path}")
    return {
        "dataset": dataset.name,
        "old": change.old,
        "new": change.new,
        "summary": change.summary,
        "relabelled": [{"path": path, "old": old, "new": new} for path, old, new in change.relabelled],
        "excluded": list(change.excluded),
        "restored": list(change.restored),
        "added": list(change.added),
        "removed": list(change.removed),
    }


def _export_arguments(parser: argparse.ArgumentParser) -> None:
    add_dataset_argument(parser)
    parser.add_argument("--version", type=version_number, help="version to export (default: the latest)")
    parser.add_argument("--out", type=Path, required=True, metavar="FILE.zip", help="zip file to write")


def export(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    """Write a version's included images as a zip of class folders."""
    from cnnlab.common.files import user_path
    from cnnlab.data.edits import export_zip

    dataset = open_versioned(args.dataset, settings)
    manifest = dataset.manifest(args.version)
    out = export_zip(dataset, user_path(args.out, "out"), manifest.version)
    say(
        args,
        f"Exported version {manifest.version} of '{dataset.name}' ({len(manifest.included)} images in "
        f"{len(manifest.classes)} classes) to {out}",
    )
    return {
        "dataset": dataset.name,
        "version": manifest.version,
        "zip": str(out),
        "num_images": len(manifest.included),
        "counts": manifest.counts,
    }


def _version_row(manifest: Manifest) -> dict[str, Any]:
    return {
        "version": manifest.version,
        "parent": manifest.parent,
        "created": manifest.created,
        "change": manifest.change,
        "num_images": len(manifest.included),
        "num_excluded": len(manifest.entries) - len(manifest.included),
        "counts": manifest.counts,
    }


# In the order `dataset --help` lists them.
SUBCOMMANDS = (
    Command("new", "make an empty dataset with these classes (its images are added with `add`)", _new_arguments, new),
    dataset_edits.ADD,
    dataset_edits.RELABEL,
    dataset_edits.EXCLUDE,
    dataset_edits.RESTORE,
    Command(
        "versions", "list a dataset's versions: parent, date, counts and change log", add_dataset_argument, versions
    ),
    Command("diff", "what changed between two versions of a dataset", _diff_arguments, diff),
    dataset_duplicates.COMMAND,
    Command("export", "write a version as a zip of class folders", _export_arguments, export),
    Command("list", "list the datasets in the datasets folder (CNNLAB_DATASETS_DIR)", lambda parser: None, list_),
    dataset_outliers.COMMAND,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One sub-command per action, each with its own arguments and `--json`."""
    sub = parser.add_subparsers(dest="subcommand", required=True, parser_class=Parser)
    for command in SUBCOMMANDS:
        p = sub.add_parser(command.name, help=command.help, description=command.help)
        # SUPPRESS: given after the sub-command it sets `json`; not given, it leaves `dataset --json` alone.
        p.add_argument(
            "--json",
            action="store_true",
            default=argparse.SUPPRESS,
            help="print one JSON object as the last line of output",
        )
        command.add_arguments(p)
        # `tensorflow`: the dispatcher imports it quietly first, as for a top-level command that needs it.
        p.set_defaults(action=command.run, tensorflow=command.tensorflow)


def run(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    """Run the sub-command given."""
    return args.action(args, settings)


COMMAND = Command(
    "dataset",
    "make, edit (as new versions, never touching your files), compare and export datasets",
    add_arguments,
    run,
)
