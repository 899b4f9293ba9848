"""Duplicates and train/test leakage in a dataset version: the same picture twice, as groups.

Exact duplicates are images with the same content (the manifest's SHA-256, so they cost nothing).
Near-duplicates are the same picture re-encoded, resized, lightly cropped or recoloured. Each
distinct image is decoded once into a 32x32 colour thumbnail and a 64-bit perceptual hash (pHash:
the signs of the lowest frequencies of the thumbnail's grayscale DCT); pairs of hashes a few bits
apart are candidates. Distinct pictures alike in layout (a big light shape on a dark background)
have close hashes too, so each candidate must pass three checks (the first two in `picture_match`):

- coarse: on 16x16 thumbnails, a recolouring of one (luma scaled and shifted, for brightness and
  contrast; chroma turned and scaled about gray, for hue and saturation) must explain the other,
  as they are or with one of them cropped by up to a tenth of each edge;
- fine: on the 32x32 thumbnails (the crop applied), the same recolouring must still explain them,
  and their finest detail (edges, grain, clutter) must agree as well as a copy's does;
- when a run's features of both images are given, those must point the same way too.

Groups are built by complete linkage (every two images of a near group passed the checks, so a
chain of look-alikes never becomes one group), and a near group is kept only if its images are far
closer to one another than to any other image: copies stand out, look-alikes come in crowds.

The hashes and thumbnails are kept in the cache folder by content hash, so a second look at the
same images, or at another version of them, decodes only the images it has not seen; the pairs
found among a set of images are kept by that set, so a version with the same images (another
visitor's version of the built-in sample) is not compared again.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cnnlab.common.files import atomic_write
from cnnlab.data.edits import Exclude
from cnnlab.data.picture_match import (
    CHUNK_CROPPED,
    MIN_SIMILARITY,
    THUMB_SIDE,
    coarse_similarity,
    coarse_thumbnails,
    fine_match,
    luma,
    perceptual_hashes,
    thumbnail,
)
from cnnlab.data.prepared import parallel_map
from cnnlab.data.versions import Dataset, Entry, file_changed, file_sha256

# Candidates: hashes at most this many bits apart (of 64; two unrelated photos differ in about 32,
# a re-encoded or resized copy in 0-8, a recoloured or cropped one in up to about 20; but pictures
# of the built-in sample alike in layout differ in as few as none).
MAX_HAMMING = 18
# A near group is kept only if its widest pair's dissimilarity (1 - similarity) is at most GAP_RATIO
# times that of the closest image outside it: 0.11 or less for the bench's copies, 0.47 or more for
# the built-in sample's look-alikes, which come in crowds (a backstop: none passes the checks).
GAP_RATIO = 0.5
# A run's features only veto pairs the model sees clearly differently: a model's features are not
# made to tell a copy from a look-alike, and a recoloured or cropped copy moves them somewhat.
MIN_FEATURE_SIMILARITY = 0.8
# Work in blocks: 256 rows of hash differences against 20,000 take 40 MB.
CHUNK_ROWS = 256
CACHE_FOLDER = "image-hashes"
# The pairs of this many sets of images looked at are kept, the least recently used given up first:
# the built-in sample's take 1 MB, and a hosted server sees new sets all day.
KEPT_PAIRS = 16
CACHE_VERSION = 2
_ROW = np.dtype([("sha", "S64"), ("hash", "<u8"), ("ok", "?"), ("thumb", "u1", (THUMB_SIDE, THUMB_SIDE, 3))])


@dataclass(frozen=True)
class DuplicateGroup:
    """Images that are the same picture: their manifest `paths` (sorted), with each one's `labels`,
    `splits` and file `sizes` in the same order. `kind` is "exact" when they all have the same
    content, "near" when some are a re-encoded, resized, cropped or recoloured copy."""

    kind: str
    paths: tuple[str, ...]
    labels: tuple[str, ...]
    splits: tuple[str, ...]
    sizes: tuple[int, ...] = ()

    @property
    def leak(self) -> bool:
        """The group has an image in "train" and one in "validation" or "test": evaluation sees a trained image."""
        return "train" in self.splits and bool({"validation", "test"} & set(self.splits))

    @property
    def conflict(self) -> bool:
        """The same picture carries more than one label."""
        return len(set(self.labels)) > 1

    @property
    def keep(self) -> str:
        """The image a one-click fix keeps: a training image if there is one, then the largest file,
        then the first path."""
        sizes = self.sizes or (0,) * len(self.paths)
        best = min(range(len(self.paths)), key=lambda i: (self.splits[i] != "train", -sizes[i], self.paths[i]))
        return self.paths[best]

    def to_dict(self) -> dict[str, Any]:
        """The group as JSON: paths, labels, splits, kind, leak and conflict."""
        return {
            "paths": list(self.paths),
            "labels": list(self.labels),
            "splits": list(self.splits),
            "kind": self.kind,
            "leak": self.leak,
            "conflict": self.conflict,
        }


@dataclass(frozen=True)
class DuplicateReport:
    """The duplicate groups of a dataset version's `num_images` included images (those still there
    and readable), leaking and conflicting groups first. `decoded` counts the images this call
    decoded: none when the cache had seen them all."""

    groups: tuple[DuplicateGroup, ...]
    num_images: int
    decoded: int = 0

    @property
    def leaks(self) -> tuple[DuplicateGroup, ...]:
        """The groups spanning training and evaluation images."""
        return tuple(g for g in self.groups if g.leak)

    @property
    def conflicts(self) -> tuple[DuplicateGroup, ...]:
        """The groups whose images carry more than one label."""
        return tuple(g for g in self.groups if g.conflict)

    @property
    def leaked_test_paths(self) -> frozenset[str]:
        """The test images that are a copy of a training image: what inflates test accuracy."""
        return frozenset(
            path
            for group in self.groups
            if "train" in group.splits
            for path, part in zip(group.paths, group.splits, strict=True)
            if part == "test"
        )

    def exclusions(self, groups: Sequence[DuplicateGroup] | None = None) -> list[Exclude]:
        """The edits that keep one image of each group (`DuplicateGroup.keep`; default: every group)
        and exclude the others, for `cnnlab.data.edits.save_version`."""
        return [
            Exclude(path, f"duplicate of {group.keep}")
            for group in (self.groups if groups is None else groups)
            for path in group.paths
            if path != group.keep
        ]

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON: num_images, groups, num_leaks and num_conflicts."""
        return {
            "num_images": self.num_images,
            "groups": [group.to_dict() for group in self.groups],
            "num_leaks": len(self.leaks),
            "num_conflicts": len(self.conflicts),
        }


