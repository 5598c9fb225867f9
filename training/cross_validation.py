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
import io
import json
import math
import shlex
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from inference.atomic import atomic_write_bytes, atomic_write_text
from inference.contract import PreprocessRecipe
from inference.preprocess import Geometry
from training.camera_data import other_camera_photo
from training.configs import (
    FinetuneConfig,
    PretrainConfig,
    add_dataclass_args,
    dataclass_from_args,
    replace_from_args,
    to_jsonable,
)
from training.data import (
    REPO_ROOT,
    LabelledSet,
    Sample,
    default_data_dir,
    kfold_split,
    load_labelled_set,
    scan_idrid,
    split_for_fold,
)
from training.finetune import finetune, predict_logits
from training.metrics import (
    Calibration,
    EvalPhoto,
    EvalResult,
    PRHistogram,
    calibration_sample,
    evaluate,
    fit_platt,
)
from training.pretrain import ENCODER_FILE, pretrain
from training.runtime import (
    cpu_bf16_units,
    cpu_name,
    format_duration,
    progress,
    reporter,
    resolve_device,
)

MODES = {"seg": False, "segrec": True}  # name -> reconstruction on
MODE_LABELS = {"seg": "segmentation only", "segrec": "segmentation + reconstruction"}


@dataclass(frozen=True)
class Scale:
    """How big a run is: the same for every configuration in one comparison."""

    name: str
    folds: int
    recipe: PreprocessRecipe  # the preprocessing of every photo, in training and prediction
    crop_size: int
    batch_size: int
    epochs: int
    steps_per_epoch: int
    lr: float
    eval_window: int
    # PretrainConfig fields for MoCo pretraining at this scale (the rest keep their defaults)
    pretrain: dict[str, Any] = field(default_factory=dict)
    overridden: str = ""  # what the command line changed, for the report

    @property
    def note(self) -> str:
        patches = self.epochs * self.steps_per_epoch * self.batch_size
        text = (
            f"{self.folds}-fold CV, working size {self.recipe.working_size} for training and "
            f"prediction, "
            f"{self.crop_size}-px patches, {self.epochs} epochs x {self.steps_per_epoch} steps x "
            f"batch {self.batch_size} ({patches} patches) per fold"
        )
        return f"{text} (overridden: {self.overridden})" if self.overridden else text


#: The reduced scale's preprocessing, for its fine-tuning and its MoCo pretraining alike.
REDUCED_RECIPE = PreprocessRecipe(working_size=512)

SCALES = {
    # Sized for this project's 2-core CPU. Measured there with light sharing (load ~2.5):
    # 1.0-1.5 steps/s, prediction ~0.3 s and full-resolution evaluation ~0.4 s per photo, so
    # about 11 minutes per configuration: random and MoCo x two task sets in about 45 minutes,
    # plus an estimated 10 for MoCo pretraining at the size below. Under heavy sharing (load 6)
    # steps ran at 0.1-0.6/s, two to five times slower.
    "reduced": Scale(
        name="reduced",
        folds=3,
        recipe=REDUCED_RECIPE,
        crop_size=128,
        batch_size=8,
        epochs=10,
        steps_per_epoch=25,
        lr=2e-3,
        eval_window=0,
        # MoCo at CPU size: 499 photos at 512 px, 128-px crops, batch 32 (lr scaled as MoCo v2's
        # 0.03 x batch / 256), one pass over the pool per epoch
        pretrain={
            "recipe": REDUCED_RECIPE,
            "crop_size": 128,
            "batch_size": 32,
            "queue_size": 1024,
            "lr": 0.00375,
            "repeats": 1,
            "epochs": 12,
            "workers": 2,
        },
    ),
    # For one GPU: five folds at the contract's default working size (1024; the shipped model
    # was trained at the reduced scale's 512). Not yet timed on a GPU.
    "full": Scale(
        name="full",
        folds=5,
        recipe=PreprocessRecipe(),
        crop_size=384,
        batch_size=16,
        epochs=40,
        steps_per_epoch=50,
        lr=1e-3,
        eval_window=0,
        # the MoCo v2 seed recipe (batch 128, 224-px crops) at the same working size
        pretrain={"recipe": PreprocessRecipe(), "epochs": 100},
    ),
}


def _help(default: Any, text: str) -> Any:
    return field(default=default, metadata={"help": text})


