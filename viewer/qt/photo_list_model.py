"""The photo list's model: the library's entries passing the status filter, in the chosen
order, with the roles the row delegate and the window read.
"""

from __future__ import annotations

import os
from typing import Any

from PySide6.QtCore import (
    QAbstractListModel,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    Qt,
    QTimer,
    Slot,
)

from viewer.model.library import PhotoEntry, PhotoLibrary
from viewer.qt.thumbnails import ThumbnailCache

PathRole = Qt.ItemDataRole.UserRole + 1
StatusRole = Qt.ItemDataRole.UserRole + 2
LesionCountRole = Qt.ItemDataRole.UserRole + 3
UncertaintyRole = Qt.ItemDataRole.UserRole + 4
ErrorRole = Qt.ItemDataRole.UserRole + 5
PredictionStateRole = Qt.ItemDataRole.UserRole + 6
EntryRole = Qt.ItemDataRole.UserRole + 7


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
