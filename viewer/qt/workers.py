"""Background work for the viewer: pre-annotating a folder, opening a photo, small tasks.

Nothing here touches a widget. Work runs in worker threads and reports through internal
signals whose receiver lives in the GUI thread, so Qt queues them there; the public signals
are then emitted on the GUI thread, whatever a consumer connects them to (a slot, a lambda,
pytest-qt's waitSignal).
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from PySide6.QtCore import QCoreApplication, QObject, QRunnable, QThread, QThreadPool, Signal, Slot

from inference import (
    Cancel,
    Dispatcher,
    HemaviewError,
    ImageReadError,
    NotFundusError,
    PhotoFailure,
    Prediction,
    Segmenter,
)
from viewer.model.pred_cache import PredictionCache, PredictionSummary
from viewer.model.session import ReviewSession


def failure_kind(error: BaseException) -> str:
    """ "unreadable" (the photo cannot be shown), "not_fundus" (shown, no overlay) or "error"."""
    if isinstance(error, ImageReadError):
        return "unreadable"
    if isinstance(error, NotFundusError):
        return "not_fundus"
    return "error"


def _key(path: str | os.PathLike[str]) -> str:
    return os.path.normcase(os.path.abspath(path))


def emit_quietly(signal: Any, *args: Any) -> bool:
    """Emit from a worker thread; False when the receiving object is already gone (the
    window closed while the work ran), which is no error: nobody waits for the result."""
    try:
        signal.emit(*args)
    except RuntimeError:
        return False
    return True


# Jobs whose thread still runs. A QThread destroyed while running takes the app down, and a
# caller drops its job as soon as it starts another (a new folder); this keeps it alive
# until its thread has ended.
_RUNNING: set[PreannotationJob] = set()
_quit_hooked = False


def stop_all_jobs(msecs: int = 30_000) -> None:
    """Cancel every pre-annotation and wait for its thread (on quitting)."""
    for job in list(_RUNNING):
        job.cancel()
    for job in list(_RUNNING):
        job.wait(msecs)


def _hook_quit() -> None:
    global _quit_hooked
    app = QCoreApplication.instance()
    if app is not None and not _quit_hooked:
        app.aboutToQuit.connect(stop_all_jobs)
        _quit_hooked = True


# --------------------------------------------------------------------------------------------
# Pre-annotation of a folder


class _PreannotationThread(QThread):
    """Runs the loop; its signals are received by the job in the GUI thread (queued)."""

    progress_ = Signal(int, int)
    started_ = Signal(str)
    result_ = Signal(str, object)
    failed_ = Signal(str, str, str)

    def __init__(self, job: PreannotationJob):
        super().__init__()
        self._job = job

    def run(self) -> None:
        self._job._run(self)


class PreannotationJob(QObject):
    """Predicts a list of photos in the background, nearest first, into the cache.

    Photos already in the cache are reported from it without running the model (this is
    what makes reopening a folder instant). The order of the photos not yet done can be
    changed while it runs (`prioritise`), e.g. when the reviewer moves through the list.
    """

    progress = Signal(int, int)  # done, total
    photo_started = Signal(str)  # path: the model is about to run on it
    result = Signal(str, object)  # path, PredictionSummary
    failed = Signal(str, str, str)  # path, message, kind (see failure_kind)
    finished = Signal(bool)  # cancelled

    def __init__(
        self,
        segmenter: Segmenter,
        cache: PredictionCache | None,
        paths: Iterable[str | os.PathLike[str]],
        *,
        chunk: int = 2,
        dispatcher: Dispatcher | None = None,
        parent: QObject | None = None,
    ):
        super().__init__(parent)
        self.segmenter = segmenter
        self.cache = cache
        # With a remote server the budget is spread over bigger batches: a chunk of two
        # would never overflow.
        self.dispatcher = dispatcher
        self.chunk = max(1, int(chunk)) if dispatcher is None else max(int(chunk), 16)
        self._queue: list[str] = []
        self._seen: set[str] = set()
        self._lock = threading.Lock()
        self._cancel = Cancel()  # wakes a run waiting on its next result at once
        self._total = 0
        self._done = 0
        self._thread: _PreannotationThread | None = None
        self.enqueue(paths)

    # -- control (GUI thread) ------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            return
        thread = _PreannotationThread(self)
        thread.progress_.connect(self._on_progress)
        thread.started_.connect(self._on_started)
        thread.result_.connect(self._on_result)
        thread.failed_.connect(self._on_failed)
        thread.finished.connect(self._on_finished)
        self._thread = thread
        _RUNNING.add(self)
        _hook_quit()
        thread.start(QThread.Priority.LowPriority)

    def cancel(self) -> None:
        """Stop after the photo being predicted now (at most one more result)."""
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def wait(self, msecs: int = -1) -> bool:
        """Block until the thread ends (shutdown only; the GUI thread should not wait)."""
        if self._thread is None:
            return True
        return self._thread.wait(msecs) if msecs >= 0 else self._thread.wait()

    @property
    def total(self) -> int:
        with self._lock:
            return self._total

    def enqueue(self, paths: Iterable[str | os.PathLike[str]]) -> None:
        """Add photos at the end (those already queued or done are ignored)."""
        with self._lock:
            for p in paths:
                key = _key(p)
                if key not in self._seen:
                    self._seen.add(key)
                    self._queue.append(str(p))
                    self._total += 1

    def prioritise(self, paths: Sequence[str | os.PathLike[str]]) -> None:
        """Put the queued photos among `paths` first, in that order; the rest after."""
        with self._lock:
            queued = {_key(p): p for p in self._queue}
            first: list[str] = []
            for p in paths:
                q = queued.pop(_key(p), None)
                if q is not None:
                    first.append(q)
            self._queue = first + [p for p in self._queue if _key(p) in queued]

    def remaining(self) -> list[str]:
        with self._lock:
            return list(self._queue)

    # -- the loop (worker thread) --------------------------------------------------------

    def _take(self) -> list[str]:
        with self._lock:
            batch, self._queue = self._queue[: self.chunk], self._queue[self.chunk :]
            return batch

    def _count(self, thread: _PreannotationThread) -> None:
        with self._lock:
            self._done += 1
            done, total = self._done, self._total
        thread.progress_.emit(done, total)

    def _run(self, thread: _PreannotationThread) -> None:
        model_sha = self.segmenter.cache_key  # one key for lookups and puts, whatever ran
        while not self._cancel.is_set():
            batch = self._take()
            if not batch:
                break
            to_predict: list[str] = []
            for path in batch:
                if self._cancel.is_set():
                    return
                summary = self._cached(path, model_sha)
                if summary is None:
                    to_predict.append(path)
                else:
                    thread.result_.emit(path, summary)
                    self._count(thread)
            if not to_predict:
                continue
            for path in to_predict:
                thread.started_.emit(path)
            delivered: set[str] = set()
            try:
                results: Iterable[tuple[object, object]]
                if self.dispatcher is not None:
                    run = self.dispatcher.run(to_predict, cancel=self._cancel)
                    results = ((r.source, r.result) for r in run)
                else:
                    results = self.segmenter.predict_many(
                        to_predict, cancel=self._cancel, prefetch=1
                    )
                for source, outcome in results:
                    path = str(source)
                    if isinstance(outcome, Prediction):
                        if self.cache is not None:
                            self.cache.put(outcome, model_sha)
                        thread.result_.emit(path, PredictionSummary.of(outcome))
                    else:
                        assert isinstance(outcome, PhotoFailure)
                        kind = failure_kind(outcome.error)
                        thread.failed_.emit(path, outcome.message, kind)
                    delivered.add(path)
                    self._count(thread)
            except Exception as exc:  # a bug below: the photos not yet reported fail, once
                message = str(exc) if isinstance(exc, HemaviewError) else f"the model failed: {exc}"
                for path in to_predict:
                    if path not in delivered:
                        thread.failed_.emit(path, message, "error")
                        self._count(thread)

    def _cached(self, path: str, model_sha: str) -> PredictionSummary | None:
        """The cache's summary for this photo, or None (a miss; unreadable photos included:
        predict_many then reports them with the reader's own message)."""
        if self.cache is None:
            return None
        try:
            digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
        except OSError:
            return None
        return self.cache.summary(digest, model_sha)

    # -- relays (GUI thread) -------------------------------------------------------------

    @Slot(int, int)
    def _on_progress(self, done: int, total: int) -> None:
        self.progress.emit(done, total)

    @Slot(str)
    def _on_started(self, path: str) -> None:
        self.photo_started.emit(path)

    @Slot(str, object)
    def _on_result(self, path: str, summary: object) -> None:
        self.result.emit(path, summary)

    @Slot(str, str, str)
    def _on_failed(self, path: str, message: str, kind: str) -> None:
        self.failed.emit(path, message, kind)

    @Slot()
    def _on_finished(self) -> None:
        _RUNNING.discard(self)
        self.finished.emit(self._cancel.is_set())


