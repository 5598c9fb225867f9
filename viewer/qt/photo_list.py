"""The photo list: thumbnails, review status, lesion count, error badges; filter and sort.

It shows a `viewer.model.library.PhotoLibrary` and forwards the reviewer's choice of photo
(`current_changed`). Its parts: the list model (`viewer.qt.photo_list_model`), the delegate
that draws a row (`viewer.qt.photo_row`) and the thumbnails, decoded in a worker thread
(`viewer.qt.thumbnails`); this module composes them under the filter and sort controls.
"""

from __future__ import annotations

import os
from pathlib import Path

import qtawesome as qta
from PySide6.QtCore import QModelIndex, Qt, Signal, Slot
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QListView, QVBoxLayout, QWidget

from viewer.model.library import PhotoLibrary
from viewer.qt.photo_list_model import (
    EntryRole,
    ErrorRole,
    LesionCountRole,
    PathRole,
    PhotoListModel,
    PredictionStateRole,
    StatusRole,
    UncertaintyRole,
)
from viewer.qt.photo_row import PhotoItemDelegate
from viewer.qt.thumbnails import THUMB_H, THUMB_W, ThumbnailCache, make_thumbnail

# Where these names were before the list was split: other modules and tests import them here.
__all__ = [
    "THUMB_H",
    "THUMB_W",
    "EntryRole",
    "ErrorRole",
    "LesionCountRole",
    "PathRole",
    "PhotoItemDelegate",
    "PhotoListModel",
    "PhotoListWidget",
    "PredictionStateRole",
    "StatusRole",
    "ThumbnailCache",
    "UncertaintyRole",
    "make_thumbnail",
]


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
