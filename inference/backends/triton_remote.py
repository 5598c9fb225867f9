"""The remote backend: the same model on a Triton Inference Server, over gRPC (or HTTP).

The only module that imports tritonclient (import-linter holds it to that), and lazily, so
that the viewer and the CLI pay for grpc only when a server is configured.

Before the first photo is sent, the server must be live and ready, and the served model
must be the local model: same name, same SHA-256 and version (from the `parameters` that
inference.triton_repo writes), same input and output names, dtypes and shapes. Anything
else is refused with a message that says what differs. Every call has a deadline
(tritonclient's defaults are 60 s for HTTP and none at all for gRPC), and every failure is
turned into a RemoteError whose `kind` the dispatcher acts on:

    unreachable  nothing answers, the connection dropped, the server went away
    timeout      no answer within the connect or request timeout
    full         the server's queue is full (gRPC UNAVAILABLE, HTTP 503)
    refused      the server refused us (authorisation) or has no such model
    mismatch     the served model is not the local model
    failed       the server answered with an error (e.g. a dead model worker: Triton then
                 keeps reporting the model as ready while every call fails)
    cancelled    we cancelled the call

A request carries the preprocessed pixels (uint8, N x S x S x 3) and nothing else: no file
names, no request id, no metadata about the photo.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from inference.errors import BackendError
from inference.model_file import ModelFile
from inference.triton_repo import PARAM_MODEL_VERSION, PARAM_SHA256

DEFAULT_GRPC_PORT = 8001
DEFAULT_HTTP_PORT = 8000


@dataclass(frozen=True)
class RemoteConfig:
    """Where the Triton server is and how to talk to it (what the viewer's settings hold)."""

    #: "host:port"; a scheme picks the protocol: grpc:// (default), grpcs:// (gRPC over TLS),
    #: http://, https://
    address: str
    protocol: str = "grpc"  # "grpc" or "http"
    tls: bool = False
    #: PEM file of the certificate authorities to trust (default: the system's)
    ca_file: str | None = None
    #: client certificate and key (PEM) for servers that ask for mutual TLS
    client_cert: str | None = None
    client_key: str | None = None
    #: sent as the `authorization` header, e.g. "Bearer <token>", for a reverse proxy or a
    #: server started with --grpc-restricted-protocol / --http-restricted-api
    authorization: str | None = field(default=None, repr=False)
    #: served model name; default: the local model's name
    model_name: str | None = None
    #: Triton's version number of the model; "" asks for the server's latest
    model_version: str = ""
    connect_timeout_s: float = 3.0
    #: a whole request (one batch) must come back within this
    request_timeout_s: float = 30.0
    #: requests the dispatcher keeps in flight at once (the server batches them together)
    max_in_flight: int = 2
    #: photos per request; default: the server's largest preferred batch size
    batch_size: int | None = None

    def __post_init__(self) -> None:
        if self.protocol not in ("grpc", "http"):
            raise ValueError(f"protocol must be 'grpc' or 'http', not {self.protocol!r}")
        if self.connect_timeout_s <= 0 or self.request_timeout_s <= 0:
            raise ValueError("timeouts must be positive")
        if self.max_in_flight < 1 or (self.batch_size is not None and self.batch_size < 1):
            raise ValueError("max_in_flight and batch_size must be at least 1")

    @classmethod
    def parse(cls, text: str, **options: Any) -> RemoteConfig:
        """From "host:port" or "scheme://host[:port]"; `options` set the other fields."""
        address = text.strip()
        protocol, tls = options.pop("protocol", "grpc"), options.pop("tls", False)
        scheme, sep, rest = address.partition("://")
        if sep:
            schemes = {
                "grpc": ("grpc", False),
                "grpcs": ("grpc", True),
                "http": ("http", False),
                "https": ("http", True),
            }
            if scheme.lower() not in schemes:
                raise ValueError(
                    f"unknown scheme {scheme!r} in {text!r} (grpc, grpcs, http, https)"
                )
            protocol, tls = schemes[scheme.lower()]
            address = rest
        address = address.rstrip("/")
        if not address or "/" in address:
            raise ValueError(f"{text!r} is not a server address (expected HOST:PORT)")
        host, colon, port = address.rpartition(":")
        if not colon or "]" in port:  # no port given (an IPv6 literal ends with "]")
            host, port = address, ""
        if port and not (port.isdigit() and 0 < int(port) < 65536):
            raise ValueError(f"{text!r}: port {port!r} is not a port number")
        if not host:
            raise ValueError(f"{text!r} names no host")
        if not port:
            default = DEFAULT_GRPC_PORT if protocol == "grpc" else DEFAULT_HTTP_PORT
            if protocol == "http" and tls:
                default = 443
            address = f"{host}:{default}"
        return cls(address=address, protocol=protocol, tls=tls, **options)

    def describe(self) -> str:
        """The address as a user would write it, with no secrets."""
        scheme = {("grpc", False): "grpc", ("grpc", True): "grpcs"}.get(
            (self.protocol, self.tls), "https" if self.tls else "http"
        )
        return f"{scheme}://{self.address}"


class RemoteError(BackendError):
    """The remote server could not (or must not) run the model; `kind` says which way."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


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


def auth_headers(config: RemoteConfig) -> dict[str, str] | None:
    """The authorisation header, as a reverse proxy and as Triton itself look for it.

    A proxy reads `authorization`. Triton's own --grpc-restricted-protocol=...:KEY=VALUE
    reads gRPC metadata `triton-grpc-protocol-KEY`, so over gRPC the value goes under both
    names (to the one server that was configured); --http-restricted-api reads KEY itself.
    gRPC metadata keys must be lower case; HTTP headers do not care.
    """
    if not config.authorization:
        return None
    headers = {"authorization": config.authorization}
    if config.protocol == "grpc":
        headers["triton-grpc-protocol-authorization"] = config.authorization
    return headers


def _grpc() -> Any:
    import tritonclient.grpc as grpcclient

    return grpcclient


def _http() -> Any:
    import tritonclient.http as httpclient

    return httpclient


def classify(exc: BaseException, where: str, timeout_s: float | None = None) -> RemoteError:
    """One RemoteError, with a user's sentence, for whatever tritonclient raised."""
    if isinstance(exc, RemoteError):
        return exc
    status = ""
    text = str(exc)
    status_of = getattr(exc, "status", None)
    message_of = getattr(exc, "message", None)
    if callable(status_of) and callable(message_of):  # tritonclient's InferenceServerException
        status = str(status_of() or "")
        text = str(message_of() or "") or text
    text = " ".join(text.split())[:300]
    lowered = text.lower()
    if "exceeds maximum queue size" in lowered or status == "503":
        return RemoteError("full", f"{where} is full (its queue is at its limit): {text}")
    if (
        status.endswith("DEADLINE_EXCEEDED")
        or isinstance(exc, TimeoutError | socket.timeout)
        or "connection attempt timed out" in lowered
    ):
        after = f" within {timeout_s:g} s" if timeout_s else ""
        return RemoteError("timeout", f"{where} did not answer{after}")
    if status.endswith("CANCELLED"):
        return RemoteError("cancelled", f"the request to {where} was cancelled")
    if status.endswith(("PERMISSION_DENIED", "UNAUTHENTICATED")) or status in ("401", "403"):
        return RemoteError("refused", f"{where} refused the request (authorisation?): {text}")
    if "this protocol is restricted" in lowered or "this api is restricted" in lowered:
        return RemoteError(
            "refused", f"{where} refused the request: it needs an authorisation header ({text})"
        )
    if status.endswith("UNAVAILABLE") or isinstance(exc, ConnectionError | socket.gaierror):
        return RemoteError("unreachable", f"{where} cannot be reached or went away: {text}")
    if type(exc).__name__ in ("HTTPConnectionClosed", "ConnectionResetError", "BrokenPipeError"):
        return RemoteError("unreachable", f"{where} closed the connection: {text}")
    if isinstance(exc, OSError):
        return RemoteError("unreachable", f"{where} cannot be reached: {text}")
    if status.endswith("NOT_FOUND") or "unknown model" in lowered:
        return RemoteError("refused", f"{where} does not serve the model: {text}")
    return RemoteError("failed", f"{where} returned an error: {text or type(exc).__name__}")


class RemoteCall:
    """One request in flight: wait for it, or cancel it."""

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
        self._set(None, RemoteError("cancelled", "the request was cancelled"))

    def wait(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout)

    def result(self, cancel: threading.Event | None = None) -> np.ndarray:
        """The (N, S, S) float32 result; raises RemoteError. Cancels the call if `cancel` is set."""
        while not self._done.wait(0.05 if cancel is not None else None):
            if cancel is not None and cancel.is_set():
                self.cancel()
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
        self.where = f"the Triton server at {config.describe()}"
        self.name = config.model_name or self.contract.model_name
        self.reason = f"{self.where} (not checked yet)"
        self.preferred_batch = 1
        self.served: ServedModel | None = None
        self._size = self.contract.preprocess.working_size
        self._local = threading.local()  # HTTP clients, one per thread
        self._http_clients: list[Any] = []
        self._lock = threading.Lock()
        self._grpc_client: Any = None
        self._pool: ThreadPoolExecutor | None = None
        self._closed = False
        if connect:
            self.connect()

    # --- clients

    def _headers(self) -> dict[str, str] | None:
        return auth_headers(self.config)

    def _client(self) -> Any:
        if self._closed:
            raise RemoteError("cancelled", f"the connection to {self.where} was closed")
        cfg = self.config
        if cfg.protocol == "grpc":
            with self._lock:
                if self._grpc_client is None:
                    grpcclient = _grpc()
                    limit = 2**31 - 1
                    self._grpc_client = grpcclient.InferenceServerClient(
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
            # the HTTP client is not thread-safe: one per thread
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

    def _call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """A metadata or health call (`what`) with the connect timeout; errors: RemoteError."""
        if self.config.protocol == "grpc":
            kwargs["client_timeout"] = self.config.connect_timeout_s
        else:
            kwargs.pop("as_json", None)  # the HTTP client always answers with JSON
        try:
            return fn(*args, headers=self._headers(), **kwargs)
        except Exception as exc:
            raise classify(exc, self.where, self.config.connect_timeout_s) from None

    # --- the check before the first request

    def connect(self) -> ServedModel:
        """Check the server and the served model against the local contract; raise RemoteError."""
        client = self._client()
        if not self._call("live", client.is_server_live):
            raise RemoteError("unreachable", f"{self.where} is not live")
        if not self._call("ready", client.is_server_ready):
            raise RemoteError("unreachable", f"{self.where} is live but not ready")
        version = self.config.model_version
        label = f"model {self.name!r}" + (f" version {version}" if version else "")
        if not self._call("model ready", client.is_model_ready, self.name, version):
            raise RemoteError(
                "refused",
                f"{self.where} has no ready {label} (not in its repository, still loading, "
                "or it failed to load)",
            )
        meta = self._call("metadata", client.get_model_metadata, self.name, version, as_json=True)
        config = self._call("config", client.get_model_config, self.name, version, as_json=True)
        config = config.get("config", config)  # gRPC wraps it, HTTP does not
        served = self._check(meta, config)
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

    def _check(self, meta: dict[str, Any], config: dict[str, Any]) -> ServedModel:
        c = self.contract
        size = self._size
        problems: list[str] = []

        def shape_ok(shape: list[Any], expected: list[int]) -> bool:
            dims = [int(d) for d in shape]
            return len(dims) == len(expected) and all(
                d == e or d == -1 for d, e in zip(dims, expected)
            )

        def find(entries: list[dict[str, Any]], name: str) -> dict[str, Any] | None:
            return next((e for e in entries if e.get("name") == name), None)

        inputs = meta.get("inputs", [])
        outputs = meta.get("outputs", [])
        if [i.get("name") for i in inputs] != [c.input_name]:
            problems.append(
                f"its inputs are {[i.get('name') for i in inputs]}, this model has "
                f"[{c.input_name!r}]"
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
        out = find(outputs, c.output_name)
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
        max_batch = int(config.get("max_batch_size", 0) or 0)
        if max_batch < 1:
            problems.append("it does not batch (max_batch_size 0)")
        params = {
            k: (v.get("string_value", "") if isinstance(v, dict) else str(v))
            for k, v in (config.get("parameters") or {}).items()
        }
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
        if problems:
            raise RemoteError(
                "mismatch",
                f"{self.where} serves {self.name!r}, but not as this model: "
                + "; ".join(problems)
                + ". No photo was sent.",
            )
        dynamic = config.get("dynamic_batching") or {}
        preferred = tuple(int(b) for b in dynamic.get("preferred_batch_size", []) or [])
        versions = meta.get("versions") or [""]
        return ServedModel(
            name=str(meta.get("name", self.name)),
            version=str(self.config.model_version or versions[-1]),
            platform=str(meta.get("platform", "") or config.get("backend", "")),
            max_batch_size=max_batch,
            preferred_batch_sizes=preferred,
            sha256=sha,
            model_version=served_version,
        )

    # --- inference

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
        batch = np.ascontiguousarray(batch)
        call = RemoteCall()
        n = len(batch)
        timeout = self.config.request_timeout_s

        def finish(result: Any, error: BaseException | None) -> None:
            if error is not None:
                call._set(None, classify(error, self.where, timeout))
                return
            try:
                out = result.as_numpy(self.contract.output_name)
                if out is None or out.shape != (n, 1, size, size):
                    got = None if out is None else out.shape
                    raise RemoteError(
                        "failed", f"{self.where} returned {got}, expected ({n}, 1, {size}, {size})"
                    )
                call._set(np.asarray(out, dtype=np.float32).reshape(n, size, size), None)
            except Exception as exc:
                call._set(None, classify(exc, self.where, timeout))

        if self.config.protocol == "grpc":
            grpcclient = _grpc()
            pixels = grpcclient.InferInput(self.contract.input_name, list(batch.shape), "UINT8")
            pixels.set_data_from_numpy(batch)
            wanted = [grpcclient.InferRequestedOutput(self.contract.output_name)]
            try:
                context = self._client().async_infer(
                    self.name,
                    [pixels],
                    callback=lambda result, error: finish(result, error),
                    model_version=self.config.model_version,
                    outputs=wanted,
                    client_timeout=timeout,
                    headers=self._headers(),
                )
            except Exception as exc:
                call._set(None, classify(exc, self.where, timeout))
                return call
            call._cancel = context.cancel
            return call

        # HTTP: a blocking call on a worker thread, each with its own client; a cancelled
        # call is abandoned (its result ignored), bounded by the request timeout.
        def blocking() -> None:
            httpclient = _http()
            pixels = httpclient.InferInput(self.contract.input_name, list(batch.shape), "UINT8")
            pixels.set_data_from_numpy(batch, binary_data=True)
            wanted = [httpclient.InferRequestedOutput(self.contract.output_name, binary_data=True)]
            try:
                result = self._client().infer(
                    self.name,
                    [pixels],
                    model_version=self.config.model_version,
                    outputs=wanted,
                    headers=self._headers(),
                )
            except Exception as exc:
                finish(None, exc)
            else:
                finish(result, None)

        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(
                    max_workers=max(2, self.config.max_in_flight), thread_name_prefix="hv-http"
                )
            pool = self._pool
        future: Future[None] = pool.submit(blocking)
        call._cancel = future.cancel
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


def remote_health(
    config: RemoteConfig, model: ModelFile | None = None, *, probe: bool = True
) -> tuple[bool, str]:
    """For a status bar: can photos go to this server? (ok, one sentence for the user).

    With `model`, the served model must match it, and `probe` sends one blank image
    through it: a dead model worker leaves the model "ready" while every call fails.
    Without, only the server and (if the config names one) the model's readiness count.
    """
    t0 = time.perf_counter()
    where = f"the Triton server at {config.describe()}"
    if model is None:
        checker = _Checker(config)
        try:
            client = checker._client()
            if not checker._call("ready", client.is_server_ready):
                return False, f"{where} is live but not ready"
            if config.model_name and not checker._call(
                "model", client.is_model_ready, config.model_name, config.model_version
            ):
                return False, f"{where} has no ready model {config.model_name!r}"
            return True, f"{where} is ready"
        except Exception as exc:  # a status bar gets a sentence, never an exception
            return False, str(classify(exc, where, config.connect_timeout_s))
        finally:
            checker.close()
    backend = TritonBackend(model, config, connect=False)
    try:
        served = backend.connect()
        if probe:
            size = backend.contract.preprocess.working_size
            backend.submit(np.zeros((1, size, size, 3), np.uint8)).result()
    except Exception as exc:
        return False, str(classify(exc, where, config.request_timeout_s))
    finally:
        backend.close()
    answered = f", answered in {(time.perf_counter() - t0) * 1e3:.0f} ms" if probe else ""
    version = f" {served.model_version}" if served.model_version else ""
    return True, (
        f"{where} is ready: {served.name}{version} ({served.sha256[:12]}...) matches this "
        f"model{answered}"
    )


class _Checker(TritonBackend):
    """The backend's clients and deadlines without a model: health checks only."""

    def __init__(self, config: RemoteConfig):  # no super().__init__: there is no model
        self.config = config
        self.where = f"the Triton server at {config.describe()}"
        self._local = threading.local()
        self._http_clients = []
        self._lock = threading.Lock()
        self._grpc_client = None
        self._pool = None
        self._closed = False


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
