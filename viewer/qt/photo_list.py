"""The photo list: thumbnails, review status, lesion count, error badges; filter and sort.

It shows a `viewer.model.library.PhotoLibrary` and forwards the reviewer's choice of photo
(`current_changed`). Thumbnails are decoded in a worker thread (a JPEG at 1/8 scale in the
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
import qtawesome as qta
from PySide6.QtCore import (
    QAbstractListModel,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    QRect,
    QRunnable,
    QSize,
    Qt,
    QThreadPool,
    QTimer,
    Signal,
    Slot,
)
from PySide6.QtGui import QAction, QColor, QFont, QIcon, QImage, QKeySequence, QPainter, QPixmap
from PySide6.QtWidgets import (
    QAbstractScrollArea,
    QComboBox,
    QHBoxLayout,
    QLabel,
    QListView,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QVBoxLayout,
    QWidget,
)

from inference import HemaviewError, atomic_write_bytes, read_photo
from viewer.model.library import PhotoEntry, PhotoLibrary
from viewer.qt.workers import emit_quietly

#: Thumbnail box in device-independent pixels; images are made at twice that for high DPI.
THUMB_W, THUMB_H = 96, 64
_SCALE = 2

PathRole = Qt.ItemDataRole.UserRole + 1
StatusRole = Qt.ItemDataRole.UserRole + 2
LesionCountRole = Qt.ItemDataRole.UserRole + 3
UncertaintyRole = Qt.ItemDataRole.UserRole + 4
ErrorRole = Qt.ItemDataRole.UserRole + 5
PredictionStateRole = Qt.ItemDataRole.UserRole + 6
EntryRole = Qt.ItemDataRole.UserRole + 7

_STATUS_ICONS = {
    "todo": ("fa5.circle", "#8a8a8a"),
    "in_review": ("fa5s.pen", "#d88a00"),
    "accepted": ("fa5s.check-circle", "#2e9d46"),
    "rejected": ("fa5s.times-circle", "#c8323c"),
}
_ERROR_ICON = ("fa5s.exclamation-triangle", "#d0302a")


# --------------------------------------------------------------------------------------------
# Thumbnails


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


# --------------------------------------------------------------------------------------------
# The model


class PhotoListModel(QAbstractListModel):
    """The library's entries passing the status filter, in the chosen order."""

    def __init__(self, thumbnails: ThumbnailCache | None = None, parent: QObject | None = None):
        super().__init__(parent)
        self.library = PhotoLibrary()
        self.thumbnails = thumbnails if thumbnails is not None else ThumbnailCache(parent=self)
        self.thumbnails.ready.connect(self._on_thumbnail)
        self.thumbnails.failed.connect(self._on_thumbnail_failed)
        self.status_filter: str | None = None
        self.sort_key = "name"
        self.sticky: str | None = None  # the current photo stays listed until it changes
        self._rows: list[PhotoEntry] = []
        self._relayout_timer = QTimer(self)
        self._relayout_timer.setSingleShot(True)
        self._relayout_timer.setInterval(250)
        self._relayout_timer.timeout.connect(self.relayout)

    # -- content -------------------------------------------------------------------------

    def set_library(self, library: PhotoLibrary) -> None:
        self.beginResetModel()
        self.library = library
        self.sticky = None
        self._rows = self._compute_rows([])
        self.endResetModel()

    def set_filter(self, status: str | None) -> None:
        # The reviewer asked for this filter: the current photo is not kept in it (it is
        # kept only when its own status changes under the filter, see `sticky`).
        self.status_filter = status
        self.sticky = None
        self.relayout()

    def set_sort(self, key: str) -> None:
        self.sort_key = key
        self.relayout()

    def _compute_rows(self, old: list[PhotoEntry]) -> list[PhotoEntry]:
        rows = self.library.view(self.status_filter, self.sort_key)
        if self.sticky is not None:
            entry = self.library.entry(self.sticky)
            if entry is not None and entry not in rows:
                where = next((i for i, e in enumerate(old) if e is entry), len(rows))
                rows.insert(min(where, len(rows)), entry)
        return rows

    @Slot()
    def relayout(self) -> None:
        """Re-filter and re-sort, keeping selections and the current row where they are."""
        self._relayout_timer.stop()
        new = self._compute_rows(self._rows)
        if [id(e) for e in new] == [id(e) for e in self._rows]:
            return
        if {id(e) for e in new} != {id(e) for e in self._rows}:
            self.beginResetModel()
            self._rows = new
            self.endResetModel()
            return
        self.layoutAboutToBeChanged.emit()
        where = {id(e): i for i, e in enumerate(new)}
        old_indexes = self.persistentIndexList()
        new_indexes = [
            self.index(where[id(self._rows[i.row()])], 0) if i.isValid() else QModelIndex()
            for i in old_indexes
        ]
        self._rows = new
        self.changePersistentIndexList(old_indexes, new_indexes)
        self.layoutChanged.emit()

    def schedule_relayout(self) -> None:
        self._relayout_timer.start()

    def entry_changed(self, path: str | os.PathLike[str]) -> None:
        """Repaint a photo's row; re-sort or re-filter shortly after (coalesced)."""
        entry = self.library.entry(path)
        if entry is None:
            return
        row = self.row_of(path)
        if row is not None:
            index = self.index(row, 0)
            self.dataChanged.emit(index, index)
        self._relayout_timer.start()

    # -- access --------------------------------------------------------------------------

    def rows(self) -> list[PhotoEntry]:
        return list(self._rows)

    def entry_at(self, row: int) -> PhotoEntry | None:
        return self._rows[row] if 0 <= row < len(self._rows) else None

    def row_of(self, path: str | os.PathLike[str]) -> int | None:
        entry = self.library.entry(path)
        return next((i for i, e in enumerate(self._rows) if e is entry), None)

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex | None = None) -> int:
        if parent is not None and parent.isValid():
            return 0
        return len(self._rows)

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = 0) -> Any:
        entry = self.entry_at(index.row()) if index.isValid() else None
        if entry is None:
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            return entry.name
        if role == Qt.ItemDataRole.DecorationRole:
            path = str(entry.path)
            pixmap = self.thumbnails.pixmap(path)
            if pixmap is None:
                self.thumbnails.request(path)
            return pixmap
        if role == Qt.ItemDataRole.ToolTipRole:
            if entry.error:
                return entry.error
            if entry.label_error:
                return self.tr("The saved label cannot be used: {0}").format(entry.label_error)
            return str(entry.path)
        if role == PathRole:
            return str(entry.path)
        if role == StatusRole:
            return entry.status
        if role == LesionCountRole:
            return entry.lesion_count
        if role == UncertaintyRole:
            return entry.uncertainty
        if role == ErrorRole:
            return entry.error
        if role == PredictionStateRole:
            return entry.prediction_state
        if role == EntryRole:
            return entry
        return None

    # -- thumbnails ----------------------------------------------------------------------

    @Slot(str)
    def _on_thumbnail(self, path: str) -> None:
        row = self.row_of(path)
        if row is not None:
            index = self.index(row, 0)
            self.dataChanged.emit(index, index, [Qt.ItemDataRole.DecorationRole])

    @Slot(str, str)
    def _on_thumbnail_failed(self, path: str, message: str) -> None:
        # The thumbnail reader is the first to find out that a photo cannot be read.
        entry = self.library.entry(path)
        if entry is not None and entry.error is None:
            self.library.set_failed(path, message, unreadable=True)
            self.entry_changed(path)


