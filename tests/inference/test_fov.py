"""The field of view on other cameras: real IDRiD photos changed as other cameras, exposures
and photographers change them (training.camera_variants), whose true circle is known."""

from __future__ import annotations

from dataclasses import asdict

import cv2
import numpy as np
import pytest
from conftest import IDRID_NUMBERS, idrid_photo

from inference import Segmenter
from inference.contract import PreprocessRecipe
from inference.errors import NotFundusError
from inference.fov import (
    CONSTANTS,
    DETECTOR,
    IMPLEMENTED,
    METHOD_BOUNDING_BOX,
    METHOD_CIRCLE,
    METHOD_WHOLE_FRAME,
    DetectorConstants,
    FieldOfView,
    FovParams,
    UnsupportedDetectorError,
    find_fov,
)
from inference.photo_io import read_photo
from inference.preprocess import preprocess
from training.camera_variants import CAMERA_VARIANTS, Circle

#: What each detector tag stands for. A model records the tag it was trained with, so a tag
#: keeps its numbers for ever: to change a number, give the detector a new tag
#: (inference.fov.DETECTOR) and add its numbers here. Never edit an entry.
DETECTOR_NUMBERS = {
    "adaptive-1": {
        "min_side_px": 64,
        "median_blur_px": 5,
        "min_background_px": 3,
        "noise_floor": 1.0,
        "centre_percentile": 60.0,
        "min_surround_contrast": 20.0,
        "min_surround_contrast_share": 0.4,
        "bright_noise_sigmas": 3.0,
        "bright_noise_offset": 3.0,
        "bright_contrast_share": 0.06,
        "open_kernel_px": 5,
        "frame_margin_px": 3,
        "refine_inward_share": 0.3,
        "refine_outward_divisor": 5,
        "min_refine_px": 3,
        "edge_step_px": 2,
        "edge_drop_share": 0.5,
        "edge_noise_sigmas": 2.0,
        "edge_noise_offset": 2.0,
        "ransac_seed": 0,
        "ransac_trials": 400,
        "max_centre_outside_share": 0.25,
        "max_radius_diagonal_share": 0.75,
        "min_inlier_tol_px": 1.5,
        "refit_rounds": 3,
        "min_edge_points": 12,
        "min_inlier_share": 0.25,
        "sector_degrees": 10.0,
        "min_sectors": 6,
        "clearly_bright_share": 0.3,
        "spill_radius_factor": 1.03,
        "max_spill_share": 0.05,
        "min_retina_share": 0.8,
        "retina_noise_sigmas": 2.0,
        "retina_noise_offset": 2.0,
        "clip_margin_px": 1.0,
        "flat_low_percentile": 2.0,
        "flat_high_percentile": 98.0,
        "min_flat_span": 12.0,
        "shown_span_share": 0.1,
        "max_uniform_share": 0.5,
        "min_red_led_share": 0.5,
        "red_led_margin": 4,
    },
}


def test_the_detector_tag_stands_for_exactly_its_numbers() -> None:
    """Changing a number of the detector without giving it a new tag fails here: models that
    recorded the tag would run silently with another detector."""
    assert DETECTOR in DETECTOR_NUMBERS, f"add the numbers of detector {DETECTOR!r} above"
    assert asdict(CONSTANTS) == DETECTOR_NUMBERS[DETECTOR], (
        f"a number of detector {DETECTOR!r} changed: give the detector a new tag"
    )
    # every detector this code implements is pinned, and runs with its numbers
    assert {tag: asdict(numbers) for tag, numbers in IMPLEMENTED.items()} == {
        tag: DETECTOR_NUMBERS[tag] for tag in IMPLEMENTED
    }


def test_parameters_of_a_detector_this_code_does_not_implement_are_refused() -> None:
    with pytest.raises(UnsupportedDetectorError, match=r"'fixed-1'.*does not implement"):
        FovParams(detector="fixed-1")
    with pytest.raises(UnsupportedDetectorError, match=r"ransac_trials 100 \(here 400\)"):
        FovParams(constants=DetectorConstants(ransac_trials=100))


