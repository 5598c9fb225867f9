"""False-positive components of out-of-fold predictions: found, classified by region and
size, counted into tables, and the lesion-level operating curve (false positives per photo
against lesion sensitivity). See training.fp_analysis."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from inference.preprocess import Geometry
from training.metrics import lesion_counts

#: Where a false positive can sit, in order of precedence; a component in none is "elsewhere".
REGIONS = ("fov_rim", "optic_disc", "macula", "vessels")
ELSEWHERE = "elsewhere"
CLASSES = (*REGIONS, ELSEWHERE)
CLASS_LABELS = {
    "fov_rim": "field-of-view rim band",
    "optic_disc": "optic disc and its rim",
    "macula": "macula",
    "vessels": "along vessels (approximate map)",
    ELSEWHERE: "elsewhere",
}
#: Lower edges of the size bins, full-resolution pixels (the last bin is open).
SIZE_EDGES = (0, 500, 1000, 2500, 10000)


@dataclass
class Component:
    """One predicted component (kept, i.e. at least min_area_px)."""

    photo: str
    area: int
    x: float  # centroid, full-resolution pixels
    y: float
    bbox: tuple[int, int, int, int]  # x, y, width, height
    max_probability: float
    false_positive: bool
    region: str = ELSEWHERE  # the first of REGIONS holding enough of it; "elsewhere" if none
    shares: dict[str, float] = field(default_factory=dict)  # region -> share of its pixels


def size_bin(area: int) -> str:
    """The size bin's label of a component of `area` pixels, e.g. "500-1000"."""
    edges = SIZE_EDGES
    for lo, hi in itertools.pairwise(edges):
        if area < hi:
            return f"{lo}-{hi}"
    return f">={edges[-1]}"


SIZE_LABELS = tuple(size_bin(e) for e in SIZE_EDGES)


# ----------------------------------------------------------------------------------------------
# Components


def classify_components(
    photo: str,
    probability: np.ndarray,
    target: np.ndarray,
    threshold: float,
    regions: dict[str, np.ndarray],
    *,
    min_area_px: int = 30,
    share: float = 0.5,
) -> list[Component]:
    """The kept predicted components of `probability >= threshold`, each marked false positive
    (touching no pixel of `target`) or not, and placed in the first region of REGIONS that holds
    at least `share` of its pixels."""
    predicted = (probability >= threshold).astype(np.uint8)
    n, labels, stats, centroids = cv2.connectedComponentsWithStats(
        predicted, connectivity=8, ltype=cv2.CV_32S
    )
    kept = [i for i in range(1, n) if stats[i, cv2.CC_STAT_AREA] >= min_area_px]
    if not kept:
        return []
    flat = labels.ravel()
    area = np.bincount(flat, minlength=n)
    hits = np.bincount(flat, weights=target.ravel().astype(np.float64), minlength=n)
    in_region = {
        name: np.bincount(flat, weights=mask.ravel().astype(np.float64), minlength=n) / area.clip(1)
        for name, mask in regions.items()
    }
    out: list[Component] = []
    for i in kept:
        shares = {name: float(values[i]) for name, values in in_region.items()}
        region = next((r for r in REGIONS if shares.get(r, 0.0) >= share), ELSEWHERE)
        x, y, w, h = (int(v) for v in stats[i, :4])
        box = (slice(y, y + h), slice(x, x + w))
        peak = float(probability[box][labels[box] == i].max())
        out.append(
            Component(
                photo=photo,
                area=int(stats[i, cv2.CC_STAT_AREA]),
                x=float(centroids[i, 0]),
                y=float(centroids[i, 1]),
                bbox=(x, y, w, h),
                max_probability=peak,
                false_positive=bool(hits[i] == 0),
                region=region,
                shares=shares,
            )
        )
    return out


def hard_negative_points(components: Sequence[Component], geometry: Geometry) -> list[list[int]]:
    """The false positives' centroids as (y, x) working pixels of `geometry`, for
    `hemaview-train finetune --hard-negatives` (training.patches.PatchSampler)."""
    s, last = geometry.scale, geometry.working_size - 1
    return [
        [
            int(np.clip(round((c.y - geometry.crop_y0) * s), 0, last)),
            int(np.clip(round((c.x - geometry.crop_x0) * s), 0, last)),
        ]
        for c in components
        if c.false_positive
    ]


