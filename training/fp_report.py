"""The false-positive analysis written down: a sheet of example crops per class, the report
(JSON and Markdown) and the operating curve's plot. See training.fp_analysis."""

from __future__ import annotations

import io
import json
import math
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from inference.atomic import atomic_write_bytes, atomic_write_text
from training.fp_components import (
    BAR_FP_PER_PHOTO,
    BAR_SENSITIVITY,
    CLASS_LABELS,
    CLASSES,
    REGIONS,
    Component,
    CurvePoint,
    OperatingCurve,
    operating_points,
    region_table,
    size_table,
)

if TYPE_CHECKING:  # the analysis imports this module to write its report
    from training.fp_analysis import AnalysisConfig


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
