"""From the model's working-size probability to full-resolution masks and lesions.

The probability stays calibrated: it is only resampled, never rescaled per image, so a
threshold means the same on every photo and can be changed late (the viewer's slider).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np

from inference.preprocess import Geometry

#: Side of the square that joins working-grid candidates into windows (odd, at least 3).
GROUPING_PX = 15


@dataclass(frozen=True)
class Lesion:
    """One connected region of the thresholded map, in full-resolution pixels."""

    id: int  # 1-based, in order of decreasing area
    bbox: tuple[int, int, int, int]  # x, y, width, height
    area_px: int
    centroid: tuple[float, float]  # x, y
    max_probability: float
    mean_probability: float

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def probability_to_full(working: np.ndarray, geometry: Geometry) -> np.ndarray:
    """(S, S) working probability to (H, W) float32 at the photo's resolution, 0 outside the FOV."""
    p = np.where(geometry.fov_mask_working(), working.astype(np.float32, copy=False), np.float32(0))
    # Clipped before resampling: a bilinear mix of values in [0, 1] stays in [0, 1], and
    # clipping 1 MP is cheaper than clipping 12 MP.
    np.clip(p, 0.0, 1.0, out=p)
    return geometry.to_full(p, interpolation=cv2.INTER_LINEAR)


def lesions_at(
    working: np.ndarray,
    geometry: Geometry,
    threshold: float,
    min_area_px: int = 1,
    *,
    probability: np.ndarray | None = None,
) -> list[Lesion]:
    """A working-size map's lesions: the 8-connected components of its full-resolution map
    (`probability_to_full`) at `threshold`, those under `min_area_px` dropped.

    The one post-processing: a fresh prediction, one rebuilt from a cache and a threshold the
    reviewer moves all come here. `probability` is that full-resolution map when it is at
    hand, so it is not resampled again.
    """
    working = working.astype(np.float32, copy=False)
    if probability is None:
        probability = probability_to_full(working, geometry)
    return find_lesions_guided(probability, working, geometry, threshold, min_area_px)


def find_lesions(probability: np.ndarray, threshold: float, min_area_px: int = 1) -> list[Lesion]:
    """Connected components (8-connected) of probability >= threshold, smallest dropped."""
    # a bool array is bytes of 0 and 1 already: viewing it as uint8 spares a 12 MP copy
    mask = (probability >= threshold).view(np.uint8)
    return lesions_from_mask(mask, probability, min_area_px)


