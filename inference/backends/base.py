"""The backend protocols and the registry that names backends.

The registry is a table of "module:factory" strings, imported when a backend is first asked
for: this module imports no backend (so no backend's import of it is a cycle), and
tritonclient loads only when a remote backend is created.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import numpy as np

from inference.model_file import ModelFile


class Backend(Protocol):
    """Runs the model: (N, S, S, 3) uint8 RGB in, (N, S, S) float32 probability out."""

    #: where it runs, as provenance records it: "cuda", "cpu" or "triton"
    device: str
    #: one sentence for the user: why this device (and, if not the GPU, why not)
    reason: str
    #: a batch size this backend runs well at
    preferred_batch: int

    def run(self, batch: np.ndarray) -> np.ndarray: ...

    def close(self) -> None: ...


class PendingRun(Protocol):
    """One batch sent off: wait for its result, or cancel it from another thread."""

    def result(self) -> np.ndarray: ...

    def cancel(self) -> None: ...


@runtime_checkable
class RemoteBackend(Backend, Protocol):
    """A backend on another machine: checked before the first photo, asynchronous after.

    Its failures are inference.remote.RemoteError, whose kind says what the caller may do.
    """

    def connect(self) -> object: ...

    def submit(self, batch: np.ndarray) -> PendingRun: ...


BackendFactory = Callable[..., Backend]

#: backend name -> "module:factory"; factory(model, **options) builds the backend
BACKENDS: dict[str, str] = {
    "local": "inference.backends.onnx_local:local_backend",
    "cpu": "inference.backends.onnx_local:cpu_backend",
    "cuda": "inference.backends.onnx_local:cuda_backend",
    "triton": "inference.backends.triton_remote:triton_backend",
}


def register_backend(name: str, target: str) -> None:
    """Name a backend: `target` is "package.module:factory", imported when first used."""
    module, colon, attribute = target.partition(":")
    if not (module and colon and attribute):
        raise ValueError(f"a backend is named as 'module:factory', not {target!r}")
    BACKENDS[name] = target


def backend_factory(name: str) -> BackendFactory:
    try:
        target = BACKENDS[name]
    except KeyError:
        raise ValueError(
            f"unknown backend {name!r}; known: {', '.join(sorted(BACKENDS))}"
        ) from None
    module, _, attribute = target.partition(":")
    factory: BackendFactory = getattr(importlib.import_module(module), attribute)
    return factory


def create_backend(name: str, model: ModelFile, **options: Any) -> Backend:
    """Build the backend registered as `name` for `model`."""
    return backend_factory(name)(model, **options)
