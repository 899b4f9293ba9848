"""A zip of images read one file at a time into memory, never extracted, with the upload checks of
`cnnlab.data.archive` (paths, links, passwords, counts, sizes, compression ratios)."""

from __future__ import annotations

import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from cnnlab.common.checks import one_line, short_repr
from cnnlab.data.archive import (
    CHUNK_BYTES,
    ZipSource,
    _Cap,
    _check_limits,
    _check_member,
    _check_total,
    _is_skipped_name,
    _member_name,
    _open_zip,
    _parts,
)


@dataclass(frozen=True)
class ZipMember:
    """One file of a zip: its path inside the zip (`/`-separated) and its bytes, or the one-line
    reason it was refused (`data` None)."""

    name: str
    data: bytes | None = None
    error: str | None = None


class ZipReader:
    """The files of a zip in name order, read one at a time; `len()` says how many.

    What `archive.extract_zip` refuses for the whole zip is refused on opening (ValueError): not a
    readable zip, more than `max_members` entries, more than `max_total_bytes` declared, or
    compressed more than `max_ratio` times overall. A member it would refuse alone (a path outside
    the zip, too deep or too long, a password, a link, a bomb-like ratio, corrupt data) is yielded
    with its reason instead, so the others are still read. Directory entries, `__MACOSX/`, hidden
    files and names `accept` turns down are left out. The bytes really decompressed are counted
    against `max_total_bytes` as they are read (a forged header can understate them).
    """

    def __init__(
        self,
        source: ZipSource,
        *,
        accept: Callable[[str], bool] = lambda name: True,
        max_members: int = 20_000,
        max_total_bytes: int = 1_000_000_000,
        max_ratio: float = 200.0,
    ) -> None:
        _check_limits(max_members, max_total_bytes, max_ratio)
        self._zf = _open_zip(source)
        try:
            self._members = self._checked(accept, max_members, max_ratio)
            self._cap = _Cap(max_total_bytes, None)
            _check_total([info for info, error in self._members if error is None], self._cap, max_ratio)
        except BaseException:
            self._zf.close()
            raise

    def _checked(
        self, accept: Callable[[str], bool], max_members: int, max_ratio: float
    ) -> list[tuple[zipfile.ZipInfo, str | None]]:
        infos = self._zf.infolist()
        if len(infos) > max_members:
            raise ValueError(
                f"The zip has {len(infos)} entries, more than the limit of {max_members}; split it into smaller "
                f"zips. Received: members={len(infos)}"
            )
        members: list[tuple[zipfile.ZipInfo, str | None]] = []
        for info in infos:
            info.filename = _member_name(info)  # zf.open(info) checks the header against orig_filename
            try:
                _check_member(info, max_ratio)
            except ValueError as exc:
                members.append((info, str(exc)))
                continue
            parts = _parts(info.filename)
            if not info.is_dir() and not any(_is_skipped_name(p) for p in parts) and accept("/".join(parts)):
                members.append((info, None))
        return sorted(members, key=lambda pair: pair[0].filename)

    def __len__(self) -> int:
        return len(self._members)

    def __iter__(self) -> Iterator[ZipMember]:
        read = 0
        for info, error in self._members:
            if error is not None:
                yield ZipMember(info.filename, error=error)
                continue
            name = "/".join(_parts(info.filename))
            chunks = []
            try:
                with self._zf.open(info) as src:
                    while chunk := src.read(CHUNK_BYTES):
                        read += len(chunk)
                        if read > self._cap.limit:
                            raise self._cap.refuse(read, streamed=True)
                        chunks.append(chunk)
            except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError) as exc:
                yield ZipMember(
                    name,
                    error=f"'{name}' is corrupt in the zip or uses an unsupported compression ({one_line(exc)}); "
                    f"re-create the zip. Received: member={short_repr(name)}",
                )
                continue
            yield ZipMember(name, b"".join(chunks))

    def close(self) -> None:
        """Close the zip."""
        self._zf.close()

    def __enter__(self) -> ZipReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
