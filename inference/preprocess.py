"""Fundus preprocessing: the one copy, used by inference and imported by training.

A photo goes through: find the field of view (FOV, `inference.fov`), crop a square around it,
resize to the model's working size, blank what lies outside the circle, CLAHE. The
`Geometry` remembers the exact rectangles, so a working-size map goes back to the very
full-resolution pixels it came from (`Geometry.to_full`) and a full-resolution mask goes
forward the same way (`Geometry.to_working`).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any

import cv2
import numpy as np

from inference.contract import PreprocessRecipe
from inference.errors import NotFundusError
from inference.fov import FieldOfView, find_fov, whole_frame
from inference.photo_io import Photo, read_photo

__all__ = ["FieldOfView", "Geometry", "Preprocessed", "find_fov", "preprocess", "read_for_model"]


@dataclass(frozen=True)
class Geometry:
    """Where the working image sits in the full photo, with the rectangles both ways."""

    full_height: int
    full_width: int
    fov: FieldOfView
    crop_x0: int  # top-left of the square crop, full-res pixels; may be negative
    crop_y0: int
    crop_side: int
    working_size: int

    @property
    def scale(self) -> float:
        """Working pixels per full-resolution pixel."""
        return self.working_size / self.crop_side

    def source_rect(self) -> tuple[int, int, int, int]:
        """The part of the crop inside the photo: x0, y0, x1, y1 in full-res pixels."""
        x0 = max(self.crop_x0, 0)
        y0 = max(self.crop_y0, 0)
        x1 = min(self.crop_x0 + self.crop_side, self.full_width)
        y1 = min(self.crop_y0 + self.crop_side, self.full_height)
        return x0, y0, x1, y1

    def working_rect(self) -> tuple[int, int, int, int]:
        """Where source_rect lands in the working image: x0, y0, x1, y1 in working pixels."""
        x0, y0, x1, y1 = self.source_rect()
        s = self.scale
        wx0 = round((x0 - self.crop_x0) * s)
        wy0 = round((y0 - self.crop_y0) * s)
        wx1 = max(round((x1 - self.crop_x0) * s), wx0 + 1)
        wy1 = max(round((y1 - self.crop_y0) * s), wy0 + 1)
        return wx0, wy0, min(wx1, self.working_size), min(wy1, self.working_size)

    def to_working(self, full: np.ndarray, interpolation: int = cv2.INTER_AREA) -> np.ndarray:
        """Map a full-resolution image or mask (H, W[, C]) to the working square (S, S[, C]).

        A photo decoded at a reduced scale (same aspect, fewer pixels) is accepted too: its
        source rectangle is the full-resolution one scaled down.
        """
        x0, y0, x1, y1 = self.source_rect()
        if full.shape[:2] != (self.full_height, self.full_width):
            s = full.shape[1] / self.full_width
            if abs(full.shape[0] - self.full_height * s) > 1.0 or s > 1.0:
                raise ValueError(
                    f"array of shape {full.shape[:2]} does not match the photo "
                    f"{self.full_height}x{self.full_width}"
                )
            x0, y0 = round(x0 * s), round(y0 * s)
            x1 = min(max(round(x1 * s), x0 + 1), full.shape[1])
            y1 = min(max(round(y1 * s), y0 + 1), full.shape[0])
        wx0, wy0, wx1, wy1 = self.working_rect()
        out = np.zeros((self.working_size, self.working_size, *full.shape[2:]), full.dtype)
        patch = cv2.resize(full[y0:y1, x0:x1], (wx1 - wx0, wy1 - wy0), interpolation=interpolation)
        out[wy0:wy1, wx0:wx1] = patch.reshape(out[wy0:wy1, wx0:wx1].shape)
        return out

    def to_full(self, working: np.ndarray, interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
        """Map a working-size map (S, S) back to full resolution (H, W); zero outside the crop."""
        if working.shape[:2] != (self.working_size, self.working_size):
            raise ValueError(
                f"expected a {self.working_size}x{self.working_size} map, got {working.shape}"
            )
        x0, y0, x1, y1 = self.source_rect()
        wx0, wy0, wx1, wy1 = self.working_rect()
        out = np.zeros((self.full_height, self.full_width, *working.shape[2:]), working.dtype)
        patch = np.ascontiguousarray(working[wy0:wy1, wx0:wx1])
        target = out[y0:y1, x0:x1]
        if working.ndim == 2:
            # Resampled straight into the output: a 12-MP map is not copied a second time.
            cv2.resize(patch, (x1 - x0, y1 - y0), dst=target, interpolation=interpolation)
        else:
            target[...] = cv2.resize(
                patch, (x1 - x0, y1 - y0), interpolation=interpolation
            ).reshape(target.shape)
        return out

    def fov_mask_working(self) -> np.ndarray:
        """bool (S, S): the field-of-view disc in working pixels. Drawn once per geometry
        (preprocessing, resampling and lesion finding all ask for it); each caller gets its
        own copy."""
        mask = self.__dict__.get("_fov_mask_working")
        if mask is None:
            mask = self._fov_disc()
            object.__setattr__(self, "_fov_mask_working", mask)  # a cache, not a field
        return mask.copy()

    def _fov_disc(self) -> np.ndarray:
        s = self.scale
        cx = (self.fov.cx - self.crop_x0) * s
        cy = (self.fov.cy - self.crop_y0) * s
        yy, xx = np.ogrid[: self.working_size, : self.working_size]
        inside = (xx - cx + 0.5) ** 2 + (yy - cy + 0.5) ** 2 <= (self.fov.radius * s) ** 2
        # The disc is also limited to the photo: clipped circles end at its edges.
        wx0, wy0, wx1, wy1 = self.working_rect()
        bounds = np.zeros_like(inside)
        bounds[wy0:wy1, wx0:wx1] = True
        return np.asarray(inside & bounds)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Geometry:
        # a geometry cached before the FOV had a method reads as a fitted circle
        fields = {k: v for k, v in raw.items() if k != "fov"}
        return cls(fov=FieldOfView(**raw["fov"]), **fields)


@dataclass(frozen=True)
class Preprocessed:
    image: np.ndarray  # (S, S, 3) uint8 RGB: the model's input
    geometry: Geometry


def geometry_for(fov: FieldOfView, height: int, width: int, recipe: PreprocessRecipe) -> Geometry:
    side = max(round(2 * fov.radius * (1 + recipe.fov.margin)), 8)
    x0 = round(fov.cx - side / 2)
    y0 = round(fov.cy - side / 2)
    return Geometry(
        full_height=height,
        full_width=width,
        fov=fov,
        crop_x0=x0,
        crop_y0=y0,
        crop_side=side,
        working_size=recipe.working_size,
    )


def apply_clahe(rgb: np.ndarray, recipe: PreprocessRecipe) -> np.ndarray:
    """CLAHE as the recipe says, on an RGB uint8 image of any size."""
    clahe = cv2.createCLAHE(
        clipLimit=recipe.clahe.clip_limit,
        tileGridSize=(recipe.clahe.tile_grid, recipe.clahe.tile_grid),
    )
    if recipe.clahe.space == "lab-l":
        lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB)
        lab[:, :, 0] = clahe.apply(np.ascontiguousarray(lab[:, :, 0]))
        return cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)
    if recipe.clahe.space == "rgb":
        return np.dstack([clahe.apply(np.ascontiguousarray(rgb[:, :, c])) for c in range(3)])
    if recipe.clahe.space == "none":
        return rgb
    raise ValueError(f"unknown CLAHE colour space {recipe.clahe.space!r}")


def preprocess(
    rgb: np.ndarray,
    recipe: PreprocessRecipe | None = None,
    fov: FieldOfView | None = None,
    full_size: tuple[int, int] | None = None,
    *,
    force: bool = False,
) -> Preprocessed:
    """Photo (H, W, 3) uint8 RGB to the model's (S, S, 3) uint8 input, with its geometry.

    `full_size` (width, height) is the photo's own size when `rgb` was decoded at a reduced
    scale; the geometry is always in the photo's own pixels. With `force`, a photo refused as
    not a fundus photograph is taken whole (its FOV says so) instead of raising.
    """
    recipe = recipe or PreprocessRecipe()
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"preprocess expects (H, W, 3) uint8 RGB, got {rgb.shape} {rgb.dtype}")
    width, height = full_size or (rgb.shape[1], rgb.shape[0])
    if fov is None:
        try:
            fov = find_fov(rgb, recipe.fov)
        except NotFundusError as exc:
            if not force:
                raise
            fov = whole_frame(
                rgb.shape[0], rgb.shape[1], f"run on request although refused: {exc}", forced=True
            )
        if width != rgb.shape[1]:
            fov = fov.scaled(width / rgb.shape[1])
    geometry = geometry_for(fov, height, width, recipe)
    image = geometry.to_working(rgb, interpolation=cv2.INTER_AREA)
    if recipe.mask_outside_fov:
        inside = geometry.fov_mask_working().astype(np.uint8)
        image = cv2.bitwise_and(image, image, mask=inside)
        image = apply_clahe(image, recipe)
        # CLAHE lifts the black surround a little; keep it black
        image = cv2.bitwise_and(image, image, mask=inside)
    else:
        image = apply_clahe(image, recipe)
    return Preprocessed(image=np.ascontiguousarray(image), geometry=geometry)


def decode_min_side(recipe: PreprocessRecipe) -> int:
    """The shortest photo side a JPEG may be decoded down to for this recipe.

    The field of view spans at least ~80% of a fundus photo's shorter side, so 1.25 times the
    working size keeps more pixels across it than the model takes.
    """
    return round(recipe.working_size * 1.25)


def read_for_model(
    source: str | os.PathLike[str], recipe: PreprocessRecipe, *, force: bool = False
) -> tuple[Photo, Preprocessed]:
    """Read and preprocess a photo file exactly as the clinic does (training uses this too)."""
    photo = read_photo(source, min_side=decode_min_side(recipe))
    return photo, preprocess(photo.rgb, recipe, full_size=(photo.width, photo.height), force=force)
