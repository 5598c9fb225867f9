"""What broke a reviewer's day, each as the reviewer met it: real windows on the offscreen
platform, the real model, real photos and label files on disk."""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from conftest import CRASHING_SESSION, idrid_photo

from inference import Segmenter
from inference.labels import LabelFormatError, load_label, save_label
from viewer.model.tools import MAX_BRUSH_RADIUS, MIN_BRUSH_RADIUS
from viewer.qt import dialogs
from viewer.qt.canvas import ImageCanvas
from viewer.qt.main_window import MainWindow
from viewer.qt.settings import Settings, load_settings

TIMEOUT_MS = 120_000


pytestmark = pytest.mark.usefixtures("private_user_folders", "discard_on_close")


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    photos = tmp_path / "photos"
    photos.mkdir()
    for n in (2, 5):
        shutil.copy(idrid_photo(n), photos / f"IDRiD_{n:02d}.jpg")
    return photos


def open_window(qtbot, segmenter: Segmenter | None, folder: Path, **settings) -> MainWindow:  # type: ignore[no-untyped-def]
    window = MainWindow(Settings(**settings), load_model=False)
    qtbot.addWidget(window)
    if segmenter is not None:
        window.set_segmenter(segmenter)
    window.show()
    with qtbot.waitSignal(window.loader.loaded, timeout=TIMEOUT_MS):
        window.open_sources([str(folder)])
    window.cancel_preannotation()
    return window


def paint(window: MainWindow, x: int, y: int) -> None:
    doc = window.current.document  # type: ignore[union-attr]
    doc.begin_stroke()
    doc.stroke_to(x, y, 15, True)
    window._edited(doc.end_stroke())


# ----------------------------------------------------------------------------------------------
# Provenance


def test_changing_name_and_language_together_keeps_the_name(qtbot, folder: Path) -> None:  # type: ignore[no-untyped-def]
    from viewer.qt.app import HemaviewApp
    from viewer.qt.settings_dialog import SettingsDialog

    loaded_at_start = Settings()  # what the app read before anyone was named
    window = MainWindow(loaded_at_start, load_model=False)
    qtbot.addWidget(window)
    dialog = SettingsDialog(window.settings, window)
    dialog.reviewer.setText("dr.kim")
    dialog.language.setCurrentIndex(dialog.language.findData("ko"))
    window.settings = dialog.result_settings()  # what edit_settings does on OK
    # The app object holds its own copy from start-up; switch_language is the real method.
    app = SimpleNamespace(
        settings=loaded_at_start, window=window, _model_path=None, install_language=str
    )
    rebuilt = HemaviewApp.switch_language(app, "ko")  # type: ignore[arg-type]
    qtbot.addWidget(rebuilt)
    assert rebuilt is not None and rebuilt.settings.reviewer == "dr.kim"
    stored = load_settings()
    assert stored.reviewer == "dr.kim" and stored.language == "ko"
    assert rebuilt.autosaver is window.autosaver  # one session, one lock file
    rebuilt.close()


