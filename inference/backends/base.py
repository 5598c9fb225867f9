"""The backend protocol and the registry that names backends."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

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


BackendFactory = Callable[..., Backend]

BACKENDS: dict[str, BackendFactory] = {}


def register_backend(name: str) -> Callable[[BackendFactory], BackendFactory]:
    def decorate(factory: BackendFactory) -> BackendFactory:
        BACKENDS[name] = factory
        return factory

    return decorate


def create_backend(name: str, model: ModelFile, **options: Any) -> Backend:
    """Build the backend registered as `name` for `model`."""
    # Importing the modules registers their backends; done lazily so that tritonclient is
    # only imported when a remote backend is asked for.
    if name not in BACKENDS:
        import inference.backends.onnx_local
    if name not in BACKENDS and name.startswith("triton"):
        import inference.backends.triton_remote  # noqa: F401
    try:
        factory = BACKENDS[name]
    except KeyError:
        raise ValueError(
            f"unknown backend {name!r}; known: {', '.join(sorted(BACKENDS))}"
        ) from None
    return factory(model, **options)
