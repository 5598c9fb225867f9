"""Other-camera versions of the labelled photos, made before preprocessing.

A camera changes the photo before anything of ours sees it, so its versions go through the
whole clinic pipeline (field of view, crop, CLAHE: `inference.preprocess`), not through tensor
jitter after it. Each photo gets a few random cameras (`training.camera_variants.random_camera`)
for training, drawn from (seed, photo, index) so every fold and every resumption sees the same
ones, and cached on disk beside the plain preprocessed photos.

For evaluation, `other_camera_photo` gives one fixed photometric variant per photo (pixels
stay in place, so the photo's own mask scores it).
"""

from __future__ import annotations

import hashlib
import json
import zlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from inference.atomic import atomic_write_bytes, atomic_write_text
from inference.contract import PreprocessRecipe
from inference.labels import read_mask
from inference.photo_io import read_photo
from inference.preprocess import Geometry, decode_min_side, preprocess
from training.cache import mask_to_working, recipe_key
from training.camera_variants import CAMERA_VARIANTS, PHOTOMETRIC_VARIANTS, Circle, Variant
from training.camera_variants import random_camera as draw_camera
from training.data import Sample


@dataclass(frozen=True)
class CameraVersion:
    """One photo as another camera took it, at working size."""

    image: np.ndarray  # (S, S, 3) uint8
    mask: np.ndarray | None  # (S, S) float32 lesion fraction; None: not annotated
    fov: np.ndarray  # (S, S) bool
    description: str


def _camera(sample: Sample, seed: int, index: int) -> tuple[str, Variant]:
    # zlib.crc32, not hash(): the same draw in every process and every run
    key = zlib.crc32(f"{sample.name}/{seed}/{index}".encode())
    return draw_camera(np.random.default_rng(key))


def _through_camera(
    sample: Sample, variant: Variant, recipe: PreprocessRecipe
) -> tuple[np.ndarray, Geometry]:
    """The photo as decoded for the model, changed by `variant` about its own field of view,
    then preprocessed as the clinic does (the field of view found again)."""
    photo = read_photo(sample.image_path, min_side=decode_min_side(recipe))
    scale = photo.rgb.shape[1] / photo.width  # a JPEG may decode at a reduced scale
    fov = sample.geometry.fov.scaled(scale)
    rgb, _ = variant(photo.rgb, Circle(fov.cx, fov.cy, fov.radius))
    prepared = preprocess(rgb, recipe, full_size=(photo.width, photo.height), force=True)
    return prepared.image, prepared.geometry


#: Part of every cache key: bump it when random_camera draws differently.
DRAW_VERSION = 1


def _version(
    sample: Sample, recipe: PreprocessRecipe, cache_dir: Path, seed: int, index: int
) -> CameraVersion:
    description, variant = _camera(sample, seed, index)
    digest = hashlib.sha256(sample.image_path.read_bytes())
    digest.update(f"/{sample.name}/{seed}/{index}/{DRAW_VERSION}".encode())
    stem = cache_dir / f"{recipe_key(recipe)}-cameras" / digest.hexdigest()[:24]
    image_path, geometry_path = stem.with_suffix(".png"), stem.with_suffix(".json")
    image = geometry = None
    if image_path.exists() and geometry_path.exists():
        decoded = cv2.imdecode(np.frombuffer(image_path.read_bytes(), np.uint8), cv2.IMREAD_COLOR)
        if decoded is not None:
            image = np.ascontiguousarray(decoded[:, :, ::-1])
            geometry = Geometry.from_dict(json.loads(geometry_path.read_text()))
    if image is None or geometry is None:
        image, geometry = _through_camera(sample, variant, recipe)
        ok, encoded = cv2.imencode(".png", image[:, :, ::-1], [cv2.IMWRITE_PNG_COMPRESSION, 1])
        if not ok:
            raise OSError(f"could not encode a camera version of {sample.image_path}")
        atomic_write_bytes(image_path, encoded.tobytes())
        atomic_write_text(geometry_path, json.dumps(geometry.to_dict()))
    mask = None
    if sample.mask_path is not None:
        full = read_mask(
            sample.mask_path, expected_size=(geometry.full_width, geometry.full_height)
        )
        mask = np.clip(mask_to_working(full, geometry), 0.0, 1.0)
    return CameraVersion(image, mask, geometry.fov_mask_working(), description)


def add_camera_versions(
    samples: Sequence[Sample],
    recipe: PreprocessRecipe,
    count: int,
    cache_dir: Path,
    *,
    seed: int = 0,
    workers: int = 2,
) -> dict[str, list[CameraVersion]]:
    """`count` other-camera versions of each sample, by name (cached; decoded in threads)."""
    if count <= 0:
        return {}
    jobs = [(s, i) for s in samples for i in range(count)]
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        made = list(pool.map(lambda job: _version(job[0], recipe, cache_dir, seed, job[1]), jobs))
    out: dict[str, list[CameraVersion]] = {}
    for (sample, _), version in zip(jobs, made, strict=True):
        out.setdefault(sample.name, []).append(version)
    return out


def other_camera_name(position: int) -> str:
    """The fixed photometric variant the `position`-th evaluated photo gets."""
    return PHOTOMETRIC_VARIANTS[position % len(PHOTOMETRIC_VARIANTS)]


def other_camera_photo(
    sample: Sample, recipe: PreprocessRecipe, position: int
) -> tuple[np.ndarray, Geometry, str]:
    """The photo through a fixed other camera, preprocessed: working image, geometry, name."""
    name = other_camera_name(position)
    image, geometry = _through_camera(sample, CAMERA_VARIANTS[name], recipe)
    return image, geometry, name
