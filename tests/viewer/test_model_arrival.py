"""The model arriving while a photo is being opened: every photo gets its suggestion, and a
photo the model has not run on yet is never shown or saved as "no model" or "no lesion".

The model load and the photo read are held by events the test releases in a chosen order
(no sleeps): the model is handed over while the first photo is still being read, which is
what a slow label folder (a network share) or a quick reopen does in a clinic.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import idrid_photo

from inference import Segmenter
from inference.labels import label_paths
from viewer.model import session as session_module
from viewer.qt import main_window as main_window_module
from viewer.qt.main_window import MainWindow
from viewer.qt.settings import Settings

pytestmark = pytest.mark.usefixtures("private_user_folders", "discard_on_close")


class Gates:
    """The model load waits for `model`; each photo read waits for `read` (once inside,
    it sets `reading`)."""

    def __init__(self) -> None:
        self.model = threading.Event()
        self.read = threading.Event()
        self.reading = threading.Event()

    def open_all(self) -> None:
        self.model.set()
        self.read.set()


@pytest.fixture()
def gates(monkeypatch: pytest.MonkeyPatch, segmenter: Segmenter) -> Iterator[Gates]:
    g = Gates()
    original = session_module.ReviewSession.label_folder_problem

    def slow_label_folder(self, folder, *, recheck=False):  # type: ignore[no-untyped-def]
        # Called by ReviewSession.open after it has looked for the model: a slow share.
        g.reading.set()
        assert g.read.wait(60), "the test never released the photo read"
        return original(self, folder, recheck=recheck)

    def late_model(_path: object = None) -> Segmenter:
        assert g.model.wait(60), "the test never released the model"
        return segmenter

    monkeypatch.setattr(session_module.ReviewSession, "label_folder_problem", slow_label_folder)
    monkeypatch.setattr(main_window_module.Segmenter, "open", staticmethod(late_model))
    yield g
    g.open_all()  # no worker may stay blocked after a failed test


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(idrid_photo(3), photos / "IDRiD_03.jpg")
    shutil.copy(idrid_photo(17), photos / "IDRiD_17.jpg")
    return photos


def window_opening_folder(qtbot, gates: Gates, folder: Path) -> MainWindow:  # type: ignore[no-untyped-def]
    """A window whose model is still loading, with the folder's first photo being read."""
    window = MainWindow(Settings(reviewer="dr.kim"))
    qtbot.addWidget(window)
    window.resize(1400, 900)
    window.show()
    window.open_sources([str(folder)])
    qtbot.waitUntil(gates.reading.is_set, timeout=60_000)
    return window


def test_a_photo_still_opening_when_the_model_arrives_gets_its_suggestion(  # type: ignore[no-untyped-def]
    qtbot, gates: Gates, folder: Path, segmenter: Segmenter
) -> None:
    window = window_opening_folder(qtbot, gates, folder)
    assert window.segmenter is None
    # the model arrives while IDRiD_03 is still being read (it looked for the model already)
    with qtbot.waitSignal(window.model_loader.done, timeout=60_000):
        gates.model.set()
    assert window.segmenter is segmenter
    gates.read.set()

    qtbot.waitUntil(
        lambda: window.current is not None and window.current.document.has_model,
        timeout=120_000,
    )
    current = window.current
    assert current is not None and current.document.path.name == "IDRiD_03.jpg"
    doc = current.document
    assert doc.lesions, "IDRiD_03 is full of haemorrhages: the suggestion must show them"
    # the slider shows the model's own threshold, not a stand-in
    assert doc.threshold == pytest.approx(segmenter.threshold)
    assert window.panel.threshold.value() == round(segmenter.threshold * 100)
    assert window.panel.threshold.isEnabled()
    assert "no model" not in window.statusBar().currentMessage().lower()
    assert "not run" not in window.panel.changes.text()
    gates.open_all()
    window.close()


def test_before_the_model_arrives_the_photo_says_not_run_yet_and_cannot_be_accepted_empty(  # type: ignore[no-untyped-def]
    qtbot, gates: Gates, folder: Path, segmenter: Segmenter
) -> None:
    window = window_opening_folder(qtbot, gates, folder)
    with qtbot.waitSignal(window.loader.loaded, timeout=60_000):
        gates.read.set()
    current = window.current
    assert current is not None and not current.document.has_model
    # honest: "not run yet", never "no model" or "no suggestion"
    assert current.model_pending and current.prediction_error is None
    assert "not run on this photo yet" in window.panel.changes.text()
    assert "no model" not in window.statusBar().currentMessage().lower()
    assert "waiting for the model" in window.statusBar().currentMessage()
    assert "Loading" in window.model_label.text()
    # no threshold figure that could be taken for the model's (it has none yet)
    assert window.panel.threshold_label.text() == "–" and not window.panel.threshold.isEnabled()

    # Ctrl+Return on a photo the model has not seen: nothing is accepted or written
    window.acts["status_accepted"].trigger()
    assert current.document.status == "todo"
    paths = label_paths(folder / "IDRiD_03.jpg", folder / "hemaview-labels")
    assert not paths.provenance.exists()
    assert "not run on this photo yet" in window.statusBar().currentMessage()

    # the reviewer marks something by hand meanwhile; the model then arrives
    doc = current.document
    doc.begin_stroke()
    doc.stroke_to(2000, 1400, 30, True)
    window._edited(doc.end_stroke())
    drawn = doc.mask.copy()
    with qtbot.waitSignal(window.model_loader.done, timeout=60_000):
        gates.model.set()
    qtbot.waitUntil(lambda: doc.has_model, timeout=120_000)
    assert window.current is current, "the document being edited was replaced"
    assert np.array_equal(doc.mask, drawn), "the reviewer's stroke was lost"
    assert doc.history.can_undo and doc.edited
    assert doc.lesions and not current.model_pending
    assert doc.threshold == pytest.approx(segmenter.threshold)
    window.close()
