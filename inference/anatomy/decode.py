"""From the anatomy model's two working-size maps to an `Anatomy` in full-resolution pixels.

The model gives, on the preprocessed square (inference.preprocess.Geometry):
- `disc`: the probability that each pixel is optic disc (sigmoid);
- `fovea`: one probability distribution per photo over where the fovea is (a softmax over
  all pixels, summing to 1).

Decoding keeps to "never invent a position":
- The disc is the connected region of disc >= threshold with the most probability mass,
  inside the field of view, of a plausible size and round; none such: None, and why. (The
  model never saw a photo without a disc: where the disc is hidden, a cluster of bright
  exudates can fool it, and the size and roundness checks are what catches that.)
- The fovea is the point whose neighbourhood (0.5 DD) holds the most of the distribution;
  that mass is its confidence (the model's own belief that the fovea lies within 0.5 DD of
  it). Below the contract's minimum: None, and why. When the disc is known, a fovea outside
  the anatomically possible 1.5-4.5 DD from it is refused, and the best place inside that
  ring is taken instead only if it holds enough of the distribution by itself.
This module is shared by inference and training's cross-validation, so the figures in the
model card are those of this very code.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields

import cv2
import numpy as np

from inference.anatomy.geometry import laterality_of
from inference.anatomy.types import Anatomy, Point, Scale
from inference.preprocess import Geometry

#: How near the field's edge (working pixels) a disc's outline counts as cut by it.
EDGE_PX = 3


@dataclass(frozen=True)
class DecodeParams:
    """How the maps become landmarks; written into the model's contract at export."""

    disc_threshold: float = 0.5
    # equivalent-circle diameter of the disc, as a fraction of the field of view's diameter:
    # about 0.15 on IDRiD's 50-degree photos; 0.04-0.4 spans 20- to 90-degree cameras
    disc_min_fov_frac: float = 0.06
    disc_max_fov_frac: float = 0.4
    # minor/major axis of the region's second moments: a disc is round (out of fold the
    # least round was 0.66), a cluster of exudates that fools the model where the disc is
    # hidden is a streak (0.21-0.47 on four IDRiD photos with their disc blacked out)
    disc_min_roundness: float = 0.5
    fovea_radius_dd: float = 0.5  # the neighbourhood whose mass is the fovea's confidence
    fovea_min_confidence: float = 0.25
    # where the fovea can be, from the disc's centre (it is about 2.5 DD temporal of it)
    fovea_min_dd: float = 1.5
    fovea_max_dd: float = 4.5
    # the share of the disc's outline the field's edge may cut before its centre and size
    # are no longer measured (inference.anatomy.decode._find_disc)
    disc_max_cut: float = 0.3
    # the disc diameter assumed, as a fraction of the FOV diameter, only to size the fovea's
    # neighbourhood when no disc was found (never used as a distance)
    typical_disc_fov_frac: float = 0.15

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> DecodeParams:
        raw = json.loads(text)
        known = {f.name for f in fields(cls)}
        unknown = set(raw) - known
        if unknown:
            raise ValueError(f"unknown anatomy decoding fields {sorted(unknown)}")
        return cls(**{k: float(v) for k, v in raw.items()})


def working_to_full(point: Point, geometry: Geometry) -> Point:
    """A working-grid position (pixel indices, sub-pixel allowed) to full-resolution pixels,
    by the same rectangles `Geometry.to_full` resamples with."""
    sx0, sy0, sx1, sy1 = geometry.source_rect()
    wx0, wy0, wx1, wy1 = geometry.working_rect()
    x = sx0 + (point[0] + 0.5 - wx0) * (sx1 - sx0) / (wx1 - wx0) - 0.5
    y = sy0 + (point[1] + 0.5 - wy0) * (sy1 - sy0) / (wy1 - wy0) - 0.5
    return (float(x), float(y))


def full_to_working(point: Point, geometry: Geometry) -> Point:
    """The inverse of `working_to_full`."""
    sx0, sy0, sx1, sy1 = geometry.source_rect()
    wx0, wy0, wx1, wy1 = geometry.working_rect()
    x = wx0 + (point[0] + 0.5 - sx0) * (wx1 - wx0) / (sx1 - sx0) - 0.5
    y = wy0 + (point[1] + 0.5 - sy0) * (wy1 - wy0) / (sy1 - sy0) - 0.5
    return (float(x), float(y))


