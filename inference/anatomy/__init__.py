"""Anatomy beside the lesions: the optic disc, the fovea, the eye's side, and the grader's
geometry built on them (DD and mm, quadrants, the ETDRS grid, the per-photo summary).

Qt-free and torch-free, like the rest of `inference`: the viewer, the CLI and the label file
all call these same functions.
"""

from inference.anatomy.geometry import (
    EtdrsGrid,
    EtdrsSector,
    LesionPlace,
    PhotoSummary,
    QuadrantFrame,
    QuadrantTally,
    area_to_mm2,
    dd_to_px,
    etdrs_grid,
    laterality_of,
    mm_to_px,
    place_lesions,
    quadrant_frame,
    summarise,
    to_dd,
    to_mm,
)
from inference.anatomy.model import AnatomyModel, shipped_anatomy_model_path
from inference.anatomy.types import (
    DEFAULT_DISC_DIAMETER_MM,
    QUADRANTS,
    Anatomy,
    Laterality,
    Origin,
    Point,
    Quadrant,
    Scale,
)

__all__ = [
    "DEFAULT_DISC_DIAMETER_MM",
    "QUADRANTS",
    "Anatomy",
    "AnatomyModel",
    "EtdrsGrid",
    "EtdrsSector",
    "Laterality",
    "LesionPlace",
    "Origin",
    "PhotoSummary",
    "Point",
    "Quadrant",
    "QuadrantFrame",
    "QuadrantTally",
    "Scale",
    "area_to_mm2",
    "dd_to_px",
    "etdrs_grid",
    "laterality_of",
    "mm_to_px",
    "place_lesions",
    "quadrant_frame",
    "shipped_anatomy_model_path",
    "summarise",
    "to_dd",
    "to_mm",
]
