"""`hemaview-train ship`: the shipped model, end to end, from the IDRiD data (`--data DIR`).

Stages, each skipped when its output already exists (rerun the same command to resume):

1. pretrain   MoCo v2 on the unlabeled pool -> <out>/pretrain/encoder.pt (when MoCo is compared)
2. compare    k-fold cross-validation of every configuration -> <out>/compare/results.md
3. fit        the best configuration (pooled AUPR) on every labelled photo -> <out>/final/
4. export     calibration and threshold from the best configuration's out-of-fold predictions;
              ONNX with the model contract -> resources/models/hemorrhage.onnx, checked through
              inference.Segmenter on a real photo
5. quantize   INT8 -> resources/models/hemorrhage-int8.onnx, calibrated on real photos, with
              its AUPR and speed against fp32 recorded in it (the CPU runs it when it passes)
6. card       resources/models/MODEL_CARD.md, training/templates/model_card.md filled from the
              run (training.model_card; with `--card-notes FILE`: a section of notes on
              the experiments that chose the configuration, in the card as written)

Why cross-validation and then one fit on every photo, rather than one validation split and a
longer fit: with 53 labelled photos, a held-out split of a dozen photos gives figures, a
calibration and a threshold from a dozen photos (the pooled AUPR of one 18-photo fold moved by
0.05 between folds in the first round); out-of-fold predictions of all 53 photos give all
three from the whole set. Each fold trains as long as the final fit, so the figures describe
the recipe of the shipped model, fitted on two thirds of the photos.

`--choose moco-segrec` (say) cross-validates only that configuration and ships it.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import hashlib
import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inference.atomic import atomic_write_text
from training.configs import FinetuneConfig, add_dataclass_args, dataclass_from_args, to_jsonable
from training.cross_validation import CompareOutcome, run_compare
from training.cv_config import MODES, CompareConfig, ensure_moco_encoder, log
from training.cv_results import RunResult, describe_machine
from training.data import REPO_ROOT
from training.finetune import finetune
from training.model_card import AUPR_BAR, model_card
from training.runtime import format_duration, resolve_device

DEFAULT_MODEL = REPO_ROOT / "resources" / "models" / "hemorrhage.onnx"


def _help(default: Any, text: str) -> Any:
    return field(default=default, metadata={"help": text})


@dataclass
class ShipConfig(CompareConfig):
    out: str = _help(
        str(REPO_ROOT / "runs" / "ship"), "working folder for every stage (resumes it)"
    )
    model_out: str = _help(str(DEFAULT_MODEL), "where the ONNX model goes")
    card_out: str = _help("", "where the model card goes (default: MODEL_CARD.md beside the model)")
    choose: str = _help("", "ship this configuration (e.g. moco-segrec) without comparing others")
    model_version: str = _help("", "version recorded in the model (default: date and scale)")
    card_notes: str = _help("", "a Markdown file of experiment notes to include in the card")
    int8: bool = _help(True, "also write and check the INT8 file for CPUs")
    int8_calibration_photos: int = _help(8, "photos that calibrate the INT8 file")
    int8_eval_photos: int = _help(8, "photos with masks (not calibration ones) that check it")


class StageLog:
    """ship_state.json: what each stage produced and how long it took."""

    def __init__(self, path: Path):
        self.path = path
        self.state: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {}

    def done(self, stage: str) -> dict[str, Any] | None:
        value = self.state.get(stage)
        return value if isinstance(value, dict) else None

    def record(self, stage: str, seconds: float, **details: Any) -> None:
        self.state[stage] = {"seconds": seconds, **details}
        atomic_write_text(self.path, json.dumps(self.state, indent=1, default=str) + "\n")

    def seconds(self, stage: str) -> float:
        entry = self.done(stage)
        return float(entry["seconds"]) if entry else 0.0


def _compare_config(config: ShipConfig, out: Path, moco_encoder: str) -> CompareConfig:
    values = {f.name: getattr(config, f.name) for f in dataclasses.fields(CompareConfig)}
    values.update(out=str(out / "compare"), moco_encoder=moco_encoder)
    if config.choose:
        init, _, mode = config.choose.partition("-")
        if init not in ("random", "moco", "imagenet") or mode not in MODES:
            raise ValueError(
                f"--choose {config.choose!r}: expected INIT-MODE such as moco-segrec "
                f"(INIT random, moco or imagenet; MODE {' or '.join(MODES)})"
            )
        values.update(inits=(init,), modes=(mode,))
    return CompareConfig(**values)


def ship(config: ShipConfig) -> Path:
    """Run (or resume) every stage; return the exported model's path."""
    t_start = time.perf_counter()
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    stages = StageLog(out / "ship_state.json")
    scale = config.resolved_scale()
    device = resolve_device(config.device)
    log(f"shipping at {scale.name} scale on {describe_machine(device)}: {scale.note}")
    compare_config = _pretrain_stage(config, out, stages)  # 1.
    outcome, best = _compare_stage(compare_config, stages)  # 2.
    ft = _fit_stage(config, outcome, best, out, stages)  # 3.
    model_path = Path(config.model_out)
    contract_sha = _export_stage(config, outcome, best, out / "final", model_path, stages)  # 4.
    int8 = quantize_stage(config, model_path, contract_sha, stages) if config.int8 else None  # 5.
    # 6. card
    card_path = Path(config.card_out) if config.card_out else model_path.parent / "MODEL_CARD.md"
    total = sum(stages.seconds(s) for s in STAGES)
    card = model_card(
        outcome,
        best,
        ft,
        sha256=contract_sha,
        mirror_average=config.mirror_average,
        timing=", ".join(
            f"{stage} {format_duration(stages.seconds(stage))}"
            for stage in STAGES
            if stages.done(stage)
        ),
        total_s=total,
        device=device,
        notes=Path(config.card_notes).read_text() if config.card_notes else None,
        int8=int8,
    )
    atomic_write_text(card_path, card)
    log(
        f"wrote {model_path} and {card_path}; stages took {format_duration(total)} "
        f"(this run {format_duration(time.perf_counter() - t_start)})"
    )
    aupr = float(best.metrics["pooled_aupr"])
    verdict = "meets" if aupr >= AUPR_BAR else "does NOT meet"
    log(f"cross-validated pooled AUPR {aupr:.4f} {verdict} the bar of {AUPR_BAR:.2f}")
    return model_path


