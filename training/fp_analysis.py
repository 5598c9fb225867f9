"""`hemaview-train fp-analysis RUN`: where the false alarms of out-of-fold predictions sit.

Reads a cross-validated configuration's folder (`<compare out>/<config>/`: result.json for the
calibration and the default threshold, oof/NAME.npy + NAME.json for each held-out photo's
working-size logits and geometry), goes back to each photo's full resolution as the app does
(`inference.postprocess.probability_to_full`), and:

- splits the predicted components (8-connected, at least `min_area_px`, as `training.metrics`
  counts them) into true detections (touching an annotated haemorrhage pixel) and false
  positives (touching none);
- classifies every false positive by where at least half of its pixels lie, in this order of
  precedence: the field-of-view rim band, the optic disc and its rim, the macula, along vessels,
  elsewhere (`REGIONS`); and by size, beside the sizes of the annotated lesions;
- draws the lesion-level operating curve: false-positive components per photo against lesion
  sensitivity over thresholds, the default marked;
- writes the false positives' centres as hard negatives (`hard_negatives.json`, working pixels)
  for `finetune --hard-negatives` to centre patches on. They are mined from out-of-fold maps,
  whose model saw the other folds' labels: a second-order use of those labels worth naming
  when a run trained on them is cross-validated.

The regions, and what is approximate about them:
- rim band: field-of-view pixels within `rim_fraction` x the FOV radius of its edge (the
  circle's edge, and the photo's edge where the circle is clipped);
- optic disc: IDRiD's own disc mask, grown by `disc_margin_dd` disc diameters (DD: the mask's
  equivalent-circle diameter);
- macula: within `macula_radius_dd` DD of the fovea centre from `fovea_train.csv`, which was
  marked by hand to about +-0.2 DD (see the data README);
- vessels: an APPROXIMATE map, not a segmentation: a black top-hat of the green channel (dark,
  narrow structures) kept only where a straight segment fits in it in some direction (the
  supremum of openings by rotated lines, after Zana and Klein 2001), so round blots shorter than
  the segment drop out and long vessels stay; computed at a quarter of full resolution;
- near bright lesions (exudates): no masks of them are local, so this class is not measured.

A photo without a disc mask or fovea has no such region; the report says which.
"""

from __future__ import annotations

import argparse
import csv
import io
import itertools
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from inference.atomic import atomic_write_bytes, atomic_write_text
from inference.fov import FieldOfView
from inference.labels import read_mask
from inference.postprocess import probability_to_full
from inference.preprocess import Geometry
from training.data import data_root, default_data_dir, scan_idrid
from training.metrics import Calibration, lesion_counts
from training.out_of_fold import load_out_of_fold, oof_path

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
DISC_DIR_NAME = "idrid-optic-disc"
FOVEA_CSV = "fovea_train.csv"


@dataclass(frozen=True)
class RegionParams:
    rim_fraction: float = 0.05  # rim band width, fraction of the FOV radius (~0.2 DD on IDRiD)
    disc_margin_dd: float = 0.5  # the disc mask grown by this many disc diameters
    macula_radius_dd: float = 1.0  # ETDRS inner circle (3 mm) is about 1 DD in radius
    vessel_share: float = 0.5  # share of a component's pixels in a region that puts it there


@dataclass(frozen=True)
class Anatomy:
    """What one photo's regions are built from, in full-resolution pixels."""

    disc_mask: np.ndarray | None  # (H, W) bool
    fovea_xy: tuple[float, float] | None
    disc_diameter: float | None  # px; None: no disc mask


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
# Regions


def fov_mask_full(fov: FieldOfView, height: int, width: int) -> np.ndarray:
    """(H, W) bool: pixels inside the FOV circle (and the photo)."""
    yy, xx = np.ogrid[:height, :width]
    return (xx - fov.cx) ** 2 + (yy - fov.cy) ** 2 <= fov.radius**2  # type: ignore[no-any-return]


