"""Grader's geometry from the disc and the fovea: DD and mm, laterality, quadrants, the ETDRS
grid and the per-photo haemorrhage summary. Pure functions of an `Anatomy` and the lesions,
so the viewer, the CLI and the label file agree.

Conventions (the tests check each on synthetic cases with known answers):
- Image coordinates: x to the right, y DOWN, as the photo is stored and shown. Photos are
  taken upright and not mirrored (a fundus camera's normal output); a mirrored or
  rotated photo makes the side and the quadrants wrong, and nothing here can tell.
- Distances are in disc diameters (DD): pixels divided by the disc's equivalent-circle
  diameter in the same photo. Millimetres assume the `Scale` the record names (1 DD =
  1.8 mm by default); mm2 is a flat-image figure that ignores the eye's curvature.
- Laterality: in a photo of a right eye the disc lies to the right of the fovea (nasal is
  towards the nose, which is on the image's right for a right eye seen from the front).
  It is "unknown" when either landmark is missing, when they are less than 1 DD apart, or
  when the disc-fovea axis is closer to vertical than to horizontal (a rotated photo, or a
  landmark in the wrong place).
- Quadrants are centred on the fovea and split by the disc-fovea axis and its
  perpendicular: nasal is the side towards the disc, temporal the side away from it;
  superior is the side of the perpendicular that points up in the image. So the same rule
  serves both eyes: in a right eye temporal is the image's left, in a left eye its right.
  A point on the axis counts as superior, a point on the perpendicular as temporal.
- The ETDRS grid: circles of 1, 3 and 6 mm diameter on the fovea; the inner and outer rings
  are cut into superior, nasal, inferior and temporal sectors by the two diagonals at 45
  degrees to the disc-fovea axis (the grid is aligned with that axis, not with the image's
  horizontal; they differ by the few degrees the fovea sits below the disc).
- A lesion is placed by its centroid: its quadrant, its distance to the fovea, "within
  1 DD of the fovea" (centroid distance <= 1 DD).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from inference.anatomy.types import QUADRANTS, Anatomy, Laterality, Origin, Point, Quadrant, Scale

#: Landmarks closer than this (in DD) are not trusted to tell the eye's side.
MIN_SEPARATION_DD = 1.0
#: ETDRS circle diameters in mm: the central subfield, the inner ring, the outer ring.
ETDRS_DIAMETERS_MM = (1.0, 3.0, 6.0)
#: "Near the fovea": a haemorrhage within this many DD of the fovea is a maculopathy marker.
NEAR_FOVEA_DD = 1.0


class LesionLike(Protocol):
    """What the summary needs of a lesion (inference.postprocess.Lesion has it)."""

    @property
    def id(self) -> int: ...

    @property
    def centroid(self) -> tuple[float, float]: ...

    @property
    def area_px(self) -> int: ...


# ----------------------------------------------------------------------------------------------
# Units


def to_dd(length_px: float, disc_diameter_px: float) -> float:
    """A length in pixels as disc diameters."""
    _check_diameter(disc_diameter_px)
    return length_px / disc_diameter_px


def dd_to_px(length_dd: float, disc_diameter_px: float) -> float:
    _check_diameter(disc_diameter_px)
    return length_dd * disc_diameter_px


def to_mm(length_px: float, disc_diameter_px: float, scale: Scale) -> float:
    """A length in pixels as millimetres, by the scale convention."""
    return to_dd(length_px, disc_diameter_px) * scale.disc_diameter_mm


def mm_to_px(length_mm: float, disc_diameter_px: float, scale: Scale) -> float:
    return dd_to_px(length_mm / scale.disc_diameter_mm, disc_diameter_px)


def area_to_mm2(area_px: float, disc_diameter_px: float, scale: Scale) -> float:
    """An area in pixels as mm2 (flat-image figure), by the scale convention."""
    mm_per_px = to_mm(1.0, disc_diameter_px, scale)
    return area_px * mm_per_px * mm_per_px


def _check_diameter(disc_diameter_px: float) -> None:
    if not disc_diameter_px > 0:
        raise ValueError(f"a disc diameter of {disc_diameter_px} px cannot be a unit")


def distance(a: Point, b: Point) -> float:
    return math.hypot(a[0] - b[0], a[1] - b[1])


# ----------------------------------------------------------------------------------------------
# Laterality


def laterality_of(
    disc_center: Point | None, fovea: Point | None, disc_diameter: float | None
) -> tuple[Laterality, str]:
    """The eye's side from the disc's side of the fovea, with how it was decided."""
    if disc_center is None or disc_diameter is None:
        return Laterality.UNKNOWN, "unknown: the optic disc was not found"
    if fovea is None:
        return Laterality.UNKNOWN, "unknown: the fovea was not found"
    dx = disc_center[0] - fovea[0]
    dy = disc_center[1] - fovea[1]
    separation = to_dd(math.hypot(dx, dy), disc_diameter)
    if separation < MIN_SEPARATION_DD:
        return (
            Laterality.UNKNOWN,
            f"unknown: the disc and the fovea are only {separation:.1f} DD apart",
        )
    if abs(dx) < abs(dy):
        return (
            Laterality.UNKNOWN,
            "unknown: the disc lies above or below the fovea rather than beside it "
            "(a rotated photo?)",
        )
    if dx > 0:
        return Laterality.RIGHT, "right eye: the disc lies to the right of the fovea"
    return Laterality.LEFT, "left eye: the disc lies to the left of the fovea"


# ----------------------------------------------------------------------------------------------
# Quadrants


@dataclass(frozen=True)
class QuadrantFrame:
    """The fovea-centred frame: unit vectors towards nasal (the disc) and superior, in image
    coordinates (y down)."""

    fovea: Point
    nasal: tuple[float, float]
    superior: tuple[float, float]

    def coordinates(self, point: Point) -> tuple[float, float]:
        """(nasal, superior) components of `point - fovea`, in pixels."""
        dx, dy = point[0] - self.fovea[0], point[1] - self.fovea[1]
        return (
            dx * self.nasal[0] + dy * self.nasal[1],
            dx * self.superior[0] + dy * self.superior[1],
        )

    def quadrant_of(self, point: Point) -> Quadrant:
        nasal, superior = self.coordinates(point)
        if superior >= 0:
            return Quadrant.SUPERONASAL if nasal > 0 else Quadrant.SUPEROTEMPORAL
        return Quadrant.INFERONASAL if nasal > 0 else Quadrant.INFEROTEMPORAL

    def lines(self, half_length_px: float) -> tuple[tuple[Point, Point], tuple[Point, Point]]:
        """The two quadrant lines through the fovea, to draw: along the disc-fovea axis and
        along its perpendicular, each `half_length_px` either side."""
        fx, fy = self.fovea
        h = half_length_px
        axis = (
            (fx - h * self.nasal[0], fy - h * self.nasal[1]),
            (fx + h * self.nasal[0], fy + h * self.nasal[1]),
        )
        perpendicular = (
            (fx - h * self.superior[0], fy - h * self.superior[1]),
            (fx + h * self.superior[0], fy + h * self.superior[1]),
        )
        return axis, perpendicular


def quadrant_frame(anatomy: Anatomy) -> tuple[QuadrantFrame | None, str]:
    """The frame the quadrants are cut in, or None and why it cannot be drawn."""
    if anatomy.fovea is None:
        return None, "no quadrants: the fovea was not found"
    if anatomy.disc_center is None:
        return None, "no quadrants: the optic disc was not found"
    fx, fy = anatomy.fovea
    dx, dy = anatomy.disc_center[0] - fx, anatomy.disc_center[1] - fy
    length = math.hypot(dx, dy)
    if length == 0:
        return None, "no quadrants: the disc and the fovea are at the same place"
    ux, uy = dx / length, dy / length
    if abs(dx) >= abs(dy):
        # Superior is the perpendicular that points up on the screen (y down: negative y);
        # with the axis nearer horizontal than vertical, |ux| > 0 picks exactly one.
        vx, vy = (uy, -ux) if ux > 0 else (-uy, ux)
    elif anatomy.laterality_origin is Origin.REVIEWER and anatomy.laterality in (
        Laterality.RIGHT,
        Laterality.LEFT,
    ):
        # A near-vertical axis has no "up" side of its own; the reviewer's word on the eye
        # fixes it: superior is nasal turned a quarter towards the top of the fundus, which
        # is counter-clockwise on the screen for a right eye and clockwise for a left one.
        if anatomy.laterality is Laterality.RIGHT:
            vx, vy = uy, -ux
        else:
            vx, vy = -uy, ux
    else:
        return (
            None,
            "no quadrants: the disc lies above or below the fovea rather than beside it, "
            "so superior cannot be told from nasal (a rotated photo?)",
        )
    return QuadrantFrame(fovea=(fx, fy), nasal=(ux, uy), superior=(vx, vy)), ""


# ----------------------------------------------------------------------------------------------
# The ETDRS grid


@dataclass(frozen=True)
class EtdrsSector:
    name: str  # "central", "inner superior", ..., "outer temporal"
    inner_radius_px: float
    outer_radius_px: float
    # the sector's middle direction (unit vector, image coordinates); (0, 0) for the centre
    direction: tuple[float, float]

    @property
    def label_anchor(self) -> tuple[float, float]:
        """Offset from the fovea where the sector's name or figure can be drawn."""
        r = (self.inner_radius_px + self.outer_radius_px) / 2 if self.inner_radius_px else 0.0
        return (self.direction[0] * r, self.direction[1] * r)