def lesion_areas(target: np.ndarray) -> list[int]:
    """Areas of the annotated lesions (8-connected components), full-resolution pixels."""
    _, _, stats, _ = cv2.connectedComponentsWithStats(
        target.astype(np.uint8), connectivity=8, ltype=cv2.CV_32S
    )
    return [int(a) for a in stats[1:, cv2.CC_STAT_AREA]]


@dataclass
class CurvePoint:
    threshold: float
    fp_per_photo: float
    lesion_sensitivity: float
    predicted_per_photo: float


class OperatingCurve:
    """Lesion-level counts summed over photos, per threshold (the rule of training.metrics)."""

    def __init__(self, thresholds: Sequence[float], min_area_px: int = 30):
        self.thresholds = sorted({float(t) for t in thresholds})
        self.min_area_px = min_area_px
        self.fp = np.zeros(len(self.thresholds), np.int64)
        self.detected = np.zeros(len(self.thresholds), np.int64)
        self.predicted = np.zeros(len(self.thresholds), np.int64)
        self.lesions = 0
        self.photos = 0

    def add(self, probability: np.ndarray, target: np.ndarray) -> None:
        for i, t in enumerate(self.thresholds):
            counts = lesion_counts(probability >= t, target, self.min_area_px)
            self.fp[i] += counts.false_positives
            self.detected[i] += counts.detected
            self.predicted[i] += counts.n_predicted
            if i == 0:
                self.lesions += counts.n_lesions
        self.photos += 1

    def points(self) -> list[CurvePoint]:
        n = max(self.photos, 1)
        return [
            CurvePoint(
                threshold=t,
                fp_per_photo=float(self.fp[i]) / n,
                lesion_sensitivity=float(self.detected[i]) / self.lesions
                if self.lesions
                else math.nan,
                predicted_per_photo=float(self.predicted[i]) / n,
            )
            for i, t in enumerate(self.thresholds)
        ]


#: The issue's bar for the default threshold: at most this many false components per photo
#: with at least this lesion sensitivity (cross-validated).
BAR_FP_PER_PHOTO = 12.0
BAR_SENSITIVITY = 0.60


def operating_points(
    points: Sequence[CurvePoint],
    max_fp: float = BAR_FP_PER_PHOTO,
    min_sensitivity: float = BAR_SENSITIVITY,
) -> dict[str, CurvePoint | None]:
    """Where on the curve a reviewer's threshold could sit: the most sensitive point with at
    most `max_fp` false components per photo, the point with the fewest false components and
    at least `min_sensitivity`, and whether any point meets both (None where none does)."""
    few = [p for p in points if p.fp_per_photo <= max_fp]
    sensitive = [p for p in points if p.lesion_sensitivity >= min_sensitivity]
    both = [p for p in few if p.lesion_sensitivity >= min_sensitivity]
    return {
        "most_sensitive_within_fp": max(few, key=lambda p: (p.lesion_sensitivity, -p.threshold))
        if few
        else None,
        "fewest_fp_with_sensitivity": min(sensitive, key=lambda p: (p.fp_per_photo, p.threshold))
        if sensitive
        else None,
        "meets_bar": max(both, key=lambda p: p.lesion_sensitivity) if both else None,
    }


# ----------------------------------------------------------------------------------------------
# Tables


def region_table(components: Sequence[Component], photos: int) -> list[dict[str, Any]]:
    """Per class: false positives, per photo, share, median area, share under 500 px."""
    fps = [c for c in components if c.false_positive]
    rows = []
    for name in CLASSES:
        mine = [c.area for c in fps if c.region == name]
        rows.append(
            {
                "class": name,
                "count": len(mine),
                "per_photo": len(mine) / max(photos, 1),
                "share": len(mine) / len(fps) if fps else math.nan,
                "median_area": float(np.median(mine)) if mine else math.nan,
                "under_500": float(np.mean([a < 500 for a in mine])) if mine else math.nan,
            }
        )
    return rows


def size_table(components: Sequence[Component], lesions: Sequence[int]) -> list[dict[str, Any]]:
    """Per size bin: share of false positives, of true detections and of annotated lesions."""
    fp = [size_bin(c.area) for c in components if c.false_positive]
    tp = [size_bin(c.area) for c in components if not c.false_positive]
    gt = [size_bin(a) for a in lesions]
    rows = []
    for label in SIZE_LABELS:
        rows.append(
            {
                "size_px": label,
                "false_positives": fp.count(label),
                "fp_share": fp.count(label) / len(fp) if fp else math.nan,
                "detections_share": tp.count(label) / len(tp) if tp else math.nan,
                "lesions_share": gt.count(label) / len(gt) if gt else math.nan,
            }
        )
    return rows
