"""The settings dialog: edits a copy of Settings; the window applies it on OK."""

from __future__ import annotations

from dataclasses import replace

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QCheckBox,
    QColorDialog,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLineEdit,
    QPushButton,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from viewer.qt.settings import Settings


class SettingsDialog(QDialog):
    def __init__(self, settings: Settings, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle(self.tr("Settings"))
        self._settings = replace(settings, recent_folders=list(settings.recent_folders))
        self._colour = QColor(settings.overlay_colour)

        self.reviewer = QLineEdit(settings.reviewer)
        self.reviewer.setPlaceholderText(self.tr("Name recorded in saved labels"))
        self.language = QComboBox()
        for code, name in (
            ("auto", self.tr("System language")),
            ("en", "English"),
            ("ko", "한국어"),
        ):
            self.language.addItem(name, code)
        self.language.setCurrentIndex(max(self.language.findData(settings.language), 0))

        self.colour_button = QPushButton()
        self.colour_button.clicked.connect(self._pick_colour)
        self._show_colour()
        self.opacity = QSlider(Qt.Orientation.Horizontal)
        self.opacity.setRange(0, 100)
        self.opacity.setValue(round(settings.overlay_opacity * 100))
        self.filled = QCheckBox(self.tr("Filled (otherwise outline only)"))
        self.filled.setChecked(settings.overlay_filled)

        self.label_dir = QLineEdit(settings.label_dir)
        self.label_dir.setPlaceholderText(self.tr("A hemaview-labels folder beside the photos"))
        browse = QPushButton(self.tr("Browse…"))
        browse.clicked.connect(self._browse_labels)
        label_row = QHBoxLayout()
        label_row.addWidget(self.label_dir, 1)
        label_row.addWidget(browse)

        self.remote = QLineEdit(settings.remote_address)
        self.remote.setPlaceholderText(
            self.tr("host:port of a Triton server (empty: this computer only)")
        )
        self.budget = QDoubleSpinBox()
        self.budget.setRange(0.0, 3600.0)
        self.budget.setDecimals(2)
        self.budget.setSuffix(self.tr(" s per 10 photos"))
        self.budget.setValue(settings.remote_budget_s)
        self.tls = QCheckBox(self.tr("Use TLS"))
        self.tls.setChecked(settings.remote_tls)

        review = QGroupBox(self.tr("Review"))
        form = QFormLayout(review)
        form.addRow(self.tr("Reviewer"), self.reviewer)
        form.addRow(self.tr("Language"), self.language)
        form.addRow(self.tr("Label folder"), label_row)
        overlay = QGroupBox(self.tr("Overlay"))
        form = QFormLayout(overlay)
        form.addRow(self.tr("Colour"), self.colour_button)
        form.addRow(self.tr("Opacity"), self.opacity)
        form.addRow("", self.filled)
        remote = QGroupBox(self.tr("Remote inference server"))
        form = QFormLayout(remote)
        form.addRow(self.tr("Address"), self.remote)
        form.addRow(self.tr("Local time budget"), self.budget)
        form.addRow("", self.tls)

        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        for box in (review, overlay, remote):
            layout.addWidget(box)
        layout.addWidget(buttons)

    def _show_colour(self) -> None:
        self.colour_button.setText(self._colour.name())
        text = "black" if self._colour.lightness() > 128 else "white"
        self.colour_button.setStyleSheet(f"background-color: {self._colour.name()}; color: {text}")

    def _pick_colour(self) -> None:
        colour = QColorDialog.getColor(self._colour, self, self.tr("Overlay colour"))
        if colour.isValid():
            self._colour = colour
            self._show_colour()

    def _browse_labels(self) -> None:
        folder = QFileDialog.getExistingDirectory(
            self, self.tr("Label folder"), self.label_dir.text()
        )
        if folder:
            self.label_dir.setText(folder)

    def result_settings(self) -> Settings:
        s = self._settings
        s.reviewer = self.reviewer.text()
        s.language = str(self.language.currentData())
        s.overlay_colour = self._colour.name()
        s.overlay_opacity = self.opacity.value() / 100
        s.overlay_filled = self.filled.isChecked()
        s.label_dir = self.label_dir.text().strip()
        s.remote_address = self.remote.text().strip()
        s.remote_budget_s = self.budget.value()
        s.remote_tls = self.tls.isChecked()
        return s.clamped()
