"""Safe extraction of an uploaded zip of class folders.

Every member is checked before anything is written (paths, links, encryption, counts, sizes,
compression ratios, each member's and the whole zip's), the size caps are enforced again on the
bytes actually decompressed, and the files land in a temporary folder that is renamed into place
only when all of them are out and the caller's check of the dataset has passed: a refusal at any
point leaves nothing on disk. Messages name members as the zip does, cut to a readable length.
An upload (`open_upload`) is extracted and checked in a child Python process with its own
interpreter lock, so other visitors' threads in the server do not slow each file it writes.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import pickle
import signal
import stat
import subprocess
import sys
import traceback
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from cnnlab.common.checks import megabytes, one_line, short_repr
from cnnlab.common.files import build_folder, remove_temporaries, temporary_path

ZipSource = bytes | str | Path | BinaryIO

CHUNK_BYTES = 1 << 20
# Small members may compress extremely well for innocent reasons (a blank BMP, an empty CSV);
# a ratio only signals a bomb once the member is big enough to hurt.
RATIO_MIN_BYTES = 1 << 20
# The folder holding the `cnnlab` package in use, put first on the child's path so it runs this copy.
_PACKAGE_PARENT = str(Path(__file__).resolve().parents[1])
_CHILD_CODE = "import sys; sys.path.insert(0, sys.argv[1]); from cnnlab.data.archive import _child_main; _child_main()"
SKIPPED_FOLDERS = frozenset({"__MACOSX"})
# A dataset is a wrapper, class folders and perhaps a few sub-folders; deeper paths are hostile,
# and a longer name than file systems allow would fail half-way through.
MAX_PATH_DEPTH = 32
# An upload's extraction and check that take longer are stopped: one within the limits takes seconds.
EXTRACT_TIMEOUT_S = 300.0
MAX_NAME_BYTES = 255
# Bit 11 of a member's flags: its name is UTF-8. Without it the zip format says cp437 (the DOS code page).
UTF8_NAME_FLAG = 0x800


def extract_zip(
    source: ZipSource,
    dest: Path,
    *,
    max_members: int = 20_000,
    max_total_bytes: int = 1_000_000_000,
    max_ratio: float = 200.0,
    room_bytes: int | None = None,
    check: Callable[[Path], object] | None = None,
) -> Path:
    """Extract a zip of class folders into `dest` and return the dataset root inside it.

    Refuses (ValueError, nothing left on disk) anything that is not a readable zip, encrypted
    members, absolute or `..` paths, paths over `MAX_PATH_DEPTH` folders deep or with a name over
    `MAX_NAME_BYTES`, symbolic links, more than `max_members` entries, more than `max_total_bytes`
    uncompressed (declared or actually decompressed), members over `RATIO_MIN_BYTES` or a whole
    zip compressed more than `max_ratio` times, and more than `room_bytes` (what is left of a
    visitor's disk budget) uncompressed. `check(root)` runs on the extracted dataset root before
    it is moved into place, so a dataset it refuses (by raising) is never kept. Directory entries,
    `__MACOSX/` and hidden files or folders are skipped. `dest` must not exist or be empty.
    """
    _check_limits(max_members, max_total_bytes, max_ratio)
    dest = Path(dest)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise ValueError(f"The extraction folder already has files; choose a new folder. Received: dest={dest.name!r}")
    cap = _Cap(max_total_bytes, room_bytes)
    with _open_zip(source) as zf:
        members = _checked_members(zf, max_members, cap, max_ratio)

        def fill(folder: Path) -> None:
            _extract_members(zf, members, folder, cap)
            if check is not None:
                check(dataset_root(folder))

        build_folder(dest, fill)
    return dataset_root(dest)


def open_upload(
    data: bytes,
    name: str,
    uploads_dir: Path,
    *,
    max_members: int = 20_000,
    max_total_bytes: int = 1_000_000_000,
    max_ratio: float = 200.0,
    room_bytes: int | None = None,
    check: Callable[[Path], object] | None = None,
    timeout_s: float = EXTRACT_TIMEOUT_S,
) -> Path:
    """The dataset root of an uploaded zip named `name`, extracted under `uploads_dir` once per content.

    The folder is named by the content's hash, so uploading the same zip again (a rerun, a
    renamed copy) reuses the earlier extraction. Refusals are `extract_zip`'s, naming the upload;
    the limits, `room_bytes` and `check` are passed on to it. Extraction and `check` run in a
    child process (spawned, never forked: the server holds threads and TensorFlow), so `check`
    must be picklable (a module-level function or a `functools.partial` of one); the child's
    refusals come back as the same ValueError, and a child that fails or is killed is refused
    with a one-line message (what it wrote is a temporary named by its process id, which
    `files.remove_stale_temporaries` removes once that process is gone). A child still at work
    after `timeout_s` seconds is killed, its temporary folder removed, and the upload refused.
    """
    target = Path(uploads_dir) / hashlib.sha256(data).hexdigest()[:16]
    if target.is_dir():
        return dataset_root(target)
    limits = {"max_members": max_members, "max_total_bytes": max_total_bytes, "max_ratio": max_ratio}
    target.parent.mkdir(parents=True, exist_ok=True)
    # The zip goes to the child through a file written in one system call: through a pipe, each
    # pipe-full would wait for the interpreter lock again while other threads are busy.
    with temporary_path(target.with_suffix(".zip")) as copy:
        try:
            request = pickle.dumps((copy, name, target, {**limits, "room_bytes": room_bytes, "check": check}))
        except (pickle.PicklingError, AttributeError, TypeError) as exc:
            raise TypeError(
                "check must be picklable to run in the extraction process: a module-level function or a "
                f"functools.partial of one. Received: check={check!r}"
            ) from exc
        copy.write_bytes(data)
        return _in_child(request, target, timeout_s)


def _in_child(request: bytes, target: Path, timeout_s: float) -> Path:
    """Run `_child_main` on `request` in a fresh Python process; its dataset root, or its refusal."""
    # stdout alone is read back, in one blocking read; stdin carries only the small request.
    with subprocess.Popen(
        [sys.executable, "-c", _CHILD_CODE, _PACKAGE_PARENT], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    ) as child:
        try:
            out, _ = child.communicate(request, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
            remove_temporaries(target, child.pid)
            raise ValueError(
                f"The zip took over {timeout_s:g} s to extract and check, longer than this server allows; upload "
                f"a smaller dataset, or try again when the server is less busy. Received: timeout_s={timeout_s:g}"
            ) from None
    lines = out.decode("utf-8", "replace").strip().splitlines()
    reply = json.loads(lines[-1]) if child.returncode == 0 and lines else {}
    if "root" in reply:
        return Path(reply["root"])
    if "refused" in reply:
        raise ValueError(reply["refused"])
    why = reply.get("failed") or _exit_reason(child.returncode)
    raise ValueError(
        f"The zip could not be extracted (the extracting process {why}); try again, or upload a smaller "
        f"dataset. Received: returncode={child.returncode}"
    )


def _exit_reason(returncode: int) -> str:
    if returncode < 0:
        with contextlib.suppress(ValueError):
            return f"was stopped by {signal.Signals(-returncode).name}"
    return f"exited with status {returncode}"


def _child_main() -> None:
    """The extracting process: a pickled request on stdin, one JSON line on stdout (root, refusal or failure)."""
    reply = sys.stdout
    sys.stdout = sys.stderr  # anything else printed stays out of the reply
    copy, name, target, options = pickle.loads(sys.stdin.buffer.read())
    upload = io.BytesIO(copy.read_bytes())
    upload.name = name  # what a refusal names as the source
    try:
        result = {"root": str(extract_zip(upload, target, **options))}
    except ValueError as exc:
        result = {"refused": one_line(exc)}
    except Exception as exc:  # noqa: BLE001 - one line for the visitor, the traceback for the server log
        result = {"failed": f"failed with {type(exc).__name__}"}
        traceback.print_exc()
    print(json.dumps(result), file=reply, flush=True)


class _Cap:
    """The uncompressed-size limit in force (the server's cap or the visitor's room) and its refusal."""

    def __init__(self, max_total_bytes: int, room_bytes: int | None) -> None:
        self.budget = room_bytes is not None and room_bytes < max_total_bytes
        self.limit = max(0, room_bytes) if room_bytes is not None and self.budget else max_total_bytes

    def refuse(self, total_bytes: int, *, streamed: bool) -> ValueError:
        size = f"expanded past {megabytes(self.limit)}" if streamed else f"would expand to {megabytes(total_bytes)}"
        if self.budget:
            return ValueError(
                f"The zip {size}, more than the {megabytes(self.limit)} left of your disk budget; "
                "delete uploads (Data page) or runs (Runs page) you no longer need, or upload a smaller dataset. "
                f"Received: total_bytes>={total_bytes}"
            )
        how = " while extracting (its headers understate its size)" if streamed else ""
        return ValueError(
            f"The zip {size}, over the {megabytes(self.limit)} limit{how}; upload a smaller "
            f"dataset. Received: total_bytes>={total_bytes}"
        )


def dataset_root(folder: Path) -> Path:
    """The folder holding the class folders: `folder`, or the single folder wrapping them.

    Zips made by right-clicking a dataset folder put everything under that folder's name; this
    steps into such wrappers (ignoring hidden entries) as long as the wrapper holds sub-folders.
    """
    folder = Path(folder)
    while True:
        entries = [p for p in folder.iterdir() if not _is_skipped_name(p.name)]
        if len(entries) != 1 or not entries[0].is_dir():
            return folder
        inner = entries[0]
        if not any(p.is_dir() and not _is_skipped_name(p.name) for p in inner.iterdir()):
            return folder
        folder = inner


def _check_limits(max_members: int, max_total_bytes: int, max_ratio: float) -> None:
    for name, value in (("max_members", max_members), ("max_total_bytes", max_total_bytes), ("max_ratio", max_ratio)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise ValueError(f"{name} must be a positive number. Received: {name}={value!r}")


def _describe(source: ZipSource) -> str:
    if isinstance(source, (str, Path)):
        return Path(source).name
    if isinstance(source, (bytes, bytearray)):
        return f"<{len(source)} bytes>"
    return Path(getattr(source, "name", None) or "uploaded file").name


def _open_zip(source: ZipSource) -> zipfile.ZipFile:
    fp = io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source
    try:
        return zipfile.ZipFile(fp)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError):
        raise ValueError(
            "The upload is not a readable zip file (wrong format or corrupt); upload a .zip of class "
            f"folders. Received: source={short_repr(_describe(source))}"
        ) from None


def _parts(name: str) -> list[str]:
    # Zips made on Windows sometimes use backslashes; treat them as separators so they can
    # neither hide a `..` nor create file names containing backslashes.
    return [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]


def _is_skipped_name(part: str) -> bool:
    return part.startswith(".") or part in SKIPPED_FOLDERS


def _check_path(info: zipfile.ZipInfo) -> None:
    name = info.filename
    normalized = name.replace("\\", "/")
    absolute = (
        normalized.startswith("/") or PurePosixPath(normalized).is_absolute() or (len(name) > 1 and name[1] == ":")
    )
    parts = _parts(name)
    if absolute or ".." in parts:
        raise ValueError(
            "The zip has a path that points outside its own folder, which is not allowed; re-create the zip "
            f"from the dataset folder. Received: member={short_repr(name)}"
        )
    if len(parts) > MAX_PATH_DEPTH:
        raise ValueError(
            f"The zip has a path {len(parts)} levels deep, more than the {MAX_PATH_DEPTH} a dataset could need; "
            f"re-create the zip from the dataset folder. Received: member={short_repr(name)}"
        )
    if any(len(p.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES for p in parts):
        raise ValueError(
            f"The zip has a file or folder name over {MAX_NAME_BYTES} bytes, longer than file systems allow; "
            f"rename it and re-create the zip. Received: member={short_repr(name)}"
        )


def _checked_members(zf: zipfile.ZipFile, max_members: int, cap: _Cap, max_ratio: float) -> list[zipfile.ZipInfo]:
    infos = zf.infolist()
    for info in infos:
        info.filename = _member_name(info)  # zf.open(info) checks the header against orig_filename, kept as read
    if len(infos) > max_members:
        raise ValueError(
            f"The zip has {len(infos)} entries, more than the limit of {max_members}; upload a smaller "
            f"dataset. Received: members={len(infos)}"
        )
    kept = []
    for info in infos:
        _check_member(info, max_ratio)
        if not info.is_dir() and not any(_is_skipped_name(p) for p in _parts(info.filename)):
            kept.append(info)
    if not kept:
        raise ValueError(
            "The zip has no files besides folders and hidden or system files; zip the class folders "
            f"with their images. Received: members={len(infos)}"
        )
    _check_total(kept, cap, max_ratio)
    return kept


def _check_total(kept: list[zipfile.ZipInfo], cap: _Cap, max_ratio: float) -> None:
    """Refuse members whose declared sizes add up past the cap, or that are compressed too much together."""
    declared = sum(info.file_size for info in kept)
    if declared > cap.limit:
        raise cap.refuse(declared, streamed=False)
    # Many members each just under RATIO_MIN_BYTES would slip past the per-member check.
    ratio = declared / max(sum(info.compress_size for info in kept), 1)
    if declared >= RATIO_MIN_BYTES and ratio > max_ratio:
        raise ValueError(
            f"The zip's files are compressed {ratio:.0f} times overall, over the limit of {max_ratio:g} (a possible "
            f"zip bomb); upload the images as they are. Received: total_bytes={declared}"
        )


def _member_name(info: zipfile.ZipInfo) -> str:
    """The member's name as its maker wrote it.

    zipfile reads a name without the UTF-8 flag as cp437, but most tools (macOS, Linux, 7-Zip) write
    UTF-8 without setting the flag, so such a name is UTF-8 when its bytes are; Windows's own zips
    use the DOS code page, cp437 for most.
    """
    if info.flag_bits & UTF8_NAME_FLAG:
        return info.filename
    try:
        return info.filename.encode("cp437").decode("utf-8")
    except UnicodeError:
        return info.filename


def _check_member(info: zipfile.ZipInfo, max_ratio: float) -> None:
    _check_path(info)
    if info.flag_bits & 0x1:
        raise ValueError(
            "The zip has a password-protected file; re-create the zip without a password. "
            f"Received: member={short_repr(info.filename)}"
        )
    if stat.S_ISLNK(info.external_attr >> 16):
        raise ValueError(
            "The zip has a symbolic link, which is not allowed; zip the real files instead. "
            f"Received: member={short_repr(info.filename)}"
        )
    ratio = info.file_size / max(info.compress_size, 1)
    if info.file_size >= RATIO_MIN_BYTES and ratio > max_ratio:
        raise ValueError(
            f"A file in the zip is compressed {ratio:.0f} times, over the limit of {max_ratio:g} (a possible "
            f"zip bomb); upload the images as they are. Received: member={short_repr(info.filename)}"
        )


def _extract_members(zf: zipfile.ZipFile, members: list[zipfile.ZipInfo], root: Path, cap: _Cap) -> None:
    written = 0
    for info in members:
        target = root.joinpath(*_parts(info.filename))
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(target, "wb") as out:
                # Count what is really decompressed: a forged header can understate any size.
                while chunk := src.read(CHUNK_BYTES):
                    written += len(chunk)
                    if written > cap.limit:
                        raise cap.refuse(written, streamed=True)
                    out.write(chunk)
        except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError) as exc:
            raise ValueError(
                f"A file in the zip is corrupt or uses an unsupported compression ({one_line(exc)}); "
                f"re-create the zip. Received: member={short_repr(info.filename)}"
            ) from None
        except OSError as exc:
            # strerror only: the full error names the server's temporary folder.
            raise ValueError(
                f"Could not write a file from the zip ({exc.strerror or type(exc).__name__}); check the names for "
                f"clashes and the disk for space. Received: member={short_repr(info.filename)}"
            ) from None
