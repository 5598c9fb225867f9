"""`hemaview` on a machine with no screen says so and what to do, instead of Qt's abort
(exit 134) with advice to reinstall its xcb libraries."""

from __future__ import annotations

import os
import subprocess
import sys

from conftest import REPO

from viewer.display_check import display_problem


def test_the_viewer_with_no_display_says_what_to_do() -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")
    }
    done = subprocess.run(
        [sys.executable, "-m", "viewer"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert "no display was found" in done.stderr
    for advice in ("--screenshot", "QT_QPA_PLATFORM=offscreen", "xvfb-run"):
        assert advice in done.stderr
    assert "reinstalling" not in done.stderr


def test_only_a_missing_display_is_refused() -> None:
    assert display_problem({}, "linux") is not None
    assert display_problem({"QT_QPA_PLATFORM": "xcb"}, "linux") is not None
    assert display_problem({"DISPLAY": ":0"}, "linux") is None
    assert display_problem({"WAYLAND_DISPLAY": "wayland-0"}, "linux") is None
    assert display_problem({"QT_QPA_PLATFORM": "offscreen"}, "linux") is None
    assert display_problem({}, "win32") is None and display_problem({}, "darwin") is None