# --------------------------------------------------------------------------------------------
# Drawing one row


class PhotoItemDelegate(QStyledItemDelegate):
    """Thumbnail at the left; name, status and lesion count beside it; error badge."""

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self._icons: dict[str, QIcon] = {}

    def _icon(self, key: str) -> QIcon:
        if key not in self._icons:
            name, colour = _ERROR_ICON if key == "error" else _STATUS_ICONS[key]
            self._icons[key] = qta.icon(name, color=colour)
        return self._icons[key]

    def status_text(self, status: str) -> str:
        return {
            "todo": self.tr("To do"),
            "in_review": self.tr("In review"),
            "accepted": self.tr("Accepted"),
            "rejected": self.tr("Rejected"),
        }.get(status, status)

    def detail_text(self, entry: PhotoEntry) -> str:
        if entry.error:
            return (
                self.tr("Unreadable") if entry.unreadable else self.tr("No overlay: {0}")
            ).format(entry.error.split(": ")[-1])
        if entry.prediction_state == "running":
            return self.tr("Predicting…")
        if entry.prediction_state == "queued":
            return self.tr("Waiting for the model")
        count = entry.lesion_count
        if count is None:
            return ""
        # Chosen in code rather than with %n: no English translation file is needed for it.
        text = self.tr("1 lesion") if count == 1 else self.tr("{0} lesions").format(count)
        if entry.uncertainty is not None:
            text += " · " + self.tr("{0:.1%} unsure").format(entry.uncertainty)
        return text

    def sizeHint(self, option: QStyleOptionViewItem, index: QModelIndex) -> QSize:  # type: ignore[override]
        # no wider than the list shows: the text is elided to fit
        view = option.widget
        width = view.viewport().width() if isinstance(view, QAbstractScrollArea) else 0
        return QSize(min(THUMB_W + 200, width) if width > 0 else THUMB_W + 200, THUMB_H + 10)

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: QModelIndex) -> None:  # type: ignore[override]
        entry = index.data(EntryRole)
        if not isinstance(entry, PhotoEntry):
            super().paint(painter, option, index)
            return
        opt = QStyleOptionViewItem(option)
        self.initStyleOption(opt, index)
        style = opt.widget.style() if opt.widget is not None else None
        painter.save()
        if style is not None:
            style.drawPrimitive(
                QStyle.PrimitiveElement.PE_PanelItemViewItem, opt, painter, opt.widget
            )
        rect = opt.rect
        thumb_rect = QRect(rect.left() + 5, rect.top() + 5, THUMB_W, THUMB_H)
        pixmap = index.data(Qt.ItemDataRole.DecorationRole)
        if isinstance(pixmap, QPixmap) and not pixmap.isNull():
            size = pixmap.deviceIndependentSize().toSize()
            size.scale(thumb_rect.size(), Qt.AspectRatioMode.KeepAspectRatio)
            target = QRect(0, 0, size.width(), size.height())
            target.moveCenter(thumb_rect.center())
            painter.drawPixmap(target, pixmap)
        else:
            painter.fillRect(thumb_rect, QColor(40, 40, 40))
        if entry.error:
            badge = QRect(thumb_rect.right() - 20, thumb_rect.bottom() - 20, 18, 18)
            painter.fillRect(badge.adjusted(-1, -1, 1, 1), QColor(255, 255, 255, 200))
            self._icon("error").paint(painter, badge)

        selected = bool(opt.state & QStyle.StateFlag.State_Selected)
        text_colour = opt.palette.highlightedText() if selected else opt.palette.text()
        left = thumb_rect.right() + 10
        width = max(rect.right() - left - 4, 10)
        line = opt.fontMetrics.height()
        top = rect.top() + 6
        font = QFont(opt.font)
        font.setBold(True)
        painter.setFont(font)
        painter.setPen(text_colour.color())
        name = opt.fontMetrics.elidedText(entry.name, Qt.TextElideMode.ElideMiddle, width)
        painter.drawText(QRect(left, top, width, line), Qt.AlignmentFlag.AlignLeft, name)
        painter.setFont(opt.font)
        icon_rect = QRect(left, top + line + 3, line, line)
        self._icon(entry.status).paint(painter, icon_rect)
        status = opt.fontMetrics.elidedText(
            self.status_text(entry.status), Qt.TextElideMode.ElideRight, width - line - 4
        )
        painter.drawText(
            QRect(left + line + 4, top + line + 3, width - line - 4, line),
            Qt.AlignmentFlag.AlignLeft,
            status,
        )
        detail = opt.fontMetrics.elidedText(
            self.detail_text(entry), Qt.TextElideMode.ElideRight, width
        )
        if entry.error:
            painter.setPen(QColor(_ERROR_ICON[1]))
        painter.drawText(
            QRect(left, top + 2 * line + 6, width, line), Qt.AlignmentFlag.AlignLeft, detail
        )
        painter.restore()


