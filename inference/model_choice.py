"""Which file of the shipped model runs: the fp32 graph, or its INT8 quantisation on a CPU.

The shipped model comes as `hemorrhage.onnx` (fp32) and, beside it, `hemorrhage-int8.onnx`
(`hemaview-train quantize`): on a CPU the INT8 graph runs about twice as fast for a pooled
AUPR within 0.01 of fp32 (its own contract records the check). CUDA and Triton run the fp32
graph, which they execute best. The INT8 file is used only when its contract says it was
made from this very fp32 file (by SHA-256) and its check said ship; otherwise fp32 runs and
the reason says why. A path given explicitly is always opened as given.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from inference.errors import HemaviewError
from inference.model_file import ModelFile

INT8_SUFFIX = "-int8"


@dataclass(frozen=True)
class ModelChoice:
    model: ModelFile  # the file that runs
    source: ModelFile  # the fp32 model it stands for (remote servers serve this one)
    reason: str  # which file runs and why, for the status bar, the CLI and the selftest


def int8_sibling(fp32_path: Path) -> Path:
    return fp32_path.with_name(fp32_path.stem + INT8_SUFFIX + fp32_path.suffix)


def int8_source_sha256(model: ModelFile) -> str:
    """The SHA-256 of the fp32 model an INT8 file was made from ('' for an fp32 file)."""
    quantisation = model.contract.training_config.get("quantisation")
    if not isinstance(quantisation, dict):
        return ""
    return str(quantisation.get("source_sha256", ""))


def choose_model(fp32: ModelFile, on_cpu: bool) -> ModelChoice:
    """The INT8 sibling of `fp32` when running on a CPU and it is fit to stand in for it."""
    if not on_cpu:
        return ModelChoice(fp32, fp32, f"{fp32.path.name} (fp32: the GPU runs it best)")
    path = int8_sibling(fp32.path)
    if not path.is_file():
        return ModelChoice(fp32, fp32, f"{fp32.path.name} (fp32; no INT8 file beside it)")
    try:
        int8 = ModelFile.open(path)
    except HemaviewError as exc:
        return ModelChoice(fp32, fp32, f"{fp32.path.name} (fp32; {path.name} unusable: {exc})")
    if int8_source_sha256(int8) != fp32.sha256:
        return ModelChoice(
            fp32, fp32, f"{fp32.path.name} (fp32; {path.name} was made from another model)"
        )
    check = int8.contract.metrics.get("int8_check")
    if isinstance(check, dict) and check.get("ship") is False:
        return ModelChoice(
            fp32, fp32, f"{fp32.path.name} (fp32; {path.name} failed its quality check)"
        )
    detail = ""
    if isinstance(check, dict) and "speedup" in check and "aupr_drop" in check:
        detail = (
            f", x{float(check['speedup']):.1f} faster, pooled AUPR "
            f"{-float(check['aupr_drop']):+.3f}"
        )
    return ModelChoice(
        int8, fp32, f"{path.name} (INT8 on the CPU, made from {fp32.path.name}{detail})"
    )