def find_duplicates(
    dataset: Dataset,
    version: int | None = None,
    *,
    cache: Path | None = None,
    features: Mapping[str, np.ndarray] | None = None,
) -> DuplicateReport:
    """The exact and near-duplicate groups among a version's included images (default: the latest).

    Images whose file is gone or changed since the version was saved, and images that cannot be
    decoded, are left out (`cnnlab scan` and `version_data` say why). `cache` keeps each image's
    hash and thumbnail by content hash; `features` (path -> feature vector of a run's model, e.g.
    `Embedding.features_by_path()`) also confirms each near pair whose two images it covers.
    """
    manifest = dataset.manifest(version)
    if len(manifest.included) < 2:
        raise ValueError(
            f"Looking for duplicates takes a dataset version with at least 2 included images; add images first. "
            f"Received: num_images={len(manifest.included)}"
        )
    entries = [e for e in manifest.included if file_changed(dataset, e) is None]
    shas = sorted({e.sha256 for e in entries})
    rows, decoded = _hashed({e.sha256: dataset.image_path(e.path) for e in entries}, shas, cache)
    readable = [sha for sha in shas if rows[sha]["ok"]]
    entries = [e for e in entries if rows[e.sha256]["ok"]]
    paths_of: dict[str, list[str]] = {}
    for entry in entries:
        paths_of.setdefault(entry.sha256, []).append(entry.path)
    candidates, similarity, confirmed = _picture_pairs(readable, rows, cache)
    if features:
        for k in np.flatnonzero(confirmed):
            a, b = candidates[k]
            confirmed[k] = _features_agree(paths_of[readable[a]], paths_of[readable[b]], features)
    groups = _groups(entries, readable, candidates, similarity, confirmed)
    ordered = sorted(groups, key=lambda g: (not g.leak, not g.conflict, g.paths))
    return DuplicateReport(tuple(ordered), len(entries), decoded)