@dataclass(frozen=True)
class EtdrsGrid:
    """What the viewer draws: three circles on the fovea and the four diagonal spokes that cut
    the rings into sectors, in full-resolution pixels."""

    center: Point
    radii_px: tuple[float, float, float]  # of the 1, 3 and 6 mm circles
    spokes: tuple[tuple[Point, Point], ...]  # from the 1 mm circle to the 6 mm circle
    sectors: tuple[EtdrsSector, ...]
    scale: Scale

    def sector_of(self, point: Point) -> str | None:
        """The sector holding `point`, or None outside the 6 mm circle."""
        dx, dy = point[0] - self.center[0], point[1] - self.center[1]
        r = math.hypot(dx, dy)
        if r <= self.radii_px[0]:
            return "central"
        if r > self.radii_px[2]:
            return None
        ring = "inner" if r <= self.radii_px[1] else "outer"
        best = max(
            (s for s in self.sectors if s.name.startswith(ring)),
            key=lambda s: dx * s.direction[0] + dy * s.direction[1],
        )
        return best.name


def etdrs_grid(anatomy: Anatomy) -> tuple[EtdrsGrid | None, str]:
    """The ETDRS grid on the fovea, aligned with the disc-fovea axis; None and why without it."""
    frame, reason = quadrant_frame(anatomy)
    if frame is None:
        return None, reason.replace("no quadrants", "no ETDRS grid")
    assert anatomy.disc_diameter is not None  # a frame needs the disc
    radii = tuple(mm_to_px(d / 2, anatomy.disc_diameter, anatomy.scale) for d in ETDRS_DIAMETERS_MM)
    r1, r3, r6 = radii
    n, s = frame.nasal, frame.superior
    directions = {
        "superior": s,
        "nasal": n,
        "inferior": (-s[0], -s[1]),
        "temporal": (-n[0], -n[1]),
    }
    sectors = [EtdrsSector("central", 0.0, r1, (0.0, 0.0))]
    for ring, inner, outer in (("inner", r1, r3), ("outer", r3, r6)):
        sectors.extend(
            EtdrsSector(f"{ring} {name}", inner, outer, d) for name, d in directions.items()
        )
    fx, fy = frame.fovea
    spokes = []
    for a, b in ((1, 1), (1, -1), (-1, 1), (-1, -1)):
        # a diagonal: halfway between nasal/temporal and superior/inferior
        dx = (a * n[0] + b * s[0]) / math.sqrt(2)
        dy = (a * n[1] + b * s[1]) / math.sqrt(2)
        spokes.append(((fx + r1 * dx, fy + r1 * dy), (fx + r6 * dx, fy + r6 * dy)))
    grid = EtdrsGrid(
        center=frame.fovea,
        radii_px=(r1, r3, r6),
        spokes=tuple(spokes),
        sectors=tuple(sectors),
        scale=anatomy.scale,
    )
    return grid, ""