# 2144x1424: the variants' arithmetic on 12 MP would dominate the run; the detector works on
# a 512-px thumbnail either way.
DECODE = 1424


@pytest.fixture(scope="module")
def photos() -> dict[int, tuple[np.ndarray, Circle]]:
    out = {}
    for n in IDRID_NUMBERS:
        rgb = read_photo(idrid_photo(n), min_side=DECODE).rgb
        fov = find_fov(rgb)
        assert fov.method == METHOD_CIRCLE and not fov.estimated
        out[n] = rgb, Circle(fov.cx, fov.cy, fov.radius)
    return out


@pytest.mark.parametrize("variant", list(CAMERA_VARIANTS))
def test_every_other_camera_gives_the_true_field_of_view(
    photos: dict[int, tuple[np.ndarray, Circle]], variant: str
) -> None:
    for n, (rgb, truth) in photos.items():
        image, true_circle = CAMERA_VARIANTS[variant](rgb, truth)
        fov = find_fov(image)
        error = true_circle.error(fov.cx, fov.cy, fov.radius)
        assert error < 0.02, f"IDRiD_{n:02d}, {variant}: off by {error:.1%} of the radius"
        assert fov.method == METHOD_CIRCLE and not fov.estimated, (n, variant)


@pytest.fixture(scope="module")
def many_lesions(segmenter: Segmenter) -> tuple[np.ndarray, Circle, np.ndarray]:
    """IDRiD_03 (77 lesions) and the model's mask on it, at working size."""
    rgb = read_photo(idrid_photo(3), min_side=DECODE).rgb
    base = segmenter.predict(rgb)
    fov = base.geometry.fov
    return rgb, Circle(fov.cx, fov.cy, fov.radius), base.working >= segmenter.threshold


@pytest.mark.slow
@pytest.mark.parametrize("variant", list(CAMERA_VARIANTS))
def test_the_model_finds_the_same_lesions_on_another_camera(
    segmenter: Segmenter, many_lesions: tuple[np.ndarray, Circle, np.ndarray], variant: str
) -> None:
    rgb, truth, base = many_lesions
    image, true_circle = CAMERA_VARIANTS[variant](rgb, truth)
    prediction = segmenter.predict(image)
    # The working square is cut about the field of view, so masks align pixel for pixel when
    # the fields of view agree; compare where the changed photo has retina.
    shown = prediction.geometry.fov_mask_working()
    mask = (prediction.working >= segmenter.threshold) & shown

    # 1. The detected field of view costs nothing against the true one on the same photo.
    exact = preprocess(
        image,
        segmenter.contract.preprocess,
        fov=FieldOfView(true_circle.cx, true_circle.cy, true_circle.r, 1.0, True),
    )
    with_truth = (segmenter.backend.run(exact.image[None])[0] >= segmenter.threshold) & shown
    assert _dice(mask, with_truth) > 0.8, variant

    # 2. The lesions overlap the unchanged photo's. How many the model still finds under
    # another exposure is the model's own robustness (its card has the figures: gamma 0.5 is
    # the hardest today); a wrong field of view shifts or rescales every lesion instead.
    reference = base & shown
    count, labels = cv2.connectedComponents(reference.astype(np.uint8))
    found = np.mean([mask[labels == i].any() for i in range(1, count)])
    assert found > 0.1 and _dice(mask, reference) > 0.05, f"{variant}: found {found:.0%}"


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2 * np.count_nonzero(a & b) / max(np.count_nonzero(a) + np.count_nonzero(b), 1)


def _document() -> np.ndarray:
    page = np.full((1100, 850, 3), 250, np.uint8)
    for i in range(40):
        cv2.putText(page, "Lorem ipsum dolor sit amet", (40, 40 + 25 * i), 0, 0.6, (20, 20, 20), 1)
    return page


