"""Reviewing lesion by lesion with the keyboard, as F1 and the README describe it, and a display
that always shows what the reviewer is working on. Real window, real model, real photo."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import REPO, idrid_photo
from PySide6.QtCore import QPoint, Qt
from PySide6.QtTest import QTest

from inference import Segmenter
from viewer.qt.actions import shortcut_sheet_html
from viewer.qt.main_window import MainWindow
from viewer.qt.settings import Settings

pytestmark = pytest.mark.usefixtures("private_user_folders", "discard_on_close")


@pytest.fixture()
def window(qtbot, segmenter: Segmenter, tmp_path: Path) -> MainWindow:  # type: ignore[no-untyped-def]
    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(idrid_photo(2), folder / "IDRiD_02.jpg")
    w = MainWindow(Settings(reviewer="dr.kim"), load_model=False)
    qtbot.addWidget(w)
    w.set_segmenter(segmenter)
    w.resize(1400, 900)
    w.show()
    with qtbot.waitSignal(w.loader.loaded, timeout=120_000):
        w.open_sources([str(folder)])
    w.cancel_preannotation()
    assert w.current is not None and len(w.current.document.lesions) >= 5
    return w


def key(window: MainWindow, name: str) -> None:
    window.acts[name].trigger()


def test_n_a_n_x_follows_the_documented_rule(window: MainWindow) -> None:
    doc = window.current.document  # type: ignore[union-attr]
    ids = [les.id for les in doc.lesions]
    key(window, "next_lesion")  # N: the first lesion
    assert window.panel.lesions.current_id() == ids[0]
    key(window, "accept_lesion")  # A: decides it, then the next undecided
    assert doc.decisions == {ids[0]: "accepted"}
    assert window.panel.lesions.current_id() == ids[1]
    assert f"Now lesion {ids[1]}" in window.statusBar().currentMessage()
    key(window, "next_lesion")  # N steps on: lesion 2 is passed over, still undecided
    key(window, "reject_lesion")  # X decides the lesion under review: the third
    assert doc.decisions == {ids[0]: "accepted", ids[2]: "rejected"}
    assert window.panel.lesions.current_id() == ids[3]
    message = window.statusBar().currentMessage()
    assert f"{len(ids) - 2} undecided" in message
    # the rule the reviewer can read, in F1 and in the README
    sheet = shortcut_sheet_html()
    assert "next undecided lesion" in sheet and "passed over" in sheet
    readme = " ".join((REPO / "README.md").read_text(encoding="utf-8").split())
    assert "next undecided lesion" in readme and "passed over" in readme


def test_outline_only_does_what_it_says_while_a_lesion_is_under_review(
    window: MainWindow,
) -> None:
    key(window, "next_lesion")
    assert window.panel.lesions.current_id() is not None
    key(window, "outline")  # Shift+O: outline only
    assert window.panel.outline.isChecked() and not window.canvas.overlay.filled
    key(window, "outline")  # and back to filled, with the lesion still under review
    assert not window.panel.outline.isChecked()
    assert window.canvas.overlay.filled, "the box says filled; the overlay must be filled"


def test_brushing_with_the_overlay_hidden_shows_it(window: MainWindow) -> None:
    key(window, "toggle_overlay")
    assert not window.canvas.overlay.visible
    window.canvas.set_tool("brush")
    centre = QPoint(window.canvas.width() // 2, window.canvas.height() // 2)
    QTest.mousePress(window.canvas, Qt.MouseButton.LeftButton, pos=centre)
    QTest.mouseRelease(window.canvas, Qt.MouseButton.LeftButton, pos=centre)
    doc = window.current.document  # type: ignore[union-attr]
    assert doc.history.can_undo, "the stroke was made"
    assert window.canvas.overlay.visible and window.panel.show_overlay.isChecked()
    assert window.acts["toggle_overlay"].isChecked()
    assert "Overlay shown" in window.statusBar().currentMessage()
    # undo with the overlay hidden shows it too: the reviewer sees what came back
    key(window, "toggle_overlay")
    key(window, "undo")
    assert window.canvas.overlay.visible


def test_going_to_a_lesion_with_the_overlay_hidden_shows_it(window: MainWindow) -> None:
    key(window, "toggle_overlay")
    key(window, "next_lesion")
    assert window.canvas.overlay.visible, "N framed a lesion nobody could see"
    key(window, "toggle_overlay")
    key(window, "reject_lesion")
    assert window.canvas.overlay.visible


def test_the_next_photo_starts_with_no_lesion_under_review(  # type: ignore[no-untyped-def]
    qtbot, window: MainWindow
) -> None:
    key(window, "next_lesion")
    key(window, "next_lesion")
    assert window.panel.lesions.current_id() is not None
    folder = window.current.document.path.parent  # type: ignore[union-attr]
    shutil.copy(idrid_photo(17), folder / "IDRiD_17.jpg")
    window.photos.add_photos([folder / "IDRiD_17.jpg"])
    with qtbot.waitSignal(window.loader.loaded, timeout=120_000):
        window.photos.set_current(folder / "IDRiD_17.jpg")
    assert window.current is not None and window.current.document.path.name == "IDRiD_17.jpg"
    assert window.panel.lesions.current_id() is None, "another photo's lesion number carried over"
    assert window.canvas._focus is None