def prepare(files: Sequence[Path], cache: Path) -> None:
    """Decode, hash and pair these image files into `cache`, as a look at a version of exactly them
    would: the server's warm-up does it for the built-in sample, of which each hosted visitor gets a
    version of their own, so that none of them waits for it."""
    file_of = {file_sha256(path): path for path in files}
    shas = sorted(file_of)
    rows, _ = _hashed(file_of, shas, cache)
    _picture_pairs([sha for sha in shas if rows[sha]["ok"]], rows, cache)


def _hashed(file_of: Mapping[str, Path], shas: list[str], cache: Path | None) -> tuple[dict[str, np.void], int]:
    """Each content hash's row (perceptual hash, thumbnail, whether it decoded), from the cache or
    decoded now from `file_of[sha]` (and then cached); and how many images were decoded."""
    rows = _cached_rows(cache, shas) if cache is not None else {}
    missing = [sha for sha in shas if sha not in rows]
    if not missing:
        return rows, 0
    made = np.zeros(len(missing), dtype=_ROW)
    made["sha"] = missing
    for i, (array, _reason) in enumerate(parallel_map(thumbnail, [file_of[sha] for sha in missing])):
        if array is not None:
            made["thumb"][i], made["ok"][i] = array, True
    made["hash"] = perceptual_hashes(luma(made["thumb"]))
    if cache is not None:
        _store_rows(cache, made)
    rows.update(zip(missing, made, strict=True))
    return rows, len(missing)


