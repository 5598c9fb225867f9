"""ONNX export: a self-describing model file, checked against torch and loaded by inference.

The export writes the model contract of `inference.contract` into the file's metadata,
stamps the file's own SHA-256, checks ONNX Runtime against torch at a size other than
the export size (as segmentation-models-pytorch's own export example does), and finally
opens the file through `inference.Segmenter`, exactly as the clinic will.

A shipped model is made one way (`export_checkpoint`): from a fine-tuning checkpoint and what
cross-validation fitted for it (calibration, threshold, how it predicted), by `hemaview-train
export` and by `hemaview-train ship` alike, so the two cannot write different records.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from inference.contract import (
    IDRID_ATTRIBUTION,
    INPUT_FORMAT_UINT8_NHWC,
    SCHEMA_VERSION,
    SHA256_PLACEHOLDER,
    ModelContract,
    PreprocessRecipe,
)
from inference.onnx_runtime import onnxruntime
from training.configs import to_jsonable
from training.metrics import Calibration
from training.model import HemaviewNet, PixelInputWrapper
from training.onnx_io import write_with_contract
from training.provenance import training_data

INPUT_NAME = "pixels"
OUTPUT_NAME = "probability"


@dataclass
class ExportInfo:
    model_name: str = "hemaview-haemorrhage"
    model_version: str = "dev"
    default_threshold: float = 0.5
    min_lesion_area_px: int = 30
    training_data: dict[str, Any] | None = None
    metrics: dict[str, Any] | None = None
    training_config: dict[str, Any] | None = None
    temperature: float = 1.0
    bias: float = 0.0
    # average the photo's mirror images inside the graph (training.model.mirror_average)
    mirror_average: bool = False


#: A threshold fitted on a histogram may sit on its edge (0 or 1), which no model may carry
#: as its default (inference.contract.threshold_problem): it goes this far inside.
THRESHOLD_MARGIN = 1e-3


def default_threshold(value: float) -> float:
    """The default threshold a model file carries for `value`: moved THRESHOLD_MARGIN inside
    (0, 1) at the edges; refused outside [0, 1]."""
    if not 0.0 <= value <= 1.0:  # NaN too
        raise ValueError(f"the default threshold must be between 0 and 1, not {value}")
    return min(max(value, THRESHOLD_MARGIN), 1 - THRESHOLD_MARGIN)


def export_checkpoint(
    checkpoint_path: Path,
    out_path: Path,
    *,
    model_version: str,
    calibration: Calibration,
    threshold: float,
    mirror_average: bool,
    metrics: dict[str, Any] | None = None,
    data_summary: dict[str, Any] | None = None,
    training_config: dict[str, Any] | None = None,
) -> ModelContract:
    """The model file of a fine-tuning checkpoint: its weights and recipe, with the calibration
    and threshold fitted for it on predictions made with or without `mirror_average` (the graph
    must predict as they were made). `data_summary` (`LabelledSet.summary`) and
    `training_config` add to what the checkpoint itself records."""
    from training.finetune import net_from_checkpoint

    net, config, state = net_from_checkpoint(checkpoint_path)
    info = ExportInfo(
        model_version=model_version,
        default_threshold=default_threshold(threshold),
        training_data=training_data(list(state.get("train_names", [])), config, data_summary),
        metrics=metrics,
        training_config={
            "finetune": to_jsonable(config),
            **(training_config or {}),
            "mirror_average": mirror_average,
        },
        temperature=calibration.temperature,
        bias=calibration.bias,
        mirror_average=mirror_average,
    )
    return export_model(net, out_path, config.recipe, info)


def git_commit() -> str:
    """The training code's commit, marked dirty when the tree has changes.

    HEMAVIEW_TRAINING_COMMIT names it where the code runs without its git folder (a copy of
    the working tree on a GPU machine).
    """
    given = os.environ.get("HEMAVIEW_TRAINING_COMMIT")
    if given:
        return given
    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here,
            capture_output=True,
            text=True,
        ).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def export_model(
    net: HemaviewNet,
    out_path: str | Path,
    recipe: PreprocessRecipe,
    info: ExportInfo | None = None,
    *,
    check_parity: bool = True,
) -> ModelContract:
    """Export `net` to `out_path` with its contract; return the contract as written."""
    import onnx

    info = info or ExportInfo()
    out_path = Path(out_path)
    wrapper = (
        PixelInputWrapper(
            net,
            temperature=info.temperature,
            bias=info.bias,
            mirror_average=info.mirror_average,
        )
        .cpu()
        .eval()
    )
    size = 256  # export size; parity is checked at another
    example = torch.randint(0, 256, (1, size, size, 3), dtype=torch.uint8)
    contract = ModelContract(
        schema_version=SCHEMA_VERSION,
        model_name=info.model_name,
        model_version=info.model_version,
        input_name=INPUT_NAME,
        input_format=INPUT_FORMAT_UINT8_NHWC,
        output_name=OUTPUT_NAME,
        preprocess=recipe,
        default_threshold=info.default_threshold,
        min_lesion_area_px=info.min_lesion_area_px,
        class_names=("haemorrhage",),
        training_data=info.training_data or {"summary": "untrained (random weights)"},
        attribution=IDRID_ATTRIBUTION,
        metrics=info.metrics or {},
        training_commit=git_commit(),
        sha256=SHA256_PLACEHOLDER,
        training_config=info.training_config or {},
        created=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    )
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.onnx"
        with torch.no_grad():
            torch.onnx.export(
                wrapper,
                (example,),
                str(raw),
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes={
                    INPUT_NAME: {0: "batch", 1: "height", 2: "width"},
                    OUTPUT_NAME: {0: "batch", 2: "height", 3: "width"},
                },
                opset_version=17,
                dynamo=False,
            )
        written = write_with_contract(onnx.load(str(raw)), contract, out_path)
    if check_parity:
        parity_check(wrapper, out_path)
    return written


def parity_check(
    wrapper: PixelInputWrapper, path: Path, shape: tuple[int, int, int] = (2, 352, 480)
) -> float:
    """ONNX Runtime against torch at a size other than the export size; returns the max error."""
    ort = onnxruntime()

    rng = np.random.default_rng(0)
    n, h, w = shape
    pixels = rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8)
    with torch.no_grad():
        expected = wrapper.eval()(torch.from_numpy(pixels)).numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run([OUTPUT_NAME], {INPUT_NAME: pixels})
    if got.shape != expected.shape:
        raise AssertionError(f"ONNX output shape {got.shape} != torch {expected.shape}")
    error = float(np.abs(got - expected).max())
    if not np.allclose(got, expected, rtol=1e-3, atol=1e-4):
        raise AssertionError(f"ONNX Runtime and torch disagree at {shape}: max error {error:.2e}")
    return error