def test_changing_the_language_keeps_undo_zoom_tool_and_the_lesion_under_review(  # type: ignore[no-untyped-def]
    qtbot, segmenter: Segmenter, folder: Path
) -> None:
    from viewer.qt.app import HemaviewApp

    window = open_window(qtbot, segmenter, folder, reviewer="dr.kim")
    window.resize(1400, 900)
    doc = window.current.document  # type: ignore[union-attr]
    assert doc.lesions, "IDRiD_02 has suggested lesions"
    paint(window, 2000, 1400)
    window.canvas.set_zoom(2.5)
    window.canvas.pan_by(-300, -120)
    window.canvas.set_tool("eraser")
    window.canvas.set_brush_radius(22)
    window.acts["outline"].trigger()
    second = doc.lesions[1].id
    window.panel.lesions.select_id(second)
    view = window.canvas.view
    drawn = doc.mask.copy()

    app = SimpleNamespace(
        settings=window.settings, window=window, _model_path=None, install_language=str
    )
    rebuilt = HemaviewApp.switch_language(app, "ko")  # type: ignore[arg-type]
    assert rebuilt is not None and rebuilt is not window
    qtbot.addWidget(rebuilt)
    assert rebuilt.current is not None and rebuilt.current.document is doc  # not reopened
    assert doc.dirty and np.array_equal(doc.mask, drawn)
    assert rebuilt.canvas.zoom == pytest.approx(view.zoom)
    assert (rebuilt.canvas.view.ox, rebuilt.canvas.view.oy) == pytest.approx((view.ox, view.oy))
    assert rebuilt.canvas.tool == "eraser" and rebuilt.canvas.brush_radius == 22
    assert rebuilt.view.outline
    assert rebuilt.panel.lesions.current_id() == second
    assert [e.name for e in rebuilt.photos.library.entries] == ["IDRiD_02.jpg", "IDRiD_05.jpg"]
    # the undo history came along: the stroke made before the switch is undone in the new one
    rebuilt.acts["undo"].trigger()
    assert not doc.mask[1400, 2000] and not doc.history.can_undo
    rebuilt.close()


def test_reopening_a_folder_goes_on_where_the_reviewer_left_off(  # type: ignore[no-untyped-def]
    qtbot, folder: Path
) -> None:
    window = open_window(qtbot, None, folder)
    assert window.current is not None and window.current.document.path.name == "IDRiD_02.jpg"
    with qtbot.waitSignal(window.loader.loaded, timeout=TIMEOUT_MS):
        window.photos.set_current(folder / "IDRiD_05.jpg")
    window.close()

    def restart() -> MainWindow:  # a new app: settings read back from disk
        again = MainWindow(load_settings(), load_model=False)
        qtbot.addWidget(again)
        with qtbot.waitSignal(again.loader.loaded, timeout=TIMEOUT_MS):
            again.open_sources([str(folder)])
        return again

    again = restart()
    assert again.current is not None and again.current.document.path.name == "IDRiD_05.jpg"
    again.close()

    (folder / "IDRiD_05.jpg").unlink()  # the photo is gone: the folder's first photo then
    third = restart()
    assert third.current is not None and third.current.document.path.name == "IDRiD_02.jpg"
    third.close()


