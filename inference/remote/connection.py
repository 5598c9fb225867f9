"""The clients to one Triton server, over gRPC (or HTTP), with a deadline on every call.

The only module that imports tritonclient (import-linter holds it to that), and lazily, so
that the viewer and the CLI pay for grpc only when a server is configured. tritonclient's
defaults are 60 s for HTTP and no deadline at all for gRPC, so every call here sets one,
and every failure comes out as a RemoteError.

A request carries the preprocessed pixels (uint8, N x S x S x 3) and nothing else: no file
names, no request id, no metadata about the photo.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from inference.remote.config import RemoteConfig, auth_headers
from inference.remote.errors import RemoteError, RemoteErrorKind, classify

#: called once per request, from a tritonclient or worker thread: (output, None) or
#: (None, error)
Done = Callable[[np.ndarray | None, RemoteError | None], None]


def _grpc() -> Any:
    import tritonclient.grpc as grpcclient

    return grpcclient


def _http() -> Any:
    import tritonclient.http as httpclient

    return httpclient


class Connection:
    """gRPC: one client shared by all threads (it is thread-safe). HTTP: one client per
    thread (it is not), and requests run on a small worker pool of our own."""

    def __init__(self, config: RemoteConfig):
        self.config = config
        self.where = f"the Triton server at {config.describe()}"
        self._lock = threading.Lock()
        self._grpc_client: Any = None
        self._local = threading.local()  # HTTP clients, one per thread
        self._http_clients: list[Any] = []
        self._pool: ThreadPoolExecutor | None = None
        self._closed = False

    # --- asking about the server and its models (the connect timeout applies)

    def server_live(self) -> bool:
        return bool(self._ask("is_server_live"))

    def server_ready(self) -> bool:
        return bool(self._ask("is_server_ready"))

    def model_ready(self, name: str, version: str = "") -> bool:
        return bool(self._ask("is_model_ready", name, version))

    def model_metadata(self, name: str, version: str = "") -> dict[str, Any]:
        meta: dict[str, Any] = self._ask("get_model_metadata", name, version, as_json=True)
        return meta

    def model_config(self, name: str, version: str = "") -> dict[str, Any]:
        config: dict[str, Any] = self._ask("get_model_config", name, version, as_json=True)
        return dict(config.get("config", config))  # gRPC wraps it, HTTP does not

    def _ask(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """One of the client's health or metadata calls, by name (both clients name them
        alike); errors come out as RemoteError."""
        if self.config.protocol == "grpc":
            kwargs["client_timeout"] = self.config.connect_timeout_s
        else:
            kwargs.pop("as_json", None)  # the HTTP client always answers with JSON
        try:
            call = getattr(self._client(), method)
            return call(*args, headers=auth_headers(self.config), **kwargs)
        except Exception as exc:
            raise classify(exc, self.where, self.config.connect_timeout_s) from None

    # --- inference (the request timeout applies)

    def infer(
        self,
        model: tuple[str, str],
        input_name: str,
        output_name: str,
        batch: np.ndarray,
        done: Done,
    ) -> Callable[[], object]:
        """Send one request for `model` (name, version); returns at once with a function
        that cancels it. `done` hears the outcome, once."""
        name, version = model
        timeout = self.config.request_timeout_s
        finished = threading.Event()

        def report(result: Any, error: BaseException | None) -> None:
            if finished.is_set():
                return
            finished.set()
            if error is not None:
                done(None, classify(error, self.where, timeout))
                return
            try:
                out = result.as_numpy(output_name)
            except Exception as exc:
                done(None, classify(exc, self.where, timeout))
                return
            done(out, None)

        if self.config.protocol == "grpc":
            grpcclient = _grpc()
            pixels = grpcclient.InferInput(input_name, list(batch.shape), "UINT8")
            pixels.set_data_from_numpy(batch)
            try:
                context = self._client().async_infer(
                    name,
                    [pixels],
                    callback=report,
                    model_version=version,
                    outputs=[grpcclient.InferRequestedOutput(output_name)],
                    client_timeout=timeout,
                    headers=auth_headers(self.config),
                )
            except Exception as exc:
                report(None, exc)
                return lambda: None
            return context.cancel  # type: ignore[no-any-return]

        # HTTP: a blocking call on a worker thread, each with its own client; a cancelled
        # call is abandoned (its result ignored), bounded by the request timeout.
        def blocking() -> None:
            httpclient = _http()
            pixels = httpclient.InferInput(input_name, list(batch.shape), "UINT8")
            pixels.set_data_from_numpy(batch, binary_data=True)
            try:
                result = self._client().infer(
                    name,
                    [pixels],
                    model_version=version,
                    outputs=[httpclient.InferRequestedOutput(output_name, binary_data=True)],
                    headers=auth_headers(self.config),
                )
            except Exception as exc:
                report(None, exc)
            else:
                report(result, None)

        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(
                    max_workers=max(2, self.config.max_in_flight), thread_name_prefix="hv-http"
                )
            pool = self._pool
        return pool.submit(blocking).cancel

    # --- clients

    def _client(self) -> Any:
        if self._closed:
            raise RemoteError(
                RemoteErrorKind.CANCELLED, f"the connection to {self.where} was closed"
            )
        cfg = self.config
        if cfg.protocol == "grpc":
            with self._lock:
                if self._grpc_client is None:
                    limit = 2**31 - 1
                    self._grpc_client = _grpc().InferenceServerClient(
                        cfg.address,
                        ssl=cfg.tls,
                        root_certificates=cfg.ca_file,
                        private_key=cfg.client_key,
                        certificate_chain=cfg.client_cert,
                        channel_args=[
                            ("grpc.max_send_message_length", limit),
                            ("grpc.max_receive_message_length", limit),
                            # after a server restart, reconnect within a second, not gRPC's
                            # default back-off of up to two minutes. (Not the minimum: gRPC
                            # takes it as the time a connection attempt may take, and a
                            # short one fails TLS over a slow link; our deadlines bound it.)
                            ("grpc.initial_reconnect_backoff_ms", 200),
                            ("grpc.max_reconnect_backoff_ms", 1000),
                            # no keepalive pings: Triton answers pings more often than every
                            # 5 minutes with GOAWAY, and the deadlines catch a dead link
                        ],
                    )
                return self._grpc_client
        client = getattr(self._local, "client", None)
        if client is None:
            ssl_options: dict[str, Any] = {}
            if cfg.ca_file:
                ssl_options["ca_certs"] = cfg.ca_file
            if cfg.client_cert and cfg.client_key:
                ssl_options["certfile"], ssl_options["keyfile"] = cfg.client_cert, cfg.client_key
            client = _http().InferenceServerClient(
                cfg.address,
                connection_timeout=cfg.connect_timeout_s,
                network_timeout=cfg.request_timeout_s,
                ssl=cfg.tls,
                ssl_options=ssl_options or None,
            )
            self._local.client = client
            with self._lock:
                self._http_clients.append(client)
        return client

    def close(self) -> None:
        self._closed = True
        with self._lock:
            clients = list(self._http_clients)
            self._http_clients.clear()
            grpc_client, self._grpc_client = self._grpc_client, None
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
        # an open HTTP connection makes the server's shutdown wait for its exit timeout
        for client in clients:
            with contextlib.suppress(Exception):
                client.close()
        if grpc_client is not None:
            with contextlib.suppress(Exception):
                grpc_client.close()
