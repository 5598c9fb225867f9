"""The whole window on the offscreen platform, with the real model and real photos."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import idrid_photo
from PIL import Image

from inference import Segmenter
from inference.labels import load_label
from viewer.qt.main_window import MainWindow
from viewer.qt.settings import Settings

pytestmark = pytest.mark.usefixtures("private_user_folders")


@pytest.fixture()
def photo_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(idrid_photo(2), folder / "IDRiD_02.jpg")
    shutil.copy(idrid_photo(17), folder / "IDRiD_17.jpg")
    (folder / "broken.jpg").write_bytes(idrid_photo(4).read_bytes()[:5000])
    return folder


def open_window(qtbot, segmenter: Segmenter | None, folder: Path) -> MainWindow:  # type: ignore[no-untyped-def]
    window = MainWindow(Settings(reviewer="dr.kim"), load_model=False)
    qtbot.addWidget(window)
    if segmenter is not None:
        window.set_segmenter(segmenter)
    window.resize(1400, 900)
    window.show()
    # the first photo in the list is broken.jpg: its load fails, which is fine here
    with qtbot.waitSignal(window.loader.load_failed, timeout=120_000):
        window.open_sources([str(folder)])
    window.cancel_preannotation()
    with qtbot.waitSignal(window.loader.loaded, timeout=120_000):
        window.photos.set_current(folder / "IDRiD_02.jpg")
    return window


def test_open_folder_overlay_threshold_paint_undo_save_reload(
    qtbot, segmenter: Segmenter, photo_folder: Path
) -> None:  # type: ignore[no-untyped-def]
    window = open_window(qtbot, segmenter, photo_folder)
    assert window.current is not None
    doc = window.current.document
    assert doc.path.name == "IDRiD_02.jpg" and doc.has_model
    names = [e.name for e in window.photos.library.entries]
    assert names == ["broken.jpg", "IDRiD_02.jpg", "IDRiD_17.jpg"]

    # the overlay toggles with one action and the mask is untouched by it
    before = doc.mask.copy()
    window.acts["toggle_overlay"].trigger()
    assert not window.canvas.overlay_visible
    window.acts["toggle_overlay"].trigger()
    assert window.canvas.overlay_visible and np.array_equal(doc.mask, before)

    # the threshold slider re-thresholds the stored map (no model run)
    prob = doc.prediction.probability  # type: ignore[union-attr]
    target = 0.99
    window.panel.threshold.setValue(99)
    assert doc.threshold == pytest.approx(target)
    assert np.array_equal(doc.mask, prob >= target)

    # a brush stroke through the document, undone and redone
    window.canvas.set_tool("brush")
    doc.begin_stroke()
    doc.stroke_to(2000, 1400, 25, True)
    doc.stroke_to(2100, 1400, 25, True)
    window._edited(doc.end_stroke())
    assert doc.mask[1400, 2050] and doc.dirty
    window.acts["undo"].trigger()
    assert np.array_equal(doc.mask[1300:1500, 1900:2200], (prob >= target)[1300:1500, 1900:2200])
    window.acts["redo"].trigger()
    assert doc.mask[1400, 2050]
    edited = doc.mask.copy()

    window.acts["status_accepted"].trigger()
    assert window.save()
    label_dir = photo_folder / "hemaview-labels"
    loaded = load_label(label_dir, photo_folder / "IDRiD_02.jpg")
    assert loaded is not None
    mask, record = loaded
    assert np.array_equal(mask, edited)  # bit-exact
    assert record.status == "accepted" and record.reviewer == "dr.kim"
    assert record.model is not None and record.model.sha256 == segmenter.model.sha256
    assert record.changes is not None and record.changes.pixels_added > 0
    assert not doc.dirty
    window.close()

    # reopening shows the saved label, not the model's suggestion
    again = open_window(qtbot, segmenter, photo_folder)
    assert again.current is not None
    assert again.current.document.status == "accepted"
    assert np.array_equal(again.current.document.mask, edited)
    entry = again.photos.library.entry(photo_folder / "IDRiD_02.jpg")
    assert entry is not None and entry.status == "accepted"
    again.close()


def test_unreadable_photo_gets_an_error_not_a_crash(
    qtbot, segmenter: Segmenter, photo_folder: Path
) -> None:  # type: ignore[no-untyped-def]
    window = open_window(qtbot, segmenter, photo_folder)
    with qtbot.waitSignal(window.loader.load_failed, timeout=60_000) as blocker:
        window.open_photo(str(photo_folder / "broken.jpg"))
    assert "truncated" in blocker.args[1] or "damaged" in blocker.args[1]
    entry = window.photos.library.entry(photo_folder / "broken.jpg")
    assert entry is not None and entry.has_error
    assert window.current is None
    window.close()


def test_a_missing_model_leaves_a_working_viewer(qtbot, photo_folder: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    window = MainWindow(Settings(), model_path=str(tmp_path / "missing.onnx"))
    qtbot.addWidget(window)
    with qtbot.waitSignal(window.model_loader.error, timeout=30_000):
        pass
    assert window.segmenter is None
    assert "model" in window.model_label.text().lower()
    assert "not found" in window.model_label.toolTip()
    with qtbot.waitSignal(window.loader.load_failed, timeout=60_000):
        window.open_sources([str(photo_folder)])  # broken.jpg comes first
    with qtbot.waitSignal(window.loader.loaded, timeout=60_000):
        window.photos.set_current(photo_folder / "IDRiD_17.jpg")
    assert window.current is not None and not window.current.document.has_model
    assert "no model" in (window.current.prediction_error or "")
    window.close()


def test_screenshot_command_renders_the_window_with_the_overlay(
    model_path: Path, tmp_path: Path
) -> None:
    out = tmp_path / "shot.png"
    env = {"HOME": str(tmp_path), "QT_QPA_PLATFORM": "offscreen", "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "viewer",
            "--screenshot",
            str(out),
            str(idrid_photo(3)),
            "--model",
            str(model_path),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    image = np.asarray(Image.open(out).convert("RGB"))
    assert image.shape[0] >= 800 and image.shape[1] >= 1200
    # the fundus is on screen: a large reddish area in the middle of the window
    centre = image[
        image.shape[0] // 3 : 2 * image.shape[0] // 3, image.shape[1] // 3 : 2 * image.shape[1] // 3
    ]
    assert (centre[:, :, 0].astype(int) - centre[:, :, 2]).mean() > 30


def test_a_read_only_photo_folder_asks_for_a_label_folder(  # type: ignore[no-untyped-def]
    qtbot, segmenter: Segmenter, photo_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import viewer.model.session as session_module
    from viewer.qt import dialogs

    # Tests run as root, where chmod cannot make a folder read-only: the write probe refuses.
    monkeypatch.setattr(
        session_module, "label_folder_problem", lambda folder: f"{folder} is read-only"
    )
    chosen = tmp_path / "my-labels"
    chosen.mkdir()
    asked: list[str] = []
    monkeypatch.setattr(
        dialogs,
        "ask_label_folder",
        lambda _parent, problem, _start="": asked.append(problem) or str(chosen),
    )
    window = open_window(qtbot, segmenter, photo_folder)
    assert asked and "read-only" in asked[0]
    assert window.session.label_dir == chosen
    assert window.current is not None
    window.current.document.set_status("accepted")
    assert window.save()
    assert (chosen / "IDRiD_02_HE.png").exists() and (chosen / "IDRiD_02.json").exists()
    assert not (photo_folder / "hemaview-labels").exists()
    window.close()


def test_a_photo_refused_as_not_a_fundus_runs_on_request_and_says_so(
    qtbot, segmenter: Segmenter, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "photos"
    folder.mkdir()
    # a real screenshot of Hemaview itself: no retina in it
    shot = MainWindow(Settings(), load_model=False)
    qtbot.addWidget(shot)
    shot.resize(1200, 800)
    assert shot.grab().save(str(folder / "screen.png"))
    shot.close()
    window = MainWindow(Settings(reviewer="dr.kim"), load_model=False)
    qtbot.addWidget(window)
    window.set_segmenter(segmenter)
    window.show()
    with qtbot.waitSignal(window.loader.loaded, timeout=120_000):
        window.open_sources([str(folder)])
    window.cancel_preannotation()
    opened = window.current
    assert opened is not None and opened.not_fundus and not opened.document.has_model
    assert "Run the model anyway" in window.statusBar().currentMessage()
    assert window.acts["run_anyway"].isEnabled()

    # Accepting needs a decision: there is no suggestion and nothing is drawn
    asked: list[str] = []

    def answer(choice: str):  # type: ignore[no-untyped-def]
        def ask(_parent, name, reason, can_run):  # type: ignore[no-untyped-def]
            asked.append(name)
            assert can_run and "fundus photograph" in reason
            return choice

        return ask

    from viewer.qt import dialogs

    monkeypatch.setattr(dialogs, "ask_accept_without_model", answer("cancel"))
    window.acts["status_accepted"].trigger()
    assert asked == ["screen.png"] and window.current.document.status == "todo"

    monkeypatch.setattr(dialogs, "ask_accept_without_model", answer("run"))
    with qtbot.waitSignal(window.loader.loaded, timeout=120_000):
        window.acts["status_accepted"].trigger()
    doc = window.current.document
    assert doc.has_model and doc.status == "todo"  # the run is not an acceptance
    fov = doc.prediction.geometry.fov  # type: ignore[union-attr]
    assert fov.forced and fov.estimated
    assert not window.panel.fov_note.isHidden() and "refused" in window.panel.fov_note.text()
    assert not window.acts["run_anyway"].isEnabled()

    window.acts["status_accepted"].trigger()  # with a suggestion: no question
    assert len(asked) == 2 and doc.status == "accepted"
    assert window.save()
    loaded = load_label(folder / "hemaview-labels", folder / "screen.png")
    assert loaded is not None
    model = loaded[1].model
    assert model is not None and model.forced and model.fov_method == "whole-frame"
    window.close()
