"""The false-positive analysis on synthetic masks whose answers are known by construction:
which component is false, which region holds it, its size bin, the operating curve, the
regions themselves, the approximate vessel map, and the command end to end on a made-up run."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from inference.fov import FieldOfView
from inference.preprocess import Geometry
from training.fp_analysis import AnalysisConfig, fp_analysis_main
from training.fp_components import (
    ELSEWHERE,
    CurvePoint,
    OperatingCurve,
    classify_components,
    lesion_areas,
    operating_points,
    region_table,
    size_bin,
    size_table,
)
from training.fp_regions import disc_diameter, disc_region, fov_mask_full, rim_band, vessel_map

H, W = 200, 300


def square(mask: np.ndarray, x: int, y: int, side: int, value: float = 1.0) -> None:
    mask[y : y + side, x : x + side] = value


def synthetic_regions() -> dict[str, np.ndarray]:
    """Four disjoint regions: a rim strip on the left, a disc box, a macula box, a vessel row."""
    regions = {name: np.zeros((H, W), bool) for name in ("fov_rim", "optic_disc", "macula")}
    regions["fov_rim"][:, :20] = True
    regions["optic_disc"][20:80, 200:260] = True
    regions["macula"][120:180, 120:180] = True
    regions["vessels"] = np.zeros((H, W), bool)
    regions["vessels"][95:105, 20:300] = True
    return regions


def test_components_are_split_into_true_and_false_and_placed_by_region() -> None:
    p = np.zeros((H, W), np.float32)
    target = np.zeros((H, W), bool)
    square(p, 40, 20, 10, 0.9)  # touches the lesion below: a detection
    square(target, 45, 25, 10)
    square(p, 2, 150, 8, 0.8)  # rim, 64 px
    square(p, 210, 30, 20, 0.7)  # disc, 400 px
    square(p, 140, 140, 30, 0.6)  # macula, 900 px
    square(p, 60, 96, 8, 0.9)  # on the vessel row, 64 px
    square(p, 100, 20, 40, 0.9)  # nowhere in particular, 1600 px
    square(p, 280, 180, 5, 0.9)  # 25 px: under min_area, dropped
    # half in the rim, half in the disc box's row but not the disc: the rim holds >= half
    square(p, 12, 40, 16, 0.9)
    components = classify_components(
        "IDRiD_99", p, target, 0.5, synthetic_regions(), min_area_px=30
    )
    got = sorted((c.region, c.area, c.false_positive) for c in components)
    assert got == sorted(
        [
            (ELSEWHERE, 100, False),
            ("fov_rim", 64, True),
            ("optic_disc", 400, True),
            ("macula", 900, True),
            ("vessels", 64, True),
            (ELSEWHERE, 1600, True),
            ("fov_rim", 256, True),
        ]
    )
    disc = next(c for c in components if c.region == "optic_disc")
    assert disc.bbox == (210, 30, 20, 20) and disc.max_probability == pytest.approx(0.7)
    assert (disc.x, disc.y) == pytest.approx((219.5, 39.5))
    # the threshold decides what is predicted at all: at 0.75 the disc and macula marks go
    higher = classify_components("IDRiD_99", p, target, 0.75, synthetic_regions())
    assert {c.region for c in higher if c.false_positive} == {"fov_rim", "vessels", ELSEWHERE}


def test_precedence_puts_a_component_in_the_first_region_holding_half_of_it() -> None:
    regions = synthetic_regions()
    regions["macula"][90:110, 150:170] = True  # overlaps the vessel row
    p = np.zeros((H, W), np.float32)
    square(p, 150, 96, 8, 1.0)  # in both the macula and the vessels: macula comes first
    square(p, 196, 96, 8, 1.0)  # 4 of 8 columns inside the disc box? no: vessels only
    (a, b) = sorted(
        classify_components("x", p, np.zeros((H, W), bool), 0.5, regions), key=lambda c: c.x
    )
    assert a.region == "macula" and a.shares["vessels"] == 1.0
    assert b.region == "vessels" and b.shares["optic_disc"] == 0.0


def test_tables_count_classes_and_sizes() -> None:
    p = np.zeros((H, W), np.float32)
    target = np.zeros((H, W), bool)
    square(p, 100, 20, 40, 0.9)  # FP 1600 px elsewhere
    square(p, 2, 150, 8, 0.8)  # FP 64 px rim
    square(p, 140, 140, 30, 0.6)  # FP 900 px macula
    square(p, 40, 20, 10, 0.9)  # detection, 100 px
    square(target, 40, 20, 10)
    square(target, 60, 150, 25)  # a missed lesion, 625 px
    components = classify_components("a", p, target, 0.5, synthetic_regions())
    rows = {r["class"]: r for r in region_table(components, photos=2)}
    assert rows["fov_rim"]["count"] == 1 and rows["fov_rim"]["per_photo"] == 0.5
    assert rows[ELSEWHERE]["share"] == pytest.approx(1 / 3)
    assert rows["macula"]["median_area"] == 900 and rows["macula"]["under_500"] == 0.0
    assert rows["optic_disc"]["count"] == 0 and math.isnan(rows["optic_disc"]["median_area"])
    assert sorted(lesion_areas(target)) == [100, 625]
    sizes = {r["size_px"]: r for r in size_table(components, lesion_areas(target))}
    assert [size_bin(a) for a in (64, 499, 500, 900, 1600, 2500, 10000)] == [
        "0-500",
        "0-500",
        "500-1000",
        "500-1000",
        "1000-2500",
        "2500-10000",
        ">=10000",
    ]
    assert sizes["0-500"]["false_positives"] == 1 and sizes["0-500"]["detections_share"] == 1.0
    assert sizes["500-1000"]["lesions_share"] == 0.5 and sizes["0-500"]["lesions_share"] == 0.5
    assert sizes["1000-2500"]["fp_share"] == pytest.approx(1 / 3)


def test_the_operating_curve_trades_false_alarms_for_misses() -> None:
    p = np.zeros((H, W), np.float32)
    target = np.zeros((H, W), bool)
    square(target, 40, 20, 10)
    square(target, 200, 150, 10)
    square(p, 40, 20, 10, 0.9)  # finds the first lesion up to 0.9
    square(p, 198, 148, 10, 0.6)  # finds the second up to 0.6
    square(p, 100, 100, 10, 0.4)  # a false alarm up to 0.4
    curve = OperatingCurve([0.3, 0.5, 0.7, 0.95])
    curve.add(p, target)
    curve.add(np.zeros((H, W), np.float32), np.zeros((H, W), bool))  # a photo with nothing
    got = [(q.threshold, q.fp_per_photo, q.lesion_sensitivity) for q in curve.points()]
    assert got == [(0.3, 0.5, 1.0), (0.5, 0.0, 1.0), (0.7, 0.0, 0.5), (0.95, 0.0, 0.0)]


def test_rim_band_follows_the_circle_and_a_clipped_edge() -> None:
    fov = FieldOfView(cx=150, cy=100, radius=120, fill=1.0, clipped=True)
    inside = fov_mask_full(fov, H, W)
    assert inside[0, 150] and not inside[0, 0]  # clipped at the top and bottom
    rim = rim_band(inside, 6.0)
    assert rim[0, 150] and rim[5, 150] and not rim[10, 150]  # the photo's top edge
    assert rim[100, 150 - 118] and not rim[100, 150 - 110]  # the circle's left edge
    assert not rim[100, 150]
    assert not (rim & ~inside).any()


def test_the_disc_region_grows_the_mask_by_its_margin() -> None:
    disc = np.zeros((H, W), np.uint8)
    cv2.circle(disc, (150, 100), 30, 1, -1)
    mask = disc.astype(bool)
    assert disc_diameter(mask) == pytest.approx(60, rel=0.03)
    grown = disc_region(mask, 15.0)
    assert grown[100, 150 + 30 + 14] and not grown[100, 150 + 30 + 17]


def test_the_vessel_map_keeps_long_dark_lines_and_drops_round_blots() -> None:
    rgb = np.full((300, 400, 3), 150, np.uint8)
    lines = np.zeros((300, 400), np.uint8)
    cv2.line(lines, (10, 50), (390, 80), 1, 4)
    cv2.line(lines, (200, 10), (230, 290), 1, 3)
    cv2.line(lines, (20, 280), (380, 150), 1, 5)
    blots = np.zeros((300, 400), np.uint8)
    for centre in ((80, 150), (300, 240), (120, 120)):  # none near a line
        cv2.circle(blots, centre, 5, 1, -1)
    rgb[lines.astype(bool)] = 80
    rgb[blots.astype(bool)] = 70
    vessels = vessel_map(rgb, np.ones((300, 400), bool), keep_fraction=0.06)
    assert vessels[lines.astype(bool)].mean() > 0.8
    assert vessels[blots.astype(bool)].mean() < 0.1


def _write_palette(path: Path, mask: np.ndarray) -> None:
    image = Image.fromarray(mask.astype(np.uint8), mode="P")
    image.putpalette([0, 0, 0, 255, 0, 0] + [0] * (256 * 3 - 6))
    image.save(path)


def test_the_command_reads_a_run_and_writes_its_report(tmp_path: Path) -> None:
    """A made-up run of one photo: 400x600, a working size of 100 over a 380-px crop."""
    data = tmp_path / "idrid-hemorrhage"
    (data / "images").mkdir(parents=True)
    (data / "masks").mkdir()
    disc_dir = tmp_path / "idrid-optic-disc"
    (disc_dir / "masks").mkdir(parents=True)
    run = tmp_path / "moco-seg"
    (run / "oof").mkdir(parents=True)
    photo = np.zeros((400, 600, 3), np.uint8)
    cv2.circle(photo, (300, 200), 190, (180, 90, 40), -1)
    cv2.imwrite(str(data / "images" / "IDRiD_90.jpg"), photo)
    target = np.zeros((400, 600), np.uint8)
    square(target, 200, 150, 30)
    _write_palette(data / "masks" / "IDRiD_90_HE.tif", target)
    disc = np.zeros((400, 600), np.uint8)
    cv2.circle(disc, (420, 200), 35, 1, -1)
    _write_palette(disc_dir / "masks" / "IDRiD_90_OD.png", disc)
    (disc_dir / "fovea_train.csv").write_text(
        "image,fovea_x,fovea_y,disc_x,disc_y,disc_diameter,confidence,method\n"
        "IDRiD_90,250,300,420,200,70,high,auto\n"
    )
    geometry = Geometry(
        full_height=400,
        full_width=600,
        fov=FieldOfView(cx=300, cy=200, radius=190, fill=1.0, clipped=False),
        crop_x0=110,
        crop_y0=10,
        crop_side=380,
        working_size=100,
    )
    logits = np.full((100, 100), -8.0, np.float32)

    def working(x: float, y: float) -> tuple[int, int]:
        return round((x - 110) * 100 / 380), round((y - 10) * 100 / 380)

    for x, y in ((215, 165), (420, 200), (350, 100)):  # the lesion, the disc, nothing
        wx, wy = working(x, y)
        logits[wy - 2 : wy + 3, wx - 2 : wx + 3] = 6.0
    np.save(run / "oof" / "IDRiD_90.npy", logits.astype(np.float16))
    (run / "oof" / "IDRiD_90.json").write_text(json.dumps(geometry.to_dict()))
    (run / "result.json").write_text(
        json.dumps(
            {"calibration": {"temperature": 1.0, "bias": 0.0}, "metrics": {"threshold": 0.5}}
        )
    )
    out = tmp_path / "report"
    argv = [str(run), "--data-dir", str(data), "--disc-dir", str(disc_dir), "--out", str(out)]
    assert fp_analysis_main(argv) == 0
    report = json.loads((out / "fp_analysis.json").read_text())
    assert report["photos"] == 1 and report["fp_per_photo"] == 2.0
    assert report["lesion_sensitivity"] == 1.0
    counts = {r["class"]: r["count"] for r in report["regions"]}
    assert counts == {"fov_rim": 0, "optic_disc": 1, "macula": 0, "vessels": 0, ELSEWHERE: 1}
    assert report["not_measured"] == {"bright_lesions": "no exudate masks are local"}
    assert "false-positive components per photo" in (out / "fp_analysis.md").read_text()
    rows = (out / "components.csv").read_text().splitlines()
    assert len(rows) == 4 and rows[0].startswith("photo,area,")
    assert (out / "operating_curve.png").stat().st_size > 1000
    sheet = cv2.imread(str(out / "fp_examples.png"))
    assert sheet is not None and sheet.shape[0] == 2 * 192  # two classes with examples
    assert AnalysisConfig.__dataclass_fields__["examples_per_class"].default == 8
    # the two false alarms' centres, as working pixels (y, x) for finetune --hard-negatives
    hard = json.loads((out / "hard_negatives.json").read_text())
    assert hard["working_size"] == 100 and hard["threshold"] == 0.5
    got = sorted(hard["points"]["IDRiD_90"])
    want = sorted([list(working(420, 200))[::-1], list(working(350, 100))[::-1]])
    assert np.abs(np.array(got) - np.array(want)).max() <= 1, (got, want)


def test_operating_points_pick_thresholds_against_the_bar() -> None:
    curve = [
        CurvePoint(0.1, 30.0, 0.75, 50.0),
        CurvePoint(0.3, 14.0, 0.66, 30.0),
        CurvePoint(0.5, 11.0, 0.61, 25.0),
        CurvePoint(0.7, 6.0, 0.50, 15.0),
    ]
    chosen = operating_points(curve, max_fp=12.0, min_sensitivity=0.60)
    assert chosen["most_sensitive_within_fp"] == curve[2]
    assert chosen["fewest_fp_with_sensitivity"] == curve[2]
    assert chosen["meets_bar"] == curve[2]
    strict = operating_points(curve, max_fp=10.0, min_sensitivity=0.65)
    assert strict["most_sensitive_within_fp"] == curve[3]
    assert strict["fewest_fp_with_sensitivity"] == curve[1]
    assert strict["meets_bar"] is None
