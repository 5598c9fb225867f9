"""Editing operations on a full-resolution bool mask: pure functions, keyword-only geometry.

Each returns the rectangle it may have changed (x0, y0, x1, y1, exclusive) so that undo
keeps only that patch and the canvas repaints only that part. Tests call them directly,
without a mouse.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from viewer.model.history import Rect

#: A fill may not spread over more than this share of the photo: a click on the
#: background outside every lesion would otherwise paint the whole fundus.
MAX_FILL_FRACTION = 0.02

#: Brush radius bounds in image pixels, one pair for the canvas, the keys and the settings:
#: half a pixel paints single pixels; 400 covers a large haemorrhage on a 12-MP photo.
MIN_BRUSH_RADIUS, MAX_BRUSH_RADIUS = 0.5, 400.0


def clamp_brush_radius(radius: float) -> float:
    return min(max(float(radius), MIN_BRUSH_RADIUS), MAX_BRUSH_RADIUS)


def grown_radius(*, radius: float, steps: float, step: float) -> float:
    """The brush radius `steps` steps larger (smaller when negative), each step a factor
    `step` (the canvas uses its zoom step), before clamping."""
    r = radius * step**steps
    # Small brushes still change by at least a pixel a step.
    if abs(r - radius) < 1 and steps:
        r = radius + math.copysign(1, steps)
    return r


def lasso_extends(*, last: tuple[float, float], point: tuple[float, float], scale: float) -> bool:
    """Whether a lasso's next point is kept: it is at least a screen pixel (at `scale`
    screen pixels per photo pixel) from the last one."""
    return max(abs(point[0] - last[0]), abs(point[1] - last[1])) * scale >= 1


def points_rect(points: list[tuple[float, float]]) -> Rect:
    """The photo pixels (x0, y0, x1, y1, exclusive) that points in Document coordinates
    (pixel centres on integers) touch."""
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x0, y0 = math.floor(min(xs)), math.floor(min(ys))
    return (x0, y0, math.ceil(max(xs)) + 1, math.ceil(max(ys)) + 1)


def clip_rect(rect: Rect, shape: tuple[int, ...]) -> Rect | None:
    x0, y0, x1, y1 = rect
    x0, y0 = max(x0, 0), max(y0, 0)
    x1, y1 = min(x1, shape[1]), min(y1, shape[0])
    if x1 <= x0 or y1 <= y0:
        return None
    return (x0, y0, x1, y1)


def stroke_rect(
    *, points: list[tuple[float, float]], radius: float, shape: tuple[int, ...]
) -> Rect | None:
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    r = int(np.ceil(radius)) + 2
    return clip_rect(
        (int(min(xs)) - r, int(min(ys)) - r, int(max(xs)) + r + 1, int(max(ys)) + r + 1), shape
    )


def paint_segment(
    mask: np.ndarray,
    *,
    start: tuple[float, float],
    end: tuple[float, float],
    radius: float,
    value: bool,
) -> Rect | None:
    """Paint (or erase) a round-capped line of the brush's width from start to end.

    Consecutive mouse positions are joined, so a fast stroke leaves no gaps between dabs.
    """
    rect = stroke_rect(points=[start, end], radius=radius, shape=mask.shape)
    if rect is None:
        return None
    x0, y0, x1, y1 = rect
    view = mask[y0:y1, x0:x1].view(np.uint8)  # bool is one byte of 0 or 1: cv2 draws on it
    colour = 1 if value else 0
    if radius < 1.0:
        # The finest brush sets exactly the pixels the pointer passes over.
        a = (round(start[0]) - x0, round(start[1]) - y0)
        b = (round(end[0]) - x0, round(end[1]) - y0)
        cv2.line(view, a, b, colour, thickness=1, lineType=cv2.LINE_8)
        return rect
    shift = 4  # sub-pixel precision (1/16 pixel) for the round caps and the body alike
    p0 = (round((start[0] - x0) * 16), round((start[1] - y0) * 16))
    p1 = (round((end[0] - x0) * 16), round((end[1] - y0) * 16))
    r = round(radius * 16)
    cv2.circle(view, p0, r, colour, -1, lineType=cv2.LINE_8, shift=shift)
    if p0 != p1:
        cv2.circle(view, p1, r, colour, -1, lineType=cv2.LINE_8, shift=shift)
        thickness = max(2 * round(radius), 1)
        cv2.line(view, p0, p1, colour, thickness=thickness, lineType=cv2.LINE_8, shift=shift)
    return rect


def fill_region(mask: np.ndarray, *, x: int, y: int, value: bool | None = None) -> Rect | None:
    """Fill the connected region under (x, y) (a hole, or a lesion) with `value`.

    With value None the region is flipped: a click in a hole fills it, a click on a lesion
    clears it. Regions larger than MAX_FILL_FRACTION of the photo, or open to the photo's
    edge, are refused (None): they are background, not a hole.
    """
    h, w = mask.shape
    if not (0 <= x < w and 0 <= y < h):
        return None
    current = bool(mask[y, x])
    target = (not current) if value is None else bool(value)
    if target == current:
        return None
    flood = np.zeros((h + 2, w + 2), np.uint8)
    area, _, _, (rx, ry, rw, rh) = cv2.floodFill(
        mask.view(np.uint8).copy(), flood, (x, y), 2, flags=4 | cv2.FLOODFILL_MASK_ONLY | (1 << 8)
    )
    touches_edge = rx == 0 or ry == 0 or rx + rw == w or ry + rh == h
    if area > MAX_FILL_FRACTION * h * w or (not current and touches_edge):
        return None
    region = flood[1 + ry : 1 + ry + rh, 1 + rx : 1 + rx + rw].astype(bool)
    mask[ry : ry + rh, rx : rx + rw][region] = target
    return (rx, ry, rx + rw, ry + rh)


def fill_polygon(
    mask: np.ndarray, *, points: list[tuple[float, float]], value: bool
) -> Rect | None:
    """Lasso: fill the polygon through `points` (image pixels) with `value`."""
    if len(points) < 3:
        return None
    rect = stroke_rect(points=points, radius=0, shape=mask.shape)
    if rect is None:
        return None
    x0, y0, x1, y1 = rect
    poly = np.array([[round((px - x0) * 16), round((py - y0) * 16)] for px, py in points], np.int32)
    view = mask[y0:y1, x0:x1].view(np.uint8)
    cv2.fillPoly(view, [poly], 1 if value else 0, lineType=cv2.LINE_8, shift=4)
    return rect


def component_pixels(
    mask: np.ndarray, *, bbox: tuple[int, int, int, int], area: int
) -> np.ndarray | None:
    """bool (h, w) of the connected component of `mask` that exactly fills `bbox` with `area`."""
    x, y, w, h = bbox
    crop = mask[y : y + h, x : x + w].view(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(crop, connectivity=8)
    for i in range(1, count):
        sx, sy, sw, sh, sa = (int(v) for v in stats[i])
        if (sx, sy, sw, sh, sa) == (0, 0, w, h, area):
            return np.asarray(labels == i)
    best = int(np.argmax(stats[1:, cv2.CC_STAT_AREA])) + 1 if count > 1 else 0
    return np.asarray(labels == best) if best else None


def lesion_outline(
    suggestion: np.ndarray, bbox: tuple[int, int, int, int], area: int
) -> list[np.ndarray]:
    """The outline(s) of one suggested lesion as polygons (N, 2) of image x, y: how a
    rejected lesion stays visible, faintly, after its pixels left the mask."""
    pixels = component_pixels(suggestion, bbox=bbox, area=area)
    if pixels is None:
        return []
    contours, _ = cv2.findContours(
        pixels.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
    )
    x, y = bbox[0], bbox[1]
    offset = np.array([x, y])
    return [c.reshape(-1, 2) + offset for c in contours if len(c) >= 2]
