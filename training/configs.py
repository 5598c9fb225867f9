"""Typed configuration: the training loops' settings as dataclasses, filled from the command
line and saved with every checkpoint and result.

The settings live here, apart from the loops that run them, so that a module which only needs
a setting (`training.weights` building the initial network) does not import a loop.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

from inference.contract import PreprocessRecipe
from training.augment import MOCO_AUGMENT
from training.data import data_root
from training.losses import LossWeights
from training.moco import NEGATIVES
from training.model import ModelConfig

T = TypeVar("T")


def add_dataclass_args(
    parser: argparse.ArgumentParser, cls: type[Any], prefix: str = "", defaults: Any = None
) -> None:
    """One `--field-name` option per dataclass field, typed from its annotation; the defaults
    are the fields' own, or those of the instance `defaults`."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if not f.init or f.name.startswith("_"):
            continue
        kind = hints[f.name]
        if defaults is not None:
            default = getattr(defaults, f.name)
        elif f.default is not dataclasses.MISSING:
            default = f.default
        else:
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else None
        flag = "--" + prefix + f.name.replace("_", "-")
        help_text = f.metadata.get("help", "") + f" (default: {default})"
        origin = typing.get_origin(kind)
        if "flags" in f.metadata:
            _add_part_args(parser, f.metadata["flags"], default, prefix)
        elif kind is bool:
            parser.add_argument(
                flag,
                dest=prefix + f.name,
                action=argparse.BooleanOptionalAction,
                default=default,
                help=help_text,
            )
        elif origin is tuple:
            item = typing.get_args(kind)[0]
            parser.add_argument(
                flag, dest=prefix + f.name, type=item, nargs="+", default=default, help=help_text
            )
        elif origin in (typing.Union, types.UnionType):
            inner = next(a for a in typing.get_args(kind) if a is not type(None))
            parser.add_argument(
                flag, dest=prefix + f.name, type=inner, default=default, help=help_text
            )
        elif kind in (int, float, str):
            parser.add_argument(
                flag, dest=prefix + f.name, type=kind, default=default, help=help_text
            )
        # dict/list fields are not command-line options; they keep their defaults


def _add_part_args(
    parser: argparse.ArgumentParser, flags: dict[str, str], value: Any, prefix: str
) -> None:
    """Options for some fields of a dataclass-valued setting (`--working-size` sets
    `recipe.working_size`), named as the field inside it: the flags stay those of the days
    when they were settings of their own."""
    hints = typing.get_type_hints(type(value))
    for name, text in flags.items():
        default = getattr(value, name)
        parser.add_argument(
            "--" + prefix + name.replace("_", "-"),
            dest=prefix + name,
            type=hints[name],
            default=default,
            help=f"{text} (default: {default})",
        )


def dataclass_from_args(
    cls: type[T], args: argparse.Namespace, prefix: str = "", base: Any = None
) -> T:
    """An instance of `cls` from parsed options; settings without one keep their defaults, or
    those of the instance `base`."""
    values = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        key = prefix + f.name
        if f.init and "flags" in f.metadata:
            parts = {n: getattr(args, prefix + n) for n in f.metadata["flags"]}
            whole = getattr(base, f.name) if base is not None else _field_default(f)
            values[f.name] = dataclasses.replace(whole, **parts)
        elif f.init and hasattr(args, key):
            value = getattr(args, key)
            if isinstance(value, list):
                value = tuple(value)
            values[f.name] = value
    return cls(**values)


def replace_from_args(config: T, argv: Sequence[str], prog: str) -> T:
    """`config` with the options in `argv` (its flags, as on the command line) applied over it;
    a ValueError names an option that is not one of them."""
    parser = _RaisingParser(prog=prog, add_help=False)
    add_dataclass_args(parser, type(config), defaults=config)
    return dataclass_from_args(type(config), parser.parse_args(list(argv)), base=config)


