"""A model file opened and checked: its bytes, its contract, its verified SHA-256."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from inference.contract import ModelContract, file_sha256
from inference.errors import ModelContractError
from inference.onnx_runtime import onnxruntime
from inference.resources import shipped_model_path


@dataclass(frozen=True)
class ModelFile:
    path: Path
    data: bytes  # the ONNX file, kept so backends need not read it again
    contract: ModelContract

    @property
    def sha256(self) -> str:
        return self.contract.sha256

    @property
    def name(self) -> str:
        return self.contract.model_name

    @classmethod
    def open(cls, path: str | os.PathLike[str] | None = None) -> ModelFile:
        """Read and check a model; the shipped one when no path is given."""
        model_path = Path(path) if path is not None else shipped_model_path()
        try:
            data = model_path.read_bytes()
        except FileNotFoundError:
            hint = " (the shipped model is missing from this installation)" if path is None else ""
            raise ModelContractError(f"model file not found: {model_path}{hint}") from None
        except OSError as exc:
            raise ModelContractError(f"model file {model_path} cannot be read ({exc})") from None
        if not data:
            raise ModelContractError(f"model file {model_path} is empty")
        meta, inputs, outputs = _read_metadata(data, model_path)
        contract = ModelContract.from_metadata(meta, source=f"model {model_path.name}")
        actual = file_sha256(data, contract.sha256)
        if actual != contract.sha256:
            raise ModelContractError(
                f"model {model_path.name} has been changed or damaged: its content does not "
                f"match its recorded SHA-256 ({contract.sha256[:12]}..., found {actual[:12]}...)"
            )
        if contract.input_name not in inputs:
            raise ModelContractError(
                f"model {model_path.name}: contract names input {contract.input_name!r}, "
                f"the graph has {inputs}"
            )
        missing = [o for o in (contract.output_name, *contract.extra_outputs) if o not in outputs]
        if missing:
            raise ModelContractError(
                f"model {model_path.name}: contract names outputs {missing} "
                f"that the graph lacks (it has {outputs})"
            )
        return cls(path=model_path, data=data, contract=contract)


def _read_metadata(data: bytes, path: Path) -> tuple[dict[str, str], list[str], list[str]]:
    """Metadata and I/O names via onnxruntime, without optimising or placing the graph."""
    ort = onnxruntime()

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types for bad files
        raise ModelContractError(
            f"model {path.name} is not a valid ONNX file or is damaged ({_first_line(exc)})"
        ) from None
    meta = dict(session.get_modelmeta().custom_metadata_map)
    inputs = [i.name for i in session.get_inputs()]
    outputs = [o.name for o in session.get_outputs()]
    return meta, inputs, outputs


def _first_line(exc: BaseException) -> str:
    """onnxruntime's message without its C++ source location and signature."""
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else type(exc).__name__
    text = re.sub(r"\[ONNXRuntimeError\] : \d+ : \w+ : ", "", text)
    text = re.sub(r"\S*onnxruntime_src\S*\s+[^(]*\(.*\)\s*", "", text)
    return text.strip()[:300] or type(exc).__name__
