"""A cross-validation's out-of-fold predictions on disk: each held-out photo's logits at working
size (float16 .npy) with the geometry that maps them to its full resolution (.json), as taken
("oof"), through another camera ("oof-camera") and as the fold's model stood part-way
("curve/STEP"). A photo's logits are written last, so their presence marks it done.

How they were made (`prediction.json`: with or without mirror averaging) is kept beside them;
predictions made another way than a run asks are removed, to be predicted again.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from inference.atomic import atomic_write_bytes, atomic_write_text
from inference.preprocess import Geometry
from training.camera_data import other_camera_photo
from training.configs import (
    FinetuneConfig,
)
from training.cv_config import CompareConfig, log
from training.data import (
    LabelledSet,
    Sample,
)
from training.finetune import predict_logits


def oof_path(folder: Path, name: str, kind: str = "oof") -> Path:
    """Out-of-fold logits of one photo: "oof" as taken, "oof-camera" through another camera,
    "curve/STEP" as the fold's model stood after STEP steps."""
    return folder / kind / f"{name}.npy"


def save_logits(path: Path, logits: np.ndarray) -> None:
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


PREDICTION_FILE = "prediction.json"


def match_predictions(folder: Path, config: CompareConfig) -> None:
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


def predict_held_out(
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
        save_logits(oof_path(folder, sample.name, "oof-camera"), camera)
        atomic_write_text(
            oof_path(folder, sample.name, "oof-camera").with_suffix(".json"),
            json.dumps(geometry.to_dict()),
        )
    # where the working map sits in the photo, so an analysis can go back to full resolution
    # without preprocessing the photo again (see load_out_of_fold)
    atomic_write_text(
        oof_path(folder, sample.name).with_suffix(".json"), json.dumps(sample.geometry.to_dict())
    )
    save_logits(oof_path(folder, sample.name), logits)  # last: marks the photo done


def curve_snapshot(
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
                save_logits(oof_path(folder, sample.name, f"curve/{step}"), logits)

    return snapshot


def camera_position(data: LabelledSet, sample: Sample) -> int:
    """Which fixed other camera a photo gets: by its rank among the evaluable photos, so the
    variants are spread evenly over the set whatever the folds."""
    names = sorted(s.name for s in data.evaluable())
    return names.index(sample.name)
