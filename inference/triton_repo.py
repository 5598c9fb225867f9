"""A Triton model repository generated from a Hemaview model file.

Two configurations of the same model, from one set of settings so they cannot drift:

- production: `backend: "onnxruntime"`, `KIND_GPU`, for NVIDIA's Triton container on a GPU
  server (packaging/triton/README.md says how a clinic runs it);
- CPU stand-in (`cpu=True`): `backend: "python"`, `KIND_CPU`, and a `model.py` (a copy of
  inference/triton_standin.py) that needs only numpy and onnxruntime and runs the same ONNX
  file on each dynamic batch. It exists because the Triton that installs from a package
  registry has no onnxruntime backend and no GPU (see shared/notes/triton-on-cpu.md); the
  tests and benchmarks serve it.

Both have the same name, input, output, `max_batch_size` and `dynamic_batching`, and carry
the model's SHA-256 and version in `parameters`, which the remote backend checks against
the local model's contract before it sends a single photo. The input is the model's own
uint8 NHWC tensor at the working size, so the wire carries pixels, not floats.

The configuration text is written by hand here (tritonclient is imported only by
inference.remote.connection); the tests parse both with Triton's own protobuf and compare
them.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from inference.atomic import atomic_write_bytes
from inference.model_file import ModelFile

#: config `parameters` keys the remote backend reads back
PARAM_SHA256 = "hemaview_model_sha256"
PARAM_MODEL_VERSION = "hemaview_model_version"
PARAM_CONTRACT_INPUT = "hemaview_input_format"
#: CPU stand-in only: onnxruntime intra-op threads (0: onnxruntime's default)
PARAM_THREADS = "standin_intra_op_threads"
#: CPU stand-in only, for tests of client timeouts: seconds to sleep before each batch
PARAM_DELAY = "standin_delay_s"

MODEL_FILE_NAME = "model.onnx"
VERSION_DIR = "1"  # Triton versions are integers; the model's own version is in parameters


@dataclass(frozen=True)
class RepoSettings:
    """What both configurations share, and the stand-in's own knobs."""

    max_batch_size: int = 8
    preferred_batch_sizes: tuple[int, ...] = (4, 8)
    max_queue_delay_us: int = 2000
    #: 0: unbounded. Above it Triton refuses requests at once (gRPC UNAVAILABLE, HTTP 503),
    #: which the dispatcher treats as "the server is full" and keeps those photos local.
    max_queue_size: int = 0
    instance_count: int = 1
    #: served name; default: the contract's model name
    model_name: str | None = None
    # CPU stand-in only
    intra_op_threads: int = 0
    delay_s: float = 0.0
    extra_parameters: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.max_batch_size < 1:
            raise ValueError("max_batch_size must be at least 1")
        bad = [b for b in self.preferred_batch_sizes if not 1 <= b <= self.max_batch_size]
        if bad:
            raise ValueError(f"preferred batch sizes {bad} are outside 1..{self.max_batch_size}")
        if self.max_queue_size < 0 or self.max_queue_delay_us < 0 or self.instance_count < 1:
            raise ValueError("queue size and delay must be >= 0, instance count >= 1")


def served_name(model: ModelFile, settings: RepoSettings) -> str:
    return settings.model_name or model.contract.model_name


def _quote(text: str) -> str:
    # protobuf text format takes JSON-style escapes for ASCII; json.dumps gives exactly that
    return json.dumps(text, ensure_ascii=True)


def _common(model: ModelFile, settings: RepoSettings, backend: str) -> list[str]:
    c = model.contract
    size = c.preprocess.working_size
    lines = [
        f"name: {_quote(served_name(model, settings))}",
        f"backend: {_quote(backend)}",
        f"max_batch_size: {settings.max_batch_size}",
        "input [",
        "  {",
        f"    name: {_quote(c.input_name)}",
        "    data_type: TYPE_UINT8",
        f"    dims: [ {size}, {size}, 3 ]",
        "  }",
        "]",
        "output [",
        "  {",
        f"    name: {_quote(c.output_name)}",
        "    data_type: TYPE_FP32",
        f"    dims: [ 1, {size}, {size} ]",
        "  }",
        "]",
        "dynamic_batching {",
        "  preferred_batch_size: [ "
        + ", ".join(str(b) for b in settings.preferred_batch_sizes)
        + " ]",
        f"  max_queue_delay_microseconds: {settings.max_queue_delay_us}",
    ]
    if settings.max_queue_size:
        lines += [
            "  default_queue_policy {",
            f"    max_queue_size: {settings.max_queue_size}",
            "  }",
        ]
    lines += ["}", "version_policy: { latest: { num_versions: 1 } }"]
    return lines


