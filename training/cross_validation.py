"""`hemaview-train compare`: which initialisation and which tasks, by k-fold cross-validation.

Configurations: initialisation {random, MoCo, ImageNet (only with a local weights file)} x
{segmentation only, segmentation + reconstruction}. Every configuration gets the same budget
(steps, batch, patch size, working size) and the same folds, split by photo. Each held-out
photo is predicted once, by the model that never saw it; the out-of-fold logits are then
calibrated (Platt scaling), the Dice-optimal threshold is chosen on them, and everything is
measured at the photo's full resolution (`training.metrics`).

The chosen threshold and the calibration are fitted on the same out-of-fold predictions that
are scored, so Dice, lesion sensitivity and FP/photo are slightly optimistic (one threshold
over some 50 photos); the AUPR figures do not depend on either.

Every stage is resumable: finished folds, predictions and evaluations are kept on disk and
skipped when the command is run again with the same output folder.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from inference.atomic import atomic_write_text
from inference.preprocess import Geometry
from training.configs import (
    FinetuneConfig,
    add_dataclass_args,
    dataclass_from_args,
    to_jsonable,
)
from training.cv_config import (
    MODES,
    CompareConfig,
    RunSpec,
    Scale,
    ensure_moco_encoder,
    finetune_config,
    log,
)
from training.cv_results import RunResult, load_run_result, save_run_result, write_report
from training.data import (
    LabelledSet,
    Sample,
    default_data_dir,
    kfold_split,
    load_labelled_set,
    scan_idrid,
    split_for_fold,
)
from training.finetune import finetune
from training.metrics import (
    Calibration,
    EvalPhoto,
    EvalResult,
    calibration_sample,
    evaluate,
    fit_platt,
)
from training.out_of_fold import (
    curve_epochs,
    curve_snapshot,
    match_predictions,
    oof_path,
    predict_held_out,
)
from training.runtime import (
    format_duration,
    progress,
    reporter,
    resolve_device,
)


def run_config(
    spec: RunSpec,
    data: LabelledSet,
    folds: list[list[str]],
    scale: Scale,
    config: CompareConfig,
    weights: str,
    out: Path,
) -> RunResult:
    """Cross-validate one configuration (resuming whatever is already on disk)."""
    folder = out / spec.name
    result_path = folder / "result.json"
    match_predictions(folder, config)
    if result_path.is_file():
        return load_run_result(result_path, folder)
    t0 = time.perf_counter()
    train_s, predict_s, ft_config = _folds(spec, data, folds, scale, config, weights, folder)
    evaluable = [s for s in data.samples if s.evaluable]
    oof = {s.name: np.load(oof_path(folder, s.name)).astype(np.float32) for s in evaluable}
    calibration, result = calibrate_and_evaluate(evaluable, oof)
    extra = {
        "other_camera": _other_camera_metrics(folder, evaluable, calibration),
        "curve": _curve(folder, evaluable, result, scale),
    }
    # Training time comes from the checkpoints, so a resumed run still reports its whole cost.
    train_s = max(train_s, _logged_train_seconds(folder, len(folds)))
    wall = time.perf_counter() - t0
    run_result = RunResult(
        spec,
        {**result.summary(), **extra},
        calibration,
        train_s,
        predict_s,
        wall,
        folder,
        result.histogram,
        to_jsonable(ft_config) if ft_config else {},
    )
    save_run_result(run_result, result)
    log(
        f"{spec.name}: pooled AUPR {result.pooled_aupr:.4f}, mean photo AUPR "
        f"{result.mean_photo_aupr:.4f}, Dice {result.pooled_dice:.4f} at {result.threshold:.3f}, "
        f"lesion sensitivity {result.lesion_sensitivity:.3f}, FP/photo {result.fp_per_photo:.1f}"
    )
    return run_result


def _folds(
    spec: RunSpec,
    data: LabelledSet,
    folds: list[list[str]],
    scale: Scale,
    config: CompareConfig,
    weights: str,
    folder: Path,
) -> tuple[float, float, FinetuneConfig | None]:
    """Train each fold whose held-out photos are not all predicted yet, and predict them;
    the seconds spent training and predicting, and the last fold's configuration."""
    train_s = predict_s = 0.0
    device = resolve_device(config.device)
    ft_config: FinetuneConfig | None = None
    for k in range(len(folds)):
        train, test = split_for_fold(data.samples, folds, k)
        ft_config = finetune_config(spec, scale, config, weights, config.seed + k)
        todo = [s for s in test if not oof_path(folder, s.name).is_file()]
        if not todo:
            continue
        log(
            f"{spec.name}: fold {k + 1}/{len(folds)}: training on {len(train)} photos, "
            f"{len(test)} held out"
        )
        run = finetune(
            ft_config,
            train,
            folder / f"fold{k}",
            log=log,
            on_epoch=curve_snapshot(folder, test, ft_config, device, config.mirror_average),
            cache_dir=_cache_dir(config),
        )
        train_s += run.wall_s
        t1 = time.perf_counter()
        with progress(len(todo), "photos", f"{spec.name}: fold {k + 1} predicting") as bar:
            for sample in todo:
                predict_held_out(
                    run.net,
                    sample,
                    data,
                    folder,
                    device,
                    ft_config.eval_window,
                    config.mirror_average,
                )
                bar.update(1)
        predict_s += time.perf_counter() - t1
    return train_s, predict_s, ft_config