def _field_default(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    raise TypeError(f"setting {f.name} has no default")


class _RaisingParser(argparse.ArgumentParser):
    # Options parsed inside a run (not from its own command line) must not exit the process.
    def error(self, message: str) -> typing.NoReturn:
        raise ValueError(f"{self.prog}: {message}")


def to_jsonable(config: Any) -> dict[str, Any]:
    """A dataclass as plain JSON types (tuples become lists, paths strings)."""
    return json.loads(json.dumps(dataclasses.asdict(config), default=str))


def recipe_help(text: str) -> dict[str, Any]:
    """The metadata of a loop's `recipe` setting: the preprocessing its photos go through (and a
    model trained on them must be run with), its working size set by `--working-size`."""
    return {
        "help": "the preprocessing recipe (inference.contract)",
        "flags": {"working_size": text},
    }


def upgrade_saved(raw: Mapping[str, Any]) -> dict[str, Any]:
    """A saved configuration in today's shape. One saved before configurations held their
    preprocessing recipe (as commit a3ee92a's code saved them) names only `working_size`, and
    that code preprocessed with `PreprocessRecipe(working_size=...)`: the recipe it ran."""
    saved = dict(raw)
    if "recipe" not in saved and "working_size" in saved:
        recipe = PreprocessRecipe(working_size=int(saved.pop("working_size")))
        saved["recipe"] = to_jsonable(recipe)
    return saved


def recipe_from_jsonable(raw: Mapping[str, Any]) -> PreprocessRecipe:
    """The recipe `to_jsonable` wrote."""
    return PreprocessRecipe.from_json(json.dumps(raw))


def _help(default: Any, text: str) -> Any:
    return field(default=default, metadata={"help": text})


# ----------------------------------------------------------------------------------------------
# Fine-tuning (training.finetune)


INITS = ("random", "moco", "imagenet")


@dataclass
class FinetuneConfig:
    init: str = _help("random", "encoder initialisation: random, moco or imagenet")
    init_weights: str = _help(
        "", "encoder.pt from pretraining (moco) or a local ImageNet weights file"
    )
    reconstruction: bool = _help(True, "train the reconstruction decoder as a second task")
    recon_weight: float = _help(0.5, "weight of the reconstruction loss")
    encoder: str = _help("resnet18", "smp encoder name")
    decoder_channels: tuple[int, ...] = _help((128, 64, 32, 16, 16), "U-Net decoder widths")
    recipe: PreprocessRecipe = field(
        default_factory=PreprocessRecipe,
        metadata=recipe_help("side of the preprocessed square (the model's input size)"),
    )
    crop_size: int = _help(384, "training patch side, working pixels (multiple of 32)")
    epochs: int = _help(40, "epochs")
    steps_per_epoch: int = _help(50, "optimiser steps per epoch")
    batch_size: int = _help(8, "patches per step")
    lr: float = _help(1e-3, "peak learning rate (AdamW)")
    encoder_lr_scale: float = _help(1.0, "encoder learning rate as a fraction of --lr")
    weight_decay: float = _help(1e-4, "AdamW weight decay")
    warmup_steps: int = _help(50, "linear warm-up steps before the cosine decay")
    ema_decay: float = _help(
        0.0,
        "keep an exponential moving average of the weights with this decay (e.g. 0.999) and "
        "evaluate, snapshot and export it instead of the last step's weights (0: off)",
    )
    lesion_bias: float = _help(0.6, "fraction of patches centred on a lesion pixel")
    hard_negatives: str = _help(
        "",
        "a JSON file of hard-negative points per photo (fp-analysis's hard_negatives.json: "
        "out-of-fold false positives, working pixels at this working size)",
    )
    hard_negative_p: float = _help(
        0.0, "of the patches not centred on a lesion, the fraction centred on a hard negative"
    )
    shadow_p: float = _help(
        0.0, "fraction of patches darkened by a large smooth shadow (training.augment.shadow)"
    )
    bce_weight: float = _help(1.0, "weight of the BCE term")
    dice_weight: float = _help(1.0, "weight of the soft Dice term")
    focal_gamma: float = _help(0.0, "focal-loss gamma (0: plain BCE)")
    augment: bool = _help(True, "random geometric and colour augmentation")
    camera_versions: int = _help(
        0, "other-camera versions of each photo, made before preprocessing (0: none)"
    )
    camera_p: float = _help(0.5, "fraction of patches cut from an other-camera version")
    camera_seed: int = _help(0, "seed of the other cameras (the same for every fold)")
    seed: int = _help(0, "seed for initialisation, sampling and augmentation")
    device: str = _help("auto", "auto, cpu or cuda")
    bf16: bool = _help(
        True, "bfloat16 autocast and channels_last on CUDA and on CPUs with bfloat16 units"
    )
    eval_every: int = _help(0, "evaluate on the validation photos every N epochs (0: never)")
    early_stop: int = _help(0, "stop after N evaluations without improvement (0: never)")
    eval_window: int = _help(0, "sliding-window side for inference (0: the whole image)")
    threads: int = _help(0, "CPU threads for torch (0: torch's default)")

    def __post_init__(self) -> None:
        if self.init not in INITS:
            raise ValueError(f"--init must be one of {', '.join(INITS)}, not {self.init!r}")
        if self.init in ("moco", "imagenet") and not self.init_weights:
            what = (
                "the encoder.pt that `hemaview-train pretrain` writes"
                if self.init == "moco"
                else ("a local ImageNet weights file (nothing is downloaded)")
            )
            raise ValueError(f"--init {self.init} needs --init-weights: {what}")
        for name, value in (
            ("working_size", self.recipe.working_size),
            ("crop_size", self.crop_size),
        ):
            if value % 32 or value < 32:
                raise ValueError(
                    f"--{name.replace('_', '-')} must be a positive multiple of 32, not {value}"
                )
        if self.eval_window and self.eval_window % 32:
            raise ValueError(f"--eval-window must be a multiple of 32, not {self.eval_window}")
        for name in ("hard_negative_p", "shadow_p"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                flag = "--" + name.replace("_", "-")
                raise ValueError(f"{flag} must be in [0, 1], not {getattr(self, name)}")
        if self.crop_size > self.recipe.working_size:
            raise ValueError(
                f"--crop-size {self.crop_size} exceeds --working-size {self.recipe.working_size}"
            )
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ValueError(f"--device must be auto, cpu or cuda, not {self.device!r}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"--ema-decay must be at least 0 and below 1, not {self.ema_decay}")
        if self.early_stop and not self.eval_every:
            raise ValueError("--early-stop needs --eval-every")
        self.decoder_channels = tuple(int(c) for c in self.decoder_channels)

    def model_config(self) -> ModelConfig:
        return ModelConfig(
            encoder=self.encoder,
            decoder_channels=self.decoder_channels,
            reconstruction=self.reconstruction,
        )

    def loss_weights(self) -> LossWeights:
        return LossWeights(
            bce=self.bce_weight,
            dice=self.dice_weight,
            focal_gamma=self.focal_gamma,
            reconstruction=self.recon_weight if self.reconstruction else 0.0,
        )

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> FinetuneConfig:
        """The configuration a checkpoint or a result saved (`to_jsonable`), of any age."""
        known = {f.name for f in fields(cls)}
        values: dict[str, Any] = {
            k: (tuple(v) if isinstance(v, list) else v)
            for k, v in upgrade_saved(raw).items()
            if k in known
        }
        if "recipe" in values:
            values["recipe"] = recipe_from_jsonable(values["recipe"])
        return cls(**values)


# ----------------------------------------------------------------------------------------------
# MoCo pretraining (training.pretrain)

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass
class PretrainConfig:
    data_dir: str = field(
        # read when the config is made, so `hemaview-train --data DIR` applies
        default_factory=lambda: str(data_root() / "idrid-unlabeled"),
        metadata={"help": "unlabeled photos (or a folder with images/)"},
    )
    out_dir: str = field(
        default=str(REPO_ROOT / "runs" / "pretrain"),
        metadata={"help": "checkpoints, log, encoder.pt"},
    )
    cache_dir: str | None = field(
        default=None, metadata={"help": "preprocessed-photo cache (default: OUT_DIR/cache)"}
    )
    encoder: str = field(default="resnet18", metadata={"help": "smp encoder name"})
    recipe: PreprocessRecipe = field(
        default_factory=PreprocessRecipe, metadata=recipe_help("preprocessing working size")
    )
    crop_size: int = 224
    crop_scale: tuple[float, float] = field(
        default=MOCO_AUGMENT.scale, metadata={"help": "crop area / FOV area"}
    )
    epochs: int = 200
    repeats: int = field(default=10, metadata={"help": "crops of each photo per epoch"})
    batch_size: int = field(default=128, metadata={"help": "global batch, split over processes"})
    lr: float = field(
        default=0.015, metadata={"help": "peak learning rate (MoCo v2: 0.03 x batch / 256)"}
    )
    optimizer: str = field(
        default="sgd",
        metadata={
            "help": "sgd (MoCo v2's, with --sgd-momentum) or adamw; a few hundred steps at "
            "MoCo v2's SGD rate barely move the weights (see the model card)"
        },
    )
    sgd_momentum: float = 0.9
    weight_decay: float = 1e-4
    momentum: float = field(default=0.999, metadata={"help": "key encoder momentum"})
    temperature: float = 0.2
    dim: int = field(default=128, metadata={"help": "projection size"})
    queue_size: int = field(default=4096, metadata={"help": "negatives; a multiple of the batch"})
    negatives: str = field(
        default="queue",
        metadata={
            "help": "queue (MoCo v2's queue of past keys) or batch (the other photos of the "
            "step, MoCo v3's; no key of the query's own photo; see training.moco)"
        },
    )
    knn_photos: int = field(
        default=128,
        metadata={"help": "photos whose held-apart views check the encoder at the end (0: none)"},
    )
    bn_splits: int = field(
        default=0,
        metadata={"help": "BN groups per process (0: auto, ~32 per group alone, 1 under DDP)"},
    )
    workers: int = field(default=4, metadata={"help": "threads preprocessing photos"})
    seed: int = 0
    device: str = field(default="auto", metadata={"help": "auto, cpu or cuda"})
    amp: bool = field(
        default=True,
        metadata={"help": "bfloat16 autocast on CUDA and on CPUs with bfloat16 units"},
    )
    data_on_device: bool = field(default=True, metadata={"help": "keep the photos on the GPU"})
    max_photos: int = field(default=0, metadata={"help": "use only the first N photos (0: all)"})
    log_every: int = 10

    def validate(self, world_size: int = 1) -> None:
        if len(self.crop_scale) != 2 or not 0 < self.crop_scale[0] <= self.crop_scale[1]:
            raise ValueError(
                f"crop_scale must be two increasing positive numbers, got {self.crop_scale}"
            )
        if self.batch_size % world_size:
            raise ValueError(
                f"batch size {self.batch_size} does not split over {world_size} processes"
            )
        if self.optimizer not in ("sgd", "adamw"):
            raise ValueError(f"optimizer must be sgd or adamw, not {self.optimizer!r}")
        if self.negatives not in NEGATIVES:
            raise ValueError(
                f"negatives must be one of {', '.join(NEGATIVES)}, not {self.negatives!r}"
            )
        if self.negatives == "queue" and self.queue_size % self.batch_size:
            raise ValueError(
                f"queue size {self.queue_size} is not a multiple of batch size {self.batch_size}"
            )
        if self.batch_size // world_size < 2:
            raise ValueError("each process needs at least 2 photos per batch")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be auto, cpu or cuda, got {self.device!r}")
