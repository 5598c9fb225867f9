"""ONNX Runtime, imported with its telemetry off.

The PyPI builds of onnxruntime carry Microsoft's 1DS telemetry: on first use they write a
device id and an event database under ~/.cache/Microsoft/DeveloperTools and may send events
to mobile.events.data.microsoft.com. A clinic workstation must make no connection we did not
configure, so every import of onnxruntime in Hemaview goes through here (an import-linter
contract in pyproject.toml holds inference, training and viewer to it): ORT_DISABLE_TELEMETRY
must be set before onnxruntime creates its environment, and the Python switch is turned off
too for builds that only honour that.
"""

from __future__ import annotations

import contextlib
import os
import re
from types import ModuleType

_ort: ModuleType | None = None


def onnxruntime() -> ModuleType:
    global _ort
    if _ort is None:
        os.environ["ORT_DISABLE_TELEMETRY"] = "1"
        import onnxruntime as ort

        with contextlib.suppress(AttributeError):
            ort.disable_telemetry_events()
        _ort = ort
    return _ort


def quantization() -> ModuleType:
    """`onnxruntime.quantization` (static quantisation, calibration), after onnxruntime()."""
    onnxruntime()
    import onnxruntime.quantization as quantization

    return quantization


def shape_inference() -> ModuleType:
    """`onnxruntime.quantization.shape_inference`, whose quant_pre_process folds and infers
    shapes before quantisation."""
    onnxruntime()
    import onnxruntime.quantization.shape_inference as shape_inference

    return shape_inference


def build_info() -> ModuleType | None:
    """onnxruntime's build_and_package_info (package name, CUDA version); None if absent."""
    onnxruntime()
    try:
        from onnxruntime.capi import build_and_package_info
    except ImportError:
        return None
    return build_and_package_info


def error_text(exc: BaseException) -> str:
    """onnxruntime's message without its C++ source location and signature."""
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else type(exc).__name__
    text = re.sub(r"\[ONNXRuntimeError\] : \d+ : \w+ : ", "", text)
    text = re.sub(r"\S*onnxruntime_src\S*\s+[^(]*\(.*\)\s*", "", text)
    return text.strip()[:300] or type(exc).__name__
