"""The view state is one object: a change through any control shows in every other and in
the settings, with no control echoing back."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QStandardPaths

from viewer.model.view_state import ViewState
from viewer.qt.main_window import MainWindow
from viewer.qt.settings import Settings


def test_view_state_is_bounded_and_says_what_changed() -> None:
    state = ViewState()
    seen: list[tuple[str, object]] = []
    state.listen(lambda name, value: seen.append((name, value)))
    assert state.set("opacity", 1.7) and state.opacity == 1.0
    assert not state.set("opacity", 1.0)  # no change, no news
    with pytest.raises(ValueError, match="preset"):
        state.set("preset", "sepia")
    with pytest.raises(AttributeError):
        state.set("zoom", 2)
    assert seen == [("opacity", 1.0)]


def test_every_control_shows_the_one_state(qtbot, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    for name in ("HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME"):
        monkeypatch.setenv(name, str(tmp_path / name.lower()))
    QStandardPaths.setTestModeEnabled(True)
    window = MainWindow(Settings(overlay_opacity=0.3, display_preset="green"), load_model=False)
    qtbot.addWidget(window)
    # from the settings at start-up
    assert window.view.opacity == 0.3 and window.panel.opacity.value() == 30
    assert window.acts["preset_green"].isChecked() and window.canvas.preset == "green"
    # the action: panel and canvas follow
    window.acts["toggle_overlay"].trigger()
    assert not window.view.overlay_visible and not window.canvas.overlay_visible
    assert not window.panel.show_overlay.isChecked()
    # the panel's checkbox: action and canvas follow
    window.panel.show_overlay.setChecked(True)
    assert window.view.overlay_visible and window.acts["toggle_overlay"].isChecked()
    window.panel.outline.setChecked(True)
    assert window.acts["outline"].isChecked() and not window.canvas.overlay.filled
    assert window.settings.overlay_filled is False
    window.panel.opacity.setValue(80)
    assert window.view.opacity == 0.8 and window.settings.overlay_opacity == 0.8
    window.acts["preset_clahe"].trigger()
    assert (
        window.panel.preset.currentData() == "clahe" and window.settings.display_preset == "clahe"
    )
    window.close()
