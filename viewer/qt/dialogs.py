"""The app's small dialogs: each asks one question and returns the answer."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QCoreApplication
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QInputDialog,
    QLabel,
    QMessageBox,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from inference import IDRID_ATTRIBUTION, __version__
from inference.labels import ProvenanceRecord
from viewer.model.autosave import AutosaveState
from viewer.model.mask_difference import MaskDifference
from viewer.qt.actions import shortcut_sheet_html


def ask_save_changes(parent: QWidget, photo_name: str) -> str:
    """'save', 'discard' or 'cancel' for a photo with unsaved edits."""
    box = QMessageBox(parent)
    box.setIcon(QMessageBox.Icon.Question)
    box.setWindowTitle(QCoreApplication.translate("Dialogs", "Unsaved changes"))
    box.setText(
        QCoreApplication.translate("Dialogs", "Save your changes to {name}?").format(
            name=photo_name
        )
    )
    box.setInformativeText(
        QCoreApplication.translate(
            "Dialogs", "They are autosaved until you decide, so nothing is lost on a crash."
        )
    )
    box.setStandardButtons(
        QMessageBox.StandardButton.Save
        | QMessageBox.StandardButton.Discard
        | QMessageBox.StandardButton.Cancel
    )
    box.setDefaultButton(QMessageBox.StandardButton.Save)
    answer = box.exec()
    if answer == QMessageBox.StandardButton.Save:
        return "save"
    if answer == QMessageBox.StandardButton.Discard:
        return "discard"
    return "cancel"


def ask_overwrite_conflict(
    parent: QWidget,
    photo_name: str,
    theirs: ProvenanceRecord | None,
    difference: Callable[[], MaskDifference | None] | None = None,
) -> bool:
    """The label changed on disk since it was opened: overwrite it anyway (theirs is kept as
    a backup)? `difference` draws their mask against yours on request."""
    who = (
        theirs.reviewer
        if theirs is not None and theirs.reviewer
        else QCoreApplication.translate("Dialogs", "someone else")
    )
    when = theirs.modified.strftime("%Y-%m-%d %H:%M") if theirs is not None else "?"
    box = QMessageBox(parent)
    box.setIcon(QMessageBox.Icon.Warning)
    box.setWindowTitle(QCoreApplication.translate("Dialogs", "Label changed on disk"))
    box.setText(
        QCoreApplication.translate(
            "Dialogs", "The label of {name} was saved by {who} at {when} after you opened it."
        ).format(name=photo_name, who=who, when=when)
    )
    box.setInformativeText(
        QCoreApplication.translate(
            "Dialogs",
            "Overwrite their label with yours? Theirs is kept in the label folder's "
            "'overwritten' folder. Your edits stay open if you cancel.",
        )
    )
    overwrite = box.addButton(
        QCoreApplication.translate("Dialogs", "Overwrite"), QMessageBox.ButtonRole.AcceptRole
    )
    show_both = None
    if difference is not None:
        show_both = box.addButton(
            QCoreApplication.translate("Dialogs", "Show both masks…"),
            QMessageBox.ButtonRole.ActionRole,
        )
        # an action button would close the box: it shows the picture and keeps the question
        show_both.clicked.disconnect()
        show_both.clicked.connect(lambda: show_mask_difference(box, who, difference()))
    cancel = box.addButton(QMessageBox.StandardButton.Cancel)
    box.setDefaultButton(cancel)
    box.exec()
    return box.clickedButton() is overwrite


def show_mask_difference(parent: QWidget, who: str, difference: MaskDifference | None) -> None:
    dialog = QDialog(parent)
    dialog.setWindowTitle(QCoreApplication.translate("Dialogs", "Their mask and yours"))
    layout = QVBoxLayout(dialog)
    if difference is None:
        layout.addWidget(
            QLabel(QCoreApplication.translate("Dialogs", "Their mask cannot be read."))
        )
    else:
        image = difference.image
        qimage = QImage(
            image.data,
            image.shape[1],
            image.shape[0],
            3 * image.shape[1],
            QImage.Format.Format_RGB888,
        ).copy()
        picture = QLabel()
        picture.setPixmap(QPixmap.fromImage(qimage))
        layout.addWidget(picture)
        layout.addWidget(
            QLabel(
                QCoreApplication.translate(
                    "Dialogs",
                    "Red: only {who}'s ({theirs} px). Cyan: only yours ({yours} px). "
                    "White: both ({both} px).",
                ).format(
                    who=who,
                    theirs=f"{difference.only_theirs:,}",
                    yours=f"{difference.only_yours:,}",
                    both=f"{difference.both:,}",
                )
            )
        )
    buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, parent=dialog)
    buttons.rejected.connect(dialog.reject)
    layout.addWidget(buttons)
    dialog.exec()


def ask_folder_for_same_named_photo(parent: QWidget, message: str, start: str) -> str | None:
    """The label folder holds another photo's label under this photo's name: where else?"""
    box = QMessageBox(parent)
    box.setIcon(QMessageBox.Icon.Warning)
    box.setWindowTitle(QCoreApplication.translate("Dialogs", "Another photo's label"))
    box.setText(message)
    box.setInformativeText(
        QCoreApplication.translate(
            "Dialogs",
            "Two photos whose names differ only in their extension cannot keep their labels "
            "in one folder. Choose another label folder for your labels; the other photo's "
            "label stays as it is.",
        )
    )
    choose = box.addButton(
        QCoreApplication.translate("Dialogs", "Choose a label folder…"),
        QMessageBox.ButtonRole.AcceptRole,
    )
    box.addButton(QMessageBox.StandardButton.Cancel)
    box.exec()
    if box.clickedButton() is not choose:
        return None
    folder = QFileDialog.getExistingDirectory(
        parent, QCoreApplication.translate("Dialogs", "Label folder"), start
    )
    return folder or None


def ask_restore_autosave(parent: QWidget, photo_name: str, state: AutosaveState) -> bool:
    box = QMessageBox(parent)
    box.setIcon(QMessageBox.Icon.Question)
    box.setWindowTitle(QCoreApplication.translate("Dialogs", "Recover unsaved edits"))
    box.setText(
        QCoreApplication.translate(
            "Dialogs", "Hemaview closed without saving your edits to {name}."
        ).format(name=photo_name)
    )
    box.setInformativeText(
        QCoreApplication.translate("Dialogs", "Restore the edits autosaved at {when}?").format(
            when=state.saved_at.astimezone().strftime("%Y-%m-%d %H:%M")
        )
    )
    box.setStandardButtons(QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No)
    box.setDefaultButton(QMessageBox.StandardButton.Yes)
    return box.exec() == QMessageBox.StandardButton.Yes


def ask_accept_without_model(parent: QWidget, photo_name: str, reason: str, can_run: bool) -> str:
    """A photo with no model suggestion and nothing drawn: 'accept' (as no haemorrhage, the
    reviewer's own decision), 'run' (the model anyway) or 'cancel'."""
    box = QMessageBox(parent)
    box.setIcon(QMessageBox.Icon.Warning)
    box.setWindowTitle(QCoreApplication.translate("Dialogs", "No model suggestion"))
    box.setText(
        QCoreApplication.translate(
            "Dialogs",
            "{name} has no model suggestion to review, and nothing is drawn on it.",
        ).format(name=photo_name)
    )
    informative = QCoreApplication.translate(
        "Dialogs",
        "Accepting it records your own decision that it shows no haemorrhage, not a review "
        "of the model's suggestion.",
    )
    if reason:
        informative = f"{reason}\n\n{informative}"
    box.setInformativeText(informative)
    accept = box.addButton(
        QCoreApplication.translate("Dialogs", "Accept as no haemorrhage"),
        QMessageBox.ButtonRole.AcceptRole,
    )
    run = None
    if can_run:
        run = box.addButton(
            QCoreApplication.translate("Dialogs", "Run the model anyway"),
            QMessageBox.ButtonRole.ActionRole,
        )
    cancel = box.addButton(QMessageBox.StandardButton.Cancel)
    box.setDefaultButton(run or cancel)
    box.exec()
    clicked = box.clickedButton()
    if clicked is accept:
        return "accept"
    if run is not None and clicked is run:
        return "run"
    return "cancel"


def ask_reviewer_name(parent: QWidget) -> str:
    """The reviewer's name for the labels they save ('' when they decline)."""
    name, ok = QInputDialog.getText(
        parent,
        QCoreApplication.translate("Dialogs", "Your name"),
        QCoreApplication.translate(
            "Dialogs",
            "Every saved label records who reviewed it. Your name (kept in Settings):",
        ),
    )
    return name.strip()[:80] if ok else ""


def ask_about_unsaved_edits(parent: QWidget, states: list[AutosaveState]) -> str:
    """At start-up, photos whose edits were never saved (a crash): 'open', 'later' or
    'discard'."""
    box = QMessageBox(parent)
    box.setIcon(QMessageBox.Icon.Warning)
    box.setWindowTitle(QCoreApplication.translate("Dialogs", "Unsaved edits from last time"))
    box.setText(
        QCoreApplication.translate(
            "Dialogs", "Hemaview closed without saving edits to {n} photo(s):"
        ).format(n=len(states))
    )
    lines = [
        f"{Path(s.photo_path).name}  ({s.saved_at.astimezone().strftime('%Y-%m-%d %H:%M')})"
        for s in states[:15]
    ]
    if len(states) > 15:
        lines.append("…")
    box.setInformativeText(
        "\n".join(lines)
        + "\n\n"
        + QCoreApplication.translate(
            "Dialogs", "Open them to restore the edits, or keep them for later."
        )
    )
    open_button = box.addButton(
        QCoreApplication.translate("Dialogs", "Open these photos"),
        QMessageBox.ButtonRole.AcceptRole,
    )
    box.addButton(QCoreApplication.translate("Dialogs", "Later"), QMessageBox.ButtonRole.RejectRole)
    discard = box.addButton(
        QCoreApplication.translate("Dialogs", "Discard the edits"),
        QMessageBox.ButtonRole.DestructiveRole,
    )
    box.setDefaultButton(open_button)
    box.exec()
    if box.clickedButton() is open_button:
        return "open"
    if box.clickedButton() is discard:
        return "discard"
    return "later"


def ask_label_folder(parent: QWidget, problem: str, start: str = "") -> str | None:
    QMessageBox.information(
        parent,
        QCoreApplication.translate("Dialogs", "Choose a label folder"),
        QCoreApplication.translate(
            "Dialogs",
            "Labels cannot be saved beside these photos: {problem}\n\n"
            "Choose a folder for the labels.",
        ).format(problem=problem),
    )
    folder = QFileDialog.getExistingDirectory(
        parent, QCoreApplication.translate("Dialogs", "Label folder"), start
    )
    return folder or None


def show_shortcuts(parent: QWidget) -> None:
    dialog = QDialog(parent)
    dialog.setWindowTitle(QCoreApplication.translate("Dialogs", "Keyboard shortcuts"))
    view = QTextBrowser(dialog)
    view.setHtml(shortcut_sheet_html())
    buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, parent=dialog)
    buttons.rejected.connect(dialog.reject)
    layout = QVBoxLayout(dialog)
    layout.addWidget(view)
    layout.addWidget(buttons)
    dialog.resize(520, 640)
    dialog.exec()


def show_about(parent: QWidget, model_text: str) -> None:
    QMessageBox.about(
        parent,
        QCoreApplication.translate("Dialogs", "About Hemaview"),
        QCoreApplication.translate(
            "Dialogs",
            "<h3>Hemaview {version}</h3><p>Annotation assistance for haemorrhages in colour "
            "fundus photographs. It assists review; it does not diagnose.</p><p>{model}</p>"
            "<p>The shipped model and sample photos use the {attribution}</p>",
        ).format(version=__version__, model=model_text, attribution=IDRID_ATTRIBUTION),
    )
