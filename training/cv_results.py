"""A cross-validated configuration's result (`result.json`), and the comparison's reports: the
table of every configuration (results.md, results.csv) and their precision-recall curves."""

from __future__ import annotations

import dataclasses
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from inference.atomic import atomic_write_bytes, atomic_write_text
from training.cv_config import CompareConfig, RunSpec, Scale
from training.data import (
    LabelledSet,
)
from training.metrics import (
    Calibration,
    EvalResult,
    PRHistogram,
)
from training.runtime import (
    cpu_bf16_units,
    cpu_name,
    resolve_device,
)


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


def save_run_result(run: RunResult, evaluation: EvalResult) -> None:
    """A configuration's result.json, evaluation.json and pr_curve.png in its folder."""
    folder = run.folder
    plot_pr_curves([run], folder / "pr_curve.png", title=run.spec.label)
    atomic_write_text(folder / "evaluation.json", json.dumps(jsonable(evaluation.to_dict())) + "\n")
    histogram = evaluation.histogram.to_dict() if evaluation.histogram else None
    atomic_write_text(
        folder / "result.json",
        json.dumps(jsonable({**run.to_dict(), "histogram": histogram}), indent=1) + "\n",
    )


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


def jsonable(value: Any) -> Any:
    """NaN and infinities become null: JSON has no such numbers."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
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
