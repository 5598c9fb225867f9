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

The detector is part of what a photo goes through before the model, so a model records it
(`FovParams`, in its preprocessing recipe): the tag `DETECTOR`, the tunable parameters and
the fixed numbers (`DetectorConstants`). A tag stands for exactly one set of numbers, forever:
change any of them and the detector is another one, with a new tag (tests/inference/test_fov.py pins
each tag to its numbers). A model recorded with a detector this module does not implement
cannot be given the crops it was trained on, so it is refused (`UnsupportedDetectorError`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import cv2
import numpy as np

from inference.errors import NotFundusError

#: How a field of view was found.
METHOD_CIRCLE = "circle"  # fitted to the edge of the field of view
METHOD_BOUNDING_BOX = "bounding-box"  # estimated: the bright region's bounding box
METHOD_WHOLE_FRAME = "whole-frame"  # estimated: the whole photo

#: The detector this module implements, as a model records it.
DETECTOR = "adaptive-1"


@dataclass(frozen=True)
class DetectorConstants:
    """The fixed numbers of the detector `DETECTOR` names; brightness levels are 0-255.

    Not tunable per model: each one decides which circle some photo gets. Changing one makes
    another detector; give it a new `DETECTOR` tag (tests/inference/test_fov.py fails until you do).
    """

    min_side_px: int = 64  # the shortest side a photo needs for a field of view to be found
    median_blur_px: int = 5  # smooths the thumbnail's brightness (max of R, G, B) first
    min_background_px: int = 3  # the corner patches' side at least
    noise_floor: float = 1.0  # added to the corners' robust sigma: no photo is noise-free
    # 1. A dark surround: the middle's level (this percentile of the central half) stands at
    # least this far above the corners', in levels and as a share of the middle's level.
    centre_percentile: float = 60.0
    min_surround_contrast: float = 20.0
    min_surround_contrast_share: float = 0.4
    # 2. Bright: above the corners by this many noise sigmas plus an offset, and by this share
    # of the contrast; then opened with an ellipse this wide (drops specks).
    bright_noise_sigmas: float = 3.0
    bright_noise_offset: float = 3.0
    bright_contrast_share: float = 0.06
    open_kernel_px: int = 5
    # 3. Edge points: a ray still bright this far past its last bright sample meets the frame;
    # the refinement searches this share of the median radius inward and a fifth of that
    # (this divisor) outward, for the largest drop measured this many samples either side,
    # down to at most this share of the level inside, which stands above the corners by
    # this many noise sigmas plus an offset.
    frame_margin_px: int = 3
    refine_inward_share: float = 0.3
    refine_outward_divisor: int = 5
    min_refine_px: int = 3
    edge_step_px: int = 2
    edge_drop_share: float = 0.5
    edge_noise_sigmas: float = 2.0
    edge_noise_offset: float = 2.0
    # 4. The circle: RANSAC over this many random triples (seeded: the same photo, the same
    # FOV), with its centre within this share of the thumbnail's side outside it and its
    # radius at most this share of its diagonal; inliers within inlier_tol (FovParams) of the
    # radius but at least this many pixels; this many least-squares rounds; accepted with at
    # least this many inliers and this share of the edge points, in this many sectors of
    # this many degrees.
    ransac_seed: int = 0
    ransac_trials: int = 400
    max_centre_outside_share: float = 0.25
    max_radius_diagonal_share: float = 0.75
    min_inlier_tol_px: float = 1.5
    refit_rounds: int = 3
    min_edge_points: int = 12
    min_inlier_share: float = 0.25
    sector_degrees: float = 10.0
    min_sectors: int = 6
    # The fitted circle is the FOV when less than this share of the clearly bright area (this
    # share of the contrast above the corners) lies beyond this multiple of its radius, and
    # more than this share of the disc stands above the corners by this many noise sigmas
    # plus an offset; its edge may run this many pixels past the thumbnail's before it counts
    # as clipped.
    clearly_bright_share: float = 0.3
    spill_radius_factor: float = 1.03
    max_spill_share: float = 0.05
    min_retina_share: float = 0.8
    retina_noise_sigmas: float = 2.0
    retina_noise_offset: float = 2.0
    clip_margin_px: float = 1.0
    # Not a photo: its brightness spans fewer levels than this between these percentiles, or
    # more than this share of what is shown (above this share of that span) is exactly
    # uniform 3x3 neighbourhoods; or, with no circle, less than this share of the bright area
    # is red-led: red above green and blue by more than this many levels.
    flat_low_percentile: float = 2.0
    flat_high_percentile: float = 98.0
    min_flat_span: float = 12.0
    shown_span_share: float = 0.1
    max_uniform_share: float = 0.5
    min_red_led_share: float = 0.5
    red_led_margin: int = 4


#: The numbers this module runs with.
CONSTANTS = DetectorConstants()

#: The detectors this module implements, by tag, and their numbers: one (models recorded with
#: another are refused; see the note on FovParams for those recorded before the numbers were).
IMPLEMENTED = {DETECTOR: CONSTANTS}


class UnsupportedDetectorError(ValueError):
    """A recorded field-of-view detector this code does not implement."""


@dataclass(frozen=True)
class FovParams:
    """How the field of view is found, as a model's preprocessing recipe records it.

    Model files made before the detector's numbers were recorded (contract schemas 1 and 2,
    the shipped model among them) are read with `constants` left at the default, i.e. as
    today's "adaptive-1". Schema-2 files name "adaptive-1", and that is what made them: this
    module had not changed since the adaptive detector went in (64a034b, before the shipped
    model's export in b7d6423), and from here on the tag is pinned to these numbers. Schema-1
    files recorded a fixed `threshold` and `min_fill` for the earlier fixed-threshold detector
    instead; they are read without them and run with "adaptive-1", which finds the same circle
    on the photos they were trained on (tests/inference/test_fov.py and test_contract.py).
    """

    detector: str = DETECTOR
    analysis_size: int = 512  # longest side of the thumbnail the search runs on
    margin: float = 0.02  # extra border around the circle, as a fraction of its radius
    min_radius_frac: float = 0.2  # of the photo's shorter side
    border_frac: float = 0.04  # corner patches that give the background, of the shorter side
    rays: int = 360  # edge points: one per ray from the bright area's centre
    inlier_tol: float = 0.012  # an edge point within this fraction of the radius fits
    constants: DetectorConstants = field(default_factory=DetectorConstants)

    def __post_init__(self) -> None:
        problem = unsupported_detector(self.detector, self.constants)
        if problem:
            raise UnsupportedDetectorError(problem)


def unsupported_detector(detector: str, constants: DetectorConstants | None = None) -> str:
    """Why this module cannot find a field of view the way `detector` with `constants` (when
    recorded) does; empty when it can."""
    if detector not in IMPLEMENTED:
        return (
            f"its field of view is found by detector {detector!r}, which this Hemaview does not "
            f"implement (it implements {', '.join(map(repr, IMPLEMENTED))})"
        )
    ours = IMPLEMENTED[detector]
    if constants is not None and constants != ours:
        theirs, mine = asdict(constants), asdict(ours)
        changed = ", ".join(
            f"{name} {theirs[name]!r} (here {mine[name]!r})"
            for name in mine
            if theirs[name] != mine[name]
        )
        return (
            f"its field-of-view detector {detector!r} is recorded with other numbers than "
            f"this Hemaview's: {changed}"
        )
    return ""


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
    c = CONSTANTS  # FovParams refuses any other detector, so these are the recorded numbers
    h, w = rgb.shape[:2]
    if min(h, w) < c.min_side_px:
        raise NotFundusError(
            f"the image is only {w}x{h} pixels: too small to be a fundus photograph"
        )
    small, scale = _thumbnail(rgb, params.analysis_size)
    reason = _graphic_reason(small)
    if reason:
        raise NotFundusError(f"this does not look like a fundus photograph: {reason}")
    value = _channel_max(small)
    value = cv2.medianBlur(value, c.median_blur_px).astype(np.float32)
    sh, sw = value.shape
    bg, noise = _background(value, params.border_frac)
    centre = value[sh // 4 : 3 * sh // 4, sw // 4 : 3 * sw // 4]
    contrast = float(np.percentile(centre, c.centre_percentile)) - bg
    # No dark surround (the retina fills the frame, or this is no fundus): the corners are
    # not much darker than the middle.
    if contrast < max(c.min_surround_contrast, c.min_surround_contrast_share * (contrast + bg)):
        reason = _colour_reason(small, np.ones((sh, sw), bool))
        if reason:
            raise NotFundusError(f"this does not look like a fundus photograph: {reason}")
        return whole_frame(h, w, "no dark surround: the field of view is the whole photo")

    # Bright: clearly above the background's noise, and a small part of the photo's contrast
    # (low enough that a dim, vignetted or darkened rim still counts).
    level = max(
        c.bright_noise_sigmas * noise + c.bright_noise_offset, c.bright_contrast_share * contrast
    )
    bright_enough = (value > bg + level).astype(np.uint8)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (c.open_kernel_px, c.open_kernel_px))
    lit = cv2.morphologyEx(bright_enough, cv2.MORPH_OPEN, kernel)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(lit, connectivity=8)
    if count < 2:
        raise NotFundusError("no field of view found: the photo is dark throughout")
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    region = labels == largest

    points = _edge_points(value, region, bg, noise, params.rays)
    fit = _ransac_circle(points, sh, sw, params) if len(points) >= c.min_edge_points else None
    inv = 1.0 / scale
    if fit is not None:
        cx, cy, r = fit
        yy, xx = np.ogrid[:sh, :sw]
        d2 = (xx - cx) ** 2 + (yy - cy) ** 2
        disc = d2 <= r**2
        # Clearly bright area outside the circle means the circle is not the FOV's edge (a
        # dim halo or flare ring around the aperture is no such area).
        bright = region & (value > bg + c.clearly_bright_share * contrast)
        beyond = d2 > (c.spill_radius_factor * r) ** 2
        spill = float(bright[beyond].sum()) / max(int(bright.sum()), 1)
        # And the disc is retina: above the background, if dimly (a darkened half is dim,
        # not black); a circle through one arc of some other shape takes in the surround.
        dim = bg + c.retina_noise_sigmas * noise + c.retina_noise_offset
        retina = (value > dim)[disc].mean() if disc.any() else 0.0
        if spill < c.max_spill_share and retina > c.min_retina_share:
            fill = float(region[disc].sum()) / max(int(disc.sum()), 1)
            m = c.clip_margin_px
            clipped = cx - r < -m or cy - r < -m or cx + r > sw + m or cy + r > sh + m
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
    k = max(CONSTANTS.min_background_px, round(border_frac * min(h, w)))
    corners = np.concatenate(
        [
            value[:k, :k].ravel(),
            value[:k, -k:].ravel(),
            value[-k:, :k].ravel(),
            value[-k:, -k:].ravel(),
        ]
    )
    level = float(np.median(corners))
    # 1.4826: the median absolute deviation of a normal distribution, in sigmas
    return level, 1.4826 * float(np.median(np.abs(corners - level))) + CONSTANTS.noise_floor


def _edge_points(
    value: np.ndarray, region: np.ndarray, bg: float, noise: float, rays: int
) -> np.ndarray:
    """One edge point (x, y) per ray from the region's centroid, in thumbnail pixels."""
    c = CONSTANTS
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
    beyond = np.minimum(last + c.frame_margin_px, length - 1)
    keep = has & inside[np.arange(rays), beyond]
    if not keep.any():
        return np.empty((0, 2))
    # Refine each to the sharpest drop to near the background: mostly inward (the bright
    # area may take in a halo or flare ring around the aperture, a fifth of the radius wide
    # when a tone curve lifts it), a little outward (a dim rim may fall below the level).
    reach = max(c.min_refine_px, int(c.refine_inward_share * float(np.median(last[keep]))))
    offsets = np.arange(-reach, max(c.min_refine_px, reach // c.refine_outward_divisor) + 1)
    rows = np.arange(rays)[:, None]
    step = c.edge_step_px
    at = np.clip(last[:, None] + offsets[None], step, length - 1 - step)  # (R, K)
    inner = profile[rows, at - step] - bg
    outer = profile[rows, at + step] - bg
    edge = (
        inside[rows, at + step]
        & (outer <= c.edge_drop_share * inner)
        & (inner > c.edge_noise_sigmas * noise + c.edge_noise_offset)
    )
    drop = np.where(edge, inner - outer, -np.inf)
    best = np.where(edge.any(axis=1), at[np.arange(rays), np.argmax(drop, axis=1)], last)
    sel = np.nonzero(keep)[0]
    return np.column_stack([px[sel, best[sel]], py[sel, best[sel]]]).astype(np.float64)


def _ransac_circle(
    points: np.ndarray, h: int, w: int, params: FovParams
) -> tuple[float, float, float] | None:
    """The circle most edge points agree on, refined on its inliers; None if none is
    supported well enough (too few inliers, or all on a narrow arc)."""
    c = CONSTANTS
    rng = np.random.default_rng(c.ransac_seed)  # deterministic: the same photo, the same FOV
    n = len(points)
    trials = rng.integers(0, n, size=(c.ransac_trials, 3))  # (T, 3)
    a, b, z = (points[trials[:, i]] for i in range(3))  # (T, 2) each
    circles = _circumcircles(a, b, z)  # (T, 3): cx, cy, r; NaN where collinear
    r_min = params.min_radius_frac * min(h, w)
    r_max = c.max_radius_diagonal_share * float(np.hypot(h, w))
    out = c.max_centre_outside_share
    plausible = (
        np.isfinite(circles).all(axis=1)
        & (circles[:, 2] >= r_min)
        & (circles[:, 2] <= r_max)
        & (circles[:, 0] > -out * w)
        & (circles[:, 0] < (1 + out) * w)
        & (circles[:, 1] > -out * h)
        & (circles[:, 1] < (1 + out) * h)
    )
    if not plausible.any():
        return None
    circles = circles[plausible]
    dist = np.hypot(
        points[None, :, 0] - circles[:, None, 0], points[None, :, 1] - circles[:, None, 1]
    )
    tolerance = np.maximum(c.min_inlier_tol_px, params.inlier_tol * circles[:, 2])
    votes = (np.abs(dist - circles[:, 2:3]) < tolerance[:, None]).sum(axis=1)
    cx, cy, r = circles[int(np.argmax(votes))]
    for _ in range(c.refit_rounds):  # least squares on the inliers, then that circle's inliers
        inliers = np.abs(np.hypot(points[:, 0] - cx, points[:, 1] - cy) - r) < max(
            c.min_inlier_tol_px, params.inlier_tol * r
        )
        if inliers.sum() < 3:
            return None
        cx, cy, r = _fit_circle(points[inliers])
    angles = np.degrees(np.arctan2(points[inliers, 1] - cy, points[inliers, 0] - cx)) % 360
    sectors = len(np.unique((angles // c.sector_degrees).astype(int)))  # sectors with inliers
    enough = max(c.min_edge_points, c.min_inlier_share * n)
    if inliers.sum() < enough or sectors < c.min_sectors or not r_min <= r <= r_max:
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


def _channel_max(image: np.ndarray) -> np.ndarray:
    """(H, W) uint8: the largest of each pixel's three channels, as image.max(axis=2) gives it
    but without numpy's slow reduction over a short last axis (5 ms on a thumbnail, 0.1)."""
    r, g, b = cv2.split(image)
    return np.asarray(cv2.max(cv2.max(r, g), b))


def _graphic_reason(small: np.ndarray) -> str:
    """Why the image is flat or made of flat colours (a screenshot, a document, a drawing);
    empty for a photograph, whose sensor noise never leaves large areas of one exact colour."""
    c = CONSTANTS
    value = _channel_max(small)
    low, high = np.percentile(value, [c.flat_low_percentile, c.flat_high_percentile])
    if high - low < c.min_flat_span:
        return "the image is flat (nearly one colour throughout)"
    # Exactly uniform 3x3 neighbourhoods, in all three channels, away from a black surround.
    spread = cv2.dilate(small, np.ones((3, 3), np.uint8)) - cv2.erode(
        small, np.ones((3, 3), np.uint8)
    )
    uniform = _channel_max(spread) == 0
    shown = value > low + c.shown_span_share * (high - low)
    share = float(uniform[shown].mean()) if shown.any() else 1.0
    if share > c.max_uniform_share:
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
    margin = CONSTANTS.red_led_margin
    red_led = (pixels[:, 0] > pixels[:, 1] + margin) & (pixels[:, 0] > pixels[:, 2] + margin)
    share = float(red_led.mean())
    if share < CONSTANTS.min_red_led_share:
        return f"only {share:.0%} of its bright area has the red-led colour of a retina"
    return ""
