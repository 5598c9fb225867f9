"""What a prediction is: a photo's calibrated probability map, its lesions, and where it came
from; or the reason a photo could not be processed."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from inference.errors import HemaviewError
from inference.labels.records import ModelInfo
from inference.photo_io import Photo
from inference.postprocess import Lesion, find_lesions_guided
from inference.preprocess import Geometry
from inference.version import __version__

PhotoSource = str | os.PathLike[str] | np.ndarray
ProgressCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class Provenance:
    """Where a prediction came from: enough to reproduce it and to trust it."""

    model_name: str
    model_version: str
    model_sha256: str
    device: str  # "cuda", "cpu" or "triton"
    device_reason: str
    threshold: float
    photo_sha256: str
    photo_size: tuple[int, int]  # width, height
    photo_format: str
    conversions: tuple[str, ...]
    # cx, cy, radius, fill; method ("circle", or how it was estimated), note, forced
    fov: dict[str, Any]
    timings_ms: dict[str, float]
    app_version: str = __version__
    model_file: str = ""  # the file that ran (e.g. hemorrhage-int8.onnx); "" before it was kept

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def model_info(self, threshold: float) -> ModelInfo:
        """The label record's account of the model, at the threshold the mask was cut at.
        Recorded as it ran: an unknown device is refused there, never rewritten."""
        return ModelInfo(
            self.model_name,
            self.model_sha256,
            threshold,
            self.device,
            fov_method=self.fov.get("method", "circle"),
            forced=bool(self.fov.get("forced", False)),
            file=self.model_file,
        )

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Provenance:
        values = dict(raw)
        values["photo_size"] = tuple(values["photo_size"])
        values["conversions"] = tuple(values["conversions"])
        return cls(**values)


@dataclass
class Prediction:
    """A photo's probability map at full resolution, with its lesions at the threshold."""

    probability: np.ndarray  # float32 (H, W), calibrated, in [0, 1]
    threshold: float
    lesions: list[Lesion]
    provenance: Provenance
    geometry: Geometry
    photo: Photo  # as read: for a path, possibly at a reduced scale (photo.width is the full size)
    working: np.ndarray  # float16 (S, S): the model's own output, what caches keep
    _mask: np.ndarray | None = field(default=None, repr=False)
    _working32: np.ndarray | None = field(default=None, repr=False)

    @property
    def mask(self) -> np.ndarray:
        """bool (H, W): probability >= threshold."""
        if self._mask is None:
            self._mask = self.probability >= self.threshold
        return self._mask

    def at_threshold(self, threshold: float, min_area_px: int) -> list[Lesion]:
        """The lesions at another threshold, without running the model again."""
        if self._working32 is None:
            self._working32 = self.working.astype(np.float32)
        return find_lesions_guided(
            self.probability, self._working32, self.geometry, threshold, min_area_px
        )

    @functools.cached_property
    def uncertainty(self) -> float:
        """Share of the field of view whose probability is neither clearly in nor clearly out."""
        p = self.probability
        unsure = np.count_nonzero((p > 0.2) & (p < 0.8))
        fov_area = np.pi * self.geometry.fov.radius**2
        return float(unsure / max(fov_area, 1.0))


@dataclass(frozen=True)
class PhotoFailure:
    """A photo that could not be processed, and why (for lists and summaries)."""

    source: str
    message: str
    error: HemaviewError


def source_name(source: PhotoSource) -> str:
    """How a photo is named in messages: its path, or "<array>" for pixels given directly."""
    return "<array>" if isinstance(source, np.ndarray) else str(Path(source))