def _screenshot() -> np.ndarray:
    screen = np.full((900, 1440, 3), 236, np.uint8)
    cv2.rectangle(screen, (0, 0), (1440, 40), (50, 50, 60), -1)
    for i in range(12):
        cv2.putText(screen, f"Item {i}", (20, 80 + 30 * i), 0, 0.6, (0, 0, 0), 1)
        x, y = 300 + 90 * (i % 6), 100 + 90 * (i // 6)
        cv2.rectangle(screen, (x, y), (x + 70, y + 70), (30 + 20 * i, 120, 200), -1)
    return screen


def _cartoon_disc() -> np.ndarray:
    """An orange disc on black, drawn: round and fundus-coloured, but flat colours."""
    drawing = np.zeros((800, 1000, 3), np.uint8)
    cv2.circle(drawing, (500, 400), 350, (230, 110, 40), -1, lineType=cv2.LINE_AA)
    cv2.circle(drawing, (620, 380), 60, (250, 220, 150), -1, lineType=cv2.LINE_AA)
    return drawing


@pytest.mark.parametrize(
    ("image", "reason"),
    [
        (_document(), "one exact colour"),
        (_screenshot(), "one exact colour"),
        (_cartoon_disc(), "one exact colour"),
        (np.zeros((40, 50, 3), np.uint8), "too small"),
    ],
    ids=["document", "screenshot", "drawing", "tiny"],
)
def test_what_clearly_is_no_retina_photo_is_refused_with_the_reason(
    image: np.ndarray, reason: str
) -> None:
    with pytest.raises(NotFundusError, match=reason):
        find_fov(image)


def test_a_retina_filling_the_frame_is_estimated_as_the_whole_photo(
    photos: dict[int, tuple[np.ndarray, Circle]],
) -> None:
    """No dark surround at all (a close-up, or a crop): run on the whole photo, and say so."""
    rgb, c = photos[1]
    half = int(0.6 * c.r)
    crop = np.ascontiguousarray(
        rgb[int(c.cy) - half : int(c.cy) + half, int(c.cx) - half : int(c.cx) + half]
    )
    fov = find_fov(crop)
    assert fov.method == METHOD_WHOLE_FRAME and fov.estimated
    assert "whole photo" in fov.note
    prepared = preprocess(crop, PreprocessRecipe(working_size=256))
    assert prepared.geometry.fov_mask_working()[64:192, 64:192].all()  # nothing blanked


def test_a_field_of_view_that_is_no_circle_is_estimated_from_the_bright_area(
    photos: dict[int, tuple[np.ndarray, Circle]],
) -> None:
    """An oval aperture: no circle fits, the photo is still a retina; its bounding box is used
    and the field of view is marked estimated, never refused or fitted to garbage."""
    rgb, c = photos[1]
    oval = np.zeros(rgb.shape[:2], np.uint8)
    centre = (round(c.cx), round(c.cy))
    cv2.ellipse(oval, centre, (round(c.r), round(0.55 * c.r)), 0, 0, 360, 1, -1)
    image = rgb * oval[..., None]
    fov = find_fov(image)
    assert fov.method == METHOD_BOUNDING_BOX and fov.estimated
    assert "estimated" in fov.note
    assert abs(fov.cx - c.cx) < 0.05 * c.r and abs(fov.cy - c.cy) < 0.05 * c.r
    assert abs(fov.radius - c.r) < 0.05 * c.r


def test_a_refused_photo_runs_on_request_as_the_whole_frame() -> None:
    screen = _screenshot()
    with pytest.raises(NotFundusError):
        preprocess(screen, PreprocessRecipe(working_size=128))
    forced = preprocess(screen, PreprocessRecipe(working_size=128), force=True)
    fov = forced.geometry.fov
    assert fov.forced and fov.estimated and fov.method == METHOD_WHOLE_FRAME
    assert "one exact colour" in fov.note  # the refusal it overrode stays on record
