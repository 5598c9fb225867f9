"""Evaluation at the photo's full resolution, and the calibration fitted on out-of-fold output.

What is measured is what a reviewer sees: the working-size map goes back to the photo's pixels
through `inference.postprocess.probability_to_full` (the app's own resampling, zero outside
the field of view) and is compared with the full-resolution mask.

- Pixel AUPR pooled over every evaluated photo, as the IDRiD challenge reports it. Computed
  as average precision (the step-wise sum of precision over recall increments, no
  interpolation), over every pixel of the photo. 53 photos x 12 MP is 650 M pixels, too many to
  sort: probabilities are quantised into 2^16 bins and positives and negatives are counted per
  bin, which is exact for the quantised scores (the tests check it against a sort-based
  computation) and moves AUPR by far less than the differences worth reporting.
- Per-photo AUPR averaged over photos that hold lesions (undefined without positives).
- Dice at a threshold, pooled over all pixels and averaged per photo.
- Lesion-level sensitivity: a ground-truth connected component (8-connected) is detected when
  any pixel of a predicted component overlaps it; false positives are predicted components
  that touch no lesion pixel. Predicted components smaller than `min_area_px` are dropped
  first, as the app drops them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from inference.labels import read_mask
from inference.postprocess import probability_to_full
from inference.preprocess import Geometry

N_BINS = 2**16


def quantise(probability: np.ndarray, n_bins: int = N_BINS) -> np.ndarray:
    """Probabilities in [0, 1] -> bin indices 0..n_bins-1 (rounded to the nearest bin)."""
    p = np.clip(np.asarray(probability, dtype=np.float32), 0.0, 1.0)
    dtype = np.uint16 if n_bins <= 2**16 else np.uint32
    return np.rint(p * np.float32(n_bins - 1)).astype(dtype)


def bin_threshold(index: int | np.ndarray, n_bins: int = N_BINS) -> Any:
    """The probability at which bin `index` starts: p >= it puts p in bin `index` or above."""
    return (np.asarray(index, dtype=np.float64) - 0.5) / (n_bins - 1)


def threshold_bin(threshold: float, n_bins: int = N_BINS) -> int:
    """The first bin counted positive at `threshold` (inverse of `bin_threshold`); n_bins when
    nothing is. A threshold inside a bin counts that bin out: an error of at most one bin."""
    index = math.ceil(threshold * (n_bins - 1) + 0.5 - 1e-6)
    return int(min(max(index, 0), n_bins))


class PRHistogram:
    """Positive and negative pixel counts per quantised probability bin."""

    def __init__(self, n_bins: int = N_BINS):
        self.n_bins = n_bins
        self.pos = np.zeros(n_bins, dtype=np.int64)
        self.neg = np.zeros(n_bins, dtype=np.int64)

    def add(
        self, probability: np.ndarray, target: np.ndarray, valid: np.ndarray | None = None
    ) -> None:
        """Count pixels of one map; `target` is bool (or 0/1), `valid` limits the pixels counted."""
        if probability.shape != target.shape:
            raise ValueError(
                f"probability {probability.shape} and target {target.shape} differ in shape"
            )
        bins = quantise(probability, self.n_bins).ravel()
        t = np.asarray(target).astype(bool, copy=False).ravel()
        if valid is not None:
            keep = np.asarray(valid, dtype=bool).ravel()
            bins, t = bins[keep], t[keep]
        total = np.bincount(bins, minlength=self.n_bins)
        pos = np.bincount(bins[t], minlength=self.n_bins)
        self.pos += pos
        self.neg += total - pos

    def merge(self, other: PRHistogram) -> None:
        self.pos += other.pos
        self.neg += other.neg

    @property
    def n_pos(self) -> int:
        return int(self.pos.sum())

    @property
    def n_neg(self) -> int:
        return int(self.neg.sum())

    def cumulative(self) -> tuple[np.ndarray, np.ndarray]:
        """TP and FP when predicting positive from bin i upwards, for every i (high to low)."""
        tp = np.cumsum(self.pos[::-1])[::-1]  # tp[i] = positives in bins >= i
        fp = np.cumsum(self.neg[::-1])[::-1]
        return tp, fp

    def curve(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Precision, recall and threshold at every occupied bin, by decreasing threshold."""
        tp, fp = self.cumulative()
        occupied = np.flatnonzero((self.pos + self.neg) > 0)[::-1]
        tp, fp = tp[occupied].astype(np.float64), fp[occupied].astype(np.float64)
        precision = tp / np.maximum(tp + fp, 1)
        recall = tp / max(self.n_pos, 1)
        return precision, recall, bin_threshold(occupied, self.n_bins)

    def average_precision(self) -> float:
        """AUPR as average precision: sum over thresholds of precision x recall gained. NaN
        without positives."""
        if self.n_pos == 0:
            return math.nan
        precision, recall, _ = self.curve()
        gained = np.diff(np.concatenate([[0.0], recall]))
        return float(np.sum(gained * precision))

    def dice_at(self, threshold: float) -> float:
        """Dice (= F1) of p >= threshold, pooled over every counted pixel."""
        index = threshold_bin(threshold, self.n_bins)
        tp_all, fp_all = self.cumulative()
        tp = float(tp_all[index]) if index < self.n_bins else 0.0
        fp = float(fp_all[index]) if index < self.n_bins else 0.0
        fn = self.n_pos - tp
        denominator = 2 * tp + fp + fn
        return 1.0 if denominator == 0 else 2 * tp / denominator

    def best_dice_threshold(self) -> tuple[float, float]:
        """The threshold maximising pooled Dice, and that Dice."""
        tp, fp = self.cumulative()
        fn = self.n_pos - tp
        dice = 2.0 * tp / np.maximum(2 * tp + fp + fn, 1)
        index = int(np.argmax(dice[1:]) + 1)  # bin 0 would predict every pixel positive
        threshold = float(np.clip(bin_threshold(index, self.n_bins), 1e-6, 1 - 1e-6))
        return threshold, float(dice[index])

    def to_dict(self) -> dict[str, Any]:
        nz = np.flatnonzero((self.pos + self.neg) > 0)
        return {
            "n_bins": self.n_bins,
            "bins": nz.tolist(),
            "pos": self.pos[nz].tolist(),
            "neg": self.neg[nz].tolist(),
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> PRHistogram:
        hist = cls(int(raw["n_bins"]))
        bins = np.asarray(raw["bins"], dtype=np.int64)
        hist.pos[bins] = np.asarray(raw["pos"], dtype=np.int64)
        hist.neg[bins] = np.asarray(raw["neg"], dtype=np.int64)
        return hist


def exact_average_precision(scores: np.ndarray, target: np.ndarray) -> float:
    """Average precision by sorting (ties share a threshold): the reference for small arrays."""
    s = np.asarray(scores, dtype=np.float64).ravel()
    t = np.asarray(target, dtype=bool).ravel()
    n_pos = int(t.sum())
    if n_pos == 0:
        return math.nan
    order = np.argsort(-s, kind="stable")
    s, t = s[order], t[order]
    tp = np.cumsum(t)
    fp = np.cumsum(~t)
    # the last index of each run of equal scores is where that threshold's counts are complete
    last = np.flatnonzero(np.concatenate([s[1:] != s[:-1], [True]]))
    precision = tp[last] / (tp[last] + fp[last])
    recall = tp[last] / n_pos
    gained = np.diff(np.concatenate([[0.0], recall]))
    return float(np.sum(gained * precision))


def dice_score(prediction: np.ndarray, target: np.ndarray) -> float:
    """Dice of two binary masks; 1.0 when both are empty."""
    p = np.asarray(prediction, dtype=bool)
    t = np.asarray(target, dtype=bool)
    inter = int(np.count_nonzero(p & t))
    total = int(np.count_nonzero(p)) + int(np.count_nonzero(t))
    return 1.0 if total == 0 else 2.0 * inter / total


@dataclass(frozen=True)
class LesionCounts:
    n_lesions: int  # ground-truth components
    detected: int  # of them, touched by a kept predicted component
    n_predicted: int  # kept predicted components
    false_positives: int  # kept predicted components touching no lesion pixel


def lesion_counts(predicted: np.ndarray, target: np.ndarray, min_area_px: int = 1) -> LesionCounts:
    """Lesion-level detection counts for one photo (8-connected components)."""
    n_pred, pred_labels, stats, _ = cv2.connectedComponentsWithStats(
        np.asarray(predicted, dtype=np.uint8), connectivity=8, ltype=cv2.CV_32S
    )
    keep = np.zeros(n_pred, dtype=bool)
    keep[1:] = stats[1:, cv2.CC_STAT_AREA] >= min_area_px
    kept_pixels = keep[pred_labels]  # bool (H, W)
    n_gt, gt_labels = cv2.connectedComponents(
        np.asarray(target, dtype=np.uint8), connectivity=8, ltype=cv2.CV_32S
    )
    overlap = kept_pixels & (gt_labels > 0)
    detected = np.unique(gt_labels[overlap])
    hit_predictions = np.unique(pred_labels[overlap])
    n_kept = int(keep.sum())
    return LesionCounts(
        n_lesions=n_gt - 1,
        detected=int(detected.size),
        n_predicted=n_kept,
        false_positives=n_kept - int(hit_predictions.size),
    )


@dataclass
class PhotoResult:
    name: str
    aupr: float  # NaN without lesions
    dice: float
    lesion_fraction: float
    lesions: LesionCounts


@dataclass
class EvalResult:
    """Everything `evaluate` measures over a set of photos."""

    pooled_aupr: float
    mean_photo_aupr: float
    threshold: float
    pooled_dice: float
    mean_photo_dice: float
    lesion_sensitivity: float
    fp_per_photo: float
    n_photos: int
    photos: list[PhotoResult] = field(default_factory=list)
    histogram: PRHistogram | None = None

    def summary(self) -> dict[str, float]:
        return {
            "pooled_aupr": self.pooled_aupr,
            "mean_photo_aupr": self.mean_photo_aupr,
            "threshold": self.threshold,
            "dice": self.pooled_dice,
            "mean_photo_dice": self.mean_photo_dice,
            "lesion_sensitivity": self.lesion_sensitivity,
            "fp_per_photo": self.fp_per_photo,
            "n_photos": self.n_photos,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.summary(),
            "photos": [
                {
                    "name": p.name,
                    "aupr": _finite_or_none(p.aupr),
                    "dice": p.dice,
                    "lesion_fraction": p.lesion_fraction,
                    **p.lesions.__dict__,
                }
                for p in self.photos
            ],
            "histogram": None if self.histogram is None else self.histogram.to_dict(),
        }


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


@dataclass(frozen=True)
class EvalPhoto:
    """One photo to evaluate: its working-size probability and where its truth lies."""

    name: str
    probability: np.ndarray  # (S, S) float, calibrated probability at working size
    geometry: Geometry
    mask_path: Path


def _full_maps(photo: EvalPhoto) -> tuple[np.ndarray, np.ndarray]:
    size = (photo.geometry.full_width, photo.geometry.full_height)
    target = read_mask(photo.mask_path, expected_size=size)
    full = probability_to_full(photo.probability.astype(np.float32, copy=False), photo.geometry)
    return full, target


def evaluate(
    photos: Sequence[EvalPhoto],
    threshold: float | None = None,
    *,
    min_area_px: int = 30,
    progress: Any = None,
) -> EvalResult:
    """Full-resolution metrics; with `threshold` None, the pooled-Dice-optimal one is used.

    Two passes over the photos: the first builds the pooled histogram (AUPR, and the threshold
    when none is given), the second thresholds each photo for Dice and lesion counts. Only one
    full-resolution photo is in memory at a time.
    """
    if not photos:
        raise ValueError("no photos to evaluate")
    pooled = PRHistogram()
    per_photo_aupr: dict[str, float] = {}
    fractions: dict[str, float] = {}
    for i, photo in enumerate(photos):
        full, target = _full_maps(photo)
        hist = PRHistogram()
        hist.add(full, target)
        pooled.merge(hist)
        per_photo_aupr[photo.name] = hist.average_precision()
        fractions[photo.name] = float(target.mean())
        if progress is not None:
            progress(i + 1, 2 * len(photos))
    if threshold is None:
        threshold, _ = pooled.best_dice_threshold()
    results: list[PhotoResult] = []
    for i, photo in enumerate(photos):
        full, target = _full_maps(photo)
        predicted = full >= threshold
        results.append(
            PhotoResult(
                name=photo.name,
                aupr=per_photo_aupr[photo.name],
                dice=dice_score(predicted, target),
                lesion_fraction=fractions[photo.name],
                lesions=lesion_counts(predicted, target, min_area_px),
            )
        )
        if progress is not None:
            progress(len(photos) + i + 1, 2 * len(photos))
    auprs = [a for a in per_photo_aupr.values() if math.isfinite(a)]
    n_lesions = sum(r.lesions.n_lesions for r in results)
    return EvalResult(
        pooled_aupr=pooled.average_precision(),
        mean_photo_aupr=float(np.mean(auprs)) if auprs else math.nan,
        threshold=float(threshold),
        pooled_dice=pooled.dice_at(threshold),
        mean_photo_dice=float(np.mean([r.dice for r in results])),
        lesion_sensitivity=(sum(r.lesions.detected for r in results) / n_lesions)
        if n_lesions
        else math.nan,
        fp_per_photo=float(np.mean([r.lesions.false_positives for r in results])),
        n_photos=len(results),
        photos=results,
        histogram=pooled,
    )


# ----------------------------------------------------------------------------------------------
# Calibration: Platt scaling on out-of-fold logits


@dataclass(frozen=True)
class Calibration:
    """p = sigmoid(logit / temperature + bias), as `PixelInputWrapper` applies it."""

    temperature: float = 1.0
    bias: float = 0.0

    def apply(self, logits: np.ndarray) -> np.ndarray:
        z = np.asarray(logits, dtype=np.float32) / np.float32(self.temperature) + np.float32(
            self.bias
        )
        return sigmoid(z)


def sigmoid(z: np.ndarray) -> np.ndarray:
    out = np.empty_like(z, dtype=np.float32)
    np.negative(z, out=out)
    np.exp(out, out=out)
    out += 1
    np.reciprocal(out, out=out)
    return out


def calibration_sample(
    logits: Iterable[np.ndarray],
    targets: Iterable[np.ndarray],
    valid: Iterable[np.ndarray],
    *,
    negatives_per_photo: int = 20000,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixels for fitting: every pixel touching a lesion, and a weighted sample of the rest.

    Negatives are subsampled and weighted by the inverse of their sampling rate, so the fit
    sees the true class balance without holding millions of pixels.
    """
    rng = np.random.default_rng(seed)
    xs: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    ws: list[np.ndarray] = []
    for z, t, v in zip(logits, targets, valid, strict=True):
        z, t, v = (
            np.asarray(z, np.float32).ravel(),
            np.asarray(t, np.float32).ravel(),
            np.asarray(v, bool).ravel(),
        )
        positive = v & (t > 0)
        negative = np.flatnonzero(v & (t <= 0))
        xs.append(z[positive])
        ys.append(t[positive])
        ws.append(np.ones(int(positive.sum()), np.float32))
        if negative.size:
            take = rng.choice(negative, size=min(negatives_per_photo, negative.size), replace=False)
            xs.append(z[take])
            ys.append(np.zeros(take.size, np.float32))
            ws.append(np.full(take.size, negative.size / take.size, np.float32))
    return np.concatenate(xs), np.concatenate(ys), np.concatenate(ws)


def fit_platt(
    logits: np.ndarray, targets: np.ndarray, weights: np.ndarray | None = None, iterations: int = 50
) -> Calibration:
    """Fit sigmoid(a * logit + b) to (soft) targets: weighted Newton steps on the log loss,
    each step halved until the loss goes down (plain Newton overshoots from a poor start)."""
    z = np.asarray(logits, np.float64).ravel()
    y = np.asarray(targets, np.float64).ravel()
    w = np.ones_like(z) if weights is None else np.asarray(weights, np.float64).ravel()
    if z.size == 0 or not np.any(y > 0) or not np.any(y < 1):
        return Calibration()

    def loss(a: float, b: float) -> float:
        s = a * z + b
        return float(np.sum(w * (np.logaddexp(0.0, s) - y * s)))

    a, b = 1.0, 0.0
    current = loss(a, b)
    for _ in range(iterations):
        p = 0.5 * (1.0 + np.tanh(0.5 * (a * z + b)))  # the sigmoid, without exp overflow
        g = w * (p - y)
        h = w * p * (1 - p) + 1e-12
        grad = np.array([np.sum(g * z), np.sum(g)])
        hess = np.array([[np.sum(h * z * z), np.sum(h * z)], [np.sum(h * z), np.sum(h)]])
        hess += np.eye(2) * 1e-9 * np.trace(hess)
        step = np.linalg.solve(hess, grad)
        scale = 1.0
        while scale > 1e-6:
            trial = loss(a - scale * step[0], b - scale * step[1])
            if trial <= current:
                break
            scale /= 2
        else:
            break  # no step lowers the loss: converged as far as float arithmetic allows
        a, b, current = a - scale * step[0], b - scale * step[1], trial
        if np.max(np.abs(scale * step)) < 1e-7:
            break
    if not (np.isfinite(a) and np.isfinite(b)) or a <= 1e-3:
        # a non-increasing map would flip the ranking: keep the model's own probabilities
        return Calibration()
    return Calibration(temperature=float(1.0 / a), bias=float(b))
