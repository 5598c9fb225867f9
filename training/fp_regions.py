"""Where a false positive can sit: the field-of-view rim band, the optic disc and its rim,
the macula, along vessels (an approximate map). See training.fp_analysis for what is
approximate about each."""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from inference.fov import FieldOfView


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