def _pretrain_stage(config: ShipConfig, out: Path, stages: StageLog) -> CompareConfig:
    """The comparison's settings, with MoCo's encoder pretrained first when it is compared."""
    compare_config = _compare_config(config, out, config.moco_encoder)
    if "moco" not in compare_config.inits:
        return compare_config
    t0 = time.perf_counter()
    fresh = not config.moco_encoder and not (out / "pretrain" / "encoder.pt").is_file()
    scale = config.resolved_scale()
    moco_encoder = str(ensure_moco_encoder(compare_config, scale, out / "pretrain"))
    if fresh or not stages.done("pretrain"):
        stages.record("pretrain", time.perf_counter() - t0 if fresh else 0.0, encoder=moco_encoder)
    return dataclasses.replace(compare_config, moco_encoder=moco_encoder)


def _compare_stage(
    compare_config: CompareConfig, stages: StageLog
) -> tuple[CompareOutcome, RunResult]:
    """Cross-validate; the outcome and its best configuration."""
    t0 = time.perf_counter()
    outcome = run_compare(compare_config)
    best = outcome.best()
    # a configuration resumed part-way records only its last run's wall time; train and predict
    # times come from the logs, so take whichever is larger
    compare_s = sum(max(r.wall_s, r.train_s + r.predict_s) for r in outcome.results)
    stages.record(
        "compare",
        compare_s,
        best=best.spec.name,
        table=str(outcome.out / "results.md"),
        last_run_s=time.perf_counter() - t0,
    )
    log(f"best configuration: {best.spec.name} (pooled AUPR {best.metrics['pooled_aupr']:.4f})")
    return outcome, best


def _fit_stage(
    config: ShipConfig, outcome: CompareOutcome, best: RunResult, out: Path, stages: StageLog
) -> FinetuneConfig:
    """The best configuration fitted on every labelled photo, into <out>/final."""
    ft = FinetuneConfig.from_dict(
        {**best.finetune, "seed": config.seed, "device": config.device, "threads": config.threads}
    )
    final = finetune(ft, outcome.data.samples, out / "final", log=log)
    stages.record(
        "fit",
        final.wall_s,
        checkpoint=str(out / "final" / "checkpoint.pt"),
        photos=len(final.train_names),
    )
    return ft


def _export_stage(
    config: ShipConfig,
    outcome: CompareOutcome,
    best: RunResult,
    final: Path,
    model_path: Path,
    stages: StageLog,
) -> str:
    """The model file of the final fit (kept when it already is that file); its contract's
    SHA-256."""
    fitted = final / "checkpoint.pt"
    checkpoint_sha = _sha256(fitted)
    # what the file is made from besides the weights: the graph and its calibration
    made_from = {
        "mirror_average": config.mirror_average,
        "calibration": dataclasses.asdict(best.calibration),
        "threshold": float(best.metrics["threshold"]),
    }
    previous = stages.done("export")
    if (
        previous
        and previous.get("checkpoint_sha256") == checkpoint_sha
        and previous.get("made_from") == made_from
        and model_path.is_file()
        and _sha256(model_path) == previous.get("model_file_sha256")
    ):
        log(f"export: {model_path} is already this model; kept")
        return str(previous["model_sha256"])
    t0 = time.perf_counter()
    contract_sha = export_best(config, outcome, best, fitted, model_path)
    verify_s = verify_model(model_path, outcome)
    stages.record(
        "export",
        time.perf_counter() - t0,
        model=str(model_path),
        model_sha256=contract_sha,
        model_file_sha256=_sha256(model_path),
        checkpoint_sha256=checkpoint_sha,
        made_from=made_from,
        verify_predict_s=verify_s,
    )
    return contract_sha


