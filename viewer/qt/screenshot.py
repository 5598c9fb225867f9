"""`hemaview --screenshot OUT.png [PHOTO]`: the main window with the model's overlay, as a
user would see it, rendered on the offscreen platform; the README's picture and the
acceptance checks come from it."""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QApplication

from inference import HemaviewError, Segmenter, is_photo_path, sample_photos_dir
from viewer.qt.main_window import MainWindow
from viewer.qt.settings import Settings


def _first_photo(folder: Path) -> Path | None:
    photos = sorted(p for p in folder.iterdir() if p.is_file() and is_photo_path(p))
    return photos[0] if photos else None


def _wait(app: QApplication, done: object, timeout_s: float) -> bool:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        app.processEvents()
        if callable(done) and done():
            return True
        time.sleep(0.01)
    return False


def take_screenshot(app: QApplication, out: Path, paths: list[Path], model_path: str | None) -> int:
    # The screenshot must not touch the user's settings (recent folders, window layout).
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(
        QSettings.Format.IniFormat, QSettings.Scope.UserScope, tempfile.mkdtemp(prefix="hemaview-")
    )
    target = paths[0] if paths else sample_photos_dir()
    photo = _first_photo(target) if target.is_dir() else target
    if photo is None or not photo.exists():
        print(f"hemaview: no photo to show at {target}", file=sys.stderr)
        return 2
    window = MainWindow(Settings(), model_path=model_path, load_model=False)
    window.resize(1600, 1000)
    try:
        window.set_segmenter(Segmenter.open(model_path))
    except HemaviewError as exc:
        window._on_model_error(str(exc))
    window.show()
    window.open_sources([str(photo.parent)])
    window.photos.set_current(photo)
    window.open_photo(str(photo))
    window.cancel_preannotation()  # one photo is enough; the rest would only compete for the CPU

    def loaded() -> bool:
        return window.current is not None and window.current.document.path == photo

    ok = _wait(app, loaded, 300)
    if os.environ.get("HEMAVIEW_REPORT_SHOWN"):
        # for bench/bench_cold_start.py: the moment the photo is up with its overlay, on the
        # system-wide monotonic clock the launcher also reads (the settling below is not startup)
        app.processEvents()
        print(f"hemaview: shown at monotonic {time.monotonic():.4f}", flush=True)
    _wait(app, lambda: False, 1.5)  # thumbnails and the display preset settle
    if window.current is not None and window.current.document.lesions:
        window.panel.lesions.selectRow(0)
        window.canvas.fit_to_window()
    _wait(app, lambda: False, 0.3)
    out.parent.mkdir(parents=True, exist_ok=True)
    saved = window.grab().save(str(out))
    has_overlay = ok and window.current is not None and window.current.document.has_model
    window.close()
    if not saved:
        print(f"hemaview: could not write {out}", file=sys.stderr)
        return 2
    if not has_overlay:
        reason = window.model_problem or (
            window.current.prediction_error if window.current else "the photo did not load"
        )
        print(f"hemaview: screenshot saved without overlay: {reason}", file=sys.stderr)
        return 1
    print(f"hemaview: screenshot of {photo.name} saved to {out}")
    return 0