def _cache_dir(config: CompareConfig) -> Path | None:
    return Path(config.cache_dir) if config.cache_dir else None


def _other_camera_metrics(
    folder: Path, evaluable: Sequence[Sample], calibration: Calibration
) -> dict[str, Any] | None:
    """The out-of-fold photos through other cameras, scored with the plain photos'
    calibration and threshold-free AUPR (the clinic would not recalibrate per camera)."""
    photos = []
    for s in evaluable:
        path = oof_path(folder, s.name, "oof-camera")
        if not path.is_file() or s.mask_path is None:
            return None  # a run from before the camera evaluation: nothing to report
        geometry = Geometry.from_dict(json.loads(path.with_suffix(".json").read_text()))
        logits = np.load(path).astype(np.float32)
        photos.append(EvalPhoto(s.name, calibration.apply(logits), geometry, s.mask_path))
    log("evaluating the other-camera versions at full resolution")
    return evaluate(photos, None).summary()


def _curve(
    folder: Path, evaluable: Sequence[Sample], final: EvalResult, scale: Scale
) -> list[dict[str, float]]:
    """Pooled full-resolution AUPR of the out-of-fold photos against steps per fold."""
    points = []
    for epoch in curve_epochs(scale.epochs):
        step = epoch * scale.steps_per_epoch
        paths = [oof_path(folder, s.name, f"curve/{step}") for s in evaluable]
        if not all(p.is_file() for p in paths):
            continue
        photos = [
            EvalPhoto(
                s.name, 1 / (1 + np.exp(-np.load(p).astype(np.float32))), s.geometry, s.mask_path
            )
            for s, p in zip(evaluable, paths, strict=True)
            if s.mask_path is not None
        ]
        # AUPR needs no calibration: Platt scaling is monotone, the ranking is the same
        points.append({"steps": step, "pooled_aupr": evaluate(photos, None).pooled_aupr})
    points.append({"steps": scale.epochs * scale.steps_per_epoch, "pooled_aupr": final.pooled_aupr})
    return points


def _logged_train_seconds(folder: Path, n_folds: int) -> float:
    total = 0.0
    for k in range(n_folds):
        log_path = folder / f"fold{k}" / "train_log.csv"
        if log_path.is_file():
            lines = log_path.read_text().strip().splitlines()
            header = lines[0].split(",")
            if "wall_s" in header and len(lines) > 1:
                total += float(lines[-1].split(",")[header.index("wall_s")])
    return total


def calibrate_and_evaluate(
    samples: Sequence[Sample], logits: dict[str, np.ndarray], *, min_area_px: int = 30
) -> tuple[Calibration, EvalResult]:
    """Platt scaling on the out-of-fold logits, then full-resolution metrics of the calibrated
    probabilities at the Dice-optimal threshold."""
    xs, ys, ws = calibration_sample(
        (logits[s.name] for s in samples),
        (s.mask for s in samples if s.mask is not None),
        (s.fov for s in samples),
    )
    calibration = fit_platt(xs, ys, ws)
    photos = [
        EvalPhoto(s.name, calibration.apply(logits[s.name]), s.geometry, s.mask_path)
        for s in samples
        if s.mask_path is not None
    ]
    with progress(2 * len(photos), "passes", "evaluating at full resolution") as bar:
        result = evaluate(photos, None, min_area_px=min_area_px, progress=reporter(bar))
    return calibration, result


# ----------------------------------------------------------------------------------------------
# The comparison


@dataclass
class CompareOutcome:
    results: list[RunResult]
    skipped: dict[str, str]
    folds: list[list[str]]
    scale: Scale
    data: LabelledSet
    out: Path

    def best(self) -> RunResult:
        ranked = [r for r in self.results if r.metrics.get("pooled_aupr") is not None]
        if not ranked:
            raise RuntimeError("no configuration produced a pooled AUPR")
        return max(ranked, key=lambda r: float(r.metrics["pooled_aupr"]))


