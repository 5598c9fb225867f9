"""The Qt runtime itself: a binding bug here takes the whole app down, so it is tested."""

from __future__ import annotations

import subprocess
import sys


def test_qt_calls_do_not_leak_references_to_none() -> None:
    # PySide6 6.12.0 drops a reference to None on every call that returns nothing; on
    # Python 3.11 the interpreter aborts after a few thousand calls ("deallocating None").
    code = (
        "import sys\n"
        "from PySide6.QtCore import QObject\n"
        "o = QObject()\n"
        "before = sys.getrefcount(None)\n"
        "for _ in range(20000):\n"
        "    o.setObjectName('x')\n"
        "print(sys.getrefcount(None) - before)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert abs(int(result.stdout.strip())) < 100
