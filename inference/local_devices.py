"""What the local ONNX Runtime can run on here: CUDA when it really binds, and why not.

onnxruntime falls back to the CPU silently when the CUDA provider cannot load, so the
reason CUDA would not be used is worked out beforehand (driver, driver version, libraries)
to tell the user; the local backend then reads back which provider actually bound. Kept
apart from the backend so that choosing a model file for the CPU needs no backend module.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
from dataclasses import dataclass
from typing import Any

from inference.onnx_runtime import build_info, onnxruntime


@dataclass(frozen=True)
class CudaCheck:
    usable: bool
    reason: str  # why not, or what was found


def check_cuda() -> CudaCheck:
    """Can the CUDA provider bind here? Explains the first thing that is missing."""
    ort = onnxruntime()
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return CudaCheck(False, "this onnxruntime build has no CUDA support (CPU-only package)")
    driver = _load_driver()
    if driver is None:
        return CudaCheck(
            False, "no NVIDIA driver found (the CUDA driver library could not be loaded)"
        )
    version = ctypes.c_int(0)
    if driver.cuDriverGetVersion(ctypes.byref(version)) != 0:
        return CudaCheck(False, "the NVIDIA driver did not report its CUDA version")
    needed = _needed_cuda_version()
    have = (version.value // 1000, (version.value % 1000) // 10)
    if needed and have < needed:
        return CudaCheck(
            False,
            f"the NVIDIA driver supports CUDA {have[0]}.{have[1]}, but this build needs CUDA "
            f"{needed[0]}.{needed[1]}: update the NVIDIA driver",
        )
    if driver.cuInit(0) != 0:
        return CudaCheck(
            False, "the NVIDIA driver is installed but failed to initialise (no usable GPU?)"
        )
    count = ctypes.c_int(0)
    if driver.cuDeviceGetCount(ctypes.byref(count)) != 0 or count.value == 0:
        return CudaCheck(False, "the NVIDIA driver found no GPU")
    missing = _load_cuda_libraries(ort, needed)
    if missing:
        return CudaCheck(False, f"CUDA libraries are missing: {', '.join(missing)}")
    return CudaCheck(True, f"NVIDIA driver with CUDA {have[0]}.{have[1]}, {count.value} GPU(s)")


def bundled_cuda_status() -> str | None:
    """In the GPU installer's build: do its bundled CUDA and cuDNN libraries load? None in any
    other install. Loading them needs no driver, so a clinic's IT can tell "install the NVIDIA
    driver" apart from "the installation is broken" before a GPU is there."""
    bundled = os.environ.get("HEMAVIEW_BUNDLED_CUDA")  # set by the build's runtime hook
    if not bundled:
        return None
    needed = _needed_cuda_version()
    missing = _load_cuda_libraries(onnxruntime(), needed)
    if missing:
        return f"bundled CUDA libraries in {bundled} do not load: {', '.join(missing)}"
    cuda = f"CUDA {needed[0]}.{needed[1]}" if needed else "CUDA"
    return f"bundled {cuda} and cuDNN 9 libraries load"


def runtime_summary() -> str:
    """onnxruntime's package, version and the providers it was built with, in one line."""
    ort = onnxruntime()
    info = build_info()
    package = str(getattr(info, "package_name", "onnxruntime"))
    providers = ", ".join(ort.get_available_providers())
    return f"{package} {ort.__version__}, providers available: {providers}"


def _load_driver() -> Any:
    names = ["nvcuda.dll"] if sys.platform == "win32" else ["libcuda.so.1", "libcuda.so"]
    for name in names:
        try:
            return ctypes.CDLL(name)
        except OSError:
            continue
    return None


def _needed_cuda_version() -> tuple[int, int] | None:
    version = str(getattr(build_info(), "cuda_version", ""))
    try:
        major, minor = (int(p) for p in version.split(".")[:2])
    except ValueError:  # no build info, or a CPU build with no CUDA version in it
        return None
    return major, minor


def _load_cuda_libraries(ort: Any, needed: tuple[int, int] | None) -> list[str]:
    """Preload CUDA and cuDNN the way onnxruntime-gpu finds them (the nvidia-* wheels, or our
    installer's bundle in the same layout; preloading makes that work on Windows too), then
    name the libraries that still do not load."""
    preload = getattr(ort, "preload_dlls", None)
    if preload is not None:
        # best effort: the check below says what is missing
        with contextlib.suppress(Exception):
            preload(cuda=True, cudnn=True, msvc=sys.platform == "win32", directory=None)
    return _missing_libraries(needed[0] if needed else 13)


def _missing_libraries(cuda_major: int) -> list[str]:
    if sys.platform == "win32":
        wanted = [f"cudart64_{cuda_major}.dll", f"cublas64_{cuda_major}.dll", "cudnn64_9.dll"]
    else:
        wanted = [f"libcudart.so.{cuda_major}", f"libcublas.so.{cuda_major}", "libcudnn.so.9"]
    missing = []
    for name in wanted:
        try:
            ctypes.CDLL(name)
        except OSError:
            missing.append(name)
    return missing