def load_data(config: CompareConfig, scale: Scale) -> LabelledSet:
    recipe = scale.recipe
    data_dir = Path(config.data_dir) if config.data_dir else None
    names = None
    if config.photos:
        names = [r.name for r in scan_idrid(data_dir or default_data_dir())][: config.photos]
    with progress(None, "photos", "preprocessing") as bar:
        data = load_labelled_set(
            data_dir,
            recipe,
            names=names,
            cache_dir=Path(config.cache_dir) if config.cache_dir else None,
            label_dirs=[Path(p) for p in config.labels],
            label_photo_dir=Path(config.label_photos) if config.label_photos else None,
            progress=reporter(bar),
        )
    if names is not None:
        data.notes.append(f"limited to the first {len(names)} IDRiD photos (smoke run)")
    return data


def _bundled_imagenet_weights(encoder: str) -> Path | None:
    """ImageNet weights that an installed training extra carries for `encoder`, if any."""
    from training.weights import LITE0_ENCODER, efficientnet_lite0_file

    if encoder != LITE0_ENCODER:
        return None
    try:
        return efficientnet_lite0_file()
    except FileNotFoundError:
        return None


def run_compare(config: CompareConfig) -> CompareOutcome:
    scale = config.resolved_scale()
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    for mode in config.modes:
        if mode not in MODES:
            raise ValueError(f"--modes: unknown mode {mode!r} (choose from {', '.join(MODES)})")
    specs: list[RunSpec] = []
    skipped: dict[str, str] = {}
    weights: dict[str, str] = {"random": ""}
    for init in config.inits:
        if init not in ("random", "moco", "imagenet"):
            raise ValueError(f"--inits: unknown initialisation {init!r}")
        if init == "imagenet" and not config.imagenet_weights:
            bundled = _bundled_imagenet_weights(config.encoder)
            if bundled is not None:
                weights["imagenet"] = str(bundled)
                specs.extend(RunSpec(init, mode) for mode in config.modes)
                continue
            message = (
                "no local ImageNet weights file was given (--imagenet-weights PATH); "
                "nothing is downloaded, so ImageNet initialisation is not compared"
            )
            log(f"imagenet: skipped: {message}")
            for mode in config.modes:
                skipped[f"imagenet-{mode}"] = message
            continue
        if init == "imagenet":
            weights["imagenet"] = config.imagenet_weights
        specs.extend(RunSpec(init, mode) for mode in config.modes)
    data = load_data(config, scale)
    folds_path = out / "folds.json"
    folds = kfold_split(data.samples, scale.folds, config.seed)
    if folds_path.is_file():
        saved = json.loads(folds_path.read_text())["folds"]
        if saved != folds:
            raise RuntimeError(
                f"{folds_path}: this folder was cross-validated with other folds "
                "(other photos, fold count or seed); use another --out"
            )
    atomic_write_text(
        folds_path, json.dumps({"seed": config.seed, "folds": folds}, indent=1) + "\n"
    )
    atomic_write_text(
        out / "compare_config.json",
        json.dumps(
            {
                "config": to_jsonable(config),
                "scale": {**dataclasses.asdict(scale), "note": scale.note},
                "data": data.summary(),
            },
            indent=1,
        )
        + "\n",
    )
    if any(s.init == "moco" for s in specs):
        weights["moco"] = str(ensure_moco_encoder(config, scale, out / "pretrain"))
    log(
        f"comparing {len(specs)} configurations, {scale.folds}-fold CV on "
        f"{len(data.evaluable())} annotated photos ({scale.name} scale: {scale.note})"
    )
    results: list[RunResult] = []
    for spec in specs:
        results.append(run_config(spec, data, folds, scale, config, weights[spec.init], out))
        # after every configuration: a comparison of hours shows what it has so far
        write_report(results, skipped, out, scale, data, config)
    if not specs:  # every configuration skipped: the report says why
        write_report(results, skipped, out, scale, data, config)
    return CompareOutcome(results, skipped, folds, scale, data, out)


def compare_main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="hemaview-train compare", description=__doc__.split("\n")[0]
    )
    add_dataclass_args(parser, CompareConfig)
    args = parser.parse_args(argv)
    config = dataclass_from_args(CompareConfig, args)
    outcome = run_compare(config)
    print((outcome.out / "results.md").read_text())
    log(
        f"tables: {outcome.out / 'results.md'}, {outcome.out / 'results.csv'}; "
        f"curves: {outcome.out / 'pr_curves.png'}"
    )
    total = sum(r.train_s + r.predict_s for r in outcome.results)
    log(f"training and prediction took {format_duration(total)} in all")
    return 0


if __name__ == "__main__":
    sys.exit(compare_main())
