"""Writing an ONNX model with its contract: shared by the export and the INT8 quantisation.

The contract (`inference.contract`) goes into the file's metadata with a placeholder for the
file's own SHA-256, which is then stamped in; the file reaches its destination only when whole,
stamped and (when asked) checked, so a failed export or quantisation leaves the previous model
in place.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Callable
from pathlib import Path

import onnx

from inference.atomic import atomic_write_bytes
from inference.contract import SHA256_PLACEHOLDER, ModelContract, stamp_sha256


def write_with_contract(
    model: onnx.ModelProto,
    contract: ModelContract,
    out_path: str | Path,
    *,
    check: Callable[[Path], None] | None = None,
) -> ModelContract:
    """Replace the model's metadata with `contract`, stamp its SHA-256, run `check` on the
    stamped file, and only then write it to `out_path`, atomically; return the contract as
    written (with its digest)."""
    del model.metadata_props[:]
    staged_contract = dataclasses.replace(contract, sha256=SHA256_PLACEHOLDER)
    for key, value in staged_contract.to_metadata().items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    model.producer_name = "hemaview"
    with tempfile.TemporaryDirectory(prefix="hemaview-stamp-") as tmp:
        staged = Path(tmp) / "stamped.onnx"
        onnx.save(model, str(staged))
        digest = stamp_sha256(staged)
        if check is not None:
            check(staged)
        atomic_write_bytes(out_path, staged.read_bytes())
    return dataclasses.replace(contract, sha256=digest)