def rim_band(fov_mask: np.ndarray, width_px: float) -> np.ndarray:
    """FOV pixels closer than `width_px` to its edge; the photo's border counts as an edge."""
    padded = np.pad(fov_mask.astype(np.uint8), 1)  # a clipped circle's straight edges too
    distance = cv2.distanceTransform(padded, cv2.DIST_L2, 5)[1:-1, 1:-1]
    return fov_mask & (distance <= width_px)  # type: ignore[no-any-return]


def disc_diameter(disc_mask: np.ndarray) -> float:
    """Equivalent-circle diameter of the disc mask, px (as the fovea CSV's disc_diameter)."""
    return float(2.0 * math.sqrt(np.count_nonzero(disc_mask) / math.pi))


def disc_region(disc_mask: np.ndarray, margin_px: float) -> np.ndarray:
    """The disc mask grown by `margin_px`."""
    outside = (~disc_mask).astype(np.uint8)
    distance = cv2.distanceTransform(outside, cv2.DIST_L2, 5)  # 0 on the disc
    return distance <= margin_px  # type: ignore[no-any-return]


def macula_region(shape: tuple[int, int], centre: tuple[float, float], radius: float) -> np.ndarray:
    yy, xx = np.ogrid[: shape[0], : shape[1]]
    return (xx - centre[0]) ** 2 + (yy - centre[1]) ** 2 <= radius**2  # type: ignore[no-any-return]


def line_kernel(length: int, angle_deg: float) -> np.ndarray:
    """A one-pixel straight segment of `length` through the centre of a square kernel."""
    k = np.zeros((length, length), np.uint8)
    c = (length - 1) / 2
    dx = math.cos(math.radians(angle_deg)) * c
    dy = math.sin(math.radians(angle_deg)) * c
    cv2.line(k, (round(c - dx), round(c - dy)), (round(c + dx), round(c + dy)), 1, 1)
    return k


def vessel_map(
    rgb: np.ndarray,
    fov_mask: np.ndarray,
    *,
    tophat_px: int = 15,
    line_px: int = 31,
    angles: int = 12,
    keep_fraction: float = 0.12,
    min_piece: float = 0.0005,
) -> np.ndarray:
    """APPROXIMATE vessels of a photo (any scale): dark, narrow and long structures.

    Black top-hat of the green channel with a disc of `tophat_px` (dark things narrower than
    it), then the supremum of its openings by straight segments of `line_px` in `angles`
    directions (only structures a segment fits in survive: vessels, not dots or round blots);
    the brightest `keep_fraction` of the FOV's pixels of that, without pieces smaller than
    `min_piece` of the FOV (an elongated blot or a flame haemorrhage on its own is not the
    vessel tree), are the map. Defaults suit a quarter of IDRiD's resolution (about 1070 x 710),
    where the widest vessels are ~8-10 px.
    """
    green = rgb[..., 1].astype(np.uint8)
    inside = green[fov_mask]
    fill = np.uint8(np.median(inside)) if inside.size else np.uint8(0)
    green = np.where(fov_mask, green, fill)  # the dark surround is not a vessel
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (tophat_px, tophat_px))
    tophat = cv2.morphologyEx(green, cv2.MORPH_BLACKHAT, disc)
    tophat = cv2.GaussianBlur(tophat, (3, 3), 0)
    best = np.zeros_like(tophat)
    for i in range(angles):
        opened = cv2.morphologyEx(tophat, cv2.MORPH_OPEN, line_kernel(line_px, 180.0 * i / angles))
        np.maximum(best, opened, out=best)
    values = best[fov_mask]
    if values.size == 0:
        return np.zeros_like(fov_mask)
    cut = np.quantile(values, 1.0 - keep_fraction)
    kept = (fov_mask & (best > max(cut, 0))).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(kept, connectivity=8)
    big = np.zeros(n, bool)
    big[1:] = stats[1:, cv2.CC_STAT_AREA] >= min_piece * values.size
    return big[labels]  # type: ignore[no-any-return]


