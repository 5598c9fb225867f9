"""The one place where the view state meets the widgets: the canvas draws it, the review
panel's controls and the window's actions show it and change it, the settings keep it."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from PySide6.QtGui import QAction

from viewer.model.view_state import PRESETS, ViewState
from viewer.qt.canvas import ImageCanvas
from viewer.qt.review_panel import ReviewPanel
from viewer.qt.settings import Settings


class ViewBinding:
    def __init__(
        self,
        state: ViewState,
        canvas: ImageCanvas,
        panel: ReviewPanel,
        actions: Mapping[str, QAction],
        settings: Callable[[], Settings],
    ):
        self.state, self.canvas, self.panel, self.actions = state, canvas, panel, actions
        self.settings = settings
        state.listen(self._show)
        # widget to state: each control sets its one field
        panel.overlay_toggled.connect(lambda on: state.set("overlay_visible", on))
        panel.opacity_changed.connect(lambda value: state.set("opacity", value))
        panel.outline_toggled.connect(lambda on: state.set("outline", on))
        panel.preset_chosen.connect(lambda key: state.set("preset", key))
        actions["toggle_overlay"].toggled.connect(lambda on: state.set("overlay_visible", on))
        actions["outline"].toggled.connect(lambda on: state.set("outline", on))
        for key in PRESETS:
            actions[f"preset_{key}"].triggered.connect(
                lambda _checked=False, key=key: state.set("preset", key)
            )

    def load(self, settings: Settings) -> None:
        """The view as the settings have it (at start-up and after the Settings dialog)."""
        self.state.set("opacity", settings.overlay_opacity)
        self.state.set("outline", not settings.overlay_filled)
        self.state.set("preset", settings.display_preset)
        self.show_all()

    def show_all(self) -> None:
        for name in ("overlay_visible", "outline", "opacity", "preset"):
            self._show(name, getattr(self.state, name))

    def _show(self, name: str, value: Any) -> None:
        """State to widgets (signals blocked, so nothing echoes back) and to the settings."""
        settings = self.settings()
        if name == "overlay_visible":
            self.canvas.set_overlay_visible(value)
            self.panel.set_overlay_visible(value)
            _check_quietly(self.actions["toggle_overlay"], value)
        elif name == "outline":
            self.canvas.set_overlay_filled(not value)
            self.panel.set_outline(value)
            _check_quietly(self.actions["outline"], value)
            settings.overlay_filled = not value
        elif name == "opacity":
            self.canvas.set_overlay_opacity(value)
            self.panel.set_opacity(value)
            settings.overlay_opacity = value
        elif name == "preset":
            self.canvas.set_preset(value)
            self.panel.set_preset(value)
            _check_quietly(self.actions[f"preset_{value}"], True)
            settings.display_preset = value


def _check_quietly(action: QAction, checked: bool) -> None:
    action.blockSignals(True)
    action.setChecked(checked)
    action.blockSignals(False)
