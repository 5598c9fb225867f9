"""The app's version, from the installed distribution's metadata (pyproject.toml)."""

from __future__ import annotations

from importlib import metadata

try:
    __version__ = metadata.version("hemaview")
except metadata.PackageNotFoundError:  # a frozen build or a bare checkout
    __version__ = "0.0.0+unknown"
