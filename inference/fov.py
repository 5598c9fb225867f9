"""The field of view (FOV): where the retina is in a fundus photograph.

Cameras differ: the circle may be clipped by the frame on any side, carry a small notch on
its rim, sit in a surround that is black or dark grey, and be dim, vignetted or lit from one
side. So nothing here is a fixed level. The detector works on a thumbnail:

1. the background level and its noise come from the frame's corners;
2. the bright region is what stands clearly above that background (relative to the photo's
   own contrast), its largest connected part;
3. rays from that region's centre give one edge point per angle: the outermost bright
   pixel, moved to the sharpest drop to the background nearby (so a dim, vignetted rim
   is found at its true edge, not where it fades below a level);
4. a circle is fitted to those points by RANSAC and refined by least squares on its
   inliers: points where the frame clips the circle, a notch, text printed in the surround
   or a half of the retina too dark to show its edge are outliers, not part of the fit.

When no circle fits well the photo is not refused: its FOV is estimated from the bright
region's bounding box (or is the whole frame when there is no dark surround), and says so.
Only what clearly is not a retina photo is refused, by what the image is made of (a flat
image; large areas of one exact colour, as in a screenshot, document or drawing; no red-led
colour where no fundus circle was found), never by the circle fit alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from inference.contract import FovParams
from inference.errors import NotFundusError

#: How a field of view was found.
METHOD_CIRCLE = "circle"  # fitted to the edge of the field of view
METHOD_BOUNDING_BOX = "bounding-box"  # estimated: the bright region's bounding box
METHOD_WHOLE_FRAME = "whole-frame"  # estimated: the whole photo

#: The shortest side a photo needs for a field of view to be found in it.
MIN_SIDE_PX = 64


@dataclass(frozen=True)
class FieldOfView:
    """The field of view in full-resolution pixel coordinates."""

    cx: float
    cy: float
    radius: float
    fill: float  # fraction of the disc (inside the image) that is bright
    clipped: bool  # the circle runs past the photo's edges (common: 50-degree cameras)
    method: str = METHOD_CIRCLE
    note: str = ""  # why the FOV is estimated, or why it was run on request
    forced: bool = False  # refused as not a fundus photograph and run on request anyway

    @property
    def estimated(self) -> bool:
        """No circle was fitted: the FOV is a stand-in, and reviewers are told so."""
        return self.method != METHOD_CIRCLE

    def scaled(self, factor: float) -> FieldOfView:
        """The same FOV in an image `factor` times the size (pixel centres kept)."""
        return FieldOfView(
            cx=(self.cx + 0.5) * factor - 0.5,
            cy=(self.cy + 0.5) * factor - 0.5,
            radius=self.radius * factor,
            fill=self.fill,
            clipped=self.clipped,
            method=self.method,
            note=self.note,
            forced=self.forced,
        )


def whole_frame(height: int, width: int, note: str, *, forced: bool = False) -> FieldOfView:
    """The whole photo as the FOV: a disc through its corners, so nothing of it is blanked."""
    return FieldOfView(
        cx=width / 2 - 0.5,
        cy=height / 2 - 0.5,
        radius=float(np.hypot(width, height)) / 2,
        fill=1.0,
        clipped=True,
        method=METHOD_WHOLE_FRAME,
        note=note,
        forced=forced,
    )


def find_fov(rgb: np.ndarray, params: FovParams | None = None) -> FieldOfView:
    """The field of view of a photo (H, W, 3) uint8 RGB; NotFundusError only for an image that
    clearly is not a retina photo, with the reason."""
    params = params or FovParams()
    h, w = rgb.shape[:2]
    if min(h, w) < MIN_SIDE_PX:
        raise NotFundusError(
            f"the image is only {w}x{h} pixels: too small to be a fundus photograph"
        )
    small, scale = _thumbnail(rgb, params.analysis_size)
    reason = _graphic_reason(small)
    if reason:
        raise NotFundusError(f"this does not look like a fundus photograph: {reason}")
    value = cv2.medianBlur(np.ascontiguousarray(small.max(axis=2)), 5).astype(np.float32)
    sh, sw = value.shape
    bg, noise = _background(value, params.border_frac)
    centre = value[sh // 4 : 3 * sh // 4, sw // 4 : 3 * sw // 4]
    contrast = float(np.percentile(centre, 60)) - bg
    # No dark surround (the retina fills the frame, or this is no fundus): the corners are
    # not much darker than the middle.
    if contrast < max(20.0, 0.4 * (contrast + bg)):
        reason = _colour_reason(small, np.ones((sh, sw), bool))
        if reason:
            raise NotFundusError(f"this does not look like a fundus photograph: {reason}")
        return whole_frame(h, w, "no dark surround: the field of view is the whole photo")

    # Bright: clearly above the background's noise, and a small part of the photo's contrast
    # (low enough that a dim, vignetted or darkened rim still counts).
    bright_enough = (value > bg + max(3 * noise + 3, 0.06 * contrast)).astype(np.uint8)
    lit = cv2.morphologyEx(
        bright_enough, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
    )
    count, labels, stats, _ = cv2.connectedComponentsWithStats(lit, connectivity=8)
    if count < 2:
        raise NotFundusError("no field of view found: the photo is dark throughout")
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    region = labels == largest

    points = _edge_points(value, region, bg, noise, params.rays)
    fit = _ransac_circle(points, sh, sw, params) if len(points) >= 12 else None
    inv = 1.0 / scale
    if fit is not None:
        cx, cy, r = fit
        yy, xx = np.ogrid[:sh, :sw]
        d2 = (xx - cx) ** 2 + (yy - cy) ** 2
        disc = d2 <= r**2
        # Clearly bright area outside the circle means the circle is not the FOV's edge (a
        # dim halo or flare ring around the aperture is no such area).
        bright = region & (value > bg + 0.3 * contrast)
        spill = float(bright[d2 > (1.03 * r) ** 2].sum()) / max(int(bright.sum()), 1)
        # And the disc is retina: above the background, if dimly (a darkened half is dim,
        # not black); a circle through one arc of some other shape takes in the surround.
        retina = (value > bg + 2 * noise + 2)[disc].mean() if disc.any() else 0.0
        if spill < 0.05 and retina > 0.8:
            fill = float(region[disc].sum()) / max(int(disc.sum()), 1)
            clipped = cx - r < -1 or cy - r < -1 or cx + r > sw + 1 or cy + r > sh + 1
            # Thumbnail pixel centres sit at (i + 0.5) / scale - 0.5 in full-res coordinates.
            return FieldOfView(cx, cy, r, fill, bool(clipped)).scaled(inv)
    # No circle: a fundus photograph still, unless its colours say otherwise.
    reason = _colour_reason(small, region)
    if reason:
        raise NotFundusError(
            "no circular field of view found, and this does not look like a fundus "
            f"photograph: {reason}"
        )
    x, y, bw, bh = (int(v) for v in stats[largest, :4])
    radius = max(bw, bh) / 2
    if radius < params.min_radius_frac * min(sh, sw):
        raise NotFundusError("no field of view found: the bright area is too small to be a fundus")
    estimate = FieldOfView(
        cx=x + bw / 2 - 0.5,
        cy=y + bh / 2 - 0.5,
        radius=radius,
        fill=float(region.sum()) / max(bw * bh, 1),
        clipped=x <= 1 or y <= 1 or x + bw >= sw - 1 or y + bh >= sh - 1,
        method=METHOD_BOUNDING_BOX,
        note="no circular edge found: the field of view is estimated from the bright area",
    )
    return estimate.scaled(inv)


def _thumbnail(rgb: np.ndarray, size: int) -> tuple[np.ndarray, float]:
    h, w = rgb.shape[:2]
    scale = min(1.0, size / max(h, w))
    dsize = (max(round(w * scale), 1), max(round(h * scale), 1))
    if scale < 0.5:
        # Area-averaging 12 MP costs ~60 ms; picking pixels down to twice the size first is
        # ~10x faster, and the averaging and median blur after it remove the aliasing.
        rgb = cv2.resize(rgb, (dsize[0] * 2, dsize[1] * 2), interpolation=cv2.INTER_NEAREST)
    return cv2.resize(rgb, dsize, interpolation=cv2.INTER_AREA), scale


def _background(value: np.ndarray, border_frac: float) -> tuple[float, float]:
    """Level and noise (robust sigma) of the frame's four corners, where a fundus camera's
    surround is whatever the circle's clipping."""
    h, w = value.shape
    k = max(3, round(border_frac * min(h, w)))
    corners = np.concatenate(
        [
            value[:k, :k].ravel(),
            value[:k, -k:].ravel(),
            value[-k:, :k].ravel(),
            value[-k:, -k:].ravel(),
        ]
    )
    level = float(np.median(corners))
    return level, 1.4826 * float(np.median(np.abs(corners - level))) + 1.0


