"""Safe zip extraction: every refusal leaves nothing behind, good zips land as class folders."""

import functools
import io
import os
import signal
import stat
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from cnnlab import data
from cnnlab.common.files import remove_stale_temporaries
from cnnlab.data.archive import dataset_root, extract_zip, open_upload
from helpers import image_bytes, stall


def _zip(tmp_path: Path, members: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> Path:
    path = tmp_path / "upload.zip"
    with zipfile.ZipFile(path, "w", compression=compression) as zf:
        for member, content in members.items():
            zf.writestr(member, content)
    return path


def _assert_refused(tmp_path: Path, source, match: str, **limits) -> None:
    dest = tmp_path / "out" / "dataset"
    with pytest.raises(ValueError, match=match) as info:
        extract_zip(source, dest, **limits)
    message = str(info.value)
    assert "\n" not in message and "Received: " in message
    assert not dest.exists()
    leftovers = list(dest.parent.iterdir()) if dest.parent.exists() else []
    assert leftovers == []


GOOD = {"cats/a.png": b"cat-a", "cats/b.png": b"cat-b", "dogs/c.png": b"dog-c"}


def test_good_zip_round_trip(tmp_path):
    source = _zip(tmp_path, GOOD)
    dest = tmp_path / "out" / "dataset"
    root = extract_zip(source, dest)
    assert root == dest
    assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file()) == sorted(GOOD)
    assert (dest / "dogs" / "c.png").read_bytes() == b"dog-c"
    assert [p.name for p in dest.parent.iterdir()] == ["dataset"]


@pytest.mark.parametrize("kind", ["bytes", "path", "stream"])
def test_accepts_bytes_path_and_file_objects(tmp_path, kind):
    path = _zip(tmp_path, GOOD)
    source = {"bytes": path.read_bytes(), "path": path, "stream": io.BytesIO(path.read_bytes())}[kind]
    root = extract_zip(source, tmp_path / "dest")
    assert sorted(p.name for p in root.iterdir()) == ["cats", "dogs"]


def test_single_top_folder_is_the_dataset_root(tmp_path):
    members = {"pets/": b"", **{f"pets/{k}": v for k, v in GOOD.items()}, "__MACOSX/pets/._a.png": b"x"}
    root = extract_zip(_zip(tmp_path, members), tmp_path / "dest")
    assert root == tmp_path / "dest" / "pets"
    assert sorted(p.name for p in root.iterdir()) == ["cats", "dogs"]
    assert dataset_root(tmp_path / "dest") == root


def test_a_single_class_folder_is_not_mistaken_for_a_wrapper(tmp_path):
    root = extract_zip(_zip(tmp_path, {"cats/a.png": b"a"}), tmp_path / "dest")
    assert root == tmp_path / "dest"


def test_skips_macos_hidden_files_and_directory_entries(tmp_path):
    members = {
        **GOOD,
        "__MACOSX/cats/._a.png": b"resource fork",
        "cats/.DS_Store": b"finder",
        ".hidden/x.png": b"x",
        "dogs/empty/": b"",
    }
    dest = tmp_path / "dest"
    extract_zip(_zip(tmp_path, members), dest)
    assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*")) == [
        "cats",
        "cats/a.png",
        "cats/b.png",
        "dogs",
        "dogs/c.png",
    ]


def test_backslash_names_become_folders(tmp_path):
    dest = tmp_path / "dest"
    extract_zip(_zip(tmp_path, {"cats\\a.png": b"a", "dogs\\b.png": b"b"}), dest)
    assert (dest / "cats" / "a.png").read_bytes() == b"a"


def _zip_with_raw_names(tmp_path: Path, members: dict[bytes, bytes]) -> Path:
    """A zip whose member names are the given bytes with the UTF-8 flag unset, as many tools write them."""
    placeholders = {name: f"member{i}".encode().ljust(len(name), b"_") for i, name in enumerate(members)}
    path = _zip(tmp_path, {placeholders[name].decode(): content for name, content in members.items()})
    raw = path.read_bytes()
    for name, placeholder in placeholders.items():  # a name is in the local header and the central directory
        assert raw.count(placeholder) == 2
        raw = raw.replace(placeholder, name)
    path.write_bytes(raw)
    return path


