"""Where a Triton server is and how to talk to it: address, protocol, TLS, authorisation,
deadlines (what the viewer's settings and hemaview-infer's --remote options hold)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

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