@dataclass
class CompareConfig:
    scale: str = _help("reduced", "reduced (this CPU, about an hour) or full (a GPU)")
    out: str = _help(str(REPO_ROOT / "runs" / "compare"), "output folder (resumes what is there)")
    data_dir: str = _help("", "IDRiD haemorrhage folder (default: ../shared/data/idrid-hemorrhage)")
    cache_dir: str = _help("", "preprocessed-photo cache (default: .cache/preprocessed)")
    labels: tuple[str, ...] = _help(
        (), "Hemaview label folders whose accepted labels add training data"
    )
    label_photos: str = _help(
        "", "folder of the labelled photos (default: each label folder's parent)"
    )
    inits: tuple[str, ...] = _help(("random", "moco", "imagenet"), "initialisations to compare")
    modes: tuple[str, ...] = _help(
        ("seg", "segrec"), "seg (segmentation only), segrec (+ reconstruction)"
    )
    moco_encoder: str = _help(
        "", "encoder.pt from pretraining (default: pretrain into <out>/pretrain)"
    )
    imagenet_weights: str = _help(
        "",
        "a local ImageNet weights file for the encoder (never downloaded; for "
        "tu-tf_efficientnet_lite0 the training extra's file is the default)",
    )
    encoder: str = _help(
        "resnet18", "smp encoder of every configuration, MoCo's included (tu-tf_efficientnet_lite0)"
    )
    pretrain_args: str = _help("", "extra arguments for pretraining, after the scale's (quoted)")
    recon_weight: float = _help(0.5, "weight of the reconstruction loss")
    folds: int = _help(0, "folds (0: the scale's)")
    epochs: int = _help(0, "epochs per fold (0: the scale's)")
    steps_per_epoch: int = _help(0, "steps per epoch (0: the scale's)")
    batch_size: int = _help(0, "patches per step (0: the scale's)")
    working_size: int = _help(0, "working size (0: the scale's)")
    crop_size: int = _help(0, "patch size (0: the scale's)")
    photos: int = _help(0, "use only the first N IDRiD photos by name (0: all; for smoke runs)")
    device: str = _help("auto", "auto, cpu or cuda")
    seed: int = _help(0, "seed (fold k trains with seed + k)")
    threads: int = _help(0, "CPU threads for torch (0: torch's default)")
    camera_versions: int = _help(
        3, "other-camera versions of each training photo (0: none; see training.camera_data)"
    )
    camera_p: float = _help(0.5, "fraction of patches cut from an other-camera version")
    bf16: bool = _help(True, "bfloat16 autocast where the device computes it natively")
    ema_decay: float = _help(
        0.0, "average the weights over the steps with this decay (0: off; see training.ema)"
    )
    hard_negatives: str = _help(
        "", "hard-negative points (fp-analysis's hard_negatives.json) for every fold"
    )
    hard_negative_p: float = _help(
        0.0, "of the patches not centred on a lesion, the fraction centred on a hard negative"
    )
    shadow_p: float = _help(0.0, "fraction of patches darkened by a large smooth shadow")
    mirror_average: bool = _help(
        True,
        "predict each photo as the mean of it and its three mirror images, as the exported "
        "graph then does (4x the model's work per photo; see training.model.mirror_average)",
    )

    def resolved_scale(self) -> Scale:
        if self.scale not in SCALES:
            raise ValueError(f"--scale must be one of {', '.join(SCALES)}, not {self.scale!r}")
        base = SCALES[self.scale]
        overrides = {
            k: getattr(self, k)
            for k in (
                "folds",
                "epochs",
                "steps_per_epoch",
                "batch_size",
                "working_size",
                "crop_size",
            )
            if getattr(self, k)
        }
        if not overrides:
            return base
        changed = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in overrides.items())
        recipe = base.recipe
        if "working_size" in overrides:
            recipe = dataclasses.replace(recipe, working_size=overrides.pop("working_size"))
        return dataclasses.replace(base, **overrides, recipe=recipe, overridden=changed)


@dataclass
class RunSpec:
    """One configuration of the comparison."""

    init: str
    mode: str

    @property
    def name(self) -> str:
        return f"{self.init}-{self.mode}"

    @property
    def label(self) -> str:
        return f"{self.init} init, {MODE_LABELS[self.mode]}"


