"""Fine-tuning the multi-task U-Net on labelled photos, resumable, on a CPU or one GPU.

Photos live on the training device as uint8 tensors; each step cuts lesion-biased patches
from them by tensor slicing (`training.patches`) and augments them on the same device, so no
worker processes decode or augment anything. Every epoch writes `checkpoint.pt` (model,
optimiser, schedule, the weight average when `--ema-decay` keeps one, history and the
configuration) atomically; rerunning with the same output folder resumes from it. A finished
run's checkpoint holds the weights it was evaluated on: the best validated, the average, or
the last step's, in that order of precedence.
"""

from __future__ import annotations

import csv
import io
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import torch

from inference.atomic import atomic_write_bytes, atomic_write_text
from training import checkpoint
from training.camera_data import CameraVersion, add_camera_versions
from training.checkpoint import FINETUNE, CheckpointError
from training.configs import FinetuneConfig, to_jsonable, upgrade_saved
from training.data import Sample, default_cache_dir
from training.ema import WeightAverage
from training.losses import total_loss
from training.metrics import PRHistogram
from training.model import HemaviewNet, mirror_average, normalise
from training.patches import PatchSampler
from training.runtime import autocast, memory_format, precision_note, progress, resolve_device
from training.weights import build_net

CHECKPOINT_FILE = "checkpoint.pt"


# ----------------------------------------------------------------------------------------------
# Optimisation


def _optimizer(net: HemaviewNet, config: FinetuneConfig) -> torch.optim.Optimizer:
    encoder = list(net.encoder.parameters())
    ids = {id(p) for p in encoder}
    rest = [p for p in net.parameters() if id(p) not in ids]
    return torch.optim.AdamW(
        [
            {"params": encoder, "lr": config.lr * config.encoder_lr_scale},
            {"params": rest, "lr": config.lr},
        ],
        weight_decay=config.weight_decay,
    )


