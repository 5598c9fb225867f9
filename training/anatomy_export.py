"""The anatomy model to ONNX with its contract, checked against torch at another size."""

from __future__ import annotations

import datetime as dt
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from inference.anatomy.contract import (
    ANATOMY_MODEL_NAME,
    CLASS_NAMES,
    DISC_OUTPUT,
    FOVEA_OUTPUT,
    AnatomyContract,
)
from inference.anatomy.decode import DecodeParams
from inference.contract import (
    IDRID_ATTRIBUTION,
    INPUT_FORMAT_UINT8_NHWC,
    SCHEMA_VERSION,
    SHA256_PLACEHOLDER,
)
from inference.onnx_runtime import onnxruntime
from training.anatomy import AnatomyConfig, AnatomyNet, AnatomyPixelWrapper
from training.export import INPUT_NAME, git_commit
from training.onnx_io import write_with_contract


def export_anatomy(
    net: AnatomyNet,
    config: AnatomyConfig,
    out_path: Path,
    *,
    decode: DecodeParams,
    mirror: bool,
    training_data: dict[str, Any],
    metrics: dict[str, Any],
    training_config: dict[str, Any],
    model_version: str = "dev",
) -> AnatomyContract:
    """Write `out_path` (atomically, stamped) and return its contract."""
    import onnx

    wrapper = AnatomyPixelWrapper(net, config, mirror=mirror).cpu().eval()
    size = config.working_size
    example = torch.randint(0, 256, (1, size, size, 3), dtype=torch.uint8)
    contract = AnatomyContract(
        schema_version=SCHEMA_VERSION,
        model_name=ANATOMY_MODEL_NAME,
        model_version=model_version,
        input_name=INPUT_NAME,
        input_format=INPUT_FORMAT_UINT8_NHWC,
        output_name=DISC_OUTPUT,
        preprocess=config.recipe(),
        default_threshold=decode.disc_threshold,
        min_lesion_area_px=0,
        class_names=CLASS_NAMES,
        training_data=training_data,
        attribution=IDRID_ATTRIBUTION,
        metrics=metrics,
        training_commit=git_commit(),
        sha256=SHA256_PLACEHOLDER,
        training_config={**training_config, "mirror_average": mirror},
        created=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        extra_outputs=(FOVEA_OUTPUT,),
        decode=decode,
    )

    def check(path: Path) -> None:
        parity_check(wrapper, path)

    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.onnx"
        with torch.no_grad():
            torch.onnx.export(
                wrapper,
                (example,),
                str(raw),
                input_names=[INPUT_NAME],
                output_names=[DISC_OUTPUT, FOVEA_OUTPUT],
                dynamic_axes={
                    INPUT_NAME: {0: "batch", 1: "height", 2: "width"},
                    DISC_OUTPUT: {0: "batch", 2: "height", 3: "width"},
                    FOVEA_OUTPUT: {0: "batch", 2: "height", 3: "width"},
                },
                opset_version=17,
                dynamo=False,
            )
        written = write_with_contract(onnx.load(str(raw)), contract, out_path, check=check)
    assert isinstance(written, AnatomyContract)
    return written


def parity_check(
    wrapper: AnatomyPixelWrapper, path: Path, shape: tuple[int, int, int] = (2, 320, 288)
) -> float:
    """ONNX Runtime against torch at a size other than the export's; the max error."""
    ort = onnxruntime()
    rng = np.random.default_rng(0)
    n, h, w = shape
    pixels = rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8)
    with torch.no_grad():
        disc, fovea = (t.numpy() for t in wrapper.eval()(torch.from_numpy(pixels)))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got_disc, got_fovea = session.run([DISC_OUTPUT, FOVEA_OUTPUT], {INPUT_NAME: pixels})
    error = 0.0
    for name, got, expected in (("disc", got_disc, disc), ("fovea", got_fovea, fovea)):
        if got.shape != expected.shape:
            raise AssertionError(f"ONNX {name} shape {got.shape} != torch {expected.shape}")
        scale = float(np.abs(expected).max()) or 1.0
        err = float(np.abs(got - expected).max()) / scale
        if not np.allclose(got, expected, rtol=1e-3, atol=1e-4 * scale):
            raise AssertionError(f"ONNX Runtime and torch disagree on {name}: {err:.2e}")
        error = max(error, err)
    return error
