"""Edits a crash left unsaved, offered back at start-up, as the reviewer meets them: real
windows on the offscreen platform, the real model, real photos, a real crashed process."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import CRASHING_SESSION, idrid_photo

from inference import Segmenter
from viewer.model.autosave import AutosaveState
from viewer.qt import dialogs
from viewer.qt.main_window import MainWindow
from viewer.qt.settings import Settings

TIMEOUT_MS = 120_000

pytestmark = pytest.mark.usefixtures("private_user_folders", "discard_on_close")


def copy_photos(folder: Path, numbers: tuple[int, ...]) -> Path:
    folder.mkdir()
    for n in numbers:
        shutil.copy(idrid_photo(n), folder / f"IDRiD_{n:02d}.jpg")
    return folder


def crash_with_edits_to(window: MainWindow, photo: Path) -> None:
    """Another Hemaview session paints on `photo`, is autosaved, and dies."""
    crash = subprocess.run(
        [sys.executable, "-c", CRASHING_SESSION, str(window.autosaver.folder), str(photo)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert crash.returncode == 1, crash.stderr


def new_window(qtbot, segmenter: Segmenter) -> MainWindow:  # type: ignore[no-untyped-def]
    window = MainWindow(Settings(reviewer="dr.kim"), load_model=False)
    qtbot.addWidget(window)
    window.set_segmenter(segmenter)
    window.show()
    return window


def panel_rows(window: MainWindow) -> list[tuple[str, str]]:
    """The lesion list as the review panel shows it: id and area of each row."""
    table = window.panel.lesions

    def cell(row: int, column: int) -> str:
        item = table.item(row, column)
        return item.text() if item is not None else ""

    return [(cell(r, 0), cell(r, 1)) for r in range(table.rowCount())]


def rows_of(window: MainWindow) -> list[tuple[str, str]]:
    doc = window.current.document  # type: ignore[union-attr]
    return [(str(les.id), f"{les.area_px:,}") for les in doc.lesions]


def loaded(name: str):  # type: ignore[no-untyped-def]
    return lambda path, _opened: Path(path).name == name


def test_opening_the_recovered_photo_keeps_the_folder_and_shows_that_photo_under_the_question(  # type: ignore[no-untyped-def]
    qtbot, segmenter: Segmenter, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = copy_photos(tmp_path / "photos", (2, 5))
    window = new_window(qtbot, segmenter)
    with qtbot.waitSignal(window.loader.loaded, timeout=TIMEOUT_MS):
        window.open_sources([str(folder)])
    window.cancel_preannotation()
    assert window.current is not None and window.current.document.path.name == "IDRiD_02.jpg"
    first_rows = panel_rows(window)
    assert first_rows  # IDRiD_02 has haemorrhages: the panel lists them

    crash_with_edits_to(window, folder / "IDRiD_05.jpg")
    monkeypatch.setattr(dialogs, "ask_about_unsaved_edits", lambda *_args: "open")
    under_question: dict[str, object] = {}

    def restore(_parent: object, name: str, _state: AutosaveState) -> bool:
        # what the reviewer sees behind the restore question
        under_question.update(
            name=name,
            canvas=window.canvas.document.path.name if window.canvas.document else None,
            panel=panel_rows(window),
            expected=rows_of(window),
            title=window.windowTitle(),
        )
        return True

    monkeypatch.setattr(dialogs, "ask_restore_autosave", restore)
    with qtbot.waitSignal(
        window.loader.loaded, timeout=TIMEOUT_MS, check_params_cb=loaded("IDRiD_05.jpg")
    ):
        window.offer_unsaved_edits()
    window.cancel_preannotation()

    # the folder stays as it was, the recovered photo selected in it, its edits restored
    assert [p.name for p in window.photos.library.paths] == ["IDRiD_02.jpg", "IDRiD_05.jpg"]
    assert window.photos.current_path() == str(folder / "IDRiD_05.jpg")
    doc = window.current.document  # type: ignore[union-attr]
    assert doc.path.name == "IDRiD_05.jpg" and doc.dirty and doc.mask[1400, 2000]

    # under the question: IDRiD_05 and its own lesions, never IDRiD_02's
    assert under_question["name"] == "IDRiD_05.jpg"
    assert under_question["canvas"] == "IDRiD_05.jpg"
    assert "IDRiD_05.jpg" in str(under_question["title"])
    assert under_question["panel"] == under_question["expected"]
    assert under_question["panel"] != first_rows
    window.close()


def test_a_recovered_photo_from_another_folder_joins_the_folder_opened_at_start_up(  # type: ignore[no-untyped-def]
    qtbot, segmenter: Segmenter, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = copy_photos(tmp_path / "photos", (2, 5))
    elsewhere = copy_photos(tmp_path / "yesterday", (17, 29))
    window = new_window(qtbot, segmenter)
    crash_with_edits_to(window, elsewhere / "IDRiD_29.jpg")
    asked: list[list[str]] = []

    def open_them(_parent: object, states: list[AutosaveState]) -> str:
        asked.append([Path(s.photo_path).name for s in states])
        return "open"

    monkeypatch.setattr(dialogs, "ask_about_unsaved_edits", open_them)
    monkeypatch.setattr(dialogs, "ask_restore_autosave", lambda *_args: True)
    with qtbot.waitSignal(
        window.loader.loaded, timeout=TIMEOUT_MS, check_params_cb=loaded("IDRiD_29.jpg")
    ):
        window.offer_unsaved_edits([str(folder)])  # as `hemaview photos/` starts
    window.cancel_preannotation()
    assert asked == [["IDRiD_29.jpg"]]
    # the folder named at start-up, and the recovered photo with its neighbour
    assert sorted(str(p) for p in window.photos.library.paths) == sorted(
        str(p)
        for p in (
            folder / "IDRiD_02.jpg",
            folder / "IDRiD_05.jpg",
            elsewhere / "IDRiD_17.jpg",
            elsewhere / "IDRiD_29.jpg",
        )
    )
    assert window.photos.current_path() == str(elsewhere / "IDRiD_29.jpg")
    doc = window.current.document  # type: ignore[union-attr]
    assert doc.path == elsewhere / "IDRiD_29.jpg" and doc.dirty and doc.mask[1400, 2000]
    window.close()


def test_with_nothing_open_the_recovered_photo_opens_with_its_neighbours(  # type: ignore[no-untyped-def]
    qtbot, segmenter: Segmenter, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = copy_photos(tmp_path / "photos", (2, 5))
    window = new_window(qtbot, segmenter)
    crash_with_edits_to(window, folder / "IDRiD_05.jpg")
    monkeypatch.setattr(dialogs, "ask_about_unsaved_edits", lambda *_args: "open")
    monkeypatch.setattr(dialogs, "ask_restore_autosave", lambda *_args: True)
    with qtbot.waitSignal(
        window.loader.loaded, timeout=TIMEOUT_MS, check_params_cb=loaded("IDRiD_05.jpg")
    ):
        window.offer_unsaved_edits([])  # `hemaview` with no photos named
    window.cancel_preannotation()
    assert [p.name for p in window.photos.library.paths] == ["IDRiD_02.jpg", "IDRiD_05.jpg"]
    assert window.photos.current_path() == str(folder / "IDRiD_05.jpg")
    doc = window.current.document  # type: ignore[union-attr]
    assert doc.path.name == "IDRiD_05.jpg" and doc.dirty and doc.mask[1400, 2000]
    window.close()
