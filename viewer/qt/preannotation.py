"""Background pre-annotation of the open folder, local first and overflowing to a Triton
server when one is configured, with its progress bar, cancel button and server health in
the status bar."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QObject, QTimer
from PySide6.QtWidgets import QLabel, QProgressBar, QToolButton

from inference import Dispatcher, HemaviewError, RemoteConfig, Segmenter, remote_health
from viewer.model.pred_cache import PredictionCache, PredictionSummary
from viewer.qt.photo_list import PhotoListWidget
from viewer.qt.settings import Settings
from viewer.qt.workers import PreannotationJob, TaskRunner

HEALTH_INTERVAL_MS = 30_000


class Preannotator(QObject):
    """Runs one PreannotationJob at a time over the photo list; owns its status widgets."""

    def __init__(
        self,
        photos: PhotoListWidget,
        cache: PredictionCache,
        settings: Callable[[], Settings],
        parent: QObject | None = None,
    ):
        super().__init__(parent)
        self.photos = photos
        self.cache = cache
        self.settings = settings
        self.segmenter: Segmenter | None = None
        self.job: PreannotationJob | None = None
        # One dispatcher for the viewer's session (it keeps the server connection between
        # folders); made again only when the model or the server settings change.
        self._dispatch: Dispatcher | None = None
        self._dispatch_key: tuple[object, ...] | None = None
        self.progress = QProgressBar()
        self.progress.setMaximumWidth(220)
        self.progress.setFormat(self.tr("Pre-annotating %v/%m"))
        self.progress.hide()
        self.cancel_button = QToolButton()
        self.cancel_button.setText(self.tr("Cancel"))
        self.cancel_button.hide()
        self.cancel_button.clicked.connect(self.cancel)
        self.remote_label = QLabel()
        self.remote_label.hide()
        self.health = TaskRunner(self)  # remote checks block up to their timeouts
        self.health.done.connect(lambda _token, value: self._show_health(value))
        self.health.error.connect(lambda _token, message: self._show_health((False, message)))
        self._timer = QTimer(self)
        self._timer.timeout.connect(self.check_remote)
        self._timer.start(HEALTH_INTERVAL_MS)

    def start(self, segmenter: Segmenter, current: Path | None) -> None:
        """Pre-annotate every photo of the list, nearest to `current` first."""
        self.segmenter = segmenter
        library = self.photos.library
        if not library.entries:
            return
        self.cancel()
        index = library.index_of(current) if current is not None else 0
        paths = [library.entries[i].path for i in library.order_by_distance(index)]
        job = PreannotationJob(
            segmenter, self.cache, paths, dispatcher=self._dispatcher(), parent=self
        )
        job.progress.connect(self._progress)
        job.photo_started.connect(lambda path: self._state(path, "running"))
        job.result.connect(self._done)
        job.failed.connect(self._failed)
        job.finished.connect(lambda _cancelled: self._hide())
        self.job = job
        for path in paths:  # the list says which photos still wait for the model
            entry = library.entry(path)
            if entry is not None and entry.prediction_state in ("none", "queued"):
                self._state(path, "queued")
        self.progress.setRange(0, len(paths))
        self.progress.setValue(0)
        self.progress.show()
        self.cancel_button.show()
        job.start()

    def prioritise(self, current: Path) -> None:
        """The reviewer moved: photos nearest to the new one go first."""
        if self.job is None:
            return
        library = self.photos.library
        order = library.order_by_distance(library.index_of(current))
        self.job.prioritise([library.entries[i].path for i in order])

    def cancel(self) -> None:
        if self.job is not None:
            self.job.cancel()
            self.job = None
        for entry in self.photos.library.entries:  # nothing waits any more
            if entry.prediction_state in ("queued", "running"):
                self._state(entry.path, "none")
        self._hide()

    def mark_waiting(self) -> None:
        """Photos listed before the model has loaded: they wait for it."""
        for entry in self.photos.library.entries:
            if entry.prediction_state == "none" and not entry.has_error:
                self._state(entry.path, "queued")

    def _state(self, path: str | Path, state: str) -> None:
        self.photos.library.set_state(path, state)
        self.photos.entry_changed(path)

    def _hide(self) -> None:
        self.progress.hide()
        self.cancel_button.hide()

    def _progress(self, done: int, total: int) -> None:
        self.progress.setRange(0, total)
        self.progress.setValue(done)

    def _done(self, path: str, summary: PredictionSummary) -> None:
        self.photos.library.set_prediction(path, summary.lesion_count, summary.uncertainty)
        self.photos.entry_changed(path)

    def _failed(self, path: str, message: str, kind: str) -> None:
        self.photos.library.set_failed(path, message, unreadable=kind == "unreadable")
        self.photos.entry_changed(path)

    # -- the remote server -----------------------------------------------------------------

    def remote(self) -> RemoteConfig | None:
        settings = self.settings()
        if not settings.remote_address:
            return None
        try:
            return RemoteConfig.parse(settings.remote_address, tls=settings.remote_tls)
        except (ValueError, HemaviewError) as exc:
            self.remote_label.setText(self.tr("Server address not usable"))
            self.remote_label.setToolTip(str(exc))
            return None

    def _dispatcher(self) -> Dispatcher | None:
        """Local first; photos beyond the time budget go to the configured server."""
        remote = self.remote()
        if remote is None or self.segmenter is None:
            self.close_dispatcher()
            return None
        budget = self.settings().remote_budget_s  # seconds the local side may take per 10 photos
        key = (id(self.segmenter), remote, budget)
        if self._dispatch is not None and self._dispatch_key == key:
            return self._dispatch
        self.close_dispatcher()
        if budget <= 0:
            self._dispatch = Dispatcher(self.segmenter, remote, budget_s=0)
        else:
            self._dispatch = Dispatcher(self.segmenter, remote, photos_per_second=10.0 / budget)
        self._dispatch_key = key
        return self._dispatch

    def close_dispatcher(self) -> None:
        """At the end of the session (or when the model or server changes)."""
        if self._dispatch is not None:
            self._dispatch.close()
        self._dispatch, self._dispatch_key = None, None

    def check_remote(self) -> None:
        """Ask the server's health off the GUI thread; the label shows the answer."""
        remote = self.remote()
        self.remote_label.setVisible(remote is not None)
        if remote is not None:
            model = self.segmenter.source_model if self.segmenter is not None else None
            self.health.submit(remote_health, remote, model)

    def _show_health(self, value: object) -> None:
        if isinstance(value, tuple) and len(value) == 2:
            ok, sentence = value
            self.remote_label.setText(
                self.tr("Server ready") if ok else self.tr("Server unavailable")
            )
            self.remote_label.setToolTip(str(sentence))
