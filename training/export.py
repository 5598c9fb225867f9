"""ONNX export: a self-describing model file, checked against torch and loaded by inference.

The export writes the model contract of `inference.contract` into the file's metadata,
stamps the file's own SHA-256, checks ONNX Runtime against torch at a size other than
the export size (as segmentation-models-pytorch's own export example does), and finally
opens the file through `inference.Segmenter`, exactly as the clinic will.
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
from training.model import HemaviewNet, PixelInputWrapper
from training.onnx_io import write_with_contract

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
