"""`hemaview-train fp-analysis RUN`: where the false alarms of out-of-fold predictions sit.

Reads a cross-validated configuration's folder (`<compare out>/<config>/`: result.json for the
calibration and the default threshold, oof/NAME.npy + NAME.json for each held-out photo's
working-size logits and geometry), goes back to each photo's full resolution as the app does
(`inference.postprocess.probability_to_full`), and:

- splits the predicted components (8-connected, at least `min_area_px`, as `training.metrics`
  counts them) into true detections (touching an annotated haemorrhage pixel) and false
  positives (touching none);
- classifies every false positive by where at least half of its pixels lie, in this order of
  precedence: the field-of-view rim band, the optic disc and its rim, the macula, along vessels,
  elsewhere (`REGIONS`); and by size, beside the sizes of the annotated lesions;
- draws the lesion-level operating curve: false-positive components per photo against lesion
  sensitivity over thresholds, the default marked;
- writes the false positives' centres as hard negatives (`hard_negatives.json`, working pixels)
  for `finetune --hard-negatives` to centre patches on. They are mined from out-of-fold maps,
  whose model saw the other folds' labels: a second-order use of those labels worth naming
  when a run trained on them is cross-validated.

The regions, and what is approximate about them:
- rim band: field-of-view pixels within `rim_fraction` x the FOV radius of its edge (the
  circle's edge, and the photo's edge where the circle is clipped);
- optic disc: IDRiD's own disc mask, grown by `disc_margin_dd` disc diameters (DD: the mask's
  equivalent-circle diameter);
- macula: within `macula_radius_dd` DD of the fovea centre from `fovea_train.csv`, which was
  marked by hand to about +-0.2 DD (see the data README);
- vessels: an APPROXIMATE map, not a segmentation: a black top-hat of the green channel (dark,
  narrow structures) kept only where a straight segment fits in it in some direction (the
  supremum of openings by rotated lines, after Zana and Klein 2001), so round blots shorter than
  the segment drop out and long vessels stay; computed at a quarter of full resolution;
- near bright lesions (exudates): no masks of them are local, so this class is not measured.

A photo without a disc mask or fovea has no such region; the report says which.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from inference.atomic import atomic_write_text
from inference.labels import read_mask
from inference.postprocess import probability_to_full
from inference.preprocess import Geometry
from training.data import data_root, default_data_dir, scan_idrid
from training.fp_components import (
    Component,
    OperatingCurve,
    classify_components,
    hard_negative_points,
    lesion_areas,
)
from training.fp_regions import (
    Anatomy,
    RegionParams,
    anatomy_regions,
    disc_diameter,
    fov_mask_full,
    vessel_map,
)
from training.fp_report import (
    choose_examples,
    example_tile,
    write_montage,
    write_report,
)
from training.metrics import Calibration
from training.out_of_fold import load_out_of_fold, oof_path

DISC_DIR_NAME = "idrid-optic-disc"
FOVEA_CSV = "fovea_train.csv"


# ----------------------------------------------------------------------------------------------
# Reading a run


@dataclass(frozen=True)
class AnalysisConfig:
    run: Path  # a configuration's folder: result.json, oof/
    data_dir: Path  # IDRiD haemorrhage folder
    disc_dir: Path  # idrid-optic-disc
    out: Path
    threshold: float | None = None  # None: the run's default (result.json)
    min_area_px: int = 30
    params: RegionParams = field(default_factory=RegionParams)
    thresholds: tuple[float, ...] = tuple(round(0.05 * i, 2) for i in range(1, 20))
    examples_per_class: int = 8


def read_fovea_csv(path: Path) -> dict[str, dict[str, str]]:
    if not path.is_file():
        return {}
    with path.open(newline="") as handle:
        return {row["image"]: row for row in csv.DictReader(handle)}


def load_anatomy(name: str, disc_dir: Path, fovea: dict[str, dict[str, str]]) -> Anatomy:
    disc_path = disc_dir / "masks" / f"{name}_OD.png"
    disc = read_mask(disc_path) if disc_path.is_file() else None
    diameter = disc_diameter(disc) if disc is not None and disc.any() else None
    row = fovea.get(name)
    centre = (float(row["fovea_x"]), float(row["fovea_y"])) if row else None
    return Anatomy(disc, centre, diameter)


def _vessels_full(image_path: Path, geometry: Geometry) -> np.ndarray:
    from inference.photo_io import read_photo

    photo = read_photo(image_path, min_side=geometry.full_height // 4)
    rgb = photo.rgb
    factor = rgb.shape[1] / geometry.full_width
    small_fov = fov_mask_full(geometry.fov.scaled(factor), rgb.shape[0], rgb.shape[1])
    small = vessel_map(rgb, small_fov).astype(np.uint8)
    size = (geometry.full_width, geometry.full_height)
    return cv2.resize(small, size, interpolation=cv2.INTER_NEAREST).astype(bool)  # type: ignore[no-any-return]


def analyse(config: AnalysisConfig, log: Any = print) -> dict[str, Any]:
    """Run the analysis over every out-of-fold photo with a mask; write the report; return it."""
    result = json.loads((config.run / "result.json").read_text())
    calibration = Calibration(**result["calibration"])
    threshold = (
        config.threshold if config.threshold is not None else float(result["metrics"]["threshold"])
    )
    fovea = read_fovea_csv(config.disc_dir / FOVEA_CSV)
    records = [
        r
        for r in scan_idrid(config.data_dir)
        if r.mask_path is not None and oof_path(config.run, r.name).is_file()
    ]
    if not records:
        raise FileNotFoundError(f"{config.run}: no out-of-fold photo with a mask to analyse")
    curve = OperatingCurve([*config.thresholds, threshold], config.min_area_px)
    components: list[Component] = []
    lesions: list[int] = []
    missing: dict[str, list[str]] = {"optic_disc": [], "macula": []}
    hard: dict[str, list[list[int]]] = {}
    working_size = 0
    for k, record in enumerate(records):
        logits, geometry = load_out_of_fold(config.run, record.name)
        working_size = geometry.working_size
        full = probability_to_full(calibration.apply(logits), geometry)
        size = (geometry.full_width, geometry.full_height)
        assert record.mask_path is not None
        target = read_mask(record.mask_path, expected_size=size)
        anatomy = load_anatomy(record.name, config.disc_dir, fovea)
        fov = fov_mask_full(geometry.fov, geometry.full_height, geometry.full_width)
        vessels = _vessels_full(record.image_path, geometry)
        regions = anatomy_regions(
            target.shape, fov, anatomy, vessels, config.params, geometry.fov.radius
        )
        for name in missing:
            if name not in regions:
                missing[name].append(record.name)
        found = classify_components(
            record.name,
            full,
            target,
            threshold,
            regions,
            min_area_px=config.min_area_px,
            share=config.params.vessel_share,
        )
        components += found
        hard[record.name] = hard_negative_points(found, geometry)
        lesions += lesion_areas(target)
        curve.add(full, target)
        log(f"fp-analysis: {k + 1}/{len(records)} {record.name}")
    report = write_report(config, components, lesions, curve, threshold, len(records), missing)
    mined = {"working_size": working_size, "run": str(config.run), "threshold": threshold}
    atomic_write_text(
        config.out / "hard_negatives.json", json.dumps({**mined, "points": hard}) + "\n"
    )
    chosen = choose_examples(components, config.examples_per_class)
    by_name = {r.name: r for r in records}
    tiles: dict[int, np.ndarray] = {}
    for name in sorted({c.photo for c in chosen}):
        record = by_name[name]
        logits, geometry = load_out_of_fold(config.run, name)
        full = probability_to_full(calibration.apply(logits), geometry)
        assert record.mask_path is not None
        size = (geometry.full_width, geometry.full_height)
        target = read_mask(record.mask_path, expected_size=size)
        from inference.photo_io import read_photo

        rgb = read_photo(record.image_path).rgb
        for i, c in enumerate(chosen):
            if c.photo == name:
                tiles[i] = example_tile(rgb, full >= threshold, target, c)
    write_montage([(c, tiles[i]) for i, c in enumerate(chosen)], config.out / "fp_examples.png")
    return report


def fp_analysis_main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="hemaview-train fp-analysis", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "run", type=Path, help="a compared configuration's folder (result.json, oof/)"
    )
    parser.add_argument("--data-dir", type=Path, default=None, help="IDRiD haemorrhage folder")
    parser.add_argument(
        "--disc-dir",
        type=Path,
        default=None,
        help=f"optic disc folder (default: DATA/{DISC_DIR_NAME})",
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="report folder (default: RUN/fp_analysis)"
    )
    parser.add_argument("--threshold", type=float, default=None, help="default: the run's own")
    parser.add_argument("--min-area", type=int, default=30, help="smallest component kept, px")
    args = parser.parse_args(argv)
    config = AnalysisConfig(
        run=args.run,
        data_dir=args.data_dir or default_data_dir(),
        disc_dir=args.disc_dir or data_root() / DISC_DIR_NAME,
        out=args.out or args.run / "fp_analysis",
        threshold=args.threshold,
        min_area_px=args.min_area,
    )
    analyse(config)
    print((config.out / "fp_analysis.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(fp_analysis_main())
