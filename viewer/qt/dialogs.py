"""The app's small dialogs: each asks one question and returns the answer."""

from __future__ import annotations

from PySide6.QtCore import QCoreApplication
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QMessageBox,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from inference import __version__
from inference.labels import ProvenanceRecord
from viewer.model.autosave import AutosaveState
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
    parent: QWidget, photo_name: str, theirs: ProvenanceRecord | None
) -> bool:
    """The label changed on disk since it was opened: overwrite it anyway?"""
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
            "Dialogs", "Overwrite their label with yours? Your edits stay open if you cancel."
        )
    )
    box.setStandardButtons(QMessageBox.StandardButton.Save | QMessageBox.StandardButton.Cancel)
    box.button(QMessageBox.StandardButton.Save).setText(
        QCoreApplication.translate("Dialogs", "Overwrite")
    )
    box.setDefaultButton(QMessageBox.StandardButton.Cancel)
    return box.exec() == QMessageBox.StandardButton.Save


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
            "<p>The shipped model and sample photos use the IDRiD dataset (c) Prasanna Porwal, "
            "Samiksha Pachade and Manesh Kokare, CC BY 4.0; Porwal et al., Data 2018, 3(3):25.</p>",
        ).format(version=__version__, model=model_text),
    )
