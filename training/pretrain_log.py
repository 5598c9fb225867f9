"""What MoCo pretraining reports while it runs: where the time goes (`Clock`: the batched views
against the training steps, in images per second, and the time left), and `pretrain_log.csv`, a
row per step with a line on stdout every `--log-every` steps (`StepLog`). A resumed run first
drops the rows past its checkpoint, since it redoes those steps.
"""

from __future__ import annotations

import csv
from collections import deque
from pathlib import Path
from typing import TextIO

from training.configs import PretrainConfig
from training.runtime import format_duration

LOG_FILE = "pretrain_log.csv"
LOG_COLUMNS = (
    "step",
    "epoch",
    "loss",
    "top1",
    "lr",
    "images_per_s",
    "data_s",
    "step_s",
    "data_images_per_s",
    "step_images_per_s",
)


class Clock:
    """Where the time goes: data (views) against training steps, in images per second."""

    def __init__(self, batch_size: int):
        self.batch_size = batch_size
        self.recent: deque[float] = deque(maxlen=50)  # seconds per step, for the time left
        self.data_s, self.step_s, self.steps = 0.0, 0.0, 0
        self.last = (0.0, 0.0)

    def add(self, data_s: float, step_s: float) -> None:
        self.last = (data_s, step_s)
        self.recent.append(data_s + step_s)
        if len(self.recent) > 1:  # the first step pays for allocator and kernel warm-up
            self.data_s += data_s
            self.step_s += step_s
            self.steps += 1

    def rate(self, seconds: float) -> float:
        return self.batch_size / max(seconds, 1e-9)

    @property
    def mean_s(self) -> float:
        return sum(self.recent) / len(self.recent)

    def summary(self) -> str:
        images = self.batch_size * self.steps
        return (
            f"throughput: data {images / max(self.data_s, 1e-9):.1f} img/s, training step "
            f"{images / max(self.step_s, 1e-9):.1f} img/s; data took "
            f"{self.data_s / (self.data_s + self.step_s):.0%} of the time"
        )


class StepLog:
    """pretrain_log.csv, a row per step (lead process only), and a line on stdout every
    `log_every` steps. Rows past the checkpoint are dropped first: those steps are redone."""

    def __init__(self, path: Path, step: int, config: PretrainConfig, total: int, lead: bool):
        self.path, self.first_step, self.config, self.total = path, step, config, total
        self.lead = lead
        self.file: TextIO | None = None
        self.writer: csv.DictWriter[str] | None = None

    def __enter__(self) -> StepLog:
        if self.lead:
            _trim_log(self.path, self.first_step)
            self.file = self.path.open("a", newline="")
            self.writer = csv.DictWriter(self.file, LOG_COLUMNS)
            if self.file.tell() == 0:
                self.writer.writeheader()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.file:
            self.file.close()

    def row(self, step: int, epoch: int, loss: float, acc: float, lr: float, clock: Clock) -> None:
        if self.writer is None or self.file is None:
            return
        data_s, step_s = clock.last
        self.writer.writerow(
            {
                "step": step,
                "epoch": epoch,
                "loss": f"{loss:.5f}",
                "top1": f"{acc:.4f}",
                "lr": f"{lr:.6g}",
                "images_per_s": f"{clock.batch_size / (data_s + step_s):.2f}",
                "data_s": f"{data_s:.5f}",
                "step_s": f"{step_s:.5f}",
                "data_images_per_s": f"{clock.rate(data_s):.2f}",
                "step_images_per_s": f"{clock.rate(step_s):.2f}",
            }
        )
        if step % self.config.log_every == 0 or step == self.total:
            self.file.flush()
            print(
                f"epoch {epoch + 1}/{self.config.epochs} step {step}/{self.total} "
                f"loss {loss:.4f} top1 {acc:.3f} lr {lr:.4g} | "
                f"{clock.rate(clock.mean_s):.1f} img/s "
                f"(data {clock.rate(data_s):.0f}, step {clock.rate(step_s):.0f} img/s) | "
                f"left {format_duration(clock.mean_s * (self.total - step))}",
                flush=True,
            )


def _trim_log(path: Path, last_step: int) -> None:
    """Drop log rows past the checkpoint (steps of an interrupted epoch are redone)."""
    if not path.exists():
        return
    with path.open(newline="") as f:
        rows = [r for r in csv.DictReader(f) if int(r["step"]) <= last_step]
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, LOG_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
