"""How the photo is shown, as one Qt-free object: the overlay on or off, filled or outlined,
its opacity, the display preset. Widgets, actions and settings bind to it in one place
(`viewer.qt.view_binding`); none of them keeps a copy of its own."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

PRESETS = ("original", "green", "clahe")


@dataclass
class ViewState:
    overlay_visible: bool = True
    outline: bool = False
    opacity: float = 0.55
    preset: str = "original"
    _listeners: list[Callable[[str, Any], None]] = field(
        default_factory=list, repr=False, compare=False
    )

    def listen(self, listener: Callable[[str, Any], None]) -> None:
        """`listener(name, value)` after each change (not for a value set again)."""
        self._listeners.append(listener)

    def set(self, name: str, value: Any) -> bool:
        """Change one field (bounded); returns whether it changed."""
        if name not in {f.name for f in fields(self) if not f.name.startswith("_")}:
            raise AttributeError(f"no view setting {name!r}")
        if name == "opacity":
            value = min(max(float(value), 0.0), 1.0)
        elif name == "preset" and value not in PRESETS:
            raise ValueError(f"unknown display preset {value!r}; expected one of {PRESETS}")
        elif name in ("overlay_visible", "outline"):
            value = bool(value)
        if getattr(self, name) == value:
            return False
        setattr(self, name, value)
        for listener in list(self._listeners):
            listener(name, value)
        return True