def _parameters(params: dict[str, str]) -> list[str]:
    lines = []
    for key, value in params.items():
        lines += [
            "parameters {",
            f"  key: {_quote(key)}",
            f"  value: {{ string_value: {_quote(value)} }}",
            "}",
        ]
    return lines


def _identity(model: ModelFile) -> dict[str, str]:
    c = model.contract
    return {
        PARAM_SHA256: c.sha256,
        PARAM_MODEL_VERSION: c.model_version,
        PARAM_CONTRACT_INPUT: c.input_format,
    }


def production_config(model: ModelFile, settings: RepoSettings | None = None) -> str:
    """config.pbtxt for NVIDIA's container: onnxruntime backend on the GPU."""
    settings = settings or RepoSettings()
    size = model.contract.preprocess.working_size
    lines = _common(model, settings, "onnxruntime")
    lines += [
        "instance_group [",
        f"  {{ kind: KIND_GPU count: {settings.instance_count} }}",
        "]",
        # The first request otherwise pays for CUDA and cuDNN start-up and can time out.
        "model_warmup [",
        "  {",
        '    name: "zeros"',
        "    batch_size: 1",
        "    inputs {",
        f"      key: {_quote(model.contract.input_name)}",
        "      value: {",
        "        data_type: TYPE_UINT8",
        f"        dims: [ {size}, {size}, 3 ]",
        "        zero_data: true",
        "      }",
        "    }",
        "  }",
        "]",
    ]
    lines += _parameters({**_identity(model), **settings.extra_parameters})
    return "\n".join(lines) + "\n"


def cpu_config(model: ModelFile, settings: RepoSettings | None = None) -> str:
    """config.pbtxt for the CPU stand-in: the Python backend running onnxruntime."""
    settings = settings or RepoSettings()
    lines = _common(model, settings, "python")
    lines += [
        "instance_group [",
        f"  {{ kind: KIND_CPU count: {settings.instance_count} }}",
        "]",
    ]
    params = {
        **_identity(model),
        PARAM_THREADS: str(int(settings.intra_op_threads)),
        PARAM_DELAY: repr(float(settings.delay_s)),
        **settings.extra_parameters,
    }
    lines += _parameters(params)
    return "\n".join(lines) + "\n"


#: The CPU stand-in's model.py: a real module, linted and type-checked with the rest, that
#: runs in Triton's Python backend stub and needs only numpy and onnxruntime there.
STANDIN_SOURCE = Path(__file__).with_name("triton_standin.py")


def standin_source() -> bytes:
    try:
        return STANDIN_SOURCE.read_bytes()
    except OSError as exc:
        raise FileNotFoundError(
            f"the CPU stand-in's source {STANDIN_SOURCE} is not in this installation ({exc})"
        ) from None


def write_repository(
    out_dir: str | os.PathLike[str],
    model: ModelFile,
    *,
    cpu: bool = False,
    settings: RepoSettings | None = None,
) -> Path:
    """Write (or refresh) the model's folder in the repository `out_dir`; return that folder.

    Layout: `<out_dir>/<name>/config.pbtxt` and `<out_dir>/<name>/1/model.onnx` (plus
    `model.py` for the CPU stand-in). Other models in `out_dir` are left alone.
    """
    settings = settings or RepoSettings()
    folder = Path(out_dir) / served_name(model, settings)
    version = folder / VERSION_DIR
    version.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(version / MODEL_FILE_NAME, model.data)
    stand_in = version / "model.py"
    if cpu:
        atomic_write_bytes(stand_in, standin_source())
        config = cpu_config(model, settings)
    else:
        # a stand-in left from an earlier --cpu run would not be used, but would mislead
        stand_in.unlink(missing_ok=True)
        config = production_config(model, settings)
    atomic_write_bytes(folder / "config.pbtxt", config.encode("utf-8"))
    return folder
