"""The local backend: ONNX Runtime on CUDA when it really binds, on the CPU otherwise.

onnxruntime falls back to the CPU silently when the CUDA provider cannot load, so the
provider that actually bound is read back from the session, and the reason CUDA was not
used is worked out beforehand (driver, driver version, libraries) to tell the user.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

from inference.backends.base import register_backend
from inference.errors import BackendError, ModelContractError
from inference.model_file import ModelFile
from inference.onnx_runtime import onnxruntime
from inference.system import physical_cores


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

    try:
        from onnxruntime.capi import build_and_package_info as info

        package = str(info.package_name)
    except ImportError:
        package = "onnxruntime"
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
    try:
        from onnxruntime.capi import build_and_package_info as info

        major, minor = (int(p) for p in str(info.cuda_version).split(".")[:2])
        return major, minor
    except Exception:
        return None


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


class OnnxRuntimeBackend:
    """One ONNX Runtime session; `run` is thread-safe (onnxruntime's Run is)."""

    def __init__(
        self,
        model: ModelFile,
        *,
        device: str = "auto",
        threads: int | None = None,
        session: Any = None,
    ):
        ort = onnxruntime()
        self.model = model
        self.threads = threads or physical_cores()
        if session is not None:  # injected by tests
            self.session = session
        else:
            cuda = (
                check_cuda()
                if device in ("auto", "cuda")
                else CudaCheck(False, "the CPU was asked for")
            )
            if device == "cuda" and not cuda.usable:
                raise BackendError(f"CUDA was asked for but cannot be used: {cuda.reason}")
            options = ort.SessionOptions()
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            options.intra_op_num_threads = self.threads
            options.inter_op_num_threads = 1
            options.log_severity_level = 3
            providers: list[Any] = ["CPUExecutionProvider"]
            if cuda.usable:
                providers.insert(
                    0, ("CUDAExecutionProvider", {"cudnn_conv_algo_search": "HEURISTIC"})
                )
            try:
                self.session = ort.InferenceSession(model.data, options, providers=providers)
            except Exception as exc:
                raise ModelContractError(
                    f"model {model.path.name} could not be loaded: {exc}"
                ) from None
        bound = self.session.get_providers()[0]
        if bound == "CUDAExecutionProvider":
            self.device = "cuda"
            self.reason = (
                f"running on the GPU ({cuda.reason})" if session is None else "running on the GPU"
            )
            self.preferred_batch = 8
        else:
            self.device = "cpu"
            if session is not None:
                why = "a CPU session was given"
            elif device == "cpu":
                why = "the CPU was asked for"
            elif cuda.usable:
                why = "the CUDA provider failed to start although a GPU was found"
            else:
                why = cuda.reason
            self.reason = f"running on the CPU with {self.threads} threads: {why}"
            self.preferred_batch = 1
        contract = model.contract
        self.input_name = contract.input_name
        self.output_name = contract.output_name

    def run(self, batch: np.ndarray) -> np.ndarray:
        if batch.dtype != np.uint8 or batch.ndim != 4 or batch.shape[3] != 3:
            raise ValueError(f"expected (N, S, S, 3) uint8, got {batch.shape} {batch.dtype}")
        (out,) = self.session.run([self.output_name], {self.input_name: batch})
        return np.asarray(out, dtype=np.float32).reshape(batch.shape[:3])

    def close(self) -> None:
        self.session = None


@register_backend("local")
def _local(model: ModelFile, **options: Any) -> OnnxRuntimeBackend:
    return OnnxRuntimeBackend(model, device="auto", **options)


@register_backend("cpu")
def _cpu(model: ModelFile, **options: Any) -> OnnxRuntimeBackend:
    return OnnxRuntimeBackend(model, device="cpu", **options)


@register_backend("cuda")
def _cuda(model: ModelFile, **options: Any) -> OnnxRuntimeBackend:
    return OnnxRuntimeBackend(model, device="cuda", **options)
