"""Photo thumbnails for the photo list, made in one worker thread (a JPEG at 1/8 scale in the
DCT, a few milliseconds) and kept in memory and, when given a folder, on disk.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal, Slot
from PySide6.QtGui import QImage, QPixmap

from inference import HemaviewError, atomic_write_bytes, read_photo
from viewer.qt.workers import emit_quietly

#: Thumbnail box in device-independent pixels; images are made at twice that for high DPI.
THUMB_W, THUMB_H = 96, 64
_SCALE = 2


def make_thumbnail(path: str | os.PathLike[str]) -> np.ndarray:
    """RGB uint8 thumbnail fitting (THUMB_W, THUMB_H) * _SCALE; raises HemaviewError."""
    box_w, box_h = THUMB_W * _SCALE, THUMB_H * _SCALE
    photo = read_photo(path, min_side=box_h)
    rgb = photo.rgb
    h, w = rgb.shape[:2]
    f = min(box_w / w, box_h / h, 1.0)
    size = (max(1, round(w * f)), max(1, round(h * f)))
    return np.ascontiguousarray(cv2.resize(rgb, size, interpolation=cv2.INTER_AREA))


def _to_qimage(rgb: np.ndarray) -> QImage:
    h, w = rgb.shape[:2]
    image = QImage(rgb.data, w, h, 3 * w, QImage.Format.Format_RGB888)
    return image.copy()  # own the pixels: the array goes away with this thread's frame


class _Thumb(QRunnable):
    def __init__(self, cache: ThumbnailCache, path: str):
        super().__init__()
        self.cache, self.path = cache, path
        self.setAutoDelete(True)

    def run(self) -> None:
        self.cache._make(self.path)


class ThumbnailCache(QObject):
    """Thumbnails made in one worker thread, kept in memory and optionally on disk."""

    ready = Signal(str)  # path: `pixmap(path)` now returns it
    failed = Signal(str, str)  # path, message (the photo cannot be read)

    _made = Signal(str, object, str)  # path, QImage or None, message

    def __init__(self, folder: str | os.PathLike[str] | None = None, parent: QObject | None = None):
        super().__init__(parent)
        self.folder = Path(folder) if folder is not None else None
        self._pixmaps: dict[str, QPixmap] = {}
        self._errors: dict[str, str] = {}
        self._asked: set[str] = set()
        self._lock = threading.Lock()
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(1)
        self._made.connect(self._on_made)

    def pixmap(self, path: str) -> QPixmap | None:
        return self._pixmaps.get(path)

    def error(self, path: str) -> str | None:
        return self._errors.get(path)

    def request(self, path: str) -> None:
        if path in self._pixmaps or path in self._errors or path in self._asked:
            return
        self._asked.add(path)
        self._pool.start(_Thumb(self, path))

    def clear(self) -> None:
        self._pool.clear()
        self._pixmaps.clear()
        self._errors.clear()
        self._asked.clear()

    def wait(self, msecs: int = -1) -> bool:
        return self._pool.waitForDone(msecs)

    def _disk_path(self, path: str) -> Path | None:
        if self.folder is None:
            return None
        try:
            st = os.stat(path)
        except OSError:
            return None
        key = f"{os.path.abspath(path)}|{st.st_size}|{st.st_mtime_ns}|{THUMB_W * _SCALE}"
        name = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:32]
        return self.folder / f"{name}.jpg"

    def _make(self, path: str) -> None:
        disk = self._disk_path(path)
        if disk is not None and disk.exists():
            data = np.frombuffer(disk.read_bytes(), np.uint8)
            bgr = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
            if bgr is not None:
                emit_quietly(
                    self._made, path, _to_qimage(np.ascontiguousarray(bgr[:, :, ::-1])), ""
                )
                return
        try:
            rgb = make_thumbnail(path)
        except HemaviewError as exc:
            emit_quietly(self._made, path, None, str(exc))
            return
        except Exception as exc:  # a worker must not die silently
            emit_quietly(self._made, path, None, f"{path}: {exc}")
            return
        if disk is not None:
            ok, encoded = cv2.imencode(".jpg", rgb[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 85])
            if ok:
                # a thumbnail cache that cannot be written only costs time
                with contextlib.suppress(OSError):
                    atomic_write_bytes(disk, encoded.tobytes())
        emit_quietly(self._made, path, _to_qimage(rgb), "")

    @Slot(str, object, str)
    def _on_made(self, path: str, image: Any, message: str) -> None:
        self._asked.discard(path)
        if image is None:
            self._errors[path] = message
            self.failed.emit(path, message)
        else:
            pixmap = QPixmap.fromImage(image)
            pixmap.setDevicePixelRatio(_SCALE)
            self._pixmaps[path] = pixmap
            self.ready.emit(path)