def _schedule(
    optimizer: torch.optim.Optimizer, config: FinetuneConfig
) -> torch.optim.lr_scheduler.LambdaLR:
    total = max(config.total_steps, 1)
    warmup = min(config.warmup_steps, total // 2)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(total - warmup, 1)
        return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


# ----------------------------------------------------------------------------------------------
# Checkpoints and logs


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a fine-tuning checkpoint; CheckpointError says what is wrong with it."""
    return checkpoint.load(path, FINETUNE)


def net_from_checkpoint(path: Path) -> tuple[HemaviewNet, FinetuneConfig, dict[str, Any]]:
    """The fine-tuned network (eval mode, CPU), its configuration and the whole checkpoint."""
    state = load_checkpoint(path)
    config = FinetuneConfig.from_dict(state["config"])
    net = HemaviewNet(config.model_config())
    try:
        net.load_state_dict(state["model"])
    except RuntimeError as exc:
        raise CheckpointError(
            f"{path}: the weights do not fit the configured network ({exc})"
        ) from None
    return net.eval(), config, state


def write_log(out_dir: Path, history: list[dict[str, Any]]) -> None:
    """train_log.csv and loss.png from the epoch history (rewritten whole: resume-safe)."""
    if not history:
        return
    columns: list[str] = []
    for row in history:
        columns.extend(k for k in row if k not in columns)
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns)
    writer.writeheader()
    for row in history:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    atomic_write_text(out_dir / "train_log.csv", text.getvalue())
    plot_history(history, out_dir / "loss.png")


def plot_history(history: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    epochs = [row["epoch"] for row in history]
    fig, ax = plt.subplots(figsize=(7, 4))
    for key in ("loss", "bce", "dice", "recon"):
        if any(key in row for row in history):
            ax.plot(epochs, [row.get(key, math.nan) for row in history], label=key, marker=".")
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    if any(row.get("val_aupr") is not None for row in history):
        twin = ax.twinx()
        points = [
            (row["epoch"], row["val_aupr"]) for row in history if row.get("val_aupr") is not None
        ]
        twin.plot(*zip(*points), color="black", linestyle="--", marker="o", label="val AUPR")
        twin.set_ylabel("validation AUPR (working size)")
        twin.set_ylim(0, 1)
        twin.legend(loc="upper right")
    ax.legend(loc="upper left")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())


# ----------------------------------------------------------------------------------------------
# Inference at working size


@torch.no_grad()
def predict_logits(
    net: HemaviewNet,
    image: np.ndarray,
    device: torch.device | str = "cpu",
    *,
    window: int = 0,
    overlap: float = 0.25,
    bf16: bool = False,
    mirror: bool = False,
) -> np.ndarray:
    """(S, S, 3) uint8 working image -> (S, S) float32 logits; whole image or sliding window.

    float32 unless asked: the clinic runs the exported float32 graph, and figures must be of
    what it runs. bfloat16 logits carry 8 bits of mantissa, which ties most pixels of a
    photo's map and lowers its AUPR, so evaluation never uses it. `mirror` averages the
    photo's mirror images as a graph exported with `mirror_average` does.
    """
    device = torch.device(device)
    was_training = net.training
    net.eval()
    x = normalise(
        torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].to(device), net.config
    ).contiguous(memory_format=memory_format(device, bf16))  # (1, 3, S, S)
    size = x.shape[-1]

    def run(batch: torch.Tensor) -> torch.Tensor:  # (B, 3, S, S) -> (B, 1, S, S) logits
        if not window or window >= size:
            return net(batch)[0].float()
        stride = max(int(window * (1 - overlap)), 32)
        starts = [*range(0, size - window, stride), size - window]
        total = torch.zeros((batch.shape[0], 1, size, size), device=device)
        count = torch.zeros_like(total)
        for y in starts:
            for x0 in starts:
                tile = net(batch[:, :, y : y + window, x0 : x0 + window])[0].float()
                total[:, :, y : y + window, x0 : x0 + window] += tile
                count[:, :, y : y + window, x0 : x0 + window] += 1
        return total / count

    with autocast(device, bf16):
        logits = mirror_average(run, x) if mirror else run(x)
    net.train(was_training)
    return logits[0, 0].float().cpu().numpy()


def working_aupr(
    net: HemaviewNet, samples: Sequence[Sample], device: torch.device, config: FinetuneConfig
) -> float:
    """Pooled AUPR at working size inside the field of view: a cheap signal for monitoring."""
    hist = PRHistogram()
    for s in samples:
        if s.mask is None:
            continue
        logits = predict_logits(net, s.image, device, window=config.eval_window)
        hist.add(1 / (1 + np.exp(-logits)), s.mask >= 0.5, s.fov)
    return hist.average_precision()


# ----------------------------------------------------------------------------------------------
# The training loop


@dataclass
class FinetuneResult:
    net: HemaviewNet  # eval mode, on the training device
    config: FinetuneConfig
    history: list[dict[str, Any]]
    wall_s: float  # training time, summed over resumptions
    out_dir: Path
    train_names: list[str]


def finetune(
    config: FinetuneConfig,
    train: Sequence[Sample],
    out_dir: Path,
    *,
    val: Sequence[Sample] = (),
    log: Callable[[str], None] = print,
    progress_stream: TextIO | None = None,
    on_epoch: Callable[[int, HemaviewNet], None] | None = None,
    cache_dir: Path | None = None,
) -> FinetuneResult:
    """Train (or resume, or just load when finished) the run in `out_dir`.

    `on_epoch(epoch, net)` is called after each epoch's checkpoint is written.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if config.threads > 0:
        torch.set_num_threads(config.threads)
    run = _open_run(config, out_dir / CHECKPOINT_FILE, sorted(s.name for s in train), log)
    if run.finished:
        return run.result(out_dir)
    sampler = PatchSampler(train, config, run.device, _cameras(config, train, cache_dir, log))
    atomic_write_text(out_dir / "config.json", _json(to_jsonable(config)))
    with progress(
        config.total_steps, "steps", "fine-tune", stream=progress_stream, done=run.step
    ) as bar:
        run.net.train()
        while not run.finished:
            row = _train_epoch(run, sampler, bar)
            if val and config.eval_every and run.epoch % config.eval_every == 0:
                _evaluate(run, val, row, log)
            run.history.append(row)
            run.stopped = bool(config.early_stop and run.best["bad"] >= config.early_stop)
            finishing = run.stopped or run.epoch == config.epochs
            if finishing:
                _settle_weights(run, log)
            checkpoint.save(out_dir / CHECKPOINT_FILE, _checkpoint_state(run, finishing))
            write_log(out_dir, run.history)
            if on_epoch is not None:
                on_epoch(run.epoch, run.evaluated)
                run.net.train()
            if run.stopped:
                log(
                    f"early stop after epoch {run.epoch}: no improvement in "
                    f"{config.early_stop} evaluations"
                )
    return run.result(out_dir)


@dataclass
class _Run:
    """A run between steps: the network, its optimiser and everything a checkpoint keeps."""

    config: FinetuneConfig
    device: torch.device
    names: list[str]  # the training photos, sorted
    net: HemaviewNet
    optimizer: torch.optim.Optimizer
    schedule: torch.optim.lr_scheduler.LambdaLR
    history: list[dict[str, Any]] = field(default_factory=list)
    epoch: int = 0
    step: int = 0
    wall: float = 0.0  # training seconds, summed over resumptions
    # the best validated weights so far, for early stopping ("bad": evaluations since)
    best: dict[str, Any] = field(
        default_factory=lambda: {"score": -math.inf, "epoch": 0, "model": None, "bad": 0}
    )
    stopped: bool = False  # stopped early
    # the weight average while training (None when off, and once a run has finished on it)
    ema: WeightAverage | None = None

    @property
    def finished(self) -> bool:
        return self.stopped or self.epoch >= self.config.epochs

    @property
    def evaluated(self) -> HemaviewNet:
        """The weights validation, curve snapshots and the finished run use."""
        return self.ema.net if self.ema is not None else self.net

    @property
    def layout(self) -> torch.memory_format:
        return memory_format(self.device, self.config.bf16)

    def result(self, out_dir: Path) -> FinetuneResult:
        return FinetuneResult(
            self.net.eval(), self.config, self.history, self.wall, out_dir, self.names
        )


def _open_run(
    config: FinetuneConfig, path: Path, names: list[str], log: Callable[[str], None]
) -> _Run:
    """A new run, or the one whose checkpoint is at `path` (refused when it is another's)."""
    device = resolve_device(config.device)
    state: dict[str, Any] | None = None
    if path.exists():
        state = load_checkpoint(path)
        # a setting the checkpoint does not name came after it, and its default is how that
        # older code ran (--ema-decay 0: no average)
        state["config"] = {**to_jsonable(FinetuneConfig()), **upgrade_saved(state["config"])}
        checkpoint.refuse_other_run(path, state, to_jsonable(config), FINETUNE, train_names=names)
    layout = memory_format(device, config.bf16)
    net = build_net(config, load_init=state is None).to(device).to(memory_format=layout)
    log(f"precision: {precision_note(device, config.bf16)}")
    optimizer = _optimizer(net, config)
    run = _Run(config, device, names, net, optimizer, _schedule(optimizer, config))
    if state is not None:
        net.load_state_dict(state["model"])
        if state.get("optimizer") is not None:  # a finished run keeps none
            optimizer.load_state_dict(state["optimizer"])
            run.schedule.load_state_dict(state["scheduler"])
        run.history, run.epoch = list(state["history"]), int(state["epoch"])
        run.step, run.wall = int(state["step"]), float(state.get("wall_s", 0.0))
        run.best = dict(state.get("best") or run.best)
        run.stopped = bool(state.get("stopped_early"))
        if not run.finished:
            log(f"resuming {path.parent} from epoch {run.epoch} (step {run.step})")
    if config.ema_decay and not run.finished:
        run.ema = WeightAverage(net, config.ema_decay)
        if state is not None and state.get("ema") is not None:
            run.ema.load_state_dict(state["ema"])
        elif state is not None:
            raise CheckpointError(f"{path}: the run averages its weights but holds no average")
    return run


def _cameras(
    config: FinetuneConfig,
    train: Sequence[Sample],
    cache_dir: Path | None,
    log: Callable[[str], None],
) -> Mapping[str, Sequence[CameraVersion]] | None:
    """The other-camera versions of the training photos, when the run asks for them."""
    if not config.camera_versions:
        return None
    cameras = add_camera_versions(
        train,
        config.recipe,
        config.camera_versions,
        cache_dir or default_cache_dir(),
        seed=config.camera_seed,
    )
    log(f"other cameras: {config.camera_versions} versions of each of {len(cameras)} photos")
    return cameras


def _train_epoch(run: _Run, sampler: PatchSampler, bar: Any) -> dict[str, Any]:
    """One epoch of steps; its row of the history (mean losses, rate, time so far)."""
    config = run.config
    t0 = time.perf_counter()
    # Per-epoch seeds: a run resumed at an epoch boundary draws what it would have drawn.
    rng = np.random.default_rng([config.seed, run.epoch])
    # augmentation draws its random numbers on the CPU: the same crops on CPU and GPU
    generator = torch.Generator()
    generator.manual_seed(config.seed * 100_003 + run.epoch)
    bar.set_description(f"fine-tune epoch {run.epoch + 1}/{config.epochs}", refresh=False)
    sums: dict[str, float] = {}
    for _ in range(config.steps_per_epoch):
        parts = _train_step(run, sampler.batch(config.batch_size, rng, generator))
        for k, v in parts.items():
            sums[k] = sums.get(k, 0.0) + v
        bar.set_postfix_str(" ".join(f"{k} {v:.4f}" for k, v in parts.items()), refresh=False)
        bar.update(1)
    run.epoch += 1
    seconds = time.perf_counter() - t0
    run.wall += seconds
    return {
        "epoch": run.epoch,
        "step": run.step,
        **{k: v / config.steps_per_epoch for k, v in sums.items()},
        "lr": run.schedule.get_last_lr()[-1],
        "patches_per_s": config.steps_per_epoch * config.batch_size / seconds,
        "wall_s": run.wall,
    }


def _train_step(
    run: _Run, batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]
) -> dict[str, float]:
    """Forward under autocast, the loss in float32, backward, an optimiser step; the losses."""
    images, masks, valid, annotated = batch
    x = normalise(images, run.net.config).contiguous(memory_format=run.layout)  # (n, 3, c, c)
    with autocast(run.device, run.config.bf16):
        logits, recon = run.net(x)  # (n, 1, c, c), (n, 3, c, c) or None
    # the loss in float32: bfloat16's 8-bit mantissa would blur a Dice over patches
    logits = logits.float()
    recon = recon.float() if recon is not None else None
    weights = run.config.loss_weights()
    loss, parts = total_loss(logits, recon, x, masks, valid, annotated, weights)
    if not torch.isfinite(loss):
        raise FloatingPointError(f"the loss became {float(loss)} at step {run.step}; lower --lr")
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    run.optimizer.step()
    run.schedule.step()
    run.step += 1
    if run.ema is not None:
        run.ema.update(run.net, run.step)
    return parts


