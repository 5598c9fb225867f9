"""What a cross-validation runs: its scales (the budget every configuration gets), its settings
(`hemaview-train compare`'s flags), the configurations it compares, and the fine-tuning and
MoCo pretraining each of them is given (`training.cross_validation` runs them)."""

from __future__ import annotations

import dataclasses
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inference.contract import PreprocessRecipe
from training.configs import (
    FinetuneConfig,
    PretrainConfig,
    replace_from_args,
)
from training.data import (
    REPO_ROOT,
)
from training.pretrain import ENCODER_FILE, pretrain

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
