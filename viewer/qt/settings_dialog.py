"""The settings dialog: edits a copy of Settings; the window applies it on OK."""

from __future__ import annotations

import math
from dataclasses import replace

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QColor, QFontMetricsF
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
    QStyle,
    QStyleOptionFrame,
    QVBoxLayout,
    QWidget,
)

from viewer.qt.settings import Settings

#: The space a QLineEdit keeps on each side of its text, inside its contents rectangle
#: (QLineEditPrivate::horizontalMargin).
LINE_EDIT_MARGIN = 2


def relative_luminance(colour: QColor) -> float:
    """WCAG 2 relative luminance, 0 (black) to 1 (white)."""

    def linear(channel: float) -> float:
        return channel / 12.92 if channel <= 0.04045 else ((channel + 0.055) / 1.055) ** 2.4

    r, g, b = (linear(c) for c in (colour.redF(), colour.greenF(), colour.blueF()))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast_ratio(a: QColor, b: QColor) -> float:
    """WCAG 2 contrast ratio, 1 to 21 (4.5 is the bar for normal text)."""
    high, low = sorted((relative_luminance(a), relative_luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def text_colour_on(background: QColor) -> QColor:
    """Black or white, whichever reads better on `background`. HSL lightness is not it:
    the overlay's cyan has a lightness of one half yet is nearly as bright as white, so
    white text on it could not be read."""
    black, white = QColor(Qt.GlobalColor.black), QColor(Qt.GlobalColor.white)
    return (
        black if contrast_ratio(black, background) >= contrast_ratio(white, background) else white
    )


def fit_placeholder(edit: QLineEdit) -> None:
    """Never narrower than its placeholder in the language in use: a hint cut off in
    the middle says nothing."""
    option = QStyleOptionFrame()
    edit.initStyleOption(option)
    margins = edit.textMargins()
    # fractional advances: a width rounded down elides the text's last letters
    text = math.ceil(QFontMetricsF(edit.font()).horizontalAdvance(edit.placeholderText()))
    inner = QSize(
        text + margins.left() + margins.right() + 2 * LINE_EDIT_MARGIN,
        edit.sizeHint().height(),
    )
    size = edit.style().sizeFromContents(QStyle.ContentsType.CT_LineEdit, option, inner, edit)
    edit.setMinimumWidth(max(size.width(), edit.minimumSizeHint().width()))


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
        for edit in (self.reviewer, self.label_dir, self.remote):
            fit_placeholder(edit)
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
        colour, text = self._colour.name(), text_colour_on(self._colour).name()
        self.colour_button.setText(colour)
        # With a border of its own the button is painted flat in the colour itself; with
        # only a background colour, the style shades it into a lighter gradient.
        self.colour_button.setStyleSheet(
            f"QPushButton {{ background-color: {colour}; color: {text};"
            " border: 1px solid palette(dark); border-radius: 3px; padding: 4px; }"
            " QPushButton:focus { border: 2px solid palette(highlight); }"
        )

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
