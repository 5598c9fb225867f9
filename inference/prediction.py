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

from inference.contract import threshold_problem
from inference.errors import HemaviewError
from inference.photo_io import Photo
from inference.postprocess import Lesion, lesions_at, probability_to_full
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

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Provenance:
        values = dict(raw)
        values["photo_size"] = tuple(values["photo_size"])
        values["conversions"] = tuple(values["conversions"])
        return cls(**values)


@dataclass
class Prediction:
    """A photo's working-size map and what follows from it at its threshold: the
    full-resolution probability map, the mask and the lesions, each made when first asked
    for and kept (the one post-processing, `inference.postprocess.lesions_at`)."""

    working: np.ndarray  # float16 (S, S): the model's own output, what caches keep
    geometry: Geometry
    threshold: float
    min_area_px: int  # lesions smaller than this are dropped (the model's contract says so)
    provenance: Provenance
    photo: Photo  # as read: for a path, possibly at a reduced scale (photo.width is the full size)
    _probability: np.ndarray | None = field(default=None, init=False, repr=False)
    _lesions: list[Lesion] | None = field(default=None, init=False, repr=False)
    _mask: np.ndarray | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        # Caches keep float16: a fresh prediction is the one a cache gives back.
        self.working = np.asarray(self.working, np.float16)
        problem = threshold_problem(self.threshold)
        if problem:
            raise ValueError(f"the threshold {problem}")

    @property
    def probability(self) -> np.ndarray:
        """float32 (H, W), calibrated, in [0, 1]: the working map at the photo's resolution,
        0 outside the field of view."""
        if self._probability is None:
            self._probability = probability_to_full(self.working, self.geometry)
        return self._probability

    @property
    def lesions(self) -> list[Lesion]:
        """The lesions at the prediction's threshold."""
        if self._lesions is None:
            self._lesions = self.at_threshold(self.threshold)
        return self._lesions

    @property
    def mask(self) -> np.ndarray:
        """bool (H, W): probability >= threshold."""
        if self._mask is None:
            self._mask = self.probability >= self.threshold
        return self._mask

    def at_threshold(self, threshold: float) -> list[Lesion]:
        """The lesions at another threshold, without running the model again."""
        return lesions_at(
            self.working,
            self.geometry,
            threshold,
            self.min_area_px,
            probability=self.probability,
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