def test_names_without_the_utf8_flag_are_read_as_utf8_or_else_cp437(tmp_path):
    members = {
        "cats/café.png".encode(): b"made on a Mac or with 7-Zip",
        "dogs/naïve.png".encode("cp437"): b"made by Windows Explorer",
        b"dogs/plain.png": b"ascii",
    }
    source = _zip_with_raw_names(tmp_path, members)
    with zipfile.ZipFile(source) as zf:
        assert not any(info.flag_bits & 0x800 for info in zf.infolist())
    dest = tmp_path / "dest"
    extract_zip(source, dest)
    assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file()) == [
        "cats/café.png",
        "dogs/naïve.png",
        "dogs/plain.png",
    ]
    assert (dest / "dogs" / "naïve.png").read_bytes() == b"made by Windows Explorer"
    flagged = tmp_path / "flagged"
    flagged.mkdir()
    extract_zip(_zip(flagged, {"cats/café.png": b"x", "dogs/ü.png": b"y"}), tmp_path / "dest2")
    assert (tmp_path / "dest2" / "dogs" / "ü.png").read_bytes() == b"y"


def test_refuses_what_is_not_a_zip(tmp_path):
    _assert_refused(tmp_path, b"definitely not a zip", "not a readable zip")
    (tmp_path / "fake.zip").write_bytes(b"PK\x03\x04 truncated")
    _assert_refused(tmp_path, tmp_path / "fake.zip", "not a readable zip")


def test_refuses_corrupt_member_data(tmp_path):
    data = bytearray(_zip(tmp_path, {"cats/a.png": b"A" * 5000}).read_bytes())
    start = data.index(b"cats/a.png") + len("cats/a.png")
    data[start + 5 : start + 25] = bytes(20)  # garble the deflate stream, keep the headers
    _assert_refused(tmp_path, bytes(data), "corrupt")


def test_refuses_encrypted_members(tmp_path):
    path = _zip(tmp_path, GOOD)
    data = bytearray(path.read_bytes())
    # Set the "encrypted" flag bit in every local and central header, as a password tool would.
    for signature, flag_offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        at = data.find(signature)
        while at != -1:
            data[at + flag_offset] |= 0x1
            at = data.find(signature, at + 4)
    _assert_refused(tmp_path, bytes(data), "password-protected")


@pytest.mark.parametrize(
    "member", ["../evil.png", "cats/../../evil.png", "/etc/evil.png", "C:/evil.png", "cats\\..\\..\\evil.png"]
)
def test_refuses_paths_outside_the_folder(tmp_path, member):
    info = zipfile.ZipInfo(member)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("cats/a.png", b"a")
        zf.writestr(info, b"evil")
    _assert_refused(tmp_path, buffer.getvalue(), "outside its own folder")
    assert not (tmp_path / "evil.png").exists() and not (tmp_path / "out" / "evil.png").exists()


def test_refuses_symlinks(tmp_path):
    link = zipfile.ZipInfo("cats/link.png")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("cats/a.png", b"a")
        zf.writestr(link, "/etc/passwd")
    _assert_refused(tmp_path, buffer.getvalue(), "symbolic link")


def test_refuses_too_many_members(tmp_path):
    members = {f"cats/{i}.png": b"x" for i in range(11)}
    _assert_refused(tmp_path, _zip(tmp_path, members), "more than the limit of 10", max_members=10)


def test_refuses_declared_size_over_the_cap(tmp_path):
    members = {"cats/a.png": b"x" * 600, "dogs/b.png": b"y" * 600}
    _assert_refused(tmp_path, _zip(tmp_path, members), "would expand to", max_total_bytes=1000)


def test_refuses_high_compression_ratio(tmp_path):
    bomb = {"cats/a.png": b"a", "cats/zeros.png": bytes(4 << 20)}
    _assert_refused(tmp_path, _zip(tmp_path, bomb), "zip bomb")


def test_small_compressible_files_are_not_bombs(tmp_path):
    root = extract_zip(_zip(tmp_path, {"cats/blank.bmp": bytes(50_000), "dogs/b.png": b"b"}), tmp_path / "dest")
    assert (root / "cats" / "blank.bmp").stat().st_size == 50_000


def test_enforces_the_size_cap_while_streaming(tmp_path):
    # Forge the headers to understate the size: the declared total passes, the real bytes do not.
    # zipfile itself stops at the declared size and then fails the CRC; our own byte count backs
    # that up. Either way the extraction is refused and nothing is left behind.
    real = bytes(range(256)) * 20  # 5120 bytes that barely compress
    data = bytearray(_zip(tmp_path, {"cats/a.png": real}, compression=zipfile.ZIP_STORED).read_bytes())
    for signature, size_offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        at = data.find(signature)
        data[at + size_offset : at + size_offset + 4] = (100).to_bytes(4, "little")
    _assert_refused(tmp_path, bytes(data), "limit|corrupt", max_total_bytes=1000)