def _picture_pairs(
    shas: list[str], rows: dict[str, np.void], cache: Path | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The candidate pairs among these distinct images (indices into `shas`, an (P, 2) array), each
    one's similarity on the coarse thumbnails, and which of them the pictures show to be the same.

    They depend on the images alone, so `cache` keeps them by the set of images: another version,
    dataset or visitor with the same images finds them there."""
    stored = _pairs_file(cache, shas) if cache is not None and len(shas) >= 2 else None
    if stored is not None and (found := _read_pairs(stored)) is not None:
        return found
    found = _near_pairs(shas, rows)
    if stored is not None:
        stored.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(stored, "wb") as fh:
            np.savez(fh, candidates=found[0].astype(np.int32), similarity=found[1], confirmed=found[2])
        for unused in sorted(stored.parent.glob("[!.]*.npz"), key=_last_used, reverse=True)[KEPT_PAIRS:]:
            unused.unlink(missing_ok=True)
    return found


def _near_pairs(shas: list[str], rows: dict[str, np.void]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`_picture_pairs`, computed: close hashes, then the coarse and the fine checks."""
    none = np.zeros((0, 2), dtype=np.int64), np.zeros(0, dtype=np.float32), np.zeros(0, dtype=bool)
    if len(shas) < 2:
        return none
    candidates = _candidates(np.array([rows[sha]["hash"] for sha in shas], dtype=np.uint64))
    if not len(candidates):
        return none
    used = np.unique(candidates)
    position = np.zeros(len(shas), dtype=np.int64)
    position[used] = np.arange(len(used))
    first, second = position[candidates[:, 0]], position[candidates[:, 1]]
    similarity, crops = coarse_similarity(coarse_thumbnails([rows[shas[i]]["thumb"] for i in used]), first, second)
    confirmed = similarity >= MIN_SIMILARITY
    sure = np.flatnonzero(confirmed)
    for start in range(0, len(sure), CHUNK_CROPPED):
        pairs = sure[start : start + CHUNK_CROPPED]
        a, b = (np.stack([rows[shas[i]]["thumb"] for i in candidates[pairs, side]]) for side in (0, 1))
        confirmed[pairs] = fine_match(a, b, crops.take(pairs))
    return candidates, similarity, confirmed


def _pairs_file(cache: Path, shas: list[str]) -> Path:
    """Where the pairs of this set of images are kept: named by a digest of their sorted content hashes
    and of the thresholds that chose them, so a change of either finds nothing stale."""
    digest = hashlib.blake2b(f"{MAX_HAMMING} {MIN_SIMILARITY}\n".encode(), digest_size=16)
    for sha in shas:
        digest.update(sha.encode("ascii"))
    return _cache_folder(cache) / "pairs" / f"{digest.hexdigest()}.npz"


def _read_pairs(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Pairs kept by `_picture_pairs`; None when missing or damaged (they are found again)."""
    try:
        with np.load(path, allow_pickle=False) as stored:
            found = stored["candidates"].astype(np.int64), stored["similarity"], stored["confirmed"]
        os.utime(path)  # used now: the last to be given up
    except (OSError, ValueError, KeyError, EOFError):
        return None
    return found


def _last_used(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0  # given up meanwhile by another process


def _candidates(hashes: np.ndarray) -> np.ndarray:
    """The pairs (i, j), i < j, of hashes at most MAX_HAMMING bits apart, as an (P, 2) array."""
    found = []
    for start in range(0, len(hashes), CHUNK_ROWS):
        block = hashes[start : start + CHUNK_ROWS]
        distance = np.bitwise_count(block[:, None] ^ hashes[None, start:])
        rows, cols = np.nonzero(distance <= MAX_HAMMING)
        above = cols > rows  # each pair once, never an image with itself
        found.append(np.stack([rows[above] + start, cols[above] + start], axis=1))
    return np.concatenate(found)


def _features_agree(first: list[str], second: list[str], features: Mapping[str, np.ndarray]) -> bool:
    """Whether a run's features of two images point the same way; True when they cover only one of them."""
    a = next((features[p] for p in first if p in features), None)
    b = next((features[p] for p in second if p in features), None)
    if a is None or b is None:
        return True
    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    norms = float(np.linalg.norm(a) * np.linalg.norm(b))
    return norms > 0 and float(a @ b) / norms >= MIN_FEATURE_SIMILARITY


def _clusters(count: int, candidates: np.ndarray, similarity: np.ndarray, confirmed: np.ndarray) -> list[list[int]]:
    """The near groups among `count` distinct images: complete linkage over the confirmed pairs (most
    similar first, two groups join only if every two of their images were confirmed), each kept
    only if it stands out (`_stands_out`)."""
    matched = {(int(a), int(b)) for a, b in candidates[confirmed]}
    cluster = list(range(count))
    members: dict[int, list[int]] = {i: [i] for i in range(count)}
    for k in sorted(np.flatnonzero(confirmed).tolist(), key=lambda k: (-similarity[k], k)):
        a, b = (cluster[int(i)] for i in candidates[k])
        if a == b or not all((min(p, q), max(p, q)) in matched for p in members[a] for q in members[b]):
            continue
        for p in members[b]:
            cluster[p] = a
        members[a] += members.pop(b)
    groups = [sorted(found) for found in members.values() if len(found) > 1]
    if not groups:
        return []
    grouped = np.zeros(count, dtype=bool)
    grouped[[i for group in groups for i in group]] = True
    near = np.flatnonzero(grouped[candidates[:, 0]] | grouped[candidates[:, 1]])
    partners: dict[int, list[tuple[int, float, bool]]] = {}
    for k in near.tolist():
        a, b = (int(i) for i in candidates[k])
        partners.setdefault(a, []).append((b, float(similarity[k]), bool(confirmed[k])))
        partners.setdefault(b, []).append((a, float(similarity[k]), bool(confirmed[k])))
    return [group for group in groups if _stands_out(group, partners)]


def _stands_out(group: list[int], partners: dict[int, list[tuple[int, float, bool]]]) -> bool:
    """Whether the widest pair of `group` is at most GAP_RATIO as dissimilar as the closest image
    outside it (`partners`: each image's candidates, their similarity and whether confirmed). Images
    confirmed as the same picture as a member, but left out by the complete linkage, are not outside."""
    inside = set(group)
    linked = inside | {other for i in group for other, _, same in partners[i] if same}
    widest = 1 - min(score for i in group for other, score, _ in partners[i] if other in inside)
    closest = 1 - max((score for i in group for other, score, _ in partners[i] if other not in linked), default=0.0)
    return widest <= GAP_RATIO * closest


def _groups(
    entries: list[Entry], shas: list[str], candidates: np.ndarray, similarity: np.ndarray, confirmed: np.ndarray
) -> list[DuplicateGroup]:
    """The groups of two or more images: the same content, or a near group of distinct contents
    (`_clusters`) with all the copies of each."""
    index = {sha: i for i, sha in enumerate(shas)}
    members: dict[int, list[Entry]] = {}
    for entry in entries:
        members.setdefault(index[entry.sha256], []).append(entry)
    found = [
        [e for i in group for e in members[i]] for group in _clusters(len(shas), candidates, similarity, confirmed)
    ]
    grouped = {e.path for group in found for e in group}
    found += [same for same in members.values() if len(same) > 1 and same[0].path not in grouped]
    groups = []
    for group in found:
        group.sort(key=lambda e: e.path)
        kind = "exact" if len({e.sha256 for e in group}) == 1 else "near"
        groups.append(
            DuplicateGroup(
                kind,
                tuple(e.path for e in group),
                tuple(e.label for e in group),
                tuple(e.split for e in group),
                tuple(e.size for e in group),
            )
        )
    return groups


def _cache_folder(cache: Path) -> Path:
    return Path(cache) / CACHE_FOLDER / f"v{CACHE_VERSION}"


def _cached_rows(cache: Path, shas: list[str]) -> dict[str, np.void]:
    """The cached rows of these content hashes (kept in 256 files by the hashes' first two digits)."""
    wanted: dict[str, list[str]] = {}
    for sha in shas:
        wanted.setdefault(sha[:2], []).append(sha)
    rows: dict[str, np.void] = {}
    for prefix, some in wanted.items():
        shard = _read_shard(_cache_folder(cache) / f"{prefix}.npy")
        for row in shard[np.isin(shard["sha"], np.array(some, dtype="S64"))]:
            rows[row["sha"].decode("ascii")] = row
    return rows


def _read_shard(path: Path) -> np.ndarray:
    """One cache file's rows; none when it is missing or damaged (its images are decoded again)."""
    try:
        shard = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return np.zeros(0, dtype=_ROW)
    return shard if shard.dtype == _ROW else np.zeros(0, dtype=_ROW)


def _store_rows(cache: Path, made: np.ndarray) -> None:
    """Add new rows to their cache files, each rewritten whole (two writers at once lose rows, never
    corrupt a file: the lost ones are decoded again next time)."""
    folder = _cache_folder(cache)
    folder.mkdir(parents=True, exist_ok=True)
    prefixes = np.array([sha[:2] for sha in made["sha"].astype("U64")])
    for prefix in sorted(set(prefixes.tolist())):
        path = folder / f"{prefix}.npy"
        new = made[prefixes == prefix]
        old = _read_shard(path)
        merged = np.concatenate([old[~np.isin(old["sha"], new["sha"])], new])
        with atomic_write(path, "wb") as fh:
            np.save(fh, merged, allow_pickle=False)
