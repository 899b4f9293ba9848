"""Whether two small thumbnails show the same picture: re-encoded, resized, lightly cropped or recoloured.

The tests `cnnlab.data.duplicates` runs on each pair of images whose perceptual hashes are close:

- coarse: on 16x16 thumbnails, a recolouring of one (luma scaled and shifted, for brightness and
  contrast; chroma turned and scaled about gray, for hue and saturation) must explain the other,
  as they are or with one of them cropped by up to a tenth of each edge;
- fine: on the 32x32 thumbnails (the crop applied), the same recolouring must still explain them,
  and their finest detail (edges, grain, clutter) must agree as well as a copy's does.
"""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from cnnlab.data import images
from cnnlab.data.scanning import or_reason

# Each image is decoded once into a THUMB_SIDE x THUMB_SIDE colour thumbnail ; its perceptual
# hash is the signs of the HASH_FREQUENCIES x HASH_FREQUENCIES lowest frequencies of its luma's DCT.
THUMB_SIDE = 32
HASH_FREQUENCIES = 8

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
# A thumbnail whose colours vary less than this (out of 255) is flat: once normalised a flat picture
# matches every other, so it is only ever an exact duplicate; one whose chroma is weaker is gray.
MIN_CONTRAST = 2.0
# Work in blocks of pairs, so memory stays bounded for tens of thousands of images.
CHUNK_PAIRS = 8192
CHUNK_CROPPED = 1024
# Luma (ITU-R 601, as Pillow's grayscale) and two chroma axes (as JPEG's YCbCr), from RGB.
_YCBCR = np.array([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]], np.float32)


def thumbnail(path: Path) -> tuple[np.ndarray | None, str | None]:
    """The THUMB_SIDE x THUMB_SIDE RGB thumbnail of an image file, or None and why it cannot be read."""

    def read() -> np.ndarray:
        rgb = images.to_color_mode(images.open_image(path, draft_size=THUMB_SIDE), "rgb")
        # BOX averages every pixel in, so a re-encode or a resize moves the thumbnail very little.
        return np.asarray(rgb.resize((THUMB_SIDE, THUMB_SIDE), Image.Resampling.BOX), dtype=np.uint8)

    return or_reason(read)


def perceptual_hashes(gray: np.ndarray) -> np.ndarray:
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


def luma(thumbs: np.ndarray) -> np.ndarray:
    """The luma of RGB thumbnails (..., 3) as float32 (...), with no float copy of them made."""
    return np.einsum("...c,c->...", thumbs, _YCBCR[0])


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


def coarse_thumbnails(thumbs: list[np.ndarray]) -> np.ndarray:
    """The COARSE_SIDE x COARSE_SIDE versions (float32) of cached thumbnails: each pixel the mean of
    2x2 of theirs. Made in blocks, to hold no second copy of them all."""
    coarse = np.empty((len(thumbs), COARSE_SIDE, COARSE_SIDE, 3), dtype=np.float32)
    for start in range(0, len(thumbs), CHUNK_PAIRS):
        block = np.stack(thumbs[start : start + CHUNK_PAIRS]).astype(np.float32)
        coarse[start : start + len(block)] = (
            block[:, ::2, ::2] + block[:, 1::2, ::2] + block[:, ::2, 1::2] + block[:, 1::2, 1::2]
        ) / 4
    return coarse


def coarse_similarity(coarse: np.ndarray, first: np.ndarray, second: np.ndarray) -> tuple[np.ndarray, _Crops]:
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
    views = _CropViews.of(luma(coarse[involved]))
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


def fine_match(first: np.ndarray, second: np.ndarray, crops: _Crops) -> np.ndarray:
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
    return recoloured & _detail_agrees(luma(first), luma(second))


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
