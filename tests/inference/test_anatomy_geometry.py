"""The grader's geometry on synthetic photos with known answers: DD and mm, laterality,
quadrants for right and left eyes, the ETDRS grid, the summary flags, and decoding the
anatomy model's maps (inference.anatomy)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from inference.anatomy import (
    Anatomy,
    Laterality,
    Origin,
    Quadrant,
    Scale,
    area_to_mm2,
    dd_to_px,
    etdrs_grid,
    laterality_of,
    mm_to_px,
    quadrant_frame,
    summarise,
    to_dd,
    to_mm,
)
from inference.anatomy.decode import DecodeParams, decode, full_to_working, working_to_full
from inference.contract import PreprocessRecipe
from inference.fov import FieldOfView
from inference.postprocess import Lesion
from inference.preprocess import geometry_for

DD = 500.0  # disc diameter of the synthetic photos, px
SIZE = (4000, 3000)  # width, height


def eye(
    fovea: tuple[float, float] | None, disc: tuple[float, float] | None, **kw: object
) -> Anatomy:
    """A model-made record with the laterality derived as the decoder does."""
    diameter = DD if disc is not None else None
    side, reason = laterality_of(disc, fovea, diameter)
    return Anatomy(
        photo_size=SIZE,
        disc_center=disc,
        disc_diameter=diameter,
        fovea=fovea,
        laterality=side,
        laterality_reason=reason,
        disc_reason="" if disc else "not found (test)",
        fovea_reason="" if fovea else "not found (test)",
        **kw,  # type: ignore[arg-type]
    )


# A right eye: the disc 2.5 DD to the right of the fovea. A left eye: its mirror image.
RIGHT = eye(fovea=(2000.0, 1500.0), disc=(3250.0, 1500.0))
LEFT = eye(fovea=(2000.0, 1500.0), disc=(750.0, 1500.0))


def lesion(n: int, x: float, y: float, area: int = 100) -> Lesion:
    return Lesion(
        id=n,
        bbox=(int(x) - 5, int(y) - 5, 10, 10),
        area_px=area,
        centroid=(x, y),
        max_probability=0.9,
        mean_probability=0.8,
    )


# ---------------------------------------------------------------------------------------------
# Units


def test_disc_diameters_and_millimetres_by_the_stated_convention() -> None:
    assert to_dd(1250, DD) == pytest.approx(2.5)
    assert dd_to_px(1.0, DD) == pytest.approx(500)
    # 1 DD = 1.8 mm by default: 500 px is 1.8 mm, 1 mm is 277.8 px
    assert to_mm(500, DD, Scale()) == pytest.approx(1.8)
    assert mm_to_px(1.0, DD, Scale()) == pytest.approx(500 / 1.8)
    assert area_to_mm2(500 * 500, DD, Scale()) == pytest.approx(1.8 * 1.8)
    # a clinic that takes 1.5 mm gets every mm figure scaled, and the record says so
    assert to_mm(500, DD, Scale(1.5)) == pytest.approx(1.5)
    assert RIGHT.with_scale(Scale(1.5)).px_per_mm == pytest.approx(500 / 1.5)
    assert "1.8 mm" in Scale().name and "1.5 mm" in Scale(1.5).name
    assert RIGHT.to_dict()["scale"] == {"disc_diameter_mm": 1.8, "convention": Scale().name}
    with pytest.raises(ValueError, match="not plausible"):
        Scale(18.0)
    with pytest.raises(ValueError):
        to_dd(10, 0.0)


# ---------------------------------------------------------------------------------------------
# Laterality


def test_laterality_from_the_discs_side_of_the_fovea() -> None:
    assert RIGHT.laterality is Laterality.RIGHT
    assert LEFT.laterality is Laterality.LEFT
    assert "right of the fovea" in RIGHT.laterality_reason
    side, reason = laterality_of((3250.0, 1500.0), None, DD)
    assert side is Laterality.UNKNOWN and "fovea was not found" in reason
    side, reason = laterality_of(None, (2000.0, 1500.0), None)
    assert side is Laterality.UNKNOWN and "disc was not found" in reason
    # too close to tell, and an axis nearer vertical than horizontal (a rotated photo)
    assert laterality_of((2300.0, 1500.0), (2000.0, 1500.0), DD)[0] is Laterality.UNKNOWN
    assert laterality_of((2300.0, 2800.0), (2000.0, 1500.0), DD)[0] is Laterality.UNKNOWN
    # the usual tilt (fovea a little below the disc) does not matter
    assert laterality_of((3250.0, 1350.0), (2000.0, 1500.0), DD)[0] is Laterality.RIGHT


# ---------------------------------------------------------------------------------------------
# Quadrants


@pytest.mark.parametrize(
    ("anatomy", "dx", "dy", "expected"),
    [
        # right eye: temporal is the image's left (away from the disc), superior is up (-y)
        (RIGHT, -300, -300, Quadrant.SUPEROTEMPORAL),
        (RIGHT, +300, -300, Quadrant.SUPERONASAL),
        (RIGHT, -300, +300, Quadrant.INFEROTEMPORAL),
        (RIGHT, +300, +300, Quadrant.INFERONASAL),
        # left eye: temporal is the image's right
        (LEFT, +300, -300, Quadrant.SUPEROTEMPORAL),
        (LEFT, -300, -300, Quadrant.SUPERONASAL),
        (LEFT, +300, +300, Quadrant.INFEROTEMPORAL),
        (LEFT, -300, +300, Quadrant.INFERONASAL),
    ],
)
def test_quadrants_of_right_and_left_eyes(
    anatomy: Anatomy, dx: float, dy: float, expected: Quadrant
) -> None:
    frame, reason = quadrant_frame(anatomy)
    assert frame is not None, reason
    assert frame.quadrant_of((2000 + dx, 1500 + dy)) is expected


def test_quadrants_follow_a_tilted_disc_fovea_axis() -> None:
    # The disc 30 degrees above the fovea's horizontal in a right eye: a point straight above
    # the fovea lies nasal of the tilted perpendicular, and one on the temporal side of the
    # image just below the horizontal is still superotemporal in the tilted frame.
    angle = math.radians(30)
    disc = (2000 + 1250 * math.cos(angle), 1500 - 1250 * math.sin(angle))
    tilted = eye(fovea=(2000.0, 1500.0), disc=disc)
    frame, _ = quadrant_frame(tilted)
    assert frame is not None
    assert frame.quadrant_of((2000.0, 1000.0)) is Quadrant.SUPERONASAL
    assert frame.quadrant_of((1500.0, 1600.0)) is Quadrant.SUPEROTEMPORAL
    assert frame.quadrant_of((1500.0, 1900.0)) is Quadrant.INFEROTEMPORAL
    # the lines to draw go through the fovea along the axis and its perpendicular
    axis, perpendicular = frame.lines(1000)
    assert axis[1][0] > axis[0][0] and axis[1][1] < axis[0][1]  # towards the disc: up-right
    assert perpendicular[1][1] < 1500 - 800  # the superior end points up


def test_no_quadrants_without_both_landmarks_or_with_a_vertical_axis() -> None:
    frame, reason = quadrant_frame(eye(fovea=None, disc=(3250.0, 1500.0)))
    assert frame is None and "fovea" in reason
    frame, reason = quadrant_frame(eye(fovea=(2000.0, 1500.0), disc=None))
    assert frame is None and "disc" in reason
    vertical = eye(fovea=(2000.0, 2500.0), disc=(2000.0, 1250.0))
    frame, reason = quadrant_frame(vertical)
    assert frame is None and "rotated" in reason
    # the reviewer's word on the eye settles it: a right eye's superior is nasal turned
    # counter-clockwise on the screen, so with the disc straight up, superior is the left
    stated = vertical.with_laterality(Laterality.RIGHT)
    frame, _ = quadrant_frame(stated)
    assert frame is not None
    assert frame.quadrant_of((1700.0, 2400.0)) is Quadrant.SUPERONASAL
    assert frame.quadrant_of((2300.0, 2600.0)) is Quadrant.INFEROTEMPORAL


# ---------------------------------------------------------------------------------------------
# ETDRS grid


def test_etdrs_grid_in_millimetres_around_the_fovea() -> None:
    grid, reason = etdrs_grid(RIGHT)
    assert grid is not None, reason
    px_per_mm = DD / 1.8
    assert grid.radii_px == pytest.approx((0.5 * px_per_mm, 1.5 * px_per_mm, 3.0 * px_per_mm))
    assert grid.center == (2000.0, 1500.0)
    assert len(grid.sectors) == 9 and len(grid.spokes) == 4
    for start, end in grid.spokes:  # diagonals from the 1 mm circle to the 6 mm circle
        assert math.dist(start, grid.center) == pytest.approx(grid.radii_px[0])
        assert math.dist(end, grid.center) == pytest.approx(grid.radii_px[2])
        assert abs(end[0] - start[0]) == pytest.approx(abs(end[1] - start[1]))  # 45 degrees
    assert grid.sector_of((2000.0, 1500.0)) == "central"
    assert grid.sector_of((2000 + 300.0, 1500.0)) == "inner nasal"  # towards the disc
    assert grid.sector_of((2000 - 600.0, 1500.0)) == "outer temporal"
    assert grid.sector_of((2000.0, 1500 - 300.0)) == "inner superior"
    assert grid.sector_of((2000.0, 1500 + 600.0)) == "outer inferior"
    assert grid.sector_of((2000 + 1000.0, 1500.0)) is None  # outside the 6 mm circle
    mirrored, _ = etdrs_grid(LEFT)
    assert mirrored is not None and mirrored.sector_of((2000 + 300.0, 1500.0)) == "inner temporal"
    # a different scale convention makes a different grid
    wider, _ = etdrs_grid(RIGHT.with_scale(Scale(1.5)))
    assert wider is not None and wider.radii_px[2] == pytest.approx(3.0 * DD / 1.5)
    assert etdrs_grid(eye(fovea=None, disc=(3250.0, 1500.0)))[0] is None


# ---------------------------------------------------------------------------------------------
# The photo summary


def test_summary_counts_quadrants_and_the_fovea_neighbourhood() -> None:
    lesions = [
        lesion(1, 1500, 1000, area=400),  # superotemporal, 1.4 DD
        lesion(2, 2500, 1000, area=200),  # superonasal
        lesion(3, 1500, 2000, area=100),  # inferotemporal
        lesion(4, 2600, 2100, area=50),  # inferonasal
    ]
    summary = summarise(lesions, RIGHT)
    assert summary.count == 4
    assert summary.quadrants is not None
    assert {q: t.count for q, t in summary.quadrants.items()} == {q: 1 for q in Quadrant}
    st = summary.quadrants[Quadrant.SUPEROTEMPORAL]
    assert st.area_px == 400
    assert st.area_mm2 == pytest.approx(400 * (1.8 / DD) ** 2)
    assert summary.in_all_four_quadrants is True
    assert summary.within_1dd_of_fovea is False and summary.near_fovea_count == 0
    first = summary.lesions[0]
    assert first.quadrant is Quadrant.SUPEROTEMPORAL
    assert first.distance_dd == pytest.approx(math.hypot(500, 500) / DD)

    # one quadrant empty, one haemorrhage 0.8 DD from the fovea
    near = [*lesions[:3], lesion(5, 2000, 1900)]
    summary = summarise(near, RIGHT)
    assert summary.in_all_four_quadrants is False
    assert summary.within_1dd_of_fovea is True and summary.near_fovea_count == 1
    # just past 1 DD it is not near
    assert summarise([lesion(1, 2000, 1500 + 510)], RIGHT).within_1dd_of_fovea is False

    # the same lesions in a left eye: temporal and nasal swap sides
    mirrored = summarise(lesions[:1], LEFT)
    assert mirrored.lesions[0].quadrant is Quadrant.SUPERONASAL

    # what cannot be decided is None with a reason, never False
    blind = summarise(lesions, eye(fovea=None, disc=(3250.0, 1500.0)))
    assert blind.in_all_four_quadrants is None and blind.within_1dd_of_fovea is None
    assert blind.quadrants is None and any("fovea" in r for r in blind.reasons)
    no_disc = summarise(lesions, eye(fovea=(2000.0, 1500.0), disc=None))
    assert no_disc.within_1dd_of_fovea is None
    assert no_disc.lesions[0].distance_px == pytest.approx(math.hypot(500, 500))
    assert no_disc.lesions[0].area_mm2 is None
    assert summarise([], RIGHT).in_all_four_quadrants is False
    assert summary.to_dict()["quadrants"]["superotemporal"]["count"] == 1


# ---------------------------------------------------------------------------------------------
# The record


def test_a_reviewers_correction_is_recorded_as_the_reviewers() -> None:
    missing = eye(fovea=None, disc=(3250.0, 1500.0))
    assert missing.laterality is Laterality.UNKNOWN
    fixed = missing.with_fovea((2000.0, 1500.0))
    assert fixed.fovea_origin is Origin.REVIEWER and fixed.disc_origin is Origin.MODEL
    assert fixed.laterality is Laterality.RIGHT and fixed.fovea_reason == ""
    moved = fixed.with_disc((750.0, 1500.0))
    assert moved.disc_origin is Origin.REVIEWER and moved.laterality is Laterality.LEFT
    assert moved.disc_diameter == DD
    stated = moved.with_laterality(Laterality.RIGHT)
    assert stated.laterality_origin is Origin.REVIEWER
    assert stated.with_fovea((2100.0, 1500.0)).laterality is Laterality.RIGHT  # stays stated
    again = Anatomy.from_dict(stated.to_dict())
    assert again == stated
    with pytest.raises(ValueError, match="reason"):
        Anatomy(SIZE, None, None, (1.0, 2.0), Laterality.UNKNOWN)
    with pytest.raises(ValueError, match="diameter"):
        eye(fovea=(2000.0, 1500.0), disc=None).with_disc((3000.0, 1500.0))


# ---------------------------------------------------------------------------------------------
# Decoding the model's maps


def synthetic_geometry():  # type: ignore[no-untyped-def]
    fov = FieldOfView(cx=2000.0, cy=1500.0, radius=1700.0, fill=1.0, clipped=True)
    return geometry_for(fov, SIZE[1], SIZE[0], PreprocessRecipe(working_size=256))


def blob(geometry, center, sigma):  # type: ignore[no-untyped-def]
    u, v = full_to_working(center, geometry)
    yy, xx = np.mgrid[:256, :256]
    return np.exp(-((xx - u) ** 2 + (yy - v) ** 2) / (2 * sigma**2)).astype(np.float32)


def test_decoding_finds_the_landmarks_where_the_maps_put_them() -> None:
    g = synthetic_geometry()
    assert working_to_full(full_to_working((1234.0, 987.0), g), g) == pytest.approx((1234, 987))
    radius_w = DD / 2 * g.scale
    u, v = full_to_working((3250.0, 1450.0), g)
    yy, xx = np.mgrid[:256, :256]
    disc = ((xx - u) ** 2 + (yy - v) ** 2 <= radius_w**2).astype(np.float32) * 0.95
    fovea = blob(g, (2000.0, 1550.0), 3.0)
    fovea /= fovea.sum()
    found = decode(disc, fovea, g)
    assert found.disc_center is not None and found.fovea is not None
    assert math.dist(found.disc_center, (3250, 1450)) < 0.05 * DD
    assert found.disc_diameter == pytest.approx(DD, rel=0.05)
    assert found.disc_mask is not None and found.disc_mask.shape == (SIZE[1], SIZE[0])
    assert found.disc_mask[1450, 3250] and not found.disc_mask[1450, 2000]
    assert math.dist(found.fovea, (2000, 1550)) < 0.05 * DD
    assert found.laterality is Laterality.RIGHT
    assert found.fovea_confidence is not None and found.fovea_confidence > 0.9


def test_decoding_says_what_it_could_not_find() -> None:
    g = synthetic_geometry()
    flat = np.full((256, 256), 1 / 256**2, np.float32)
    found = decode(np.zeros((256, 256), np.float32), flat, g)
    assert found.disc_center is None and "no optic disc" in found.disc_reason
    assert found.fovea is None and "could not be located" in found.fovea_reason
    assert found.laterality is Laterality.UNKNOWN
    # a clear fovea where no fovea can be (0.4 DD from the disc) is refused, not moved
    disc = blob(g, (3250.0, 1500.0), DD / 2 * g.scale / 1.2)
    fovea = blob(g, (3050.0, 1500.0), 2.0)
    found = decode(disc, fovea / fovea.sum(), g, DecodeParams())
    assert found.disc_center is not None
    assert found.fovea is None and "DD from the disc" in found.fovea_reason

    # a bright streak (exudates where the disc is hidden) is not taken for a disc
    yy, xx = np.mgrid[:256, :256]
    cu, cv = full_to_working((2800.0, 1500.0), g)
    streak = ((np.abs(xx - cu) <= 20) & (np.abs(yy - cv) <= 4)).astype(np.float32)
    found = decode(streak, fovea / fovea.sum(), g)
    assert found.disc_center is None and "not round" in found.disc_reason

    # a disc half outside the field: drawn (its visible part), but neither centred nor sized
    fov = g.fov
    edge = (fov.cx + fov.radius, fov.cy)  # the field's right edge, inside the photo
    u, v = full_to_working(edge, g)
    yy, xx = np.mgrid[:256, :256]
    half = ((xx - u) ** 2 + (yy - v) ** 2 <= (DD / 2 * g.scale) ** 2).astype(np.float32)
    found = decode(half, fovea / fovea.sum(), g)
    assert found.disc_center is None and "cut by the edge" in found.disc_reason
    assert found.disc_mask is not None and found.disc_mask.any()
    assert found.laterality is Laterality.UNKNOWN
