"""From the model's working-size probability to full-resolution masks and lesions.

The probability stays calibrated: it is only resampled, never rescaled per image, so a
threshold means the same on every photo and can be changed late (the viewer's slider).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np

from inference.preprocess import Geometry


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
    full = geometry.to_full(p, interpolation=cv2.INTER_LINEAR)
    # Bilinear resampling of values in [0, 1] stays in [0, 1]; clip guards float rounding.
    np.clip(full, 0.0, 1.0, out=full)
    return full


def find_lesions(probability: np.ndarray, threshold: float, min_area_px: int = 1) -> list[Lesion]:
    """Connected components (8-connected) of probability >= threshold, smallest dropped."""
    mask = (probability >= threshold).astype(np.uint8)
    return lesions_from_mask(mask, probability, min_area_px)


def lesions_from_mask(
    mask: np.ndarray, probability: np.ndarray | None, min_area_px: int = 1
) -> list[Lesion]:
    """Components of a binary mask; probabilities from `probability` when given (else 0)."""
    mask8 = mask.astype(np.uint8, copy=False)
    count, labels, stats, centroids = cv2.connectedComponentsWithStats(
        mask8, connectivity=8, ltype=cv2.CV_32S
    )
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
    found.sort(key=lambda t: (-t[0], t[1][1], t[1][0]))
    return [
        Lesion(
            id=n, bbox=bbox, area_px=area, centroid=c, max_probability=pmax, mean_probability=pmean
        )
        for n, (area, bbox, c, pmax, pmean) in enumerate(found, start=1)
    ]