# ----------------------------------------------------------------------------------------------
# Lesions in the grader's terms


@dataclass(frozen=True)
class LesionPlace:
    """Where one lesion lies, in the grader's terms."""

    id: int
    area_px: int
    quadrant: Quadrant | None
    distance_px: float | None  # centroid to fovea
    distance_dd: float | None
    area_mm2: float | None
    etdrs_sector: str | None  # None outside the 6 mm circle or without a grid

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "area_px": self.area_px,
            "quadrant": None if self.quadrant is None else str(self.quadrant),
            "distance_to_fovea_px": self.distance_px,
            "distance_to_fovea_dd": self.distance_dd,
            "area_mm2": self.area_mm2,
            "etdrs_sector": self.etdrs_sector,
        }


@dataclass(frozen=True)
class QuadrantTally:
    count: int = 0
    area_px: int = 0
    area_mm2: float | None = None


@dataclass(frozen=True)
class PhotoSummary:
    """Haemorrhages per quadrant and near the fovea, for one photo at one threshold.

    A flag that cannot be decided (no quadrants, no fovea or no disc) is None, and
    `reasons` says why; it is never reported as False.
    """

    lesions: tuple[LesionPlace, ...]
    quadrants: dict[Quadrant, QuadrantTally] | None
    in_all_four_quadrants: bool | None
    near_fovea_count: int | None  # lesions within NEAR_FOVEA_DD of the fovea
    within_1dd_of_fovea: bool | None
    laterality: Laterality
    scale: Scale
    reasons: tuple[str, ...] = field(default=())

    @property
    def count(self) -> int:
        return len(self.lesions)

    def to_dict(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "laterality": str(self.laterality),
            "scale": self.scale.to_dict(),
            "quadrants": (
                None
                if self.quadrants is None
                else {
                    str(q): {"count": t.count, "area_px": t.area_px, "area_mm2": t.area_mm2}
                    for q, t in self.quadrants.items()
                }
            ),
            "in_all_four_quadrants": self.in_all_four_quadrants,
            "near_fovea_count": self.near_fovea_count,
            "within_1dd_of_fovea": self.within_1dd_of_fovea,
            "reasons": list(self.reasons),
            "lesions": [p.to_dict() for p in self.lesions],
        }


