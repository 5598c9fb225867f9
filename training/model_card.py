"""The shipped model's card (MODEL_CARD.md): `templates/model_card.md` filled from the run.

The template holds the card's prose; every figure, setting and optional section comes from what
the run recorded: the cross-validation's outcome, the fine-tuning configuration (its recipe
among it), the stages' times and the INT8 check. A block that does not apply (no other-camera
figures, one configuration, no notes) is left out whole, with its blank line.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from string import Template
from typing import Any

from inference.contract import IDRID_ATTRIBUTION
from training.camera_variants import PHOTOMETRIC_VARIANTS
from training.configs import FinetuneConfig
from training.cross_validation import CompareOutcome
from training.cv_config import MODE_LABELS, MODES
from training.cv_results import RunResult, describe_machine
from training.provenance import preprocessing_sentence, pretraining_note
from training.runtime import format_duration, precision_note

TEMPLATE = Path(__file__).resolve().parent / "templates" / "model_card.md"
#: The pooled AUPR the project asks of a shipped model.
AUPR_BAR = 0.50


def model_card(
    outcome: CompareOutcome,
    best: RunResult,
    ft: FinetuneConfig,
    *,
    sha256: str,
    mirror_average: bool,
    timing: str,
    total_s: float,
    device: Any,
    notes: str | None = None,
    int8: dict[str, Any] | None = None,
) -> str:
    """The card of the model exported from `best`'s final fit (`ft`); `timing` lists the
    stages' times, `notes` (Markdown, `--card-notes`) go in as written."""
    summary: dict[str, Any] = outcome.data.summary()
    values = {
        "sha256": sha256,
        "scale": outcome.scale.name,
        "machine": describe_machine(device),
        "made_at": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "attribution": IDRID_ATTRIBUTION,
        **_data_values(summary, ft),
        **_method_values(ft, device, mirror_average),
        **_figure_values(outcome, best),
        "notes": _block([notes.strip(), ""]) if notes is not None else "",
        "int8": _block(_int8_lines(int8)),
        "total": format_duration(total_s),
        "timing": timing,
        "reduced": _block(
            [
                "- Trained at the reduced scale that fits a 2-core CPU (smaller working size, few "
                "steps): a GPU run at full scale (`--scale full`) is expected to do better."
            ]
            if outcome.scale.name == "reduced"
            else []
        ),
    }
    return Template(TEMPLATE.read_text()).substitute(values)


def _block(lines: Sequence[str]) -> str:
    """Lines as they stand in the card, each ending its line; none: nothing at all."""
    return "".join(f"{line}\n" for line in lines)


def _data_values(summary: dict[str, Any], ft: FinetuneConfig) -> dict[str, Any]:
    not_annotated = ""
    if summary["not_annotated"]:
        not_annotated = (
            f" {', '.join(summary['not_annotated'])}: no haemorrhage mask (not annotated by the "
            "owners, which is not the same as no haemorrhage), so excluded from the segmentation "
            "loss and from evaluation"
            + (", but used for the reconstruction task." if ft.reconstruction else ".")
        )
    return {
        "idrid_photos": summary["idrid_photos"],
        "idrid_annotated": summary["idrid_annotated"],
        "not_annotated": not_annotated,
        "label_folder_photos": summary["label_folder_photos"],
        "pretraining": f"Pretraining: {pretraining_note(ft.init, ft.init_weights)}."
        if ft.init != "random"
        else "No pretraining on other data.",
    }


def _method_values(ft: FinetuneConfig, device: Any, mirror_average: bool) -> dict[str, Any]:
    return {
        "preprocessing": preprocessing_sentence(ft.recipe),
        "encoder": ft.encoder,
        "decoder": list(ft.decoder_channels),
        "init": ft.init,
        "reconstruction": (
            f"; a second decoder reconstructs the input from the deepest features (loss weight "
            f"{ft.recon_weight}), used in training only"
            if ft.reconstruction
            else ""
        ),
        "crop_size": ft.crop_size,
        "lesion_percent": int(ft.lesion_bias * 100),
        "lr": f"{ft.lr:g}",
        "epochs": ft.epochs,
        "steps_per_epoch": ft.steps_per_epoch,
        "batch_size": ft.batch_size,
        "precision": precision_note(device, ft.bf16),
        "weight_average": (
            f"; the weights shipped (and cross-validated) are an exponential moving average "
            f"over the steps, decay {ft.ema_decay:g}"
            if ft.ema_decay
            else ""
        ),
        "cameras": (
            f"Other cameras: {ft.camera_versions} versions of each photo as another camera "
            "would take it (white balance, gamma, one side darker, vignetting, flare, grey "
            "surround, lower resolution, blur, JPEG; `training.camera_variants.random_camera`), "
            "made before preprocessing so the field of view and CLAHE see them as in the clinic; "
            f"{ft.camera_p:.0%} of patches are cut from them."
            if ft.camera_versions
            else "No other-camera versions of the photos."
        ),
        "prediction": (
            "Prediction: the mean of the logits of the photo and its three mirror images "
            "(left-right, up-down, both), inside the graph, so every backend runs it and the "
            "figures below are of it; it costs four passes of the network per photo."
            if mirror_average
            else "Prediction: one pass of the network per photo."
        ),
    }


def _figure_values(outcome: CompareOutcome, best: RunResult) -> dict[str, Any]:
    m = best.metrics
    aupr = float(m["pooled_aupr"])
    bar = (
        "meets" if aupr >= AUPR_BAR else "does **not** meet"
    ) + f" the project's bar of {AUPR_BAR:.2f}"
    table = (outcome.out / "results.md").read_text().strip().splitlines()
    effects = _effect_lines(outcome.results)
    return {
        "folds": len(outcome.folds),
        "temperature": f"{best.calibration.temperature:.3f}",
        "bias": f"{best.calibration.bias:.3f}",
        "threshold": f"{float(m['threshold']):.3f}",
        "scale_note": outcome.scale.note,
        "evaluated": len(outcome.data.evaluable()),
        "configuration": best.spec.name,
        "aupr": f"{aupr:.4f}",
        "bar": bar,
        "mean_photo_aupr": f"{float(m['mean_photo_aupr']):.4f}",
        "dice": f"{float(m['dice']):.4f}",
        "lesion_sensitivity": f"{float(m['lesion_sensitivity']):.3f}",
        "fp_per_photo": f"{float(m['fp_per_photo']):.1f}",
        "other_camera": _block(_other_camera_lines(m)),
        "curve": _block(_curve_lines(m, outcome)),
        "table": _block([line for line in table if line.startswith("|")]),
        "effects": _block(
            ["What the comparison shows, under the same budget:", "", *effects, ""]
            if effects
            else []
        ),
    }


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
