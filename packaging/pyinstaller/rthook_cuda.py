"""PyInstaller runtime hook of the GPU build: make ONNX Runtime find the bundled CUDA.

The build carries the CUDA 13 and cuDNN 9 libraries from NVIDIA's PyPI wheels under
`_internal/nvidia/...`, in the wheels' own layout, which is where
`onnxruntime.preload_dlls()` looks (relative to the onnxruntime package). Windows also
resolves a DLL's own dependencies (cublas -> cublasLt, cudnn -> its engine DLLs) through the
DLL search path, so those folders are added to it here, before anything loads. The folders are
published in HEMAVIEW_BUNDLED_CUDA for `hemaview --selftest` to report.
"""

import os
import sys


def _bundled_cuda_dirs() -> list[str]:
    base = os.path.join(getattr(sys, "_MEIPASS", ""), "nvidia")
    found = []
    for root, _dirs, files in os.walk(base):
        if any(f.endswith(".dll") or ".so" in f for f in files):
            found.append(root)
    return sorted(found)


_dirs = _bundled_cuda_dirs()
if _dirs:
    os.environ["HEMAVIEW_BUNDLED_CUDA"] = os.pathsep.join(_dirs)
    if sys.platform == "win32":
        for _d in _dirs:
            os.add_dll_directory(_d)
        os.environ["PATH"] = os.pathsep.join([*_dirs, os.environ.get("PATH", "")])
