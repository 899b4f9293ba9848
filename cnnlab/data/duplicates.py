"""Duplicates and train/test leakage in a dataset version: the same picture twice, as groups.

Exact duplicates are images with the same content (the manifest's SHA-256, so they cost nothing).
Near-duplicates are the same picture re-encoded, resized, lightly cropped or recoloured. Each
distinct image is decoded once into a 32x32 colour thumbnail and a 64-bit perceptual hash (pHash:
the signs of the lowest frequencies of the thumbnail's grayscale DCT); pairs of hashes a few bits
apart are candidates. Distinct pictures alike in layout (a big light shape on a dark background)
have close hashes too, so each candidate must pass three checks:

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

# Each image is decoded once into a THUMB_SIDE x THUMB_SIDE colour thumbnail (cached); its perceptual
# hash is the signs of the HASH_FREQUENCIES x HASH_FREQUENCIES lowest frequencies of its luma's DCT.
THUMB_SIDE = 32
HASH_FREQUENCIES = 8
# Candidates: hashes at most this many bits apart (of 64; two unrelated photos differ in about 32,
# a re-encoded or resized copy in 0-8, a recoloured or cropped one in up to about 20; but pictures
# of the built-in sample alike in layout differ in as few as none).
MAX_HAMMING = 18
# Confirmation: the share of each thumbnail's energy that a recolouring of the other explains,
# first on COARSE_SIDE x COARSE_SIDE thumbnails, then on the cached THUMB_SIDE x THUMB_SIDE ones
# (copies 0.91 or more on both; but look-alikes of the built-in sample reach 0.975 on the first
# and 0.96 on the second, hence the detail check). Pairs below MIN_SIMILARITY_UNCROPPED as they are
# are not searched for a crop; the search cuts up to MAX_CROP off each edge in CROP_STEP steps.
COARSE_SIDE = 16
MIN_SIMILARITY = 0.9
MIN_SIMILARITY_UNCROPPED = 0.5
MAX_CROP = 0.1
CROP_STEP = 0.05
# Fine detail: the luma DCT frequencies of at least DETAIL_FREQUENCY cycles across the thumbnail.
# A pair's "equivalent noise" is the noise that would lower their correlation as much: a copy's
# is that of its re-encoding or resampling (3.5 grey levels or less for 391 of the bench's 393
# copies, two JPEG re-encodings 5.1), a look-alike's comes of its own clutter, grain and edges (4.0
# or more for every candidate of seven built-in samples of 2,400 pictures). So the correlation must
# reach s^2 / (s^2 + DETAIL_NOISE^2), s being the detail's RMS: little for smooth pictures, whose
# finest detail is mostly such noise anyway, a close match for sharp ones.
DETAIL_FREQUENCY = 12
DETAIL_NOISE = 3.8
# A near group is kept only if its widest pair's dissimilarity (1 - similarity) is at most GAP_RATIO
# times that of the closest image outside it: 0.11 or less for the bench's copies, 0.47 or more for
# the built-in sample's look-alikes, which come in crowds (a backstop: none passes the checks).
GAP_RATIO = 0.5
# A run's features only veto pairs the model sees clearly differently: a model's features are not
# made to tell a copy from a look-alike, and a recoloured or cropped copy moves them somewhat.
MIN_FEATURE_SIMILARITY = 0.8
# A thumbnail whose colours vary less than this (out of 255) is flat: once normalised a flat picture
# matches every other, so it is only ever an exact duplicate; one whose chroma is weaker is gray.
MIN_CONTRAST = 2.0
# Work in blocks: 256 rows of hash differences against 20,000 take 40 MB.
CHUNK_ROWS = 256
CHUNK_PAIRS = 8192
CHUNK_CROPPED = 1024
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
    candidates, similarity, confirmed = _near_pairs(readable, rows, paths_of, features)
    groups = _groups(entries, readable, candidates, similarity, confirmed)
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
    for i, (array, _reason) in enumerate(parallel_map(_thumbnail, [file_of[sha] for sha in missing])):
        if array is not None:
            made["thumb"][i], made["ok"][i] = array, True
    made["hash"] = _perceptual_hashes(_luma(made["thumb"]))
    if cache is not None:
        _store_rows(cache, made)
    rows.update(zip(missing, made, strict=True))
    return rows, len(missing)


def _thumbnail(path: Path) -> tuple[np.ndarray | None, str | None]:
    """The THUMB_SIDE x THUMB_SIDE RGB thumbnail of an image file, or None and why it cannot be read."""

    def read() -> np.ndarray:
        rgb = images.to_color_mode(images.open_image(path, draft_size=THUMB_SIDE), "rgb")
        # BOX averages every pixel in, so a re-encode or a resize moves the thumbnail very little.
        return np.asarray(rgb.resize((THUMB_SIDE, THUMB_SIDE), Image.Resampling.BOX), dtype=np.uint8)

    return or_reason(read)


def _perceptual_hashes(gray: np.ndarray) -> np.ndarray:
    """The 64-bit pHash (uint64) of each grayscale thumbnail of `gray` (N, side, side): bit k is set
    where the k-th of the 8x8 lowest DCT frequencies is above their median."""
    basis = _dct_basis(gray.shape[1])[:HASH_FREQUENCIES]
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


def _luma(thumbs: np.ndarray) -> np.ndarray:
    """The luma of RGB thumbnails (..., 3) as float32 (...), with no float copy of them made."""
    return np.einsum("...c,c->...", thumbs, _YCBCR[0])


def _near_pairs(
    shas: list[str],
    rows: dict[str, np.void],
    paths_of: dict[str, list[str]],
    features: Mapping[str, np.ndarray] | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The candidate pairs (indices into `shas`, an (P, 2) array), each one's similarity on the coarse
    thumbnails, and which of them are the same picture."""
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
    similarity, crops = _coarse_similarity(_coarse_thumbnails([rows[shas[i]]["thumb"] for i in used]), first, second)
    confirmed = similarity >= MIN_SIMILARITY
    sure = np.flatnonzero(confirmed)
    for start in range(0, len(sure), CHUNK_CROPPED):
        pairs = sure[start : start + CHUNK_CROPPED]
        a, b = (np.stack([rows[shas[i]]["thumb"] for i in candidates[pairs, side]]) for side in (0, 1))
        confirmed[pairs] = _fine_match(a, b, crops.take(pairs))
    if features:
        for k in np.flatnonzero(confirmed):
            a, b = candidates[k]
            confirmed[k] = _features_agree(paths_of[shas[a]], paths_of[shas[b]], features)
    return candidates, similarity, confirmed