def _edge_points(
    value: np.ndarray, region: np.ndarray, bg: float, noise: float, rays: int
) -> np.ndarray:
    """One edge point (x, y) per ray from the region's centroid, in thumbnail pixels."""
    h, w = value.shape
    ys, xs = np.nonzero(region)
    ox, oy = float(xs.mean()), float(ys.mean())
    angles = np.linspace(0, 2 * np.pi, rays, endpoint=False)
    length = int(np.hypot(h, w)) + 4
    steps = np.arange(length, dtype=np.float32)
    px = (ox + np.cos(angles)[:, None] * steps).astype(np.float32)  # (R, L)
    py = (oy + np.sin(angles)[:, None] * steps).astype(np.float32)
    inside = (px >= 0) & (px <= w - 1) & (py >= 0) & (py <= h - 1)
    profile = cv2.remap(value, px, py, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    on = inside & (cv2.remap(region.astype(np.uint8), px, py, cv2.INTER_NEAREST, borderValue=0) > 0)
    has = on.any(axis=1)
    last = length - 1 - np.argmax(on[:, ::-1], axis=1)  # (R,) the outermost bright sample
    # A ray still bright where it leaves the frame meets the frame, not the circle.
    beyond = np.minimum(last + 3, length - 1)
    keep = has & inside[np.arange(rays), beyond]
    if not keep.any():
        return np.empty((0, 2))
    # Refine each to the sharpest drop to near the background: mostly inward (the bright
    # area may take in a halo or flare ring around the aperture, a fifth of the radius wide
    # when a tone curve lifts it), a little outward (a dim rim may fall below the level).
    reach = max(3, int(0.3 * float(np.median(last[keep]))))
    offsets = np.arange(-reach, max(3, reach // 5) + 1)
    rows = np.arange(rays)[:, None]
    at = np.clip(last[:, None] + offsets[None], 2, length - 3)  # (R, K)
    inner = profile[rows, at - 2] - bg
    outer = profile[rows, at + 2] - bg
    edge = inside[rows, at + 2] & (outer <= 0.5 * inner) & (inner > 2 * noise + 2)
    drop = np.where(edge, inner - outer, -np.inf)
    best = np.where(edge.any(axis=1), at[np.arange(rays), np.argmax(drop, axis=1)], last)
    sel = np.nonzero(keep)[0]
    return np.column_stack([px[sel, best[sel]], py[sel, best[sel]]]).astype(np.float64)


def _ransac_circle(
    points: np.ndarray, h: int, w: int, params: FovParams
) -> tuple[float, float, float] | None:
    """The circle most edge points agree on, refined on its inliers; None if none is
    supported well enough (too few inliers, or all on a narrow arc)."""
    rng = np.random.default_rng(0)  # deterministic: the same photo, the same FOV
    n = len(points)
    trials = rng.integers(0, n, size=(400, 3))  # (T, 3)
    a, b, c = (points[trials[:, i]] for i in range(3))  # (T, 2) each
    circles = _circumcircles(a, b, c)  # (T, 3): cx, cy, r; NaN where collinear
    r_min = params.min_radius_frac * min(h, w)
    r_max = 0.75 * float(np.hypot(h, w))
    plausible = (
        np.isfinite(circles).all(axis=1)
        & (circles[:, 2] >= r_min)
        & (circles[:, 2] <= r_max)
        & (circles[:, 0] > -0.25 * w)
        & (circles[:, 0] < 1.25 * w)
        & (circles[:, 1] > -0.25 * h)
        & (circles[:, 1] < 1.25 * h)
    )
    if not plausible.any():
        return None
    circles = circles[plausible]
    dist = np.hypot(
        points[None, :, 0] - circles[:, None, 0], points[None, :, 1] - circles[:, None, 1]
    )
    tolerance = np.maximum(1.5, params.inlier_tol * circles[:, 2])
    votes = (np.abs(dist - circles[:, 2:3]) < tolerance[:, None]).sum(axis=1)
    cx, cy, r = circles[int(np.argmax(votes))]
    for _ in range(3):  # least squares on the inliers, then the inliers of that circle
        inliers = np.abs(np.hypot(points[:, 0] - cx, points[:, 1] - cy) - r) < max(
            1.5, params.inlier_tol * r
        )
        if inliers.sum() < 3:
            return None
        cx, cy, r = _fit_circle(points[inliers])
    angles = np.degrees(np.arctan2(points[inliers, 1] - cy, points[inliers, 0] - cx)) % 360
    sectors = len(np.unique((angles // 10).astype(int)))  # 10-degree sectors with inliers
    if inliers.sum() < max(12, 0.25 * n) or sectors < 6 or not r_min <= r <= r_max:
        return None
    return float(cx), float(cy), float(r)


def _circumcircles(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Circles through point triples (T, 2) x 3 -> (T, 3) cx, cy, r (NaN when collinear)."""
    (ax, ay), (bx, by), (cx, cy) = a.T, b.T, c.T
    d = 2 * (ax * (by - cy) + bx * (cy - ay) + cx * (ay - by))
    with np.errstate(divide="ignore", invalid="ignore"):
        sa, sb, sc = ax * ax + ay * ay, bx * bx + by * by, cx * cx + cy * cy
        ux = (sa * (by - cy) + sb * (cy - ay) + sc * (ay - by)) / d
        uy = (sa * (cx - bx) + sb * (ax - cx) + sc * (bx - ax)) / d
        out = np.column_stack([ux, uy, np.hypot(ax - ux, ay - uy)])
    out[np.abs(d) < 1e-9] = np.nan
    return out


def _fit_circle(points: np.ndarray) -> tuple[float, float, float]:
    """Least-squares (Kasa) circle through points (N, 2): centre x, y and radius."""
    x, y = points[:, 0], points[:, 1]
    a = np.column_stack([x, y, np.ones_like(x)])
    b = x * x + y * y
    sol, *_ = np.linalg.lstsq(a, b, rcond=None)
    cx, cy = sol[0] / 2, sol[1] / 2
    return float(cx), float(cy), float(np.sqrt(max(sol[2] + cx * cx + cy * cy, 0.0)))


def _graphic_reason(small: np.ndarray) -> str:
    """Why the image is flat or made of flat colours (a screenshot, a document, a drawing);
    empty for a photograph, whose sensor noise never leaves large areas of one exact colour."""
    value = small.max(axis=2)
    low, high = np.percentile(value, [2, 98])
    if high - low < 12:
        return "the image is flat (nearly one colour throughout)"
    # Exactly uniform 3x3 neighbourhoods, in all three channels, away from a black surround.
    spread = cv2.dilate(small, np.ones((3, 3), np.uint8)) - cv2.erode(
        small, np.ones((3, 3), np.uint8)
    )
    uniform = spread.max(axis=2) == 0
    shown = value > low + 0.1 * (high - low)
    share = float(uniform[shown].mean()) if shown.any() else 1.0
    if share > 0.5:
        return (
            f"{share:.0%} of it is areas of one exact colour, as in a screenshot, a document "
            "or a drawing"
        )
    return ""


def _colour_reason(small: np.ndarray, region: np.ndarray) -> str:
    """Why the bright region's colours are not a retina's; empty when they are. The fundus is
    red-led under every camera's white balance; grey or multicoloured images are not."""
    pixels = small[region].astype(np.int16)  # (N, 3)
    if len(pixels) == 0:
        return "nothing in it is bright"
    red_led = (pixels[:, 0] > pixels[:, 1] + 4) & (pixels[:, 0] > pixels[:, 2] + 4)
    share = float(red_led.mean())
    if share < 0.5:
        return f"only {share:.0%} of its bright area has the red-led colour of a retina"
    return ""
