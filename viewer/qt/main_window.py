"""The main window: composes the photo list, the canvas and the review panel, and wires
actions to the document. Widgets only show and forward; the review state lives in
viewer.model."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QStandardPaths, Qt, QTimer
from PySide6.QtGui import QCloseEvent, QColor, QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import (
    QApplication,
    QDockWidget,
    QMainWindow,
    QWidget,
)

from inference import Segmenter, stepped_threshold
from viewer.model.autosave import Autosaver
from viewer.model.late_model import (
    opened_before_model,
    take_late_prediction,
    takes_late_prediction,
)
from viewer.model.pred_cache import PredictionCache
from viewer.model.session import (
    OpenedPhoto,
    ReviewSession,
)
from viewer.model.view_state import ViewState
from viewer.qt import dialogs
from viewer.qt.actions import build_actions, install_menus
from viewer.qt.canvas import ImageCanvas
from viewer.qt.lesion_review import LesionReview
from viewer.qt.photo_list import PhotoListWidget
from viewer.qt.photo_sources import PhotoSources
from viewer.qt.preannotation import Preannotator
from viewer.qt.review_panel import ReviewPanel
from viewer.qt.saving import LabelSaving
from viewer.qt.settings import Settings, save_settings
from viewer.qt.settings_dialog import SettingsDialog
from viewer.qt.status_decisions import StatusDecisions
from viewer.qt.status_line import StatusLine
from viewer.qt.view_binding import ViewBinding
from viewer.qt.workers import PhotoLoader, TaskRunner, stop_all_jobs


def app_folder(kind: QStandardPaths.StandardLocation, name: str) -> Path:
    base = QStandardPaths.writableLocation(kind) or str(Path.home() / ".hemaview")
    return Path(base) / name


class MainWindow(QMainWindow):
    def __init__(
        self,
        settings: Settings,
        *,
        model_path: str | None = None,
        load_model: bool = True,
        autosaver: Autosaver | None = None,
    ):
        super().__init__()
        self.settings = settings
        self.setWindowTitle("Hemaview")
        self.setAcceptDrops(True)
        self.segmenter: Segmenter | None = None
        self.model_problem: str | None = None
        self.current: OpenedPhoto | None = None
        self._build_services(autosaver)
        self._build_widgets()
        self._build_controllers()
        self._wire()
        self._apply_settings()
        self.canvas.set_tool("pan")
        self._state_timer = QTimer(self)
        self._state_timer.setSingleShot(True)
        self._state_timer.setInterval(150)
        self._state_timer.timeout.connect(self.show_document_state)
        self.show_document_state()
        if load_model:
            # Photos opened before the model arrives are "not run yet", not "no model".
            self.session.model_pending = True
            self.model_loader.submit(Segmenter.open, model_path)
        else:
            self.status_line.show_no_model()

    # -- composition ---------------------------------------------------------------------

    def _build_services(self, autosaver: Autosaver | None) -> None:
        """The review session and the background work behind the widgets."""
        self.cache = PredictionCache(
            app_folder(QStandardPaths.StandardLocation.CacheLocation, "predictions")
        )
        # One autosaver per app session: a window rebuilt in another language takes over the
        # old one's, so its session lock is not left behind.
        self.autosaver = autosaver or Autosaver(
            app_folder(QStandardPaths.StandardLocation.AppDataLocation, "autosave")
        )
        self.session = ReviewSession(
            cache=self.cache, autosaver=self.autosaver, label_dir=self.settings.label_dir or None
        )
        self.loader = PhotoLoader(self.session, predict_if_missing=True, parent=self)
        # Separate runners, so each job's errors reach its own handler: a failed autosave
        # must never read as a model that failed to load.
        self.model_loader = TaskRunner(self)
        self.writer = TaskRunner(self)
        self.saving = LabelSaving(self)  # saves, conflicts, autosaves, export
        self._auto_open = False  # the photo being opened was chosen by us, not the reviewer

    def _build_widgets(self) -> None:
        self.canvas = ImageCanvas(self)
        self.setCentralWidget(self.canvas)
        self.photos = PhotoListWidget(
            thumbnail_dir=app_folder(QStandardPaths.StandardLocation.CacheLocation, "thumbnails")
        )
        for action in (self.photos.next_action, self.photos.previous_action):
            action.setShortcuts([])  # the window's own next/previous actions own those keys
        self.panel = ReviewPanel()
        self.sources = PhotoSources(
            self.photos,
            settings=lambda: self.settings,
            label_dir=lambda: self.session.label_dir,
            say=self.statusBar().showMessage,
            parent=self,
        )
        self.watcher = self.sources.watcher  # the crash restore and the hand-over add folders
        self.preannotator = Preannotator(
            self.photos, self.cache, lambda: self.settings, parent=self
        )
        self._dock(
            self.photos, self.tr("Photos"), Qt.DockWidgetArea.LeftDockWidgetArea, "photosDock"
        )
        self._dock(
            self.panel, self.tr("Review"), Qt.DockWidgetArea.RightDockWidgetArea, "reviewDock"
        )
        self.status_line = StatusLine(
            self.statusBar(),
            self.canvas,
            [
                self.preannotator.progress,
                self.preannotator.cancel_button,
                self.preannotator.remote_label,
            ],
        )
        # the labels tests and the About box read
        self.model_label = self.status_line.model_label
        self.brush_label = self.status_line.brush_label

    def _build_controllers(self) -> None:
        """What turns keys and clicks into document changes, each given what it uses."""
        say = self.statusBar().showMessage
        # overlay on/off, outline, opacity and preset: one state, bound in one place
        self.view = ViewState()
        self.review = LesionReview(
            self.panel.lesions,
            self.canvas,
            self.view,
            document=lambda: self.current.document if self.current is not None else None,
            edited=self._edited,
            say=say,
            parent=self,
        )
        self.decisions = StatusDecisions(
            self.panel,
            current=lambda: self.current,
            changed=self._document_changed,
            say=say,
            can_run_model=lambda: self.segmenter is not None,
            run_model=self.run_model_anyway,
            parent=self,
        )
        self.acts = build_actions(self, self._handlers())
        self.view_binding = ViewBinding(
            self.view, self.canvas, self.panel, self.acts, lambda: self.settings
        )
        self.recent_menu = install_menus(self, self.acts)

    def _dock(self, widget: QWidget, title: str, area: Qt.DockWidgetArea, name: str) -> None:
        dock = QDockWidget(title, self)
        dock.setObjectName(name)
        dock.setWidget(widget)
        dock.setFeatures(
            QDockWidget.DockWidgetFeature.DockWidgetMovable
            | QDockWidget.DockWidgetFeature.DockWidgetFloatable
        )
        self.addDockWidget(area, dock)

    def _handlers(self) -> dict:  # type: ignore[type-arg]
        c = self.canvas
        return {
            "open_folder": self.sources.choose_folder,
            "open_files": self.sources.choose_files,
            "save": self.save,
            "preannotate": self.start_preannotation,
            "export_accepted": lambda: self.saving.export_accepted(),
            "settings": self.edit_settings,
            "quit": self.close,
            "undo": lambda: self.review.step_history(c.undo),
            "redo": lambda: self.review.step_history(c.redo),
            "reset": self.review.reset,
            "threshold_up": lambda: self.nudge_threshold(+0.05),
            "threshold_down": lambda: self.nudge_threshold(-0.05),
            "zoom_in": c.zoom_in,
            "zoom_out": c.zoom_out,
            "fit": c.fit_to_window,
            "actual_size": c.actual_size,
            "next_photo": self.photos.select_next,
            "previous_photo": self.photos.select_previous,
            "tool_pan": lambda: c.set_tool("pan"),
            "tool_brush": lambda: c.set_tool("brush"),
            "tool_eraser": lambda: c.set_tool("eraser"),
            "tool_fill": lambda: c.set_tool("fill"),
            "tool_lasso_add": lambda: c.set_tool("lasso-add"),
            "tool_lasso_remove": lambda: c.set_tool("lasso-remove"),
            "brush_smaller": lambda: c.grow_brush(-1),
            "brush_larger": lambda: c.grow_brush(1),
            "next_lesion": lambda: self.panel.lesions.step(+1),
            "previous_lesion": lambda: self.panel.lesions.step(-1),
            "accept_lesion": lambda: self.review.decide("accepted"),
            "reject_lesion": lambda: self.review.decide("rejected"),
            "status_in_review": lambda: self.set_status("in_review"),
            "status_accepted": self.accept_and_next,
            "run_anyway": self.run_model_anyway,
            "status_rejected": lambda: self.set_status("rejected"),
            "shortcuts": lambda: dialogs.show_shortcuts(self),
            "about": lambda: dialogs.show_about(self, self.status_line.about_model(self.segmenter)),
        }

    def _wire(self) -> None:
        self.sources.opened.connect(self.open_sources)
        self.sources.added.connect(self._preannotate_listed)
        self.photos.current_changed.connect(self.open_photo)
        self.loader.loaded.connect(self._on_loaded)
        self.loader.load_failed.connect(self._on_load_failed)
        self.model_loader.done.connect(lambda _token, value: self._on_model(value))
        self.model_loader.error.connect(lambda _token, message: self._on_model_error(message))
        self.canvas.mask_edited.connect(lambda rect: self._edited(rect, repaint=False))
        self.canvas.notice.connect(lambda text: self.statusBar().showMessage(text, 4000))
        self.canvas.tool_changed.connect(self._tool_changed)
        self.panel.threshold_changed.connect(self.set_threshold)
        self.panel.status_chosen.connect(self.set_status)

    def _apply_settings(self) -> None:
        s = self.settings
        self.canvas.set_overlay_colour(QColor(s.overlay_colour))
        self.view_binding.load(s)
        self.canvas.set_brush_radius(s.brush_radius)
        self.session.label_dir = Path(s.label_dir) if s.label_dir else None
        self.recent_menu.clear()
        for folder in s.recent_folders:
            action = self.recent_menu.addAction(folder)
            action.triggered.connect(self._opener([folder]))
        self.recent_menu.setEnabled(bool(s.recent_folders))

    def _opener(self, sources: list[str]) -> Callable[[], None]:
        return lambda: self.open_sources(sources)

    # -- the model -------------------------------------------------------------------------

    def _on_model(self, value: object) -> None:
        if not isinstance(value, Segmenter):
            return
        self.set_segmenter(value)

    def set_segmenter(self, segmenter: Segmenter) -> None:
        self.segmenter = segmenter
        self.session.segmenter = segmenter
        self.canvas.clahe_recipe = segmenter.contract.preprocess
        self.status_line.show_model(segmenter)
        if segmenter.device != "cuda":
            self.statusBar().showMessage(segmenter.device_reason, 10000)
        self.session.model_pending = False
        self.preannotator.check_remote()
        if self.photos.library.entries:
            self.start_preannotation()
        self._reopen_without_model()

    def _reopen_without_model(self) -> None:
        """The model arrived: every photo opened or opening without it opens again with it.

        A load still in flight looked for the model before it arrived; asking again
        supersedes it (its result is dropped). The photo on screen gets its suggestion too,
        its edits kept (see `_on_loaded`)."""
        opening = self.loader.in_flight
        if opening is not None:
            self.loader.request(opening)
        elif (
            self.current is not None
            and not self.current.document.has_model
            and not self.current.not_fundus
        ):
            self.loader.request(self.current.document.path)

    def _on_model_error(self, message: str) -> None:
        self.session.model_pending = False
        if self.current is not None and self.current.model_pending:
            # no longer "not run yet": there will be no model this session
            self.current.model_pending = False
            self.current.prediction_error = self.tr("no model is loaded")
            self.show_document_state()
        self.model_problem = message
        self.status_line.show_no_model(message)
        self.statusBar().showMessage(
            self.tr("The model cannot be used: {reason}").format(reason=message)
        )

    # -- photos --------------------------------------------------------------------------

    def open_sources(self, sources: list[str]) -> None:
        if not self.leave_current():
            return
        first = self.sources.list(sources)
        self._apply_settings()  # the recent folders menu
        if first is not None:
            # a broken first file is skipped when it fails to load (see _on_load_failed)
            self._auto_open = True
            self.photos.set_current(first.path)
        self._preannotate_listed()

    def _preannotate_listed(self) -> None:
        if self.segmenter is not None:
            self.start_preannotation()
        elif self.model_problem is None:
            self.preannotator.mark_waiting()

    def open_photo(self, path: str) -> None:
        if self.current is not None and str(self.current.document.path) == path:
            return
        auto, self._auto_open = self._auto_open, False
        self._auto_opening = auto
        if not self.leave_current():
            if self.current is not None:
                self.photos.set_current(self.current.document.path)
            return
        self.statusBar().showMessage(self.tr("Opening {name}…").format(name=Path(path).name))
        self.loader.request(path)
        self.preannotator.prioritise(Path(path))

    def _on_loaded(self, path: str, opened: OpenedPhoto) -> None:
        if takes_late_prediction(self.current, opened):
            self._take_late_prediction(opened)
            return
        if self.current is None or self.current.document.path != opened.document.path:
            self.panel.lesions.forget_current()
        self.current = opened
        doc = opened.document
        self.sources.remember(doc.path)  # reopening the folder goes on here
        self.canvas.set_document(doc, opened.photo.rgb)
        self.statusBar().clearMessage()
        self.saving.ask_on_open(opened)
        note = self.status_line.opened_note(opened)
        if note:
            self.statusBar().showMessage(note)
        if opened.prediction is not None:
            self.photos.library.set_prediction(
                path, len(opened.prediction.lesions), opened.prediction.uncertainty
            )
            self.photos.entry_changed(path)
        self.show_document_state()
        if opened_before_model(opened, self.segmenter.model.sha256 if self.segmenter else None):
            self._reopen_without_model()

    def _take_late_prediction(self, opened: OpenedPhoto) -> None:
        """The suggestion for the photo on screen, which the reviewer began without one."""
        assert self.current is not None
        assert opened.prediction is not None
        take_late_prediction(self.current, opened)
        self.canvas.refresh_mask(None)
        self.statusBar().clearMessage()
        path = str(opened.document.path)
        lesions, unsure = len(opened.prediction.lesions), opened.prediction.uncertainty
        self.photos.library.set_prediction(path, lesions, unsure)
        self.photos.entry_changed(path)
        self.show_document_state()

    def _on_load_failed(self, path: str, message: str) -> None:
        self.current = None
        self.canvas.set_document(None, None)
        self.photos.library.set_failed(path, message, unreadable=True)
        self.photos.entry_changed(path)
        self.statusBar().showMessage(message)
        self.show_document_state()
        if getattr(self, "_auto_opening", False):
            # We chose this photo (the first of the folder): start at the next readable one.
            following = self.photos.library.first_readable()
            if following is not None:
                self._auto_open = True
                self.photos.set_current(following.path)

    def leave_current(self) -> bool:
        """Ask about unsaved edits before another photo replaces the current one."""
        if self.current is None or not self.current.document.dirty:
            return True
        doc = self.current.document
        answer = dialogs.ask_save_changes(self, doc.path.name)
        if answer == "save":
            return self.save()
        if answer == "discard":
            self.autosaver.discard(doc.path)
            return True
        return False

    # -- editing -------------------------------------------------------------------------

    def _edited(self, rect: object, *, repaint: bool = True) -> None:
        if rect is None or self.current is None:
            return
        if repaint:
            self.canvas.refresh_mask(rect)  # type: ignore[arg-type]
        self._document_changed()

    def _document_changed(self) -> None:
        self.show_document_state()
        self.saving.autosave()

    def set_status(self, status: str) -> None:
        self.decisions.set_status(status)

    def accept_and_next(self) -> None:
        """Ctrl+Return: accept the photo, save it, and open the next photo still to review."""
        if self.current is None:
            return
        self.set_status("accepted")
        doc = self.current.document
        if doc.status != "accepted" or not self.save():
            return
        following = self.photos.library.next_to_do(doc.path)
        if following is not None:
            self.photos.set_current(following.path)
        else:
            self.statusBar().showMessage(self.tr("Every photo in the list is reviewed."), 8000)

    def run_model_anyway(self) -> None:
        """Run the model on the current photo although it was refused as not a fundus
        photograph; the result says so wherever it goes."""
        if self.current is None or not self.current.not_fundus or self.segmenter is None:
            return
        if not self.leave_current():
            return
        path = self.current.document.path
        self.statusBar().showMessage(
            self.tr("Running the model on {name} anyway…").format(name=path.name)
        )
        self.loader.request(path, force=True)

    # -- overlay -------------------------------------------------------------------------

    def set_threshold(self, threshold: float) -> None:
        if self.current is None:
            return
        doc = self.current.document
        if doc.set_threshold(threshold):
            self.canvas.refresh_mask(None)
        elif doc.edited:
            self.statusBar().showMessage(
                self.tr(
                    "The threshold moves the model's suggestion; your edited mask stays "
                    "(Reset applies it)."
                ),
                5000,
            )
        # Lesions and change counts take tens of milliseconds on 12 MP: refresh them once
        # the slider rests, so the overlay itself follows the slider frame by frame.
        self.panel.set_threshold(doc.threshold)
        self._state_timer.start()

    def nudge_threshold(self, delta: float) -> None:
        if self.current is not None:
            self.set_threshold(stepped_threshold(self.current.document.threshold + delta))

    def _tool_changed(self, tool: str) -> None:
        name = "tool_" + tool.replace("-", "_")
        if name in self.acts:
            self.acts[name].setChecked(True)
        self.status_line.show_brush()

    def show_document_state(self) -> None:
        current = self.current
        doc = current.document if current is not None else None
        for name in ("save", "undo", "redo", "reset", "accept_lesion", "reject_lesion"):
            self.acts[name].setEnabled(doc is not None)
        self.acts["run_anyway"].setEnabled(
            current is not None and current.not_fundus and self.segmenter is not None
        )
        self.panel.show_document(
            doc,
            model_pending=current is not None and current.model_pending,
            threshold_known=current is not None and current.model_sha256 is not None,
        )
        if doc is None:
            self.setWindowTitle("Hemaview")
            return
        kept = sum(1 for les in doc.lesions if doc.decisions.get(les.id) != "rejected")
        # the list follows the live threshold and review state, saved or not
        if self.photos.library.set_live(doc.path, doc.status, kept if doc.has_model else None):
            self.photos.entry_changed(doc.path)
        self.acts["undo"].setEnabled(doc.history.can_undo)
        self.acts["redo"].setEnabled(doc.history.can_redo)
        self.setWindowTitle(f"{doc.path.name}{' *' if doc.dirty else ''} — Hemaview")
        self.review.show_marks()

    # -- saving --------------------------------------------------------------------------

    def save(self, *, overwrite: bool = False) -> bool:
        return self.saving.save(overwrite=overwrite)

    def offer_unsaved_edits(self, sources: list[str] | None = None) -> None:
        """At start-up: ask about edits a crash left unsaved, then open `sources`."""
        self.saving.offer_unsaved_edits(sources or [])

    # -- pre-annotation ------------------------------------------------------------------

    def start_preannotation(self) -> None:
        if self.segmenter is not None:
            current = self.current.document.path if self.current is not None else None
            self.preannotator.start(self.segmenter, current)

    def cancel_preannotation(self) -> None:
        self.preannotator.cancel()

    # -- settings and window -------------------------------------------------------------

    def edit_settings(self) -> None:
        dialog = SettingsDialog(self.settings, self)
        if dialog.exec():
            language = self.settings.language
            self.settings = dialog.result_settings()
            save_settings(self.settings)
            self._apply_settings()
            self.preannotator.check_remote()
            if self.settings.language != language:
                app = QApplication.instance()
                switch = getattr(app, "switch_language", None)
                if switch is not None:
                    switch(self.settings.language)

    def fit_to_screen(self, width: int = 1600, height: int = 1000) -> None:
        """The preferred size, within the screen's available area (taskbars excluded) with
        room for the window frame, centred: the status bar, where failures are explained,
        must be on screen."""
        screen = self.screen() or QApplication.primaryScreen()
        if screen is None:
            self.resize(width, height)
            return
        area = screen.availableGeometry()
        # the frame and title bar are outside the size set here: keep a margin for them
        w = min(width, area.width() - 16)
        h = min(height, area.height() - 48)
        self.resize(max(w, 640), max(h, 480))
        self.move(
            area.x() + (area.width() - self.width()) // 2,
            area.y() + max(0, (area.height() - h - 40) // 2),
        )

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        paths = [url.toLocalFile() for url in event.mimeData().urls() if url.isLocalFile()]
        if paths:
            self.open_sources(paths)

    def closeEvent(self, event: QCloseEvent) -> None:
        if not self.leave_current():
            event.ignore()
            return
        self.cancel_preannotation()
        # Jobs cancelled earlier may still finish their photo (under a second): no thread
        # may outlive the window that owns its results.
        stop_all_jobs(30_000)
        self.preannotator.close_dispatcher()
        self.settings.brush_radius = self.canvas.brush_radius
        save_settings(self.settings)
        self.autosaver.close()
        event.accept()