def test_refuses_an_archive_with_only_hidden_files(tmp_path):
    _assert_refused(tmp_path, _zip(tmp_path, {"__MACOSX/._a": b"x", "cats/": b""}), "no files")


def test_refuses_a_dest_that_already_has_files(tmp_path):
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "keep.txt").write_text("mine")
    with pytest.raises(ValueError, match="already has files"):
        extract_zip(_zip(tmp_path, GOOD), dest)
    assert [p.name for p in dest.iterdir()] == ["keep.txt"]


def test_bad_limits_raise(tmp_path):
    with pytest.raises(ValueError, match="max_ratio"):
        extract_zip(_zip(tmp_path, GOOD), tmp_path / "dest", max_ratio=0)


def test_many_small_members_of_zeros_are_refused_before_anything_is_written(tmp_path):
    # Each member stays just under the per-member ratio threshold; the zip as a whole is a bomb.
    members = {f"cats/{i:03d}.png": bytes((1 << 20) - 1) for i in range(9)}
    _assert_refused(tmp_path, _zip(tmp_path, members), "compressed .* times overall", max_total_bytes=10 << 20)


def test_the_visitors_room_caps_what_is_written_and_says_what_to_delete(tmp_path):
    members = {"cats/a.png": bytes(range(256)) * 400, "dogs/b.png": bytes(range(256)) * 400}  # ~200 KB
    with pytest.raises(ValueError, match="left of your disk budget; delete uploads") as info:
        extract_zip(_zip(tmp_path, members), tmp_path / "out" / "dataset", room_bytes=100_000)
    assert "would expand to 0.2 MB, more than the 100,000 bytes left" in str(info.value)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_a_forged_size_is_refused_at_the_visitors_room_while_streaming(tmp_path):
    real = bytes(range(256)) * 20
    data = bytearray(_zip(tmp_path, {"cats/a.png": real}, compression=zipfile.ZIP_STORED).read_bytes())
    for signature, size_offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        at = data.find(signature)
        data[at + size_offset : at + size_offset + 4] = (100).to_bytes(4, "little")
    _assert_refused(tmp_path, bytes(data), "disk budget|corrupt", room_bytes=1000)


def test_a_dataset_the_check_refuses_leaves_nothing(tmp_path):
    seen = []

    def check(root: Path) -> None:
        seen.append(sorted(p.name for p in root.iterdir()))
        raise ValueError("not a dataset. Received: x=1")

    _assert_refused(tmp_path, _zip(tmp_path, {f"pets/{k}": v for k, v in GOOD.items()}), "not a dataset", check=check)
    assert seen == [["cats", "dogs"]]  # it saw the dataset root inside the wrapper folder


@pytest.mark.parametrize(
    ("member", "match"),
    [("a/" * 40 + "x.png", "41 levels deep"), ("cats/" + "n" * 300 + ".png", "name over 255 bytes")],
)
def test_refuses_deep_or_overlong_paths_with_a_short_message(tmp_path, member, match):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("cats/a.png", b"a")
        zf.writestr(member, b"x")
    dest = tmp_path / "out" / "dataset"
    with pytest.raises(ValueError, match=match) as info:
        extract_zip(buffer.getvalue(), dest)
    assert len(str(info.value)) < 300 and "..." in str(info.value)
    assert not dest.exists()


def test_an_upload_is_extracted_once_and_reused(tmp_path):
    data = _zip(tmp_path, {f"pets/{k}": v for k, v in GOOD.items()}).read_bytes()
    uploads = tmp_path / "uploads"
    root = open_upload(data, "pets.zip", uploads)
    assert root.name == "pets" and root.parent.parent == uploads
    assert sorted(p.name for p in root.iterdir()) == ["cats", "dogs"]
    (root / "cats" / "a.png").write_bytes(b"changed after extraction")
    assert open_upload(data, "renamed.zip", uploads) == root  # same content: the earlier extraction
    assert (root / "cats" / "a.png").read_bytes() == b"changed after extraction"

    other = _zip(tmp_path, {"birds/d.png": b"bird", "fish/e.png": b"fish"}).read_bytes()
    assert sorted(p.name for p in open_upload(other, "other.zip", uploads).iterdir()) == ["birds", "fish"]
    assert len(list(uploads.iterdir())) == 2


