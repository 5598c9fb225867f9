"""Field of view on other cameras: the adaptive detector against the fixed-threshold one.

    .venv/bin/python bench/bench_fov.py [--data FOLDER_OF_IDRID_PHOTOS] [--photos 8]

Every photo is turned into each of training.camera_variants' other cameras, whose true
circle is known (the photo's own circle, carried through the change). For both detectors it
prints, per variant, how many photos were refused and the largest error of centre and radius
as a percentage of the radius, then the totals and the time per photo as a ratio of the two,
measured in the same run. The baseline is the detector Hemaview shipped until the adaptive one
(a fixed level of 20 on the brightest channel, one least-squares circle), kept here verbatim
in what it decides.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from inference.errors import NotFundusError  # noqa: E402
from inference.fov import find_fov  # noqa: E402
from inference.photo_io import read_photo  # noqa: E402
from training.camera_variants import CAMERA_VARIANTS, Circle  # noqa: E402

DATA = REPO / "tests" / "data" / "idrid-hemorrhage" / "images"


def fixed_threshold_fov(rgb: np.ndarray) -> tuple[float, float, float]:
    """The previous detector (cx, cy, r in full-res pixels); NotFundusError as it refused."""
    h, w = rgb.shape[:2]
    scale = min(1.0, 512 / max(h, w))
    size = (max(round(w * scale), 1), max(round(h * scale), 1))
    if scale < 0.5:
        rgb = cv2.resize(rgb, (size[0] * 2, size[1] * 2), interpolation=cv2.INTER_NEAREST)
    small = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
    sh, sw = small.shape[:2]
    bright = cv2.medianBlur(np.ascontiguousarray(small.max(axis=2), dtype=np.uint8), 5)
    mask = cv2.morphologyEx(
        (bright > 20).astype(np.uint8),
        cv2.MORPH_OPEN,
        cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5)),
    )
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if count < 2:
        raise NotFundusError("dark throughout")
    region = (labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))).astype(np.uint8)
    contours, _ = cv2.findContours(region, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    points = max(contours, key=cv2.contourArea).reshape(-1, 2).astype(np.float64)
    edge = (points[:, 0] <= 1) | (points[:, 1] <= 1)
    edge |= (points[:, 0] >= sw - 2) | (points[:, 1] >= sh - 2)
    arc = points[~edge]
    if len(arc) < 30:
        raise NotFundusError("no round edge")
    x, y = arc[:, 0], arc[:, 1]
    sol, *_ = np.linalg.lstsq(np.column_stack([x, y, np.ones_like(x)]), x * x + y * y, rcond=None)
    cx, cy = sol[0] / 2, sol[1] / 2
    r = float(np.sqrt(max(sol[2] + cx * cx + cy * cy, 0.0)))
    residual = float(np.median(np.abs(np.hypot(x - cx, y - cy) - r)))
    if r < 0.2 * min(sh, sw) or residual > 0.03 * r:
        raise NotFundusError("not a circle")
    yy, xx = np.ogrid[:sh, :sw]
    disc = (xx - cx) ** 2 + (yy - cy) ** 2 <= r**2
    fill = float(region[disc].sum()) / max(int(disc.sum()), 1)
    spill = float(region[~disc].sum()) / max(int(region.sum()), 1)
    if fill < 0.85 or spill > 0.1:
        raise NotFundusError("circle not lit")
    inv = 1.0 / scale
    return (cx + 0.5) * inv - 0.5, (cy + 0.5) * inv - 0.5, r * inv


def adaptive_fov(rgb: np.ndarray) -> tuple[float, float, float]:
    fov = find_fov(rgb)
    return fov.cx, fov.cy, fov.radius


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--photos", type=int, default=8)
    args = parser.parse_args()
    paths = sorted(args.data.glob("IDRiD_*.jpg"))[: args.photos]
    if not paths:
        print(f"no IDRiD photos in {args.data}", file=sys.stderr)
        return 2
    detectors = {"fixed threshold": fixed_threshold_fov, "adaptive": adaptive_fov}
    refused = {name: {v: 0 for v in CAMERA_VARIANTS} for name in detectors}
    worst = {name: {v: 0.0 for v in CAMERA_VARIANTS} for name in detectors}
    seconds: dict[str, list[float]] = {name: [] for name in detectors}
    for path in paths:
        # 2144x1424: the variants' arithmetic on 12 MP would dominate the run
        rgb = read_photo(path, min_side=1424).rgb
        truth = Circle(*adaptive_fov(rgb))
        for variant_name, variant in CAMERA_VARIANTS.items():
            image, true_circle = variant(rgb, truth)
            for name, detect in detectors.items():  # interleaved: the same machine state
                t0 = time.perf_counter()
                try:
                    found = detect(image)
                except NotFundusError:
                    refused[name][variant_name] += 1
                    continue
                finally:
                    seconds[name].append(time.perf_counter() - t0)
                error = true_circle.error(*found)
                worst[name][variant_name] = max(worst[name][variant_name], error)

    n = len(paths)
    print(f"{n} IDRiD photos x {len(CAMERA_VARIANTS)} other-camera variants")
    print("| variant | fixed threshold: refused | worst error | adaptive: refused | worst error |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for v in CAMERA_VARIANTS:
        cells = [
            f"{refused[d][v]}/{n} | {100 * worst[d][v]:.2f}%"
            if refused[d][v] < n
            else f"{n}/{n} | -"
            for d in detectors
        ]
        print(f"| {v} | {' | '.join(cells)} |")
    total = n * len(CAMERA_VARIANTS)
    for d in detectors:
        bad = sum(1 for v in CAMERA_VARIANTS if worst[d][v] > 0.02)
        print(
            f"{d}: refused {sum(refused[d].values())}/{total}; variants with an error over 2% "
            f"of the radius: {bad}; worst error {100 * max(worst[d].values()):.2f}%"
        )
    ratio = statistics.median(seconds["adaptive"]) / statistics.median(seconds["fixed threshold"])
    print(
        f"time per photo: adaptive {1e3 * statistics.median(seconds['adaptive']):.1f} ms, "
        f"fixed threshold {1e3 * statistics.median(seconds['fixed threshold']):.1f} ms "
        f"(ratio {ratio:.2f})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