@dataclass(frozen=True)
class _Disc:
    center: Point
    diameter: float
    mask: np.ndarray
    confidence: float
    notes: tuple[str, ...]


def decode(
    disc: np.ndarray,
    fovea: np.ndarray,
    geometry: Geometry,
    params: DecodeParams | None = None,
    scale: Scale | None = None,
) -> Anatomy:
    """(S, S) disc probability and (S, S) fovea distribution -> Anatomy at full resolution."""
    params = params or DecodeParams()
    size = geometry.working_size
    if disc.shape != (size, size) or fovea.shape != (size, size):
        raise ValueError(
            f"expected {size}x{size} maps, got disc {disc.shape} and fovea {fovea.shape}"
        )
    inside = geometry.fov_mask_working()
    found, disc_reason, disc_mask = _find_disc(disc.astype(np.float32), inside, geometry, params)
    fovea_at, fovea_conf, fovea_reason, fovea_notes = _find_fovea(
        fovea.astype(np.float32), inside, geometry, params, found
    )
    center = found.center if found else None
    diameter = found.diameter if found else None
    side, side_reason = laterality_of(center, fovea_at, diameter)
    return Anatomy(
        photo_size=(geometry.full_width, geometry.full_height),
        disc_center=center,
        disc_diameter=diameter,
        fovea=fovea_at,
        laterality=side,
        disc_reason=disc_reason,
        fovea_reason=fovea_reason,
        laterality_reason=side_reason,
        disc_confidence=found.confidence if found else None,
        fovea_confidence=fovea_conf,
        scale=scale or Scale(),
        disc_mask=disc_mask,
        notes=(found.notes if found else ()) + fovea_notes,
    )


