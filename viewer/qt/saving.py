"""Saving labels from the window: the reviewer's name, conflicts with a colleague's save or
with another photo's label, a folder that refuses writes, the autosave after every edit,
edits a crash left unsaved, and the export for training. Widgets show; this decides."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject
from PySide6.QtWidgets import QFileDialog, QMessageBox

from inference import HemaviewError
from viewer.model.library import find_photos
from viewer.model.mask_difference import MaskDifference, draw_mask_difference
from viewer.model.session import (
    LabelConflict,
    LabelFolderNotWritable,
    OpenedPhoto,
    export_accepted_labels,
)
from viewer.qt import dialogs
from viewer.qt.settings import save_settings

if TYPE_CHECKING:
    from viewer.qt.main_window import MainWindow


class LabelSaving(QObject):
    def __init__(self, window: MainWindow):
        super().__init__(window)
        self.window = window
        self._running = False  # an autosave write is in flight
        self._again = False  # edits came in meanwhile: write again when it is done
        window.writer.done.connect(lambda _token, _value: self.autosave_finished(None))
        window.writer.error.connect(lambda _token, message: self.autosave_finished(message))

    def save(self, *, overwrite: bool = False) -> bool:
        w = self.window
        if w.current is None:
            return False
        doc = w.current.document
        if not w.settings.reviewer:
            # Every saved label names who reviewed it: ask once, before the first save.
            name = dialogs.ask_reviewer_name(w)
            if not name:
                w.statusBar().showMessage(
                    self.tr("Not saved: a label needs the name of its reviewer."), 8000
                )
                return False
            w.settings.reviewer = name
            save_settings(w.settings)
        try:
            # A label folder chosen in settings (or after a refusal) wins over the one the
            # photo was opened with.
            record = w.session.save(
                doc, w.session.label_dir, reviewer=w.settings.reviewer, overwrite=overwrite
            )
        except LabelConflict as conflict:
            if conflict.other_photo:
                folder = dialogs.ask_folder_for_same_named_photo(
                    w, str(conflict), str(doc.path.parent)
                )
                if folder is None:
                    return False
                w.settings.label_dir = folder
                w.session.label_dir = Path(folder)
                save_settings(w.settings)
                return self.save()
            opened, found = w.current, conflict

            def difference() -> MaskDifference | None:
                theirs = w.session.their_mask(found)
                if theirs is None or theirs.shape != doc.mask.shape:
                    return None
                return draw_mask_difference(opened.photo.rgb, theirs, doc.mask)

            if dialogs.ask_overwrite_conflict(w, doc.path.name, conflict.theirs, difference):
                return self.save(overwrite=True)
            return False
        except LabelFolderNotWritable as exc:
            folder = dialogs.ask_label_folder(w, str(exc), str(doc.path.parent))
            if folder is None:
                return False
            w.settings.label_dir = folder
            w.session.label_dir = Path(folder)
            save_settings(w.settings)
            return self.save(overwrite=overwrite)
        except HemaviewError as exc:
            QMessageBox.warning(w, self.tr("Not saved"), str(exc))
            return False
        w.photos.library.set_saved(doc.path, record)
        w.photos.entry_changed(doc.path)
        w.statusBar().showMessage(
            self.tr("Saved the label of {name}").format(name=doc.path.name), 5000
        )
        w.show_document_state()
        return True

    def ask_on_open(self, opened: OpenedPhoto) -> None:
        """The questions a photo opening can raise, over that photo: its edits a crash left
        unsaved (restore or discard them), and a photo folder that refuses labels (a shared
        archive: choose a label folder of its own)."""
        w = self.window
        doc = opened.document
        if opened.autosave is not None:
            w.show_document_state()  # the question is about this photo: show its lesions
            if dialogs.ask_restore_autosave(w, doc.path.name, opened.autosave):
                w.session.restore_autosave(doc)
                w.canvas.refresh_mask(None)
            else:
                w.autosaver.discard(doc.path)
        if opened.label_folder_problem and w.session.label_dir is None:
            folder = dialogs.ask_label_folder(w, opened.label_folder_problem, str(doc.path.parent))
            if folder:
                w.settings.label_dir = folder
                w.session.label_dir = Path(folder)
                save_settings(w.settings)

    def autosave(self) -> None:
        """After every edit: the unsaved state to disk in the background, so a crash loses
        nothing. One write at a time; edits made meanwhile go in the next one."""
        w = self.window
        if w.current is None or not w.current.document.dirty:
            return
        if self._running:
            self._again = True
            return
        snapshot = w.session.snapshot_for_autosave(w.current.document)
        if snapshot is not None:
            self._running = True
            w.writer.submit(w.autosaver.write, snapshot)

    def autosave_finished(self, error: str | None) -> None:
        w = self.window
        self._running = False
        if error is not None:
            w.statusBar().showMessage(
                self.tr(
                    "Autosave failed: {reason}. Your edits are still here; save them with Ctrl+S."
                ).format(reason=error)
            )
        if self._again:
            self._again = False
            self.autosave()

    def export_accepted(self) -> None:
        w = self.window
        folder = QFileDialog.getExistingDirectory(w, self.tr("Export accepted labels to"))
        if not folder:
            return
        report = export_accepted_labels(
            [e.path for e in w.photos.library.entries], folder, w.photos.library.label_dir_for
        )
        text = self.tr("{n} accepted labels exported to {folder}.").format(
            n=len(report.exported), folder=report.folder
        )
        if report.skipped:
            text += "\n\n" + "\n".join(report.skipped[:20])
        QMessageBox.information(w, self.tr("Export accepted labels"), text)

    def offer_unsaved_edits(self, sources: Sequence[str] = ()) -> None:
        """At start-up: the photos whose edits a crash left unsaved, listed at once.

        Asked before `sources` (the photos and folders the app was started with) open, so
        no photo shows under the question and no second question (restore this photo?)
        stacks on it. "Open these photos" keeps what the reviewer opens (`sources`, or the
        list open now): a recovered photo in it is selected; one outside it brings its
        folder along, so its neighbours are there too."""
        w = self.window
        pending = [s for s in w.autosaver.pending() if Path(s.photo_path).is_file()]
        answer = dialogs.ask_about_unsaved_edits(w, pending) if pending else "later"
        if answer == "discard":
            for state in pending:
                w.autosaver.discard(state.photo_path)
        recovered = [Path(s.photo_path) for s in pending] if answer == "open" else []
        if sources:
            w.open_sources(list(sources))
        elif recovered and not w.photos.library.entries:
            w.open_sources([str(f) for f in _folders_of(recovered)])
        if recovered:
            self._select_recovered(recovered)

    def _select_recovered(self, recovered: list[Path]) -> None:
        """Add the folders of recovered photos missing from the list, then open the first
        (its restore question follows when it has loaded)."""
        w = self.window
        missing = _folders_of(p for p in recovered if w.photos.library.entry(p) is None)
        if missing:
            w.photos.add_photos(find_photos(missing))
            watched = set(w.watcher.directories())
            w.watcher.addPaths([str(f) for f in missing if str(f) not in watched])
            if w.segmenter is not None:
                w.start_preannotation()
        w.photos.set_current(recovered[0])


def _folders_of(photos: Iterable[Path]) -> list[Path]:
    """The photos' folders, each once, in the photos' order."""
    return list(dict.fromkeys(p.parent for p in photos))
