"""Figures of the anatomy model on held-out photos, through the clinic's own decoder.

Each photo's maps are decoded by inference.anatomy.decode (as in the clinic) and compared
with the truth at full resolution:
- disc Dice against IDRiD's disc mask (a disc not found scores 0);
- disc-centre error: the distance between the found centre and the mask's centroid, in the
  true disc's diameters (DD); a disc not found counts as a miss;
- fovea error: the distance to the approximate centre of fovea_train.csv, in DD; a fovea not
  found counts as a miss (the marks are +-0.2 DD, so sub-0.2 DD figures mean little).
The issue's bar: disc Dice >= 0.85, centre error <= 0.25 DD on >= 95% of photos, fovea error
<= 0.5 DD on >= 90% of photos.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from inference.anatomy.decode import DecodeParams, decode
from inference.anatomy.geometry import distance
from inference.preprocess import Geometry
from training.anatomy import AnatomySample

CENTRE_BAR_DD = 0.25
FOVEA_BAR_DD = 0.5


@dataclass(frozen=True)
class PhotoFigures:
    name: str
    dice: float
    disc_found: bool
    centre_error_dd: float | None  # None: no disc found
    fovea_found: bool
    fovea_error_dd: float | None  # None: no fovea found
    fovea_confidence: float | None
    fovea_label_confidence: str
    laterality_ok: bool | None  # None: laterality unknown
    notes: tuple[str, ...]


def photo_figures(
    sample: AnatomySample,
    disc: np.ndarray,
    fovea: np.ndarray,
    params: DecodeParams,
    geometry: Geometry | None = None,
) -> PhotoFigures:
    """One photo's figures; `geometry` where the maps were made from another version of the
    photo (another camera's, whose pixels stay where they were) than the sample's."""
    found = decode(disc, fovea, geometry or sample.geometry, params)
    dd = sample.disc_diameter
    x0, y0, x1, y1 = sample.disc_box
    truth_area = int(sample.disc_crop.sum())
    if found.disc_mask is not None:
        inter = int(np.count_nonzero(found.disc_mask[y0:y1, x0:x1] & sample.disc_crop))
        dice = 2 * inter / (int(np.count_nonzero(found.disc_mask)) + truth_area)
    else:
        dice = 0.0
    centre = distance(found.disc_center, sample.disc_center) / dd if found.disc_center else None
    fovea_err = distance(found.fovea, sample.fovea) / dd if found.fovea else None
    truth_right = sample.disc_center[0] > sample.fovea[0]
    side = str(found.laterality)
    return PhotoFigures(
        name=sample.name,
        dice=dice,
        disc_found=found.disc_center is not None,
        centre_error_dd=centre,
        fovea_found=found.fovea is not None,
        fovea_error_dd=fovea_err,
        fovea_confidence=found.fovea_confidence,
        fovea_label_confidence=sample.fovea_confidence,
        laterality_ok=None if side == "unknown" else (side == "right") == truth_right,
        notes=found.notes
        + ((found.disc_reason,) if found.disc_reason else ())
        + ((found.fovea_reason,) if found.fovea_reason else ()),
    )


def summarise_figures(photos: list[PhotoFigures]) -> dict[str, Any]:
    """The pooled figures the card and the bar speak of."""
    n = len(photos)
    centre = [p.centre_error_dd if p.centre_error_dd is not None else math.inf for p in photos]
    fovea = [p.fovea_error_dd if p.fovea_error_dd is not None else math.inf for p in photos]
    dice = [p.dice for p in photos]
    found_fovea = [e for e in fovea if math.isfinite(e)]
    centre_ok = sum(e <= CENTRE_BAR_DD for e in centre) / n
    fovea_ok = sum(e <= FOVEA_BAR_DD for e in fovea) / n
    summary = {
        "photos": n,
        "disc_dice_mean": float(np.mean(dice)),
        "disc_dice_median": float(np.median(dice)),
        "disc_dice_min": float(np.min(dice)),
        "disc_found": sum(p.disc_found for p in photos),
        "disc_centre_error_dd_median": float(np.median(centre)),
        "disc_centre_within_0.25dd": centre_ok,
        "fovea_found": sum(p.fovea_found for p in photos),
        "fovea_error_dd_median": float(np.median(fovea)),
        "fovea_error_dd_median_when_found": (
            float(np.median(found_fovea)) if found_fovea else None
        ),
        "fovea_within_0.5dd": fovea_ok,
        "fovea_within_1dd": sum(e <= 1.0 for e in fovea) / n,
        # placed, but beyond the bar: worse than not placed (a grader would trust it)
        "fovea_found_beyond_0.5dd": sum(FOVEA_BAR_DD < e < math.inf for e in fovea),
        "laterality_correct": sum(p.laterality_ok is True for p in photos),
        "laterality_wrong": sum(p.laterality_ok is False for p in photos),
        "laterality_unknown": sum(p.laterality_ok is None for p in photos),
        "bar": {
            "disc_dice_mean>=0.85": float(np.mean(dice)) >= 0.85,
            "centre<=0.25dd_on>=95%": centre_ok >= 0.95,
            "fovea<=0.5dd_on>=90%": fovea_ok >= 0.90,
        },
    }
    return {k: _finite(v) for k, v in summary.items()}


def _finite(value: Any) -> Any:
    """JSON has no infinity: a median over misses that is infinite is written as None."""
    return None if isinstance(value, float) and not math.isfinite(value) else value


def figures_json(photos: list[PhotoFigures]) -> list[dict[str, Any]]:
    return [asdict(p) for p in photos]
