"""The check before the first photo: is the server up, and is the model it serves ours?

The server must be live and ready, and the served model must be the local model: same
name, same SHA-256 and version (from the `parameters` that inference.triton_repo writes),
same input and output names, dtypes and shapes. Anything else is refused with a message
that says what differs. The check asks readiness, metadata and config: no inference.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from inference.contract import ModelContract
from inference.model_file import ModelFile
from inference.remote.config import RemoteConfig
from inference.remote.connection import Connection
from inference.remote.errors import RemoteError, RemoteErrorKind
from inference.triton_repo import PARAM_MODEL_VERSION, PARAM_SHA256


@dataclass(frozen=True)
class ServedModel:
    """What the server said about the model, once it matched the local contract."""

    name: str
    version: str  # Triton's version number
    platform: str
    max_batch_size: int
    preferred_batch_sizes: tuple[int, ...]
    sha256: str
    model_version: str  # the model's own version (from the contract)


def served_name(config: RemoteConfig, model: ModelFile) -> str:
    return config.model_name or model.contract.model_name


def check_served_model(connection: Connection, model: ModelFile) -> ServedModel:
    """The served model, once it is ready and matches `model`; RemoteError otherwise."""
    where, config = connection.where, connection.config
    if not connection.server_live():
        raise RemoteError(RemoteErrorKind.UNREACHABLE, f"{where} is not live")
    if not connection.server_ready():
        raise RemoteError(RemoteErrorKind.UNREACHABLE, f"{where} is live but not ready")
    name, version = served_name(config, model), config.model_version
    label = f"model {name!r}" + (f" version {version}" if version else "")
    if not connection.model_ready(name, version):
        raise RemoteError(
            RemoteErrorKind.REFUSED,
            f"{where} has no ready {label} (not in its repository, still loading, "
            "or it failed to load)",
        )
    meta = connection.model_metadata(name, version)
    served_config = connection.model_config(name, version)
    problems = _differences(meta, served_config, model.contract)
    if problems:
        raise RemoteError(
            RemoteErrorKind.MISMATCH,
            f"{where} serves {name!r}, but not as this model: "
            + "; ".join(problems)
            + ". No photo was sent.",
        )
    dynamic = served_config.get("dynamic_batching") or {}
    versions = meta.get("versions") or [""]
    params = _parameters(served_config)
    return ServedModel(
        name=str(meta.get("name", name)),
        version=str(version or versions[-1]),
        platform=str(meta.get("platform", "") or served_config.get("backend", "")),
        max_batch_size=int(served_config.get("max_batch_size", 0) or 0),
        preferred_batch_sizes=tuple(int(b) for b in dynamic.get("preferred_batch_size", []) or []),
        sha256=params.get(PARAM_SHA256, "").lower(),
        model_version=params.get(PARAM_MODEL_VERSION, ""),
    )


def _parameters(config: dict[str, Any]) -> dict[str, str]:
    return {
        k: (v.get("string_value", "") if isinstance(v, dict) else str(v))
        for k, v in (config.get("parameters") or {}).items()
    }


def _differences(meta: dict[str, Any], config: dict[str, Any], c: ModelContract) -> list[str]:
    """What the served model's metadata and config say that the contract does not."""
    size = c.preprocess.working_size
    problems: list[str] = []

    def shape_ok(shape: list[Any], expected: list[int]) -> bool:
        dims = [int(d) for d in shape]
        return len(dims) == len(expected) and all(d == e or d == -1 for d, e in zip(dims, expected))

    inputs = meta.get("inputs", [])
    outputs = meta.get("outputs", [])
    if [i.get("name") for i in inputs] != [c.input_name]:
        problems.append(
            f"its inputs are {[i.get('name') for i in inputs]}, this model has [{c.input_name!r}]"
        )
    else:
        entry = inputs[0]
        if entry.get("datatype") != "UINT8":
            problems.append(f"input {c.input_name!r} is {entry.get('datatype')}, not UINT8")
        if not shape_ok(entry.get("shape", []), [-1, size, size, 3]):
            problems.append(
                f"input {c.input_name!r} has shape {entry.get('shape')}, this model takes "
                f"[-1, {size}, {size}, 3]"
            )
    out = next((o for o in outputs if o.get("name") == c.output_name), None)
    if out is None:
        problems.append(
            f"it has no output {c.output_name!r} (it has {[o.get('name') for o in outputs]})"
        )
    else:
        if out.get("datatype") != "FP32":
            problems.append(f"output {c.output_name!r} is {out.get('datatype')}, not FP32")
        if not shape_ok(out.get("shape", []), [-1, 1, size, size]):
            problems.append(
                f"output {c.output_name!r} has shape {out.get('shape')}, this model gives "
                f"[-1, 1, {size}, {size}]"
            )
    if int(config.get("max_batch_size", 0) or 0) < 1:
        problems.append("it does not batch (max_batch_size 0)")
    params = _parameters(config)
    sha = params.get(PARAM_SHA256, "").lower()
    served_version = params.get(PARAM_MODEL_VERSION, "")
    if not sha:
        problems.append(
            f"it does not say which model file it serves (no {PARAM_SHA256!r} parameter in "
            "its config; generate the repository with hemaview-infer --triton-repo)"
        )
    elif sha != c.sha256:
        problems.append(
            f"it serves another model file: SHA-256 {sha[:12]}... (version "
            f"{served_version or '?'}) where this Hemaview has {c.sha256[:12]}... "
            f"(version {c.model_version or '?'})"
        )
    return problems