@dataclass(frozen=True)
class _Colours:
    """Thumbnails as a recolouring sees them: luma less its mean and chroma as it is (complex numbers,
    the hue their angle, gray at zero), each scaled to unit length, the luma's share of the energy,
    and which thumbnails are gray (chroma too weak to compare) or flat (nothing to compare)."""

    luma: np.ndarray
    chroma: np.ndarray
    luma_share: np.ndarray
    gray: np.ndarray
    flat: np.ndarray

    @classmethod
    def of(cls, thumbs: np.ndarray) -> _Colours:
        """The colours of RGB thumbnails (N, side, side, 3)."""
        rgb = np.asarray(thumbs, dtype=np.float32).reshape(len(thumbs), thumbs.shape[1] * thumbs.shape[2], 3)
        # Weighted sums of the three channels: NumPy's (pixels x 3) @ (3 x 3) product is far slower.
        luma, blue, red = (rgb[..., 0] * w[0] + rgb[..., 1] * w[1] + rgb[..., 2] * w[2] for w in _YCBCR)
        luma -= luma.mean(axis=1, keepdims=True)
        chroma = np.empty(luma.shape, dtype=np.complex64)
        chroma.real, chroma.imag = blue, red
        luma_energy = np.einsum("pn,pn->p", luma, luma)
        chroma_energy = np.einsum("pn,pn->p", blue, blue) + np.einsum("pn,pn->p", red, red)
        # Flat means no pattern at all: a uniform tint is no more a pattern than uniform gray.
        spread = np.square(blue.mean(axis=1)) + np.square(red.mean(axis=1))
        weak = MIN_CONTRAST**2 * luma.shape[1]
        return cls(
            luma / np.sqrt(np.maximum(luma_energy, 1e-6))[:, None],
            chroma / np.sqrt(np.maximum(chroma_energy, 1e-6))[:, None],
            luma_energy / np.maximum(luma_energy + chroma_energy, 1e-6),
            chroma_energy < weak,
            luma_energy + chroma_energy - spread * luma.shape[1] < weak,
        )

    def take(self, index: np.ndarray) -> _Colours:
        """The colours of the thumbnails at `index`."""
        return _Colours(
            self.luma[index], self.chroma[index], self.luma_share[index], self.gray[index], self.flat[index]
        )


