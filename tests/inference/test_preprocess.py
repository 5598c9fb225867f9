"""Field of view, crop and the geometry round trip on real and synthetic photos."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from conftest import idrid_photo

from inference import NotFundusError, PreprocessRecipe, read_photo
from inference.postprocess import probability_to_full
from inference.preprocess import find_fov, preprocess


def synthetic_fundus(h: int, w: int, cx: float, cy: float, r: float, seed: int = 0) -> np.ndarray:
    """An orange disc with some texture on black, like a fundus camera's frame."""
    rng = np.random.default_rng(seed)
    img = np.zeros((h, w, 3), np.uint8)
    cv2.circle(img, (round(cx), round(cy)), round(r), (180, 90, 40), -1, lineType=cv2.LINE_AA)
    noise = rng.integers(0, 20, (h, w, 1), dtype=np.uint8)
    inside = img.max(axis=2, keepdims=True) > 0
    return np.where(inside, img + noise, img).astype(np.uint8)


@pytest.mark.parametrize("number", [1, 17, 29, 43])
def test_fov_found_on_real_idrid_photos(number: int) -> None:
    photo = read_photo(idrid_photo(number))
    fov = find_fov(photo.rgb)
    # IDRiD's Kowa VX-10a frames a ~3400 px circle in 4288x2848, cut at top and bottom.
    assert 1550 < fov.radius < 1850
    assert abs(fov.cx - photo.width / 2) < 300
    assert abs(fov.cy - photo.height / 2) < 150
    assert fov.clipped
    assert fov.fill > 0.95


@pytest.mark.parametrize(
    ("h", "w", "cx", "cy", "r"),
    [(2000, 2000, 1000, 1000, 900), (1536, 2048, 1000, 770, 700), (3000, 2000, 1000, 1500, 950)],
)
def test_fov_of_other_cameras_is_exact(h: int, w: int, cx: float, cy: float, r: float) -> None:
    fov = find_fov(synthetic_fundus(h, w, cx, cy, r))
    assert abs(fov.cx - cx) < 0.01 * r
    assert abs(fov.cy - cy) < 0.01 * r
    assert abs(fov.radius - r) < 0.01 * r
    assert not fov.clipped


@pytest.mark.parametrize(
    "image",
    [
        np.zeros((800, 1200, 3), np.uint8),  # black frame
        np.full((800, 1200, 3), 128, np.uint8),  # flat grey
        np.random.default_rng(1).integers(0, 256, (800, 1200, 3), dtype=np.uint8),  # noise
        np.dstack([np.tile(np.linspace(0, 255, 1200, dtype=np.uint8), (800, 1))] * 3),  # gradient
        cv2.rectangle(
            np.zeros((800, 1200, 3), np.uint8), (200, 150), (1000, 650), (200, 180, 160), -1
        ),
    ],
    ids=["black", "grey", "noise", "gradient", "rectangle"],
)
def test_non_fundus_photos_are_refused_with_a_reason(image: np.ndarray) -> None:
    with pytest.raises(NotFundusError, match=r"field of view|fundus"):
        find_fov(image)


def _disk_mask(h: int, w: int, centres: list[tuple[int, int, int]]) -> np.ndarray:
    mask = np.zeros((h, w), np.uint8)
    for x, y, r in centres:
        cv2.circle(mask, (x, y), r, 1, -1)
    return mask.astype(bool)


@pytest.mark.parametrize("source", ["idrid", "portrait", "small-square"])
def test_geometry_round_trip_keeps_a_full_resolution_mask_in_place(source: str) -> None:
    if source == "idrid":
        rgb = read_photo(idrid_photo(5)).rgb
    elif source == "portrait":
        rgb = synthetic_fundus(3000, 2000, 1000, 1500, 950)
    else:
        rgb = synthetic_fundus(1200, 1200, 600, 600, 560)
    prepared = preprocess(rgb, PreprocessRecipe())
    g = prepared.geometry
    h, w = rgb.shape[:2]
    cx, cy, r = int(g.fov.cx), int(g.fov.cy), int(g.fov.radius)
    lesions = [(cx, cy, 60), (cx + r // 2, cy - r // 3, 40), (cx - r // 2, cy + r // 4, 30)]
    mask = _disk_mask(h, w, lesions)
    working = g.to_working(mask.astype(np.float32))
    back = probability_to_full(working, g) >= 0.5
    inter = np.logical_and(mask, back).sum()
    union = np.logical_or(mask, back).sum()
    assert inter / union > 0.85
    for x, y, rad in lesions:
        ys, xs = np.nonzero(back[y - 2 * rad : y + 2 * rad, x - 2 * rad : x + 2 * rad])
        assert abs(xs.mean() + x - 2 * rad - x) < 2.0
        assert abs(ys.mean() + y - 2 * rad - y) < 2.0


def test_preprocessed_input_is_the_working_square_with_black_surround() -> None:
    recipe = PreprocessRecipe()
    prepared = preprocess(read_photo(idrid_photo(2)).rgb, recipe)
    image = prepared.image
    assert image.shape == (recipe.working_size, recipe.working_size, 3)
    assert image.dtype == np.uint8
    outside = ~prepared.geometry.fov_mask_working()
    assert image[outside].max() == 0
    assert image[~outside].mean() > 30  # CLAHE keeps the fundus visible


def test_preprocess_is_deterministic_and_recipe_driven() -> None:
    rgb = read_photo(idrid_photo(3)).rgb
    a = preprocess(rgb, PreprocessRecipe(working_size=512)).image
    b = preprocess(rgb, PreprocessRecipe(working_size=512)).image
    assert a.shape == (512, 512, 3)
    assert np.array_equal(a, b)