def _find_disc(
    prob: np.ndarray, inside: np.ndarray, geometry: Geometry, params: DecodeParams
) -> tuple[_Disc | None, str, np.ndarray | None]:
    """The disc, or None and why; and its full-resolution mask where one was drawn (also
    for a disc too cut by the edge to be measured, so its visible part can be shown)."""
    p = np.where(inside, prob, np.float32(0))
    candidates = (p >= params.disc_threshold).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(candidates, connectivity=8)
    if count <= 1:
        peak = float(p.max()) if p.size else 0.0
        return (
            None,
            (
                "no optic disc in the field of view (it may lie outside the photo or be hidden; "
                f"the model's highest disc probability was {peak:.2f})"
            ),
            None,
        )
    masses = np.bincount(labels.ravel(), weights=p.ravel(), minlength=count)  # (count,)
    best = 1 + int(np.argmax(masses[1:]))
    region = labels == best
    fov_diameter_w = 2 * geometry.fov.radius * geometry.scale
    diameter_w = 2 * math.sqrt(float(stats[best, cv2.CC_STAT_AREA]) / math.pi)
    frac = diameter_w / fov_diameter_w
    if frac < params.disc_min_fov_frac:
        return (
            None,
            (
                f"no optic disc: the best candidate is too small ({frac:.0%} of the field's "
                "diameter) to be one"
            ),
            None,
        )
    if frac > params.disc_max_fov_frac:
        return (
            None,
            (
                f"no optic disc: the best candidate is too large ({frac:.0%} of the field's "
                "diameter) to be one"
            ),
            None,
        )
    roundness = _roundness(region)
    if roundness < params.disc_min_roundness:
        return (
            None,
            f"no optic disc: the best candidate is not round like a disc (axes {roundness:.2f} "
            "to 1; bright lesions, perhaps, where the disc is hidden or out of the photo)",
            None,
        )
    # The region at full resolution: its probability resampled bilinearly (as the lesions'
    # is) and cut at the threshold, over the disc's window only (a 12-MP resample costs
    # ten times more and holds nothing else).
    kept = cv2.dilate(region.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    local = np.where(kept, p, np.float32(0))
    x, y, w, h = (int(v) for v in stats[best][:4])
    window, ox, oy = _to_full_window(local, geometry, (x - 2, y - 2, x + w + 2, y + h + 2))
    inside_window = window >= np.float32(params.disc_threshold)
    n, win_labels, win_stats, centroids = cv2.connectedComponentsWithStats(
        inside_window.view(np.uint8), connectivity=8
    )
    if n <= 1:
        return None, "no optic disc: the candidate vanished at full resolution", None
    largest = 1 + int(np.argmax(win_stats[1:, cv2.CC_STAT_AREA]))
    mask = np.zeros((geometry.full_height, geometry.full_width), bool)
    mask[oy : oy + window.shape[0], ox : ox + window.shape[1]] = win_labels == largest
    area = float(win_stats[largest, cv2.CC_STAT_AREA])
    cx, cy = float(centroids[largest][0]) + ox, float(centroids[largest][1]) + oy
    # A disc cut by the edge of the field: its visible part's centroid and equivalent
    # diameter are biased, little while the cut is short (a circle losing a quarter of its
    # outline to a straight edge moves its centroid by ~0.05 DD and shrinks by ~5%), badly
    # beyond: on IDRiD_03 cut ever closer to its disc, the centre held to within 0.1 DD
    # until about 30% of the outline lay on the edge.
    # The disc's probability fades a few pixels before the field's edge (the CLAHE'd image
    # darkens there), so "on the edge" is within EDGE_PX working pixels of it.
    outline = kept & ~region
    near_edge = ~cv2.erode(
        inside.astype(np.uint8), np.ones((2 * EDGE_PX + 1,) * 2, np.uint8)
    ).astype(bool)
    cut = float(np.count_nonzero(outline & near_edge)) / max(int(np.count_nonzero(outline)), 1)
    if cut > params.disc_max_cut:
        return (
            None,
            f"the optic disc is cut by the edge of the field of view ({cut:.0%} of its "
            "outline): its centre and size cannot be measured, so no distance in DD either",
            mask,
        )
    notes: tuple[str, ...] = ()
    if cut > 0:
        notes = (
            f"the optic disc touches the edge of the field of view ({cut:.0%} of its outline): "
            "its centre and size are those of its visible part",
        )
    return (
        _Disc(
            center=(cx, cy),
            diameter=2 * math.sqrt(area / math.pi),
            mask=mask,
            confidence=float(p[region].mean()),
            notes=notes,
        ),
        "",
        mask,
    )


def _roundness(region: np.ndarray) -> float:
    """Minor over major axis of a bool region's second moments (1 for a disc)."""
    m = cv2.moments(region.astype(np.uint8), binaryImage=True)
    if m["m00"] <= 0:
        return 0.0
    a, b, c = m["mu20"] / m["m00"], m["mu02"] / m["m00"], m["mu11"] / m["m00"]
    spread = math.sqrt(4 * c * c + (a - b) ** 2)
    major, minor = (a + b + spread) / 2, (a + b - spread) / 2
    return math.sqrt(max(minor, 0.0) / major) if major > 0 else 0.0


def _to_full_window(
    working: np.ndarray, geometry: Geometry, box: tuple[int, int, int, int]
) -> tuple[np.ndarray, int, int]:
    """`working` (S, S) resampled to full resolution as `Geometry.to_full` does (bilinear,
    the same rectangles), over the full-resolution pixels whose samples fall in the working
    `box` (x0, y0, x1, y1); returns the window and its top-left corner in the photo."""
    sx0, sy0, sx1, sy1 = geometry.source_rect()
    wx0, wy0, wx1, wy1 = geometry.working_rect()
    fx = (wx1 - wx0) / (sx1 - sx0)  # working pixels per full pixel
    fy = (wy1 - wy0) / (sy1 - sy0)
    # full pixel X samples the working patch at (X - sx0 + 0.5) * fx - 0.5
    x0 = max(sx0, sx0 + math.floor((box[0] - wx0 + 0.5) / fx - 0.5))
    x1 = min(sx1, sx0 + math.ceil((box[2] - wx0 + 0.5) / fx - 0.5) + 1)
    y0 = max(sy0, sy0 + math.floor((box[1] - wy0 + 0.5) / fy - 0.5))
    y1 = min(sy1, sy0 + math.ceil((box[3] - wy0 + 0.5) / fy - 0.5) + 1)
    xs = ((np.arange(x0, x1) - sx0 + 0.5) * fx - 0.5).astype(np.float32)
    ys = ((np.arange(y0, y1) - sy0 + 0.5) * fy - 0.5).astype(np.float32)
    map_x = np.ascontiguousarray(np.broadcast_to(xs[None, :], (ys.size, xs.size)))
    map_y = np.ascontiguousarray(np.broadcast_to(ys[:, None], (ys.size, xs.size)))
    patch = np.ascontiguousarray(working[wy0:wy1, wx0:wx1], dtype=np.float32)
    out = cv2.remap(patch, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return out, x0, y0


def _find_fovea(
    dist: np.ndarray,
    inside: np.ndarray,
    geometry: Geometry,
    params: DecodeParams,
    disc: _Disc | None,
) -> tuple[Point | None, float | None, str, tuple[str, ...]]:
    d = np.where(inside, np.clip(dist, 0, None), np.float32(0))
    px_per_working = 1.0 / geometry.scale
    if disc is not None:
        dd_w = disc.diameter / px_per_working
    else:
        dd_w = params.typical_disc_fov_frac * 2 * geometry.fov.radius * geometry.scale
    radius = max(params.fovea_radius_dd * dd_w, 1.0)
    r = math.ceil(radius)
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    kernel = ((xx * xx + yy * yy) <= radius * radius).astype(np.float32)
    # mass[v, u]: how much of the distribution lies within `radius` of (u, v)
    mass = cv2.filter2D(d, -1, kernel, borderType=cv2.BORDER_CONSTANT)
    mass = np.where(inside, mass, np.float32(0))
    v, u = (int(i) for i in np.unravel_index(int(np.argmax(mass)), mass.shape))
    confidence = float(mass[v, u])
    notes: tuple[str, ...] = ()
    if disc is not None:
        disc_w = full_to_working(disc.center, geometry)
        gy, gx = np.mgrid[: mass.shape[0], : mass.shape[1]]
        from_disc = np.hypot(gx - disc_w[0], gy - disc_w[1]) / dd_w
        allowed = (from_disc >= params.fovea_min_dd) & (from_disc <= params.fovea_max_dd)
        if not allowed[v, u]:
            seen = float(from_disc[v, u])
            ring_mass = np.where(allowed, mass, np.float32(0))
            v2, u2 = (int(i) for i in np.unravel_index(int(np.argmax(ring_mass)), mass.shape))
            if float(ring_mass[v2, u2]) < params.fovea_min_confidence:
                return (
                    None,
                    confidence,
                    f"the fovea could not be located: the model's best place for it is "
                    f"{seen:.1f} DD from the disc, where no fovea can be "
                    f"({params.fovea_min_dd:g}-{params.fovea_max_dd:g} DD)",
                    (),
                )
            v, u = v2, u2
            confidence = float(ring_mass[v, u])
            notes = (
                f"the model's first choice for the fovea lay {seen:.1f} DD from the disc; "
                "its best place at an anatomically possible distance was taken",
            )
    if confidence < params.fovea_min_confidence:
        return (
            None,
            confidence,
            f"the fovea could not be located (no clear macula: only {confidence:.0%} of the "
            f"model's belief lies within {params.fovea_radius_dd:g} DD of its best place)",
            (),
        )
    # the position: the distribution's centre of mass within the neighbourhood
    y0, y1 = max(v - r, 0), min(v + r + 1, d.shape[0])
    x0, x1 = max(u - r, 0), min(u + r + 1, d.shape[1])
    window = d[y0:y1, x0:x1] * kernel[y0 - v + r : y1 - v + r, x0 - u + r : x1 - u + r]
    total = float(window.sum())
    if total > 0:
        wy, wx = np.mgrid[y0:y1, x0:x1]
        at = (float((window * wx).sum() / total), float((window * wy).sum() / total))
    else:
        at = (float(u), float(v))
    return working_to_full(at, geometry), confidence, "", notes