def finetune_config(
    spec: RunSpec, scale: Scale, config: CompareConfig, weights: str, seed: int
) -> FinetuneConfig:
    return FinetuneConfig(
        init=spec.init,
        init_weights=weights,
        encoder=config.encoder,
        reconstruction=MODES[spec.mode],
        recon_weight=config.recon_weight,
        recipe=scale.recipe,
        crop_size=scale.crop_size,
        epochs=scale.epochs,
        steps_per_epoch=scale.steps_per_epoch,
        batch_size=scale.batch_size,
        lr=scale.lr,
        warmup_steps=min(50, scale.epochs * scale.steps_per_epoch // 10),
        seed=seed,
        device=config.device,
        eval_window=scale.eval_window,
        threads=config.threads,
        camera_versions=config.camera_versions,
        camera_p=config.camera_p,
        bf16=config.bf16,
        ema_decay=config.ema_decay,
        hard_negatives=config.hard_negatives,
        hard_negative_p=config.hard_negative_p,
        shadow_p=config.shadow_p,
    )


def log(message: str) -> None:
    print(message, flush=True)


# ----------------------------------------------------------------------------------------------
# MoCo encoder


def pretrain_config(config: CompareConfig, scale: Scale, folder: Path) -> PretrainConfig:
    """MoCo pretraining for this comparison: the scale's settings, into `folder`, on the
    comparison's device and seed, then --pretrain-args over all of them."""
    base = PretrainConfig(
        **{
            **scale.pretrain,
            "out_dir": str(folder),
            "device": config.device,
            "seed": config.seed,
            "encoder": config.encoder,
        }
    )
    return replace_from_args(base, shlex.split(config.pretrain_args), prog="--pretrain-args")


def ensure_moco_encoder(config: CompareConfig, scale: Scale, folder: Path) -> Path:
    """The MoCo encoder: the given file, or pretrain one into `folder` when it has none."""
    if config.moco_encoder:
        path = Path(config.moco_encoder)
        if not path.is_file():
            raise FileNotFoundError(f"--moco-encoder {path}: no such file")
        return path
    path = folder / ENCODER_FILE
    if path.is_file():
        return path
    log(f"moco: no encoder.pt yet; pretraining first into {folder} ({scale.name} scale)")
    written = pretrain(pretrain_config(config, scale, folder))
    if not written.is_file():
        raise RuntimeError(f"pretraining failed; {written} was not written")
    return written


# ----------------------------------------------------------------------------------------------
# One configuration: folds, out-of-fold predictions, evaluation


@dataclass
class RunResult:
    spec: RunSpec
    metrics: dict[str, Any]
    calibration: Calibration
    train_s: float
    predict_s: float
    wall_s: float
    folder: Path
    histogram: PRHistogram | None = None
    finetune: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.spec.name,
            "init": self.spec.init,
            "mode": self.spec.mode,
            "metrics": self.metrics,
            "calibration": dataclasses.asdict(self.calibration),
            "train_s": self.train_s,
            "predict_s": self.predict_s,
            "wall_s": self.wall_s,
            "finetune": self.finetune,
        }


def oof_path(folder: Path, name: str, kind: str = "oof") -> Path:
    """Out-of-fold logits of one photo: "oof" as taken, "oof-camera" through another camera,
    "curve/STEP" as the fold's model stood after STEP steps."""
    return folder / kind / f"{name}.npy"


