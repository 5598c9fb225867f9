"""The right-hand panel: overlay controls, the photo's review status, its lesions."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from inference import THRESHOLD_STEP, FieldOfView
from viewer.model.document import Document
from viewer.qt.lesion_list import LesionList

THRESHOLD_STEPS = round(1 / THRESHOLD_STEP)  # the slider's steps of probability


class ReviewPanel(QWidget):
    overlay_toggled = Signal(bool)
    opacity_changed = Signal(float)
    threshold_changed = Signal(float)
    outline_toggled = Signal(bool)
    preset_chosen = Signal(str)
    status_chosen = Signal(str)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.lesions = LesionList()
        lesions = QGroupBox(self.tr("Suggested lesions"))
        QVBoxLayout(lesions).addWidget(self.lesions)
        layout = QVBoxLayout(self)
        layout.addWidget(self._overlay_group())
        layout.addWidget(self._review_group())
        layout.addWidget(lesions, 1)

    def _overlay_group(self) -> QGroupBox:
        """Overlay on/off, opacity, threshold, outline and the display preset."""
        self.show_overlay = QCheckBox(self.tr("Show overlay"))
        self.show_overlay.setChecked(True)
        self.show_overlay.toggled.connect(self.overlay_toggled)
        self.outline = QCheckBox(self.tr("Outline only"))
        self.outline.toggled.connect(self.outline_toggled)
        self.opacity = QSlider(Qt.Orientation.Horizontal)
        self.opacity.setRange(0, 100)
        self.opacity.valueChanged.connect(lambda v: self.opacity_changed.emit(v / 100))
        self.threshold = QSlider(Qt.Orientation.Horizontal)
        self.threshold.setRange(1, THRESHOLD_STEPS - 1)
        self.threshold.setPageStep(5)
        self.threshold_label = QLabel()
        self.threshold_label.setMinimumWidth(40)
        self.threshold.valueChanged.connect(self._threshold_moved)
        threshold_row = QHBoxLayout()
        threshold_row.addWidget(self.threshold, 1)
        threshold_row.addWidget(self.threshold_label)
        self.preset = QComboBox()
        for key, text in (
            ("original", self.tr("Original colours")),
            ("green", self.tr("Red-free (green)")),
            ("clahe", self.tr("Contrast enhanced (CLAHE)")),
        ):
            self.preset.addItem(text, key)
        self.preset.currentIndexChanged.connect(
            lambda _i: self.preset_chosen.emit(str(self.preset.currentData()))
        )

        overlay = QGroupBox(self.tr("Overlay"))
        form = QFormLayout(overlay)
        form.addRow(self.show_overlay)
        form.addRow(self.tr("Opacity"), self.opacity)
        form.addRow(self.tr("Threshold"), threshold_row)
        form.addRow(self.outline)
        form.addRow(self.tr("Display"), self.preset)
        return overlay

    def _review_group(self) -> QGroupBox:
        """The photo's review status, what changed against the suggestion, and notes on
        what the model saw (an estimated field of view, a photo without colour)."""
        review = QGroupBox(self.tr("Review"))
        box = QVBoxLayout(review)
        row = QHBoxLayout()
        self.status_buttons = QButtonGroup(self)
        for key, text in (
            ("todo", self.tr("To do")),
            ("in_review", self.tr("In review")),
            ("accepted", self.tr("Accepted")),
            ("rejected", self.tr("Rejected")),
        ):
            button = QPushButton(text)
            button.setCheckable(True)
            button.setProperty("status", key)
            self.status_buttons.addButton(button)
            row.addWidget(button)
        self.status_buttons.setExclusive(True)
        self.status_buttons.buttonClicked.connect(
            lambda b: self.status_chosen.emit(str(b.property("status")))
        )
        box.addLayout(row)
        self.changes = QLabel()
        self.changes.setWordWrap(True)
        box.addWidget(self.changes)
        # Shown only when the model saw an estimated field of view: the reviewer should
        # check the suggestion near the photo's edge.
        self.fov_note = QLabel()
        self.fov_note.setWordWrap(True)
        self.fov_note.setObjectName("fovNote")
        self.fov_note.setStyleSheet("QLabel#fovNote { color: #b35c00; }")
        self.fov_note.hide()
        box.addWidget(self.fov_note)
        self.colour_note = QLabel(
            self.tr(
                "This photo has no colour (greyscale or red-free). The model was trained on "
                "colour photos and finds fewer lesions on it: look for the ones it missed."
            )
        )
        self.colour_note.setWordWrap(True)
        self.colour_note.setObjectName("colourNote")
        self.colour_note.setStyleSheet("QLabel#colourNote { color: #b35c00; }")
        self.colour_note.hide()
        box.addWidget(self.colour_note)
        return review

    def _threshold_moved(self, value: int) -> None:
        t = value / THRESHOLD_STEPS
        self.threshold_label.setText(f"{t:.2f}")
        self.threshold_changed.emit(t)

    def set_threshold(self, t: float | None) -> None:
        """Show a threshold without re-emitting it (model to widget, signals blocked); None:
        no model suggestion to threshold, so no figure that could be mistaken for one."""
        if t is None:
            self.threshold_label.setText("–")
            return
        self.threshold.blockSignals(True)
        self.threshold.setValue(round(t * THRESHOLD_STEPS))
        self.threshold.blockSignals(False)
        self.threshold_label.setText(f"{t:.2f}")

    def set_opacity(self, opacity: float) -> None:
        self.opacity.blockSignals(True)
        self.opacity.setValue(round(opacity * 100))
        self.opacity.blockSignals(False)

    def set_overlay_visible(self, visible: bool) -> None:
        self.show_overlay.blockSignals(True)
        self.show_overlay.setChecked(visible)
        self.show_overlay.blockSignals(False)

    def set_outline(self, outline: bool) -> None:
        self.outline.blockSignals(True)
        self.outline.setChecked(outline)
        self.outline.blockSignals(False)

    def set_preset(self, preset: str) -> None:
        self.preset.blockSignals(True)
        self.preset.setCurrentIndex(max(self.preset.findData(preset), 0))
        self.preset.blockSignals(False)

    def set_status(self, status: str) -> None:
        for button in self.status_buttons.buttons():
            button.setChecked(button.property("status") == status)

    def set_has_model(self, has_model: bool) -> None:
        for widget in (self.threshold, self.show_overlay, self.opacity, self.outline):
            widget.setEnabled(has_model)

    def show_document(
        self, doc: Document | None, *, model_pending: bool = False, threshold_known: bool = True
    ) -> None:
        """Everything the panel says about one document (None: no photo open).
        `model_pending`: the model has not run on it yet; `threshold_known`: a model opened
        it, so its default threshold is a real figure even without a suggestion."""
        if doc is None:
            self.set_has_model(False)
            self.set_fov_note(None)
            self.colour_note.hide()
            self.lesions.set_lesions([], {})
            self.set_changes(None, None, None)
            return
        self.set_has_model(doc.has_model)
        self.set_fov_note(doc.prediction.geometry.fov if doc.prediction else None)
        self.colour_note.setVisible(doc.no_colour)
        self.set_threshold(doc.threshold if doc.has_model or threshold_known else None)
        self.set_status(doc.status)
        self.lesions.set_lesions(doc.lesions, doc.decisions)
        changes = doc.changes()
        if changes is None:
            self.set_changes(None, None, None, model_pending=model_pending)
        else:
            self.set_changes(
                changes.pixels_added, changes.pixels_removed, changes.dice_vs_suggestion
            )

    def set_fov_note(self, fov: FieldOfView | None) -> None:
        """Say when the field of view the model saw was estimated or run on request."""
        if fov is None or not fov.estimated:
            self.fov_note.hide()
            return
        if fov.forced:
            text = self.tr(
                "Run on request: this photo was refused as not a fundus photograph, and the "
                "model saw the whole photo. Check the suggestion with care."
            )
        else:
            text = self.tr(
                "Field of view estimated: no circular edge was found, so the suggestion may "
                "be off near the photo's edge."
            )
        self.fov_note.setText(text)
        self.fov_note.setToolTip(fov.note)
        self.fov_note.show()

    def set_changes(
        self,
        added: int | None,
        removed: int | None,
        dice: float | None,
        *,
        model_pending: bool = False,
    ) -> None:
        """What the reviewer changed against the suggestion; `model_pending`: the model has
        not run on this photo yet (never shown as "no suggestion")."""
        if model_pending:
            self.changes.setText(
                self.tr(
                    "The model has not run on this photo yet: its suggestion appears here "
                    "as soon as the model is ready."
                )
            )
        elif added is None or removed is None or dice is None:
            self.changes.setText(self.tr("No model suggestion for this photo."))
        else:
            self.changes.setText(
                self.tr(
                    "Against the suggestion: {added} px added, {removed} px removed, Dice {dice}"
                ).format(added=f"{added:,}", removed=f"{removed:,}", dice=f"{dice:.3f}")
            )
