"""Evaluation metrics: the histogram AUPR against an exact computation, lesion counting, Dice,
calibration, and the full-resolution path through a photo's geometry."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from inference.preprocess import FieldOfView, Geometry
from training.cache import mask_to_working
from training.metrics import (
    N_BINS,
    EvalPhoto,
    PRHistogram,
    calibration_sample,
    dice_score,
    evaluate,
    exact_average_precision,
    fit_platt,
    lesion_counts,
    quantise,
)


def _histogram(
    scores: np.ndarray, target: np.ndarray, valid: np.ndarray | None = None
) -> PRHistogram:
    hist = PRHistogram()
    hist.add(scores, target, valid)
    return hist


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_histogram_aupr_equals_exact_on_quantised_scores(seed: int) -> None:
    rng = np.random.default_rng(seed)
    target = rng.random((60, 70)) < 0.1
    # informative scores with many ties once quantised
    scores = np.clip(0.3 * target + rng.random(target.shape) * 0.7, 0, 1).astype(np.float32)
    quantised = quantise(scores) / np.float64(N_BINS - 1)
    exact = exact_average_precision(quantised, target)
    assert _histogram(scores, target).average_precision() == pytest.approx(exact, abs=1e-12)


def test_histogram_aupr_is_close_to_exact_on_raw_scores() -> None:
    rng = np.random.default_rng(5)
    target = rng.random(50_000) < 0.02
    scores = 1 / (1 + np.exp(-(rng.normal(size=target.size) + 2.5 * target - 3)))
    exact = exact_average_precision(scores, target)
    assert 0.1 < exact < 0.9
    assert _histogram(scores.astype(np.float32), target).average_precision() == pytest.approx(
        exact, abs=1e-3
    )


def test_exact_average_precision_on_a_hand_worked_case() -> None:
    # ranked: 0.9 (pos), 0.8 (neg), 0.7 (pos), 0.1 (neg): AP = 1/2 * 1 + 1/2 * 2/3
    scores = np.array([0.9, 0.8, 0.7, 0.1])
    target = np.array([1, 0, 1, 0], bool)
    assert exact_average_precision(scores, target) == pytest.approx(0.5 + 1 / 3)
    # a tie between a positive and a negative is one threshold: precision 1/2 there
    assert exact_average_precision(np.array([0.5, 0.5]), np.array([1, 0], bool)) == pytest.approx(
        0.5
    )


def test_perfect_inverted_constant_and_random_predictors() -> None:
    rng = np.random.default_rng(0)
    target = rng.random(200_000) < 0.05
    prevalence = target.mean()
    assert _histogram(target.astype(np.float32), target).average_precision() == pytest.approx(1.0)
    assert _histogram(
        np.full(target.shape, 0.3, np.float32), target
    ).average_precision() == pytest.approx(prevalence)
    random_ap = _histogram(rng.random(target.size).astype(np.float32), target).average_precision()
    assert random_ap == pytest.approx(prevalence, abs=0.01)
    inverted = _histogram((~target).astype(np.float32), target).average_precision()
    assert inverted == pytest.approx(prevalence, abs=1e-9)  # every positive comes last


def test_no_positives_gives_nan_and_valid_limits_the_pixels() -> None:
    assert math.isnan(_histogram(np.zeros(10, np.float32), np.zeros(10, bool)).average_precision())
    scores = np.array([0.9, 0.8, 0.1], np.float32)
    target = np.array([True, False, False])
    # with the false alarm at 0.8 outside the valid area, the ranking is perfect
    assert _histogram(scores, target, np.array([True, False, True])).average_precision() == 1.0
    assert _histogram(scores, target).average_precision() == pytest.approx(1.0)
    scores2 = np.array([0.8, 0.9, 0.1], np.float32)
    assert _histogram(scores2, target).average_precision() == pytest.approx(0.5)
    assert _histogram(scores2, target, np.array([True, False, True])).average_precision() == 1.0


def test_histograms_merge_into_the_pooled_figure() -> None:
    rng = np.random.default_rng(3)
    a_t, b_t = rng.random(5000) < 0.05, rng.random(7000) < 0.2
    a_s = np.clip(rng.random(5000) * 0.8 + 0.2 * a_t, 0, 1).astype(np.float32)
    b_s = np.clip(rng.random(7000) * 0.8 + 0.2 * b_t, 0, 1).astype(np.float32)
    pooled = _histogram(a_s, a_t)
    pooled.merge(_histogram(b_s, b_t))
    together = _histogram(np.concatenate([a_s, b_s]), np.concatenate([a_t, b_t]))
    assert pooled.average_precision() == together.average_precision()
    again = PRHistogram.from_dict(pooled.to_dict())
    assert again.average_precision() == pooled.average_precision()


def test_dice_from_the_histogram_matches_thresholded_masks() -> None:
    rng = np.random.default_rng(1)
    target = rng.random((100, 100)) < 0.1
    scores = np.clip(0.5 * target + 0.6 * rng.random(target.shape), 0, 1).astype(np.float32)
    hist = _histogram(scores, target)
    for threshold in (0.2, 0.5, 0.77):
        expected = dice_score(scores >= threshold, target)
        assert hist.dice_at(threshold) == pytest.approx(expected, abs=2e-3)
    best_threshold, best_dice = hist.best_dice_threshold()
    grid = max(dice_score(scores >= t, target) for t in np.linspace(0.01, 0.99, 99))
    assert best_dice >= grid - 1e-9
    assert dice_score(scores >= best_threshold, target) == pytest.approx(best_dice, abs=2e-3)


def test_dice_score() -> None:
    a = np.zeros((4, 4), bool)
    b = np.zeros((4, 4), bool)
    assert dice_score(a, b) == 1.0  # both empty: nothing to disagree on
    a[0, :2] = True
    assert dice_score(a, b) == 0.0
    b[0, 1:3] = True
    assert dice_score(a, b) == pytest.approx(2 * 1 / 4)


def test_lesion_counts_on_hand_made_masks() -> None:
    target = np.zeros((60, 60), bool)
    target[5:10, 5:10] = True  # lesion A: found
    target[20:24, 20:24] = True  # lesion B: missed
    target[40:45, 40:45] = True  # lesion C: found by a touching prediction
    target[45, 45] = True  # diagonal neighbour of C: the same lesion (8-connected)
    predicted = np.zeros_like(target)
    predicted[7:12, 7:12] = True  # overlaps A
    predicted[44:50, 44:50] = True  # overlaps C
    predicted[30:36, 0:6] = True  # false positive, 36 px
    predicted[0:3, 50:53] = True  # false positive, 9 px
    counts = lesion_counts(predicted, target, min_area_px=1)
    assert (counts.n_lesions, counts.detected, counts.n_predicted, counts.false_positives) == (
        3,
        2,
        4,
        2,
    )
    # components under the minimum area are dropped before counting, as the app drops them
    counts = lesion_counts(predicted, target, min_area_px=10)
    assert (counts.n_lesions, counts.detected, counts.n_predicted, counts.false_positives) == (
        3,
        2,
        3,
        1,
    )
    # a lesion touched only by a dropped component is not detected
    small = np.zeros_like(target)
    small[21, 21] = True
    assert lesion_counts(small, target, min_area_px=2).detected == 0
    assert lesion_counts(small, target, min_area_px=1).detected == 1


def test_platt_scaling_recovers_temperature_and_bias() -> None:
    rng = np.random.default_rng(0)
    z = rng.normal(0, 3, 200_000)
    y = (rng.random(z.size) < 1 / (1 + np.exp(-(z / 2.0 - 1.0)))).astype(np.float32)
    calibration = fit_platt(z, y)
    assert calibration.temperature == pytest.approx(2.0, rel=0.05)
    assert calibration.bias == pytest.approx(-1.0, abs=0.05)
    p = calibration.apply(np.array([0.0, 2.0], np.float32))
    assert p[0] == pytest.approx(1 / (1 + math.exp(1.0)), rel=0.05)
    # nothing to fit: identity
    assert fit_platt(z, np.zeros_like(y)).temperature == 1.0


def test_calibration_sample_weights_restore_the_class_balance() -> None:
    rng = np.random.default_rng(0)
    target = (rng.random((200, 200)) < 0.01).astype(np.float32)
    valid = np.ones((200, 200), bool)
    valid[:20] = False
    logits = rng.normal(size=(200, 200)).astype(np.float32)
    xs, ys, ws = calibration_sample([logits], [target], [valid], negatives_per_photo=1000)
    assert ys.sum() == target[valid].sum()
    assert ws[ys == 0].sum() == pytest.approx(np.count_nonzero(valid & (target == 0)), rel=1e-5)
    assert len(xs) == len(ys) == len(ws) == int(ys.sum()) + 1000


def _tiny_photo(tmp_path: Path) -> tuple[Geometry, np.ndarray, Path]:
    """A 300x400 'photo' with a circular field of view and three lesions, mask on disk."""
    fov = FieldOfView(cx=200.0, cy=150.0, radius=140.0, fill=1.0, clipped=False)
    geometry = Geometry(
        full_height=300,
        full_width=400,
        fov=fov,
        crop_x0=55,
        crop_y0=5,
        crop_side=290,
        working_size=128,
    )
    mask = np.zeros((300, 400), bool)
    mask[100:112, 150:165] = True
    mask[200:206, 250:256] = True
    mask[140:170, 190:200] = True
    path = tmp_path / "photo_HE.png"
    Image.fromarray((mask * 255).astype(np.uint8)).save(path)
    return geometry, mask, path


def test_evaluate_maps_back_to_full_resolution(tmp_path: Path) -> None:
    geometry, mask, path = _tiny_photo(tmp_path)
    good = mask_to_working(mask, geometry)  # the truth itself, at working size
    result = evaluate([EvalPhoto("tiny", good, geometry, path)], min_area_px=1)
    assert result.n_photos == 1
    assert result.pooled_aupr > 0.8
    assert result.photos[0].lesions.n_lesions == 3
    assert result.lesion_sensitivity == 1.0
    assert result.fp_per_photo == 0.0
    assert result.pooled_dice > 0.8
    assert result.histogram is not None
    assert result.histogram.n_pos == mask.sum()
    assert result.histogram.n_pos + result.histogram.n_neg == mask.size  # every full-res pixel
    # an uninformative map scores about the lesion fraction, and a given threshold is used
    flat = evaluate([EvalPhoto("tiny", np.full((128, 128), 0.5, np.float32), geometry, path)], 0.4)
    assert flat.threshold == 0.4
    assert flat.pooled_aupr < 0.05
    # the whole field of view is one predicted component, touching every lesion
    assert flat.photos[0].lesions.n_predicted == 1
    assert flat.photos[0].lesions.false_positives == 0
    assert flat.lesion_sensitivity == 1.0
