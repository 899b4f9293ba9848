"""Duplicates and train/test leakage in a dataset version: the same picture twice, as groups.

Exact duplicates are images with the same content (the manifest's SHA-256, so they cost nothing).
Near-duplicates are the same picture re-encoded, resized, lightly cropped or recoloured. Each
distinct image is decoded once into a small thumbnail and a 64-bit perceptual hash (pHash: the
signs of the lowest frequencies of a 32x32 grayscale thumbnail's DCT); pairs of hashes a few bits
apart are candidates. Distinct pictures can have close hashes, so each candidate is confirmed on
32x32 colour thumbnails: what a recolouring can do (scale the luma, for brightness and contrast;
turn the chroma a little and scale it, for hue and saturation) must turn one into the other, in
their broad colours and in their small detail, as they are or with one of them cropped by up to a
twentieth of each edge. When a run's features of both images are given, they must point the same
way too. An image joins the group of the first image (by content hash) it is confirmed against,
so a group never chains look-alikes; images with the same content are always one group.

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
# 32, a re-encoded or resized copy in 0-4, a recoloured one in up to 14, a cropped one in up to 16).
MAX_HAMMING = 16
# Confirmation, on THUMB_SIDE x THUMB_SIDE colour thumbnails: the share of each one's variance
# that a recolouring of the other explains (copies 0.92 or more as they are, or once the crop is
# found), and the same share for their detail (each less its DETAIL_WINDOW-pixel box blur): two
# pictures alike only in layout and colour (a big pale disc on a dark ground, as the built-in
# sample has hundreds of) differ in their small things, which a copy keeps (copies 0.87 or more,
# the sample's look-alikes 0.85 at most). Measured on tests/helpers.py's planted copies and the
# built-in sample; see bench/README.md.
THUMB_SIDE = 32
MIN_SIMILARITY = 0.9
DETAIL_WINDOW = 9
MIN_DETAIL_SIMILARITY = 0.86
# The largest turn of the hues a recolouring may make (the planted recolouring turns them 15 degrees).
MAX_HUE_TURN = math.radians(30)
# Pairs below MIN_SIMILARITY_UNCROPPED as they are (cropped copies 0.76 or more) are not searched
# for a crop; the search cuts up to MAX_CROP off each edge in steps of CROP_STEP. A crop it finds
# must match in detail more closely (cropped copies 0.96 or more): its freedom to shift and scale
# lines up two look-alike discs of the sample otherwise (0.89 in detail at best).
MIN_SIMILARITY_UNCROPPED = 0.75
MAX_CROP = 0.05
CROP_STEP = 0.05
MIN_CROPPED_DETAIL = 0.93
# A run's features only veto pairs the model sees clearly differently: a model's features are not
# made to tell a copy from a look-alike, and a recoloured or cropped copy moves them somewhat.
MIN_FEATURE_SIMILARITY = 0.8
# A thumbnail whose colours vary less than this (out of 255) is flat: once normalised a flat picture
# matches every other, so it is only ever an exact duplicate; one whose chroma varies less is gray.
MIN_CONTRAST = 2.0
# Work in blocks: 256 rows of hash differences against 20,000 take 40 MB.
CHUNK_ROWS = 256
CHUNK_PAIRS = 8192
CHUNK_CROPPED = 128
CHUNK_THUMBS = 1024
# Luma (ITU-R 601, as Pillow's grayscale) and two chroma axes (as JPEG's YCbCr), from RGB.
_YCBCR = np.array([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]], np.float32)
CACHE_FOLDER = "image-hashes"
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
    made["thumb"] = small
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
    thumbs = np.stack([rows[shas[i]]["thumb"] for i in used])  # uint8: each use converts its block
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

    @classmethod
    def joined(cls, parts: list[_Colours]) -> _Colours:
        """The colours of several blocks of thumbnails, in order."""
        return cls(*(np.concatenate([getattr(p, name) for p in parts]) for name in cls.__dataclass_fields__))

    def take(self, index: np.ndarray) -> _Colours:
        """The colours of the thumbnails at `index`."""
        return _Colours(
            self.luma[index], self.chroma[index], self.luma_share[index], self.gray[index], self.flat[index]
        )


def _similarity(a: _Colours, b: _Colours) -> np.ndarray:
    """For pairs of thumbnails (row i of `a` with row i of `b`): the share of each one's variance that
    a recolouring of the other explains, the smaller of the two (luma only when one is gray)."""
    luma = np.square(np.maximum(np.einsum("pn,pn->p", a.luma, b.luma), 0))
    inner = np.einsum("pn,pn->p", np.conj(a.chroma), b.chroma)
    # A recolouring turns hues a little; a beige disc and a violet one are two pictures.
    turn = np.maximum(np.abs(np.angle(inner)) - MAX_HUE_TURN, 0)
    chroma = np.square(np.maximum(np.abs(inner) * np.cos(turn), 0))
    both = np.minimum(
        a.luma_share * luma + (1 - a.luma_share) * chroma, b.luma_share * luma + (1 - b.luma_share) * chroma
    )
    return np.where(a.flat | b.flat, 0.0, np.where(a.gray | b.gray, luma, both))


def _confirmed(thumbs: np.ndarray, first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Which pairs (`first[i]`, `second[i]`: indices into `thumbs`) are the same picture, as they are
    or once one of them is cropped to fit the other: alike in colours and in detail."""
    # In blocks: the detail's box blur of 20,000 thumbnails at once takes gigabytes.
    blocks = [thumbs[start : start + CHUNK_THUMBS] for start in range(0, len(thumbs), CHUNK_THUMBS)]
    colours = _Colours.joined([_Colours.of(block) for block in blocks])
    details = _Colours.joined([_Colours.of(_detail(block)) for block in blocks])
    similarity, score = (
        np.concatenate(parts)
        for parts in zip(
            *(
                _scores(colours, details, first[start : start + CHUNK_PAIRS], second[start : start + CHUNK_PAIRS])
                for start in range(0, len(first), CHUNK_PAIRS)
            ),
            strict=True,
        )
    )
    confirmed = score >= 0
    unsure = np.flatnonzero(~confirmed & (similarity >= MIN_SIMILARITY_UNCROPPED))
    halves = _halve(thumbs)
    search = (
        halves,
        _Colours.joined([_Colours.of(b) for b in np.array_split(halves, max(1, len(halves) // CHUNK_THUMBS))]),
        thumbs,
        colours,
        details,
    )
    for start in range(0, len(unsure), CHUNK_CROPPED):
        pairs = unsure[start : start + CHUNK_CROPPED]
        confirmed[pairs] = _cropped_score(search, first[pairs], second[pairs]) >= 0
    return confirmed


def _scores(
    colours: _Colours, details: _Colours, first: np.ndarray, second: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """For pairs: the colour similarity, and the margin by which both it and the detail's similarity
    clear their thresholds (negative: they do not)."""
    similarity = _similarity(colours.take(first), colours.take(second))
    detail = _similarity(details.take(first), details.take(second))
    return similarity, np.minimum(similarity - MIN_SIMILARITY, detail - MIN_DETAIL_SIMILARITY)


def _cropped_score(
    search: tuple[np.ndarray, _Colours, np.ndarray, _Colours, _Colours], first: np.ndarray, second: np.ndarray
) -> np.ndarray:
    """`_scores`' margin of each pair once one of the two is cropped to fit the other best (either one).

    The best of every crop `_crop_matrices` makes is found on half-size thumbnails by colour alone,
    then scored on the full-size ones, colours and detail: a search on full-size thumbnails with
    their detail costs some forty times more and finds the same crops. `search` holds the half-size
    thumbnails and their colours, then the full-size thumbnails, their colours and their detail's."""
    halves, half_colours, thumbs, colours, details = search
    best = np.full(len(first), -1.0, dtype=np.float32)
    for cropped, other in ((first, second), (second, first)):
        crops = _crops(halves[cropped])
        variants = crops.shape[1]
        similarity = _similarity(
            _Colours.of(crops.reshape(-1, *crops.shape[2:])), half_colours.take(np.repeat(other, variants))
        )
        chosen = similarity.reshape(len(cropped), variants).argmax(axis=1)
        fitted = _crop(thumbs[cropped], chosen)
        fitted_similarity = _similarity(_Colours.of(fitted), colours.take(other))
        detail = _similarity(_Colours.of(_detail(fitted)), details.take(other))
        best = np.maximum(best, np.minimum(fitted_similarity - MIN_SIMILARITY, detail - MIN_CROPPED_DETAIL))
    return best


def _halve(thumbs: np.ndarray) -> np.ndarray:
    """Thumbnails at half their side (each pixel the mean of 2x2), as float32."""
    t = thumbs.astype(np.float32)
    return (t[:, ::2, ::2] + t[:, 1::2, ::2] + t[:, ::2, 1::2] + t[:, 1::2, 1::2]) / 4


def _crop(thumbs: np.ndarray, variants: np.ndarray) -> np.ndarray:
    """Thumbnail i cropped as `_crops` makes its variant `variants[i]`, resized back to its side."""
    matrices = _crop_matrices(thumbs.shape[1])
    rows, cols = np.divmod(variants, len(matrices))
    cut = np.einsum("pyi,pixc->pyxc", matrices[rows], thumbs.astype(np.float32), optimize=True)
    return np.einsum("pyjc,pxj->pyxc", cut, matrices[cols], optimize=True)


def _detail(thumbs: np.ndarray) -> np.ndarray:
    """Each thumbnail less its DETAIL_WINDOW x DETAIL_WINDOW box blur (edges repeated), plus mid-gray."""
    half = DETAIL_WINDOW // 2
    padded = np.pad(thumbs.astype(np.float32), ((0, 0), (half + 1, half), (half + 1, half), (0, 0)), mode="edge")
    padded[:, 0, :, :] = 0
    padded[:, :, 0, :] = 0
    sums = padded.cumsum(axis=1).cumsum(axis=2)
    w = DETAIL_WINDOW
    box = sums[:, w:, w:] - sums[:, :-w, w:] - sums[:, w:, :-w] + sums[:, :-w, :-w]
    return thumbs.astype(np.float32) - box / (w * w) + 128


def _crops(thumbs: np.ndarray) -> np.ndarray:
    """Every crop of each thumbnail (N, side, side, 3) that the search tries, resized back to the
    thumbnail's side: (N, crops, side, side, 3)."""
    matrices = _crop_matrices(thumbs.shape[1])
    rows = np.einsum("vyi,pixc->pvyxc", matrices, thumbs, optimize=True)
    both = np.einsum("pvyjc,wxj->pvwyxc", rows, matrices, optimize=True)
    return both.reshape(len(thumbs), -1, *thumbs.shape[1:])


@functools.cache
def _crop_matrices(side: int) -> np.ndarray:
    """The linear maps from a row (or column) of a thumbnail's pixels to the same row of a crop of it
    resized back (bilinear): one (side, side) matrix per pair of shares cut off the two ends."""
    cuts = np.arange(0.0, MAX_CROP + 1e-9, CROP_STEP)
    index = np.arange(side)
    matrices = []
    for start, end in itertools.product(cuts, cuts):
        centres = start + (index + 0.5) / side * (1 - start - end)
        source = np.clip(centres * side - 0.5, 0, side - 1)
        low = np.floor(source).astype(int)
        matrix = np.zeros((side, side), dtype=np.float32)
        np.add.at(matrix, (index, low), 1 - (source - low))
        np.add.at(matrix, (index, np.minimum(low + 1, side - 1)), source - low)
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
    """Groups of two or more images: the same content, or near copies of the group's first image.

    Each image joins the group of the first image (in content-hash order) it is a near copy of, so
    a group never chains look-alikes: every image in it matches its first image itself."""
    neighbours: dict[int, set[int]] = {}
    for a, b in pairs:
        neighbours.setdefault(a, set()).add(b)
        neighbours.setdefault(b, set()).add(a)
    leader = list(range(len(shas)))
    assigned = set()
    for i in range(len(shas)):
        if i in assigned:
            continue
        for j in sorted(neighbours.get(i, ())):
            if j > i and j not in assigned:
                leader[j] = i
                assigned.add(j)
    index = {sha: i for i, sha in enumerate(shas)}
    members: dict[int, list[Entry]] = {}
    for entry in entries:
        members.setdefault(leader[index[entry.sha256]], []).append(entry)
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
