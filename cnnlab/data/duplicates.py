"""Duplicates and train/test leakage in a dataset version: the same picture twice, as groups.

Exact duplicates are images with the same content (the manifest's SHA-256, so they cost nothing).
Near-duplicates are the same picture re-encoded, resized, lightly cropped or recoloured. Each
distinct image is decoded once into a small thumbnail and a 64-bit perceptual hash (pHash: the
signs of the lowest frequencies of a 32x32 grayscale thumbnail's DCT); pairs of hashes a few bits
apart are candidates. Distinct pictures can have close hashes, so each candidate is confirmed on
the 16x16 colour thumbnails: what a recolouring can do (scale the luma, for brightness and
contrast; turn and scale the chroma, for hue and saturation) must turn one into the other, as
they are or with one of them cropped by up to a tenth of each edge. When a run's features of both
images are given, they must point the same way too. Images joined by confirmed pairs form a group
(connected components).

The hashes and thumbnails are kept in the cache folder by content hash, so a second look at the
same images, or at another version of them, decodes only the images it has not seen.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from cnnlab.common.files import atomic_write
from cnnlab.data import images
from cnnlab.data.edits import Exclude
from cnnlab.data.prepared import parallel_map
from cnnlab.data.scanning import or_reason
from cnnlab.data.versions import Dataset, Entry, file_changed

# The perceptual hash: the 8x8 lowest frequencies of a HASH_SIDE x HASH_SIDE thumbnail's DCT.
HASH_SIDE = 32
HASH_FREQUENCIES = 8
# Candidates: hashes at most this many bits apart (of 64; two unrelated pictures differ in about
# 32, a re-encoded or resized copy in 0-6, a recoloured or cropped one in up to about 20).
MAX_HAMMING = 18
# Confirmation, on THUMB_SIDE x THUMB_SIDE colour thumbnails: the share of each one's variance
# that a recolouring of the other explains (copies 0.94 or more, unrelated candidates below about
# 0.75; see bench/README.md), and the cosine similarity of a run's features, which only vetoes
# pairs the model sees clearly differently: a model's features are not made to tell a copy from
# a look-alike, and a recoloured or cropped copy moves them somewhat.
THUMB_SIDE = 16
MIN_SIMILARITY = 0.9
MIN_FEATURE_SIMILARITY = 0.8
# Pairs below this as they are are not searched for a crop; the search cuts up to MAX_CROP off
# each edge in steps of CROP_STEP.
MIN_SIMILARITY_UNCROPPED = 0.5
MAX_CROP = 0.1
CROP_STEP = 0.05
# A thumbnail whose colours vary less than this (out of 255) is flat: once normalised a flat picture
# matches every other, so it is only ever an exact duplicate; one whose chroma varies less is gray.
MIN_CONTRAST = 2.0
# Work in blocks: 256 rows of hash differences against 20,000 take 40 MB.
CHUNK_ROWS = 256
CHUNK_PAIRS = 8192
CHUNK_CROPPED = 128
# Luma (ITU-R 601, as Pillow's grayscale) and two chroma axes (as JPEG's YCbCr), from RGB.
_YCBCR = np.array([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]], np.float32)
CACHE_FOLDER = "image-hashes"
CACHE_VERSION = 1
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
    rows, decoded = _hashed(dataset, entries, shas, cache)
    readable = [sha for sha in shas if rows[sha]["ok"]]
    entries = [e for e in entries if rows[e.sha256]["ok"]]
    paths_of: dict[str, list[str]] = {}
    for entry in entries:
        paths_of.setdefault(entry.sha256, []).append(entry.path)
    pairs = _near_pairs(readable, rows, paths_of, features)
    groups = _groups(entries, readable, pairs)
    ordered = sorted(groups, key=lambda g: (not g.leak, not g.conflict, g.paths))
    return DuplicateReport(tuple(ordered), len(entries), decoded)


def _hashed(
    dataset: Dataset, entries: list[Entry], shas: list[str], cache: Path | None
) -> tuple[dict[str, np.void], int]:
    """Each content hash's row (perceptual hash, thumbnail, whether it decoded), from the cache or
    decoded now (and then cached); and how many images were decoded."""
    rows = _cached_rows(cache, shas) if cache is not None else {}
    missing = [sha for sha in shas if sha not in rows]
    if not missing:
        return rows, 0
    file_of = {e.sha256: dataset.image_path(e.path) for e in entries}
    made = np.zeros(len(missing), dtype=_ROW)
    made["sha"] = missing
    small = np.zeros((len(missing), HASH_SIDE, HASH_SIDE, 3), dtype=np.uint8)
    for i, (array, _reason) in enumerate(parallel_map(_thumbnail, [file_of[sha] for sha in missing])):
        if array is not None:
            small[i], made["ok"][i] = array, True
    made["hash"] = _perceptual_hashes(np.einsum("nyxc,c->nyx", small, _YCBCR[0]))
    quads = small.astype(np.uint16)  # each thumbnail pixel is the mean of 2x2 of the hash's, rounded
    made["thumb"] = (quads[:, ::2, ::2] + quads[:, 1::2, ::2] + quads[:, ::2, 1::2] + quads[:, 1::2, 1::2] + 2) // 4
    if cache is not None:
        _store_rows(cache, made)
    rows.update(zip(missing, made, strict=True))
    return rows, len(missing)


def _thumbnail(path: Path) -> tuple[np.ndarray | None, str | None]:
    """The HASH_SIDE x HASH_SIDE RGB thumbnail of an image file, or None and why it cannot be read."""

    def read() -> np.ndarray:
        rgb = images.to_color_mode(images.open_image(path, draft_size=HASH_SIDE), "rgb")
        # BOX averages every pixel in, so a re-encode or a resize moves the thumbnail very little.
        return np.asarray(rgb.resize((HASH_SIDE, HASH_SIDE), Image.Resampling.BOX), dtype=np.uint8)

    return or_reason(read)


def _perceptual_hashes(gray: np.ndarray) -> np.ndarray:
    """The 64-bit pHash (uint64) of each grayscale thumbnail of `gray` (N, HASH_SIDE, HASH_SIDE):
    bit k is set where the k-th of the 8x8 lowest DCT frequencies is above their median."""
    basis = _dct_basis(HASH_SIDE)[:HASH_FREQUENCIES]
    low = np.einsum("fi,nij,gj->nfg", basis, gray, basis, optimize=True).reshape(len(gray), -1)
    bits = low > np.median(low, axis=1, keepdims=True)
    return np.packbits(bits, axis=1).view(">u8").ravel().astype(np.uint64)


@functools.cache
def _dct_basis(side: int) -> np.ndarray:
    """The orthonormal DCT-II matrix of size `side` (rows: frequencies)."""
    n = np.arange(side)
    basis = np.cos(math.pi * (2 * n[None, :] + 1) * n[:, None] / (2 * side)) * math.sqrt(2 / side)
    basis[0] /= math.sqrt(2)
    return basis.astype(np.float32)


def _near_pairs(
    shas: list[str],
    rows: dict[str, np.void],
    paths_of: dict[str, list[str]],
    features: Mapping[str, np.ndarray] | None,
) -> list[tuple[int, int]]:
    """The pairs (indices into `shas`) of distinct images that are the same picture."""
    if len(shas) < 2:
        return []
    candidates = _candidates(np.array([rows[sha]["hash"] for sha in shas], dtype=np.uint64))
    if not len(candidates):
        return []
    used = np.unique(candidates)
    position = np.zeros(len(shas), dtype=np.int64)
    position[used] = np.arange(len(used))
    thumbs = np.stack([rows[shas[i]]["thumb"] for i in used]).astype(np.float32)
    confirmed = _confirmed(thumbs, position[candidates[:, 0]], position[candidates[:, 1]])
    pairs = [(int(a), int(b)) for a, b in candidates[confirmed]]
    if features:
        pairs = [(a, b) for a, b in pairs if _features_agree(paths_of[shas[a]], paths_of[shas[b]], features)]
    return pairs


@dataclass(frozen=True)
class _Colours:
    """Thumbnails as a recolouring sees them: luma and chroma (complex numbers, the hue their angle),
    each less its mean and scaled to unit length, the luma's share of the variance, and which
    thumbnails are gray (chroma too weak to compare) or flat (nothing to compare)."""

    luma: np.ndarray
    chroma: np.ndarray
    luma_share: np.ndarray
    gray: np.ndarray
    flat: np.ndarray

    @classmethod
    def of(cls, thumbs: np.ndarray) -> _Colours:
        """The colours of RGB thumbnails (N, side, side, 3)."""
        count = len(thumbs)
        # One (pixels x 3) @ (3 x 3) product, then each channel as a contiguous (N, pixels) array.
        ycbcr = (thumbs.reshape(-1, 3).astype(np.float32) @ _YCBCR.T).reshape(count, -1, 3).transpose(2, 0, 1)
        luma, blue, red = (channel - channel.mean(axis=1, keepdims=True) for channel in ycbcr)
        chroma = np.empty(luma.shape, dtype=np.complex64)
        chroma.real, chroma.imag = blue, red
        luma_energy = np.einsum("pn,pn->p", luma, luma)
        chroma_energy = np.einsum("pn,pn->p", blue, blue) + np.einsum("pn,pn->p", red, red)
        weak = MIN_CONTRAST**2 * luma.shape[1]
        return cls(
            luma / np.sqrt(np.maximum(luma_energy, 1e-6))[:, None],
            chroma / np.sqrt(np.maximum(chroma_energy, 1e-6))[:, None],
            luma_energy / np.maximum(luma_energy + chroma_energy, 1e-6),
            chroma_energy < weak,
            luma_energy + chroma_energy < weak,
        )

    def take(self, index: np.ndarray) -> _Colours:
        """The colours of the thumbnails at `index`."""
        return _Colours(
            self.luma[index], self.chroma[index], self.luma_share[index], self.gray[index], self.flat[index]
        )


def _similarity(a: _Colours, b: _Colours) -> np.ndarray:
    """For pairs of thumbnails (row i of `a` with row i of `b`): the share of each one's variance that
    a recolouring of the other explains, the smaller of the two (luma only when one is gray)."""
    luma = np.square(np.maximum(np.einsum("pn,pn->p", a.luma, b.luma), 0))
    chroma = np.square(np.abs(np.einsum("pn,pn->p", np.conj(a.chroma), b.chroma)))
    both = np.minimum(
        a.luma_share * luma + (1 - a.luma_share) * chroma, b.luma_share * luma + (1 - b.luma_share) * chroma
    )
    return np.where(a.flat | b.flat, 0.0, np.where(a.gray | b.gray, luma, both))


def _confirmed(thumbs: np.ndarray, first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Which pairs (`first[i]`, `second[i]`: indices into `thumbs`) are the same picture, as they are
    or once one of them is cropped to fit the other."""
    colours = _Colours.of(thumbs)
    similarity = np.concatenate(
        [
            _similarity(
                colours.take(first[start : start + CHUNK_PAIRS]), colours.take(second[start : start + CHUNK_PAIRS])
            )
            for start in range(0, len(first), CHUNK_PAIRS)
        ]
    )
    confirmed = similarity >= MIN_SIMILARITY
    unsure = np.flatnonzero(~confirmed & (similarity >= MIN_SIMILARITY_UNCROPPED))
    for start in range(0, len(unsure), CHUNK_CROPPED):
        pairs = unsure[start : start + CHUNK_CROPPED]
        confirmed[pairs] = _cropped_similarity(thumbs, colours, first[pairs], second[pairs]) >= MIN_SIMILARITY
    return confirmed


