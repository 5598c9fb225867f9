"""What can go wrong with a remote server, as a kind a caller acts on and a sentence a user reads.

Every failure of a remote call becomes one RemoteError; `classify` turns whatever
tritonclient (or the network below it) raised into one, by status code and message, without
importing tritonclient.
"""

from __future__ import annotations

import socket
from enum import StrEnum

from inference.errors import BackendError


class RemoteErrorKind(StrEnum):
    """Why a remote call failed. A StrEnum, so logs and old callers see the plain word."""

    #: nothing answers, the connection dropped, the server went away
    UNREACHABLE = "unreachable"
    #: no answer within the connect or request timeout
    TIMEOUT = "timeout"
    #: the server's queue is full (gRPC UNAVAILABLE with that message, HTTP 503)
    FULL = "full"
    #: the server refused us (authorisation) or has no such model
    REFUSED = "refused"
    #: the served model is not the local model
    MISMATCH = "mismatch"
    #: the server answered with an error (e.g. a dead model worker: Triton then keeps
    #: reporting the model as ready while every call fails)
    FAILED = "failed"
    #: we cancelled the call
    CANCELLED = "cancelled"

    @property
    def try_again_later(self) -> bool:
        """The server works but is busy: the same request may succeed after a pause."""
        return self is RemoteErrorKind.FULL


class RemoteError(BackendError):
    """The remote server could not (or must not) run the model; `kind` says which way."""

    def __init__(self, kind: RemoteErrorKind | str, message: str):
        super().__init__(message)
        self.kind = RemoteErrorKind(kind)


def classify(exc: BaseException, where: str, timeout_s: float | None = None) -> RemoteError:
    """One RemoteError, with a user's sentence, for whatever a remote call raised."""
    if isinstance(exc, RemoteError):
        return exc
    kind = RemoteErrorKind
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
        return RemoteError(kind.FULL, f"{where} is full (its queue is at its limit): {text}")
    if (
        status.endswith("DEADLINE_EXCEEDED")
        or isinstance(exc, TimeoutError | socket.timeout)
        or "connection attempt timed out" in lowered
    ):
        after = f" within {timeout_s:g} s" if timeout_s else ""
        return RemoteError(kind.TIMEOUT, f"{where} did not answer{after}")
    if status.endswith("CANCELLED"):
        return RemoteError(kind.CANCELLED, f"the request to {where} was cancelled")
    if status.endswith(("PERMISSION_DENIED", "UNAUTHENTICATED")) or status in ("401", "403"):
        return RemoteError(kind.REFUSED, f"{where} refused the request (authorisation?): {text}")
    if "this protocol is restricted" in lowered or "this api is restricted" in lowered:
        return RemoteError(
            kind.REFUSED, f"{where} refused the request: it needs an authorisation header ({text})"
        )
    if status.endswith("UNAVAILABLE") or isinstance(exc, ConnectionError | socket.gaierror):
        return RemoteError(kind.UNREACHABLE, f"{where} cannot be reached or went away: {text}")
    if type(exc).__name__ in ("HTTPConnectionClosed", "ConnectionResetError", "BrokenPipeError"):
        return RemoteError(kind.UNREACHABLE, f"{where} closed the connection: {text}")
    if isinstance(exc, OSError):
        return RemoteError(kind.UNREACHABLE, f"{where} cannot be reached: {text}")
    if status.endswith("NOT_FOUND") or "unknown model" in lowered:
        return RemoteError(kind.REFUSED, f"{where} does not serve the model: {text}")
    return RemoteError(kind.FAILED, f"{where} returned an error: {text or type(exc).__name__}")
