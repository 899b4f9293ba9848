"""Fixing labels where images are shown: relabel or exclude images of a dataset version from any
gallery, several at once, the edits pending in this session (with undo) until saved as the next
version (`cnnlab.data.edits`). The user's files are never changed.

Whatever page shows the images says which dataset and version they belong to; this module keeps,
per dataset folder, the edits not saved yet and the versions this session saved.
"""

from __future__ import annotations

import base64
import hashlib
import io
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import streamlit as st
from PIL import Image

from cnnlab.data import edits, images
from cnnlab.data.edits import Exclude, Relabel, Restore
from cnnlab.data.versions import Dataset, Entry, Manifest, check_class_names
from cnnlab_ui.gallery import thumbnails
from cnnlab_ui.messages import show_error

Fix = Relabel | Exclude | Restore
Target = tuple[Dataset, int]

THUMBNAIL_SIDE = 96
ROW_HEIGHT = 56  # the editor's rows: tall enough to tell the images apart
COLUMNS = ["image", "path", "note", "label", "exclude", "reason"]
# Per dataset folder (session_state keys): the edits not saved yet, the versions this session saved,
# the classes named here before any image has them, and a counter that starts every editor afresh.
_PENDING = "pending-edits"
_SAVED = "saved-versions"
_NEW_CLASSES = "new-classes"
_GENERATION = "fix-generation"


@dataclass(frozen=True)
class Pending:
    """Edits to version `parent` of a dataset, in the order made, not saved yet."""

    parent: int
    edits: tuple[Fix, ...] = ()


def gallery(
    where: Path | Callable[[str], Path],
    paths: Sequence[str],
    captions: Sequence[str],
    *,
    key: str,
    target: Callable[[], Target],
    columns: int = 8,
) -> Target | None:
    """The thumbnails grid, or with its "Fix labels" toggle on, the same images in `fix_labels`
    (for the dataset and version `target` opens, only then). Returns that target while fixing."""
    if not st.toggle(
        "Fix labels", key=f"fixing-{key}", help="Relabel or exclude these images (saved as a new version)"
    ):
        thumbnails(where, list(paths), list(captions), columns=columns)
        return None
    try:
        dataset, version = target()
    except ValueError as exc:
        show_error(exc)
        return None
    fix_labels(dataset, version, paths, captions, key=key)
    return dataset, version


def fix_labels(dataset: Dataset, version: int, paths: Sequence[str], captions: Sequence[str], *, key: str) -> None:
    """A table of these images of `dataset` (paths as in its manifests) to relabel (to an existing or a new
    class) and exclude, several at once; "Add to pending edits" keeps the changes for `pending_edits`.

    The edits go to `version`, or to the newest version this session saved from it, so that fixes
    saved earlier in the session are kept.
    """
    version = working_version(dataset, version)
    pending = pending_of(dataset)
    if pending.edits and pending.parent != version:
        st.info(
            f"{_edits(len(pending.edits))} to version {pending.parent} of this dataset are pending: save or undo them "
            f"(under Pending edits) before fixing version {version}."
        )
        return
    manifest = dataset.manifest(version)
    entries = {e.path: e for e in manifest.entries}
    shown = [(p, c) for p, c in zip(paths, captions, strict=True) if p in entries]
    if len(shown) < len(paths):
        st.caption(f"{len(paths) - len(shown)} of these images are not in version {version}, so not listed.")
    if not shown:
        return
    classes = [*manifest.classes, *(c for c in _new_classes(dataset) if c not in manifest.classes)]
    rows = _rows(dataset, [entries[p] for p, _ in shown], [c for _, c in shown], pending)
    latest = dataset.latest()
    newest = f" (version {latest} is the newest)" if latest > version else ""
    st.caption(f"Edits to version {version} of {dataset.name}{newest}; the image files are never changed.")
    edited = st.data_editor(
        rows,
        key=f"fix-{key}-{_digest(rows['path'])}-{_generation(dataset)}",  # other images: a new editor
        hide_index=True,
        row_height=ROW_HEIGHT,
        disabled=["image", "path", "note"],
        column_config={
            "image": st.column_config.ImageColumn("image", width="small"),
            "note": st.column_config.TextColumn("shown as"),
            "label": st.column_config.SelectboxColumn("label", options=classes, required=True),
            "exclude": st.column_config.CheckboxColumn("exclude", help="Leave the image out of training and tests"),
            "reason": st.column_config.TextColumn("why excluded"),
        },
    )
    changed = changed_fixes(manifest, rows, edited)
    left, right = st.columns([3, 2], vertical_alignment="bottom")
    with left:
        _new_class_input(dataset, manifest, key)
    if right.button(
        f"Add {len(changed)} change{'s' * (len(changed) > 1)} to the pending edits"
        if changed
        else "Add changes to the pending edits",
        key=f"stage-{key}",
        disabled=not changed,
        icon=":material/playlist_add:",
        help="Change a label or tick exclude in the table first" if not changed else None,
    ):
        stage(dataset, version, changed)
        st.rerun()
    if pending.edits:
        st.caption(f"{_edits(len(pending.edits))} pending for this dataset, listed under Pending edits.")


