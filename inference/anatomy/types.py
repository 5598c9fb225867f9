"""The anatomy record of one photo: where the optic disc and the fovea are, and the scale.

Rules callers rely on:
- Positions are (x, y) in the photo's full-resolution pixels, y pointing down, as the
  lesions' centroids are (inference.postprocess.Lesion).
- A position that was not found is None, and its reason says why in words a reviewer can
  act on; a position is never guessed to fill a gap.
- Every position says where it came from: the model, or a reviewer who placed or moved it.
- The disc diameter (DD) is the unit of distance. Millimetres come only through a stated
  `Scale` (a mean disc diameter, 1.8 mm unless a clinic sets another), and every record
  carries the scale it was measured with.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

import numpy as np

Point = tuple[float, float]  # x, y in full-resolution pixels

#: The usual convention: the mean optic disc diameter of adults is about 1.8 mm.
DEFAULT_DISC_DIAMETER_MM = 1.8


class Laterality(StrEnum):
    RIGHT = "right"  # OD
    LEFT = "left"  # OS
    UNKNOWN = "unknown"


class Origin(StrEnum):
    """Who put a landmark where it is."""

    MODEL = "model"
    REVIEWER = "reviewer"


class Quadrant(StrEnum):
    """Retinal quadrants around the fovea (inference.anatomy.geometry.quadrant_of)."""

    SUPEROTEMPORAL = "superotemporal"
    INFEROTEMPORAL = "inferotemporal"
    SUPERONASAL = "superonasal"
    INFERONASAL = "inferonasal"


QUADRANTS: tuple[Quadrant, ...] = tuple(Quadrant)


@dataclass(frozen=True)
class Scale:
    """How pixels become millimetres: one disc diameter is `disc_diameter_mm` mm.

    A photo has no physical scale of its own (it depends on the camera, the eye's optics and
    its refraction); the disc is the ruler, and this says how long the ruler is taken to be.
    """

    disc_diameter_mm: float = DEFAULT_DISC_DIAMETER_MM

    def __post_init__(self) -> None:
        if not 0.5 <= self.disc_diameter_mm <= 4.0:
            raise ValueError(
                f"a mean disc diameter of {self.disc_diameter_mm} mm is not plausible "
                "(expected 0.5 to 4 mm; the usual convention is 1.8 mm)"
            )

    @property
    def name(self) -> str:
        """How the convention is named in the UI, the JSON and the CSV."""
        return f"1 DD = {self.disc_diameter_mm:g} mm (mean disc diameter)"

    def to_dict(self) -> dict[str, Any]:
        return {"disc_diameter_mm": self.disc_diameter_mm, "convention": self.name}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Scale:
        return cls(disc_diameter_mm=float(raw["disc_diameter_mm"]))


@dataclass(frozen=True)
class Anatomy:
    """The optic disc, the fovea and the eye's side in one photo.

    Build it with the model (inference.anatomy.decode) or from a saved label; correct it with
    `with_disc` and `with_fovea`, which mark the landmark as the reviewer's and derive the
    laterality again. Frozen: a correction is a new record, so undo keeps the old one.
    """

    photo_size: tuple[int, int]  # width, height of the full-resolution photo
    disc_center: Point | None
    disc_diameter: float | None  # px: the disc mask's equivalent-circle diameter
    fovea: Point | None
    laterality: Laterality
    disc_reason: str = ""  # why disc_center is None ("" when found)
    fovea_reason: str = ""  # why fovea is None
    laterality_reason: str = ""  # how the side was decided, or why it is unknown
    disc_origin: Origin = Origin.MODEL
    fovea_origin: Origin = Origin.MODEL
    laterality_origin: Origin = Origin.MODEL  # MODEL: derived from the landmarks
    disc_confidence: float | None = None  # the model's own score, in [0, 1]
    fovea_confidence: float | None = None
    scale: Scale = field(default_factory=Scale)
    # bool (H, W) at the photo's size; None where no mask exists (no disc, or a disc placed
    # by a reviewer, whose mask is not drawn)
    disc_mask: np.ndarray | None = field(default=None, repr=False, compare=False)
    notes: tuple[str, ...] = ()  # what a reviewer should know (e.g. a disc cut by the edge)

    def __post_init__(self) -> None:
        if (self.disc_center is None) != (self.disc_diameter is None):
            raise ValueError("disc_center and disc_diameter are found together or not at all")
        if self.disc_center is None and not self.disc_reason:
            raise ValueError("a disc that was not found needs a reason")
        if self.fovea is None and not self.fovea_reason:
            raise ValueError("a fovea that was not found needs a reason")
        if self.disc_diameter is not None and not self.disc_diameter > 0:
            raise ValueError(f"disc diameter {self.disc_diameter} px is not positive")
        if self.disc_mask is not None:
            width, height = self.photo_size
            if self.disc_mask.shape != (height, width) or self.disc_mask.dtype != np.bool_:
                raise ValueError(
                    f"disc_mask must be bool {height}x{width}, got "
                    f"{self.disc_mask.dtype} {self.disc_mask.shape}"
                )

    @property
    def px_per_mm(self) -> float | None:
        """Pixels per millimetre by the scale convention; None without a disc."""
        if self.disc_diameter is None:
            return None
        return self.disc_diameter / self.scale.disc_diameter_mm

    def with_disc(
        self, center: Point, diameter: float | None = None, *, origin: Origin = Origin.REVIEWER
    ) -> Anatomy:
        """The disc moved (or placed) by a reviewer; the diameter is kept unless given.

        A placed disc needs a diameter when the model found none: without it no distance
        in DD exists. The model's mask no longer matches a moved disc, so it is dropped.
        """
        size = diameter if diameter is not None else self.disc_diameter
        if size is None:
            raise ValueError("a disc placed where the model found none needs its diameter")
        moved = replace(
            self,
            disc_center=(float(center[0]), float(center[1])),
            disc_diameter=float(size),
            disc_reason="",
            disc_origin=origin,
            disc_confidence=None if origin is Origin.REVIEWER else self.disc_confidence,
            disc_mask=None if center != self.disc_center else self.disc_mask,
        )
        return moved._with_derived_laterality()

    def with_fovea(self, center: Point, *, origin: Origin = Origin.REVIEWER) -> Anatomy:
        """The fovea moved (or placed) by a reviewer."""
        moved = replace(
            self,
            fovea=(float(center[0]), float(center[1])),
            fovea_reason="",
            fovea_origin=origin,
            fovea_confidence=None if origin is Origin.REVIEWER else self.fovea_confidence,
        )
        return moved._with_derived_laterality()

    def with_laterality(self, side: Laterality, *, origin: Origin = Origin.REVIEWER) -> Anatomy:
        """The eye's side as a reviewer states it (it then no longer follows the landmarks)."""
        reason = "set by the reviewer" if origin is Origin.REVIEWER else self.laterality_reason
        return replace(self, laterality=side, laterality_origin=origin, laterality_reason=reason)

    def with_scale(self, scale: Scale) -> Anatomy:
        return replace(self, scale=scale)

    def _with_derived_laterality(self) -> Anatomy:
        if self.laterality_origin is Origin.REVIEWER:
            return self
        from inference.anatomy.geometry import laterality_of

        side, reason = laterality_of(self.disc_center, self.fovea, self.disc_diameter)
        return replace(self, laterality=side, laterality_reason=reason)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (the label file, the CLI): everything but the mask's pixels."""
        return {
            "photo_size": list(self.photo_size),
            "disc_center": _point_out(self.disc_center),
            "disc_diameter_px": self.disc_diameter,
            "disc_reason": self.disc_reason,
            "disc_origin": str(self.disc_origin),
            "disc_confidence": self.disc_confidence,
            "disc_mask_area_px": (
                int(np.count_nonzero(self.disc_mask)) if self.disc_mask is not None else None
            ),
            "fovea": _point_out(self.fovea),
            "fovea_reason": self.fovea_reason,
            "fovea_origin": str(self.fovea_origin),
            "fovea_confidence": self.fovea_confidence,
            "laterality": str(self.laterality),
            "laterality_reason": self.laterality_reason,
            "laterality_origin": str(self.laterality_origin),
            "scale": self.scale.to_dict(),
            "notes": list(self.notes),
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any], disc_mask: np.ndarray | None = None) -> Anatomy:
        width, height = (int(v) for v in raw["photo_size"])
        return cls(
            photo_size=(width, height),
            disc_center=_point_in(raw.get("disc_center")),
            disc_diameter=_float_or_none(raw.get("disc_diameter_px")),
            disc_reason=str(raw.get("disc_reason", "")),
            disc_origin=Origin(raw.get("disc_origin", "model")),
            disc_confidence=_float_or_none(raw.get("disc_confidence")),
            fovea=_point_in(raw.get("fovea")),
            fovea_reason=str(raw.get("fovea_reason", "")),
            fovea_origin=Origin(raw.get("fovea_origin", "model")),
            fovea_confidence=_float_or_none(raw.get("fovea_confidence")),
            laterality=Laterality(raw.get("laterality", "unknown")),
            laterality_reason=str(raw.get("laterality_reason", "")),
            laterality_origin=Origin(raw.get("laterality_origin", "model")),
            scale=Scale.from_dict(raw["scale"]) if "scale" in raw else Scale(),
            disc_mask=disc_mask,
            notes=tuple(str(n) for n in raw.get("notes", ())),
        )


def _point_out(point: Point | None) -> list[float] | None:
    return None if point is None else [float(point[0]), float(point[1])]


def _point_in(raw: Any) -> Point | None:
    if raw is None:
        return None
    x, y = (float(v) for v in raw)
    return (x, y)


def _float_or_none(raw: Any) -> float | None:
    return None if raw is None else float(raw)