def anatomy_regions(
    shape: tuple[int, int],
    fov_mask: np.ndarray,
    anatomy: Anatomy,
    vessels: np.ndarray | None,
    params: RegionParams,
    fov_radius: float,
) -> dict[str, np.ndarray]:
    """Region name -> (H, W) bool, for the regions this photo has (see REGIONS)."""
    regions = {"fov_rim": rim_band(fov_mask, params.rim_fraction * fov_radius)}
    if anatomy.disc_mask is not None and anatomy.disc_diameter:
        regions["optic_disc"] = disc_region(
            anatomy.disc_mask, params.disc_margin_dd * anatomy.disc_diameter
        )
    if anatomy.fovea_xy is not None and anatomy.disc_diameter:
        radius = params.macula_radius_dd * anatomy.disc_diameter
        regions["macula"] = macula_region(shape, anatomy.fovea_xy, radius)
    if vessels is not None:
        regions["vessels"] = vessels
    return regions


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


# ----------------------------------------------------------------------------------------------
# Reading a run


@dataclass(frozen=True)
class AnalysisConfig:
    run: Path  # a configuration's folder: result.json, oof/
    data_dir: Path  # IDRiD haemorrhage folder
    disc_dir: Path  # idrid-optic-disc
    out: Path
    threshold: float | None = None  # None: the run's default (result.json)
    min_area_px: int = 30
    params: RegionParams = RegionParams()
    thresholds: tuple[float, ...] = tuple(round(0.05 * i, 2) for i in range(1, 20))
    examples_per_class: int = 8


def read_fovea_csv(path: Path) -> dict[str, dict[str, str]]:
    if not path.is_file():
        return {}
    with path.open(newline="") as handle:
        return {row["image"]: row for row in csv.DictReader(handle)}


def load_anatomy(name: str, disc_dir: Path, fovea: dict[str, dict[str, str]]) -> Anatomy:
    disc_path = disc_dir / "masks" / f"{name}_OD.png"
    disc = read_mask(disc_path) if disc_path.is_file() else None
    diameter = disc_diameter(disc) if disc is not None and disc.any() else None
    row = fovea.get(name)
    centre = (float(row["fovea_x"]), float(row["fovea_y"])) if row else None
    return Anatomy(disc, centre, diameter)