# --------------------------------------------------------------------------------------------
# The widget


class PhotoListWidget(QWidget):
    """Filter and sort controls over the list of photos."""

    current_changed = Signal(str)  # path of the photo the reviewer chose

    def __init__(
        self,
        parent: QWidget | None = None,
        *,
        thumbnail_dir: str | os.PathLike[str] | None = None,
    ):
        super().__init__(parent)
        self.thumbnails = ThumbnailCache(thumbnail_dir, parent=self)
        self.model = PhotoListModel(self.thumbnails, parent=self)
        self.view = QListView(self)
        self.view.setObjectName("photoList")
        self.view.setModel(self.model)
        self.delegate = PhotoItemDelegate(self.view)
        self.view.setItemDelegate(self.delegate)
        self.view.setUniformItemSizes(True)
        # Rows take the list's width and elide their text (long Korean names and states):
        # a horizontal scroll bar would hide the start of every row.
        self.view.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.view.setSelectionMode(QListView.SelectionMode.SingleSelection)
        self.view.setVerticalScrollMode(QListView.ScrollMode.ScrollPerPixel)
        self.view.selectionModel().currentChanged.connect(self._on_current)

        self.filter_combo = QComboBox(self)
        self.filter_combo.setObjectName("photoFilter")
        self.sort_combo = QComboBox(self)
        self.sort_combo.setObjectName("photoSort")
        self.count_label = QLabel(self)
        self._fill_combos()
        self.filter_combo.currentIndexChanged.connect(self._on_filter)
        self.sort_combo.currentIndexChanged.connect(self._on_sort)
        self.model.modelReset.connect(self._update_count)
        self.model.modelReset.connect(self._reselect)
        self.model.layoutChanged.connect(self._update_count)

        self.next_action = QAction(qta.icon("fa5s.chevron-down"), self.tr("Next photo"), self)
        self.next_action.setShortcut(QKeySequence(Qt.Key.Key_PageDown))
        self.next_action.triggered.connect(self.select_next)
        self.previous_action = QAction(qta.icon("fa5s.chevron-up"), self.tr("Previous photo"), self)
        self.previous_action.setShortcut(QKeySequence(Qt.Key.Key_PageUp))
        self.previous_action.triggered.connect(self.select_previous)
        self.addAction(self.next_action)
        self.addAction(self.previous_action)

        controls = QHBoxLayout()
        controls.setContentsMargins(0, 0, 0, 0)
        controls.addWidget(self.filter_combo, 1)
        controls.addWidget(self.sort_combo, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(controls)
        layout.addWidget(self.view, 1)
        layout.addWidget(self.count_label)
        self._current: str | None = None

    def _fill_combos(self) -> None:
        self.filter_combo.blockSignals(True)
        self.sort_combo.blockSignals(True)
        self.filter_combo.clear()
        for text, value in (
            (self.tr("All photos"), None),
            (self.tr("To do"), "todo"),
            (self.tr("In review"), "in_review"),
            (self.tr("Accepted"), "accepted"),
            (self.tr("Rejected"), "rejected"),
            (self.tr("Unreadable or failed"), "error"),
        ):
            self.filter_combo.addItem(text, value)
        self.sort_combo.clear()
        for text, value in (
            (self.tr("Sort by name"), "name"),
            (self.tr("Most lesions first"), "lesions"),
            (self.tr("Most uncertain first"), "uncertainty"),
        ):
            self.sort_combo.addItem(text, value)
        self.filter_combo.setCurrentIndex(
            max(self.filter_combo.findData(self.model.status_filter), 0)
        )
        self.sort_combo.setCurrentIndex(max(self.sort_combo.findData(self.model.sort_key), 0))
        self.filter_combo.blockSignals(False)
        self.sort_combo.blockSignals(False)

    # -- content -------------------------------------------------------------------------

    @property
    def library(self) -> PhotoLibrary:
        return self.model.library

    def set_library(self, library: PhotoLibrary) -> None:
        self.thumbnails.clear()
        self._current = None
        self.model.set_library(library)

    def entry_changed(self, path: str | os.PathLike[str]) -> None:
        self.model.entry_changed(path)

    def add_photos(self, paths: list[Path]) -> list[Path]:
        """Photos that appeared in an open folder: listed in their place; returns the new."""
        new = self.library.add(paths)
        if new:
            self.model.relayout()
            self._update_count()
        return [e.path for e in new]

    def current_path(self) -> str | None:
        return self._current

    def set_current(self, path: str | os.PathLike[str]) -> bool:
        """Select a photo (emits current_changed when it changes); False if not listed."""
        row = self.model.row_of(path)
        if row is None:
            return False
        index = self.model.index(row, 0)
        self.view.setCurrentIndex(index)
        self.view.scrollTo(index)
        return True

    @Slot()
    def select_next(self) -> None:
        self._step(1)

    @Slot()
    def select_previous(self) -> None:
        self._step(-1)

    def _step(self, step: int) -> None:
        rows = self.model.rows()
        entry = self.library.neighbour(self._current, step, rows)
        if entry is not None:
            self.set_current(entry.path)

    # -- slots ---------------------------------------------------------------------------

    def _on_current(self, current: QModelIndex, _previous: QModelIndex) -> None:
        path = current.data(PathRole) if current.isValid() else None
        if path is None or path == self._current:
            return
        self._current = path
        self.model.sticky = path
        self.model.schedule_relayout()  # the previous photo may leave the filtered list now
        self.current_changed.emit(path)

    def _on_filter(self, _index: int) -> None:
        self.model.set_filter(self.filter_combo.currentData())
        self._reselect()

    def _on_sort(self, _index: int) -> None:
        self.model.set_sort(self.sort_combo.currentData())
        self._reselect()

    def _reselect(self) -> None:
        if self._current is not None:
            row = self.model.row_of(self._current)
            if row is not None:
                self.view.setCurrentIndex(self.model.index(row, 0))
                self.view.scrollTo(self.model.index(row, 0))

    def _update_count(self) -> None:
        shown, total = self.model.rowCount(), len(self.library)
        self.count_label.setText(
            (self.tr("1 photo") if total == 1 else self.tr("{0} photos").format(total))
            if shown == total
            else self.tr("{0} of {1} photos").format(shown, total)
        )