def _evaluate(
    run: _Run, val: Sequence[Sample], row: dict[str, Any], log: Callable[[str], None]
) -> None:
    """Validation AUPR into the epoch's row; the best weights so far kept for early stopping."""
    score = working_aupr(run.evaluated, val, run.device, run.config)
    row["val_aupr"] = score
    log(f"epoch {run.epoch}: validation AUPR (working size) {score:.4f}")
    if score > run.best["score"]:
        weights = {k: v.detach().cpu().clone() for k, v in run.evaluated.state_dict().items()}
        run.best = {"score": score, "epoch": run.epoch, "bad": 0, "model": weights}
    else:
        run.best["bad"] = int(run.best["bad"]) + 1
    run.net.train()


def _keep_best(run: _Run, log: Callable[[str], None]) -> None:
    """Finish on the best validated weights, not on the last epoch's."""
    run.net.load_state_dict(run.best["model"])
    log(
        f"keeping the weights of epoch {run.best['epoch']} "
        f"(validation AUPR {run.best['score']:.4f})"
    )


def _settle_weights(run: _Run, log: Callable[[str], None]) -> None:
    """The weights a finished run keeps: the best validated ones under early stopping, else
    the average when it keeps one (what it was evaluated on), else the last step's."""
    if run.config.early_stop and run.best["model"] is not None:
        _keep_best(run, log)
    elif run.ema is not None:
        run.net.load_state_dict(run.ema.net.state_dict())
        log(f"keeping the weights averaged over the steps (decay {run.config.ema_decay})")
    run.ema = None


def _checkpoint_state(run: _Run, finishing: bool) -> dict[str, Any]:
    """What checkpoint.pt holds after an epoch (training.checkpoint.FINETUNE)."""
    best = None
    if run.config.early_stop:
        best = {**run.best, "model": None} if finishing else run.best
    return {
        **FINETUNE.stamp(),
        "config": to_jsonable(run.config),
        "model_config": to_jsonable(run.net.config),
        # a finished run's weights are what it was evaluated on (averaged, or the best)
        "model": {k: v.detach().cpu() for k, v in run.net.state_dict().items()},
        "ema": run.ema.state_dict() if run.ema is not None else None,
        # a finished run will not step again: its checkpoint keeps the weights only
        # (a third of the size; a cross-validation keeps one per fold)
        "optimizer": None if finishing else run.optimizer.state_dict(),
        "scheduler": None if finishing else run.schedule.state_dict(),
        "epoch": run.epoch,
        "step": run.step,
        "history": run.history,
        "wall_s": run.wall,
        "best": best,
        "stopped_early": run.stopped,
        "train_names": run.names,
    }


def _json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True) + "\n"