def pending_edits(dataset: Dataset, *, key: str, about: str = "") -> None:
    """The edits this session made to `dataset` and has not saved, each with its undo, "Undo all", and
    "Save as version N" (`edits.save_version`), then the saved version's change log. `about` says
    what the version they apply to is (e.g. "the one this run trained on")."""
    saved = saved_versions(dataset)
    pending = pending_of(dataset)
    if not pending.edits and not saved:
        return
    st.subheader(f"Pending edits ({len(pending.edits)})" if pending.edits else "Saved edits")
    if saved:
        manifest = dataset.manifest(saved[-1])
        st.success(f"Saved version {manifest.version} (from version {manifest.parent}): {manifest.change}.")
    if not pending.edits:
        st.caption("No edit pending: fix labels in a gallery to make the next version.")
        return
    latest = dataset.latest()
    if latest > pending.parent:
        later = f"version {latest}" if latest == pending.parent + 1 else f"versions {pending.parent + 1}-{latest}"
        st.info(
            f"These edits apply to version {pending.parent}{f', {about}' if about else ''}. Version {latest} is the "
            f"newest: version {latest + 1} will be version {pending.parent} with these edits, without what {later} "
            "changed."
        )
    manifest = dataset.manifest(pending.parent)
    generation = _generation(dataset)
    for i, edit in enumerate(pending.edits):
        left, right = st.columns([6, 1], vertical_alignment="center")
        left.markdown(describe(edit, manifest))
        if right.button("Undo", key=f"undo-{key}-{generation}-{i}", icon=":material/undo:"):
            _set_pending(dataset, Pending(pending.parent, pending.edits[:i] + pending.edits[i + 1 :]))
            st.rerun()
    save, undo_all = st.columns(2)
    if save.button(f"Save as version {latest + 1}", key=f"save-{key}", type="primary", icon=":material/save:"):
        try:
            new = edits.save_version(dataset, pending.edits, parent=pending.parent)
        except ValueError as exc:
            show_error(exc)
        else:
            record_saved(dataset, new.version)
            st.rerun()
    if undo_all.button("Undo all", key=f"undo-all-{key}", icon=":material/clear_all:"):
        _set_pending(dataset, Pending(pending.parent))
        st.rerun()


def pending_of(dataset: Dataset) -> Pending:
    """This session's edits to `dataset` not saved yet (none: an empty list for its latest version)."""
    return st.session_state.get(_PENDING, {}).get(str(dataset.folder)) or Pending(dataset.latest())


def saved_versions(dataset: Dataset) -> list[int]:
    """The versions of `dataset` this session saved, oldest first."""
    return list(st.session_state.get(_SAVED, {}).get(str(dataset.folder), []))


def record_saved(dataset: Dataset, number: int) -> None:
    """Note a version this session saved (its fixes go on from it, and it is offered for retraining)."""
    st.session_state.setdefault(_SAVED, {}).setdefault(str(dataset.folder), []).append(number)
    _set_pending(dataset, Pending(number))


def working_version(dataset: Dataset, version: int) -> int:
    """The newest version this session saved from `version` (through its parents), else `version`."""
    for saved in reversed(saved_versions(dataset)):
        number: int | None = saved
        while number is not None and number > version:
            number = dataset.manifest(number).parent
        if number == version:
            return saved
    return version


def stage(dataset: Dataset, version: int, changed: dict[str, list[Fix]]) -> None:
    """Add the fixes of the changed images (by path) to the pending edits of `version`, replacing
    earlier pending edits of the same images (an image changed back has none left)."""
    pending = pending_of(dataset)
    kept = tuple(e for e in pending.edits if e.path not in changed) if pending.parent == version else ()
    _set_pending(dataset, Pending(version, kept + tuple(f for fixes in changed.values() for f in fixes)))


def changed_fixes(manifest: Manifest, rows: pd.DataFrame, edited: pd.DataFrame) -> dict[str, list[Fix]]:
    """For each image whose row was edited, the fixes from its entry in `manifest` to the row as it is now."""
    changed = {}
    fields = ["label", "exclude", "reason"]
    for (_, before), (_, after) in zip(rows[fields].iterrows(), edited[fields].iterrows(), strict=True):
        if not before.equals(after):
            path = edited.loc[after.name, "path"]
            changed[path] = fixes_for(manifest, manifest.entry(path), after["label"], after["exclude"], after["reason"])
    return changed