def find_lesions_guided(
    probability: np.ndarray,
    working: np.ndarray,
    geometry: Geometry,
    threshold: float,
    min_area_px: int = 1,
) -> list[Lesion]:
    """The same lesions as `find_lesions`, found only where the working map allows them.

    A bilinear sample is a weighted mean of its four working-grid neighbours, so a
    full-resolution pixel reaches the threshold only next to a working pixel that does.
    Labelling 12 MP costs ~50 ms even when empty; labelling the few small windows around
    working-grid candidates costs a few. Each full-resolution component is kept only by the
    window of the candidate region it belongs to, so overlapping windows count it once.
    """
    # The full-resolution map is zero outside the field of view (probability_to_full), whatever
    # the model said there: so are the candidates. Without this a model that leaves the black
    # corners unconstrained (its loss ignores them) turns them into one huge window.
    candidates = ((working >= threshold) & geometry.fov_mask_working()).astype(np.uint8)
    # A wider dilation than the one pixel the argument needs merges nearby candidates into one
    # window: fewer, larger windows label faster, and components still fall in exactly one.
    support = cv2.dilate(candidates, np.ones((GROUPING_PX, GROUPING_PX), np.uint8))
    count, wlabels, wstats, _ = cv2.connectedComponentsWithStats(support, connectivity=8)
    sx0, sy0, sx1, sy1 = geometry.source_rect()
    wx0, wy0, wx1, wy1 = geometry.working_rect()
    fx = (wx1 - wx0) / (sx1 - sx0)  # working pixels per full pixel, as to_full resampled
    fy = (wy1 - wy0) / (sy1 - sy0)
    # Windows pay off while candidates are sparse; once they cover a good part of the photo,
    # labelling it whole in one call is faster than many overlapping windows.
    if int(wstats[1:, cv2.CC_STAT_WIDTH] @ wstats[1:, cv2.CC_STAT_HEIGHT]) > 0.1 * support.size:
        return find_lesions(probability, threshold, min_area_px)
    found: list[tuple[int, tuple[int, int, int, int], tuple[float, float], float, float]] = []
    for k in range(1, count):
        x, y, w, h = (int(v) for v in wstats[k][:4])
        # the window in full-resolution pixels, a little wider than the candidate region
        x0 = max(sx0 + int(np.floor((x - wx0 - 1) / fx)), sx0)
        y0 = max(sy0 + int(np.floor((y - wy0 - 1) / fy)), sy0)
        x1 = min(sx0 + int(np.ceil((x + w - wx0 + 1) / fx)) + 1, sx1)
        y1 = min(sy0 + int(np.ceil((y + h - wy0 + 1) / fy)) + 1, sy1)
        if x1 <= x0 or y1 <= y0:
            continue
        window = probability[y0:y1, x0:x1]
        mask = (window >= threshold).view(np.uint8)
        n, labels, stats, centroids = label_components(mask)
        for i in range(1, n):
            bx, by, bw, bh, area = (int(v) for v in stats[i])
            if area < min_area_px:
                continue  # most components are specks: dropped before any per-pixel work
            inside = labels[by : by + bh, bx : bx + bw] == i
            # one pixel of the component tells which candidate region it belongs to
            py, px = np.argwhere(inside)[0]
            u = min(
                max(round((x0 + bx + px - sx0 + 0.5) * fx - 0.5) + wx0, 0), working.shape[1] - 1
            )
            v = min(
                max(round((y0 + by + py - sy0 + 0.5) * fy - 0.5) + wy0, 0), working.shape[0] - 1
            )
            if wlabels[v, u] != k:
                continue
            values = window[by : by + bh, bx : bx + bw][inside]
            centroid = (float(centroids[i][0]) + x0, float(centroids[i][1]) + y0)
            found.append(
                (
                    area,
                    (bx + x0, by + y0, bw, bh),
                    centroid,
                    float(values.max()),
                    float(values.mean()),
                )
            )
    return _numbered(found)


def lesions_from_mask(
    mask: np.ndarray, probability: np.ndarray | None, min_area_px: int = 1
) -> list[Lesion]:
    """Components of a binary mask; probabilities from `probability` when given (else 0)."""
    count, labels, stats, centroids = label_components(mask.astype(np.uint8, copy=False))
    found: list[tuple[int, tuple[int, int, int, int], tuple[float, float], float, float]] = []
    for i in range(1, count):
        x, y, w, h, area = (int(v) for v in stats[i])
        if area < min_area_px:
            continue
        if probability is not None:
            inside = labels[y : y + h, x : x + w] == i
            values = probability[y : y + h, x : x + w][inside]
            pmax, pmean = float(values.max()), float(values.mean())
        else:
            pmax = pmean = 0.0
        found.append(
            (area, (x, y, w, h), (float(centroids[i][0]), float(centroids[i][1])), pmax, pmean)
        )
    return _numbered(found)


def label_components(mask: np.ndarray) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
    """8-connected components with their statistics, as cv2.connectedComponentsWithStats.

    16-bit labels when they suffice: on a 12 MP photo that labels in 30 ms instead of 72
    (half the memory to write). OpenCV refuses, rather than wraps, past 65535 components;
    then 32-bit labels it is.
    """
    try:
        return cv2.connectedComponentsWithStats(mask, connectivity=8, ltype=cv2.CV_16U)
    except cv2.error:
        return cv2.connectedComponentsWithStats(mask, connectivity=8, ltype=cv2.CV_32S)


def _numbered(
    found: list[tuple[int, tuple[int, int, int, int], tuple[float, float], float, float]],
) -> list[Lesion]:
    """Lesions numbered 1.. in order of decreasing area (then top to bottom, left to right)."""
    found.sort(key=lambda t: (-t[0], t[1][1], t[1][0]))
    return [
        Lesion(
            id=n, bbox=bbox, area_px=area, centroid=c, max_probability=pmax, mean_probability=pmean
        )
        for n, (area, bbox, c, pmax, pmean) in enumerate(found, start=1)
    ]