STAGES = ("pretrain", "compare", "fit", "export", "quantize")


def quantize_stage(
    config: ShipConfig, model_path: Path, model_sha: str, stages: StageLog
) -> dict[str, Any] | None:
    """The INT8 file beside the model, made from it and checked on photos with masks."""
    from inference.model_choice import int8_sibling
    from training.data import default_data_dir
    from training.quantize import quantize_and_check

    out = int8_sibling(model_path)
    previous = stages.done("quantize")
    if previous and previous.get("source_sha256") == model_sha and out.is_file():
        log(f"quantize: {out} is already this model's INT8 file; kept")
        return previous.get("check")
    t0 = time.perf_counter()
    data_dir = Path(config.data_dir) if config.data_dir else default_data_dir()
    check = quantize_and_check(
        model_path,
        out,
        data_dir / "images",
        calibration_photos=config.int8_calibration_photos,
        eval_photos=config.int8_eval_photos,
        log=log,
    )
    stages.record(
        "quantize", time.perf_counter() - t0, model=str(out), source_sha256=model_sha, check=check
    )
    return check


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""


def cv_metrics(outcome: CompareOutcome, best: RunResult) -> dict[str, Any]:
    return {
        "cross_validation": {
            "configuration": best.spec.name,
            "folds": len(outcome.folds),
            "photos": len(outcome.data.evaluable()),
            "scale": outcome.scale.name,
            "scale_note": outcome.scale.note,
            "resolution": "full (photo pixels)",
            **{k: _finite(v) for k, v in best.metrics.items()},
        },
        "comparison_pooled_aupr": {
            r.spec.name: _finite(r.metrics.get("pooled_aupr")) for r in outcome.results
        },
        "calibration": dataclasses.asdict(best.calibration),
    }


def _finite(value: Any) -> Any:
    return value if not isinstance(value, float) or math.isfinite(value) else None


def export_best(
    config: ShipConfig,
    outcome: CompareOutcome,
    best: RunResult,
    checkpoint: Path,
    model_path: Path,
) -> str:
    """The final fit's checkpoint with the best configuration's out-of-fold calibration."""
    from training.export import export_checkpoint

    version = config.model_version or f"{dt.date.today().isoformat()}-{outcome.scale.name}"
    threshold = float(best.metrics["threshold"])
    contract = export_checkpoint(
        checkpoint,
        model_path,
        model_version=version,
        calibration=best.calibration,
        threshold=threshold,
        # the out-of-fold figures and the calibration are of predictions made this way
        mirror_average=config.mirror_average,
        metrics=cv_metrics(outcome, best),
        data_summary=outcome.data.summary(),
        training_config={
            "scale": {**dataclasses.asdict(outcome.scale), "note": outcome.scale.note},
            "ship": to_jsonable(config),
        },
    )
    log(
        f"exported {model_path} (SHA-256 {contract.sha256[:12]}…, threshold {threshold:.3f}, "
        f"T {best.calibration.temperature:.3f}, bias {best.calibration.bias:.3f})"
    )
    return contract.sha256


def verify_model(model_path: Path, outcome: CompareOutcome) -> float:
    """Open the file as the clinic does and predict one real photo; return seconds taken."""
    from inference import Segmenter

    photo = sorted(outcome.data.evaluable(), key=lambda s: s.name)[0]
    segmenter = Segmenter.open(model_path)
    try:
        t0 = time.perf_counter()
        prediction = segmenter.predict(photo.image_path)
        seconds = time.perf_counter() - t0
    finally:
        segmenter.close()
    log(
        f"checked through inference.Segmenter: {photo.name} -> {len(prediction.lesions)} lesions "
        f"at {prediction.threshold:.3f} in {seconds:.2f} s on {segmenter.device}"
    )
    return seconds


def ship_main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hemaview-train ship", description=__doc__.split("\n")[0])
    add_dataclass_args(parser, ShipConfig)
    config = dataclass_from_args(ShipConfig, parser.parse_args(argv))
    ship(config)
    return 0


if __name__ == "__main__":
    sys.exit(ship_main())
