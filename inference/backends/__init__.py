"""Backends run the model on preprocessed uint8 batches; they move tensors and nothing else."""

from inference.backends.base import (
    BACKENDS,
    Backend,
    PendingRun,
    RemoteBackend,
    backend_factory,
    create_backend,
    register_backend,
)

__all__ = [
    "BACKENDS",
    "Backend",
    "PendingRun",
    "RemoteBackend",
    "backend_factory",
    "create_backend",
    "register_backend",
]