def test_the_first_save_asks_for_a_name_and_never_saves_without_one(  # type: ignore[no-untyped-def]
    qtbot, segmenter: Segmenter, folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    window = open_window(qtbot, segmenter, folder)
    monkeypatch.setattr(dialogs, "ask_reviewer_name", lambda _parent: "")
    assert not window.save()
    assert "name" in window.statusBar().currentMessage()
    assert not (folder / "hemaview-labels" / "IDRiD_02.json").exists()
    monkeypatch.setattr(dialogs, "ask_reviewer_name", lambda _parent: "dr.lee")
    assert window.save()
    loaded = load_label(folder / "hemaview-labels", folder / "IDRiD_02.jpg")
    assert loaded is not None and loaded[1].reviewer == "dr.lee"
    assert load_settings().reviewer == "dr.lee"  # asked once
    window.close()


def test_an_unknown_device_is_refused_not_rewritten(segmenter: Segmenter) -> None:
    from dataclasses import replace

    from viewer.model.document import Document

    pred = segmenter.predict(idrid_photo(5))
    pred.provenance = replace(pred.provenance, device="tpu")
    doc = Document(
        idrid_photo(5),
        (pred.photo.width, pred.photo.height),
        pred.provenance.photo_sha256,
        prediction=pred,
    )
    with pytest.raises(LabelFormatError, match="tpu"):
        doc.to_record("dr.kim")


# ----------------------------------------------------------------------------------------------
# Lost work


def test_a_failed_autosave_is_reported_as_such_and_leaves_the_model_alone(  # type: ignore[no-untyped-def]
    qtbot, segmenter: Segmenter, folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    window = open_window(qtbot, segmenter, folder, reviewer="dr.kim")
    model_text = window.model_label.text()

    def disk_full(_snapshot: object) -> bool:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(window.autosaver, "write", disk_full)
    with qtbot.waitSignal(window.writer.error, timeout=TIMEOUT_MS):
        paint(window, 2000, 1400)
    assert "Autosave failed" in window.statusBar().currentMessage()
    assert "No space left" in window.statusBar().currentMessage()
    assert window.model_label.text() == model_text and window.segmenter is segmenter
    assert window.model_problem is None
    window.close()


def test_every_stroke_is_autosaved_and_a_crash_is_offered_back_at_start_up(  # type: ignore[no-untyped-def]
    qtbot, segmenter: Segmenter, folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import subprocess
    import sys

    window = open_window(qtbot, segmenter, folder, reviewer="dr.kim")
    with qtbot.waitSignal(window.writer.done, timeout=TIMEOUT_MS):
        paint(window, 2000, 1400)  # one stroke, autosaved at once: no timer to wait for
    assert window.autosaver.has(folder / "IDRiD_02.jpg")
    autosave_folder = window.autosaver.folder
    window.close()  # a clean quit: its autosaves and its session lock go
    assert not window.autosaver.has(folder / "IDRiD_02.jpg")
    assert not list((autosave_folder / "sessions").glob("*.lock"))

    # Another session crashes with unsaved edits to IDRiD_05.
    crash = subprocess.run(
        [
            sys.executable,
            "-c",
            CRASHING_SESSION,
            str(autosave_folder),
            str(folder / "IDRiD_05.jpg"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert crash.returncode == 1, crash.stderr
    listed: list[list[str]] = []
    monkeypatch.setattr(
        dialogs,
        "ask_about_unsaved_edits",
        lambda _parent, states: listed.append([Path(s.photo_path).name for s in states]) or "open",
    )
    monkeypatch.setattr(dialogs, "ask_restore_autosave", lambda *_args: True)
    again = MainWindow(Settings(reviewer="dr.kim"), load_model=False)
    qtbot.addWidget(again)
    again.set_segmenter(segmenter)
    with qtbot.waitSignal(again.loader.loaded, timeout=TIMEOUT_MS):
        again.offer_unsaved_edits()  # at start-up, before any photo is opened
    again.cancel_preannotation()
    assert listed == [["IDRiD_05.jpg"]]
    doc = again.current.document  # type: ignore[union-attr]
    assert doc.path.name == "IDRiD_05.jpg" and doc.dirty and doc.mask[1400, 2000]
    again.close()
    # the crashed session's lock goes once nothing of it is left
    assert not list((autosave_folder / "sessions").glob("*.lock"))


def test_opening_a_folder_or_applying_settings_keeps_the_tool(  # type: ignore[no-untyped-def]
    qtbot, segmenter: Segmenter, folder: Path
) -> None:
    window = open_window(qtbot, segmenter, folder, reviewer="dr.kim")
    window.acts["tool_brush"].trigger()
    window.open_sources([str(folder)])  # the same folder again: the photo stays open
    window.cancel_preannotation()
    window._apply_settings()
    assert window.canvas.tool == "brush" and window.acts["tool_brush"].isChecked()
    window.close()


def test_brush_bounds_are_one_pair(qtbot) -> None:  # type: ignore[no-untyped-def]
    canvas = ImageCanvas()
    qtbot.addWidget(canvas)
    for radius in (0.1, 450.0, 1e6):
        canvas.set_brush_radius(radius)
        assert Settings(brush_radius=radius).clamped().brush_radius == canvas.brush_radius
    assert canvas.brush_radius == MAX_BRUSH_RADIUS
    canvas.set_brush_radius(0)
    assert canvas.brush_radius == MIN_BRUSH_RADIUS


# ----------------------------------------------------------------------------------------------
# Labels in the way


def test_a_label_of_another_photo_with_the_same_name_offers_another_folder(  # type: ignore[no-untyped-def]
    qtbot, segmenter: Segmenter, folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    window = open_window(qtbot, segmenter, folder, reviewer="dr.kim")
    doc = window.current.document  # type: ignore[union-attr]
    # IDRiD_02.png, another photo, already has its label where IDRiD_02.jpg's would go
    other = folder / "IDRiD_02.png"
    shutil.copy(idrid_photo(3), other)
    labels = folder / "hemaview-labels"
    record = doc.to_record("dr.park")
    import hashlib
    from dataclasses import replace

    from inference.labels import PhotoInfo

    theirs = replace(
        record,
        photo=PhotoInfo(other.name, hashlib.sha256(other.read_bytes()).hexdigest(), 4288, 2848),
    )
    save_label(labels, other, np.zeros((2848, 4288), bool), theirs)
    before = (labels / "IDRiD_02.json").read_bytes()
    asked: list[str] = []
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.setattr(
        dialogs,
        "ask_folder_for_same_named_photo",
        lambda _parent, message, _start: asked.append(message) or str(elsewhere),
    )
    assert window.save()
    assert asked and "IDRiD_02.png" in asked[0] and "another photo" in asked[0]
    assert (labels / "IDRiD_02.json").read_bytes() == before  # theirs untouched
    mine = load_label(elsewhere, folder / "IDRiD_02.jpg")
    assert mine is not None and mine[1].reviewer == "dr.kim"
    window.close()


def test_overwriting_a_colleagues_label_keeps_theirs_and_can_show_both(  # type: ignore[no-untyped-def]
    qtbot, segmenter: Segmenter, folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    window = open_window(qtbot, segmenter, folder, reviewer="dr.kim")
    doc = window.current.document  # type: ignore[union-attr]
    paint(window, 2000, 1400)
    # a colleague saves the same photo meanwhile, with a mask of their own
    labels = folder / "hemaview-labels"
    theirs = np.zeros_like(doc.mask)
    theirs[100:300, 100:300] = True
    record = doc.to_record("dr.park")
    from dataclasses import replace

    save_label(
        labels, doc.path, theirs, replace(record, modified=record.modified + timedelta(seconds=1))
    )
    shown: list[object] = []

    def overwrite(_parent, name, who, comparison):  # type: ignore[no-untyped-def]
        shown.append(comparison())
        return True

    monkeypatch.setattr(dialogs, "ask_overwrite_conflict", overwrite)
    assert window.save()
    picture = shown[0]
    assert picture is not None
    assert picture.only_theirs == int(theirs.sum()) - picture.both  # type: ignore[attr-defined]
    assert picture.only_yours > 0 and picture.image.ndim == 3  # type: ignore[attr-defined]
    backups = list((labels / "overwritten").glob("IDRiD_02.*.dr.park.json"))
    assert len(backups) == 1
    kept = backups[0].with_name(backups[0].name.replace(".json", "_HE.png"))
    from inference.labels import read_mask

    assert np.array_equal(read_mask(kept), theirs)
    mine = load_label(labels, doc.path)
    assert mine is not None and mine[1].reviewer == "dr.kim"
    window.close()


def test_a_photo_without_colour_says_so_in_the_panel_and_the_label(  # type: ignore[no-untyped-def]
    qtbot, segmenter: Segmenter, tmp_path: Path
) -> None:
    grey_folder = tmp_path / "grey"
    grey_folder.mkdir()
    colour = cv2.imread(str(idrid_photo(2)))
    small = cv2.resize(colour, (colour.shape[1] // 2, colour.shape[0] // 2))
    cv2.imwrite(str(grey_folder / "redfree.jpg"), cv2.cvtColor(small, cv2.COLOR_BGR2GRAY))
    window = open_window(qtbot, segmenter, grey_folder, reviewer="dr.kim")
    assert window.current is not None and window.current.document.has_model
    assert window.panel.colour_note.isVisibleTo(window.panel)
    assert "no colour" in window.panel.colour_note.text()
    window.acts["status_in_review"].trigger()
    assert window.save()
    loaded = load_label(grey_folder / "hemaview-labels", grey_folder / "redfree.jpg")
    assert loaded is not None and loaded[1].photo.no_colour
    window.close()