def _vessels_full(image_path: Path, geometry: Geometry) -> np.ndarray:
    from inference.photo_io import read_photo

    photo = read_photo(image_path, min_side=geometry.full_height // 4)
    rgb = photo.rgb
    factor = rgb.shape[1] / geometry.full_width
    small_fov = fov_mask_full(geometry.fov.scaled(factor), rgb.shape[0], rgb.shape[1])
    small = vessel_map(rgb, small_fov).astype(np.uint8)
    size = (geometry.full_width, geometry.full_height)
    return cv2.resize(small, size, interpolation=cv2.INTER_NEAREST).astype(bool)  # type: ignore[no-any-return]


def analyse(config: AnalysisConfig, log: Any = print) -> dict[str, Any]:
    """Run the analysis over every out-of-fold photo with a mask; write the report; return it."""
    result = json.loads((config.run / "result.json").read_text())
    calibration = Calibration(**result["calibration"])
    threshold = (
        config.threshold if config.threshold is not None else float(result["metrics"]["threshold"])
    )
    fovea = read_fovea_csv(config.disc_dir / FOVEA_CSV)
    records = [
        r
        for r in scan_idrid(config.data_dir)
        if r.mask_path is not None and oof_path(config.run, r.name).is_file()
    ]
    if not records:
        raise FileNotFoundError(f"{config.run}: no out-of-fold photo with a mask to analyse")
    curve = OperatingCurve([*config.thresholds, threshold], config.min_area_px)
    components: list[Component] = []
    lesions: list[int] = []
    missing: dict[str, list[str]] = {"optic_disc": [], "macula": []}
    hard: dict[str, list[list[int]]] = {}
    working_size = 0
    for k, record in enumerate(records):
        logits, geometry = load_out_of_fold(config.run, record.name)
        working_size = geometry.working_size
        full = probability_to_full(calibration.apply(logits), geometry)
        size = (geometry.full_width, geometry.full_height)
        assert record.mask_path is not None
        target = read_mask(record.mask_path, expected_size=size)
        anatomy = load_anatomy(record.name, config.disc_dir, fovea)
        fov = fov_mask_full(geometry.fov, geometry.full_height, geometry.full_width)
        vessels = _vessels_full(record.image_path, geometry)
        regions = anatomy_regions(
            target.shape, fov, anatomy, vessels, config.params, geometry.fov.radius
        )
        for name in missing:
            if name not in regions:
                missing[name].append(record.name)
        found = classify_components(
            record.name,
            full,
            target,
            threshold,
            regions,
            min_area_px=config.min_area_px,
            share=config.params.vessel_share,
        )
        components += found
        hard[record.name] = hard_negative_points(found, geometry)
        lesions += lesion_areas(target)
        curve.add(full, target)
        log(f"fp-analysis: {k + 1}/{len(records)} {record.name}")
    report = write_report(config, components, lesions, curve, threshold, len(records), missing)
    mined = {"working_size": working_size, "run": str(config.run), "threshold": threshold}
    atomic_write_text(
        config.out / "hard_negatives.json", json.dumps({**mined, "points": hard}) + "\n"
    )
    chosen = choose_examples(components, config.examples_per_class)
    by_name = {r.name: r for r in records}
    tiles: dict[int, np.ndarray] = {}
    for name in sorted({c.photo for c in chosen}):
        record = by_name[name]
        logits, geometry = load_out_of_fold(config.run, name)
        full = probability_to_full(calibration.apply(logits), geometry)
        assert record.mask_path is not None
        size = (geometry.full_width, geometry.full_height)
        target = read_mask(record.mask_path, expected_size=size)
        from inference.photo_io import read_photo

        rgb = read_photo(record.image_path).rgb
        for i, c in enumerate(chosen):
            if c.photo == name:
                tiles[i] = example_tile(rgb, full >= threshold, target, c)
    write_montage([(c, tiles[i]) for i, c in enumerate(chosen)], config.out / "fp_examples.png")
    return report


def choose_examples(
    components: Sequence[Component], per_class: int, seed: int = 0
) -> list[Component]:
    """Up to `per_class` false positives of each class, drawn at random (seeded), by class."""
    rng = np.random.default_rng(seed)
    chosen: list[Component] = []
    for name in CLASSES:
        mine = [c for c in components if c.false_positive and c.region == name]
        if len(mine) > per_class:
            mine = [mine[i] for i in sorted(rng.choice(len(mine), per_class, replace=False))]
        chosen += mine
    return chosen


TILE = 192


def example_tile(
    rgb: np.ndarray, predicted: np.ndarray, target: np.ndarray, component: Component
) -> np.ndarray:
    """A square crop of the photo around `component` (at least 256 px, twice its box), with
    the predicted outlines in yellow and the annotated haemorrhages in cyan; TILE px, RGB."""
    _, _, w, h = component.bbox
    side = max(256, 2 * max(w, h))
    height, width = predicted.shape
    x0 = int(min(max(component.x - side / 2, 0), max(width - side, 0)))
    y0 = int(min(max(component.y - side / 2, 0), max(height - side, 0)))
    window = (slice(y0, y0 + side), slice(x0, x0 + side))
    crop = np.ascontiguousarray(rgb[window])
    scale = TILE / max(crop.shape[:2])
    tile = cv2.resize(crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    tile = cv2.copyMakeBorder(
        tile, 0, TILE - tile.shape[0], 0, TILE - tile.shape[1], cv2.BORDER_CONSTANT
    )
    for mask, colour in ((target, (0, 255, 255)), (predicted, (255, 255, 0))):
        small = cv2.resize(
            mask[window].astype(np.uint8),
            (round(crop.shape[1] * scale), round(crop.shape[0] * scale)),
            interpolation=cv2.INTER_NEAREST,
        )
        contours, _ = cv2.findContours(small, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(tile, contours, -1, colour, 1)
    cv2.putText(
        tile,
        f"{component.photo[-2:]} {component.area}px",
        (3, TILE - 5),
        cv2.FONT_HERSHEY_SIMPLEX,
        0.4,
        (255, 255, 255),
        1,
        cv2.LINE_AA,
    )
    return tile  # type: ignore[no-any-return]


def write_montage(tiles: Sequence[tuple[Component, np.ndarray]], path: Path) -> None:
    """One row per class (its label on the left), its examples beside it; PNG."""
    if not tiles:
        return
    columns = max(sum(1 for c, _ in tiles if c.region == name) for name in CLASSES)
    label_w = 150
    rows = [name for name in CLASSES if any(c.region == name for c, _ in tiles)]
    sheet = np.full((len(rows) * TILE, label_w + columns * TILE, 3), 32, np.uint8)
    for r, name in enumerate(rows):
        cv2.putText(
            sheet,
            name,
            (5, r * TILE + TILE // 2),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.5,
            (255, 255, 255),
            1,
            cv2.LINE_AA,
        )
        mine = [t for c, t in tiles if c.region == name]
        for k, tile in enumerate(mine):
            sheet[r * TILE : (r + 1) * TILE, label_w + k * TILE : label_w + (k + 1) * TILE] = tile
    ok, data = cv2.imencode(".png", cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    if ok:
        atomic_write_bytes(path, data.tobytes())


def write_report(
    config: AnalysisConfig,
    components: list[Component],
    lesions: list[int],
    curve: OperatingCurve,
    threshold: float,
    photos: int,
    missing: dict[str, list[str]],
) -> dict[str, Any]:
    out = config.out
    out.mkdir(parents=True, exist_ok=True)
    fps = [c for c in components if c.false_positive]
    regions = region_table(components, photos)
    sizes = size_table(components, lesions)
    points = curve.points()
    at_default = next(p for p in points if p.threshold == float(threshold))
    report = {
        "run": str(config.run),
        "threshold": threshold,
        "min_area_px": config.min_area_px,
        "photos": photos,
        "params": asdict(config.params),
        "fp_per_photo": len(fps) / photos,
        "lesion_sensitivity": at_default.lesion_sensitivity,
        "median_fp_area": float(np.median([c.area for c in fps])) if fps else math.nan,
        "regions": regions,
        "sizes": sizes,
        "curve": [asdict(p) for p in points],
        "operating_points": {
            k: asdict(v) if v is not None else None for k, v in operating_points(points).items()
        },
        "no_region": missing,
        "not_measured": {"bright_lesions": "no exudate masks are local"},
    }
    atomic_write_text(out / "fp_analysis.json", json.dumps(_finite(report), indent=1) + "\n")
    rows = ["photo,area,x,y,max_probability,false_positive,region," + ",".join(REGIONS)]
    rows += [
        f"{c.photo},{c.area},{c.x:.1f},{c.y:.1f},{c.max_probability:.4f},{int(c.false_positive)},"
        f"{c.region}," + ",".join(f"{c.shares.get(r, math.nan):.3f}" for r in REGIONS)
        for c in components
    ]
    atomic_write_text(out / "components.csv", "\n".join(rows) + "\n")
    atomic_write_text(out / "fp_analysis.md", markdown(report))
    plot_curve(points, threshold, out / "operating_curve.png")
    return report


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _f(value: Any, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def markdown(report: dict[str, Any]) -> str:
    p = report["params"]
    lines = [
        f"# False positives of {report['run']}",
        "",
        f"{report['photos']} out-of-fold photos at full resolution, threshold "
        f"{report['threshold']:.3f}, components of at least {report['min_area_px']} px: "
        f"**{report['fp_per_photo']:.1f} false-positive components per photo** at lesion "
        f"sensitivity {_f(report['lesion_sensitivity'], 3)}; median false-positive area "
        f"{_f(report['median_fp_area'], 0)} px.",
        "",
        "| where | FP components | per photo | share | median px | under 500 px |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in report["regions"]:
        lines.append(
            f"| {CLASS_LABELS[row['class']]} | {row['count']} | {_f(row['per_photo'])} | "
            f"{_f(row['share'], 3)} | {_f(row['median_area'], 0)} | {_f(row['under_500'], 3)} |"
        )
    lines += [
        "",
        f"Regions, in order of precedence (a component goes to the first holding at least "
        f"{p['vessel_share']:.0%} of its pixels): rim band {p['rim_fraction']:.0%} of the FOV "
        f"radius; disc mask grown by {p['disc_margin_dd']} DD; macula within "
        f"{p['macula_radius_dd']} DD of the hand-marked fovea; vessels from an approximate "
        "black-top-hat line-opening map. Near bright lesions: not measured (no exudate masks are "
        "local).",
        "",
        "| size (px) | FP | share of FP | share of detections | share of annotated lesions |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in report["sizes"]:
        lines.append(
            f"| {row['size_px']} | {row['false_positives']} | {_f(row['fp_share'], 3)} | "
            f"{_f(row['detections_share'], 3)} | {_f(row['lesions_share'], 3)} |"
        )
    chosen = report["operating_points"]
    lines += [""]
    for key, label in (
        ("most_sensitive_within_fp", f"most sensitive with <= {BAR_FP_PER_PHOTO:g} FP/photo"),
        (
            "fewest_fp_with_sensitivity",
            f"fewest FP with lesion sensitivity >= {BAR_SENSITIVITY:.2f}",
        ),
        ("meets_bar", "meets the bar (both)"),
    ):
        point = chosen[key]
        lines.append(
            f"- {label}: "
            + (
                f"threshold {point['threshold']:.3f}, {_f(point['fp_per_photo'])} FP/photo, "
                f"lesion sensitivity {_f(point['lesion_sensitivity'], 3)}"
                if point
                else "none on this curve"
            )
        )
    lines += [
        "",
        "| threshold | FP/photo | lesion sensitivity | predicted/photo |",
        "|---:|---:|---:|---:|",
    ]
    for point in report["curve"]:
        mark = " (default)" if point["threshold"] == report["threshold"] else ""
        lines.append(
            f"| {point['threshold']:.3f}{mark} | {_f(point['fp_per_photo'])} | "
            f"{_f(point['lesion_sensitivity'], 3)} | {_f(point['predicted_per_photo'])} |"
        )
    return "\n".join(lines) + "\n"


def plot_curve(points: Sequence[CurvePoint], threshold: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5))
    ax.plot([p.fp_per_photo for p in points], [p.lesion_sensitivity for p in points], "o-", ms=3)
    for p in points:
        if p.threshold == threshold:
            ax.plot(
                p.fp_per_photo, p.lesion_sensitivity, "r*", ms=12, label=f"default {threshold:.3f}"
            )
    ax.set_xlabel("false-positive components per photo")
    ax.set_ylabel("lesion sensitivity")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    ax.set_title("Out-of-fold lesion-level operating curve")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())


def fp_analysis_main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="hemaview-train fp-analysis", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "run", type=Path, help="a compared configuration's folder (result.json, oof/)"
    )
    parser.add_argument("--data-dir", type=Path, default=None, help="IDRiD haemorrhage folder")
    parser.add_argument(
        "--disc-dir",
        type=Path,
        default=None,
        help=f"optic disc folder (default: DATA/{DISC_DIR_NAME})",
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="report folder (default: RUN/fp_analysis)"
    )
    parser.add_argument("--threshold", type=float, default=None, help="default: the run's own")
    parser.add_argument("--min-area", type=int, default=30, help="smallest component kept, px")
    args = parser.parse_args(argv)
    config = AnalysisConfig(
        run=args.run,
        data_dir=args.data_dir or default_data_dir(),
        disc_dir=args.disc_dir or data_root() / DISC_DIR_NAME,
        out=args.out or args.run / "fp_analysis",
        threshold=args.threshold,
        min_area_px=args.min_area,
    )
    analyse(config)
    print((config.out / "fp_analysis.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(fp_analysis_main())
