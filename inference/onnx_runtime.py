"""ONNX Runtime, imported with its telemetry off.

The PyPI builds of onnxruntime carry Microsoft's 1DS telemetry: on first use they write a
device id and an event database under ~/.cache/Microsoft/DeveloperTools and may send events
to mobile.events.data.microsoft.com. A clinic workstation must make no connection we did not
configure, so every import of onnxruntime in Hemaview goes through here: ORT_DISABLE_TELEMETRY
must be set before onnxruntime creates its environment, and the Python switch is turned off
too for builds that only honour that.
"""

from __future__ import annotations

import contextlib
import os
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