def test_a_bad_upload_is_refused_by_name_and_leaves_nothing(tmp_path):
    uploads = tmp_path / "uploads"
    with pytest.raises(ValueError, match=r"not a readable zip.*Received: source='notes.zip'"):
        open_upload(b"just text", "notes.zip", uploads)
    big = _zip(tmp_path, {"a/x.bin": b"0" * 3000, "b/y.bin": b"1" * 3000}).read_bytes()
    with pytest.raises(ValueError, match="over the 5,000 bytes limit"):
        open_upload(big, "big.zip", uploads, max_total_bytes=5000)
    assert not uploads.exists() or not any(uploads.iterdir())


def test_a_refusal_in_the_extracting_process_comes_back_as_its_one_line_message_and_leaves_nothing(tmp_path):
    images = {
        f"pets/{c}/{i}.png": image_bytes(np.zeros((40, 40, 3), np.uint8)) for c in ("cats", "dogs") for i in range(3)
    }
    content = _zip(tmp_path, images).read_bytes()
    # The decode budget's refusal, raised by the check inside the child, and the same check run in this process.
    budget = functools.partial(data.scan, cache=tmp_path / "cache", max_total_pixels=40 * 40 * 5)
    with pytest.raises(ValueError) as here:
        extract_zip(content, tmp_path / "here", check=budget)
    uploads = tmp_path / "uploads"
    with pytest.raises(ValueError) as child:
        open_upload(content, "pets.zip", uploads, check=budget)
    assert str(child.value) == str(here.value) and "pixels" in str(child.value)
    assert "\n" not in str(child.value) and str(tmp_path) not in str(child.value)
    # Refused while streaming: the headers understate the size.
    forged = bytearray(_zip(tmp_path, {"cats/a.png": bytes(5000)}, compression=zipfile.ZIP_STORED).read_bytes())
    for signature, size_offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        at = forged.find(signature)
        forged[at + size_offset : at + size_offset + 4] = (100).to_bytes(4, "little")
    with pytest.raises(ValueError, match=r"disk budget|corrupt") as streamed:
        open_upload(bytes(forged), "forged.zip", uploads, room_bytes=1000)
    assert "\n" not in str(streamed.value)
    assert not uploads.exists() or not any(uploads.rglob("*"))


def test_a_killed_extracting_process_is_refused_in_one_line_and_its_leftovers_are_tidied(tmp_path):
    members = {f"{c}/{i:05d}.png": b"not an image" for c in ("cats", "dogs") for i in range(3000)}
    content = _zip(tmp_path, members).read_bytes()
    uploads, caught = tmp_path / "uploads", []

    def upload() -> None:
        try:
            open_upload(content, "many.zip", uploads, check=functools.partial(data.scan, cache=tmp_path / "cache"))
        except ValueError as exc:
            caught.append(str(exc))

    worker = threading.Thread(target=upload)
    worker.start()
    deadline = time.monotonic() + 60
    while not (started := list(uploads.glob(".*.tmp"))) and time.monotonic() < deadline:
        time.sleep(0.002)
    # The temporary folder is named by the process that writes it: the child, not this one.
    pid = int(started[0].name.split(".")[2].split("-")[1])  # `.<name>.<host>-<pid>-<random>.tmp`
    assert pid != os.getpid()
    os.kill(pid, signal.SIGKILL)
    worker.join()
    assert len(caught) == 1 and "stopped by SIGKILL" in caught[0] and "\n" not in caught[0]
    assert [p.name for p in uploads.iterdir()] == [started[0].name]  # what the killed child left ...
    assert remove_stale_temporaries(uploads) == started  # ... goes at the next clean-up, its writer being gone
    assert not any(uploads.iterdir())


@pytest.mark.slow
def test_an_extraction_over_its_time_limit_is_killed_refused_in_one_line_and_leaves_nothing(tmp_path, monkeypatch):
    # The child process finds the tests' helpers (the check that never ends) where this one does.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]))
    content = _zip(tmp_path, {f"pets/{k}": v for k, v in GOOD.items()}).read_bytes()
    uploads = tmp_path / "uploads"
    started = time.monotonic()
    with pytest.raises(ValueError) as refused:
        open_upload(content, "pets.zip", uploads, check=stall, timeout_s=5)
    assert time.monotonic() - started < 60
    message = str(refused.value)
    assert message.startswith("The zip took over 5 s to extract and check") and message.endswith("timeout_s=5")
    assert "\n" not in message and str(tmp_path) not in message
    assert list(uploads.iterdir()) == []  # the child's half-checked folder went with it
