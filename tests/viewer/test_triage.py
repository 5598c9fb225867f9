"""Triage speed: deciding lesions and photos with single keys, a list that follows the work,
and a window that starts where the reviewer can use it. Real windows, the real model."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import idrid_photo
from PySide6.QtWidgets import QApplication

from inference import Segmenter
from inference.labels import load_label
from viewer.qt.main_window import MainWindow
from viewer.qt.settings import Settings

TIMEOUT_MS = 120_000


pytestmark = pytest.mark.usefixtures("private_user_folders", "discard_on_close")


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    """A broken file first by name, then three photos (IDRiD_03 has many lesions)."""
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "0_broken.jpg").write_bytes(idrid_photo(4).read_bytes()[:4000])
    for n in (3, 5, 17):
        shutil.copy(idrid_photo(n), photos / f"IDRiD_{n:02d}.jpg")
    return photos


def start(qtbot, segmenter: Segmenter | None, folder: Path) -> MainWindow:  # type: ignore[no-untyped-def]
    window = MainWindow(Settings(reviewer="dr.kim"), load_model=False)
    qtbot.addWidget(window)
    if segmenter is not None:
        window.set_segmenter(segmenter)
    window.show()
    # the broken file comes first by name: it fails, and the first readable photo opens
    with qtbot.waitSignal(window.loader.loaded, timeout=TIMEOUT_MS):
        window.open_sources([str(folder)])
    return window


def test_the_first_photo_opened_is_the_first_readable_one(  # type: ignore[no-untyped-def]
    qtbot, segmenter: Segmenter, folder: Path
) -> None:
    window = start(qtbot, segmenter, folder)
    window.cancel_preannotation()
    assert window.current is not None and window.current.document.path.name == "IDRiD_03.jpg"
    broken = window.photos.library.entry(folder / "0_broken.jpg")
    assert broken is not None and broken.unreadable
    window.close()


def test_photos_added_to_the_open_folder_appear(qtbot, segmenter: Segmenter, folder: Path) -> None:  # type: ignore[no-untyped-def]
    window = start(qtbot, segmenter, folder)
    window.cancel_preannotation()
    shutil.copy(idrid_photo(29), folder / "IDRiD_29.jpg")
    qtbot.waitUntil(
        lambda: window.photos.library.entry(folder / "IDRiD_29.jpg") is not None,
        timeout=10_000,
    )
    names = [e.name for e in window.photos.library.entries]
    assert names == ["0_broken.jpg", "IDRiD_03.jpg", "IDRiD_05.jpg", "IDRiD_17.jpg", "IDRiD_29.jpg"]
    window.close()


def test_a_and_x_decide_and_move_on_and_a_rejection_stays_visible(  # type: ignore[no-untyped-def]
    qtbot, segmenter: Segmenter, folder: Path
) -> None:
    window = start(qtbot, segmenter, folder)
    window.cancel_preannotation()
    doc = window.current.document  # type: ignore[union-attr]
    assert len(doc.lesions) >= 3, "IDRiD_03 has dozens of haemorrhages"
    window.acts["next_lesion"].trigger()
    first = window.panel.lesions.current_id()
    assert first is not None
    # the lesion under review: ringed; the overlay stays as "Outline only" says (filled)
    assert window.canvas._focus is not None
    assert window.canvas.overlay.filled == (not window.panel.outline.isChecked())
    zoom_before = window.canvas.zoom
    window.acts["reject_lesion"].trigger()
    second = window.panel.lesions.current_id()
    assert doc.decisions[first] == "rejected" and second not in (None, first)
    assert window.canvas._rejected, "a rejected lesion keeps a faint outline"
    window.acts["accept_lesion"].trigger()
    assert doc.decisions[second] == "accepted"
    assert window.panel.lesions.current_id() not in (first, second)
    assert window.canvas.zoom > 0 and zoom_before > 0
    # undo brings the rejected lesion back, and its faint outline goes
    window.acts["undo"].trigger()
    window.acts["undo"].trigger()
    assert first not in doc.decisions and not window.canvas._rejected
    window.close()


def test_ctrl_return_accepts_saves_and_opens_the_next_photo_to_do(  # type: ignore[no-untyped-def]
    qtbot, segmenter: Segmenter, folder: Path
) -> None:
    window = start(qtbot, segmenter, folder)
    window.cancel_preannotation()
    with qtbot.waitSignal(window.loader.loaded, timeout=TIMEOUT_MS):
        window.acts["status_accepted"].trigger()
    saved = load_label(folder / "hemaview-labels", folder / "IDRiD_03.jpg")
    assert saved is not None and saved[1].status == "accepted"
    assert window.current is not None and window.current.document.path.name == "IDRiD_05.jpg"
    entry = window.photos.library.entry(folder / "IDRiD_03.jpg")
    assert entry is not None and entry.status == "accepted"
    window.close()


def test_the_list_follows_the_live_threshold_and_review_state(  # type: ignore[no-untyped-def]
    qtbot, segmenter: Segmenter, folder: Path
) -> None:
    window = start(qtbot, segmenter, folder)
    window.cancel_preannotation()
    doc = window.current.document  # type: ignore[union-attr]
    entry = window.photos.library.entry(doc.path)
    assert entry is not None and entry.lesion_count == len(doc.lesions)
    window.set_threshold(0.9)
    window.show_document_state()  # what the resting slider's timer does
    assert entry.lesion_count == len(doc.lesions) and doc.threshold == 0.9
    window.acts["status_in_review"].trigger()
    assert entry.status == "in_review"  # before any save
    detail = window.photos.delegate.detail_text(entry)
    assert str(len(doc.lesions)) in detail or len(doc.lesions) == 1
    window.close()


def test_waiting_and_predicting_show_in_the_list(qtbot, folder: Path, segmenter: Segmenter) -> None:  # type: ignore[no-untyped-def]
    window = MainWindow(Settings(reviewer="dr.kim"), load_model=False)
    qtbot.addWidget(window)
    window.show()
    with qtbot.waitSignal(window.loader.loaded, timeout=TIMEOUT_MS):
        window.open_sources([str(folder)])  # no model yet
    waiting = window.photos.library.entry(folder / "IDRiD_17.jpg")
    assert waiting is not None and waiting.prediction_state == "queued"
    assert window.photos.delegate.detail_text(waiting) == "Waiting for the model"
    seen: set[str] = set()
    window.set_segmenter(segmenter)  # starts pre-annotating the folder
    job = window.preannotator.job
    assert job is not None
    job.photo_started.connect(
        lambda path: seen.add(window.photos.library.entry(path).prediction_state)  # type: ignore[union-attr]
    )
    with qtbot.waitSignal(job.finished, timeout=10 * TIMEOUT_MS):
        pass
    assert "running" in seen
    assert waiting.prediction_state == "done" and waiting.predicted_lesions is not None
    window.close()


def test_a_photo_without_a_prediction_shows_the_models_default_threshold(  # type: ignore[no-untyped-def]
    qtbot, segmenter: Segmenter, tmp_path: Path
) -> None:
    flat = tmp_path / "flat"
    flat.mkdir()
    from PIL import Image

    Image.new("RGB", (800, 600), (90, 90, 90)).save(flat / "grey.png")
    window = MainWindow(Settings(reviewer="dr.kim"), load_model=False)
    qtbot.addWidget(window)
    window.set_segmenter(segmenter)
    with qtbot.waitSignal(window.loader.loaded, timeout=TIMEOUT_MS):
        window.open_sources([str(flat)])
    window.cancel_preannotation()
    doc = window.current.document  # type: ignore[union-attr]
    assert not doc.has_model and doc.threshold == pytest.approx(segmenter.threshold)
    assert window.panel.threshold_label.text() == f"{segmenter.threshold:.2f}"
    window.close()


def test_the_window_fits_the_available_screen_at_first_start(qtbot) -> None:  # type: ignore[no-untyped-def]
    window = MainWindow(Settings(), load_model=False)
    qtbot.addWidget(window)
    area = QApplication.primaryScreen().availableGeometry()
    window.fit_to_screen(width=area.width() + 500, height=area.height() + 500)
    window.show()
    # within the available area, frame included, unless the window cannot be smaller
    least = window.minimumSizeHint()
    assert window.width() <= max(area.width() - 16, least.width())
    assert window.height() <= max(area.height() - 48, least.height())
    assert area.contains(window.geometry().topLeft())
    window.close()


def test_the_brush_size_shows_as_a_number_while_painting(qtbot) -> None:  # type: ignore[no-untyped-def]
    window = MainWindow(Settings(), load_model=False)
    qtbot.addWidget(window)
    window.show()
    window.acts["tool_brush"].trigger()
    window.canvas.set_brush_radius(12)
    assert window.brush_label.isVisible() and "24" in window.brush_label.text()
    window.acts["brush_larger"].trigger()
    assert window.brush_label.text() != "24" and "px" in window.brush_label.text()
    window.acts["tool_pan"].trigger()
    assert not window.brush_label.isVisible()
    window.close()


def test_mark_is_drawn_where_the_lesion_is(qtbot, segmenter: Segmenter, folder: Path) -> None:  # type: ignore[no-untyped-def]
    """What the reviewer sees: a yellow ring on screen around the lesion under review."""
    window = start(qtbot, segmenter, folder)
    window.cancel_preannotation()
    window.resize(1400, 900)
    window.acts["next_lesion"].trigger()
    from PySide6.QtGui import QImage

    image = window.canvas.grab().toImage().convertToFormat(QImage.Format.Format_RGB888)
    pixels = (
        np.frombuffer(image.constBits(), np.uint8)
        .reshape(image.height(), image.bytesPerLine())[:, : 3 * image.width()]
        .reshape(image.height(), image.width(), 3)
    )
    yellow = (pixels[..., 0] > 220) & (pixels[..., 1] > 180) & (pixels[..., 2] < 60)
    assert yellow.sum() > 20
    window.close()