def _save_logits(path: Path, logits: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    np.save(buffer, logits.astype(np.float16))
    atomic_write_bytes(path, buffer.getvalue())


def load_out_of_fold(folder: Path, name: str, kind: str = "oof") -> tuple[np.ndarray, Geometry]:
    """A photo's saved out-of-fold logits (float32, working size) and the geometry that maps
    them to the photo's full resolution (`Geometry.to_full`)."""
    path = oof_path(folder, name, kind)
    geometry_path = path.with_suffix(".json")
    if not geometry_path.is_file():
        raise FileNotFoundError(
            f"{geometry_path}: no geometry beside the out-of-fold logits (a run from before "
            "they were saved; predict again from the folds' checkpoints)"
        )
    geometry = Geometry.from_dict(json.loads(geometry_path.read_text()))
    return np.load(path).astype(np.float32), geometry


def curve_epochs(epochs: int) -> list[int]:
    """Where the AUPR-against-steps curve samples a run (its end is the run's own result)."""
    return sorted({max(1, round(epochs * f)) for f in (1 / 8, 1 / 4, 1 / 2, 3 / 4)} - {epochs})


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
    _match_predictions(folder, config)
    if result_path.is_file():
        return load_run_result(result_path, folder)
    t0 = time.perf_counter()
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
            on_epoch=_curve_snapshot(folder, test, ft_config, device, config.mirror_average),
            cache_dir=_cache_dir(config),
        )
        train_s += run.wall_s
        t1 = time.perf_counter()
        with progress(len(todo), "photos", f"{spec.name}: fold {k + 1} predicting") as bar:
            for sample in todo:
                _predict_held_out(
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
    plot_pr_curves([run_result], folder / "pr_curve.png", title=spec.label)
    atomic_write_text(folder / "evaluation.json", json.dumps(_jsonable(result.to_dict())) + "\n")
    atomic_write_text(
        result_path,
        json.dumps(
            _jsonable(
                {
                    **run_result.to_dict(),
                    "histogram": result.histogram.to_dict() if result.histogram else None,
                }
            ),
            indent=1,
        )
        + "\n",
    )
    log(
        f"{spec.name}: pooled AUPR {result.pooled_aupr:.4f}, mean photo AUPR "
        f"{result.mean_photo_aupr:.4f}, Dice {result.pooled_dice:.4f} at {result.threshold:.3f}, "
        f"lesion sensitivity {result.lesion_sensitivity:.3f}, FP/photo {result.fp_per_photo:.1f}"
    )
    return run_result


PREDICTION_FILE = "prediction.json"


def _match_predictions(folder: Path, config: CompareConfig) -> None:
    """Make the saved out-of-fold predictions those `config` asks for.

    Predictions made another way (with or without mirror averaging; a folder from before the
    setting existed predicted without it) are removed, with the result computed from them,
    so the finished folds' checkpoints predict again rather than train again. The curve's
    snapshots were taken while training and stay as they were.
    """
    wanted = {"mirror_average": config.mirror_average}
    path = folder / PREDICTION_FILE
    saved = json.loads(path.read_text()) if path.is_file() else None
    made = sorted((folder / "oof").glob("*.npy")) if folder.is_dir() else []
    if saved is None and made:
        saved = {"mirror_average": False}
    if saved is not None and saved != wanted and made:
        log(
            f"{folder.name}: out-of-fold predictions were made with {saved}, not {wanted}; "
            "predicting again from the folds' checkpoints"
        )
        (folder / "result.json").unlink(missing_ok=True)
        for kind in ("oof", "oof-camera"):
            for old in (folder / kind).glob("*"):
                old.unlink()
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(wanted) + "\n")


def _predict_held_out(
    net: Any,
    sample: Sample,
    data: LabelledSet,
    folder: Path,
    device: torch.device,
    window: int,
    mirror: bool,
) -> None:
    """A held-out photo's out-of-fold logits, as taken and through another camera."""
    logits = predict_logits(net, sample.image, device, window=window, mirror=mirror)
    if sample.evaluable:
        # the same photo through another camera, as the clinic would preprocess it
        image, geometry, _ = other_camera_photo(sample, data.recipe, camera_position(data, sample))
        camera = predict_logits(net, image, device, window=window, mirror=mirror)
        _save_logits(oof_path(folder, sample.name, "oof-camera"), camera)
        atomic_write_text(
            oof_path(folder, sample.name, "oof-camera").with_suffix(".json"),
            json.dumps(geometry.to_dict()),
        )
    # where the working map sits in the photo, so an analysis can go back to full resolution
    # without preprocessing the photo again (see load_out_of_fold)
    atomic_write_text(
        oof_path(folder, sample.name).with_suffix(".json"), json.dumps(sample.geometry.to_dict())
    )
    _save_logits(oof_path(folder, sample.name), logits)  # last: marks the photo done


def _curve_snapshot(
    folder: Path,
    test: Sequence[Sample],
    config: FinetuneConfig,
    device: torch.device,
    mirror: bool,
) -> Any:
    """An on_epoch callback saving the held-out photos' logits at the curve's epochs."""

    def snapshot(epoch: int, net: Any) -> None:
        if epoch not in curve_epochs(config.epochs):
            return
        step = epoch * config.steps_per_epoch
        for sample in test:
            if sample.evaluable:
                logits = predict_logits(
                    net, sample.image, device, window=config.eval_window, mirror=mirror
                )
                _save_logits(oof_path(folder, sample.name, f"curve/{step}"), logits)

    return snapshot


def _cache_dir(config: CompareConfig) -> Path | None:
    return Path(config.cache_dir) if config.cache_dir else None


def camera_position(data: LabelledSet, sample: Sample) -> int:
    """Which fixed other camera a photo gets: by its rank among the evaluable photos, so the
    variants are spread evenly over the set whatever the folds."""
    names = sorted(s.name for s in data.evaluable())
    return names.index(sample.name)


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


def load_run_result(path: Path, folder: Path) -> RunResult:
    raw = json.loads(path.read_text())
    hist = PRHistogram.from_dict(raw["histogram"]) if raw.get("histogram") else None
    return RunResult(
        spec=RunSpec(raw["init"], raw["mode"]),
        metrics=raw["metrics"],
        calibration=Calibration(**raw["calibration"]),
        train_s=raw["train_s"],
        predict_s=raw["predict_s"],
        wall_s=raw["wall_s"],
        folder=folder,
        histogram=hist,
        finetune=raw.get("finetune", {}),
    )


