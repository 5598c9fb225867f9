"""The lesion list: the model's suggested lesions with their decisions; click to go there."""

from __future__ import annotations

import qtawesome as qta
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QHeaderView, QTableWidget, QTableWidgetItem, QWidget

from inference import Lesion

_DECISION_ICONS = {
    "accepted": ("fa5s.check-circle", "#2e9d4a"),
    "rejected": ("fa5s.times-circle", "#c0392b"),
    "pending": ("fa5s.circle", "#9aa0a6"),
}


class LesionList(QTableWidget):
    """One row per lesion: number, area, highest probability, decision."""

    lesion_activated = Signal(int)  # lesion id: centre the canvas on it

    def __init__(self, parent: QWidget | None = None):
        super().__init__(0, 4, parent)
        self.setHorizontalHeaderLabels(
            ["#", self.tr("Area (px)"), self.tr("Max p"), self.tr("Decision")]
        )
        self.verticalHeader().setVisible(False)
        self.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        self.setSelectionMode(QTableWidget.SelectionMode.SingleSelection)
        self.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.horizontalHeader().setStretchLastSection(True)
        self.setAlternatingRowColors(True)
        self._ids: list[int] = []
        self.itemSelectionChanged.connect(self._selected)
        self._icons = {
            k: qta.icon(name, color=colour) for k, (name, colour) in _DECISION_ICONS.items()
        }
        self._words = {
            "accepted": self.tr("accepted"),
            "rejected": self.tr("rejected"),
            "pending": self.tr("to review"),
        }

    def set_lesions(self, lesions: list[Lesion], decisions: dict[int, str]) -> None:
        current = self.current_id()
        self.blockSignals(True)
        self.setRowCount(len(lesions))
        self._ids = [lesion.id for lesion in lesions]
        for row, lesion in enumerate(lesions):
            decision = decisions.get(lesion.id, "pending")
            values = [
                str(lesion.id),
                f"{lesion.area_px:,}",
                f"{lesion.max_probability:.2f}",
                self._words[decision],
            ]
            for col, text in enumerate(values):
                item = QTableWidgetItem(text)
                if col < 3:
                    item.setTextAlignment(
                        Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
                    )
                if col == 3:
                    item.setIcon(self._icons[decision])
                self.setItem(row, col, item)
        if current in self._ids:
            self.selectRow(self._ids.index(current))
        self.blockSignals(False)

    def forget_current(self) -> None:
        """No lesion under review (another photo: its lesion 4 is not this one's)."""
        self.blockSignals(True)
        self.clearSelection()
        self.setCurrentCell(-1, -1)
        self.blockSignals(False)

    def select_id(self, lesion_id: int) -> None:
        """Select a lesion by id (emits lesion_activated, which centres the canvas on it)."""
        if lesion_id in self._ids:
            self.selectRow(self._ids.index(lesion_id))

    def current_id(self) -> int | None:
        row = self.currentRow()
        return self._ids[row] if 0 <= row < len(self._ids) else None

    def step(self, delta: int) -> int | None:
        """Select the next (+1) or previous (-1) lesion and return its id."""
        if not self._ids:
            return None
        row = self.currentRow()
        row = 0 if row < 0 else (row + delta) % len(self._ids)
        self.selectRow(row)
        return self._ids[row]

    def _selected(self) -> None:
        lesion_id = self.current_id()
        if lesion_id is not None:
            self.lesion_activated.emit(lesion_id)
