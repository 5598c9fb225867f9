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
6. card       resources/models/MODEL_CARD.md (with `--card-notes FILE`: a section of notes on
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
from inference.contract import IDRID_ATTRIBUTION
from training.camera_variants import PHOTOMETRIC_VARIANTS
from training.configs import FinetuneConfig, add_dataclass_args, dataclass_from_args, to_jsonable
from training.cross_validation import CompareOutcome, run_compare
from training.cv_config import MODE_LABELS, MODES, CompareConfig, ensure_moco_encoder, log
from training.cv_results import RunResult, describe_machine
from training.data import REPO_ROOT
from training.finetune import finetune
from training.provenance import preprocessing_sentence, pretraining_note
from training.runtime import format_duration, precision_note, resolve_device

DEFAULT_MODEL = REPO_ROOT / "resources" / "models" / "hemorrhage.onnx"
AUPR_BAR = 0.50


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

    # 1. pretrain
    compare_config = _compare_config(config, out, config.moco_encoder)
    moco_encoder = ""
    if "moco" in compare_config.inits:
        t0 = time.perf_counter()
        fresh = not config.moco_encoder and not (out / "pretrain" / "encoder.pt").is_file()
        moco_encoder = str(ensure_moco_encoder(compare_config, scale, out / "pretrain"))
        if fresh or not stages.done("pretrain"):
            stages.record(
                "pretrain", time.perf_counter() - t0 if fresh else 0.0, encoder=moco_encoder
            )
        compare_config = dataclasses.replace(compare_config, moco_encoder=moco_encoder)

    # 2. compare
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

    # 3. fit on every labelled photo
    t0 = time.perf_counter()
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

    # 4. export
    model_path = Path(config.model_out)
    card_path = Path(config.card_out) if config.card_out else model_path.parent / "MODEL_CARD.md"
    fitted = out / "final" / "checkpoint.pt"
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
        contract_sha = str(previous["model_sha256"])
    else:
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

    # 5. quantize
    int8 = quantize_stage(config, model_path, contract_sha, stages) if config.int8 else None

    # 6. card
    total = sum(stages.seconds(s) for s in STAGES)
    card = model_card(config, outcome, best, ft, contract_sha, stages, total, device, int8)
    atomic_write_text(card_path, card)
    log(
        f"wrote {model_path} and {card_path}; stages took {format_duration(total)} "
        f"(this run {format_duration(time.perf_counter() - t_start)})"
    )
    aupr = float(best.metrics["pooled_aupr"])
    verdict = "meets" if aupr >= AUPR_BAR else "does NOT meet"
    log(f"cross-validated pooled AUPR {aupr:.4f} {verdict} the bar of {AUPR_BAR:.2f}")
    return model_path


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


# ----------------------------------------------------------------------------------------------
# The model card


def _other_camera_lines(metrics: dict[str, Any]) -> list[str]:
    other = metrics.get("other_camera")
    if not isinstance(other, dict):
        return []
    names = ", ".join(PHOTOMETRIC_VARIANTS)
    return [
        "The same out-of-fold photos through other cameras (each photo through one of: "
        f"{names}; preprocessed as in the clinic, scored with the same calibration): pooled "
        f"AUPR **{float(other['pooled_aupr']):.4f}**, Dice {float(other['dice']):.4f}, lesion "
        f"sensitivity {float(other['lesion_sensitivity']):.3f} at "
        f"{float(other['fp_per_photo']):.1f} false positives per photo.",
        "",
    ]


def _curve_lines(metrics: dict[str, Any], outcome: CompareOutcome) -> list[str]:
    curve = metrics.get("curve")
    if not isinstance(curve, list) or len(curve) < 2:
        return []
    rows = [f"| {int(p['steps'])} | {float(p['pooled_aupr']):.4f} |" for p in curve]
    _plot_curve(curve, outcome.out / "aupr_steps.png")
    return [
        "Pooled AUPR of the out-of-fold photos against training steps per fold (the same "
        "folds; full resolution):",
        "",
        "| steps per fold | pooled AUPR |",
        "|---:|---:|",
        *rows,
        "",
    ]


def _plot_curve(curve: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot([p["steps"] for p in curve], [p["pooled_aupr"] for p in curve], marker="o")
    ax.axhline(AUPR_BAR, linestyle="--", color="grey", label=f"bar {AUPR_BAR:.2f}")
    ax.set_xlabel("training steps per fold")
    ax.set_ylabel("pooled AUPR (out-of-fold)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _notes(config: ShipConfig) -> list[str]:
    if not config.card_notes:
        return []
    return [Path(config.card_notes).read_text().strip(), ""]


def _int8_lines(check: dict[str, Any] | None) -> list[str]:
    if not check:
        return []
    from training.quantize import format_report

    return [
        "## INT8",
        "",
        "`hemorrhage-int8.onnx` is this model quantised (static QDQ, per-channel int8 weights, "
        "input normalisation and output head in float), calibrated on real photos. The CPU "
        "backend runs it when its check passed; CUDA and Triton run the fp32 file. The "
        "evaluation photos were in the final model's training set, so only the fp32/int8 "
        "difference there means anything, not the absolute AUPR:",
        "",
        *(f"- {line}" for line in format_report(check).splitlines()),
        "",
    ]


def _effect_lines(results: Sequence[RunResult]) -> list[str]:
    """Plain statements of what MoCo and the reconstruction task did to pooled AUPR."""
    aupr = {r.spec.name: r.metrics.get("pooled_aupr") for r in results}
    lines = []
    for mode in MODES:
        a, b = aupr.get(f"moco-{mode}"), aupr.get(f"random-{mode}")
        if a is not None and b is not None:
            lines.append(
                f"- MoCo pretraining vs random initialisation ({MODE_LABELS[mode]}): "
                f"{a:.4f} vs {b:.4f}, {'+' if a >= b else ''}{a - b:.4f} pooled AUPR "
                f"({'helped' if a > b else 'did not help'} at this budget)."
            )
    for init in ("random", "moco", "imagenet"):
        a, b = aupr.get(f"{init}-segrec"), aupr.get(f"{init}-seg")
        if a is not None and b is not None:
            lines.append(
                f"- Reconstruction task ({init} init): {a:.4f} with vs {b:.4f} without, "
                f"{'+' if a >= b else ''}{a - b:.4f} pooled AUPR "
                f"({'helped' if a > b else 'did not help'} at this budget)."
            )
    return lines or ["- Only one configuration was cross-validated (--choose); no comparison."]


def model_card(
    config: ShipConfig,
    outcome: CompareOutcome,
    best: RunResult,
    ft: FinetuneConfig,
    sha256: str,
    stages: StageLog,
    total_s: float,
    device: Any,
    int8: dict[str, Any] | None = None,
) -> str:
    m = best.metrics
    data = outcome.data
    summary: dict[str, Any] = data.summary()
    table = (outcome.out / "results.md").read_text().strip().splitlines()
    table_rows = [line for line in table if line.startswith("|")]
    aupr = float(m["pooled_aupr"])
    bar = (
        "meets" if aupr >= AUPR_BAR else "does **not** meet"
    ) + f" the project's bar of {AUPR_BAR:.2f}"
    timing = ", ".join(
        f"{stage} {format_duration(stages.seconds(stage))}"
        for stage in STAGES
        if stages.done(stage)
    )
    reduced = outcome.scale.name == "reduced"
    lines = [
        "# Hemaview haemorrhage model",
        "",
        f"`hemorrhage.onnx`, SHA-256 `{sha256}`, made by `hemaview-train ship --scale "
        f"{outcome.scale.name}` on {describe_machine(device)} "
        f"({dt.datetime.now(dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}).",
        "",
        "## Intended use",
        "",
        "Assisting a person who reviews colour fundus photographs: the model suggests where "
        "haemorrhages may be, as a calibrated probability overlay that the reviewer accepts, "
        "corrects or rejects. It is **not** a diagnostic device and must not be used to decide "
        "on a diagnosis or treatment without a qualified reviewer.",
        "",
        "## Data and attribution",
        "",
        f"- {IDRID_ATTRIBUTION}",
        f"- Fine-tuning: the official IDRiD segmentation training split, haemorrhage masks: "
        f"{summary['idrid_photos']} photos, {summary['idrid_annotated']} with masks."
        + (
            f" {', '.join(summary['not_annotated'])}: no haemorrhage mask (not annotated by the "
            "owners, which is not the same as no haemorrhage), so excluded from the segmentation "
            "loss and from evaluation"
            + (", but used for the reconstruction task." if ft.reconstruction else ".")
            if summary["not_annotated"]
            else ""
        ),
        f"- Photos from Hemaview label folders: {summary['label_folder_photos']}.",
        f"- Pretraining: {pretraining_note(ft.init, ft.init_weights)}."
        if ft.init != "random"
        else "- No pretraining on other data.",
        "- The official IDRiD test split was not used for anything: the figures below are "
        "cross-validated on the training split only.",
        "",
        "## Method",
        "",
        "- Preprocessing (inference.preprocess, the same in training and in the clinic): "
        f"{preprocessing_sentence(ft.recipe)}.",
        f"- Network: U-Net (segmentation-models-pytorch), {ft.encoder} encoder, decoder "
        f"{list(ft.decoder_channels)}; initialisation {ft.init}"
        + (
            f"; a second decoder reconstructs the input from the deepest features (loss weight "
            f"{ft.recon_weight}), used in training only"
            if ft.reconstruction
            else ""
        )
        + ".",
        f"- Loss: BCE + soft Dice over the field of view; {ft.crop_size}-px patches, "
        f"{int(ft.lesion_bias * 100)}% centred on a lesion, rotation/zoom/colour augmentation on "
        f"tensors; AdamW, lr {ft.lr:g}, cosine; {ft.epochs} epochs x {ft.steps_per_epoch} steps x "
        f"batch {ft.batch_size}; {precision_note(device, ft.bf16)}"
        + (
            f"; the weights shipped (and cross-validated) are an exponential moving average "
            f"over the steps, decay {ft.ema_decay:g}"
            if ft.ema_decay
            else ""
        )
        + ".",
        (
            f"- Other cameras: {ft.camera_versions} versions of each photo as another camera "
            "would take it (white balance, gamma, one side darker, vignetting, flare, grey "
            "surround, lower resolution, blur, JPEG; `training.camera_variants.random_camera`), "
            "made before preprocessing so the field of view and CLAHE see them as in the clinic; "
            f"{ft.camera_p:.0%} of patches are cut from them."
            if ft.camera_versions
            else "- No other-camera versions of the photos."
        ),
        (
            "- Prediction: the mean of the logits of the photo and its three mirror images "
            "(left-right, up-down, both), inside the graph, so every backend runs it and the "
            "figures below are of it; it costs four passes of the network per photo."
            if config.mirror_average
            else "- Prediction: one pass of the network per photo."
        ),
        f"- Selection: {len(outcome.folds)}-fold cross-validation by photo (seeded, stratified by "
        f"lesion burden); the configuration with the best pooled AUPR was refitted on all photos.",
        f"- Calibration: Platt scaling fitted on the out-of-fold logits (temperature "
        f"{best.calibration.temperature:.3f}, bias {best.calibration.bias:.3f}), inside the "
        f"graph. Default threshold {float(m['threshold']):.3f}: the one maximising pooled Dice on "
        "the calibrated out-of-fold probabilities.",
        "",
        "## Cross-validated figures",
        "",
        f"Scale: {outcome.scale.note}. Out-of-fold predictions, measured at each photo's full "
        f"resolution ({len(data.evaluable())} photos).",
        "",
        f"Shipped configuration **{best.spec.name}**: pooled pixel AUPR **{aupr:.4f}** ({bar}; "
        f"the IDRiD challenge's best haemorrhage AUPR was 0.68), mean per-photo AUPR "
        f"{float(m['mean_photo_aupr']):.4f}, Dice {float(m['dice']):.4f}, lesion sensitivity "
        f"{float(m['lesion_sensitivity']):.3f} at {float(m['fp_per_photo']):.1f} false-positive "
        "components per photo.",
        "",
        *_other_camera_lines(m),
        *_curve_lines(m, outcome),
        *table_rows,
        "",
        *(
            ["What the comparison shows, under the same budget:", "", *effects, ""]
            if (effects := _effect_lines(outcome.results))
            else []
        ),
        *_notes(config),
        *_int8_lines(int8),
        "## Time taken",
        "",
        f"{format_duration(total_s)} in all ({timing}) on {describe_machine(device)}.",
        "",
        "## Known limits",
        "",
        "- One camera: every training photo is from a Kowa VX-10a (50 degree field, 4288x2848) in "
        "one Indian clinic. The other-camera figures above are for synthetic changes of those "
        "photos; real photos from other cameras, fields and populations are untested.",
        f"- {summary['idrid_annotated']} labelled photos: small; the cross-validated figures "
        "have a wide uncertainty, and the threshold was chosen on the same out-of-fold "
        "predictions it is scored on.",
        "- Small haemorrhages near the resolution of the working image can be missed; lesions "
        "near the edge of the field of view and photos unlike the training data are less reliable.",
        *(
            [
                "- Trained at the reduced scale that fits a 2-core CPU (smaller working size, few "
                "steps): a GPU run at full scale (`--scale full`) is expected to do better."
            ]
            if reduced
            else []
        ),
        "",
        f"Attribution as required by the data licence: {IDRID_ATTRIBUTION}",
        "",
    ]
    return "\n".join(lines)


def ship_main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hemaview-train ship", description=__doc__.split("\n")[0])
    add_dataclass_args(parser, ShipConfig)
    config = dataclass_from_args(ShipConfig, parser.parse_args(argv))
    ship(config)
    return 0


if __name__ == "__main__":
    sys.exit(ship_main())
