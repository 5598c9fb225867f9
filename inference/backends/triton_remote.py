"""The remote backend: the same model on a Triton Inference Server.

Before the first photo is sent, the server must serve this very model
(inference.remote.served checks it); after that, batches go out asynchronously in requests
of at most the server's max_batch_size, and each can be cancelled. The clients, deadlines
and the wire are inference.remote.connection's; failures are inference.remote.RemoteError,
whose kind says what the caller may do about them.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np

from inference.cancel import wait_until
from inference.model_file import ModelFile
from inference.remote.config import RemoteConfig
from inference.remote.connection import Connection
from inference.remote.errors import RemoteError, RemoteErrorKind
from inference.remote.served import ServedModel, check_served_model, served_name


class RemoteCall:
    """One request in flight: wait for its result, or cancel it from any thread."""

    def __init__(self) -> None:
        self._done = threading.Event()
        self._result: np.ndarray | None = None
        self._error: RemoteError | None = None
        self._cancel: Callable[[], object] | None = None

    def _set(self, result: np.ndarray | None, error: RemoteError | None) -> None:
        if self._done.is_set():
            return
        self._result, self._error = result, error
        self._done.set()

    def done(self) -> bool:
        return self._done.is_set()

    def cancel(self) -> None:
        if self._cancel is not None:
            with contextlib.suppress(Exception):
                self._cancel()
        self._set(None, RemoteError(RemoteErrorKind.CANCELLED, "the request was cancelled"))

    def wait(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout)

    def result(self, cancel: threading.Event | None = None) -> np.ndarray:
        """The (N, S, S) float32 result; raises RemoteError. Cancels the call if `cancel` is
        set first."""
        wait_until(self._done, cancel, self.cancel)
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result


class TritonBackend:
    """A Triton server running the local model's twin; `run` and `submit` are thread-safe."""

    device = "triton"

    def __init__(self, model: ModelFile, config: RemoteConfig, *, connect: bool = True):
        self.model = model
        self.contract = model.contract
        self.config = config
        self.connection = Connection(config)
        self.where = self.connection.where
        self.name = served_name(config, model)
        self.reason = f"{self.where} (not checked yet)"
        self.preferred_batch = 1
        self.served: ServedModel | None = None
        self._size = self.contract.preprocess.working_size
        if connect:
            try:
                self.connect()
            except BaseException:
                self.close()
                raise

    def connect(self) -> ServedModel:
        """Check the server and the served model against the local contract (again, if it
        was checked before: the server may serve another model by now); raise RemoteError."""
        served = check_served_model(self.connection, self.model)
        self.served = served
        self.preferred_batch = max(
            1,
            min(
                served.max_batch_size,
                self.config.batch_size
                or (max(served.preferred_batch_sizes) if served.preferred_batch_sizes else 0)
                or served.max_batch_size,
            ),
        )
        self.reason = (
            f"running on {self.where} (model {served.name} version {served.version}, "
            f"{served.platform}, batches up to {served.max_batch_size})"
        )
        return served

    def submit(self, batch: np.ndarray) -> RemoteCall:
        """Send one request (at most max_batch_size photos); returns at once."""
        if self.served is None:
            self.connect()
        assert self.served is not None
        size = self._size
        if batch.dtype != np.uint8 or batch.shape[1:] != (size, size, 3):
            raise ValueError(
                f"expected (N, {size}, {size}, 3) uint8, got {batch.shape} {batch.dtype}"
            )
        if not 1 <= len(batch) <= self.served.max_batch_size:
            raise ValueError(
                f"a request holds 1 to {self.served.max_batch_size} photos, not {len(batch)}"
            )
        call = RemoteCall()
        n = len(batch)

        def done(out: np.ndarray | None, error: RemoteError | None) -> None:
            if error is None and (out is None or out.shape != (n, 1, size, size)):
                got = None if out is None else out.shape
                error = RemoteError(
                    RemoteErrorKind.FAILED,
                    f"{self.where} returned {got}, expected ({n}, 1, {size}, {size})",
                )
            if error is not None:
                call._set(None, error)
            else:
                assert out is not None
                call._set(np.asarray(out, dtype=np.float32).reshape(n, size, size), None)

        call._cancel = self.connection.infer(
            (self.name, self.config.model_version),
            self.contract.input_name,
            self.contract.output_name,
            np.ascontiguousarray(batch),
            done,
        )
        return call

    def run(self, batch: np.ndarray) -> np.ndarray:
        """(N, S, S, 3) uint8 -> (N, S, S) float32, in requests of the server's batch size."""
        if self.served is None:
            self.connect()
        assert self.served is not None
        step = self.served.max_batch_size
        calls = [self.submit(batch[i : i + step]) for i in range(0, len(batch), step)]
        return np.concatenate([c.result() for c in calls], axis=0)

    def close(self) -> None:
        self.connection.close()


def triton_backend(
    model: ModelFile, config: RemoteConfig | str | None = None, **options: Any
) -> TritonBackend:
    """`Segmenter.open(path, backend="triton", config=RemoteConfig(...) or "host:port")`."""
    if config is None:
        raise ValueError("the triton backend needs config=RemoteConfig(...) or an address")
    if isinstance(config, str):
        config = RemoteConfig.parse(config)
    connect = bool(options.pop("connect", True))
    if options:
        config = replace(config, **options)
    return TritonBackend(model, config, connect=connect)
