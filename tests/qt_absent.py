"""A pytest plugin (`-p qt_absent`, with tests/ on PYTHONPATH) for the run that proves the
Qt-free layers are Qt-free: `inference` and `viewer.model` with PySide6 absent, as on a
batch-inference server. Uninstalling PySide6 would cost a second environment; refusing its
import is the same test for code, and cheaper. napari runs its layers' tests the same way.

Any attempt to import Qt raises ModuleNotFoundError, exactly as if it were not installed,
and the session fails if a Qt module got loaded anyway (before this plugin, say).
"""

from __future__ import annotations

import importlib.abc
import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType

import pytest

QT_PACKAGES = ("PySide6", "shiboken6", "qtawesome", "pytestqt")


class _QtAbsent(importlib.abc.MetaPathFinder):
    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> ModuleSpec | None:
        if fullname.split(".")[0] in QT_PACKAGES:
            raise ModuleNotFoundError(f"No module named {fullname!r}", name=fullname)
        return None


sys.meta_path.insert(0, _QtAbsent())


def loaded_qt() -> list[str]:
    return sorted(m for m in sys.modules if m.split(".")[0] in QT_PACKAGES)


def pytest_sessionstart(session: pytest.Session) -> None:
    if loaded_qt():
        raise pytest.UsageError(f"Qt was imported before the run began: {loaded_qt()[:5]}")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if loaded_qt():  # cannot happen through the finder; a C extension could bypass it
        print(f"\nqt_absent: Qt modules were loaded: {loaded_qt()[:5]}", file=sys.stderr)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
