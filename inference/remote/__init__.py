"""A remote Triton server: where it is (config), what can go wrong (errors), the clients that
talk to it (connection), whether it serves our model (served) and a status bar's health
check (health). The backend that runs photos on it is inference.backends.triton_remote."""

from inference.remote.config import RemoteConfig
from inference.remote.errors import RemoteError, RemoteErrorKind
from inference.remote.health import remote_health

__all__ = ["RemoteConfig", "RemoteError", "RemoteErrorKind", "remote_health"]