def _jsonable(value: Any) -> Any:
    """NaN and infinities become null: JSON has no such numbers."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


# ----------------------------------------------------------------------------------------------
# Reports


def plot_pr_curves(results: Sequence[RunResult], path: Path, title: str = "") -> None:
    """Precision-recall curves (pooled pixels, full resolution), the chosen threshold marked."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 5))
    for r in results:
        if r.histogram is None:
            continue
        precision, recall, thresholds = r.histogram.curve()
        aupr = r.metrics.get("pooled_aupr")
        ax.plot(
            recall,
            precision,
            label=f"{r.spec.name} (AUPR {aupr:.3f})" if aupr is not None else r.spec.name,
        )
        t = r.metrics.get("threshold")
        if t is not None:
            i = int(np.argmin(np.abs(thresholds - t)))
            ax.plot(recall[i], precision[i], "o", color=ax.lines[-1].get_color())
    ax.set_xlabel("recall (haemorrhage pixels)")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.set_title(title or "Out-of-fold precision-recall, full resolution")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())


COLUMNS = (
    ("configuration", "configuration"),
    ("pooled_aupr", "pooled AUPR"),
    ("mean_photo_aupr", "mean photo AUPR"),
    ("dice", "Dice"),
    ("threshold", "threshold"),
    ("lesion_sensitivity", "lesion sensitivity"),
    ("fp_per_photo", "FP/photo"),
    ("train_min", "train min"),
    ("wall_min", "wall min"),
)


def _row(r: RunResult) -> dict[str, Any]:
    return {
        "configuration": r.spec.name,
        **{k: r.metrics.get(k) for k, _ in COLUMNS[1:7]},
        "train_min": r.train_s / 60,
        "wall_min": (r.train_s + r.predict_s) / 60,
    }


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def write_tables(
    results: Sequence[RunResult], skipped: dict[str, str], out: Path, header: str
) -> None:
    rows = [_row(r) for r in results]
    csv_lines = [",".join(k for k, _ in COLUMNS)]
    csv_lines += [",".join(_fmt(row[k], 6) for k, _ in COLUMNS) for row in rows]
    csv_lines += [f"{name},skipped: {why.replace(',', ';')}" for name, why in skipped.items()]
    atomic_write_text(out / "results.csv", "\n".join(csv_lines) + "\n")
    md = [
        header,
        "",
        "| " + " | ".join(label for _, label in COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    for row in rows:
        md.append(
            "| "
            + " | ".join(
                _fmt(row[k], 2 if k.endswith("_min") or k == "fp_per_photo" else 4)
                for k, _ in COLUMNS
            )
            + " |"
        )
    for name, why in skipped.items():
        md.append(f"| {name} | skipped: {why} |" + " |" * (len(COLUMNS) - 2))
    md += [
        "",
        "Pooled AUPR: average precision over every pixel of every evaluated photo at full "
        "resolution (the IDRiD challenge's figure); mean photo AUPR: its mean per photo. Dice, "
        "lesion sensitivity and FP/photo at the threshold that maximises pooled Dice on the "
        "calibrated out-of-fold probabilities (fitted on the same predictions, so slightly "
        "optimistic); a lesion is detected when a predicted component (at least 30 px) touches "
        "it. Train min: fine-tuning time summed over folds; wall min adds prediction.",
    ]
    atomic_write_text(out / "results.md", "\n".join(md) + "\n")


def describe_machine(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA)"
    units = ", ".join(cpu_bf16_units()) or "no bfloat16 units"
    threads = torch.get_num_threads()
    return f"CPU ({cpu_name()}, {units}, {threads} thread{'s' if threads > 1 else ''})"


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


def write_report(
    results: Sequence[RunResult],
    skipped: dict[str, str],
    out: Path,
    scale: Scale,
    data: LabelledSet,
    config: CompareConfig,
) -> None:
    device = resolve_device(config.device)
    header = (
        f"# Hemaview comparison, {scale.name} scale\n\n"
        f"{scale.note}; {len(data.evaluable())} annotated IDRiD photos, folds split by photo "
        f"(seed {config.seed}); metrics at full resolution on out-of-fold predictions; "
        f"run on {describe_machine(device)}."
    )
    write_tables(results, skipped, out, header)
    plot_pr_curves(
        results, out / "pr_curves.png", title=f"Out-of-fold precision-recall ({scale.name} scale)"
    )


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
