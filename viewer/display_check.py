"""Is there a screen to open a window on? Asked before Qt is started, because Qt's own answer
on Linux is to abort (exit 134) with advice about reinstalling its xcb libraries, which sends
the user the wrong way when the real cause is that no display is there at all."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

HELP = (
    "To see the window, run it on a desktop session (or under a virtual screen: "
    "xvfb-run .venv/bin/hemaview ...). Without a screen, `hemaview --screenshot OUT.png "
    "[PHOTO]` renders the window to a picture, `hemaview-infer` annotates photos in a "
    "batch, and QT_QPA_PLATFORM=offscreen runs the app with no window at all."
)


def display_problem(
    env: Mapping[str, str] | None = None, platform: str | None = None
) -> str | None:
    """Why no window can be shown here, or None when one can (as far as can be told
    without starting Qt). Only Linux and the BSDs need a display server; an explicit
    QT_QPA_PLATFORM other than xcb (offscreen, wayland, vnc...) is the user's choice."""
    env = os.environ if env is None else env
    platform = sys.platform if platform is None else platform
    if platform.startswith(("win", "darwin", "cygwin")):
        return None
    chosen = env.get("QT_QPA_PLATFORM", "")
    if chosen and not chosen.startswith("xcb"):
        return None
    if env.get("WAYLAND_DISPLAY") and not chosen:
        return None
    if not env.get("DISPLAY"):
        return f"no display was found (neither DISPLAY nor WAYLAND_DISPLAY is set). {HELP}"
    # A DISPLAY that is set is left to Qt: X servers listen in more ways than one socket
    # file shows (abstract sockets, TCP), and refusing a working screen is worse than
    # Qt's message on a stale one.
    return None
