"""Hemaview CPU stand-in for Triton's Python backend (copied as model.py by hemaview-infer
--triton-repo --cpu; see inference/triton_repo.py).

Runs model.onnx with onnxruntime on the CPU, one session run per dynamic batch: the
requests Triton's dynamic batcher hands over together are concatenated, run once and
split back. It runs inside the server's Python, where Hemaview is not installed, so it
imports only numpy, onnxruntime and the backend's own utilities; that is also why it turns
onnxruntime's telemetry off itself, the way inference.onnx_runtime does (the import-linter
contract on onnxruntime names this module as its one other exception).
"""

import json
import os
import time
from pathlib import Path

import numpy as np

# before onnxruntime is imported: it reads this when it creates its environment
os.environ["ORT_DISABLE_TELEMETRY"] = "1"

import onnxruntime as ort
import triton_python_backend_utils as pb_utils

if hasattr(ort, "disable_telemetry_events"):
    ort.disable_telemetry_events()


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        self.input_name = config["input"][0]["name"]
        self.output_name = config["output"][0]["name"]
        self.delay_s = float(params.get("standin_delay_s", "0") or 0)
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(params.get("standin_intra_op_threads", "0") or 0)
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        path = Path(args["model_repository"]) / args["model_version"] / "model.onnx"
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def execute(self, requests):
        arrays = [
            pb_utils.get_input_tensor_by_name(r, self.input_name).as_numpy() for r in requests
        ]
        sizes = [a.shape[0] for a in arrays]
        if self.delay_s > 0:
            time.sleep(self.delay_s)  # tests of client timeouts ask for a slow model
        try:
            (out,) = self.session.run(
                [self.output_name], {self.input_name: np.concatenate(arrays, axis=0)}
            )
        except Exception as exc:
            error = pb_utils.TritonError(f"the model failed: {exc}")
            return [pb_utils.InferenceResponse(output_tensors=[], error=error) for _ in requests]
        out = np.ascontiguousarray(out, dtype=np.float32)
        responses = []
        start = 0
        for size in sizes:
            tensor = pb_utils.Tensor(self.output_name, out[start : start + size])
            responses.append(pb_utils.InferenceResponse(output_tensors=[tensor]))
            start += size
        return responses

    def finalize(self):
        self.session = None
