"""Checkpoints of both training loops: their formats, atomic writes, reading, resume checks.

A checkpoint is written whole or not at all (a temporary file beside it, fsynced, then renamed
over it: `inference.atomic`), so a crash or a full disk mid-write leaves the previous epoch's
checkpoint loadable and the run resumable. A checkpoint belongs to one run: resuming with other
settings or other photos is refused with the difference named, since continuing would mix two
runs in one set of weights.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from inference.atomic import atomic_open
from inference.errors import HemaviewError


class CheckpointError(HemaviewError, ValueError):
    """A checkpoint cannot be read, or belongs to a different run.

    Also a ValueError: pretraining refused another run's checkpoint as one before this class
    covered both loops, and callers catch it as such.
    """


@dataclass(frozen=True)
class CheckpointFormat:
    """What one loop's checkpoints hold, and which of its settings a resumption may change."""

    what: str  # for messages: "a Hemaview fine-tuning checkpoint"
    kind: str | None  # the "kind" entry; None: a format written without one (pretraining's)
    version: int | None
    needs: frozenset[str]  # entries every checkpoint of this format has
    resume_free: frozenset[str]  # settings that change how a run goes, not what it computes

    def stamp(self) -> dict[str, Any]:
        """The entries that mark a checkpoint as of this format."""
        return {"kind": self.kind, "version": self.version} if self.kind else {}


FINETUNE = CheckpointFormat(
    what="fine-tuning",
    kind="hemaview-finetune",
    version=1,
    needs=frozenset({"config", "model", "epoch", "step"}),
    resume_free=frozenset({"device", "threads", "eval_every", "bf16"}),
)
PRETRAIN = CheckpointFormat(
    what="MoCo pretraining",
    kind=None,
    version=None,
    needs=frozenset({"config", "model", "optimizer", "rng", "step", "epoch"}),
    # `epochs`: a finished run may be continued for more; `amp`: bfloat16 is a speed choice;
    # `knn_photos`: a check after training, not part of it
    resume_free=frozenset(
        {
            "epochs",
            "workers",
            "device",
            "log_every",
            "out_dir",
            "cache_dir",
            "data_on_device",
            "amp",
            "knn_photos",
        }
    ),
)


def save(path: str | os.PathLike[str], state: Mapping[str, Any]) -> None:
    """Write `state` to `path` so that `path` holds either the previous or the new checkpoint."""
    with atomic_open(path) as handle:
        torch.save(dict(state), handle)


def load(path: str | os.PathLike[str], fmt: CheckpointFormat) -> dict[str, Any]:
    """Read a checkpoint of format `fmt` on the CPU; CheckpointError says what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises RuntimeError, EOFError, UnpicklingError, zip errors
        raise CheckpointError(
            f"{path}: the checkpoint is corrupt or truncated ({type(exc).__name__}: {exc}). "
            "Delete it to start this run over, or point to another checkpoint."
        ) from None
    if not isinstance(state, dict) or (fmt.kind and state.get("kind") != fmt.kind):
        raise CheckpointError(f"{path}: not a Hemaview {fmt.what} checkpoint")
    if fmt.kind and state.get("version") != fmt.version:
        raise CheckpointError(
            f"{path}: checkpoint version {state.get('version')!r} is not "
            f"{fmt.version}; it was written by another Hemaview"
        )
    missing = fmt.needs - set(state)
    if missing:
        raise CheckpointError(f"{path}: the checkpoint lacks {', '.join(sorted(missing))}")
    return state


def changed_settings(
    saved: Mapping[str, Any], now: Mapping[str, Any], free: Collection[str]
) -> list[str]:
    """The settings of `now` that `saved` recorded otherwise (or not at all), `free` aside.

    A setting only the checkpoint has belongs to code that no longer exists; it is not counted.
    """
    return sorted(k for k in now if k not in free and saved.get(k) != now[k])


def refuse_other_run(
    path: Path,
    state: Mapping[str, Any],
    config: Mapping[str, Any],
    fmt: CheckpointFormat,
    *,
    train_names: Sequence[str] | None = None,
) -> None:
    """Raise CheckpointError, naming the difference, unless `state` is of the run that
    `config` (as JSON) and `train_names` (when given) describe."""
    saved = state["config"]
    changed = changed_settings(saved, config, fmt.resume_free)
    if changed:
        diff = ", ".join(f"{k}: {saved.get(k)!r} then, {config[k]!r} now" for k in changed)
        raise CheckpointError(
            f"{path} belongs to a run with another configuration ({diff}); "
            "use another output folder, or delete it to start over"
        )
    if train_names is not None and state.get("train_names") != list(train_names):
        then, now = set(state.get("train_names") or ()), set(train_names)
        diff = "; ".join(
            f"{label} {', '.join(sorted(names)[:5])}{' ...' if len(names) > 5 else ''}"
            for label, names in (("only then:", then - now), ("only now:", now - then))
            if names
        )
        raise CheckpointError(
            f"{path} was trained on other photos than this run's"
            + (f" ({diff})" if diff else "")
            + "; use another output folder, or delete it to start over"
        )
