"""A model file opened and checked: its bytes, its contract, its verified SHA-256.

Opening builds no onnxruntime session: the contract comes from the file's own metadata
(inference.onnx_file), so the backend's session is the only one a model gets.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from inference.contract import ModelContract, file_sha256
from inference.errors import ModelContractError
from inference.onnx_file import OnnxFormatError, read_summary
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
        try:
            summary = read_summary(data)
        except OnnxFormatError as exc:
            raise ModelContractError(
                f"model {model_path.name} is not a valid ONNX file or is damaged ({exc})"
            ) from None
        inputs, outputs = summary.inputs, summary.outputs
        contract = ModelContract.from_metadata(summary.metadata, source=f"model {model_path.name}")
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