def place_lesions(lesions: Iterable[LesionLike], anatomy: Anatomy) -> tuple[LesionPlace, ...]:
    """Each lesion's quadrant, distance to the fovea, area in mm2 and ETDRS sector."""
    frame, _ = quadrant_frame(anatomy)
    grid, _ = etdrs_grid(anatomy)
    places = []
    for lesion in lesions:
        centroid = (float(lesion.centroid[0]), float(lesion.centroid[1]))
        d_px = distance(centroid, anatomy.fovea) if anatomy.fovea is not None else None
        dd = anatomy.disc_diameter
        places.append(
            LesionPlace(
                id=int(lesion.id),
                area_px=int(lesion.area_px),
                quadrant=frame.quadrant_of(centroid) if frame is not None else None,
                distance_px=d_px,
                distance_dd=to_dd(d_px, dd) if d_px is not None and dd is not None else None,
                area_mm2=area_to_mm2(lesion.area_px, dd, anatomy.scale) if dd else None,
                etdrs_sector=grid.sector_of(centroid) if grid is not None else None,
            )
        )
    return tuple(places)


def summarise(lesions: Sequence[LesionLike], anatomy: Anatomy) -> PhotoSummary:
    """The photo's haemorrhage summary: count and area per quadrant, "in all four quadrants",
    "within 1 DD of the fovea". Call it again whenever the lesions change (threshold, edits)."""
    places = place_lesions(lesions, anatomy)
    reasons: list[str] = []
    frame, why = quadrant_frame(anatomy)
    quadrants: dict[Quadrant, QuadrantTally] | None = None
    all_four: bool | None = None
    if frame is None:
        reasons.append(why)
    else:
        quadrants = {}
        for q in QUADRANTS:
            inside = [p for p in places if p.quadrant is q]
            area = sum(p.area_px for p in inside)
            mm2 = (
                area_to_mm2(area, anatomy.disc_diameter, anatomy.scale)
                if anatomy.disc_diameter
                else None
            )
            quadrants[q] = QuadrantTally(count=len(inside), area_px=area, area_mm2=mm2)
        all_four = all(t.count > 0 for t in quadrants.values())
    near: int | None = None
    within: bool | None = None
    if anatomy.fovea is None:
        reasons.append("no distance to the fovea: the fovea was not found")
    elif anatomy.disc_diameter is None:
        reasons.append("no distance in DD: the optic disc was not found")
    else:
        near = sum(
            1 for p in places if p.distance_dd is not None and p.distance_dd <= NEAR_FOVEA_DD
        )
        within = near > 0
    return PhotoSummary(
        lesions=places,
        quadrants=quadrants,
        in_all_four_quadrants=all_four,
        near_fovea_count=near,
        within_1dd_of_fovea=within,
        laterality=anatomy.laterality,
        scale=anatomy.scale,
        reasons=tuple(reasons),
    )
