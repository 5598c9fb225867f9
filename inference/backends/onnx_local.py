"""The local backend: ONNX Runtime on CUDA when it really binds, on the CPU otherwise.

onnxruntime falls back to the CPU silently when the CUDA provider cannot load, so the
provider that actually bound is read back from the session, and the reason CUDA was not
used is worked out beforehand (inference.local_devices) to tell the user.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from inference.errors import BackendError, ModelContractError
from inference.local_devices import CudaCheck, bundled_cuda_status, check_cuda, runtime_summary
from inference.model_file import ModelFile
from inference.onnx_runtime import error_text, onnxruntime
from inference.system import physical_cores

# the device checks are re-exported: the viewer's self-test imports them from here
__all__ = [
    "CudaCheck",
    "OnnxRuntimeBackend",
    "bundled_cuda_status",
    "check_cuda",
    "cpu_backend",
    "cuda_backend",
    "local_backend",
    "runtime_summary",
]


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
                    f"model {model.path.name} is not a valid ONNX file or could not be "
                    f"loaded ({error_text(exc)})"
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


# The factories inference.backends.base names in its table.


def local_backend(model: ModelFile, **options: Any) -> OnnxRuntimeBackend:
    return OnnxRuntimeBackend(model, device="auto", **options)


def cpu_backend(model: ModelFile, **options: Any) -> OnnxRuntimeBackend:
    return OnnxRuntimeBackend(model, device="cpu", **options)


def cuda_backend(model: ModelFile, **options: Any) -> OnnxRuntimeBackend:
    return OnnxRuntimeBackend(model, device="cuda", **options)