def _cropped_similarity(thumbs: np.ndarray, colours: _Colours, first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """`_similarity` of each pair once one of the two is cropped to fit the other best (either one,
    every crop `_crop_matrices` makes)."""
    best = np.zeros(len(first), dtype=np.float32)
    for cropped, other in ((first, second), (second, first)):
        crops = _crops(thumbs[cropped])
        variants = crops.shape[1]
        similarity = _similarity(
            _Colours.of(crops.reshape(-1, *crops.shape[2:])), colours.take(np.repeat(other, variants))
        )
        best = np.maximum(best, similarity.reshape(len(cropped), variants).max(axis=1))
    return best


def _crops(thumbs: np.ndarray) -> np.ndarray:
    """Every crop of each thumbnail (N, side, side, 3) that the search tries, resized back to the
    thumbnail's side: (N, crops, side, side, 3)."""
    matrices = _crop_matrices()
    rows = np.einsum("vyi,pixc->pvyxc", matrices, thumbs, optimize=True)
    both = np.einsum("pvyjc,wxj->pvwyxc", rows, matrices, optimize=True)
    return both.reshape(len(thumbs), -1, *thumbs.shape[1:])


@functools.cache
def _crop_matrices() -> np.ndarray:
    """The linear maps from a row (or column) of a thumbnail's pixels to the same row of a crop of it
    resized back (bilinear): one (side, side) matrix per pair of shares cut off the two ends."""
    cuts = np.arange(0.0, MAX_CROP + 1e-9, CROP_STEP)
    index = np.arange(THUMB_SIDE)
    matrices = []
    for start, end in itertools.product(cuts, cuts):
        centres = start + (index + 0.5) / THUMB_SIDE * (1 - start - end)
        source = np.clip(centres * THUMB_SIDE - 0.5, 0, THUMB_SIDE - 1)
        low = np.floor(source).astype(int)
        matrix = np.zeros((THUMB_SIDE, THUMB_SIDE), dtype=np.float32)
        np.add.at(matrix, (index, low), 1 - (source - low))
        np.add.at(matrix, (index, np.minimum(low + 1, THUMB_SIDE - 1)), source - low)
        matrices.append(matrix)
    return np.stack(matrices)


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


def _groups(entries: list[Entry], shas: list[str], pairs: list[tuple[int, int]]) -> list[DuplicateGroup]:
    """The connected components of two or more images: same content, or joined by near pairs."""
    parent = list(range(len(shas)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, b in pairs:
        parent[root(a)] = root(b)
    index = {sha: i for i, sha in enumerate(shas)}
    members: dict[int, list[Entry]] = {}
    for entry in entries:
        members.setdefault(root(index[entry.sha256]), []).append(entry)
    groups = []
    for found in members.values():
        if len(found) < 2:
            continue
        found.sort(key=lambda e: e.path)
        kind = "exact" if len({e.sha256 for e in found}) == 1 else "near"
        groups.append(
            DuplicateGroup(
                kind,
                tuple(e.path for e in found),
                tuple(e.label for e in found),
                tuple(e.split for e in found),
                tuple(e.size for e in found),
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