def _similarity(a: _Colours, b: _Colours) -> np.ndarray:
    """For pairs of thumbnails (row i of `a` with row i of `b`): the share of each one's energy that
    a recolouring of the other explains, the smaller of the two (luma only when one is gray)."""
    luma = np.square(np.maximum(np.einsum("pn,pn->p", a.luma, b.luma), 0))
    chroma = np.square(np.abs(np.einsum("pn,pn->p", np.conj(a.chroma), b.chroma)))
    both = np.minimum(
        a.luma_share * luma + (1 - a.luma_share) * chroma, b.luma_share * luma + (1 - b.luma_share) * chroma
    )
    return np.where(a.flat | b.flat, 0.0, np.where(a.gray | b.gray, luma, both))


@dataclass(frozen=True)
class _Crops:
    """Which thumbnail of each pair is cropped (`of_second`), and how (a crop of `_cropped`, or -1 for
    neither)."""

    index: np.ndarray
    of_second: np.ndarray

    def take(self, pairs: np.ndarray) -> _Crops:
        """The crops of the pairs at `pairs`."""
        return _Crops(self.index[pairs], self.of_second[pairs])


def _coarse_thumbnails(thumbs: list[np.ndarray]) -> np.ndarray:
    """The COARSE_SIDE x COARSE_SIDE versions (float32) of cached thumbnails: each pixel the mean of
    2x2 of theirs. Made in blocks, to hold no second copy of them all."""
    coarse = np.empty((len(thumbs), COARSE_SIDE, COARSE_SIDE, 3), dtype=np.float32)
    for start in range(0, len(thumbs), CHUNK_PAIRS):
        block = np.stack(thumbs[start : start + CHUNK_PAIRS]).astype(np.float32)
        coarse[start : start + len(block)] = (
            block[:, ::2, ::2] + block[:, 1::2, ::2] + block[:, ::2, 1::2] + block[:, 1::2, 1::2]
        ) / 4
    return coarse


def _coarse_similarity(coarse: np.ndarray, first: np.ndarray, second: np.ndarray) -> tuple[np.ndarray, _Crops]:
    """Each pair's `_similarity` on the coarse thumbnails `coarse[first[i]]` and `coarse[second[i]]`,
    as they are or once one is cropped to fit the other, whichever is higher; and the crop that fits
    best (the fine check tries it as well as none)."""
    colours = _Colours.of(coarse)
    similarity = np.concatenate(
        [
            _similarity(
                colours.take(first[start : start + CHUNK_PAIRS]), colours.take(second[start : start + CHUNK_PAIRS])
            )
            for start in range(0, len(first), CHUNK_PAIRS)
        ]
    )
    crops = _Crops(np.full(len(first), -1), np.zeros(len(first), dtype=bool))
    # A lightly cropped copy can pass as it is on these thumbnails, but not on the fine ones.
    searched = np.flatnonzero(similarity >= MIN_SIMILARITY_UNCROPPED)
    if not len(searched):
        return similarity, crops
    involved = np.unique(np.concatenate([first[searched], second[searched]]))
    local = np.zeros(len(coarse), dtype=np.int64)
    local[involved] = np.arange(len(involved))
    views = _CropViews.of(_luma(coarse[involved]))
    for start in range(0, len(searched), CHUNK_CROPPED):
        pairs = searched[start : start + CHUNK_CROPPED]
        fitted = np.full(len(pairs), -np.inf)
        for of_second, (cropped, other) in enumerate(((first[pairs], second[pairs]), (second[pairs], first[pairs]))):
            # The crop is chosen on luma alone (a recolouring does not move edges), then scored in colour.
            best = views.correlations(local[cropped], local[other]).argmax(axis=1)
            scored = _similarity(_Colours.of(_cropped(coarse[cropped], best)), colours.take(other))
            better = (scored > fitted) & (best > 0)  # crop 0 cuts nothing
            fitted[better] = scored[better]
            crops.index[pairs[better]] = best[better]
            crops.of_second[pairs[better]] = bool(of_second)
        similarity[pairs] = np.maximum(similarity[pairs], fitted)
    return similarity, crops