# --------------------------------------------------------------------------------------------
# Opening one photo


class _Call(QRunnable):
    def __init__(self, fn: Callable[[], None]):
        super().__init__()
        self._fn = fn
        self.setAutoDelete(True)

    def run(self) -> None:
        self._fn()


class PhotoLoader(QObject):
    """Opens the photo the reviewer asked for, off the GUI thread.

    Only the latest request matters: a request made while another runs replaces any that
    waits, and results of superseded requests are dropped, so flicking through a folder
    never queues up a backlog of 12-MP decodes.
    """

    loaded = Signal(str, object)  # path, OpenedPhoto
    load_failed = Signal(str, str)  # path, message
    busy = Signal(bool)  # a load is running or waiting

    _done = Signal(int, str, object, str)  # token, path, OpenedPhoto or None, message

    def __init__(
        self,
        session: ReviewSession,
        *,
        predict_if_missing: bool = True,
        parent: QObject | None = None,
    ):
        super().__init__(parent)
        self.session = session
        self.predict_if_missing = predict_if_missing
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(1)
        self._latest = 0
        self._latest_lock = threading.Lock()
        self._in_flight: str | None = None  # the latest request's path, until delivered
        self._done.connect(self._on_done)

    @property
    def in_flight(self) -> str | None:
        """The photo being opened (requested, not yet delivered), or None."""
        return self._in_flight

    def request(self, path: str | os.PathLike[str], *, force: bool = False) -> int:
        """Open `path`; `loaded` or `load_failed` follows (unless a newer request wins).
        `force`: run the model on a photo refused as not a fundus photograph."""
        with self._latest_lock:
            self._latest += 1
            token = self._latest
        text = str(path)
        self._in_flight = text
        self.busy.emit(True)
        self._pool.start(_Call(lambda: self._load(token, text, force)))
        return token

    def cancel(self) -> None:
        """Drop whatever is pending or running (its result will not be delivered)."""
        with self._latest_lock:
            self._latest += 1
        self._in_flight = None
        self.busy.emit(False)

    def wait(self, msecs: int = -1) -> bool:
        return self._pool.waitForDone(msecs)

    def _current(self, token: int) -> bool:
        with self._latest_lock:
            return token == self._latest

    def _load(self, token: int, path: str, force: bool = False) -> None:
        if not self._current(token):
            return  # superseded before it began
        try:
            opened = self.session.open(
                path, predict_if_missing=self.predict_if_missing, force=force
            )
        except HemaviewError as exc:
            emit_quietly(self._done, token, path, None, str(exc))
        except Exception as exc:  # never let a worker die silently
            emit_quietly(self._done, token, path, None, f"{path}: unexpected error ({exc})")
        else:
            emit_quietly(self._done, token, path, opened, "")

    @Slot(int, str, object, str)
    def _on_done(self, token: int, path: str, opened: Any, message: str) -> None:
        if not self._current(token):
            return
        self._in_flight = None
        self.busy.emit(False)
        if opened is None:
            self.load_failed.emit(path, message)
        else:
            self.loaded.emit(path, opened)


# --------------------------------------------------------------------------------------------
# Small one-off tasks (a save, an autosave write)


class TaskRunner(QObject):
    """Runs short functions in a worker thread, one at a time, in submission order.

    One at a time on purpose: two writes of the same label or autosave must land in the
    order they were asked for.
    """

    done = Signal(int, object)  # token, return value
    error = Signal(int, str)  # token, message

    _finished = Signal(int, object, str, bool)

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(1)
        self._next = 0
        self._finished.connect(self._on_finished)

    def submit(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> int:
        self._next += 1
        token = self._next

        def call() -> None:
            try:
                value = fn(*args, **kwargs)
            except Exception as exc:
                emit_quietly(self._finished, token, None, str(exc), False)
            else:
                emit_quietly(self._finished, token, value, "", True)

        self._pool.start(_Call(call))
        return token

    def wait(self, msecs: int = -1) -> bool:
        return self._pool.waitForDone(msecs)

    @Slot(int, object, str, bool)
    def _on_finished(self, token: int, value: Any, message: str, ok: bool) -> None:
        if ok:
            self.done.emit(token, value)
        else:
            self.error.emit(token, message)
