"""Post-processing: calibrated maps at full resolution, lesions found fast and exactly."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import idrid_photo

from inference import (
    LabelFormatError,
    ModelContract,
    ModelContractError,
    ModelFile,
    PreprocessRecipe,
    read_photo,
)
from inference.contract import (
    KEY_DEFAULT_THRESHOLD,
    THRESHOLD_STEP,
    stepped_threshold,
    threshold_problem,
)
from inference.labels import ModelInfo
from inference.postprocess import (
    find_lesions,
    find_lesions_guided,
    label_components,
    lesions_at,
    probability_to_full,
)
from inference.preprocess import preprocess


def blobby_map(size: int, seed: int) -> np.ndarray:
    """A working-size map with lesion-like blobs of many sizes and strengths."""
    rng = np.random.default_rng(seed)
    spikes = np.zeros((size, size), np.float32)
    for _ in range(60):
        y, x = rng.integers(0, size, 2)
        spikes[y, x] = rng.uniform(0.3, 1.0)
    blobs = cv2.GaussianBlur(spikes, (0, 0), sigmaX=float(rng.uniform(1.0, 4.0)))
    blobs /= max(float(blobs.max()), 1e-6)
    noise = cv2.GaussianBlur(rng.random((size, size)).astype(np.float32), (0, 0), 2.0)
    return np.clip(0.95 * blobs + 0.15 * noise, 0, 1).astype(np.float32)


@pytest.fixture(scope="module")
def geometry():  # type: ignore[no-untyped-def]
    photo = read_photo(idrid_photo(17), min_side=1280)
    return preprocess(photo.rgb, PreprocessRecipe(), full_size=(photo.width, photo.height)).geometry


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("threshold", [0.15, 0.35, 0.6])
def test_guided_lesions_equal_labelling_the_whole_photo(
    geometry, seed: int, threshold: float
) -> None:  # type: ignore[no-untyped-def]
    working = blobby_map(geometry.working_size, seed)
    full = probability_to_full(working, geometry)
    exact = find_lesions(full, threshold, 30)
    fast = find_lesions_guided(full, working, geometry, threshold, 30)
    assert len(exact) > 0 or threshold > 0.5
    assert len(fast) == len(exact)
    for a, b in zip(fast, exact, strict=True):
        assert (a.id, a.bbox, a.area_px, a.max_probability) == (
            b.id,
            b.bbox,
            b.area_px,
            b.max_probability,
        )
        assert a.centroid == pytest.approx(b.centroid, abs=1e-6)
        assert a.mean_probability == pytest.approx(b.mean_probability, abs=1e-6)


def test_guided_lesions_ignore_what_the_model_says_outside_the_field_of_view(
    geometry,
) -> None:  # type: ignore[no-untyped-def]
    # trained with the loss masked to the field of view, a model may say anything in the
    # black corners; the map there is zero and no lesion may come from it
    working = blobby_map(geometry.working_size, 3)
    working[~geometry.fov_mask_working()] = 0.9
    full = probability_to_full(working, geometry)
    exact = find_lesions(full, 0.35, 30)
    fast = find_lesions_guided(full, working, geometry, 0.35, 30)
    assert len(exact) > 0
    assert [(a.bbox, a.area_px) for a in fast] == [(b.bbox, b.area_px) for b in exact]


def test_labelling_past_65535_components_gives_every_one_its_own_label() -> None:
    mask = np.zeros((900, 900), np.uint8)
    mask[::3, ::3] = 1  # 90,000 separate pixels: more than 16-bit labels can number
    count, labels, stats, _ = label_components(mask)
    assert count == 90_001 and labels.max() == 90_000
    assert (stats[1:, cv2.CC_STAT_AREA] == 1).all()
    small = np.zeros((50, 50), np.uint8)
    small[10:20, 10:20] = 1
    small[30:35, 30:45] = 1
    count, labels, stats, _ = label_components(small)
    assert count == 3 and sorted(stats[1:, cv2.CC_STAT_AREA]) == [75, 100]


def test_probability_is_resampled_not_rescaled(geometry) -> None:  # type: ignore[no-untyped-def]
    working = np.full((geometry.working_size,) * 2, 0.3, np.float32)
    full = probability_to_full(working, geometry)
    cx, cy, r = round(geometry.fov.cx), round(geometry.fov.cy), int(geometry.fov.radius * 0.9)
    centre = full[cy - r // 2 : cy + r // 2, cx - r // 2 : cx + r // 2]
    # a flat 0.3 stays 0.3 (no per-image min-max stretch to 1.0); it fades only at the FOV edge
    assert np.allclose(centre, 0.3, atol=1e-6)
    assert float(full.max()) == pytest.approx(0.3, abs=1e-6)


def test_lesions_at_is_the_guided_finder_on_the_resampled_map(geometry) -> None:  # type: ignore[no-untyped-def]
    working = blobby_map(geometry.working_size, 4).astype(np.float16)
    full = probability_to_full(working.astype(np.float32), geometry)
    expected = find_lesions_guided(full, working.astype(np.float32), geometry, 0.35, 30)
    assert len(expected) > 3
    assert lesions_at(working, geometry, 0.35, 30) == expected
    assert lesions_at(working, geometry, 0.35, 30, probability=full) == expected


@pytest.mark.parametrize("bad", [0.0, 1.0, -0.2, 1.5, float("nan")])
def test_one_threshold_rule_for_the_model_a_label_and_the_viewer(
    bad: float, model_path: Path
) -> None:
    assert threshold_problem(bad) == f"must be between 0 and 1, not {bad}"
    meta = ModelFile.open(model_path).contract.to_metadata()
    meta[KEY_DEFAULT_THRESHOLD] = repr(bad)
    with pytest.raises(ModelContractError, match="default threshold must be between 0 and 1"):
        ModelContract.from_metadata(meta)
    with pytest.raises(LabelFormatError, match=r"model\.threshold must be between 0 and 1"):
        ModelInfo(name="hemaview-unet", sha256="a" * 64, threshold=bad, device="cpu")


def test_the_viewers_threshold_steps() -> None:
    assert threshold_problem(THRESHOLD_STEP) is None
    assert threshold_problem(1 - THRESHOLD_STEP) is None
    assert stepped_threshold(0.35 + 0.05) == 0.4
    assert stepped_threshold(0.3 - 0.05) == 0.25
    assert stepped_threshold(0.02 - 0.05) == THRESHOLD_STEP
    assert stepped_threshold(0.97 + 0.05) == 1 - THRESHOLD_STEP