@dataclass(frozen=True)
class _CropViews:
    """What the crop search needs of each luma thumbnail x, made once however many pairs it is in:
    with R_i the `_crop_matrices`, crop (i, j) of x is R_i x R_j^T, and its dot product with a
    thumbnail y is <R_i x, y R_j>, so `rows` holds each R_i x and `columns` each (y less its mean)
    R_j, flattened; `variance` is each crop's sum of squared deviations and `energy` the thumbnail's."""

    rows: np.ndarray
    columns: np.ndarray
    variance: np.ndarray
    energy: np.ndarray

    @classmethod
    def of(cls, luma: np.ndarray) -> _CropViews:
        """The views of luma thumbnails (N, side, side)."""
        count, side = len(luma), luma.shape[1]
        maps = _crop_matrices(side)
        centred = luma - luma.mean(axis=(1, 2), keepdims=True)
        rows = np.matmul(maps[None], luma[:, None])
        # Crop (i, j) sums to r_i^T x r_j (r: a map's column sums), its squares to <(R_i x)^T R_i x, R_j^T R_j>.
        sums = maps.sum(axis=1)
        total = np.matmul(np.matmul(sums, luma), sums.T)
        gram = np.matmul(rows.transpose(0, 1, 3, 2), rows).reshape(count, len(maps), -1)
        squares = np.matmul(gram, np.matmul(maps.transpose(0, 2, 1), maps).reshape(len(maps), -1).T)
        return cls(
            rows.reshape(count, len(maps), -1),
            np.matmul(centred[:, None], maps[None]).reshape(count, len(maps), -1),
            np.maximum(squares - np.square(total) / side**2, 0),
            np.einsum("pkl,pkl->p", centred, centred),
        )

    def correlations(self, cropped: np.ndarray, other: np.ndarray) -> np.ndarray:
        """The correlation of each crop of each thumbnail at `cropped`, resized back, with the one at
        `other`: (N, crops), in `_cropped`'s order."""
        cross = np.matmul(self.rows[cropped], self.columns[other].transpose(0, 2, 1))
        scale = np.sqrt(np.maximum(self.variance[cropped] * self.energy[other][:, None, None], 1e-6))
        return (cross / scale).reshape(len(cropped), -1)


def _cropped(thumbs: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Thumbnails (N, side, side, 3) each cropped by crop `index[i]` (i * maps + j: `_crop_matrices`
    i for its rows and j for its columns) and resized back."""
    maps = _crop_matrices(thumbs.shape[1])
    rows, columns = np.divmod(index, len(maps))
    return np.einsum(
        "pyi,pixc,pxj->pyjc", maps[rows], thumbs.astype(np.float32), maps[columns].transpose(0, 2, 1), optimize=True
    )


@functools.cache
def _crop_matrices(side: int) -> np.ndarray:
    """The linear maps from a row (or column) of a thumbnail's pixels to the same row of a crop of it
    resized back (bilinear): one (side, side) matrix per pair of shares cut off the two ends, up to
    MAX_CROP each in CROP_STEP steps, the first cutting nothing."""
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


def _fine_match(first: np.ndarray, second: np.ndarray, crops: _Crops) -> np.ndarray:
    """Which pairs of cached thumbnails (`first[i]`, `second[i]`) are the same picture as they are or
    with the coarse check's crop applied: a recolouring explains them, and their finest detail agrees."""
    a, b = first.astype(np.float32), second.astype(np.float32)
    match = _recoloured_in_detail(a, b)
    cut = np.flatnonzero(crops.index >= 0)
    if not len(cut):
        return match
    # No finer crop than the coarse search's is tried: aligning more closely aligns look-alikes too.
    flip = crops.of_second[cut][:, None, None, None]
    cropped, other = np.where(flip, b[cut], a[cut]), np.where(flip, a[cut], b[cut])
    match[cut] |= _recoloured_in_detail(_cropped(cropped, crops.index[cut]), other)
    return match


def _recoloured_in_detail(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Whether a recolouring explains RGB thumbnails `first[i]` and `second[i]` and their finest
    detail agrees (`_detail_agrees`)."""
    recoloured = _similarity(_Colours.of(first), _Colours.of(second)) >= MIN_SIMILARITY
    return recoloured & _detail_agrees(_luma(first), _luma(second))


def _detail_agrees(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Whether the finest detail (DCT frequencies of DETAIL_FREQUENCY cycles or more) of luma
    thumbnails `first[i]` and `second[i]` (N, side, side) agrees as well as a copy's does."""
    side = first.shape[1]
    basis = _dct_basis(side)
    frequency = np.arange(side)
    fine = np.hypot(frequency[:, None], frequency[None, :]) >= DETAIL_FREQUENCY
    a = np.einsum("fi,nij,gj->nfg", basis, first, basis, optimize=True)[:, fine]
    b = np.einsum("fi,nij,gj->nfg", basis, second, basis, optimize=True)[:, fine]
    energy_a, energy_b = np.einsum("nk,nk->n", a, a), np.einsum("nk,nk->n", b, b)
    agreement = np.einsum("nk,nk->n", a, b) / np.sqrt(np.maximum(energy_a * energy_b, 1e-6))
    strength = np.minimum(energy_a, energy_b) / fine.sum()  # mean square, in grey levels
    return agreement >= strength / (strength + DETAIL_NOISE**2)


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
