"""A disk cache of preprocessed photos, so each epoch does not re-decode 12-MP JPEGs.

Everything goes through `inference.preprocess` (the one copy): what the model trains on is
what the clinic's photos become. Entries are keyed by the photo's SHA-256 and the recipe,
so a changed photo or recipe never reads a stale entry.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from inference.atomic import atomic_write_bytes, atomic_write_text
from inference.contract import PreprocessRecipe
from inference.preprocess import Geometry, read_for_model


@dataclass(frozen=True)
class CachedPhoto:
    name: str  # file stem, e.g. IDRiD_01
    image: np.ndarray  # (S, S, 3) uint8, the model's input
    fov: np.ndarray  # (S, S) bool, the field of view in working pixels
    geometry: Geometry


def recipe_key(recipe: PreprocessRecipe) -> str:
    return hashlib.sha256(recipe.to_json().encode()).hexdigest()[:12]


def load_preprocessed(photo_path: Path, recipe: PreprocessRecipe, cache_dir: Path) -> CachedPhoto:
    """The preprocessed photo, from the cache when present, else computed and stored."""
    digest = hashlib.sha256(photo_path.read_bytes()).hexdigest()
    folder = cache_dir / recipe_key(recipe)
    image_path = folder / f"{digest[:24]}.png"
    geometry_path = folder / f"{digest[:24]}.json"
    if image_path.exists() and geometry_path.exists():
        image = cv2.imdecode(np.frombuffer(image_path.read_bytes(), np.uint8), cv2.IMREAD_COLOR)
        if image is not None:
            geometry = Geometry.from_dict(json.loads(geometry_path.read_text()))
            rgb = np.ascontiguousarray(image[:, :, ::-1])
            return CachedPhoto(photo_path.stem, rgb, geometry.fov_mask_working(), geometry)
    _, prepared = read_for_model(photo_path, recipe)
    ok, encoded = cv2.imencode(".png", prepared.image[:, :, ::-1], [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise OSError(f"could not encode the cache entry for {photo_path}")
    atomic_write_bytes(image_path, encoded.tobytes())
    atomic_write_text(geometry_path, json.dumps(prepared.geometry.to_dict()))
    geometry = prepared.geometry
    return CachedPhoto(photo_path.stem, prepared.image, geometry.fov_mask_working(), geometry)


def mask_to_working(mask: np.ndarray, geometry: Geometry) -> np.ndarray:
    """Full-resolution bool mask -> (S, S) float32 lesion fraction per working pixel."""
    return geometry.to_working(mask.astype(np.float32), interpolation=cv2.INTER_AREA)