def fixes_for(manifest: Manifest, entry: Entry, label: str, excluded: bool, reason: str) -> list[Fix]:
    """The fixes that make `entry` labelled `label`, excluded or not (with `reason`)."""
    fixes: list[Fix] = []
    if label != entry.label:
        fixes.append(Relabel(entry.path, label, new_class=label not in manifest.classes))
    if excluded and not entry.excluded:
        fixes.append(Exclude(entry.path, reason or ""))
    elif entry.excluded and not excluded:
        fixes.append(Restore(entry.path))
    return fixes


def describe(edit: Fix, manifest: Manifest) -> str:
    """One line for a pending edit: the image and what changes."""
    entry = manifest.entry(edit.path)
    if isinstance(edit, Relabel):
        new = " (new class)" if edit.new_class else ""
        return f"`{edit.path}`: {entry.label} → **{edit.label}**{new}"
    if isinstance(edit, Exclude):
        return f"`{edit.path}`: excluded ({edit.reason.strip() or 'excluded by hand'})"
    return f"`{edit.path}`: included again"


def _rows(dataset: Dataset, entries: list[Entry], captions: list[str], pending: Pending) -> pd.DataFrame:
    """The editor's rows: each image as its version has it with the pending edits applied."""
    state: dict[str, dict] = {e.path: {"label": e.label, "exclude": e.excluded, "reason": e.reason} for e in entries}
    for edit in pending.edits:
        if edit.path not in state:
            continue
        if isinstance(edit, Relabel):
            state[edit.path]["label"] = edit.label
        else:
            state[edit.path].update(exclude=isinstance(edit, Exclude), reason=getattr(edit, "reason", ""))
    return pd.DataFrame(
        [
            {"image": _data_url(dataset.image_path(e.path)), "path": e.path, "note": caption, **state[e.path]}
            for e, caption in zip(entries, captions, strict=True)
        ],
        columns=COLUMNS,
    )


def _new_class_input(dataset: Dataset, manifest: Manifest, key: str) -> None:
    """A class name to offer in the label column before any image has it."""
    with st.form(key=f"new-class-{key}", border=False, enter_to_submit=True):
        name, add = st.columns([3, 1], vertical_alignment="bottom")
        typed = name.text_input("New class", key=f"new-class-name-{key}", placeholder="a class not in the dataset yet")
        if add.form_submit_button("Add class", icon=":material/add:") and typed.strip():
            try:
                (added,) = check_class_names([typed])
                if added in manifest.classes or added in _new_classes(dataset):
                    raise ValueError(
                        f"There is a class {added!r} already; pick it in the label column. Received: class={added!r}"
                    )
            except ValueError as exc:
                show_error(exc)
            else:
                st.session_state.setdefault(_NEW_CLASSES, {}).setdefault(str(dataset.folder), []).append(added)
                _bump(dataset)
                st.rerun()


def _edits(count: int) -> str:
    return f"{count} edit{'s' * (count > 1)}"


def _new_classes(dataset: Dataset) -> list[str]:
    return list(st.session_state.get(_NEW_CLASSES, {}).get(str(dataset.folder), []))


def _set_pending(dataset: Dataset, pending: Pending) -> None:
    st.session_state.setdefault(_PENDING, {})[str(dataset.folder)] = pending
    _bump(dataset)


def _digest(paths: Iterable[str]) -> str:
    return hashlib.sha256("\n".join(paths).encode()).hexdigest()[:8]


def _generation(dataset: Dataset) -> int:
    return st.session_state.get(_GENERATION, {}).get(str(dataset.folder), 0)


def _bump(dataset: Dataset) -> None:
    """Start every editor of `dataset` afresh: its rows now show what changed, not the edits made in it."""
    generations = st.session_state.setdefault(_GENERATION, {})
    generations[str(dataset.folder)] = generations.get(str(dataset.folder), 0) + 1


def _data_url(path: Path) -> str | None:
    """A small JPEG of the image as a data URL for the editor's image column (None: gone or unreadable)."""
    try:
        return _thumbnail_url(str(path), path.stat().st_mtime_ns)
    except (images.ImageError, OSError):
        return None


@st.cache_data(show_spinner=False, max_entries=2000)
def _thumbnail_url(path: str, mtime_ns: int) -> str:
    """Cached per file and modification time."""
    buffer = io.BytesIO()
    Image.fromarray(images.thumbnail(Path(path), max_side=THUMBNAIL_SIDE)).save(buffer, "JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
