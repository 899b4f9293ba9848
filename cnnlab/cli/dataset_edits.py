"""`dataset add|relabel|exclude|restore`: edits saved as a dataset's next version, each printing the
new version and its one-line change log. The user's files are never written to: a relabel or an
exclusion is a manifest entry, and an added image is stored in the dataset's own folder."""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cnnlab.cli.options import Command
from cnnlab.cli.progress import say
from cnnlab.common.files import user_path
from cnnlab.settings import Settings, check_upload_size

if TYPE_CHECKING:
    from cnnlab.data.edits import Edit
    from cnnlab.data.versions import Dataset, Manifest

IMAGE_HELP = "image path under the dataset root, as `cnnlab scan`, `label-issues` and the CSVs print it"


def add_dataset_argument(parser: argparse.ArgumentParser) -> None:
    """DATASET, as every `dataset` sub-command but `new` and `list` takes it."""
    parser.add_argument(
        "dataset", metavar="DATASET", help="class folder, or the name of a dataset made with `dataset new`"
    )


def _add_dataset_and_images(parser: argparse.ArgumentParser) -> None:
    add_dataset_argument(parser)
    parser.add_argument("images", nargs="+", metavar="IMAGE", help=IMAGE_HELP)


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    add_dataset_argument(parser)
    parser.add_argument("label", metavar="CLASS", help="the class of the images")
    parser.add_argument(
        "files",
        nargs="+",
        type=Path,
        metavar="IMAGE",
        help="image files to add. Each is checked as an upload is; one that is refused (not an image, too "
        "large, already in the dataset) is named on standard error with the reason and left out, and the "
        "others are saved as the new version. When none can be added, nothing is saved (exit status 2)",
    )
    _add_new_class(parser)


def _relabel_arguments(parser: argparse.ArgumentParser) -> None:
    _add_dataset_and_images(parser)
    parser.add_argument("--to", required=True, metavar="CLASS", help="the images' new class")
    _add_new_class(parser)


def _exclude_arguments(parser: argparse.ArgumentParser) -> None:
    _add_dataset_and_images(parser)
    parser.add_argument("--reason", default="", help="why, recorded in the version (default: excluded by hand)")


def _add_new_class(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--new-class",
        action="store_true",
        help="CLASS is a new class (without it, a class not yet in the dataset is an error)",
    )


def add(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    """Add image files to a class; the refused ones are named with the reason, the others saved."""
    from cnnlab.data.edits import save_version

    dataset = open_versioned(args.dataset, settings)
    edits, refused = _checked_files(args.files, dataset.manifest(), args.label, args.new_class, settings)
    if not edits:
        raise ValueError(
            f"No image could be added, so nothing was saved: {'; '.join(r.rstrip('.') for r in refused.values())}. "
            f"Received: images={len(args.files)}"
        )
    manifest = save_version(dataset, edits)
    for reason in refused.values():
        print(f"warning: not added: {reason}", file=sys.stderr)
    left_out = f" ({len(refused)} refused, named above)" if refused else ""
    refusals = [{"image": image, "reason": reason} for image, reason in refused.items()]
    return _saved(args, dataset, manifest, left_out, refused=refusals)


def relabel(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    """Give the images another class."""
    from cnnlab.data.edits import Relabel

    return _save(args, settings, lambda path: Relabel(path, args.to, args.new_class))


def exclude(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    """Leave the images out of training and evaluation, with the reason."""
    from cnnlab.data.edits import Exclude

    return _save(args, settings, lambda path: Exclude(path, args.reason))


def restore(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    """Include again images an earlier version excluded."""
    from cnnlab.data.edits import Restore

    return _save(args, settings, Restore)


def open_versioned(ref: str, settings: Settings) -> Dataset:
    """The dataset a command names: a class folder or the name of a dataset made with `new`."""
    from cnnlab.data.versions import open_dataset

    return open_dataset(ref, settings.datasets_dir, cache=settings.cache_dir)


def describe(dataset: Dataset) -> dict[str, Any]:
    """What names a dataset in a JSON result: its name, its folder of versions and the class folder it overlays."""
    return {
        "dataset": dataset.name,
        "folder": str(dataset.folder),
        "source": str(dataset.source) if dataset.source else None,
    }


def _save(args: argparse.Namespace, settings: Settings, edit_of) -> dict[str, Any]:
    """Save one edit per image as the next version; a bad one (an image not in the dataset, an unknown
    class) is a one-line error and nothing is saved."""
    from cnnlab.data.edits import save_version

    dataset = open_versioned(args.dataset, settings)
    known = {entry.path for entry in dataset.manifest().entries}
    paths = [image_key(dataset, known, image) for image in args.images]
    return _saved(args, dataset, save_version(dataset, [edit_of(path) for path in paths]))


def image_key(dataset: Dataset, known: set[str], image: str) -> str:
    """The manifest path of an image as typed: a path under the dataset root (one of `known`), or the
    image's file path (absolute or from here) inside the class folder; anything else is left for the
    manifest to refuse, naming what to give instead."""
    if image in known or dataset.source is None:
        return image
    try:
        return Path(image).expanduser().resolve().relative_to(dataset.source).as_posix()
    except (ValueError, RuntimeError):  # outside the folder, or `~nosuchuser`
        return image


def _checked_files(
    files: list[Path], manifest: Manifest, label: str, new_class: bool, settings: Settings
) -> tuple[list[Edit], dict[str, str]]:
    """The files to add as edits, and the refused ones with the reason, checked as uploads are: size,
    a whole image of a supported format, and not already in the dataset (or given twice)."""
    from cnnlab.data.edits import Add, check_added

    edits: list[Edit] = []
    refused: dict[str, str] = {}
    twins = {e.sha256: f"is in the dataset already as {e.path!r} (class {e.label!r})" for e in manifest.included}
    for file in files:
        try:
            data = user_path(file, "image").read_bytes()
            check_upload_size(file.name, len(data), settings)
            check_added(data, file.name)
        except (OSError, ValueError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            refused[str(file)] = f"{file}: {reason.split(' Received: ')[0]}"
            continue
        sha = hashlib.sha256(data).hexdigest()
        if sha in twins:
            refused[str(file)] = f"{file}: the same image {twins[sha]}"
            continue
        twins[sha] = f"was given before as {str(file)!r}"
        edits.append(Add(data, file.name, label, new_class))
    return edits, refused


def _saved(
    args: argparse.Namespace, dataset: Dataset, manifest: Manifest, note: str = "", **extra: Any
) -> dict[str, Any]:
    """Print the new version with its change log; its JSON result."""
    say(
        args,
        f"Saved version {manifest.version} of '{dataset.name}' (from version {manifest.parent}): "
        f"{manifest.change}{note}",
    )
    return {
        **describe(dataset),
        "version": manifest.version,
        "parent": manifest.parent,
        "change": manifest.change,
        "counts": manifest.counts,
        **extra,
    }


ADD = Command(
    "add",
    "add image files to a class (refused files are named with the reason; the others are saved)",
    _add_arguments,
    add,
)
RELABEL = Command("relabel", "give images another class (with --new-class, a class not yet in the dataset)",
                  _relabel_arguments, relabel)  # fmt: skip
EXCLUDE = Command("exclude", "leave images out of training and evaluation", _exclude_arguments, exclude)
RESTORE = Command("restore", "include again images an earlier version excluded", _add_dataset_and_images, restore)
